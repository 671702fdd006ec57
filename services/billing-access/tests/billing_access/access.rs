//! BILL-1: OWNER, ADMIN and BILLING may view and manage billing, learned only from organization
//! events; read-your-writes with `min_organization_revision`.

use std::time::Duration;

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::check_billing_access_request::Subject;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{MemberRoleChanged, OrganizationDeleted};
use orgplane_proto::organization::v1::OrgRole;
use tonic::Code;

use crate::support::{Backend, Rig, reason};

fn check(org: &str, user: &str, min: i64) -> CheckBillingAccessRequest {
    CheckBillingAccessRequest {
        organization_id: org.into(),
        subject: Some(Subject::UserId(user.into())),
        min_organization_revision: min,
    }
}

#[tokio::test]
async fn bill_1_owner_admin_billing_may_see_billing_others_are_denied_outsiders_not_found() {
    let rig = Rig::sqlite().await;
    let mut c = rig.client();
    let get = || GetBillingAccountRequest {
        organization_id: "org_a".into(),
    };
    // Before the organization service said anything, nobody is a member: NOT_FOUND.
    let err = c
        .get_billing_account(rig.as_user("org_a_owner", get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    rig.create_org(
        "org_a",
        &[
            ("u_admin", OrgRole::Admin),
            ("u_billing", OrgRole::Billing),
            ("u_dev", OrgRole::Developer),
            ("u_user", OrgRole::User),
        ],
    )
    .await;
    rig.create_org("org_b", &[]).await;
    for user in ["org_a_owner", "u_admin", "u_billing"] {
        let account = c
            .get_billing_account(rig.as_user(user, get()))
            .await
            .unwrap()
            .into_inner()
            .billing_account
            .unwrap();
        assert_eq!(account.organization_id, "org_a");
    }
    for user in ["u_dev", "u_user"] {
        let err = c
            .get_billing_account(rig.as_user(user, get()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{user}");
        assert_eq!(reason(&err), "INSUFFICIENT_ROLE");
    }
    for user in ["org_b_owner", "stranger"] {
        let err = c
            .get_billing_account(rig.as_user(user, get()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{user}");
    }
    // Admin API keys act as ADMIN in their own organization only; workspace keys never.
    c.get_billing_account(rig.as_key("opk_admin_org_a", get()))
        .await
        .unwrap();
    let err = c
        .get_billing_account(rig.as_key("opk_admin_org_b", get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_billing_account(rig.as_key("opk_ws_org_a", get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Service principals are not billing users.
    let err = c
        .get_billing_account(rig.as_service(get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The billing members: OWNER, ADMIN, BILLING, by user id, paginated.
    let list = |token: String| ListBillingMembersRequest {
        organization_id: "org_a".into(),
        page_size: 2,
        page_token: token,
    };
    let first = c
        .list_billing_members(rig.as_user("u_billing", list(String::new())))
        .await
        .unwrap()
        .into_inner();
    let second = c
        .list_billing_members(rig.as_user("u_billing", list(first.next_page_token.clone())))
        .await
        .unwrap()
        .into_inner();
    let all: Vec<(String, i32)> = first
        .billing_members
        .iter()
        .chain(&second.billing_members)
        .map(|m| (m.user_id.clone(), m.org_role))
        .collect();
    assert_eq!(
        all,
        vec![
            ("org_a_owner".to_string(), OrgRole::Owner as i32),
            ("u_admin".to_string(), OrgRole::Admin as i32),
            ("u_billing".to_string(), OrgRole::Billing as i32),
        ]
    );
    assert!(second.next_page_token.is_empty());
    let err = c
        .list_billing_members(rig.as_user("u_dev", list(String::new())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // CheckBillingAccess: answers, not errors; users only about themselves.
    let mut svc = rig.client();
    for (user, allowed, role) in [
        ("org_a_owner", true, OrgRole::Owner),
        ("u_billing", true, OrgRole::Billing),
        ("u_dev", false, OrgRole::Developer),
        ("stranger", false, OrgRole::Unspecified),
    ] {
        let r = svc
            .check_billing_access(rig.as_service(check("org_a", user, 0)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.allowed, r.org_role), (allowed, role as i32), "{user}");
    }
    let mine = svc
        .check_billing_access(rig.as_user("u_admin", check("org_a", "u_admin", 0)))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.allowed);
    let err = svc
        .check_billing_access(rig.as_user("u_admin", check("org_a", "u_dev", 0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let key_check = |key: &str| CheckBillingAccessRequest {
        organization_id: "org_a".into(),
        subject: Some(Subject::ApiKeyId(format!("key_{key}"))),
        min_organization_revision: 0,
    };
    let r = svc
        .check_billing_access(rig.as_key("opk_admin_org_a", key_check("opk_admin_org_a")))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.org_role, OrgRole::Admin as i32);
    let r = svc
        .check_billing_access(rig.as_key("opk_ws_org_a", key_check("opk_ws_org_a")))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);

    // A deleted organization grants nothing.
    let rev = rig
        .org_events(vec![Payload::OrganizationDeleted(OrganizationDeleted {
            organization_id: "org_a".into(),
            purge_time: None,
        })])
        .await;
    let r = svc
        .check_billing_access(rig.as_service(check("org_a", "org_a_owner", rev)))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);
    let err = c
        .get_billing_account(rig.as_user("org_a_owner", get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn demote_then_check(rig: &Rig, repetitions: usize) {
    rig.create_org("org_d", &[("u_b", OrgRole::Billing)]).await;
    let mut c = rig.client();
    let change = |old: OrgRole, new: OrgRole| {
        Payload::MemberRoleChanged(MemberRoleChanged {
            organization_id: "org_d".into(),
            user_id: "u_b".into(),
            old_role: old as i32,
            new_role: new as i32,
        })
    };
    for i in 0..repetitions {
        // Demote: the very next check with the returned revision must deny.
        let rev = rig
            .org_events(vec![change(OrgRole::Billing, OrgRole::User)])
            .await;
        let r = c
            .check_billing_access(rig.as_service(check("org_d", "u_b", rev)))
            .await
            .unwrap()
            .into_inner();
        assert!(!r.allowed, "repetition {i}: a demoted member was allowed");
        assert!(r.organization_revision >= rev);
        // Promote again, checked the same way through the header.
        let rev = rig
            .org_events(vec![change(OrgRole::User, OrgRole::Billing)])
            .await;
        let mut req = rig.as_service(check("org_d", "u_b", 0));
        req.metadata_mut().insert(
            "x-min-organization-revision",
            rev.to_string().parse().unwrap(),
        );
        let r = c.check_billing_access(req).await.unwrap().into_inner();
        assert!(r.allowed, "repetition {i}: a promoted member was denied");
    }
}

#[tokio::test]
async fn bill_1_demote_then_check_with_the_revision_denies_1000_times() {
    let rig = Rig::sqlite().await;
    demote_then_check(&rig, 1000).await;
}

#[tokio::test]
async fn bill_1_demote_then_check_with_the_revision_denies_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    demote_then_check(&rig, 1000).await;
}

#[tokio::test]
async fn bill_1_unreached_revision_is_unavailable_never_a_stale_answer() {
    let rig = Rig::sqlite().await;
    let rev = rig.create_org("org_r", &[]).await;
    let mut c = rig.client();
    let mut req = rig.as_service(check("org_r", "org_r_owner", rev + 100));
    req.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = c.check_billing_access(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "REVISION_NOT_YET_APPLIED");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same wait guards every other RPC through the header.
    let mut req = rig.as_user(
        "org_r_owner",
        GetBillingAccountRequest {
            organization_id: "org_r".into(),
        },
    );
    req.metadata_mut().insert(
        "x-min-organization-revision",
        (rev + 100).to_string().parse().unwrap(),
    );
    req.set_timeout(Duration::from_millis(200));
    let err = c.get_billing_account(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let mut req = rig.as_user(
        "org_r_owner",
        GetBillingAccountRequest {
            organization_id: "org_r".into(),
        },
    );
    req.metadata_mut()
        .insert("x-min-organization-revision", "soon".parse().unwrap());
    let err = c.get_billing_account(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn start_does_not_block_and_reports_serving_once_both_consumers_caught_up() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let rig = Rig::sqlite().await;
    let _ = &rig.health;
    let mut health = HealthClient::new(rig.server.channel());
    let name = "orgplane.billing.v1.BillingAccessService";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rig.service.organization_events().is_caught_up());
    assert!(rig.service.workspace_events().is_caught_up());
}
