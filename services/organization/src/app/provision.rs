//! What VERIFIED domains mean for who may join (rules ORG-6, ORG-14): the invite restriction and
//! BLOCKED domains at invite creation and acceptance, LookupDomain (what identity asks at
//! sign-up and SSO linking), ProvisionMember (SSO just-in-time provisioning, SCIM) and
//! AUTO_ENROLL when identity reports a verified email. Addresses are compared in their canonical
//! form (rule ID-15).

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, Entry};
use orgplane_platform::auth::Capability;
use orgplane_platform::email::{Email, canonical_email};
use orgplane_platform::events::WriteUnit;
use orgplane_proto::events::v1::{MemberAdded, event};
use orgplane_proto::organization::v1::{
    DomainPolicy, DomainState, InviteState, OrgRole, OrganizationState,
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};

use super::App;
use crate::domain::validate::{self, required, role_of};
use crate::domain::{Error, Result};
use crate::store::{domain, idempotency, invite, member, organization, security_policy};

/// The sources ProvisionMember accepts, for the audit log.
const SOURCES: [&str; 3] = ["sso_jit", "scim", "auto_enroll"];
/// The sources DeprovisionMember accepts.
const DEPROVISION_SOURCES: [&str; 1] = ["scim"];

/// ProvisionMember.
#[derive(Debug, Clone, Default)]
pub struct ProvisionMember {
    /// The organization.
    pub organization_id: String,
    /// The user.
    pub user_id: String,
    /// `OrgRole` for a new member, as its number.
    pub role: i32,
    /// The idempotency key.
    pub request_id: String,
    /// Why: `sso_jit`, `scim` or `auto_enroll`.
    pub source: String,
    /// An existing member's role becomes `role` (the OWNER's never changes).
    pub set_role: bool,
}

/// DeprovisionMember.
#[derive(Debug, Clone, Default)]
pub struct DeprovisionMember {
    /// The organization.
    pub organization_id: String,
    /// The user.
    pub user_id: String,
    /// The idempotency key.
    pub request_id: String,
    /// Why: `scim`.
    pub source: String,
}

/// DeprovisionMember's answer, also what a retry with the same request id gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deprovisioned {
    /// Whether the first call with this request id removed the member.
    pub removed: bool,
    /// The revision of `MemberRemoved`; 0 when nothing was removed.
    pub revision: i64,
}

/// ProvisionMember's answer, also what a retry with the same request id gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The member's role after the call (`OrgRole` number).
    pub role: i32,
    /// Whether the first call with this request id added the member.
    pub created: bool,
    /// The revision of `MemberAdded` (or `MemberRoleChanged` under `set_role`); 0 when nothing
    /// changed.
    pub revision: i64,
}

/// LookupDomain's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLookup {
    /// The address, canonical.
    pub email: Email,
    /// The VERIFIED domains of ACTIVE organizations with the address's domain.
    pub verified: Vec<domain::Model>,
    /// Organizations with a pending, unexpired invite for the address.
    pub invited_organization_ids: Vec<String>,
}

/// The VERIFIED domains named `domain_name` of ACTIVE organizations (all of them, or of
/// `organization_id` only).
async fn verified_holders<C: ConnectionTrait>(
    db: &C,
    domain_name: &str,
    organization_id: Option<&str>,
) -> Result<Vec<domain::Model>> {
    let mut query = domain::Entity::find()
        .filter(domain::Column::DomainName.eq(domain_name.to_owned()))
        .filter(domain::Column::State.eq(DomainState::Verified as i32));
    if let Some(org) = organization_id {
        query = query.filter(domain::Column::OrganizationId.eq(org.to_owned()));
    }
    let rows = query.all(db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        let active = organization::Entity::find_by_id(d.organization_id.clone())
            .one(db)
            .await?
            .is_some_and(|o| o.state == OrganizationState::Active as i32);
        if active {
            out.push(d);
        }
    }
    Ok(out)
}

/// The audit image of a member provisioned by `source`: the member's message with `source`.
struct ProvisionImage<'a>(&'a member::Model, &'a str);

impl AuditImage for ProvisionImage<'_> {
    fn audit_image(&self) -> serde_json::Value {
        let mut v = self.0.audit_image();
        if let Some(o) = v.as_object_mut() {
            o.insert("source".to_owned(), serde_json::Value::from(self.1));
        }
        v
    }
}

