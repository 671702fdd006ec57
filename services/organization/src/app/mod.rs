//! The organization service's use cases: each is `(&self, &Call, Command) -> Result<Outcome>`,
//! free of tonic and of prost requests and responses, and owns its transaction. Mutations
//! write their rows, their audit record and (for role and lifecycle changes) their event in one
//! [`WriteUnit`](orgplane_platform::events::WriteUnit) (rules ORG-10, ORG-12).
//!
//! One file per resource: [`organizations`], [`lifecycle`] (delete, undelete, purge),
//! [`members`], [`invites`] (and [`issue`], writing one), [`units`], [`security`] (the security policy), [`domains`] and
//! [`verify`] (verified domains, rule ORG-14), [`provision`] (what domains mean for joining:
//! the invite restriction, BLOCKED, AUTO_ENROLL, LookupDomain, ProvisionMember); [`access`]
//! resolves the caller's standing; [`hierarchy`] the child organizations of operators
//! (ORG-13); [`settings`] resolves inherited settings (rule ORG-13) and [`branding`] serves the
//! branding and effective-settings RPCs; [`accounts`] the accounts of organizations (rules
//! ACC-1 … ACC-5); [`merge`] merges one organization into another (rule ORG-15).

pub mod access;
pub mod accounts;
pub mod audit_log;
pub mod branding;
pub mod domains;
pub mod hierarchy;
pub mod invites;
pub mod issue;
pub mod lifecycle;
pub mod members;
pub mod merge;
pub mod organizations;
pub mod provision;
pub mod security;
pub mod settings;
pub mod units;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;

use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::events::Outbox;
use orgplane_platform::mail::Mailer;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::{ApiResult, Call};
use sea_orm::{DatabaseConnection, DatabaseTransaction, EntityTrait, Set};

use crate::Config;
use crate::domain::{Error, Result, authz};
use crate::store::{
    domain, idempotency, invite, member, organization, profiles, security_policy, unit,
    user_profile,
};
use access::Access;
use orgplane_platform::clients::identity::Users;
use orgplane_platform::policy::{StepUp, require_recent_sign_in};
use settings::{Effective, PolicyLayers};

/// Everything the use cases need; shared by the gRPC layer, the purge job and the consumers.
#[derive(Debug)]
pub struct App {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Shared start-up dependencies (clock, page tokens, endpoints, service token).
    pub runtime: Runtime,
    /// This service's outbox.
    pub outbox: Outbox,
    /// This service's audit log.
    pub audit: AuditLogWriter,
    /// The identity service's user facts.
    pub users: Users,
    /// Where invite mail goes.
    pub mailer: Mailer,
    /// The service's settings.
    pub config: Config,
    /// The consumer mail domains no organization may register (ORG-14).
    pub consumer_domains: Arc<crate::domain::domains::ConsumerDomains>,
    /// The DNS lookups of domain verification (ORG-14).
    pub dns: crate::dns::SharedTxtLookup,
}

/// A shared handle on the use cases.
pub type SharedApp = Arc<App>;

/// Where the organization of a mutation's target is found: named by the request, or through
/// the invite or unit the request names.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The organization id the request names.
    Organization(String),
    /// The organization of this invite.
    Invite(String),
    /// The organization of this unit.
    Unit(String),
    /// The organization of this domain.
    Domain(String),
    /// The home organization of this account.
    Account(String),
}

/// What a mutation RPC of this service aims at (ORG-10).
pub type Attempt = orgplane_platform::audit::Attempt<Scope>;

/// A membership as answered: the stored row, with its user's email and display name as identity
/// published them (this service's copy, [`App::profiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The membership (its `email` replaced by the user's current one when known).
    pub member: member::Model,
    /// The user's display name (empty when neither the copy nor identity had it).
    pub display_name: String,
}

impl MemberView {
    /// The membership with its user's display name and email.
    pub fn named(mut member: member::Model, profile: &user_profile::Model) -> Self {
        member.email = profile.email.clone();
        Self {
            member,
            display_name: profile.display_name.clone(),
        }
    }

    /// The membership as stored, without identity's facts.
    pub fn stored(member: member::Model) -> Self {
        Self {
            member,
            display_name: String::new(),
        }
    }
}

/// An invite as answered: the row, its organization's name, and the time its state is read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteView {
    /// The invite.
    pub invite: invite::Model,
    /// Its organization's name (shown to invitees who are not members yet).
    pub organization_name: String,
    /// When the state is read (PENDING turns EXPIRED by time alone).
    pub now_ms: i64,
}

/// A value a mutation produced, with the revision to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revised<T> {
    /// The resource after the mutation.
    pub value: T,
    /// The revision of the mutation's last event (the outbox head when it published none).
    pub revision: i64,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

impl App {
    /// The current time (Unix ms) of the injectable clock.
    pub fn now_ms(&self) -> i64 {
        self.runtime.clock.now().timestamp_millis()
    }

    /// The outbox head: the revision of a mutation that changed nothing.
    pub async fn head_revision(&self) -> Result<i64> {
        Ok(self.outbox.head().await?.revision)
    }

