//! The account side of an SSO sign-in (rule ID-13), after the ID token verified: the federated
//! identity (connection, `sub`) names the account; otherwise the asserted address links to an
//! existing account, or creates one (with just-in-time provisioning), only when the provider
//! asserts it verified and its domain is one of the connection's and VERIFIED by the
//! connection's organization. Membership comes from the organization service's
//! `ProvisionMember` with a request id derived from (connection, `sub`), so concurrent
//! completions add the member once. Then the session, or the MFA challenge of rule ID-11 when
//! the user has a factor and the provider's second factor is not trusted.

use orgplane_platform::audit::Entry;
use orgplane_platform::clients::organization::{ExistingRole, MemberProvision};
use orgplane_platform::email::canonical_email;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::policy::amr;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::events::v1::UserEmailVerified;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::identity::v1::{AccountType, User};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::Set;
use sea_orm::entity::prelude::*;
use sha2::Digest;

use super::sessions::{SignInOutcome, merge_amr};
use super::sso_connections::split;
use super::users::profile_changed;
use super::{App, as_user, new_id};
use crate::crypto::sha256_hex;
use crate::domain::sso::{SSO_AMR, SsoError, names_second_factor};
use crate::oidc::IdClaims;
use crate::store::entity::{federated_identity, mfa_challenge, sso_connection, user};
use orgplane_platform::error::Reason;

/// How long CompleteSsoLogin waits for the replica to apply a provisioned membership.
const MEMBERSHIP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A CompleteSsoLogin's outcome.
#[derive(Debug, Clone)]
pub struct SsoSignedIn {
    /// The user.
    pub user: user::Model,
    /// Tokens or a challenge.
    pub outcome: SignInOutcome,
    /// Whether this sign-in created the account.
    pub user_created: bool,
    /// Whether this sign-in made the user a member of the connection's organization.
    pub membership_created: bool,
}