/// Stores the answer of an internal call with `key` (its request id) in the caller's
/// transaction; a concurrent call that stored it first makes this one ABORTED
/// `CONCURRENT_RETRY` (its caller then answers the stored one).
async fn remember_answer<C: ConnectionTrait, A: Serialize>(
    db: &C,
    key: String,
    organization_id: &str,
    answer: &A,
    now_ms: i64,
) -> Result<()> {
    let stored = serde_json::to_string(answer)
        .map_err(|e| Error::Api(orgplane_platform::ApiError::internal(e)))?;
    idempotency::Entity::insert(idempotency::ActiveModel {
        key: Set(key),
        organization_id: Set(organization_id.to_owned()),
        resource_id: Set(stored),
        create_time_ms: Set(now_ms),
    })
    .exec(db)
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

impl App {
    /// FAILED_PRECONDITION `EMAIL_DOMAIN_BLOCKED` when `organization_id` holds `email`'s domain
    /// VERIFIED with policy BLOCKED; else, when `restricted` and the domain is not one of the
    /// organization's VERIFIED domains, `EMAIL_DOMAIN_NOT_VERIFIED` (rules ORG-6, ORG-14).
    pub(crate) async fn check_joining_domain<C: ConnectionTrait>(
        &self,
        db: &C,
        organization_id: &str,
        email: &Email,
        restricted: bool,
    ) -> Result<()> {
        let held = domain::Entity::find()
            .filter(domain::Column::OrganizationId.eq(organization_id.to_owned()))
            .filter(domain::Column::DomainName.eq(email.domain.clone()))
            .filter(domain::Column::State.eq(DomainState::Verified as i32))
            .one(db)
            .await?;
        match held {
            Some(d) if d.policy == DomainPolicy::Blocked as i32 => Err(Error::EmailDomainBlocked {
                domain: email.domain.clone(),
            }),
            None if restricted => Err(Error::EmailDomainNotVerified {
                domain: email.domain.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether `organization_id` restricts invites to its VERIFIED domains (rule ORG-6).
    pub(crate) async fn restricts_invites<C: ConnectionTrait>(
        &self,
        db: &C,
        organization_id: &str,
    ) -> Result<bool> {
        Ok(
            security_policy::Entity::find_by_id(organization_id.to_owned())
                .one(db)
                .await?
                .is_some_and(|p| p.restrict_invites_to_verified_domains),
        )
    }

    /// LookupDomain (rule ORG-14): services with `read-organizations`.
    pub async fn lookup_domain(&self, call: &Call, email: &str) -> Result<DomainLookup> {
        call.principal
            .require_capability(Capability::ReadOrganizations)?;
        let email = canonical_email("email", email)?;
        let verified = verified_holders(&self.db, &email.domain, None).await?;
        let now = self.now_ms();
        let invites = invite::Entity::find()
            .filter(invite::Column::PendingKey.eq(email.key.clone()))
            .filter(invite::Column::State.eq(InviteState::Pending as i32))
            .filter(invite::Column::ExpireTimeMs.gt(now))
            .all(&self.db)
            .await?;
        let mut invited_organization_ids = Vec::new();
        for i in invites {
            let active = organization::Entity::find_by_id(i.organization_id.clone())
                .one(&self.db)
                .await?
                .is_some_and(|o| o.state == OrganizationState::Active as i32);
            if active && !invited_organization_ids.contains(&i.organization_id) {
                invited_organization_ids.push(i.organization_id);
            }
        }
        invited_organization_ids.sort();
        Ok(DomainLookup {
            email,
            verified,
            invited_organization_ids,
        })
    }

    /// ProvisionMember (rules ID-13, ID-14, ORG-14): services only, once per request id.
    pub async fn provision_member(&self, call: &Call, cmd: ProvisionMember) -> Result<Provisioned> {
        let (_, actor) = call.principal.actor();
        let key = format!(
            "ProvisionMember|{actor}|{}|{}",
            cmd.organization_id, cmd.request_id
        );
        let first = self.provision_member_once(call, cmd.clone()).await;
        self.or_created_meanwhile(Some(&key), first, || self.provision_member_once(call, cmd))
            .await
    }

    async fn provision_member_once(
        &self,
        call: &Call,
        cmd: ProvisionMember,
    ) -> Result<Provisioned> {
        call.principal
            .require_capability(Capability::ProvisionMembers)?;
        required("organization_id", &cmd.organization_id)?;
        required("user_id", &cmd.user_id)?;
        required("request_id", &cmd.request_id)?;
        let role = validate::assignable_role("role", cmd.role)?;
        if !SOURCES.contains(&cmd.source.as_str()) {
            return Err(Error::invalid(
                "source",
                format!("one of {}", SOURCES.join(", ")),
            ));
        }
        let (_, actor) = call.principal.actor();
        let key = format!(
            "ProvisionMember|{actor}|{}|{}",
            cmd.organization_id, cmd.request_id
        );
        if let Some(answer) = self.idempotent(Some(&key)).await? {
            return serde_json::from_str(&answer)
                .map_err(|e| Error::Api(orgplane_platform::ApiError::internal(e)));
        }
        let org = organization::Entity::find_by_id(cmd.organization_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("organization", &cmd.organization_id))?;
        if org.state != OrganizationState::Active as i32 {
            return Err(Error::OrganizationDeleted {
                organization_id: org.id,
            });
        }
        let user = self
            .users
            .get(&cmd.user_id, call)
            .await?
            .ok_or_else(|| Error::not_found("user", &cmd.user_id))?;
        let email = canonical_email("user.email", &user.email)?;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        self.check_joining_domain(&*txn, &org.id, &email, false)
            .await?;
        let existing = member::Entity::find_by_id((org.id.clone(), cmd.user_id.clone()))
            .one(&*txn)
            .await?;
        let answer = match existing {
            Some(m) if cmd.set_role && ![OrgRole::Owner, role].contains(&role_of(m.role)) => {
                let after = self.set_member_role_in(&mut txn, &m, role).await?;
                self.audit
                    .write(
                        &*txn,
                        call,
                        Entry::new(&org.id, "member.update_role", "member", &m.user_id).change(
                            Some(&ProvisionImage(&m, &cmd.source)),
                            Some(&ProvisionImage(&after, &cmd.source)),
                        ),
                    )
                    .await?;
                Provisioned {
                    role: after.role,
                    created: false,
                    revision: txn.revision().unwrap_or_default(),
                }
            }
            Some(m) => Provisioned {
                role: m.role,
                created: false,
                revision: 0,
            },
            None => {
                let m = self
                    .add_member_in(&*txn, &org.id, &cmd.user_id, &email, role, &cmd.source)
                    .await?;
                self.audit
                    .write(
                        &*txn,
                        call,
                        Entry::new(&org.id, "member.provision", "member", &m.user_id)
                            .change(None, Some(&ProvisionImage(&m, &cmd.source))),
                    )
                    .await?;
                let revision = txn
                    .append(event::Payload::MemberAdded(MemberAdded {
                        organization_id: org.id.clone(),
                        user_id: m.user_id.clone(),
                        role: m.role,
                    }))
                    .await?;
                Provisioned {
                    role: m.role,
                    created: true,
                    revision,
                }
            }
        };
        remember_answer(&*txn, key, &org.id, &answer, self.now_ms()).await?;
        txn.commit().await?;
        Ok(answer)
    }

    /// DeprovisionMember (rule ID-14): services only, once per request id. Removes the member
    /// through the path RemoveMember takes (`MemberRemoved`, so their workspace roles go, rule
    /// WS-9); the OWNER is refused; a user who is not a member is `removed: false`.
    pub async fn deprovision_member(
        &self,
        call: &Call,
        cmd: DeprovisionMember,
    ) -> Result<Deprovisioned> {
        let (_, actor) = call.principal.actor();
        let key = format!(
            "DeprovisionMember|{actor}|{}|{}",
            cmd.organization_id, cmd.request_id
        );
        let first = self.deprovision_member_once(call, &cmd, &key).await;
        self.or_created_meanwhile(Some(&key), first, || {
            self.deprovision_member_once(call, &cmd, &key)
        })
        .await
    }

    async fn deprovision_member_once(
        &self,
        call: &Call,
        cmd: &DeprovisionMember,
        key: &str,
    ) -> Result<Deprovisioned> {
        call.principal
            .require_capability(Capability::ProvisionMembers)?;
        required("organization_id", &cmd.organization_id)?;
        required("user_id", &cmd.user_id)?;
        required("request_id", &cmd.request_id)?;
        if !DEPROVISION_SOURCES.contains(&cmd.source.as_str()) {
            return Err(Error::invalid(
                "source",
                format!("one of {}", DEPROVISION_SOURCES.join(", ")),
            ));
        }
        if let Some(answer) = self.idempotent(Some(key)).await? {
            return serde_json::from_str(&answer)
                .map_err(|e| Error::Api(orgplane_platform::ApiError::internal(e)));
        }
        // A DELETED organization's members may still be removed: nothing is granted by it.
        let org = organization::Entity::find_by_id(cmd.organization_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("organization", &cmd.organization_id))?;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let existing = member::Entity::find_by_id((org.id.clone(), cmd.user_id.clone()))
            .one(&*txn)
            .await?;
        let answer = match existing {
            Some(m) if role_of(m.role) == OrgRole::Owner => {
                return Err(Error::OwnershipTransferRequired { user_id: m.user_id });
            }
            Some(m) if self.delete_member_in(&mut txn, call, &m).await? => {
                self.audit
                    .write(
                        &*txn,
                        call,
                        Entry::new(&org.id, "member.deprovision", "member", &m.user_id)
                            .change(Some(&ProvisionImage(&m, &cmd.source)), None),
                    )
                    .await?;
                Deprovisioned {
                    removed: true,
                    revision: txn.revision().unwrap_or_default(),
                }
            }
            // Not a member (or removed meanwhile, within this transaction's view).
            _ => Deprovisioned {
                removed: false,
                revision: 0,
            },
        };
        remember_answer(&*txn, key.to_owned(), &org.id, &answer, self.now_ms()).await?;
        txn.commit().await?;
        Ok(answer)
    }

    /// Inserts the membership of `user_id` with `role` (a concurrent insert of the same
    /// membership is ABORTED `CONCURRENT_RETRY`).
    async fn add_member_in<C: ConnectionTrait>(
        &self,
        db: &C,
        organization_id: &str,
        user_id: &str,
        email: &Email,
        role: OrgRole,
        source: &str,
    ) -> Result<member::Model> {
        // Under the organization's row lock, so a merge or deletion cannot slip in between.
        if !crate::store::query::lock_active_organization(db, organization_id).await? {
            return Err(Error::not_found("organization", organization_id));
        }
        let now = self.now_ms();
        let m = member::Model {
            organization_id: organization_id.to_owned(),
            user_id: user_id.to_owned(),
            email: email.key.clone(),
            role: role as i32,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        member::Entity::insert(member::ActiveModel::from(m.clone()))
            .exec(db)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    tracing::debug!(
                        organization_id,
                        user_id,
                        source,
                        "membership added meanwhile"
                    );
                    Error::ConcurrentRetry
                } else {
                    e.into()
                }
            })?;
        Ok(m)
    }

    /// AUTO_ENROLL (rule ORG-14), inside the identity consumer's transaction: a user whose
    /// verified `email` is of a domain an ACTIVE organization holds VERIFIED with policy
    /// AUTO_ENROLL, and who is not its member, joins it as USER (`MemberAdded`, an audit record
    /// of source `auto_enroll`). The consumer applies each event once, so this happens once.
    pub(crate) async fn auto_enroll(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        request_id: &str,
        user_id: &str,
        email: &Email,
    ) -> orgplane_platform::ApiResult<()> {
        let holders = verified_holders(txn, &email.domain, None)
            .await
            .map_err(orgplane_platform::ApiError::from)?;
        for d in holders
            .into_iter()
            .filter(|d| d.policy == DomainPolicy::AutoEnroll as i32)
        {
            let is_member =
                member::Entity::find_by_id((d.organization_id.clone(), user_id.to_owned()))
                    .one(txn)
                    .await?
                    .is_some();
            if is_member {
                continue;
            }
            let m = self
                .add_member_in(
                    txn,
                    &d.organization_id,
                    user_id,
                    email,
                    OrgRole::User,
                    "auto_enroll",
                )
                .await
                .map_err(orgplane_platform::ApiError::from)?;
            let entry = Entry::new(&d.organization_id, "member.provision", "member", user_id)
                .change(None, Some(&ProvisionImage(&m, "auto_enroll")));
            self.audit.record_system(txn, entry).await?;
            self.outbox
                .append(
                    txn,
                    event::Payload::MemberAdded(MemberAdded {
                        organization_id: d.organization_id.clone(),
                        user_id: user_id.to_owned(),
                        role: role_of(m.role) as i32,
                    }),
                    request_id,
                )
                .await?;
            tracing::info!(organization_id = %d.organization_id, user_id, domain = %d.domain_name, "auto-enrolled");
        }
        Ok(())
    }
}
