//! The organization's security policy (rules ORG-16, ORG-13): read the policy in force, and
//! change the organization's own values (the OWNER with a recent sign-in, or for a child its
//! operator; never into a policy that would lock the caller out of their own organization).
//! Every change publishes `SecurityPolicyChanged` with the policy in force, for the
//! organization and, for an operator, for each child whose policy in force it changed.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag, timestamp_ms};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::policy::{MFA_REQUIRED, MfaRequirement as Mfa, SecurityPolicy};
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{SecurityPolicyChanged, event};
use orgplane_proto::organization::v1 as proto;

use super::access::Access;
use super::settings::{
    Layers, changed_children, layers, lock_family, require_operator_for_enforced, save,
};
use super::{App, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::settings::{
    POLICY_FIELDS, enforced_from_request, enforced_from_stored, enforced_names, enforced_to_stored,
};
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
    /// For an operator: the fields its children cannot override (ORG-13).
    pub enforced_fields: Vec<String>,
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
const MUTABLE: [&str; 5] = [
    "mfa_requirement",
    "reauthentication_max_age",
    "allowed_sign_in_methods",
    "restrict_invites_to_verified_domains",
    "enforced_fields",
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
/// answers, `SecurityPolicyChanged` and the snapshot carry.
pub fn message(m: &security_policy::Model) -> proto::SecurityPolicy {
    proto::SecurityPolicy {
        etag: etag(m.version),
        update_time: (m.version > 0).then(|| timestamp_ms(m.update_time_ms)),
        restrict_invites_to_verified_domains: m.restrict_invites_to_verified_domains,
        enforced_fields: enforced(m),
        ..m.policy().to_proto(&m.organization_id)
    }
}

/// The message of an organization's own values, unset ones empty (the audit log's images).
fn own_message(m: &security_policy::Model) -> proto::SecurityPolicy {
    let methods = SecurityPolicy::from_parts(0, 0, m.own_sign_in_methods).to_proto("");
    proto::SecurityPolicy {
        organization_id: m.organization_id.clone(),
        mfa_requirement: m.own_mfa_requirement,
        reauthentication_max_age: (m.own_reauth_max_age_secs > 0).then_some(
            prost_types::Duration {
                seconds: m.own_reauth_max_age_secs,
                nanos: 0,
            },
        ),
        allowed_sign_in_methods: methods.allowed_sign_in_methods,
        etag: etag(m.version),
        update_time: (m.version > 0).then(|| timestamp_ms(m.update_time_ms)),
        restrict_invites_to_verified_domains: m.restrict_invites_to_verified_domains,
        enforced_fields: enforced(m),
    }
}

fn enforced(m: &security_policy::Model) -> Vec<String> {
    enforced_names(
        &POLICY_FIELDS,
        &enforced_from_stored(&POLICY_FIELDS, &m.enforced_fields),
    )
}

/// The changes UpdateSecurityPolicy asks for, validated.
#[derive(Debug, Default)]
struct Changes {
    /// Per changed inherited field (index in [`POLICY_FIELDS`]), the new own value; 0 clears.
    values: Vec<(usize, i64)>,
    restrict: Option<bool>,
    enforced: Option<Vec<bool>>,
}

impl Changes {
    fn of(input: &PolicyFields, paths: &[String]) -> Result<Self> {
        let mut c = Changes::default();
        for p in paths {
            match p.as_str() {
                "mfa_requirement" => {
                    let v = match input.mfa_requirement {
                        0 => 0,
                        n => mfa_number(validate::mfa_requirement(
                            "security_policy.mfa_requirement",
                            n,
                        )?),
                    };
                    c.values.push((0, v.into()));
                }
                "reauthentication_max_age" => {
                    let v = match &input.reauthentication_max_age {
                        None => 0,
                        Some(d) => validate::reauth_max_age(
                            "security_policy.reauthentication_max_age",
                            Some(d),
                        )?,
                    };
                    c.values.push((1, v));
                }
                "allowed_sign_in_methods" => {
                    let v = if input.allowed_sign_in_methods.is_empty() {
                        0
                    } else {
                        let (password_allowed, sso_allowed) = validate::sign_in_methods(
                            "security_policy.allowed_sign_in_methods",
                            &input.allowed_sign_in_methods,
                        )?;
                        SecurityPolicy {
                            password_allowed,
                            sso_allowed,
                            ..SecurityPolicy::default()
                        }
                        .methods_bits()
                    };
                    c.values.push((2, v.into()));
                }
                "restrict_invites_to_verified_domains" => {
                    c.restrict = Some(input.restrict_invites_to_verified_domains)
                }
                _ => {
                    c.enforced = Some(enforced_from_request(
                        &POLICY_FIELDS,
                        "security_policy.enforced_fields",
                        &input.enforced_fields,
                    )?)
                }
            }
        }
        Ok(c)
    }

    /// The inherited fields the change touches, by name.
    fn fields(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|(i, _)| POLICY_FIELDS[*i].to_owned())
            .collect()
    }

    fn apply(&self, row: &mut security_policy::Model) {
        for (i, v) in &self.values {
            match i {
                0 => row.own_mfa_requirement = i32::try_from(*v).unwrap_or_default(),
                1 => row.own_reauth_max_age_secs = *v,
                _ => row.own_sign_in_methods = i32::try_from(*v).unwrap_or_default(),
            }
        }
        if let Some(r) = self.restrict {
            row.restrict_invites_to_verified_domains = r;
        }
        if let Some(e) = &self.enforced {
            row.enforced_fields = enforced_to_stored(&POLICY_FIELDS, e);
        }
    }
}

impl App {
    /// GetSecurityPolicy (rules ORG-16, ORG-13): the policy in force, for any member the policy
    /// admits, an admin API key of the organization, its operator's OWNER or ADMINs, or a
    /// service.
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
        Ok(self.security_policy_of(&access.policy).model)
    }

    /// UpdateSecurityPolicy (rules ORG-16, ORG-13, ID-6, ID-12): changes the organization's own
    /// values and answers the policy in force.
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
        let changes = Changes::of(&input, &paths)?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &input.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require_or_operator(OrgAction::OwnerOnly)?;
        self.step_up(call, &access)?;
        let user = call.principal.require_user()?;
        let org = &access.org;
        require_operator_for_enforced(org, changes.enforced.is_some())?;
        // The layers as this transaction reads them, so that the policy in force published for
        // the organization reflects its operator's latest row.
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        lock_family(&*txn, org).await?;
        let layers = layers::<security_policy::Model, _>(&*txn, org).await?;
        layers.refuse_enforced(&changes.fields())?;
        let before = layers.own_or_blank();
        check_etag(&cmd.etag, before.version, "security_policy")?;
        let mut after = before.clone();
        changes.apply(&mut after);
        after.version = before.version + 1;
        after.update_time_ms = self.now_ms();
        let in_force = self.security_policy_of(&Layers {
            own: Some(after.clone()),
            ..layers
        });
        // The caller's own sign-in must satisfy the new policy, or the change locks them out
        // of their own organization; an operator acting in a child is judged by its own.
        if access.acting_operator().is_none()
            && let Err(e) = in_force.model.policy().admit(&org.id, user, access.role())
        {
            let organization_id = org.id.clone();
            return Err(if e.error_reason() == MFA_REQUIRED {
                Error::MfaEnrollmentRequired { organization_id }
            } else {
                Error::SsoSignInRequired { organization_id }
            });
        }
        let children = if org.kind == proto::OrganizationKind::Operator as i32 {
            changed_children(&*txn, &org.id, &after, &self.policy_defaults()).await?
        } else {
            Vec::new()
        };
        // The row keeps the complete policy in force beside the own values: what the previous
        // release reads during a rolling update.
        save(
            &*txn,
            in_force.model.clone(),
            before.version,
            "security_policy",
        )
        .await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &org.id,
                    "security_policy.update",
                    "security_policy",
                    &org.id,
                )
                .change(Some(&own_message(&before)), Some(&own_message(&after)))
                .as_operator(access.acting_operator()),
            )
            .await?;
        for m in std::iter::once(&in_force.model).chain(children.iter().map(|c| &c.model)) {
            txn.append(event::Payload::SecurityPolicyChanged(
                SecurityPolicyChanged {
                    organization_id: m.organization_id.clone(),
                    security_policy: Some(message(m)),
                },
            ))
            .await?;
        }
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: in_force.model,
            revision,
        })
    }
}