/// The idempotency key of the JIT membership of (`connection`, `sub`): the same for every
/// completion of that person through that connection.
pub fn provisioning_request_id(connection_id: &str, subject: &str) -> String {
    let digest = sha2::Sha256::digest(format!("sso-jit\n{connection_id}\n{subject}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The account an ID token names.
struct Resolved {
    user: user::Model,
    created: bool,
}

impl App {
    /// The linkable address of `claims` for `conn`: asserted verified, of one of the
    /// connection's domains, and that domain VERIFIED by the connection's organization.
    fn linkable_address(
        &self,
        conn: &sso_connection::Model,
        domains: &[String],
        claims: &IdClaims,
    ) -> Option<orgplane_platform::email::Email> {
        if !claims.email_verified() {
            return None;
        }
        let email = canonical_email("email", claims.email.as_deref()?).ok()?;
        let served = domains.contains(&email.domain)
            && self
                .replica
                .holds_verified(&conn.organization_id, &email.domain);
        served.then_some(email)
    }

    async fn resolve_account(
        &self,
        call: &Call,
        conn: &sso_connection::Model,
        claims: &IdClaims,
    ) -> ApiResult<Resolved> {
        let key = (conn.id.clone(), claims.sub.clone());
        if let Some(fed) = federated_identity::Entity::find_by_id(key.clone())
            .one(&self.db)
            .await?
        {
            if let Some(u) = user::Entity::find_by_id(fed.user_id.clone())
                .one(&self.db)
                .await?
            {
                return Ok(Resolved {
                    user: u,
                    created: false,
                });
            }
            // The account is gone: the identity is free again.
            federated_identity::Entity::delete_by_id(key)
                .exec(&self.db)
                .await?;
        }
        let domains = self.connection_domains(&self.db, &conn.id).await?;
        let linkable = self.linkable_address(conn, &domains, claims);
        let asserted = claims
            .email
            .as_deref()
            .and_then(|e| canonical_email("email", e).ok());
        let existing = match &asserted {
            Some(e) => {
                user::Entity::find()
                    .filter(user::Column::EmailKey.eq(&e.key))
                    .one(&self.db)
                    .await?
            }
            None => None,
        };
        let Some(email) = linkable else {
            // Never link (or create) on an address the provider or the organization does not
            // vouch for.
            return Err(SsoError::AccountNotLinkable.into());
        };
        match existing {
            Some(u) => {
                self.link(call, conn, claims, &u, &email.key).await?;
                Ok(Resolved {
                    user: u,
                    created: false,
                })
            }
            None if !conn.jit_provisioning => Err(SsoError::ProvisioningDisabled.into()),
            None => self.create_federated_user(call, conn, claims, &email).await,
        }
    }

    /// Links (connection, `sub`) to `u`; a concurrent completion that linked it first wins.
    async fn link(
        &self,
        call: &Call,
        conn: &sso_connection::Model,
        claims: &IdClaims,
        u: &user::Model,
        email_key: &str,
    ) -> ApiResult<()> {
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let now = self.now_ms();
        let inserted = federated_identity::ActiveModel {
            connection_id: Set(conn.id.clone()),
            subject: Set(claims.sub.clone()),
            user_id: Set(u.id.clone()),
            email: Set(email_key.to_owned()),
            create_time_ms: Set(now),
            last_sign_in_ms: Set(now),
        }
        .insert(&*unit)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if orgplane_platform::db::is_unique_violation(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.audit
            .write(
                &*unit,
                &as_user(call, &u.id),
                Entry::new(&conn.organization_id, "user.link_sso", "user", &u.id),
            )
            .await?;
        unit.commit().await?;
        Ok(())
    }

    async fn create_federated_user(
        &self,
        call: &Call,
        conn: &sso_connection::Model,
        claims: &IdClaims,
        email: &orgplane_platform::email::Email,
    ) -> ApiResult<Resolved> {
        let now = self.now_ms();
        let local = email.address.split('@').next().unwrap_or_default();
        let name = claims
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| {
                !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control)
            })
            .unwrap_or(local);
        let row = user::Model {
            id: new_id("user"),
            email: email.address.clone(),
            email_key: email.key.clone(),
            email_verified: true,
            display_name: name.to_owned(),
            account_type: AccountType::Business as i32,
            // No password is usable: an empty hash never verifies.
            password_hash: String::new(),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: None,
        };
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        if let Err(e) = user::ActiveModel::from(row.clone()).insert(&*unit).await {
            if !orgplane_platform::db::is_unique_violation(&e) {
                return Err(e.into());
            }
            // A concurrent completion created the account: link to it.
            drop(unit);
            let u = user::Entity::find()
                .filter(user::Column::EmailKey.eq(&email.key))
                .one(&self.db)
                .await?
                .ok_or_else(|| ApiError::aborted(Reason::ConcurrentSignIn, "retry the sign-in"))?;
            self.link(call, conn, claims, &u, &email.key).await?;
            return Ok(Resolved {
                user: u,
                created: false,
            });
        }
        federated_identity::ActiveModel {
            connection_id: Set(conn.id.clone()),
            subject: Set(claims.sub.clone()),
            user_id: Set(row.id.clone()),
            email: Set(email.key.clone()),
            create_time_ms: Set(now),
            last_sign_in_ms: Set(now),
        }
        .insert(&*unit)
        .await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &row.id),
                Entry::new(&conn.organization_id, "user.create", "user", &row.id)
                    .change(None, Some(&User::from(&row))),
            )
            .await?;
        unit.append(profile_changed(&row)).await?;
        unit.append(Payload::UserEmailVerified(UserEmailVerified {
            user_id: row.id.clone(),
            email: row.email.clone(),
        }))
        .await?;
        unit.commit().await?;
        Ok(Resolved {
            user: row,
            created: true,
        })
    }

    /// Makes the user a member of the connection's organization when they are not one:
    /// through `ProvisionMember` with JIT, SSO_PROVISIONING_DISABLED without. Answers whether
    /// this sign-in added them.
    async fn ensure_membership(
        &self,
        call: &Call,
        conn: &sso_connection::Model,
        subject: &str,
        user_id: &str,
    ) -> ApiResult<bool> {
        if self.replica.role(&conn.organization_id, user_id).is_some() {
            return Ok(false);
        }
        if !conn.jit_provisioning {
            return Err(SsoError::ProvisioningDisabled.into());
        }
        let role = OrgRole::try_from(conn.default_role).unwrap_or(OrgRole::User);
        let provisioned = self
            .organizations
            .provision_member(
                call,
                MemberProvision {
                    organization_id: &conn.organization_id,
                    user_id,
                    role,
                    existing: ExistingRole::Keep,
                    request_id: &provisioning_request_id(&conn.id, subject),
                    source: "sso_jit",
                },
            )
            .await?;
        if provisioned.revision > 0
            && let Err(e) = self
                .org_events
                .wait_for(provisioned.revision, MEMBERSHIP_WAIT)
                .await
        {
            tracing::warn!(error = %e.message(), "the provisioned membership is not applied yet");
        }
        Ok(provisioned.created)
    }

    /// Signs in the person `claims` names through `conn` (rule ID-13).
    pub(crate) async fn sso_sign_in(
        &self,
        call: &Call,
        conn: &sso_connection::Model,
        claims: &IdClaims,
    ) -> ApiResult<SsoSignedIn> {
        self.require_roles_synced()?;
        let Resolved { user: u, created } = self.resolve_account(call, conn, claims).await?;
        let membership_created = self
            .ensure_membership(call, conn, &claims.sub, &u.id)
            .await?;
        let idp_mfa = conn.trust_idp_mfa && claims.amr.as_deref().is_some_and(names_second_factor);
        let mut methods = vec![amr::EXTERNAL, SSO_AMR];
        if idp_mfa {
            methods.push(amr::MFA);
        }
        let address = self.peer_key(call);
        let risk = self.sign_in_risk(&self.db, &u.id, &address).await?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        federated_identity::Entity::update_many()
            .col_expr(
                federated_identity::Column::LastSignInMs,
                Expr::value(self.now_ms()),
            )
            .filter(federated_identity::Column::ConnectionId.eq(&conn.id))
            .filter(federated_identity::Column::Subject.eq(&claims.sub))
            .exec(&*unit)
            .await?;
        if !idp_mfa && self.has_active_factor(&*unit, &u.id).await? {
            let challenge = self.open_challenge(&*unit, &u.id, None, &risk).await?;
            mfa_challenge::Entity::update_many()
                .col_expr(
                    mfa_challenge::Column::SignInAmr,
                    Expr::value(merge_amr("", &methods)),
                )
                .filter(mfa_challenge::Column::IdHash.eq(sha256_hex(&challenge.id)))
                .exec(&*unit)
                .await?;
            self.audit
                .write(
                    &*unit,
                    &as_user(call, &u.id),
                    Entry::new("", "session.mfa_challenge", "user", &u.id),
                )
                .await?;
            unit.commit().await?;
            return Ok(SsoSignedIn {
                user: u,
                outcome: SignInOutcome::Challenge(challenge),
                user_created: created,
                membership_created,
            });
        }
        let (tokens, session_id) = self
            .start_session(&mut unit, &u.id, &methods, &risk)
            .await?;
        self.record_sign_in_address(&*unit, &u.id, &address).await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &u.id),
                Entry::new("", "session.create", "session", &session_id),
            )
            .await?;
        unit.commit().await?;
        let has_mfa = split(&merge_amr("", &methods))
            .iter()
            .any(|m| m == amr::MFA);
        let enrollment_required = self
            .replica
            .organizations_of(&u.id)
            .into_iter()
            .filter(|(org, role)| !has_mfa && self.replica.policy(org).requires_mfa(Some(*role)))
            .map(|(org, _)| org)
            .collect();
        Ok(SsoSignedIn {
            user: u,
            outcome: SignInOutcome::Tokens {
                tokens,
                enrollment_required,
            },
            user_created: created,
            membership_created,
        })
    }
}
