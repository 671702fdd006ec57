//! The organization's security policy (rule ORG-16): read it, and change it (the OWNER, with a
//! recent sign-in, never into a policy that would lock the caller out). Every change publishes
//! `SecurityPolicyChanged` with the whole policy, which every service enforces.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag, etag_mismatch, timestamp_ms};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::policy::{MFA_REQUIRED, MfaRequirement as Mfa};
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{SecurityPolicyChanged, event};
use orgplane_proto::organization::v1 as proto;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::access::Access;
use super::{App, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::security_policy;

/// The fields of a policy as UpdateSecurityPolicy gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFields {
    /// The organization.
    pub organization_id: String,
    /// `MfaRequirement` as its number.
    pub mfa_requirement: i32,
    /// The re-authentication age as given.
    pub reauthentication_max_age: Option<prost_types::Duration>,
    /// `SignInMethod`s as their numbers.
    pub allowed_sign_in_methods: Vec<i32>,
    /// Invites only for addresses of VERIFIED domains (rule ORG-6).
    pub restrict_invites_to_verified_domains: bool,
}

/// UpdateSecurityPolicy (ORG-16).
#[derive(Debug, Clone, Default)]
pub struct UpdateSecurityPolicy {
    /// The new values (the request's `security_policy`, if any).
    pub policy: Option<PolicyFields>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

/// The mutable paths of a security policy.
const MUTABLE: [&str; 4] = [
    "mfa_requirement",
    "reauthentication_max_age",
    "allowed_sign_in_methods",
    "restrict_invites_to_verified_domains",
];

/// The stored number (`MfaRequirement`) of a requirement.
pub fn mfa_number(m: Mfa) -> i32 {
    let r = match m {
        Mfa::Optional => proto::MfaRequirement::Optional,
        Mfa::Required => proto::MfaRequirement::Required,
        Mfa::RequiredForPrivilegedRoles => proto::MfaRequirement::RequiredForPrivilegedRoles,
    };
    r as i32
}

/// The message of a policy in force (see [`App::security_policy_of`]): what GetSecurityPolicy
/// answers, `SecurityPolicyChanged` and the snapshot carry, and the audit log records.
pub fn message(m: &security_policy::Model) -> proto::SecurityPolicy {
    proto::SecurityPolicy {
        etag: etag(m.version),
        update_time: (m.version > 0).then(|| timestamp_ms(m.update_time_ms)),
        restrict_invites_to_verified_domains: m.restrict_invites_to_verified_domains,
        ..m.policy().to_proto(&m.organization_id)
    }
}

impl App {
    /// GetSecurityPolicy (rule ORG-16): any member the policy admits, an admin API key of the
    /// organization, or a service.
    pub async fn get_security_policy(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<security_policy::Model> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        let access =
            Access::resolve(&self.db, &call.principal, organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        Ok(self.security_policy_of(&access.org.id, access.policy))
    }

    /// UpdateSecurityPolicy (rules ORG-16, ID-6, ID-12).
    pub async fn update_security_policy(
        &self,
        call: &Call,
        cmd: UpdateSecurityPolicy,
    ) -> Result<Revised<security_policy::Model>> {
        require_caller(&call.principal)?;
        let input = cmd
            .policy
            .ok_or_else(|| Error::invalid("security_policy", "required"))?;
        required("security_policy.organization_id", &input.organization_id)?;
        let paths = validate::mask_paths(&cmd.paths, &MUTABLE)?;
        let mut mfa = None;
        let mut age = None;
        let mut methods = None;
        let mut restrict = None;
        for p in &paths {
            match p.as_str() {
                "mfa_requirement" => {
                    mfa = Some(validate::mfa_requirement(
                        "security_policy.mfa_requirement",
                        input.mfa_requirement,
                    )?)
                }
                "restrict_invites_to_verified_domains" => {
                    restrict = Some(input.restrict_invites_to_verified_domains)
                }
                "reauthentication_max_age" => {
                    age = Some(validate::reauth_max_age(
                        "security_policy.reauthentication_max_age",
                        input.reauthentication_max_age.as_ref(),
                    )?)
                }
                _ => {
                    methods = Some(validate::sign_in_methods(
                        "security_policy.allowed_sign_in_methods",
                        &input.allowed_sign_in_methods,
                    )?)
                }
            }
        }
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &input.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require(OrgAction::OwnerOnly)?;
        self.step_up(call, &access)?;
        let user = call.principal.require_user()?;
        let org_id = access.org.id.clone();
        let before = self.security_policy_of(&org_id, access.policy.clone());
        check_etag(&cmd.etag, before.version, "security_policy")?;
        let mut after = before.clone();
        if let Some(m) = mfa {
            after.mfa_requirement = mfa_number(m);
        }
        if let Some(a) = age {
            after.reauth_max_age_secs = a;
        }
        if let Some((password, sso)) = methods {
            let mut policy = after.policy();
            policy.password_allowed = password;
            policy.sso_allowed = sso;
            after.sign_in_methods = policy.methods_bits();
        }
        if let Some(r) = restrict {
            after.restrict_invites_to_verified_domains = r;
        }
        after.version = before.version + 1;
        after.update_time_ms = self.now_ms();
        // The caller's own sign-in must satisfy the new policy, or the change locks them out.
        if let Err(e) = after.policy().admit(&org_id, user, access.role()) {
            return Err(if e.reason() == MFA_REQUIRED {
                Error::MfaEnrollmentRequired {
                    organization_id: org_id,
                }
            } else {
                Error::SsoSignInRequired {
                    organization_id: org_id,
                }
            });
        }
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        if before.version == 0 {
            security_policy::Entity::insert(security_policy::ActiveModel::from(after.clone()))
                .exec(&*txn)
                .await
                .map_err(|e| {
                    if orgplane_platform::db::is_unique_violation(&e) {
                        etag_mismatch("security_policy").into()
                    } else {
                        Error::from(e)
                    }
                })?;
        } else {
            let updated = security_policy::Entity::update_many()
                .col_expr(
                    security_policy::Column::MfaRequirement,
                    Expr::value(after.mfa_requirement),
                )
                .col_expr(
                    security_policy::Column::ReauthMaxAgeSecs,
                    Expr::value(after.reauth_max_age_secs),
                )
                .col_expr(
                    security_policy::Column::SignInMethods,
                    Expr::value(after.sign_in_methods),
                )
                .col_expr(
                    security_policy::Column::RestrictInvitesToVerifiedDomains,
                    Expr::value(after.restrict_invites_to_verified_domains),
                )
                .col_expr(security_policy::Column::Version, Expr::value(after.version))
                .col_expr(
                    security_policy::Column::UpdateTimeMs,
                    Expr::value(after.update_time_ms),
                )
                .filter(security_policy::Column::OrganizationId.eq(org_id.clone()))
                .filter(security_policy::Column::Version.eq(before.version))
                .exec(&*txn)
                .await?;
            if updated.rows_affected == 0 {
                return Err(etag_mismatch("security_policy").into());
            }
        }
        let published = message(&after);
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &org_id,
                    "security_policy.update",
                    "security_policy",
                    &org_id,
                )
                .change(Some(&message(&before)), Some(&published)),
            )
            .await?;
        txn.append(event::Payload::SecurityPolicyChanged(
            SecurityPolicyChanged {
                organization_id: org_id,
                security_policy: Some(published),
            },
        ))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: after,
            revision,
        })
    }
}
