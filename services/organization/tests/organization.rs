//! The organization service over real gRPC on loopback (rules ORG-1 … ORG-12), on SQLite and,
//! for the key paths, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
#[path = "organization/listing.rs"]
mod listing;
#[path = "organization/roles.rs"]
mod roles;
#[path = "organization/units.rs"]
mod units;

use std::collections::HashSet;
use std::time::Duration;

use harness::{Backend, Rig};
use orgplane_platform::error::reason_of;
use orgplane_proto::audit::v1::AuditEventFilter;
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::{
    Event, Producer, UserDeleted, UserProfileChanged, WatchRequest, WorkspaceCreated,
    event::Payload,
};
use orgplane_proto::organization::v1::*;
use prost_types::FieldMask;
use tonic::Code;

fn expect_err<T: std::fmt::Debug>(
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

async fn create_org(rig: &Rig, owner: &str, name: &str) -> Organization {
    rig.client()
        .create_organization(rig.as_user(
            owner,
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: name.into(),
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

async fn member_role(rig: &Rig, org: &str, user: &str) -> Option<OrgRole> {
    let r = rig
        .client()
        .get_member(rig.as_service(GetMemberRequest {
            organization_id: org.into(),
            user_id: user.into(),
        }))
        .await;
    match r {
        Ok(m) => Some(OrgRole::try_from(m.into_inner().member.unwrap().role).unwrap()),
        Err(e) if e.code() == Code::NotFound => None,
        Err(e) => panic!("{e:?}"),
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    })
}

// ------------------------------------------------------------------------------------- ORG-1

#[tokio::test]
async fn org_1_create_makes_the_verified_business_creator_owner_with_unique_names() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let mut c = rig.client();
    let req = |name: &str, rid: &str| CreateOrganizationRequest {
        organization: Some(Organization {
            name: name.into(),
            r#type: OrganizationType::Company as i32,
            primary_email: "Billing@Acme.example".into(),
            ..Default::default()
        }),
        request_id: rid.into(),
    };
    let rid = "0190a6a4-5d2e-7000-8000-000000000001";
    let created = c
        .create_organization(rig.as_user("user_ada", req("  Acme  ", rid)))
        .await
        .unwrap()
        .into_inner();
    let org = created.organization.clone().unwrap();
    assert!(org.id.starts_with("org_"));
    assert_eq!(org.name, "Acme");
    assert_eq!(org.state, OrganizationState::Active as i32);
    assert_eq!(org.owner_user_id, "user_ada");
    assert_eq!(org.primary_email, "billing@acme.example");
    assert!(created.revision >= 2, "OrganizationCreated and MemberAdded");
    assert_eq!(
        member_role(&rig, &org.id, "user_ada").await,
        Some(OrgRole::Owner)
    );

    // The same request id returns the first result.
    let again = c
        .create_organization(rig.as_user("user_ada", req("Acme", rid)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.organization.unwrap().id, org.id);

    // Unique per creator, ignoring case; another account may use the name.
    expect_err(
        c.create_organization(rig.as_user("user_ada", req("ACME", "")))
            .await,
        Code::AlreadyExists,
        Some("ORGANIZATION_NAME_TAKEN"),
    );
    c.create_organization(rig.as_user("user_bob", req("acme", "")))
        .await
        .unwrap();
    // ORG-2: one account may own several organizations.
    c.create_organization(rig.as_user("user_ada", req("Acme Labs", "")))
        .await
        .unwrap();

    // Validation.
    for bad in ["", "   ", &"x".repeat(101), "bad\u{1}name"] {
        expect_err(
            c.create_organization(rig.as_user("user_ada", req(bad, "")))
                .await,
            Code::InvalidArgument,
            None,
        );
    }
    let mut bad_email = req("Other", "");
    bad_email.organization.as_mut().unwrap().primary_email = "not-an-email".into();
    expect_err(
        c.create_organization(rig.as_user("user_ada", bad_email))
            .await,
        Code::InvalidArgument,
        None,
    );

    // ID-1: only verified business accounts.
    rig.identity.set("user_personal", |u| {
        u.account_type = orgplane_proto::identity::v1::AccountType::Personal as i32
    });
    rig.identity
        .set("user_unverified", |u| u.email_verified = false);
    expect_err(
        c.create_organization(rig.as_user("user_personal", req("P", "")))
            .await,
        Code::FailedPrecondition,
        Some("BUSINESS_ACCOUNT_REQUIRED"),
    );
    expect_err(
        c.create_organization(rig.as_user("user_unverified", req("U", "")))
            .await,
        Code::FailedPrecondition,
        Some("EMAIL_NOT_VERIFIED"),
    );
    // API keys cannot create organizations.
    expect_err(
        c.create_organization(rig.with_key(&format!("opk_admin_{}", org.id), req("K", "")))
            .await,
        Code::PermissionDenied,
        Some("USER_CREDENTIALS_REQUIRED"),
    );

    // Creation is audited.
    let audit = c
        .list_audit_events(rig.as_user(
            "user_ada",
            ListAuditEventsRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit
            .audit_events
            .iter()
            .any(|e| e.action == "organization.create")
    );
}

#[tokio::test]
async fn id_1_identity_unreachable_is_unavailable_never_internal() {
    let rig = Rig::with(Backend::Sqlite, |rt| {
        rt.endpoints.identity = orgplane_platform::testkit::channel("http://127.0.0.1:9").into();
    })
    .await
    .unwrap();
    expect_err(
        rig.client()
            .create_organization(rig.as_user(
                "user_ada",
                CreateOrganizationRequest {
                    organization: Some(Organization {
                        name: "Acme".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await,
        Code::Unavailable,
        Some("IDENTITY_UNAVAILABLE"),
    );
}

// ------------------------------------------------------------------------------------- ORG-2

/// Every RPC, called by a member of another organization against org A and its resources,
/// answers NOT_FOUND and reveals nothing.
#[tokio::test]
async fn org_2_isolation_every_rpc_is_not_found_for_a_member_of_another_org() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let a = create_org(&rig, "user_a", "Org A").await;
    let _b = create_org(&rig, "user_mallory", "Org B").await;
    rig.add_member(&a.id, "user_a", "user_a2", OrgRole::Admin)
        .await;
    let mut c = rig.client();
    let unit = c
        .create_unit(rig.as_user(
            "user_a",
            CreateUnitRequest {
                organization_id: a.id.clone(),
                unit: Some(Unit {
                    name: "Sales".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    let inv = c
        .create_invite(rig.as_user(
            "user_a",
            CreateInviteRequest {
                organization_id: a.id.clone(),
                invite: Some(Invite {
                    email: "someone@example.com".into(),
                    role: OrgRole::User as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();

    let m = "user_mallory";
    let org_id = a.id.clone();
    let nf = |r: Result<(), tonic::Status>, rpc: &str| {
        let e = r.expect_err(rpc);
        assert_eq!(e.code(), Code::NotFound, "{rpc}: {e:?}");
        assert!(!e.message().contains("Org A"), "{rpc} leaks the name");
    };
    macro_rules! call {
        ($method:ident, $req:expr) => {
            c.$method(rig.as_user(m, $req)).await.map(|_| ())
        };
    }
    nf(
        call!(
            get_organization,
            GetOrganizationRequest {
                organization_id: org_id.clone()
            }
        ),
        "GetOrganization",
    );
    nf(
        call!(
            update_organization,
            UpdateOrganizationRequest {
                organization: Some(Organization {
                    id: org_id.clone(),
                    name: "X".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            }
        ),
        "UpdateOrganization",
    );
    nf(
        call!(
            delete_organization,
            DeleteOrganizationRequest {
                organization_id: org_id.clone(),
                confirm_name: "Org A".into(),
                etag: String::new(),
            }
        ),
        "DeleteOrganization",
    );
    nf(
        call!(
            undelete_organization,
            UndeleteOrganizationRequest {
                organization_id: org_id.clone(),
                etag: String::new()
            }
        ),
        "UndeleteOrganization",
    );
    nf(
        call!(
            list_members,
            ListMembersRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            }
        ),
        "ListMembers",
    );
    nf(
        call!(
            get_member,
            GetMemberRequest {
                organization_id: org_id.clone(),
                user_id: "user_a".into()
            }
        ),
        "GetMember",
    );
    nf(
        call!(
            update_member_role,
            UpdateMemberRoleRequest {
                organization_id: org_id.clone(),
                user_id: "user_a2".into(),
                role: OrgRole::User as i32,
                etag: String::new(),
            }
        ),
        "UpdateMemberRole",
    );
    nf(
        call!(
            remove_member,
            RemoveMemberRequest {
                organization_id: org_id.clone(),
                user_id: "user_a2".into()
            }
        ),
        "RemoveMember",
    );
    nf(
        call!(
            transfer_ownership,
            TransferOwnershipRequest {
                organization_id: org_id.clone(),
                new_owner_user_id: m.into()
            }
        ),
        "TransferOwnership",
    );
    nf(
        call!(
            create_invite,
            CreateInviteRequest {
                organization_id: org_id.clone(),
                invite: Some(Invite {
                    email: "x@example.com".into(),
                    role: OrgRole::User as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        ),
        "CreateInvite",
    );
    nf(
        call!(
            get_invite,
            GetInviteRequest {
                invite_id: inv.id.clone()
            }
        ),
        "GetInvite",
    );
    nf(
        call!(
            list_invites,
            ListInvitesRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            }
        ),
        "ListInvites",
    );
    nf(
        call!(
            delete_invite,
            DeleteInviteRequest {
                invite_id: inv.id.clone()
            }
        ),
        "DeleteInvite",
    );
    nf(
        call!(
            create_unit,
            CreateUnitRequest {
                organization_id: org_id.clone(),
                unit: Some(Unit {
                    name: "U".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        ),
        "CreateUnit",
    );
    nf(
        call!(
            get_unit,
            GetUnitRequest {
                unit_id: unit.id.clone()
            }
        ),
        "GetUnit",
    );
    nf(
        call!(
            list_units,
            ListUnitsRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            }
        ),
        "ListUnits",
    );
    nf(
        call!(
            update_unit,
            UpdateUnitRequest {
                unit: Some(Unit {
                    id: unit.id.clone(),
                    name: "V".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            }
        ),
        "UpdateUnit",
    );
    nf(
        call!(
            delete_unit,
            DeleteUnitRequest {
                unit_id: unit.id.clone(),
                etag: String::new()
            }
        ),
        "DeleteUnit",
    );
    nf(
        call!(
            list_audit_events,
            ListAuditEventsRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            }
        ),
        "ListAuditEvents",
    );
    nf(
        call!(
            get_security_policy,
            GetSecurityPolicyRequest {
                organization_id: org_id.clone()
            }
        ),
        "GetSecurityPolicy",
    );
    nf(
        call!(
            update_security_policy,
            policy_update(&org_id, &["mfa_requirement"], "", |p| {
                p.mfa_requirement = MfaRequirement::Optional as i32
            })
        ),
        "UpdateSecurityPolicy",
    );
    // A unit of org A as the parent of a unit of org B is not visible either.
    let b_id = _b.id.clone();
    nf(
        call!(
            create_unit,
            CreateUnitRequest {
                organization_id: b_id.clone(),
                unit: Some(Unit {
                    name: "U".into(),
                    parent_unit_id: unit.id.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        ),
        "CreateUnit(parent of A)",
    );
    // AcceptInvite: the invite id is the mailed capability; someone else's account is refused
    // without learning anything about the organization.
    let e = c
        .accept_invite(rig.as_user(
            m,
            AcceptInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&e).as_deref(), Some("INVITE_EMAIL_MISMATCH"));
    assert!(!e.message().contains("Org A"));
    // ListOrganizations shows only the caller's own; GetMyOrganization is for admin keys.
    let listed = c
        .list_organizations(rig.as_user(
            m,
            ListOrganizationsRequest {
                show_deleted: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.organizations.iter().all(|o| o.id != a.id));
    expect_err(
        c.get_my_organization(rig.as_user(m, GetMyOrganizationRequest {}))
            .await,
        Code::PermissionDenied,
        Some("ADMIN_API_KEY_REQUIRED"),
    );
    // An admin key of org B is just as blind to org A.
    let e = c
        .get_organization(rig.with_key(
            &format!("opk_admin_{b_id}"),
            GetOrganizationRequest {
                organization_id: org_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Nothing changed in org A.
    assert_eq!(
        member_role(&rig, &a.id, "user_a2").await,
        Some(OrgRole::Admin)
    );
    assert_eq!(member_role(&rig, &a.id, m).await, None);
}

// ------------------------------------------------------------------------------------- ORG-3

#[tokio::test]
async fn org_3_update_with_field_mask_and_etag() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_ada", "Acme").await;
    rig.add_member(&org.id, "user_ada", "user_dev", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    let upd = |name: &str, paths: &[&str], etag: &str| UpdateOrganizationRequest {
        organization: Some(Organization {
            id: org.id.clone(),
            name: name.into(),
            r#type: OrganizationType::Nonprofit as i32,
            primary_email: "hello@acme.example".into(),
            ..Default::default()
        }),
        update_mask: mask(paths),
        etag: etag.into(),
    };
    let updated = c
        .update_organization(rig.as_user("user_ada", upd("Acme Inc", &["name", "type"], &org.etag)))
        .await
        .unwrap()
        .into_inner();
    let o = updated.organization.unwrap();
    assert_eq!(o.name, "Acme Inc");
    assert_eq!(o.r#type, OrganizationType::Nonprofit as i32);
    assert_eq!(o.primary_email, "", "not in the mask");
    assert_ne!(o.etag, org.etag);
    assert!(updated.revision > 0);
    // The old etag is stale now.
    expect_err(
        c.update_organization(rig.as_user("user_ada", upd("Again", &["name"], &org.etag)))
            .await,
        Code::Aborted,
        None,
    );
    expect_err(
        c.update_organization(rig.as_user("user_ada", upd("X", &["id"], "")))
            .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        c.update_organization(rig.as_user("user_ada", upd("X", &[], "")))
            .await,
        Code::InvalidArgument,
        None,
    );
    // A DEVELOPER may read but not update.
    expect_err(
        c.update_organization(rig.as_user("user_dev", upd("X", &["name"], "")))
            .await,
        Code::PermissionDenied,
        None,
    );
    c.update_organization(rig.as_user("user_ada", upd("", &["primary_email"], &o.etag)))
        .await
        .unwrap();
    let got = c
        .get_organization(rig.as_user(
            "user_dev",
            GetOrganizationRequest {
                organization_id: org.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(got.primary_email, "hello@acme.example");
}

// ------------------------------------------------------------------------------------- ORG-4

async fn org_4_exactly_one_owner(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    // The owner cannot be removed or re-roled, even by an ADMIN, nor can OWNER be assigned.
    expect_err(
        c.remove_member(rig.as_user(
            "user_admin",
            RemoveMemberRequest {
                organization_id: org.id.clone(),
                user_id: "user_owner".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("OWNERSHIP_TRANSFER_REQUIRED"),
    );
    expect_err(
        c.remove_member(rig.as_user(
            "user_owner",
            RemoveMemberRequest {
                organization_id: org.id.clone(),
                user_id: "me".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("OWNERSHIP_TRANSFER_REQUIRED"),
    );
    expect_err(
        c.update_member_role(rig.as_user(
            "user_admin",
            UpdateMemberRoleRequest {
                organization_id: org.id.clone(),
                user_id: "user_owner".into(),
                role: OrgRole::User as i32,
                etag: String::new(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("OWNER_ROLE_IMMUTABLE"),
    );
    expect_err(
        c.update_member_role(rig.as_user(
            "user_owner",
            UpdateMemberRoleRequest {
                organization_id: org.id.clone(),
                user_id: "user_dev".into(),
                role: OrgRole::Owner as i32,
                etag: String::new(),
            },
        ))
        .await,
        Code::InvalidArgument,
        Some("OWNER_ROLE_NOT_ASSIGNABLE"),
    );
    // Transfer: owner only, with a recent sign-in, to a member.
    let transfer = |target: &str| TransferOwnershipRequest {
        organization_id: org.id.clone(),
        new_owner_user_id: target.into(),
    };
    expect_err(
        c.transfer_ownership(rig.as_user("user_admin", transfer("user_dev")))
            .await,
        Code::PermissionDenied,
        None,
    );
    expect_err(
        c.transfer_ownership(rig.as_user_signed_in_ago("user_owner", 600, transfer("user_dev")))
            .await,
        Code::Unauthenticated,
        Some("REAUTHENTICATION_REQUIRED"),
    );
    expect_err(
        c.transfer_ownership(rig.as_user("user_owner", transfer("user_stranger")))
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        c.transfer_ownership(rig.as_user("user_owner", transfer("user_owner")))
            .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        c.transfer_ownership(rig.with_key(&format!("opk_admin_{}", org.id), transfer("user_dev")))
            .await,
        Code::PermissionDenied,
        None,
    );
    let done = c
        .transfer_ownership(rig.as_user("user_owner", transfer("user_dev")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.organization.unwrap().owner_user_id, "user_dev");
    assert_eq!(done.new_owner.unwrap().role, OrgRole::Owner as i32);
    assert_eq!(done.previous_owner.unwrap().role, OrgRole::Admin as i32);
    assert!(done.revision > 0);
    assert_eq!(
        member_role(&rig, &org.id, "user_dev").await,
        Some(OrgRole::Owner)
    );
    assert_eq!(
        member_role(&rig, &org.id, "user_owner").await,
        Some(OrgRole::Admin)
    );
    // Exactly one OWNER.
    let members = c
        .list_members(rig.as_user(
            "user_dev",
            ListMembersRequest {
                organization_id: org.id.clone(),
                role: OrgRole::Owner as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user_id, "user_dev");
}

#[tokio::test]
async fn org_4_exactly_one_owner_and_transfer_ownership_sqlite() {
    org_4_exactly_one_owner(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_4_exactly_one_owner_and_transfer_ownership_postgres() {
    org_4_exactly_one_owner(Backend::Postgres).await;
}

// ------------------------------------------------------------------------------------- ORG-5

#[tokio::test]
async fn org_5_members_list_get_change_role_remove_and_admin_key_limits() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    for (u, r) in [
        ("user_admin", OrgRole::Admin),
        ("user_admin2", OrgRole::Admin),
        ("user_bill", OrgRole::Billing),
        ("user_dev", OrgRole::Developer),
        ("user_u1", OrgRole::User),
        ("user_u2", OrgRole::User),
    ] {
        rig.add_member(&org.id, "user_owner", u, r).await;
    }
    let mut c = rig.client();
    let key = format!("opk_admin_{}", org.id);
    // Filter by role, with emails and names from identity.
    let users = c
        .list_members(rig.as_user(
            "user_u1",
            ListMembersRequest {
                organization_id: org.id.clone(),
                role: OrgRole::User as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    let ids: Vec<_> = users.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["user_u1", "user_u2"]);
    assert_eq!(users[0].email, "user_u1@example.com");
    assert_eq!(users[0].display_name, "Name of user_u1");
    // GetMember with `me`.
    let me = c
        .get_member(rig.as_user(
            "user_dev",
            GetMemberRequest {
                organization_id: org.id.clone(),
                user_id: "me".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(me.role, OrgRole::Developer as i32);
    // Only OWNER/ADMIN change roles.
    let change = |user: &str, role: OrgRole, etag: &str| UpdateMemberRoleRequest {
        organization_id: org.id.clone(),
        user_id: user.into(),
        role: role as i32,
        etag: etag.into(),
    };
    expect_err(
        c.update_member_role(rig.as_user("user_bill", change("user_u1", OrgRole::Admin, "")))
            .await,
        Code::PermissionDenied,
        None,
    );
    let u1 = c
        .get_member(rig.as_user(
            "user_admin",
            GetMemberRequest {
                organization_id: org.id.clone(),
                user_id: "user_u1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    let changed = c
        .update_member_role(rig.with_key(&key, change("user_u1", OrgRole::Developer, &u1.etag)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.member.unwrap().role, OrgRole::Developer as i32);
    expect_err(
        c.update_member_role(rig.as_user("user_admin", change("user_u1", OrgRole::User, &u1.etag)))
            .await,
        Code::Aborted,
        None,
    );
    expect_err(
        c.update_member_role(
            rig.as_user("user_admin", change("user_u1", OrgRole::Unspecified, "")),
        )
        .await,
        Code::InvalidArgument,
        None,
    );
    // Remove: ADMINs only by a person; an admin key may remove others.
    let remove = |user: &str| RemoveMemberRequest {
        organization_id: org.id.clone(),
        user_id: user.into(),
    };
    expect_err(
        c.remove_member(rig.with_key(&key, remove("user_admin2")))
            .await,
        Code::PermissionDenied,
        Some("USER_CREDENTIALS_REQUIRED"),
    );
    c.remove_member(rig.with_key(&key, remove("user_u2")))
        .await
        .unwrap();
    c.remove_member(rig.as_user("user_admin", remove("user_admin2")))
        .await
        .unwrap();
    expect_err(
        c.remove_member(rig.as_user("user_dev", remove("user_bill")))
            .await,
        Code::PermissionDenied,
        None,
    );
    // Anyone may leave.
    c.remove_member(rig.as_user("user_dev", remove("me")))
        .await
        .unwrap();
    for gone in ["user_u2", "user_admin2", "user_dev"] {
        assert_eq!(member_role(&rig, &org.id, gone).await, None, "{gone}");
    }
    expect_err(
        c.get_member(rig.as_user(
            "user_admin",
            GetMemberRequest {
                organization_id: org.id.clone(),
                user_id: "user_nobody".into(),
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    // Workspace keys never manage organizations.
    expect_err(
        c.list_members(rig.with_key(
            &format!("opk_ws_{}", org.id),
            ListMembersRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await,
        Code::PermissionDenied,
        None,
    );
}

#[tokio::test]
async fn org_5_an_api_key_cannot_demote_promote_or_remove_an_admin() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    for (u, r) in [
        ("user_admin", OrgRole::Admin),
        ("user_dev", OrgRole::Developer),
        ("user_u1", OrgRole::User),
    ] {
        rig.add_member(&org.id, "user_owner", u, r).await;
    }
    let mut c = rig.client();
    let key = format!("opk_admin_{}", org.id);
    let change = |user: &str, role: OrgRole| UpdateMemberRoleRequest {
        organization_id: org.id.clone(),
        user_id: user.into(),
        role: role as i32,
        etag: String::new(),
    };
    let remove = |user: &str| RemoveMemberRequest {
        organization_id: org.id.clone(),
        user_id: user.into(),
    };
    // Demoting an ADMIN (to any role), promoting to ADMIN, removing an ADMIN: a person's job.
    for role in [OrgRole::User, OrgRole::Developer, OrgRole::Billing] {
        expect_err(
            c.update_member_role(rig.with_key(&key, change("user_admin", role)))
                .await,
            Code::PermissionDenied,
            Some("USER_CREDENTIALS_REQUIRED"),
        );
    }
    expect_err(
        c.update_member_role(rig.with_key(&key, change("user_admin", OrgRole::Admin)))
            .await,
        Code::PermissionDenied,
        Some("USER_CREDENTIALS_REQUIRED"),
    );
    expect_err(
        c.update_member_role(rig.with_key(&key, change("user_u1", OrgRole::Admin)))
            .await,
        Code::PermissionDenied,
        Some("USER_CREDENTIALS_REQUIRED"),
    );
    expect_err(
        c.remove_member(rig.with_key(&key, remove("user_admin")))
            .await,
        Code::PermissionDenied,
        Some("USER_CREDENTIALS_REQUIRED"),
    );
    // Nor can a key mint an ADMIN through an invite.
    let err = c
        .create_invite(rig.with_key(
            &key,
            CreateInviteRequest {
                organization_id: org.id.clone(),
                invite: Some(Invite {
                    email: "user_new@example.com".into(),
                    role: OrgRole::Admin as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("a key cannot invite an ADMIN");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        reason_of(&err).as_deref(),
        Some("USER_CREDENTIALS_REQUIRED")
    );
    assert!(!err.message().contains("ORG-"), "{}", err.message());
    assert_eq!(
        member_role(&rig, &org.id, "user_admin").await,
        Some(OrgRole::Admin)
    );
    assert_eq!(
        member_role(&rig, &org.id, "user_u1").await,
        Some(OrgRole::User)
    );
    // Below ADMIN the key still manages members.
    let moved = c
        .update_member_role(rig.with_key(&key, change("user_u1", OrgRole::Developer)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.member.unwrap().role, OrgRole::Developer as i32);
    c.remove_member(rig.with_key(&key, remove("user_dev")))
        .await
        .unwrap();
    assert_eq!(member_role(&rig, &org.id, "user_dev").await, None);
    // A person (the OWNER or an ADMIN) may do all of it.
    c.update_member_role(rig.as_user("user_owner", change("user_u1", OrgRole::Admin)))
        .await
        .unwrap();
    c.update_member_role(rig.as_user("user_admin", change("user_u1", OrgRole::User)))
        .await
        .unwrap();
    c.remove_member(rig.as_user("user_owner", remove("user_admin")))
        .await
        .unwrap();
    assert_eq!(member_role(&rig, &org.id, "user_admin").await, None);
}

// ------------------------------------------------------------------------------------- ORG-6

#[tokio::test]
async fn org_6_invites_expire_need_the_matching_verified_email_and_refuse_duplicates() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let mut c = rig.client();
    let invite = |email: &str, role: OrgRole| CreateInviteRequest {
        organization_id: org.id.clone(),
        invite: Some(Invite {
            email: email.into(),
            role: role as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let inv = c
        .create_invite(rig.as_user(
            "user_owner",
            invite("User_Bea@Example.com", OrgRole::Billing),
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(inv.state, InviteState::Pending as i32);
    // ID-15: shown as sent, with the domain in its canonical form; compared by the canonical key.
    assert_eq!(inv.email, "User_Bea@example.com");
    let expire = inv.expire_time.unwrap().seconds - inv.create_time.unwrap().seconds;
    assert_eq!(expire, 21 * 24 * 3600);
    // The mail went out as an .eml file with the invite id.
    let mails: Vec<_> = std::fs::read_dir(rig.mail_dir.path()).unwrap().collect();
    assert_eq!(mails.len(), 1);
    let text = std::fs::read_to_string(mails[0].as_ref().unwrap().path()).unwrap();
    assert!(text.contains(&inv.id) && text.contains("User_Bea@example.com"));
    // Duplicates: a second pending invite, or inviting a member.
    expect_err(
        c.create_invite(rig.as_user("user_owner", invite("user_bea@example.com", OrgRole::User)))
            .await,
        Code::AlreadyExists,
        Some("INVITE_ALREADY_PENDING"),
    );
    expect_err(
        c.create_invite(rig.as_user(
            "user_owner",
            invite("user_owner@example.com", OrgRole::User),
        ))
        .await,
        Code::AlreadyExists,
        Some("ALREADY_A_MEMBER"),
    );
    expect_err(
        c.create_invite(rig.as_user("user_owner", invite("x@example.com", OrgRole::Owner)))
            .await,
        Code::InvalidArgument,
        Some("OWNER_ROLE_NOT_ASSIGNABLE"),
    );
    // The invitee can see it before accepting; someone else cannot.
    let seen = c
        .get_invite(rig.as_user(
            "user_bea",
            GetInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(seen.organization_name, "Acme");
    expect_err(
        c.get_invite(rig.as_user(
            "user_eve",
            GetInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    // Only the verified matching email accepts.
    expect_err(
        c.accept_invite(rig.as_user(
            "user_eve",
            AcceptInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("INVITE_EMAIL_MISMATCH"),
    );
    rig.identity.set("user_bea", |u| u.email_verified = false);
    expect_err(
        c.accept_invite(rig.as_user(
            "user_bea",
            AcceptInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("EMAIL_NOT_VERIFIED"),
    );
    rig.identity.set("user_bea", |u| u.email_verified = true);
    let accepted = c
        .accept_invite(rig.as_user(
            "user_bea",
            AcceptInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.member.unwrap().role, OrgRole::Billing as i32);
    assert_eq!(accepted.invite.unwrap().state, InviteState::Accepted as i32);
    assert!(accepted.revision > 0);
    expect_err(
        c.accept_invite(rig.as_user(
            "user_bea",
            AcceptInviteRequest {
                invite_id: inv.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("INVITE_NOT_PENDING"),
    );
    // Deleted invites cannot be accepted.
    let del = c
        .create_invite(rig.as_user("user_owner", invite("user_dan@example.com", OrgRole::User)))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    let deleted = c
        .delete_invite(rig.as_user(
            "user_owner",
            DeleteInviteRequest {
                invite_id: del.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(deleted.state, InviteState::Deleted as i32);
    expect_err(
        c.accept_invite(rig.as_user(
            "user_dan",
            AcceptInviteRequest {
                invite_id: del.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("INVITE_NOT_PENDING"),
    );
    // Expired after 21 days; a new invite to the same address is then possible.
    let old = c
        .create_invite(rig.as_user("user_owner", invite("user_old@example.com", OrgRole::User)))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    rig.clock
        .advance(chrono::Duration::days(21) + chrono::Duration::seconds(1));
    expect_err(
        c.accept_invite(rig.as_user(
            "user_old",
            AcceptInviteRequest {
                invite_id: old.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("INVITE_EXPIRED"),
    );
    let listed = c
        .list_invites(rig.as_user(
            "user_owner",
            ListInvitesRequest {
                organization_id: org.id.clone(),
                state: InviteState::Expired as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invites;
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [old.id.as_str()]
    );
    c.create_invite(rig.as_user("user_owner", invite("user_old@example.com", OrgRole::User)))
        .await
        .unwrap();
    // Listing: newest first, DELETED only with show_deleted; members without the role cannot.
    let all = c
        .list_invites(rig.as_user(
            "user_owner",
            ListInvitesRequest {
                organization_id: org.id.clone(),
                show_deleted: true,
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.invites.len(), 2);
    assert!(!all.next_page_token.is_empty());
    assert!(all.invites[0].id > all.invites[1].id, "newest first");
    expect_err(
        c.list_invites(rig.as_user(
            "user_bea",
            ListInvitesRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await,
        Code::PermissionDenied,
        None,
    );
}

#[tokio::test]
async fn org_6_an_invite_made_with_an_api_key_names_the_key_not_a_user() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let mut c = rig.client();
    let key = format!("opk_admin_{}", org.id);
    let invite = |email: &str| CreateInviteRequest {
        organization_id: org.id.clone(),
        invite: Some(Invite {
            email: email.into(),
            role: OrgRole::Developer as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let by_key = c
        .create_invite(rig.with_key(&key, invite("user_k@example.com")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(by_key.inviter_user_id, "", "a key is not a user");
    assert!(by_key.inviter_api_key_id.starts_with("key_"), "{by_key:?}");
    let by_person = c
        .create_invite(rig.as_user("user_owner", invite("user_p@example.com")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(by_person.inviter_user_id, "user_owner");
    assert_eq!(by_person.inviter_api_key_id, "");
    // Read back (list and get) the same.
    let listed = c
        .list_invites(rig.as_user(
            "user_owner",
            ListInvitesRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invites;
    let read = listed.iter().find(|i| i.id == by_key.id).unwrap();
    assert_eq!(
        (
            read.inviter_user_id.as_str(),
            read.inviter_api_key_id.as_str()
        ),
        ("", by_key.inviter_api_key_id.as_str())
    );
    // The mail does not present the key as a person.
    for entry in std::fs::read_dir(rig.mail_dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(&by_key.inviter_api_key_id), "{text}");
    }
    // The invitee accepts as usual.
    c.accept_invite(rig.as_user(
        "user_k",
        AcceptInviteRequest {
            invite_id: by_key.id.clone(),
        },
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn org_6_invites_sent_with_a_key_before_the_fix_name_the_key_after_the_migration() {
    use orgplane_organization::migration::{AddInviterApiKey, Migrator};
    use orgplane_organization::store::invite;
    use sea_orm::{ConnectionTrait, EntityTrait};
    use sea_orm_migration::{MigrationName, MigratorTrait};
    let db = orgplane_platform::testkit::TestDb::sqlite();
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    // Every migration before the fix: invites as they were, a key's id among the inviters.
    let before_fix = Migrator::migrations()
        .iter()
        .position(|m| m.name() == AddInviterApiKey.name())
        .unwrap() as u32;
    Migrator::up(&conn, Some(before_fix)).await.unwrap();
    for (id, inviter) in [("inv_by_key", "key_abc"), ("inv_by_user", "user_ada")] {
        conn.execute_unprepared(&format!(
            "INSERT INTO invites (id, organization_id, email, pending_key, role, state, \
             inviter_user_id, create_time_ms, expire_time_ms, accept_time_ms, accepted_user_id, \
             delete_time_ms) VALUES ('{id}', 'org_1', '{id}@example.com', NULL, 3, 1, \
             '{inviter}', 1, 2, NULL, '', NULL)"
        ))
        .await
        .unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();
    let read = |id: &'static str| {
        let conn = conn.clone();
        async move {
            let i = invite::Entity::find_by_id(id.to_owned())
                .one(&conn)
                .await
                .unwrap()
                .unwrap();
            (i.inviter_user_id, i.inviter_api_key_id)
        }
    };
    assert_eq!(read("inv_by_key").await, (String::new(), "key_abc".into()));
    assert_eq!(
        read("inv_by_user").await,
        ("user_ada".into(), String::new())
    );
}

// ------------------------------------------------------------------------------------- ORG-7

async fn org_7_delete_undelete_and_purge(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    let mut c = rig.client();
    let delete = |confirm: &str| DeleteOrganizationRequest {
        organization_id: org.id.clone(),
        confirm_name: confirm.into(),
        etag: String::new(),
    };
    expect_err(
        c.delete_organization(rig.as_user("user_admin", delete("Acme")))
            .await,
        Code::PermissionDenied,
        None,
    );
    expect_err(
        c.delete_organization(rig.as_user_signed_in_ago("user_owner", 301, delete("Acme")))
            .await,
        Code::Unauthenticated,
        Some("REAUTHENTICATION_REQUIRED"),
    );
    expect_err(
        c.delete_organization(rig.as_user("user_owner", delete("acme")))
            .await,
        Code::InvalidArgument,
        Some("CONFIRM_NAME_MISMATCH"),
    );
    let deleted = c
        .delete_organization(rig.as_user("user_owner", delete("Acme")))
        .await
        .unwrap()
        .into_inner();
    let d = deleted.organization.unwrap();
    assert_eq!(d.state, OrganizationState::Deleted as i32);
    assert_eq!(
        d.purge_time.unwrap().seconds - d.delete_time.unwrap().seconds,
        7 * 24 * 3600
    );
    // Unavailable to everyone else at once; its owner still sees it.
    expect_err(
        c.get_organization(rig.as_user(
            "user_admin",
            GetOrganizationRequest {
                organization_id: org.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    expect_err(
        c.list_members(rig.as_user(
            "user_owner",
            ListMembersRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    c.get_organization(rig.as_user(
        "user_owner",
        GetOrganizationRequest {
            organization_id: org.id.clone(),
        },
    ))
    .await
    .unwrap();
    // Undelete: owner, step-up.
    let undelete = UndeleteOrganizationRequest {
        organization_id: org.id.clone(),
        etag: String::new(),
    };
    expect_err(
        c.undelete_organization(rig.as_user_signed_in_ago("user_owner", 400, undelete.clone()))
            .await,
        Code::Unauthenticated,
        Some("REAUTHENTICATION_REQUIRED"),
    );
    let restored = c
        .undelete_organization(rig.as_user("user_owner", undelete.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        restored.organization.unwrap().state,
        OrganizationState::Active as i32
    );
    assert!(restored.revision > deleted.revision);
    expect_err(
        c.undelete_organization(rig.as_user("user_owner", undelete.clone()))
            .await,
        Code::FailedPrecondition,
        Some("ORGANIZATION_NOT_DELETED"),
    );
    assert_eq!(
        member_role(&rig, &org.id, "user_admin").await,
        Some(OrgRole::Admin)
    );
    // Delete again, move the clock 8 days, purge.
    c.delete_organization(rig.as_user("user_owner", delete("Acme")))
        .await
        .unwrap();
    assert!(
        rig.org.purge_once().await.unwrap().is_empty(),
        "not due yet"
    );
    rig.clock.advance(chrono::Duration::days(8));
    let purged = rig.org.purge_once().await.unwrap();
    assert_eq!(purged, std::slice::from_ref(&org.id));
    expect_err(
        c.get_organization(rig.as_user(
            "user_owner",
            GetOrganizationRequest {
                organization_id: org.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    // The name is free again, and OrganizationPurged is the last event.
    create_org(&rig, "user_owner", "Acme").await;
    let events = rig.events_after(0, 200).await;
    assert!(events.iter().any(|e| matches!(&e.payload, Some(Payload::OrganizationPurged(p)) if p.organization_id == org.id)));
}

#[tokio::test]
async fn org_7_delete_with_step_up_and_confirmation_undelete_and_purge_sqlite() {
    org_7_delete_undelete_and_purge(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_7_delete_with_step_up_and_confirmation_undelete_and_purge_postgres() {
    org_7_delete_undelete_and_purge(Backend::Postgres).await;
}

// ------------------------------------------------------------------------------------- ORG-8

#[tokio::test]
async fn org_8_list_organizations_filters_orders_pages_and_shows_deleted_to_owners() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let mut ids = Vec::new();
    for name in ["Delta", "alpha", "Charlie", "bravo", "Alphabet"] {
        ids.push(create_org(&rig, "user_ada", name).await.id);
    }
    let other = create_org(&rig, "user_bob", "Alpha Bob").await;
    rig.add_member(&other.id, "user_bob", "user_ada", OrgRole::User)
        .await;
    let mut c = rig.client();
    let list = |req: ListOrganizationsRequest| {
        let rig = &rig;
        let mut c = rig.client();
        async move {
            c.list_organizations(rig.as_user("user_ada", req))
                .await
                .map(|r| r.into_inner())
        }
    };
    // Pagination by name, 2 per page, every org once.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(ListOrganizationsRequest {
            page_size: 2,
            page_token: token.clone(),
            order_by: "name".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        names.extend(page.organizations.into_iter().map(|o| o.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        names,
        [
            "alpha",
            "Alpha Bob",
            "Alphabet",
            "bravo",
            "Charlie",
            "Delta"
        ]
    );
    // Token bound to its parameters.
    let first = list(ListOrganizationsRequest {
        page_size: 2,
        order_by: "name".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    expect_err(
        c.list_organizations(rig.as_user(
            "user_ada",
            ListOrganizationsRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                order_by: "create_time".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        None,
    );
    // Name filter, case-insensitive substring; create_time desc.
    let found = list(ListOrganizationsRequest {
        name_contains: "ALPHA".into(),
        order_by: "create_time desc".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let found: Vec<_> = found
        .organizations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(found, ["Alpha Bob", "Alphabet", "alpha"]);
    let none = list(ListOrganizationsRequest {
        name_contains: "%".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(none.organizations.is_empty(), "LIKE wildcards are escaped");
    expect_err(
        c.list_organizations(rig.as_user(
            "user_ada",
            ListOrganizationsRequest {
                order_by: "owner".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        None,
    );
    // Deleted: hidden unless show_deleted, and then only to the owner.
    c.delete_organization(rig.as_user(
        "user_ada",
        DeleteOrganizationRequest {
            organization_id: ids[0].clone(),
            confirm_name: "Delta".into(),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let active = list(ListOrganizationsRequest::default()).await.unwrap();
    assert_eq!(active.organizations.len(), 5);
    expect_err(
        c.list_organizations(rig.as_user(
            "user_ada",
            ListOrganizationsRequest {
                state: OrganizationState::Deleted as i32,
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        None,
    );
    let deleted = list(ListOrganizationsRequest {
        state: OrganizationState::Deleted as i32,
        show_deleted: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(deleted.organizations.len(), 1);
    assert_eq!(deleted.organizations[0].id, ids[0]);
    // Type filter.
    let typed = list(ListOrganizationsRequest {
        r#type: OrganizationType::Government as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(typed.organizations.is_empty());
    // An admin key sees its own org.
    let by_key = c
        .list_organizations(rig.with_key(
            &format!("opk_admin_{}", ids[1]),
            ListOrganizationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_key.organizations.len(), 1);
    assert_eq!(by_key.organizations[0].id, ids[1]);
}

// ------------------------------------------------------------------------------------- ORG-9

#[tokio::test]
async fn org_9_units_form_a_tree_at_most_5_deep_and_only_empty_units_are_deleted() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_u", OrgRole::User)
        .await;
    let mut c = rig.client();
    let mut parent = String::new();
    let mut chain = Vec::new();
    for depth in 1..=5 {
        let u = c
            .create_unit(rig.as_user(
                "user_owner",
                CreateUnitRequest {
                    organization_id: org.id.clone(),
                    unit: Some(Unit {
                        name: format!("Level {depth}"),
                        parent_unit_id: parent.clone(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .unit
            .unwrap();
        assert_eq!(u.depth, depth);
        parent = u.id.clone();
        chain.push(u);
    }
    expect_err(
        c.create_unit(rig.as_user(
            "user_owner",
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Level 6".into(),
                    parent_unit_id: parent.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("UNIT_DEPTH_EXCEEDED"),
    );
    expect_err(
        c.create_unit(rig.as_user(
            "user_u",
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Nope".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        None,
    );
    // Moving the level-2 subtree (levels 2-5) under a level-2 unit would reach depth 6.
    let side = c
        .create_unit(rig.as_user(
            "user_owner",
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Side".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    let side_child = c
        .create_unit(rig.as_user(
            "user_owner",
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Side child".into(),
                    parent_unit_id: side.id.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    let mv = |unit: &Unit, parent: &str| UpdateUnitRequest {
        unit: Some(Unit {
            id: unit.id.clone(),
            parent_unit_id: parent.into(),
            ..Default::default()
        }),
        update_mask: mask(&["parent_unit_id"]),
        etag: String::new(),
    };
    expect_err(
        c.update_unit(rig.as_user("user_owner", mv(&chain[1], &side_child.id)))
            .await,
        Code::FailedPrecondition,
        Some("UNIT_DEPTH_EXCEEDED"),
    );
    expect_err(
        c.update_unit(rig.as_user("user_owner", mv(&chain[0], &chain[3].id)))
            .await,
        Code::FailedPrecondition,
        Some("UNIT_CYCLE"),
    );
    // Moving level 4 (with level 5) under Side: depths 2 and 3.
    let moved = c
        .update_unit(rig.as_user("user_owner", mv(&chain[3], &side.id)))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(moved.depth, 2);
    let leaf = c
        .get_unit(rig.as_user(
            "user_u",
            GetUnitRequest {
                unit_id: chain[4].id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(leaf.depth, 3);
    // Listing: parents first.
    let units = c
        .list_units(rig.as_user(
            "user_u",
            ListUnitsRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .units;
    let depths: Vec<_> = units.iter().map(|u| u.depth).collect();
    let mut sorted = depths.clone();
    sorted.sort();
    assert_eq!(depths, sorted);
    assert_eq!(units.len(), 7);
    // A unit with children cannot be deleted; one with a workspace neither.
    expect_err(
        c.delete_unit(rig.as_user(
            "user_owner",
            DeleteUnitRequest {
                unit_id: side.id.clone(),
                etag: String::new(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("UNIT_HAS_CHILDREN"),
    );
    let revision = rig
        .publish_workspace(Payload::WorkspaceCreated(WorkspaceCreated {
            organization_id: org.id.clone(),
            workspace_id: "wrkspc_1".into(),
            name: "WS".into(),
            unit_id: chain[4].id.clone(),
        }))
        .await;
    // Wait until the workspace event is applied, then the unit is refused.
    for _ in 0..200 {
        use orgplane_organization::store::unit_workspace;
        use sea_orm::EntityTrait;
        if unit_workspace::Entity::find_by_id("wrkspc_1".to_owned())
            .one(rig.org.db())
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(revision > 0);
    expect_err(
        c.delete_unit(rig.as_user(
            "user_owner",
            DeleteUnitRequest {
                unit_id: chain[4].id.clone(),
                etag: leaf.etag.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("UNIT_HAS_WORKSPACES"),
    );
    // Renaming with a stale etag is ABORTED; with the current one it works.
    let rename = |etag: &str| UpdateUnitRequest {
        unit: Some(Unit {
            id: chain[2].id.clone(),
            name: "Renamed".into(),
            ..Default::default()
        }),
        update_mask: mask(&["name"]),
        etag: etag.into(),
    };
    let renamed = c
        .update_unit(rig.as_user("user_owner", rename(&chain[2].etag)))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    assert_eq!(renamed.name, "Renamed");
    expect_err(
        c.update_unit(rig.as_user("user_owner", rename(&chain[2].etag)))
            .await,
        Code::Aborted,
        None,
    );
    // An empty unit goes.
    let empty = c
        .create_unit(rig.as_user(
            "user_owner",
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Empty".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    c.delete_unit(rig.as_user(
        "user_owner",
        DeleteUnitRequest {
            unit_id: empty.id.clone(),
            etag: empty.etag.clone(),
        },
    ))
    .await
    .unwrap();
    expect_err(
        c.get_unit(rig.as_user(
            "user_owner",
            GetUnitRequest {
                unit_id: empty.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
}

// ------------------------------------------------------------------------------------ ORG-10

#[tokio::test]
async fn org_10_every_mutation_is_audited_and_owner_admin_read_it_with_filters() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    c.update_member_role(rig.as_user(
        "user_admin",
        UpdateMemberRoleRequest {
            organization_id: org.id.clone(),
            user_id: "user_dev".into(),
            role: OrgRole::User as i32,
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let list = |filter: AuditEventFilter, token: &str, size: i32, who: &str| {
        rig.as_user(
            who,
            ListAuditEventsRequest {
                organization_id: org.id.clone(),
                page_size: size,
                page_token: token.into(),
                filter: Some(filter),
            },
        )
    };
    let all = c
        .list_audit_events(list(AuditEventFilter::default(), "", 100, "user_admin"))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<_> = all.audit_events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "organization.create",
        "invite.create",
        "invite.accept",
        "member.update_role",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert_eq!(actions[0], "member.update_role", "newest first");
    let role_change = &all.audit_events[0];
    assert_eq!(role_change.actor_id, "user_admin");
    assert_eq!(role_change.resource_id, "user_dev");
    assert!(role_change.before.is_some() && role_change.after.is_some());
    // Filters: actor, action prefix, time range.
    let by_actor = c
        .list_audit_events(list(
            AuditEventFilter {
                actor_id: "user_admin".into(),
                ..Default::default()
            },
            "",
            100,
            "user_owner",
        ))
        .await
        .unwrap()
        .into_inner();
    // user_admin accepted their invite (one invite.accept record) and changed a role.
    assert_eq!(by_actor.audit_events.len(), 2);
    assert!(
        by_actor
            .audit_events
            .iter()
            .all(|e| e.actor_id == "user_admin")
    );
    let invites = c
        .list_audit_events(list(
            AuditEventFilter {
                action: "invite.create".into(),
                ..Default::default()
            },
            "",
            100,
            "user_owner",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invites.audit_events.len(), 2);
    let future = c
        .list_audit_events(list(
            AuditEventFilter {
                start_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 3600,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "",
            100,
            "user_owner",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(future.audit_events.is_empty());
    // Pagination.
    let p1 = c
        .list_audit_events(list(AuditEventFilter::default(), "", 2, "user_owner"))
        .await
        .unwrap()
        .into_inner();
    let p2 = c
        .list_audit_events(list(
            AuditEventFilter::default(),
            &p1.next_page_token,
            2,
            "user_owner",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.audit_events[0].id, all.audit_events[2].id);
    // Only OWNER/ADMIN.
    expect_err(
        c.list_audit_events(list(AuditEventFilter::default(), "", 10, "user_dev"))
            .await,
        Code::PermissionDenied,
        None,
    );
}

#[tokio::test]
async fn org_10_refused_role_change_is_audited_as_failure_with_reason() {
    use orgplane_proto::audit::v1::{ActorKind, Outcome};
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let other = create_org(&rig, "user_mallory", "Elsewhere").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    let with_id = |mut r: tonic::Request<UpdateMemberRoleRequest>, id: &str| {
        r.metadata_mut().insert("x-request-id", id.parse().unwrap());
        r
    };
    let promote = |who: &str, org_id: &str| {
        rig.as_user(
            who,
            UpdateMemberRoleRequest {
                organization_id: org_id.into(),
                user_id: "user_dev".into(),
                role: OrgRole::Admin as i32,
                etag: String::new(),
            },
        )
    };
    // A developer tries to promote themselves (`me`).
    let mut me = promote("user_dev", &org.id);
    me.get_mut().user_id = "me".into();
    let denied = c
        .update_member_role(with_id(me, "req-dev-escalates"))
        .await
        .expect_err("a developer cannot change roles");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied_reason = reason_of(&denied).unwrap();
    // An admin tries to remove the owner.
    expect_err(
        c.remove_member(rig.as_user(
            "user_admin",
            RemoveMemberRequest {
                organization_id: org.id.clone(),
                user_id: "user_owner".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("OWNERSHIP_TRANSFER_REQUIRED"),
    );
    // A member of another organization tries the same: NOT_FOUND, and not recorded (an outsider
    // must not be able to write to the organization's log, nor time its existence).
    expect_err(
        c.update_member_role(with_id(promote("user_mallory", &org.id), "req-outsider"))
            .await,
        Code::NotFound,
        Some("NOT_FOUND"),
    );
    // Not recorded: a malformed request, an organization that does not exist.
    let mut malformed = promote("user_dev", &org.id);
    malformed.get_mut().role = OrgRole::Unspecified as i32;
    expect_err(
        c.update_member_role(malformed).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        c.update_member_role(promote("user_mallory", "org_doesnotexist"))
            .await,
        Code::NotFound,
        None,
    );
    let list = |who: &str, org_id: &str, outcome: Outcome| {
        rig.as_user(
            who,
            ListAuditEventsRequest {
                organization_id: org_id.into(),
                page_size: 100,
                page_token: String::new(),
                filter: Some(AuditEventFilter {
                    outcome: outcome as i32,
                    ..Default::default()
                }),
            },
        )
    };
    let failures = c
        .list_audit_events(list("user_owner", &org.id, Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let summary: Vec<_> = failures
        .iter()
        .map(|e| {
            (
                e.actor_id.as_str(),
                e.action.as_str(),
                e.status_code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("user_admin", "member.remove", "FAILED_PRECONDITION"),
            ("user_dev", "member.update_role", "PERMISSION_DENIED"),
        ],
        "newest first, nothing else"
    );
    let escalation = &failures[1];
    assert_eq!(escalation.outcome, Outcome::Failure as i32);
    assert_eq!(escalation.actor_kind, ActorKind::User as i32);
    assert_eq!(escalation.error_reason, denied_reason);
    assert_eq!(escalation.request_id, "req-dev-escalates");
    assert_eq!(escalation.organization_id, org.id);
    assert_eq!(escalation.service, "organization");
    assert_eq!(
        (
            escalation.resource_type.as_str(),
            escalation.resource_id.as_str()
        ),
        ("member", "user_dev"),
        "`me` is recorded as the member it names"
    );
    assert!(escalation.before.is_none() && escalation.after.is_none());
    assert!(escalation.create_time.is_some());
    assert_eq!(failures[0].error_reason, "OWNERSHIP_TRANSFER_REQUIRED");
    assert_eq!(failures[0].resource_id, "user_owner");
    // The success filter shows no failure; the role did not change.
    let successes = c
        .list_audit_events(list("user_admin", &org.id, Outcome::Success))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(
        successes
            .iter()
            .all(|e| e.outcome == Outcome::Success as i32 && e.status_code.is_empty())
    );
    assert!(!successes.iter().any(|e| e.action == "member.update_role"));
    assert_eq!(
        member_role(&rig, &org.id, "user_dev").await,
        Some(OrgRole::Developer)
    );
    // The outsider learns nothing: their own log holds no trace, the target's stays hidden.
    let own = c
        .list_audit_events(list("user_mallory", &other.id, Outcome::Unspecified))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(
        own.iter().all(|e| e.outcome == Outcome::Success as i32),
        "{own:?}"
    );
    expect_err(
        c.list_audit_events(list("user_mallory", &org.id, Outcome::Failure))
            .await,
        Code::NotFound,
        None,
    );
}

/// A refusal decided before the tenant check (here: a workspace key may not create units) is
/// recorded for a caller with standing in the organization and never for an outsider, who must
/// not be able to write into a log they may not read.
#[tokio::test]
async fn org_10_refusals_are_recorded_only_for_callers_with_standing() {
    use orgplane_platform::auth::{ApiKeyKind, ApiKeyPrincipal};
    use orgplane_proto::audit::v1::Outcome;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let other = create_org(&rig, "user_mallory", "Elsewhere").await;
    for (key, organization_id) in [("key_own", &org.id), ("key_outsider", &other.id)] {
        rig.api_keys.insert(
            key,
            ApiKeyPrincipal {
                key_id: key.into(),
                organization_id: organization_id.clone(),
                workspace_id: Some("wrkspc_x".into()),
                kind: ApiKeyKind::Workspace,
            },
        );
    }
    let mut c = rig.client();
    let create = |key: &str| {
        orgplane_platform::testkit::api_key(
            CreateUnitRequest {
                organization_id: org.id.clone(),
                unit: Some(Unit {
                    name: "Platform".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            key,
        )
    };
    // Acme's own workspace key (the control arm: its refusal is recorded) and Elsewhere's.
    let own = c.create_unit(create("key_own")).await.unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied, "{own:?}");
    let outsider = c.create_unit(create("key_outsider")).await.unwrap_err();
    assert_eq!(outsider.code(), Code::PermissionDenied, "{outsider:?}");
    let failures: Vec<String> = rig
        .audit_log("user_owner", &org.id)
        .await
        .into_iter()
        .filter(|e| e.outcome == Outcome::Failure as i32)
        .map(|e| e.actor_id)
        .collect();
    assert_eq!(
        failures,
        ["key_own"],
        "only the caller with standing is recorded"
    );
}

#[tokio::test]
async fn org_10_audit_images_are_canonical_proto3_json() {
    use prost_types::value::Kind;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    c.update_member_role(rig.as_user(
        "user_owner",
        UpdateMemberRoleRequest {
            organization_id: org.id.clone(),
            user_id: "user_dev".into(),
            role: OrgRole::Billing as i32,
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let events = c
        .list_audit_events(rig.as_user(
            "user_owner",
            ListAuditEventsRequest {
                organization_id: org.id.clone(),
                page_size: 100,
                page_token: String::new(),
                filter: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let field = |s: &Option<prost_types::Struct>, key: &str| -> Option<Kind> {
        s.as_ref()?.fields.get(key)?.kind.clone()
    };
    let text = |k: Option<Kind>| match k {
        Some(Kind::StringValue(s)) => s,
        other => panic!("expected a string, got {other:?}"),
    };
    let event = |action: &str| events.iter().find(|e| e.action == action).unwrap();
    // A member: enum names, camelCase keys, the API's etag.
    let role_change = event("member.update_role");
    assert_eq!(
        text(field(&role_change.before, "role")),
        "ORG_ROLE_DEVELOPER"
    );
    assert_eq!(text(field(&role_change.after, "role")), "ORG_ROLE_BILLING");
    assert_eq!(text(field(&role_change.after, "userId")), "user_dev");
    assert_eq!(text(field(&role_change.after, "organizationId")), org.id);
    assert!(text(field(&role_change.after, "etag")).starts_with('v'));
    assert!(field(&role_change.after, "user_id").is_none());
    // An organization.
    let created = event("organization.create");
    assert!(created.before.is_none());
    assert_eq!(
        text(field(&created.after, "state")),
        "ORGANIZATION_STATE_ACTIVE"
    );
    assert_eq!(text(field(&created.after, "ownerUserId")), "user_owner");
    assert_eq!(text(field(&created.after, "etag")), org.etag);
    // An invite, accepted.
    let accepted = event("invite.accept");
    assert_eq!(
        text(field(&accepted.before, "state")),
        "INVITE_STATE_PENDING"
    );
    assert_eq!(
        text(field(&accepted.after, "state")),
        "INVITE_STATE_ACCEPTED"
    );
    assert_eq!(text(field(&accepted.after, "role")), "ORG_ROLE_DEVELOPER");
    assert_eq!(text(field(&accepted.after, "acceptedUserId")), "user_dev");
    assert_eq!(text(field(&accepted.after, "inviterUserId")), "user_owner");
}

// ------------------------------------------------------------------------------------ ORG-11

#[tokio::test]
async fn org_11_get_my_organization_returns_the_admin_keys_org() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let mut c = rig.client();
    let mine = c
        .get_my_organization(rig.with_key(
            &format!("opk_admin_{}", org.id),
            GetMyOrganizationRequest {},
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(mine.id, org.id);
    expect_err(
        c.get_my_organization(
            rig.with_key(&format!("opk_ws_{}", org.id), GetMyOrganizationRequest {}),
        )
        .await,
        Code::PermissionDenied,
        Some("ADMIN_API_KEY_REQUIRED"),
    );
    expect_err(
        c.get_my_organization(rig.as_user("user_owner", GetMyOrganizationRequest {}))
            .await,
        Code::PermissionDenied,
        Some("ADMIN_API_KEY_REQUIRED"),
    );
    // The admin key acts as ADMIN: it may invite, but not delete the org.
    c.create_invite(rig.with_key(
        &format!("opk_admin_{}", org.id),
        CreateInviteRequest {
            organization_id: org.id.clone(),
            invite: Some(Invite {
                email: "new@example.com".into(),
                role: OrgRole::User as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    expect_err(
        c.delete_organization(rig.with_key(
            &format!("opk_admin_{}", org.id),
            DeleteOrganizationRequest {
                organization_id: org.id.clone(),
                confirm_name: "Acme".into(),
                etag: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        None,
    );
}

// ------------------------------------------------------------------------------------ ORG-12

async fn org_12_event_stream(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let mut c = rig.client();
    // The test consumer starts watching before anything happens.
    let mut client = EventServiceClient::new(rig.channel());
    let mut stream = client
        .watch(rig.as_service(WatchRequest {
            producer: Producer::Organization as i32,
            after_revision: 0,
            max_batch_size: 10,
        }))
        .await
        .unwrap()
        .into_inner();

    // The scripted sequence, with the revision each response reported.
    let created = c
        .create_organization(rig.as_user(
            "user_owner",
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: "Acme".into(),
                    primary_email: "a@acme.example".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let org = created.organization.unwrap().id;
    let r_add = rig
        .add_member(&org, "user_owner", "user_bo", OrgRole::User)
        .await;
    let r_promote = c
        .update_member_role(rig.as_user(
            "user_owner",
            UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: "user_bo".into(),
                role: OrgRole::Admin as i32,
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_demote = c
        .update_member_role(rig.as_user(
            "user_owner",
            UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: "user_bo".into(),
                role: OrgRole::Billing as i32,
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_rename = c
        .update_organization(rig.as_user(
            "user_owner",
            UpdateOrganizationRequest {
                organization: Some(Organization {
                    id: org.clone(),
                    name: "Acme 2".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_transfer = c
        .transfer_ownership(rig.as_user(
            "user_owner",
            TransferOwnershipRequest {
                organization_id: org.clone(),
                new_owner_user_id: "user_bo".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_remove = c
        .remove_member(rig.as_user(
            "user_bo",
            RemoveMemberRequest {
                organization_id: org.clone(),
                user_id: "user_owner".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_delete = c
        .delete_organization(rig.as_user(
            "user_bo",
            DeleteOrganizationRequest {
                organization_id: org.clone(),
                confirm_name: "Acme 2".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let r_restore = c
        .undelete_organization(rig.as_user(
            "user_bo",
            UndeleteOrganizationRequest {
                organization_id: org.clone(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;

    let mut events: Vec<Event> = Vec::new();
    while events.len() < 10 {
        let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.extend(m.events);
    }
    let revisions: Vec<i64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        (1..=10).collect::<Vec<_>>(),
        "in order, gap-free"
    );
    let p = |i: usize| events[i].payload.clone().unwrap();
    assert!(
        matches!(p(0), Payload::OrganizationCreated(e) if e.organization_id == org && e.owner_user_id == "user_owner" && e.name == "Acme" && e.primary_email == "a@acme.example")
    );
    assert!(
        matches!(p(1), Payload::MemberAdded(e) if e.user_id == "user_owner" && e.role == OrgRole::Owner as i32)
    );
    assert_eq!(created.revision, 2);
    assert!(
        matches!(p(2), Payload::MemberAdded(e) if e.user_id == "user_bo" && e.role == OrgRole::User as i32)
    );
    assert_eq!(r_add, 3);
    assert!(
        matches!(p(3), Payload::MemberRoleChanged(e) if e.user_id == "user_bo" && e.old_role == OrgRole::User as i32 && e.new_role == OrgRole::Admin as i32)
    );
    assert_eq!(r_promote, 4);
    assert!(
        matches!(p(4), Payload::MemberRoleChanged(e) if e.old_role == OrgRole::Admin as i32 && e.new_role == OrgRole::Billing as i32)
    );
    assert_eq!(r_demote, 5);
    assert!(matches!(p(5), Payload::OrganizationUpdated(e) if e.name == "Acme 2"));
    assert_eq!(r_rename, 6);
    assert!(
        matches!(p(6), Payload::OwnershipTransferred(e) if e.previous_owner_user_id == "user_owner" && e.new_owner_user_id == "user_bo" && e.new_owner_previous_role == OrgRole::Billing as i32)
    );
    assert_eq!(r_transfer, 7);
    assert!(
        matches!(p(7), Payload::MemberRemoved(e) if e.user_id == "user_owner" && e.old_role == OrgRole::Admin as i32)
    );
    assert_eq!(r_remove, 8);
    assert!(matches!(p(8), Payload::OrganizationDeleted(e) if e.purge_time.is_some()));
    assert_eq!(r_delete, 9);
    assert!(matches!(p(9), Payload::OrganizationRestored(e) if e.organization_id == org));
    assert_eq!(r_restore, 10);
    assert!(events.iter().all(|e| !e.request_id.is_empty()));
}

#[tokio::test]
async fn org_12_a_watcher_sees_every_change_in_order_with_old_new_roles_and_revisions_sqlite() {
    org_12_event_stream(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_12_a_watcher_sees_every_change_in_order_with_old_new_roles_and_revisions_postgres() {
    org_12_event_stream(Backend::Postgres).await;
}

async fn list_role_assignments_snapshot(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let a = create_org(&rig, "user_a", "A").await;
    let b = create_org(&rig, "user_b", "B").await;
    for i in 0..5 {
        rig.add_member(&a.id, "user_a", &format!("user_m{i}"), OrgRole::User)
            .await;
    }
    rig.add_member(&b.id, "user_b", "user_m0", OrgRole::Developer)
        .await;
    let mut c = rig.client();
    expect_err(
        c.list_role_assignments(rig.as_user("user_a", ListRoleAssignmentsRequest::default()))
            .await,
        Code::PermissionDenied,
        None,
    );
    let head = rig.org.outbox().head().await.unwrap().revision;
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut revisions = HashSet::new();
    let mut first = true;
    loop {
        let page = c
            .list_role_assignments(rig.as_service(ListRoleAssignmentsRequest {
                page_size: 3,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        revisions.insert(page.revision);
        if first {
            // A change after the first page does not move the snapshot's revision.
            rig.add_member(&b.id, "user_b", "user_late", OrgRole::User)
                .await;
            first = false;
        }
        for o in page.organizations {
            let org = o.organization.unwrap();
            for ra in o.role_assignments {
                seen.push((org.id.clone(), ra.user_id, ra.role));
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(revisions, HashSet::from([head]));
    let keys: Vec<_> = seen
        .iter()
        .map(|(o, u, _)| (o.clone(), u.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by organization id, then user id");
    assert!(seen.contains(&(a.id.clone(), "user_a".into(), OrgRole::Owner as i32)));
    assert!(seen.contains(&(b.id.clone(), "user_m0".into(), OrgRole::Developer as i32)));
    assert!(seen.len() >= 8);
}

#[tokio::test]
async fn org_12_list_role_assignments_is_a_paginated_snapshot_at_a_fixed_revision_sqlite() {
    list_role_assignments_snapshot(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_12_list_role_assignments_is_a_paginated_snapshot_at_a_fixed_revision_postgres() {
    list_role_assignments_snapshot(Backend::Postgres).await;
}

// --------------------------------------------------------------------------- ID-9 consumer

async fn user_deleted(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let a = create_org(&rig, "user_a", "A").await;
    let b = create_org(&rig, "user_b", "B").await;
    rig.add_member(&a.id, "user_a", "user_gone", OrgRole::Admin)
        .await;
    rig.add_member(&b.id, "user_b", "user_gone", OrgRole::User)
        .await;
    let before = rig.org.outbox().head().await.unwrap().revision;
    rig.publish_identity(Payload::UserDeleted(UserDeleted {
        user_id: "user_gone".into(),
    }))
    .await;
    let mut removed = Vec::new();
    for _ in 0..100 {
        let events = rig.events_after(before, 2).await;
        removed = events
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::MemberRemoved(r)) => Some((r.organization_id, r.user_id, r.old_role)),
                _ => None,
            })
            .collect();
        if removed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    removed.sort();
    let mut expected = vec![
        (a.id.clone(), "user_gone".to_string(), OrgRole::Admin as i32),
        (b.id.clone(), "user_gone".to_string(), OrgRole::User as i32),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(member_role(&rig, &a.id, "user_gone").await, None);
    assert_eq!(member_role(&rig, &b.id, "user_gone").await, None);
    assert_eq!(
        member_role(&rig, &a.id, "user_a").await,
        Some(OrgRole::Owner)
    );
}

#[tokio::test]
async fn id_9_user_deleted_removes_the_user_from_every_org_with_member_removed_sqlite() {
    user_deleted(Backend::Sqlite).await;
}

#[tokio::test]
async fn id_9_user_deleted_removes_the_user_from_every_org_with_member_removed_postgres() {
    user_deleted(Backend::Postgres).await;
}

// ------------------------------------------------------------------ pagination under change

async fn ten_thousand_members(backend: Backend) {
    use orgplane_organization::store::member;
    use sea_orm::EntityTrait;
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Big").await;
    // Seed 10,000 members directly through the store (joined in order, 1 ms apart).
    let base = chrono::Utc::now().timestamp_millis() - 1_000_000;
    let rows: Vec<member::ActiveModel> = (0..10_000)
        .map(|i| {
            member::ActiveModel::from(member::Model {
                organization_id: org.id.clone(),
                user_id: format!("user_{i:05}"),
                email: format!("user_{i:05}@example.com"),
                role: OrgRole::User as i32,
                create_time_ms: base + i as i64,
                update_time_ms: base,
                version: 1,
            })
        })
        .collect();
    for chunk in rows.chunks(500) {
        member::Entity::insert_many(chunk.to_vec())
            .exec(rig.org.db())
            .await
            .unwrap();
    }
    // Meanwhile, members join (by invite) and leave (removed by the owner).
    let stop = tokio_util::sync::CancellationToken::new();
    let churn = {
        let stop = stop.clone();
        let org_id = org.id.clone();
        let mut c = rig.client();
        let join_tokens: Vec<_> = (0..2000)
            .map(|i| {
                (
                    format!("user_new{i}"),
                    rig.auth.user_token(&format!("user_new{i}")),
                )
            })
            .collect();
        let owner = rig.auth.user_token("user_owner");
        tokio::spawn(async move {
            let mut removed = Vec::new();
            let mut i = 0;
            while !stop.is_cancelled() && i < join_tokens.len() {
                let (user, token) = &join_tokens[i];
                let inv = c
                    .create_invite(orgplane_platform::testkit::bearer(
                        CreateInviteRequest {
                            organization_id: org_id.clone(),
                            invite: Some(Invite {
                                email: format!("{user}@example.com"),
                                role: OrgRole::User as i32,
                                ..Default::default()
                            }),
                            request_id: String::new(),
                        },
                        &owner,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .invite
                    .unwrap();
                c.accept_invite(orgplane_platform::testkit::bearer(
                    AcceptInviteRequest { invite_id: inv.id },
                    token,
                ))
                .await
                .unwrap();
                // Remove an early member (every 97th).
                let victim = format!("user_{:05}", (i * 97) % 10_000);
                c.remove_member(orgplane_platform::testkit::bearer(
                    RemoveMemberRequest {
                        organization_id: org_id.clone(),
                        user_id: victim.clone(),
                    },
                    &owner,
                ))
                .await
                .unwrap();
                removed.push(victim);
                i += 1;
            }
            removed
        })
    };
    let mut c = rig.client();
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_members(rig.as_user(
                "user_owner",
                ListMembersRequest {
                    organization_id: org.id.clone(),
                    page_size: 100,
                    page_token: token.clone(),
                    role: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.members.len() <= 100);
        assert!(page.members.iter().all(|m| !m.email.is_empty()));
        seen.extend(page.members.into_iter().map(|m| m.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    stop.cancel();
    let removed: HashSet<String> = churn.await.unwrap().into_iter().collect();
    assert!(!removed.is_empty(), "members were removed while paging");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no member repeated");
    for i in 0..10_000 {
        let id = format!("user_{i:05}");
        if !removed.contains(&id) {
            assert!(
                unique.contains(&id),
                "{id} was a member throughout and must be listed"
            );
        }
    }
    assert!(unique.contains(&"user_owner".to_string()));
    assert!(pages >= 90, "{pages} pages");
    println!(
        "pages: {pages}, listed: {}, removed during listing: {}",
        seen.len(),
        removed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_5_ten_thousand_members_list_in_pages_of_100_while_members_join_and_leave_sqlite() {
    ten_thousand_members(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_5_ten_thousand_members_list_in_pages_of_100_while_members_join_and_leave_postgres() {
    ten_thousand_members(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------------- the sweep

/// Every RPC with an empty request and no credentials answers a deliberate code, never
/// UNIMPLEMENTED or INTERNAL; with credentials, an empty request is INVALID_ARGUMENT (or the
/// RPC's own answer), still never UNIMPLEMENTED or INTERNAL.
#[tokio::test]
async fn sweep_every_rpc_with_an_empty_request_and_no_credentials() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let mut c = rig.client();
    let mut results: Vec<(&str, Result<(), tonic::Status>)> = Vec::new();
    macro_rules! sweep {
        ($($name:literal => $method:ident),* $(,)?) => {
            $( results.push(($name, c.$method(tonic::Request::new(Default::default())).await.map(|_| ()))); )*
            let token = rig.auth.user_token("user_sweeper");
            $( results.push(($name, c.$method(orgplane_platform::testkit::bearer(Default::default(), &token)).await.map(|_| ()))); )*
        };
    }
    sweep!(
        "CreateOrganization" => create_organization, "GetOrganization" => get_organization,
        "GetMyOrganization" => get_my_organization, "ListOrganizations" => list_organizations,
        "UpdateOrganization" => update_organization, "DeleteOrganization" => delete_organization,
        "UndeleteOrganization" => undelete_organization, "ListMembers" => list_members,
        "GetMember" => get_member, "UpdateMemberRole" => update_member_role,
        "RemoveMember" => remove_member, "TransferOwnership" => transfer_ownership,
        "CreateInvite" => create_invite, "GetInvite" => get_invite, "ListInvites" => list_invites,
        "DeleteInvite" => delete_invite, "AcceptInvite" => accept_invite,
        "CreateUnit" => create_unit, "GetUnit" => get_unit, "ListUnits" => list_units,
        "UpdateUnit" => update_unit, "DeleteUnit" => delete_unit,
        "ListAuditEvents" => list_audit_events, "ListRoleAssignments" => list_role_assignments,
        "GetSecurityPolicy" => get_security_policy,
        "UpdateSecurityPolicy" => update_security_policy,
        "CreateDomain" => create_domain, "GetDomain" => get_domain, "ListDomains" => list_domains,
        "UpdateDomain" => update_domain, "DeleteDomain" => delete_domain,
        "VerifyDomain" => verify_domain, "LookupDomain" => lookup_domain,
        "ProvisionMember" => provision_member,
    );
    assert_eq!(results.len(), 68, "every RPC of the service, twice");
    for (i, (name, r)) in results.into_iter().enumerate() {
        let anonymous = i < 34;
        match r {
            Ok(()) => assert!(
                !anonymous && name == "ListOrganizations",
                "{name} succeeded"
            ),
            Err(e) => {
                assert!(
                    !matches!(
                        e.code(),
                        Code::Unimplemented | Code::Internal | Code::Unknown
                    ),
                    "{name}: {e:?}"
                );
                assert!(reason_of(&e).is_some(), "{name}: ErrorInfo");
                if anonymous {
                    assert_eq!(e.code(), Code::Unauthenticated, "{name}: {e:?}");
                } else {
                    assert!(
                        matches!(e.code(), Code::InvalidArgument | Code::PermissionDenied),
                        "{name}: {e:?}"
                    );
                }
            }
        }
    }
}

/// The shared `RoleReplica` every consumer uses re-syncs from this service's snapshot and ends up
/// with exactly its roles, at the revision of the snapshot.
#[tokio::test]
async fn org_12_the_shared_role_replica_resyncs_from_list_role_assignments() {
    use orgplane_platform::replica::RoleReplica;
    use orgplane_platform::testkit::ReplicaTables as ReplicaMigrator;
    use sea_orm::TransactionTrait;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let a = create_org(&rig, "user_a", "A").await;
    let b = create_org(&rig, "user_b", "B").await;
    rig.add_member(&a.id, "user_a", "user_x", OrgRole::Billing)
        .await;
    rig.add_member(&b.id, "user_b", "user_x", OrgRole::Admin)
        .await;
    rig.client()
        .delete_organization(rig.as_user(
            "user_b",
            DeleteOrganizationRequest {
                organization_id: b.id.clone(),
                confirm_name: "B".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let head = rig.org.outbox().head().await.unwrap().revision;
    let db = orgplane_platform::testkit::TestDb::sqlite();
    let conn = db.open::<ReplicaMigrator>().await;
    let replica = RoleReplica::load(
        conn.clone(),
        rig.channel(),
        rig.auth.service_tokens("workspace"),
    )
    .await
    .unwrap();
    let txn = conn.begin().await.unwrap();
    let revision = replica.resync(&txn).await.unwrap();
    txn.commit().await.unwrap();
    replica.reload().await.unwrap();
    assert_eq!(revision, head);
    assert_eq!(replica.role(&a.id, "user_a"), Some(OrgRole::Owner));
    assert_eq!(replica.role(&a.id, "user_x"), Some(OrgRole::Billing));
    assert_eq!(
        replica.role(&b.id, "user_x"),
        None,
        "DELETED orgs grant nothing"
    );
    let b_entry = replica.organization(&b.id).unwrap();
    assert_eq!(b_entry.state, OrganizationState::Deleted as i32);
    assert_eq!(b_entry.members.get("user_x"), Some(&OrgRole::Admin));
}

// ------------------------------------------------------------------------- ORG-16 and ID-12

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// An UpdateSecurityPolicy request for `org` changing `paths` to what `set` puts in.
fn policy_update(
    org: &str,
    paths: &[&str],
    etag: &str,
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
        etag: etag.into(),
    }
}

/// An UpdateSecurityPolicy request setting `org`'s MFA requirement to `r`.
fn mfa_update(org: &str, r: MfaRequirement) -> UpdateSecurityPolicyRequest {
    policy_update(org, &["mfa_requirement"], "", |p| {
        p.mfa_requirement = r as i32
    })
}

/// Sets `org`'s MFA requirement as its OWNER `owner`, signed in with a second factor.
async fn require_mfa(rig: &Rig, org: &str, owner: &str, r: MfaRequirement) -> SecurityPolicy {
    rig.client()
        .update_security_policy(rig.as_user_mfa(owner, mfa_update(org, r)))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap()
}

async fn get_policy(rig: &Rig, req: tonic::Request<GetSecurityPolicyRequest>) -> SecurityPolicy {
    rig.client()
        .get_security_policy(req)
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap()
}

/// The error of `r`, checked for `code` and `reason`, with its details.
fn refusal<T: std::fmt::Debug>(
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

fn struct_string(s: &Option<prost_types::Struct>, key: &str) -> Option<String> {
    match s.as_ref()?.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn org_16_members_admin_keys_and_services_read_the_default_policy() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    let get = || GetSecurityPolicyRequest {
        organization_id: org.id.clone(),
    };
    let expected = SecurityPolicy {
        organization_id: org.id.clone(),
        mfa_requirement: MfaRequirement::Optional as i32,
        reauthentication_max_age: seconds(300),
        allowed_sign_in_methods: vec![SignInMethod::Password as i32, SignInMethod::Sso as i32],
        etag: "v0".into(),
        update_time: None,
        restrict_invites_to_verified_domains: false,
        enforced_fields: vec![],
    };
    for req in [
        rig.as_user("user_owner", get()),
        rig.as_user("user_dev", get()),
        rig.with_key(&format!("opk_admin_{}", org.id), get()),
        rig.as_service(get()),
    ] {
        assert_eq!(get_policy(&rig, req).await, expected);
    }
    expect_err(
        rig.client()
            .get_security_policy(rig.as_user("user_outsider", get()))
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        rig.client()
            .get_security_policy(rig.as_user("user_dev", GetSecurityPolicyRequest::default()))
            .await,
        Code::InvalidArgument,
        None,
    );
}

async fn org_16_update(backend: Backend) {
    use orgplane_proto::audit::v1::Outcome;
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    let id = org.id.clone();
    let mut c = rig.client();
    let get = || {
        rig.as_user(
            "user_admin",
            GetSecurityPolicyRequest {
                organization_id: id.clone(),
            },
        )
    };

    // Validation: each bad input names its field.
    let methods = |m: &[SignInMethod]| {
        let m: Vec<i32> = m.iter().map(|m| *m as i32).collect();
        policy_update(&id, &["allowed_sign_in_methods"], "", move |p| {
            p.allowed_sign_in_methods = m
        })
    };
    let age = |d: Option<prost_types::Duration>| {
        policy_update(&id, &["reauthentication_max_age"], "", move |p| {
            p.reauthentication_max_age = d
        })
    };
    let cases = [
        (
            UpdateSecurityPolicyRequest {
                update_mask: mask(&["mfa_requirement"]),
                ..Default::default()
            },
            "security_policy",
        ),
        (
            mfa_update("", MfaRequirement::Optional),
            "security_policy.organization_id",
        ),
        (policy_update(&id, &[], "", |_| {}), "update_mask"),
        (policy_update(&id, &["etag"], "", |_| {}), "update_mask"),
        (
            policy_update(&id, &["mfa_requirement"], "", |p| p.mfa_requirement = 9),
            "security_policy.mfa_requirement",
        ),
        (age(seconds(59)), "security_policy.reauthentication_max_age"),
        (
            age(seconds(86_401)),
            "security_policy.reauthentication_max_age",
        ),
        (
            age(Some(prost_types::Duration {
                seconds: 300,
                nanos: 1,
            })),
            "security_policy.reauthentication_max_age",
        ),
        (
            methods(&[SignInMethod::Password, SignInMethod::Password]),
            "security_policy.allowed_sign_in_methods",
        ),
        (
            methods(&[SignInMethod::Unspecified]),
            "security_policy.allowed_sign_in_methods",
        ),
    ];
    for (req, field) in cases {
        let d = refusal(
            c.update_security_policy(rig.as_user("user_owner", req.clone()))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(d.field_violations[0].0, field, "{req:?}");
    }
    assert_eq!(get_policy(&rig, get()).await.etag, "v0", "nothing changed");
    // The bounds themselves are fine.
    for s in [60, 86_400] {
        c.update_security_policy(rig.as_user("user_owner", age(seconds(s))))
            .await
            .unwrap();
    }
    assert_eq!(get_policy(&rig, get()).await.etag, "v2");

    // Only the OWNER.
    expect_err(
        c.update_security_policy(rig.as_user("user_admin", age(seconds(900))))
            .await,
        Code::PermissionDenied,
        None,
    );
    expect_err(
        c.update_security_policy(rig.with_key(&format!("opk_admin_{id}"), age(seconds(900))))
            .await,
        Code::PermissionDenied,
        None,
    );

    // The mask picks the fields; the others stay.
    let changed = c
        .update_security_policy(rig.as_user(
            "user_owner",
            policy_update(
                &id,
                &["reauthentication_max_age", "allowed_sign_in_methods"],
                "v2",
                |p| {
                    p.reauthentication_max_age = seconds(900);
                    p.allowed_sign_in_methods = vec![SignInMethod::Password as i32];
                    p.mfa_requirement = MfaRequirement::Required as i32; // not in the mask
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let p3 = changed.security_policy.clone().unwrap();
    assert_eq!(p3.organization_id, id);
    assert_eq!(p3.mfa_requirement, MfaRequirement::Optional as i32);
    assert_eq!(p3.reauthentication_max_age, seconds(900));
    assert_eq!(
        p3.allowed_sign_in_methods,
        vec![SignInMethod::Password as i32]
    );
    assert_eq!(p3.etag, "v3");
    assert!(p3.update_time.is_some());
    assert_eq!(get_policy(&rig, get()).await, p3);

    // A stale etag changes nothing.
    let mut stale = mfa_update(&id, MfaRequirement::RequiredForPrivilegedRoles);
    stale.etag = "v2".into();
    refusal(
        c.update_security_policy(rig.as_user_mfa("user_owner", stale))
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(get_policy(&rig, get()).await, p3);
    let mut fresh = mfa_update(&id, MfaRequirement::RequiredForPrivilegedRoles);
    fresh.etag = "v3".into();
    let last = c
        .update_security_policy(rig.as_user_mfa("user_owner", fresh))
        .await
        .unwrap()
        .into_inner();
    let p4 = last.security_policy.clone().unwrap();
    assert_eq!(
        p4.mfa_requirement,
        MfaRequirement::RequiredForPrivilegedRoles as i32
    );
    assert_eq!(p4.reauthentication_max_age, seconds(900));
    assert_eq!(p4.etag, "v4");
    assert!(last.revision > changed.revision);

    // SecurityPolicyChanged carries the whole policy, at the revision the update returned.
    let events = rig.events_after(0, 200).await;
    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::SecurityPolicyChanged(p)) if p.organization_id == id => {
                Some((e.revision, p.security_policy.clone().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 4, "one event per change, none for refusals");
    assert_eq!(changes[2], (changed.revision, p3.clone()));
    assert_eq!(changes[3], (last.revision, p4.clone()));

    // Audited with before and after images; the refusals of signed-in callers as failures.
    let audit = |outcome: Outcome| {
        rig.as_user_mfa(
            "user_owner",
            ListAuditEventsRequest {
                organization_id: id.clone(),
                page_size: 100,
                page_token: String::new(),
                filter: Some(AuditEventFilter {
                    action: "security_policy.update".into(),
                    outcome: outcome as i32,
                    ..Default::default()
                }),
            },
        )
    };
    let done = c
        .list_audit_events(audit(Outcome::Success))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(done.len(), 4);
    assert_eq!(
        (done[0].resource_type.as_str(), done[0].resource_id.as_str()),
        ("security_policy", id.as_str())
    );
    assert_eq!(
        struct_string(&done[0].before, "etag").as_deref(),
        Some("v3")
    );
    assert_eq!(struct_string(&done[0].after, "etag").as_deref(), Some("v4"));
    assert_eq!(
        struct_string(&done[0].after, "mfaRequirement").as_deref(),
        Some("MFA_REQUIREMENT_REQUIRED_FOR_PRIVILEGED_ROLES")
    );
    assert_eq!(
        struct_string(&done[3].before, "etag").as_deref(),
        Some("v0")
    );
    assert_eq!(
        struct_string(&done[1].after, "reauthenticationMaxAge").as_deref(),
        Some("900s")
    );
    let failed: Vec<_> = c
        .list_audit_events(audit(Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| (e.actor_id, e.error_reason))
        .collect();
    assert_eq!(
        failed,
        [
            ("user_owner".to_owned(), "ETAG_MISMATCH".to_owned()),
            (
                format!("key_opk_admin_{id}"),
                "INSUFFICIENT_ROLE".to_owned()
            ),
            ("user_admin".to_owned(), "INSUFFICIENT_ROLE".to_owned()),
        ]
    );
}

#[tokio::test]
async fn org_16_update_with_mask_validation_etag_audit_event_and_revision_sqlite() {
    org_16_update(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_update_with_mask_validation_etag_audit_event_and_revision_postgres() {
    org_16_update(Backend::Postgres).await;
}

#[tokio::test]
async fn org_16_a_policy_that_would_lock_the_owner_out_is_refused() {
    use orgplane_proto::audit::v1::Outcome;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let id = org.id.clone();
    let mut c = rig.client();
    let sso_only = || {
        policy_update(&id, &["allowed_sign_in_methods"], "", |p| {
            p.allowed_sign_in_methods = vec![SignInMethod::Sso as i32]
        })
    };
    for r in [
        MfaRequirement::Required,
        MfaRequirement::RequiredForPrivilegedRoles,
    ] {
        refusal(
            c.update_security_policy(rig.as_user("user_owner", mfa_update(&id, r)))
                .await,
            Code::FailedPrecondition,
            "MFA_ENROLLMENT_REQUIRED",
        );
    }
    refusal(
        c.update_security_policy(rig.as_user_mfa("user_owner", sso_only()))
            .await,
        Code::FailedPrecondition,
        "SSO_SIGN_IN_REQUIRED",
    );
    let get = || {
        rig.as_user(
            "user_owner",
            GetSecurityPolicyRequest {
                organization_id: id.clone(),
            },
        )
    };
    assert_eq!(get_policy(&rig, get()).await.etag, "v0", "nothing changed");
    let failures: Vec<_> = c
        .list_audit_events(rig.as_user(
            "user_owner",
            ListAuditEventsRequest {
                organization_id: id.clone(),
                page_size: 100,
                page_token: String::new(),
                filter: Some(AuditEventFilter {
                    outcome: Outcome::Failure as i32,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| (e.action, e.error_reason))
        .collect();
    assert_eq!(
        failures,
        [
            ("security_policy.update", "SSO_SIGN_IN_REQUIRED"),
            ("security_policy.update", "MFA_ENROLLMENT_REQUIRED"),
            ("security_policy.update", "MFA_ENROLLMENT_REQUIRED"),
        ]
        .map(|(a, r)| (a.to_owned(), r.to_owned()))
    );

    // With the factor (and then through SSO) the same changes go through.
    require_mfa(&rig, &id, "user_owner", MfaRequirement::Required).await;
    let federated = |c: &mut orgplane_platform::auth::Claims| {
        c.amr = vec!["ext".into(), "mfa".into()];
        c.mfa_enrolled = true;
    };
    c.update_security_policy(rig.as_user_with("user_owner", federated, sso_only()))
        .await
        .unwrap();
    // Now a password sign-in, even with a second factor, is refused in this organization.
    let d = refusal(
        c.get_organization(rig.as_user_mfa(
            "user_owner",
            GetOrganizationRequest {
                organization_id: id.clone(),
            },
        ))
        .await,
        Code::Unauthenticated,
        "SSO_REQUIRED",
    );
    assert_eq!(d.metadata.get("organization_id"), Some(&id));
    c.get_organization(rig.as_user_with(
        "user_owner",
        federated,
        GetOrganizationRequest {
            organization_id: id.clone(),
        },
    ))
    .await
    .unwrap();
}

async fn org_16_required(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let a = create_org(&rig, "user_owner_a", "A").await;
    let b = create_org(&rig, "user_owner_b", "B").await;
    rig.add_member(&a.id, "user_owner_a", "user_x", OrgRole::Admin)
        .await;
    rig.add_member(&b.id, "user_owner_b", "user_x", OrgRole::Admin)
        .await;
    let policy = require_mfa(&rig, &a.id, "user_owner_a", MfaRequirement::Required).await;
    assert_eq!(policy.mfa_requirement, MfaRequirement::Required as i32);
    let mut c = rig.client();

    // A password-only token is refused on every RPC about A, reads and writes alike.
    macro_rules! each_rpc {
        ($token:expr, $org:expr) => {{
            let org: String = $org;
            let token: String = $token;
            vec![
                (
                    "GetOrganization",
                    c.get_organization(orgplane_platform::testkit::bearer(
                        GetOrganizationRequest {
                            organization_id: org.clone(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "ListMembers",
                    c.list_members(orgplane_platform::testkit::bearer(
                        ListMembersRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "GetMember",
                    c.get_member(orgplane_platform::testkit::bearer(
                        GetMemberRequest {
                            organization_id: org.clone(),
                            user_id: "me".into(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "ListInvites",
                    c.list_invites(orgplane_platform::testkit::bearer(
                        ListInvitesRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "ListUnits",
                    c.list_units(orgplane_platform::testkit::bearer(
                        ListUnitsRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "ListAuditEvents",
                    c.list_audit_events(orgplane_platform::testkit::bearer(
                        ListAuditEventsRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "GetSecurityPolicy",
                    c.get_security_policy(orgplane_platform::testkit::bearer(
                        GetSecurityPolicyRequest {
                            organization_id: org.clone(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "UpdateOrganization",
                    c.update_organization(orgplane_platform::testkit::bearer(
                        UpdateOrganizationRequest {
                            organization: Some(Organization {
                                id: org.clone(),
                                primary_email: "ops@example.com".into(),
                                ..Default::default()
                            }),
                            update_mask: mask(&["primary_email"]),
                            etag: String::new(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
                (
                    "CreateUnit",
                    c.create_unit(orgplane_platform::testkit::bearer(
                        CreateUnitRequest {
                            organization_id: org.clone(),
                            unit: Some(Unit {
                                name: "Sales".into(),
                                ..Default::default()
                            }),
                            request_id: String::new(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ()),
                ),
            ]
        }};
    }
    let password = || rig.auth.user_token("user_x");
    for (rpc, r) in each_rpc!(password(), a.id.clone()) {
        let d = refusal(
            r.map(tonic::Response::new),
            Code::Unauthenticated,
            "MFA_REQUIRED",
        );
        assert_eq!(d.metadata.get("organization_id"), Some(&a.id), "{rpc}");
        assert_eq!(
            d.metadata.get("enrollment_required").map(String::as_str),
            Some("true"),
            "{rpc}"
        );
    }
    // Enrolled but signed in without the factor: sign in with it, no enrollment needed.
    let d = refusal(
        c.get_organization(rig.as_user_with(
            "user_x",
            |c| c.mfa_enrolled = true,
            GetOrganizationRequest {
                organization_id: a.id.clone(),
            },
        ))
        .await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
    assert_eq!(
        d.metadata.get("enrollment_required").map(String::as_str),
        Some("false")
    );
    // With the second factor, everything works in A.
    for (rpc, r) in each_rpc!(
        rig.auth.user_token_with("user_x", harness::mfa),
        a.id.clone()
    ) {
        r.unwrap_or_else(|e| panic!("{rpc}: {e:?}"));
    }
    // The same password-only token still works in B, whose policy it satisfies.
    for (rpc, r) in each_rpc!(password(), b.id.clone()) {
        r.unwrap_or_else(|e| panic!("{rpc}: {e:?}"));
    }
    // Listings stay usable, so the user sees where they stand.
    let listed: HashSet<String> = c
        .list_organizations(rig.as_user("user_x", ListOrganizationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .organizations
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, HashSet::from([a.id.clone(), b.id.clone()]));
    // API keys and services carry no sign-in: the policy does not apply to them.
    let key = format!("opk_admin_{}", a.id);
    c.get_organization(rig.with_key(
        &key,
        GetOrganizationRequest {
            organization_id: a.id.clone(),
        },
    ))
    .await
    .unwrap();
    c.get_my_organization(rig.with_key(&key, GetMyOrganizationRequest::default()))
        .await
        .unwrap();
    c.get_member(rig.as_service(GetMemberRequest {
        organization_id: a.id.clone(),
        user_id: "user_x".into(),
    }))
    .await
    .unwrap();
    // The OWNER is held to it too.
    refusal(
        c.get_organization(rig.as_user(
            "user_owner_a",
            GetOrganizationRequest {
                organization_id: a.id.clone(),
            },
        ))
        .await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
}

#[tokio::test]
async fn org_16_required_refuses_a_password_only_member_in_that_organization_only_sqlite() {
    org_16_required(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_required_refuses_a_password_only_member_in_that_organization_only_postgres() {
    org_16_required(Backend::Postgres).await;
}

#[tokio::test]
async fn org_16_required_for_privileged_roles_refuses_an_admin_without_mfa_not_a_developer() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    rig.add_member(&org.id, "user_owner", "user_billing", OrgRole::Billing)
        .await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    rig.add_member(&org.id, "user_owner", "user_plain", OrgRole::User)
        .await;
    require_mfa(
        &rig,
        &org.id,
        "user_owner",
        MfaRequirement::RequiredForPrivilegedRoles,
    )
    .await;
    let mut c = rig.client();
    let list = || ListMembersRequest {
        organization_id: org.id.clone(),
        ..Default::default()
    };
    for who in ["user_owner", "user_admin", "user_billing"] {
        refusal(
            c.list_members(rig.as_user(who, list())).await,
            Code::Unauthenticated,
            "MFA_REQUIRED",
        );
        c.list_members(rig.as_user_mfa(who, list())).await.unwrap();
    }
    for who in ["user_dev", "user_plain"] {
        c.list_members(rig.as_user(who, list())).await.unwrap();
    }
    // Mutations too: the admin cannot invite without the factor.
    let invite = || CreateInviteRequest {
        organization_id: org.id.clone(),
        invite: Some(Invite {
            email: "new@example.com".into(),
            role: OrgRole::User as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    refusal(
        c.create_invite(rig.as_user("user_admin", invite())).await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
    c.create_invite(rig.as_user_mfa("user_admin", invite()))
        .await
        .unwrap();
}

async fn org_16_snapshot(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let a = create_org(&rig, "user_a", "A").await;
    let b = create_org(&rig, "user_b", "B").await;
    for i in 0..4 {
        rig.add_member(&a.id, "user_a", &format!("user_m{i}"), OrgRole::User)
            .await;
    }
    let a_policy = rig
        .client()
        .update_security_policy(rig.as_user_mfa(
            "user_a",
            policy_update(
                &a.id,
                &["mfa_requirement", "reauthentication_max_age"],
                "",
                |p| {
                    p.mfa_requirement = MfaRequirement::Required as i32;
                    p.reauthentication_max_age = seconds(900);
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap();
    let b_policy = get_policy(
        &rig,
        rig.as_service(GetSecurityPolicyRequest {
            organization_id: b.id.clone(),
        }),
    )
    .await;
    assert_eq!(b_policy.etag, "v0");
    let mut c = rig.client();
    let mut token = String::new();
    let mut pages_with_a = 0;
    let mut seen_b = false;
    loop {
        let page = c
            .list_role_assignments(rig.as_service(ListRoleAssignmentsRequest {
                page_size: 2,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        for o in page.organizations {
            let id = o.organization.unwrap().id;
            let p = o.security_policy.expect("every entry carries its policy");
            if id == a.id {
                pages_with_a += 1;
                assert_eq!(p, a_policy);
            } else if id == b.id {
                seen_b = true;
                assert_eq!(p, b_policy, "the default, in full");
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages_with_a >= 3, "A's 5 members span 3 pages of 2");
    assert!(seen_b);
}

#[tokio::test]
async fn org_16_the_role_snapshot_carries_each_organizations_policy_on_every_page_sqlite() {
    org_16_snapshot(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_the_role_snapshot_carries_each_organizations_policy_on_every_page_postgres() {
    org_16_snapshot(Backend::Postgres).await;
}

#[tokio::test]
async fn org_16_org_13_purge_removes_the_policy_and_the_branding() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    require_mfa(&rig, &org.id, "user_owner", MfaRequirement::Required).await;
    rig.client()
        .update_branding(rig.as_user_mfa(
            "user_owner",
            UpdateBrandingRequest {
                branding: Some(Branding {
                    organization_id: org.id.clone(),
                    display_name: "Acme Brand".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    rig.client()
        .delete_organization(rig.as_user_mfa(
            "user_owner",
            DeleteOrganizationRequest {
                organization_id: org.id.clone(),
                confirm_name: "Acme".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    rig.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        rig.org.purge_once().await.unwrap(),
        std::slice::from_ref(&org.id)
    );
    use sea_orm::EntityTrait;
    let left = orgplane_organization::store::security_policy::Entity::find_by_id(org.id.clone())
        .one(rig.org.db())
        .await
        .unwrap();
    assert!(left.is_none());
    let branded = orgplane_organization::store::branding::Entity::find_by_id(org.id.clone())
        .one(rig.org.db())
        .await
        .unwrap();
    assert!(branded.is_none());
}

async fn id_12_step_up(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    let id = org.id.clone();
    let mut c = rig.client();
    let now = chrono::Utc::now().timestamp();
    let ten_minutes_ago =
        move |c: &mut orgplane_platform::auth::Claims| c.auth_time = Some(now - 600);
    let delete = || DeleteOrganizationRequest {
        organization_id: id.clone(),
        confirm_name: "Acme".into(),
        etag: String::new(),
    };

    // The default policy: 5 minutes.
    let d = refusal(
        c.delete_organization(rig.as_user_with("user_owner", ten_minutes_ago, delete()))
            .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );
    let meta = |d: &harness::Details, k: &str| d.metadata.get(k).cloned().unwrap_or_default();
    assert_eq!(meta(&d, "signals"), "stale_sign_in");
    assert_eq!(meta(&d, "required"), "password");
    assert_eq!(meta(&d, "max_age_seconds"), "300");
    assert_eq!(meta(&d, "organization_id"), id);

    // Risk recorded at sign-in asks for a step-up even of a fresh sign-in.
    let d = refusal(
        c.delete_organization(rig.as_user_with(
            "user_owner",
            |c| c.risk = vec!["new_address".into()],
            delete(),
        ))
        .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );
    assert_eq!(meta(&d, "signals"), "new_address");
    // An enrolled user re-authenticates with the second factor.
    let d = refusal(
        c.transfer_ownership(rig.as_user_with(
            "user_owner",
            move |c| {
                c.auth_time = Some(now - 600);
                c.risk = vec!["recent_failures".into()];
                c.mfa_enrolled = true;
            },
            TransferOwnershipRequest {
                organization_id: id.clone(),
                new_owner_user_id: "user_admin".into(),
            },
        ))
        .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );
    assert_eq!(meta(&d, "signals"), "stale_sign_in,recent_failures");
    assert_eq!(meta(&d, "required"), "second_factor");
    refusal(
        c.update_security_policy(rig.as_user_with(
            "user_owner",
            ten_minutes_ago,
            policy_update(&id, &["reauthentication_max_age"], "", |p| {
                p.reauthentication_max_age = seconds(900)
            }),
        ))
        .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );

    // A 15-minute policy lets the 10-minute-old sign-in through; an older one still not.
    c.update_security_policy(rig.as_user(
        "user_owner",
        policy_update(&id, &["reauthentication_max_age"], "", |p| {
            p.reauthentication_max_age = seconds(900)
        }),
    ))
    .await
    .unwrap();
    let d = refusal(
        c.delete_organization(rig.as_user_with(
            "user_owner",
            move |c| c.auth_time = Some(now - 960),
            delete(),
        ))
        .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );
    assert_eq!(meta(&d, "max_age_seconds"), "900");
    c.delete_organization(rig.as_user_with("user_owner", ten_minutes_ago, delete()))
        .await
        .unwrap();
    c.undelete_organization(rig.as_user_with(
        "user_owner",
        ten_minutes_ago,
        UndeleteOrganizationRequest {
            organization_id: id.clone(),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn id_12_step_up_weighs_the_policys_age_and_the_tokens_risk_signals_sqlite() {
    id_12_step_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn id_12_step_up_weighs_the_policys_age_and_the_tokens_risk_signals_postgres() {
    id_12_step_up(Backend::Postgres).await;
}
