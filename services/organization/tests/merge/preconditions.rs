//! ORG-15's preconditions, each refused with its own reason, and refusals in the audit logs.

use std::sync::atomic::Ordering;

use orgplane_proto::audit::v1::Outcome;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::details;

#[tokio::test]
async fn org_15_each_precondition_is_refused_with_its_own_reason() {
    for (backend, env) in each_env(|_| {}).await {
        set_email(&env, "user_o", "user_o@acme.test");
        let prime = create_org(&env, "user_o", "Prime").await;
        let candidate = create_org(&env, "user_o", "Candidate").await;

        // Ids: missing, or the same organization twice.
        expect_err(
            merge(&env, "user_o", merge_req(&prime, "", false)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &prime, true)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );

        // The prime holds no VERIFIED domain.
        let e = expect_err(
            merge(&env, "user_o", merge_req(&prime, &candidate, true)).await,
            Code::FailedPrecondition,
            "MERGE_PRIME_DOMAIN_NOT_VERIFIED",
        );
        assert_eq!(
            details(&e).metadata["organization_id"],
            prime,
            "{backend:?}"
        );
        verified_domain(&env, "user_o", &prime, "acme.test").await;
        let preview = merge(&env, "user_o", merge_req(&prime, &candidate, true))
            .await
            .unwrap();
        assert!(!preview.merged);

        // Not a member of the candidate: NOT_FOUND; a member but not its OWNER: PERMISSION_DENIED.
        let foreign = create_org(&env, "user_x", "Foreign").await;
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &foreign, true)).await,
            Code::NotFound,
            "NOT_FOUND",
        );
        join(&env, &foreign, "user_x", "user_o", OrgRole::Admin).await;
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &foreign, false)).await,
            Code::PermissionDenied,
            "INSUFFICIENT_ROLE",
        );

        // A sign-in too old for a sensitive action (ID-6).
        let stale = env
            .client()
            .merge_organizations(env.as_user_signed_in_ago(
                "user_o",
                3600,
                merge_req(&prime, &candidate, false),
            ))
            .await;
        expect_err(stale, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");

        // The caller's email is not in a VERIFIED domain of the prime.
        let other_prime = create_org(&env, "user_p", "Other prime").await;
        let other_candidate = create_org(&env, "user_p", "Other candidate").await;
        verified_domain(&env, "user_p", &other_prime, "acme.test").await;
        let e = expect_err(
            merge(
                &env,
                "user_p",
                merge_req(&other_prime, &other_candidate, true),
            )
            .await,
            Code::FailedPrecondition,
            "MERGE_OWNER_NOT_IN_PRIME_DOMAIN",
        );
        assert_eq!(details(&e).metadata["domain_name"], "example.com");

        // The candidate holds a VERIFIED domain.
        let holder = create_org(&env, "user_o", "Holder").await;
        verified_domain(&env, "user_o", &holder, "holder.test").await;
        let e = expect_err(
            merge(&env, "user_o", merge_req(&prime, &holder, true)).await,
            Code::FailedPrecondition,
            "MERGE_CANDIDATE_HAS_VERIFIED_DOMAIN",
        );
        assert_eq!(details(&e).metadata["domain_name"], "holder.test");

        // An operator, or a child of one (ORG-13).
        let operator = create_org_of(&env, "user_o", "Operator", OrganizationKind::Operator).await;
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &operator, true)).await,
            Code::FailedPrecondition,
            "MERGE_HIERARCHY_UNSUPPORTED",
        );
        let child = env
            .client()
            .create_child_organization(env.as_user(
                "user_o",
                CreateChildOrganizationRequest {
                    operator_organization_id: operator.clone(),
                    organization: Some(Organization {
                        name: "Child".into(),
                        ..Default::default()
                    }),
                    owner_email: "user_o@acme.test".into(),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        env.client()
            .accept_invite(env.as_user(
                "user_o",
                AcceptInviteRequest {
                    invite_id: child.owner_invite.unwrap().id,
                },
            ))
            .await
            .unwrap();
        let child_id = child.organization.unwrap().id;
        let e = expect_err(
            merge(&env, "user_o", merge_req(&child_id, &candidate, true)).await,
            Code::FailedPrecondition,
            "MERGE_HIERARCHY_UNSUPPORTED",
        );
        assert_eq!(details(&e).metadata["organization_id"], child_id);

        // A deleted organization.
        let gone = create_org(&env, "user_o", "Gone").await;
        env.client()
            .delete_organization(env.as_user(
                "user_o",
                DeleteOrganizationRequest {
                    organization_id: gone.clone(),
                    confirm_name: "Gone".into(),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap();
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &gone, false)).await,
            Code::FailedPrecondition,
            "ORGANIZATION_DELETED",
        );

        // The workspace service does not answer.
        env.workspaces.down.store(true, Ordering::SeqCst);
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &candidate, true)).await,
            Code::Unavailable,
            "WORKSPACE_SERVICE_UNAVAILABLE",
        );
        env.workspaces.down.store(false, Ordering::SeqCst);

        // Refusals are audited as failures in both organizations (ORG-10); previews and
        // NOT_FOUND are not.
        for (org, reason) in [
            (&prime, "INSUFFICIENT_ROLE"),
            (&foreign, "INSUFFICIENT_ROLE"),
            (&prime, "ORGANIZATION_DELETED"),
            (&gone, "ORGANIZATION_DELETED"),
        ] {
            let rows = audit_rows(&env, org, "organization.merge").await;
            assert!(
                rows.iter()
                    .any(|r| r.outcome == Outcome::Failure as i32 && r.error_reason == reason),
                "{backend:?} {org}: {reason} in {rows:?}"
            );
        }
        // Nothing merged.
        let got = env
            .client()
            .get_organization(env.as_user(
                "user_o",
                GetOrganizationRequest {
                    organization_id: candidate.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap();
        assert_eq!(got.state(), OrganizationState::Active);
    }
}
