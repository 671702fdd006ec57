//! Requests and reads the settings tests repeat (rule ORG-13).

use orgplane_proto::organization::v1::*;
use prost_types::FieldMask;
use tonic::Code;

use crate::common::{accept, create_child, create_operator};
use crate::harness::{self, Rig};

pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    })
}

pub fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// An UpdateSecurityPolicy request for `org` changing `paths` to what `set` puts in.
pub fn policy_update(
    org: &str,
    paths: &[&str],
    set: impl FnOnce(&mut SecurityPolicy),
) -> UpdateSecurityPolicyRequest {
    let mut p = SecurityPolicy {
        organization_id: org.into(),
        ..Default::default()
    };
    set(&mut p);
    UpdateSecurityPolicyRequest {
        security_policy: Some(p),
        update_mask: mask(paths),
        etag: String::new(),
    }
}

/// An UpdateBranding request for `org` changing `paths` to what `set` puts in.
pub fn branding_update(
    org: &str,
    paths: &[&str],
    set: impl FnOnce(&mut Branding),
) -> UpdateBrandingRequest {
    let mut b = Branding {
        organization_id: org.into(),
        ..Default::default()
    };
    set(&mut b);
    UpdateBrandingRequest {
        branding: Some(b),
        update_mask: mask(paths),
        etag: String::new(),
    }
}

/// The error of `r`, checked for `code` and `reason`, with its details.
pub fn refusal<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    reason: &str,
) -> harness::Details {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    let d = harness::details(&err);
    assert_eq!(d.reason, reason, "{err:?}");
    d
}

/// `org`'s settings in force as `reader` (signed in with a second factor) reads them.
pub async fn effective(rig: &Rig, reader: &str, org: &str) -> EffectiveSettings {
    rig.client()
        .get_effective_settings(rig.as_user_mfa(
            reader,
            GetEffectiveSettingsRequest {
                organization_id: org.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .effective_settings
        .unwrap()
}

/// `(source, enforced)` of `field` in `s`.
pub fn provenance(s: &EffectiveSettings, field: &str) -> (SettingSource, bool) {
    let e = s
        .settings
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("{field} in {s:?}"));
    (e.source(), e.enforced)
}

/// An operator `user_op` with a child whose OWNER `user_first` accepted; `(operator, child)`.
pub async fn operator_and_child(rig: &Rig) -> (Organization, Organization) {
    let op = create_operator(rig, "user_op", "Operator").await;
    let created = create_child(rig, "user_op", &op.id, "Child", "user_first").await;
    accept(rig, "user_first", &created.owner_invite.unwrap().id).await;
    (op, created.organization.unwrap())
}