    /// Passes a mutation's `result` through unchanged, recording it first as OUTCOME_FAILURE
    /// when it is a refusal the audit log keeps and `attempt`'s organization exists here.
    pub async fn audited<T>(
        &self,
        call: &Call,
        attempt: Attempt,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        // An invite's addressee has standing in its organization's log (an invite id is mailed
        // to them); anyone else refused with INVITE_EMAIL_MISMATCH has not.
        let addressee = matches!(
            &result,
            Err(e) if e.error_reason() != orgplane_platform::error::Reason::InviteEmailMismatch
        );
        self.audit
            .audited(&self.db, call, result, || {
                self.attempt_entry(&call.principal, attempt, addressee)
            })
            .await
    }

    /// The audit entry of `attempt`, in its organization; `None` when that is unknown here. A
    /// refusal of the operator acting in a child is recorded as the operator's (ORG-13).
    async fn attempt_entry(
        &self,
        principal: &orgplane_platform::auth::Principal,
        attempt: Attempt,
        addressee: bool,
    ) -> Option<Entry> {
        let invite_scope = matches!(attempt.scope, Scope::Invite(_));
        let found = match &attempt.scope {
            Scope::Organization(id) => organization::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|o| o.map(|o| o.id)),
            Scope::Invite(id) => invite::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|i| i.map(|i| i.organization_id)),
            Scope::Unit(id) => unit::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|u| u.map(|u| u.organization_id)),
            Scope::Domain(id) => domain::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|d| d.map(|d| d.organization_id)),
            Scope::Account(id) => crate::store::account::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|a| a.map(|a| a.home_organization_id)),
        };
        let organization_id = found
            .inspect_err(|e| {
                tracing::warn!(error = %e, action = attempt.action, "could not resolve the organization of a refused mutation");
            })
            .ok()
            .flatten()?;
        let operator = self
            .acting_operator(principal, &organization_id)
            .await
            .inspect_err(|e| {
                tracing::warn!(error = %e, action = attempt.action, "could not resolve the operator of a refused mutation");
            })
            .ok()
            .flatten();
        // ORG-10: only callers with standing in the organization write into its log — its
        // members, its operator, an invite's addressee, its own API keys and Orgplane's services. A refusal that came
        // before the tenant check (an API key of another organization, a user of another one)
        // must not let an outsider write there.
        let standing = match principal {
            orgplane_platform::auth::Principal::User(u) => {
                operator.is_some()
                    || (invite_scope && addressee)
                    || member::Entity::find_by_id((organization_id.clone(), u.user_id.clone()))
                        .one(&self.db)
                        .await
                        .inspect_err(|e| {
                            tracing::warn!(error = %e, action = attempt.action, "could not resolve the membership of a refused mutation's caller");
                        })
                        .ok()
                        .flatten()
                        .is_some()
            }
            orgplane_platform::auth::Principal::ApiKey(k) => k.organization_id == organization_id,
            orgplane_platform::auth::Principal::Service(_) => true,
            orgplane_platform::auth::Principal::Anonymous => false,
        };
        if !standing {
            return None;
        }
        Some(
            attempt
                .entry(&organization_id)
                .as_operator(operator.as_deref()),
        )
    }

    /// The operator organization `principal` would act for in `organization_id` (ORG-13): a
    /// user who administers its operator without being its OWNER or an ADMIN.
    async fn acting_operator(
        &self,
        principal: &orgplane_platform::auth::Principal,
        organization_id: &str,
    ) -> Result<Option<String>> {
        let orgplane_platform::auth::Principal::User(u) = principal else {
            return Ok(None);
        };
        let Some(org) = organization::Entity::find_by_id(organization_id.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let role = member::Entity::find_by_id((org.id.clone(), u.user_id.clone()))
            .one(&self.db)
            .await?
            .map(|m| crate::domain::validate::role_of(m.role));
        Ok(access::operator_role(&self.db, &org, &u.user_id, role)
            .await?
            .map(|o| o.operator_id))
    }

    /// UNAUTHENTICATED `REAUTHENTICATION_REQUIRED` unless the caller is a user whose sign-in is
    /// recent and safe enough for a sensitive action in `access`'s organization, judged by the
    /// platform's one step-up check under that organization's policy in force (rules ID-6,
    /// ID-12, ORG-13). An operator acting in a child is judged under the child's policy with its
    /// role in the operator (ORG-13).
    pub fn step_up(&self, call: &Call, access: &Access) -> Result<()> {
        let policy = self.security_policy_of(&access.policy).model.policy();
        let role = match &access.standing {
            authz::Standing::Operator { role, .. } => Some(*role),
            _ => access.role(),
        };
        require_recent_sign_in(
            &call.principal,
            StepUp {
                policy: &policy,
                role,
                organization_id: Some(&access.org.id),
            },
            self.runtime.clock.now().timestamp(),
        )?;
        Ok(())
    }

    /// The policy in force in an organization given its layers (rules ORG-16, ORG-13): per
    /// field its own value, else its operator's, else the default policy (MFA optional, both
    /// sign-in methods, the configured re-authentication age); version 0 without an update time
    /// while it never set its own.
    pub fn security_policy_of(&self, layers: &PolicyLayers) -> Effective<security_policy::Model> {
        layers.effective(&self.policy_defaults())
    }

    /// The resource an earlier create call with the same request id produced.
    pub async fn idempotent(&self, key: Option<&str>) -> Result<Option<String>> {
        let Some(key) = key else { return Ok(None) };
        Ok(idempotency::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .map(|r| r.resource_id))
    }

    /// AIP-155 for duplicates in flight: when a create with a request id failed because a
    /// concurrent call with the same id committed meanwhile (it met that call's name, pending
    /// invite or idempotency key), the answer is the winner's resource, as a later retry would
    /// get — by running the create `again`, which now finds the key. Other failures stand.
    pub async fn or_created_meanwhile<T, F, Fut>(
        &self,
        key: Option<&str>,
        result: Result<T>,
        again: F,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match result {
            Err(e) => match self.idempotent(key).await {
                Ok(Some(_)) => again().await,
                _ => Err(e),
            },
            ok => ok,
        }
    }

    /// Remembers the resource a create call with a request id produced, in its transaction.
    pub async fn remember(
        &self,
        txn: &DatabaseTransaction,
        key: Option<&str>,
        organization_id: &str,
        resource_id: &str,
    ) -> Result<()> {
        let Some(key) = key else { return Ok(()) };
        idempotency::Entity::insert(idempotency::ActiveModel {
            key: Set(key.to_owned()),
            organization_id: Set(organization_id.to_owned()),
            resource_id: Set(resource_id.to_owned()),
            create_time_ms: Set(self.now_ms()),
        })
        .exec(txn)
        .await
        .map_err(|e| {
            if orgplane_platform::db::is_unique_violation(&e) {
                Error::ConcurrentRetry
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// The profiles (display name, email) of `ids` that identity published, from this service's
    /// copy (`user_profiles`); users it has no copy of yet (accounts older than the copy) are
    /// asked of identity in one BatchGetUsers call and stored for next time. Users identity does
    /// not know are absent.
    pub async fn profiles(
        &self,
        ids: &[String],
        call: &Call,
    ) -> Result<HashMap<String, user_profile::Model>> {
        let mut found = profiles::load(&self.db, ids).await?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let asked: Vec<user_profile::Model> = self
            .users
            .batch(&missing, call)
            .await?
            .values()
            .map(user_profile::Model::from)
            .collect();
        if let Err(e) = profiles::fill(&self.db, asked.clone()).await {
            tracing::warn!(error = %e, "user profiles from identity not stored; asked again next time");
        }
        found.extend(asked.into_iter().map(|p| (p.user_id.clone(), p)));
        Ok(found)
    }

    /// The memberships with their users' emails and display names ([`Self::profiles`]).
    pub async fn enrich(
        &self,
        members: Vec<member::Model>,
        call: &Call,
    ) -> Result<Vec<MemberView>> {
        let ids: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
        let users = self.profiles(&ids, call).await?;
        Ok(members
            .into_iter()
            .map(|member| view_with(member, &users))
            .collect())
    }

    /// Runs `write`, a mutation answering `user_id`'s membership, while identity is asked for
    /// the user's name, and answers the membership's view with the rest of what `write` answers:
    /// the call waits for its commit and for identity at once rather than one after the other.
    /// A failed write answers at once; identity failing leaves the stored email and no name, as
    /// [`Self::enrich_best_effort`] does after a committed change.
    pub async fn enriched_during<T>(
        &self,
        user_id: &str,
        call: &Call,
        write: impl Future<Output = Result<(member::Model, T)>>,
    ) -> Result<(MemberView, T)> {
        let ids = [user_id.to_owned()];
        let lookup = async { Ok::<_, Error>(self.profiles(&ids, call).await) };
        let ((member, rest), users) = tokio::try_join!(write, lookup)?;
        let view = match users {
            Ok(users) => view_with(member, &users),
            Err(e) => {
                tracing::debug!(error = %e, "member returned without a name");
                MemberView::stored(member)
            }
        };
        Ok((view, rest))
    }

    /// As [`Self::enrich`], but after a committed change: identity being down leaves the stored
    /// email and no name rather than failing a mutation that already happened.
    pub async fn enrich_best_effort(
        &self,
        members: Vec<member::Model>,
        call: &Call,
    ) -> Vec<MemberView> {
        match self.enrich(members.clone(), call).await {
            Ok(views) => views,
            Err(e) => {
                tracing::debug!(error = %e, "members returned without names");
                members.into_iter().map(MemberView::stored).collect()
            }
        }
    }

    /// [`Self::enrich_best_effort`] of one membership.
    pub async fn enrich_one(&self, member: member::Model, call: &Call) -> MemberView {
        self.enrich_best_effort(vec![member.clone()], call)
            .await
            .pop()
            .unwrap_or_else(|| MemberView::stored(member))
    }
}

/// `member` with its user's email and display name, when `users` holds its user.
fn view_with(member: member::Model, users: &HashMap<String, user_profile::Model>) -> MemberView {
    match users.get(&member.user_id) {
        Some(u) => MemberView::named(member, u),
        None => MemberView::stored(member),
    }
}
