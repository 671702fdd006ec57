//! Helpers of the hierarchy tests (rule ORG-13): operators, their children, the first owner's
//! acceptance, events and audit records.

use orgplane_platform::error::reason_of;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::harness::Rig;

/// Asserts `r` failed with `code` and, when given, ErrorInfo `reason`.
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    reason: Option<&str>,
) {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    if let Some(reason) = reason {
        assert_eq!(reason_of(&err).as_deref(), Some(reason), "{err:?}");
    }
}

/// An organization of `kind` created by `owner`.
pub async fn create_org_of_kind(
    rig: &Rig,
    owner: &str,
    name: &str,
    kind: OrganizationKind,
) -> Organization {
    rig.client()
        .create_organization(rig.as_user(
            owner,
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: name.into(),
                    kind: kind as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
}

/// An OPERATOR organization owned by `owner`.
pub async fn create_operator(rig: &Rig, owner: &str, name: &str) -> Organization {
    create_org_of_kind(rig, owner, name, OrganizationKind::Operator).await
}

/// The request creating child `name` whose first owner is `owner_email`.
pub fn child_request(
    operator_id: &str,
    name: &str,
    owner_email: &str,
    request_id: &str,
) -> CreateChildOrganizationRequest {
    CreateChildOrganizationRequest {
        operator_organization_id: operator_id.into(),
        organization: Some(Organization {
            name: name.into(),
            ..Default::default()
        }),
        owner_email: owner_email.into(),
        request_id: request_id.into(),
    }
}

/// Child `name` of `operator_id`, created by `admin` (a user of the operator), its first owner
/// to be `owner`@example.com.
pub async fn create_child(
    rig: &Rig,
    admin: &str,
    operator_id: &str,
    name: &str,
    owner: &str,
) -> CreateChildOrganizationResponse {
    rig.client()
        .create_child_organization(rig.as_user(
            admin,
            child_request(operator_id, name, &format!("{owner}@example.com"), ""),
        ))
        .await
        .unwrap()
        .into_inner()
}

/// `user` accepts invite `invite_id`.
pub async fn accept(rig: &Rig, user: &str, invite_id: &str) -> AcceptInviteResponse {
    rig.client()
        .accept_invite(rig.as_user(
            user,
            AcceptInviteRequest {
                invite_id: invite_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}
