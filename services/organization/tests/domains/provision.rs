//! AUTO_ENROLL through identity's `UserEmailVerified`, and the internal LookupDomain,
//! ProvisionMember (with SCIM's `set_role`) and DeprovisionMember (rules ORG-14, ID-13, ID-14):
//! service principals only, exactly once.

use std::time::Duration;

use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{Event, UserEmailVerified};
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::{Backend, Rig};

fn member_added(events: &[Event], org: &str, user: &str) -> Vec<i32> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::MemberAdded(m)) if m.organization_id == org && m.user_id == user => {
                Some(m.role)
            }
            _ => None,
        })
        .collect()
}

async fn role_of(rig: &Rig, org: &str, user: &str) -> Option<i32> {
    rig.client()
        .get_member(rig.as_service(GetMemberRequest {
            organization_id: org.into(),
            user_id: user.into(),
        }))
        .await
        .ok()
        .map(|m| m.into_inner().member.unwrap().role)
}

async fn auto_enroll(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    let plain = create_org(&env, "user_bo", "Plain").await;
    verified(
        &env,
        "user_ada",
        &org.id,
        "auto.test",
        DomainPolicy::AutoEnroll,
    )
    .await;
    verified(&env, "user_bo", &plain.id, "auto.test", DomainPolicy::None).await;
    let start = env.org.outbox().head().await.unwrap().revision;
    let verified_email = |user: &str, email: &str| {
        Payload::UserEmailVerified(UserEmailVerified {
            user_id: user.into(),
            email: email.into(),
        })
    };
    // Twice (a redelivery): one membership, one event.
    env.publish_identity(verified_email("user_new", "New.Person@AUTO.test"))
        .await;
    env.publish_identity(verified_email("user_new", "New.Person@AUTO.test"))
        .await;
    // Another domain, and the OWNER (already a member): nothing.
    env.publish_identity(verified_email("user_other", "x@elsewhere.test"))
        .await;
    env.publish_identity(verified_email("user_ada", "ada@auto.test"))
        .await;
    let mut role = None;
    for _ in 0..100 {
        role = role_of(&env, &org.id, "user_new").await;
        if role.is_some() && env.org.identity_events().applied_revision() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(role, Some(OrgRole::User as i32));
    assert_eq!(
        role_of(&env, &plain.id, "user_new").await,
        None,
        "NONE does not enroll"
    );
    assert_eq!(role_of(&env, &org.id, "user_other").await, None);
    assert_eq!(
        role_of(&env, &org.id, "user_ada").await,
        Some(OrgRole::Owner as i32)
    );
    let events = env.events_after(start, 0).await;
    assert_eq!(
        member_added(&events, &org.id, "user_new"),
        vec![OrgRole::User as i32]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::MemberAdded(_))))
            .count(),
        1
    );
    let records = env.audit_log("user_ada", &org.id).await;
    let enrolled: Vec<_> = records
        .iter()
        .filter(|e| e.action == "member.provision" && e.error_reason.is_empty())
        .collect();
    assert_eq!(enrolled.len(), 1);
    assert_eq!(
        field(&enrolled[0].after, "source").as_deref(),
        Some("auto_enroll")
    );
    assert_eq!(
        field(&enrolled[0].after, "email").as_deref(),
        Some("new.person@auto.test")
    );
    assert_eq!(enrolled[0].resource_id, "user_new");
}

