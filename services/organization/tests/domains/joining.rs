//! Who may join (rules ORG-6, ORG-14, ID-15): the invite restriction to VERIFIED domains,
//! BLOCKED domains at invite creation and at acceptance, addresses compared in their canonical
//! form, and the VERIFIED domains in the role snapshot and gone with a purge.

use orgplane_organization::store::domain;
use orgplane_proto::organization::v1::*;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

fn restrict(org: &str, on: bool) -> UpdateSecurityPolicyRequest {
    UpdateSecurityPolicyRequest {
        security_policy: Some(SecurityPolicy {
            organization_id: org.into(),
            restrict_invites_to_verified_domains: on,
            ..Default::default()
        }),
        update_mask: mask(&["restrict_invites_to_verified_domains"]),
        etag: String::new(),
    }
}

async fn invite_restriction(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    verified(&env, "user_ada", &org.id, "acme.test", DomainPolicy::None).await;
    create_domain(
        &env,
        "user_ada",
        &org.id,
        "pending.test",
        DomainPolicy::None,
    )
    .await;
    let mut c = env.client();
    // Off by default: any address.
    c.create_invite(env.as_user("user_ada", invite_req(&org.id, "x@elsewhere.test")))
        .await
        .unwrap();
    let on = c
        .update_security_policy(env.as_user("user_ada", restrict(&org.id, true)))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap();
    assert!(on.restrict_invites_to_verified_domains);
    for refused in ["y@elsewhere.test", "someone@gmail.com", "z@pending.test"] {
        expect_err(
            c.create_invite(env.as_user("user_ada", invite_req(&org.id, refused)))
                .await,
            Code::FailedPrecondition,
            "EMAIL_DOMAIN_NOT_VERIFIED",
        );
    }
    let ok = c
        .create_invite(env.as_user("user_ada", invite_req(&org.id, "Bob@ACME.test")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(
        ok.email, "Bob@acme.test",
        "the canonical form: domain lower case"
    );
    // A service reads it; the change is audited with before and after.
    let read = c
        .get_security_policy(env.as_service(GetSecurityPolicyRequest {
            organization_id: org.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap();
    assert!(read.restrict_invites_to_verified_domains);
    let records = env.audit_log("user_ada", &org.id).await;
    let change = records
        .iter()
        .find(|e| e.action == "security_policy.update")
        .unwrap();
    assert_eq!(
        field(&change.after, "restrictInvitesToVerifiedDomains").as_deref(),
        Some("true")
    );
    assert_eq!(
        field(&change.before, "restrictInvitesToVerifiedDomains"),
        None,
        "false is the default"
    );
    // Off again: any address.
    c.update_security_policy(env.as_user("user_ada", restrict(&org.id, false)))
        .await
        .unwrap();
    c.create_invite(env.as_user("user_ada", invite_req(&org.id, "y@elsewhere.test")))
        .await
        .unwrap();
}

#[tokio::test]
async fn org_6_invites_restricted_to_verified_domains_on_and_off_sqlite() {
    invite_restriction(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_6_invites_restricted_to_verified_domains_on_and_off_postgres() {
    invite_restriction(Backend::Postgres).await;
}

#[tokio::test]
async fn org_14_a_blocked_domain_is_refused_at_invite_and_at_acceptance() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let other = create_org(&env, "user_zed", "Other").await;
    let mut c = env.client();
    env.identity
        .set("user_bob", |u| u.email = "bob@blocked.test".into());
    let early = c
        .create_invite(env.as_user("user_ada", invite_req(&org.id, "bob@blocked.test")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    let elsewhere = c
        .create_invite(env.as_user("user_zed", invite_req(&other.id, "bob@blocked.test")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    verified(
        &env,
        "user_ada",
        &org.id,
        "blocked.test",
        DomainPolicy::Blocked,
    )
    .await;
    expect_err(
        c.accept_invite(env.as_user(
            "user_bob",
            AcceptInviteRequest {
                invite_id: early.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "EMAIL_DOMAIN_BLOCKED",
    );
    expect_err(
        c.create_invite(env.as_user("user_ada", invite_req(&org.id, "carol@Blocked.TEST")))
            .await,
        Code::FailedPrecondition,
        "EMAIL_DOMAIN_BLOCKED",
    );
    // Another organization's BLOCKED domain is not this one's business.
    c.accept_invite(env.as_user(
        "user_bob",
        AcceptInviteRequest {
            invite_id: elsewhere.id,
        },
    ))
    .await
    .unwrap();
    let records = env.audit_log("user_ada", &org.id).await;
    assert!(
        records
            .iter()
            .any(|e| e.action == "invite.accept" && e.error_reason == "EMAIL_DOMAIN_BLOCKED")
    );
}

#[tokio::test]
async fn id_15_invites_match_canonical_addresses_and_refuse_confusable_ones() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let mut c = env.client();
    // KELVIN SIGN reads as K: refused, never folded into "kim@…".
    let err = expect_err(
        c.create_invite(env.as_user("user_ada", invite_req(&org.id, "\u{212A}im@acme.test")))
            .await,
        Code::InvalidArgument,
        "EMAIL_CONFUSABLE_CHARACTERS",
    );
    assert_eq!(
        crate::harness::details(&err).field_violations[0].0,
        "invite.email"
    );
    // Case in the domain and ASCII case in the local part do not make another address.
    env.identity
        .set("user_kim", |u| u.email = "kim@bücher.test".into());
    let inv = c
        .create_invite(env.as_user("user_ada", invite_req(&org.id, "Kim@XN--BCHER-KVA.test")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    expect_err(
        c.create_invite(env.as_user("user_ada", invite_req(&org.id, "KIM@Bücher.test")))
            .await,
        Code::AlreadyExists,
        "INVITE_ALREADY_PENDING",
    );
    c.accept_invite(env.as_user("user_kim", AcceptInviteRequest { invite_id: inv.id }))
        .await
        .unwrap();
    expect_err(
        c.create_invite(env.as_user("user_ada", invite_req(&org.id, "kim@xn--bcher-kva.test")))
            .await,
        Code::AlreadyExists,
        "ALREADY_A_MEMBER",
    );
}

#[tokio::test]
async fn org_14_the_snapshot_carries_verified_domains_and_a_purge_removes_them() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let plain = create_org(&env, "user_bo", "Plain").await;
    let d = verified(
        &env,
        "user_ada",
        &org.id,
        "acme.test",
        DomainPolicy::AutoEnroll,
    )
    .await;
    create_domain(
        &env,
        "user_ada",
        &org.id,
        "waiting.test",
        DomainPolicy::None,
    )
    .await;
    for user in ["user_m1", "user_m2", "user_m3"] {
        add_user(&env, &org.id, "user_ada", user).await;
    }
    // Pages of 2: the organization appears on two pages, with its domains on each.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = env
            .client()
            .list_role_assignments(env.as_service(ListRoleAssignmentsRequest {
                page_size: 2,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        for o in page.organizations {
            let id = o.organization.unwrap().id;
            let names: Vec<(String, String, i32)> = o
                .verified_domains
                .iter()
                .map(|v| (v.domain_id.clone(), v.domain_name.clone(), v.policy))
                .collect();
            seen.push((id, names));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let of_org: Vec<_> = seen.iter().filter(|(id, _)| *id == org.id).collect();
    assert!(of_org.len() >= 2, "{seen:?}");
    for (_, names) in of_org {
        assert_eq!(
            names,
            &vec![(
                d.id.clone(),
                "acme.test".to_owned(),
                DomainPolicy::AutoEnroll as i32
            )]
        );
    }
    assert!(
        seen.iter()
            .filter(|(id, _)| *id == plain.id)
            .all(|(_, n)| n.is_empty())
    );

    // Deleted, then purged: its domains go with it.
    let mut c = env.client();
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
    env.clock.advance(chrono::Duration::days(8));
    assert_eq!(env.org.purge_once().await.unwrap(), vec![org.id.clone()]);
    let left = domain::Entity::find()
        .filter(domain::Column::OrganizationId.eq(org.id.clone()))
        .count(env.org.db())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

async fn stored_keys_migrate(backend: Backend) {
    use orgplane_organization::migration::Migrator;
    use orgplane_organization::store::email_keys::CanonicalEmailKeys;
    use orgplane_organization::store::{invite, member};
    use sea_orm::ConnectionTrait;
    use sea_orm_migration::{MigrationName, MigratorTrait};
    let db = match backend {
        Backend::Sqlite => orgplane_platform::testkit::TestDb::sqlite(),
        Backend::Postgres => match orgplane_platform::testkit::TestDb::postgres().await {
            Some(db) => db,
            None => return,
        },
    };
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == CanonicalEmailKeys.name())
        .unwrap() as u32;
    Migrator::up(&conn, Some(before)).await.unwrap();
    // "rémi" with a decomposed é (e + U+0301), as an older release stored it.
    let nfd = "re\u{301}mi@example.com";
    conn.execute_unprepared(&format!(
        "INSERT INTO members (organization_id, user_id, email, role, create_time_ms, \
         update_time_ms, version) VALUES ('org_1', 'user_remi', '{nfd}', 5, 1, 1, 1)"
    ))
    .await
    .unwrap();
    for (id, key) in [("inv_1", Some(nfd)), ("inv_2", None)] {
        let key = key.map_or("NULL".to_owned(), |k| format!("'{k}'"));
        conn.execute_unprepared(&format!(
            "INSERT INTO invites (id, organization_id, email, pending_key, role, state, \
             inviter_user_id, create_time_ms, expire_time_ms, accept_time_ms, accepted_user_id, \
             delete_time_ms, inviter_api_key_id) VALUES ('{id}', 'org_1', '{nfd}', {key}, 5, 1, \
             'user_ada', 1, 2, NULL, '', NULL, '')"
        ))
        .await
        .unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();
    let m = member::Entity::find().one(&conn).await.unwrap().unwrap();
    assert_eq!(m.email, "r\u{e9}mi@example.com");
    let i = invite::Entity::find_by_id("inv_1".to_owned())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.pending_key.as_deref(), Some("r\u{e9}mi@example.com"));
    let j = invite::Entity::find_by_id("inv_2".to_owned())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.pending_key, None);
}

#[tokio::test]
async fn id_15_stored_email_keys_become_canonical_after_the_migration_sqlite() {
    stored_keys_migrate(Backend::Sqlite).await;
}

#[tokio::test]
async fn id_15_stored_email_keys_become_canonical_after_the_migration_postgres() {
    stored_keys_migrate(Backend::Postgres).await;
}