#[tokio::test]
async fn org_14_auto_enroll_through_user_email_verified_exactly_once_sqlite() {
    auto_enroll(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_14_auto_enroll_through_user_email_verified_exactly_once_postgres() {
    auto_enroll(Backend::Postgres).await;
}

#[tokio::test]
async fn org_14_lookup_domain_names_verified_holders_and_inviters_to_services_only() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let other = create_org(&env, "user_bo", "Other").await;
    let mut c = env.client();
    c.create_invite(env.as_user("user_bo", invite_req(&other.id, "ada.l@acme.test")))
        .await
        .unwrap();
    let d = verified(
        &env,
        "user_ada",
        &org.id,
        "acme.test",
        DomainPolicy::Restricted,
    )
    .await;
    verified(
        &env,
        "user_bo",
        &other.id,
        "acme.test",
        DomainPolicy::Blocked,
    )
    .await;
    create_domain(&env, "user_bo", &other.id, "acme2.test", DomainPolicy::None).await;
    let lookup = |email: &str| LookupDomainRequest {
        email: email.into(),
    };
    expect_err(
        c.lookup_domain(env.as_user("user_ada", lookup("ada.l@acme.test")))
            .await,
        Code::PermissionDenied,
        "SERVICE_PRINCIPAL_REQUIRED",
    );
    let found = c
        .lookup_domain(env.as_service(lookup(" Ada.L@ACME.Test ")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.canonical_email, "Ada.L@acme.test");
    let mut holders: Vec<(String, i32)> = found
        .verified_domains
        .iter()
        .map(|v| (v.organization_id.clone(), v.policy))
        .collect();
    holders.sort();
    let mut expected = vec![
        (org.id.clone(), DomainPolicy::Restricted as i32),
        (other.id.clone(), DomainPolicy::Blocked as i32),
    ];
    expected.sort();
    assert_eq!(holders, expected);
    assert!(
        found
            .verified_domains
            .iter()
            .any(|v| v.domain_id == d.id && v.domain_name == "acme.test")
    );
    assert_eq!(found.invited_organization_ids, vec![other.id.clone()]);
    let none = c
        .lookup_domain(env.as_service(lookup("x@acme2.test")))
        .await
        .unwrap()
        .into_inner();
    assert!(none.verified_domains.is_empty() && none.invited_organization_ids.is_empty());
    expect_err(
        c.lookup_domain(env.as_service(lookup("\u{FF41}da@acme.test")))
            .await,
        Code::InvalidArgument,
        "EMAIL_CONFUSABLE_CHARACTERS",
    );
    expect_err(
        c.lookup_domain(env.as_service(lookup("not an address")))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

fn provision(org: &str, user: &str, role: OrgRole, request_id: &str) -> ProvisionMemberRequest {
    ProvisionMemberRequest {
        organization_id: org.into(),
        user_id: user.into(),
        role: role as i32,
        request_id: request_id.into(),
        source: "sso_jit".into(),
        set_role: false,
    }
}

async fn provision_member(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    let mut c = env.client();
    let start = env.org.outbox().head().await.unwrap().revision;
    expect_err(
        c.provision_member(env.as_user(
            "user_ada",
            provision(&org.id, "user_jit", OrgRole::User, "r1"),
        ))
        .await,
        Code::PermissionDenied,
        "SERVICE_PRINCIPAL_REQUIRED",
    );
    expect_err(
        c.provision_member(env.with_key(
            &format!("opk_admin_{}", org.id),
            provision(&org.id, "user_jit", OrgRole::User, "r1"),
        ))
        .await,
        Code::PermissionDenied,
        "SERVICE_PRINCIPAL_REQUIRED",
    );
    for role in [OrgRole::Owner, OrgRole::Unspecified] {
        let r = c
            .provision_member(env.as_service(provision(&org.id, "user_jit", role, "r0")))
            .await;
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
    }
    // Eight concurrent calls with one request id: one member, one event, one answer.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut c, req) = (
            env.client(),
            env.as_service(provision(
                &org.id,
                "user_jit",
                OrgRole::Developer,
                "req-jit-1",
            )),
        );
        tasks.push(tokio::spawn(async move {
            c.provision_member(req).await.map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    let first = answers[0];
    assert!(first.created && first.revision > start);
    assert_eq!(first.role, OrgRole::Developer as i32);
    assert!(answers.iter().all(|a| *a == first), "{answers:?}");
    let later = c
        .provision_member(env.as_service(provision(
            &org.id,
            "user_jit",
            OrgRole::Developer,
            "req-jit-1",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later, first, "a retry gets the first answer");
    // An existing member keeps their role.
    let other = c
        .provision_member(env.as_service(provision(
            &org.id,
            "user_jit",
            OrgRole::Admin,
            "req-jit-2",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (other.created, other.role, other.revision),
        (false, OrgRole::Developer as i32, 0)
    );
    let events = env.events_after(start, 0).await;
    assert_eq!(
        member_added(&events, &org.id, "user_jit"),
        vec![OrgRole::Developer as i32]
    );
    let records = env.audit_log("user_ada", &org.id).await;
    let provisioned: Vec<_> = records
        .iter()
        .filter(|e| e.action == "member.provision" && e.error_reason.is_empty())
        .collect();
    assert_eq!(provisioned.len(), 1);
    assert_eq!(
        field(&provisioned[0].after, "source").as_deref(),
        Some("sso_jit")
    );
    // A BLOCKED domain, an unknown user, a deleted organization.
    verified(
        &env,
        "user_ada",
        &org.id,
        "blocked.test",
        DomainPolicy::Blocked,
    )
    .await;
    env.identity
        .set("user_blk", |u| u.email = "b@Blocked.test".into());
    expect_err(
        c.provision_member(env.as_service(provision(&org.id, "user_blk", OrgRole::User, "r3")))
            .await,
        Code::FailedPrecondition,
        "EMAIL_DOMAIN_BLOCKED",
    );
    expect_err(
        c.provision_member(env.as_service(provision(&org.id, "user_unknown", OrgRole::User, "r4")))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    c.delete_organization(env.as_user(
        "user_ada",
        DeleteOrganizationRequest {
            organization_id: org.id.clone(),
            confirm_name: "Acme".into(),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    expect_err(
        c.provision_member(env.as_service(provision(&org.id, "user_late", OrgRole::User, "r5")))
            .await,
        Code::FailedPrecondition,
        "ORGANIZATION_DELETED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_13_provision_member_is_idempotent_under_concurrent_calls_sqlite() {
    provision_member(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_13_provision_member_is_idempotent_under_concurrent_calls_postgres() {
    provision_member(Backend::Postgres).await;
}

// ----- SCIM: set_role and DeprovisionMember (rule ID-14) -----------------------------------------

fn scim_provision(
    org: &str,
    user: &str,
    role: OrgRole,
    request_id: &str,
) -> ProvisionMemberRequest {
    ProvisionMemberRequest {
        source: "scim".into(),
        set_role: true,
        ..provision(org, user, role, request_id)
    }
}

fn deprovision(org: &str, user: &str, request_id: &str) -> DeprovisionMemberRequest {
    DeprovisionMemberRequest {
        organization_id: org.into(),
        user_id: user.into(),
        request_id: request_id.into(),
        source: "scim".into(),
    }
}

fn role_changes(events: &[Event], org: &str, user: &str) -> Vec<(i32, i32)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::MemberRoleChanged(m))
                if m.organization_id == org && m.user_id == user =>
            {
                Some((m.old_role, m.new_role))
            }
            _ => None,
        })
        .collect()
}

fn removals(events: &[Event], org: &str, user: &str) -> Vec<i32> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::MemberRemoved(m)) if m.organization_id == org && m.user_id == user => {
                Some(m.old_role)
            }
            _ => None,
        })
        .collect()
}

async fn set_role(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    add_user(&env, &org.id, "user_ada", "user_sam").await;
    let mut c = env.client();
    let start = env.org.outbox().head().await.unwrap().revision;
    // A member's role becomes the role asked for, once per request id.
    let first = c
        .provision_member(env.as_service(scim_provision(
            &org.id,
            "user_sam",
            OrgRole::Developer,
            "scim:u1:2",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.role, first.created),
        (OrgRole::Developer as i32, false)
    );
    assert!(first.revision > start);
    let retry = c
        .provision_member(env.as_service(scim_provision(
            &org.id,
            "user_sam",
            OrgRole::Developer,
            "scim:u1:2",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first, "a retry gets the first answer");
    assert_eq!(
        role_of(&env, &org.id, "user_sam").await,
        Some(OrgRole::Developer as i32)
    );
    // The role it has already: nothing changes.
    let same = c
        .provision_member(env.as_service(scim_provision(
            &org.id,
            "user_sam",
            OrgRole::Developer,
            "scim:u1:3",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((same.role, same.revision), (OrgRole::Developer as i32, 0));
    // The OWNER keeps their role and is told so.
    let owner = c
        .provision_member(env.as_service(scim_provision(
            &org.id,
            "user_ada",
            OrgRole::User,
            "scim:u0:1",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (owner.role, owner.created, owner.revision),
        (OrgRole::Owner as i32, false, 0)
    );
    assert_eq!(
        role_of(&env, &org.id, "user_ada").await,
        Some(OrgRole::Owner as i32)
    );
    // Control: without set_role an existing member keeps their role.
    let kept = c
        .provision_member(env.as_service(ProvisionMemberRequest {
            set_role: false,
            ..scim_provision(&org.id, "user_sam", OrgRole::Admin, "scim:u1:4")
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((kept.role, kept.revision), (OrgRole::Developer as i32, 0));
    let events = env.events_after(start, 0).await;
    assert_eq!(
        role_changes(&events, &org.id, "user_sam"),
        vec![(OrgRole::User as i32, OrgRole::Developer as i32)],
        "one MemberRoleChanged, as UpdateMemberRole publishes it"
    );
    assert!(role_changes(&events, &org.id, "user_ada").is_empty());
    let records = env.audit_log("user_ada", &org.id).await;
    let changed: Vec<_> = records
        .iter()
        .filter(|e| e.action == "member.update_role" && e.resource_id == "user_sam")
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(field(&changed[0].after, "source").as_deref(), Some("scim"));
    assert_eq!(
        field(&changed[0].after, "role").as_deref(),
        Some("ORG_ROLE_DEVELOPER")
    );
    assert_eq!(
        field(&changed[0].before, "role").as_deref(),
        Some("ORG_ROLE_USER")
    );
}

#[tokio::test]
async fn id_14_provision_member_set_role_changes_a_members_role_once_never_the_owners_sqlite() {
    set_role(Backend::Sqlite).await;
}

#[tokio::test]
async fn id_14_provision_member_set_role_changes_a_members_role_once_never_the_owners_postgres() {
    set_role(Backend::Postgres).await;
}

async fn deprovision_member(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    add_user(&env, &org.id, "user_ada", "user_sam").await;
    add_user(&env, &org.id, "user_ada", "user_kim").await;
    let mut c = env.client();
    let start = env.org.outbox().head().await.unwrap().revision;
    // Services only; required fields.
    expect_err(
        c.deprovision_member(env.as_user("user_ada", deprovision(&org.id, "user_sam", "d0")))
            .await,
        Code::PermissionDenied,
        "SERVICE_PRINCIPAL_REQUIRED",
    );
    expect_err(
        c.deprovision_member(env.with_key(
            &format!("opk_admin_{}", org.id),
            deprovision(&org.id, "user_sam", "d0"),
        ))
        .await,
        Code::PermissionDenied,
        "SERVICE_PRINCIPAL_REQUIRED",
    );
    for bad in [
        deprovision(&org.id, "user_sam", ""),
        deprovision(&org.id, "", "d0"),
        deprovision("", "user_sam", "d0"),
        DeprovisionMemberRequest {
            source: "sso_jit".into(),
            ..deprovision(&org.id, "user_sam", "d0")
        },
    ] {
        let r = c.deprovision_member(env.as_service(bad.clone())).await;
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument, "{bad:?}");
    }
    expect_err(
        c.deprovision_member(env.as_service(deprovision("org_unknown", "user_sam", "d0")))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // The OWNER cannot be removed.
    expect_err(
        c.deprovision_member(env.as_service(deprovision(&org.id, "user_ada", "d1")))
            .await,
        Code::FailedPrecondition,
        "OWNERSHIP_TRANSFER_REQUIRED",
    );
    // Eight concurrent calls with one request id: one removal, one event, one answer.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut c, req) = (
            env.client(),
            env.as_service(deprovision(&org.id, "user_sam", "scim:u1:5")),
        );
        tasks.push(tokio::spawn(async move {
            c.deprovision_member(req).await.map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    let first = answers[0];
    assert!(first.removed && first.revision > start, "{first:?}");
    assert!(answers.iter().all(|a| *a == first), "{answers:?}");
    assert_eq!(role_of(&env, &org.id, "user_sam").await, None);
    let retry = c
        .deprovision_member(env.as_service(deprovision(&org.id, "user_sam", "scim:u1:5")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first, "a retry gets the first answer");
    // No longer a member: not an error, nothing removed.
    let again = c
        .deprovision_member(env.as_service(deprovision(&org.id, "user_sam", "scim:u1:6")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.removed, again.revision), (false, 0));
    // Provisioned again, then removed again: each change once.
    c.provision_member(env.as_service(scim_provision(
        &org.id,
        "user_sam",
        OrgRole::User,
        "scim:u1:7",
    )))
    .await
    .unwrap();
    let second = c
        .deprovision_member(env.as_service(deprovision(&org.id, "user_sam", "scim:u1:8")))
        .await
        .unwrap()
        .into_inner();
    assert!(second.removed && second.revision > first.revision);
    assert_eq!(
        role_of(&env, &org.id, "user_kim").await,
        Some(OrgRole::User as i32),
        "the other member stays"
    );
    let events = env.events_after(start, 0).await;
    assert_eq!(
        removals(&events, &org.id, "user_sam"),
        vec![OrgRole::User as i32, OrgRole::User as i32],
        "MemberRemoved, as RemoveMember publishes it (the workspaces drop the member, WS-9)"
    );
    assert!(removals(&events, &org.id, "user_ada").is_empty());
    let records = env.audit_log("user_ada", &org.id).await;
    let removed: Vec<_> = records
        .iter()
        .filter(|e| e.action == "member.deprovision" && e.error_reason.is_empty())
        .collect();
    assert_eq!(removed.len(), 2);
    assert_eq!(field(&removed[0].before, "source").as_deref(), Some("scim"));
    assert_eq!(removed[0].resource_id, "user_sam");
    assert!(
        records
            .iter()
            .any(|e| e.action == "member.deprovision"
                && e.error_reason == "OWNERSHIP_TRANSFER_REQUIRED"),
        "the refusal is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_deprovision_member_removes_once_refuses_the_owner_services_only_sqlite() {
    deprovision_member(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_deprovision_member_removes_once_refuses_the_owner_services_only_postgres() {
    deprovision_member(Backend::Postgres).await;
}
