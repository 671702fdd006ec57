//! Creating, reading, listing, renaming, closing and transferring accounts; subaccounts; the
//! limits (rules ACC-1, ACC-3, ACC-4).

use std::time::Duration;

use orgplane_proto::events::v1::{UserDeleted, event::Payload};
use orgplane_proto::organization::v1::*;
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::harness::Backend;

#[tokio::test]
async fn acc_1_create_read_list_rename_close_with_audit_and_events() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_o1", "Acme").await;
    join(&env, &org.id, "user_o1", "user_m1", OrgRole::User).await;
    let before = head(&env).await;
    let a = create_account(&env, "user_o1", &org.id, " Prod ", "").await;
    assert!(a.id.starts_with("acct_"), "{a:?}");
    assert_eq!(a.display_name, "Prod");
    assert_eq!(a.r#type(), AccountType::Managed);
    assert_eq!(a.state(), AccountState::Active);
    assert_eq!(a.organization_id, org.id);
    assert_eq!(a.home_organization_id, org.id);
    assert_eq!(a.owner_user_id, "user_o1");
    assert_eq!(a.compliance(), ComplianceDesignation::None);
    assert_eq!(a.compliance_source(), ComplianceSource::OrganizationDefault);
    assert_eq!(a.etag, "v1");
    let b = create_account(&env, "user_o1", &org.id, "Staging", "user_m1").await;
    assert_eq!(b.owner_user_id, "user_m1");
    // The owner must be a member (rule ACC-3); a plain member cannot create (rule ACC-1).
    expect_err(
        accounts(&env)
            .create_account(env.as_user("user_o1", create_req(&org.id, "X", "user_stranger")))
            .await,
        Code::FailedPrecondition,
        "ACCOUNT_OWNER_NOT_MANAGED",
    );
    expect_err(
        accounts(&env)
            .create_account(env.as_user("user_m1", create_req(&org.id, "X", "")))
            .await,
        Code::PermissionDenied,
        "INSUFFICIENT_ROLE",
    );
    let err = accounts(&env)
        .create_account(env.as_user("user_o1", create_req(&org.id, " ", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    assert_eq!(get(&env, "user_o1", &a.id, "").await.unwrap(), a);
    let listed = list_all(&env, "user_o1", &org.id).await;
    assert_eq!(
        listed.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str(), b.id.as_str()],
        "oldest first"
    );
    // Page tokens are bound to their filters.
    let page = accounts(&env)
        .list_accounts(env.as_user(
            "user_o1",
            ListAccountsRequest {
                organization_id: org.id.clone(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.accounts.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let err = accounts(&env)
        .list_accounts(env.as_user(
            "user_o1",
            ListAccountsRequest {
                organization_id: org.id.clone(),
                page_size: 1,
                r#type: AccountType::Managed as i32,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let renamed = update(
        &env,
        "user_o1",
        Account {
            id: a.id.clone(),
            display_name: "Production".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap()
    .into_inner()
    .account
    .unwrap();
    assert_eq!(renamed.display_name, "Production");
    assert_eq!(renamed.etag, "v2");
    let stale = accounts(&env)
        .update_account(env.as_user(
            "user_o1",
            UpdateAccountRequest {
                account: Some(Account {
                    id: a.id.clone(),
                    display_name: "Again".into(),
                    ..Default::default()
                }),
                update_mask: orgplane_platform::testkit::mask(&["display_name"]),
                etag: "v1".into(),
            },
        ))
        .await;
    expect_err(stale, Code::Aborted, "ETAG_MISMATCH");
    let err = update(&env, "user_o1", renamed.clone(), &["owner_user_id"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let closed = close(&env, "user_o1", &a.id, "")
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(closed.state(), AccountState::Closed);
    assert!(closed.close_time.is_some());
    expect_err(
        close(&env, "user_o1", &a.id, "").await,
        Code::FailedPrecondition,
        "ACCOUNT_CLOSED",
    );
    expect_err(
        update(&env, "user_o1", closed.clone(), &["display_name"]).await,
        Code::FailedPrecondition,
        "ACCOUNT_CLOSED",
    );
    // Closed accounts stay readable, and are listed only when asked for.
    assert_eq!(get(&env, "user_o1", &a.id, "").await.unwrap(), closed);
    let active = accounts(&env)
        .list_accounts(env.as_user(
            "user_o1",
            ListAccountsRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(active.iter().map(|x| &x.id).collect::<Vec<_>>(), [&b.id]);
    assert_eq!(list_all(&env, "user_o1", &org.id).await.len(), 2);

    // Every change is an AccountChanged event with the whole account, and an audit record.
    let events = account_events(&env, before).await;
    let seen: Vec<(String, i32)> = events
        .iter()
        .map(|e| {
            let acc = e.account.as_ref().unwrap();
            (acc.id.clone(), acc.state)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (a.id.clone(), AccountState::Active as i32),
            (b.id.clone(), AccountState::Active as i32),
            (a.id.clone(), AccountState::Active as i32),
            (a.id.clone(), AccountState::Closed as i32),
        ]
    );
    assert_eq!(
        events[2].account.as_ref().unwrap().display_name,
        "Production"
    );
    assert!(events.iter().all(|e| e.previous_organization_id.is_empty()));
    let log = env.audit_log("user_o1", &org.id).await;
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.resource_type == "account")
        .map(|e| (e.action.as_str(), e.error_reason.as_str()))
        .rev()
        .collect();
    assert_eq!(
        outcomes,
        [
            ("account.create", ""),
            ("account.create", ""),
            ("account.create", "ACCOUNT_OWNER_NOT_MANAGED"),
            ("account.create", "INSUFFICIENT_ROLE"),
            ("account.update", ""),
            ("account.update", "ETAG_MISMATCH"),
            ("account.close", ""),
            ("account.close", "ACCOUNT_CLOSED"),
            ("account.update", "ACCOUNT_CLOSED"),
        ]
    );
    let created = log
        .iter()
        .rev()
        .find(|e| e.action == "account.create")
        .unwrap();
    assert!(
        created.before.is_none() && created.after.is_some(),
        "{created:?}"
    );
}

#[tokio::test]
async fn acc_1_the_limit_answers_quota_failure_and_closed_accounts_free_a_slot() {
    let env = env_with(Backend::Sqlite, |c| {
        c.max_accounts = 2;
        c.max_accounts_overrides = vec!["org_override_test=4".parse().unwrap()];
    })
    .await
    .unwrap();
    let org = create_org(&env, "user_o1", "Acme").await;
    let a = create_account(&env, "user_o1", &org.id, "A", "").await;
    create_account(&env, "user_o1", &org.id, "B", "").await;
    let err = expect_err(
        accounts(&env)
            .create_account(env.as_user("user_o1", create_req(&org.id, "C", "")))
            .await,
        Code::ResourceExhausted,
        "ACCOUNT_LIMIT_REACHED",
    );
    let quota = err.get_details_quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    assert_eq!(quota.violations[0].subject, org.id);
    assert!(quota.violations[0].description.contains('2'), "{quota:?}");
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("limit").map(String::as_str), Some("2"));
    // Subaccounts do not count.
    create_sub(&env, "user_o1", &a.id, "Sub").await.unwrap();
    // A closed account frees its slot.
    let sub_id = accounts(&env)
        .list_subaccounts(env.as_user(
            "user_o1",
            ListSubaccountsRequest {
                parent_account_id: a.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subaccounts[0]
        .id
        .clone();
    close(&env, "user_o1", &sub_id, "").await.unwrap();
    close(&env, "user_o1", &a.id, "").await.unwrap();
    create_account(&env, "user_o1", &org.id, "C", "").await;

    // The per-organization override: an organization (written straight into the database so that
    // its id is known when the service starts) with a limit of its own.
    let now = chrono::Utc::now().timestamp_millis();
    let db = env.org.db();
    orgplane_organization::store::organization::Model {
        id: "org_override_test".into(),
        name: "Override".into(),
        name_key: "override".into(),
        org_type: OrganizationType::Company as i32,
        primary_email: String::new(),
        state: OrganizationState::Active as i32,
        owner_user_id: "user_o2".into(),
        creator_user_id: "user_o2".into(),
        create_time_ms: now,
        update_time_ms: now,
        delete_time_ms: None,
        purge_time_ms: None,
        version: 1,
        kind: OrganizationKind::Standard as i32,
        operator_id: String::new(),
        merged_into_id: String::new(),
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
    orgplane_organization::store::member::Model {
        organization_id: "org_override_test".into(),
        user_id: "user_o2".into(),
        email: "user_o2@example.com".into(),
        role: OrgRole::Owner as i32,
        create_time_ms: now,
        update_time_ms: now,
        version: 1,
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
    for i in 0..4 {
        create_account(&env, "user_o2", "org_override_test", &format!("A{i}"), "").await;
    }
    expect_err(
        accounts(&env)
            .create_account(env.as_user("user_o2", create_req("org_override_test", "A5", "")))
            .await,
        Code::ResourceExhausted,
        "ACCOUNT_LIMIT_REACHED",
    );
}

async fn concurrent_creates_never_exceed_the_limit(backend: Backend) {
    let Some(env) = env_with(backend, |c| c.max_accounts = 3).await else {
        return;
    };
    let org = create_org(&env, "user_o1", "Acme").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut client = accounts(&env);
        let req = env.as_user("user_o1", create_req(&org.id, &format!("A{i}"), ""));
        tasks.push(tokio::spawn(
            async move { client.create_account(req).await },
        ));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            }
        }
    }
    assert_eq!(created, 3);
    assert_eq!(list_all(&env, "user_o1", &org.id).await.len(), 3);
}

#[tokio::test]
async fn acc_1_concurrent_creates_never_exceed_the_limit() {
    concurrent_creates_never_exceed_the_limit(Backend::Sqlite).await;
}

#[tokio::test]
async fn acc_1_concurrent_creates_never_exceed_the_limit_postgres() {
    concurrent_creates_never_exceed_the_limit(Backend::Postgres).await;
}

async fn ownership_follows_members(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_o1", "Acme").await;
    let other = create_org(&env, "user_o9", "Other").await;
    join(&env, &org.id, "user_o1", "user_m1", OrgRole::Admin).await;
    join(&env, &org.id, "user_o1", "user_m2", OrgRole::User).await;
    join(&env, &org.id, "user_o1", "user_m3", OrgRole::User).await;
    let a = create_account(&env, "user_o1", &org.id, "A", "user_m2").await;
    // Only to a member of the home organization (rule ACC-3).
    expect_err(
        transfer(&env, "user_o1", &a.id, "user_o9").await,
        Code::FailedPrecondition,
        "ACCOUNT_OWNER_NOT_MANAGED",
    );
    // The owner may hand it on; a member who neither owns nor administers may not.
    expect_err(
        transfer(&env, "user_m3", &a.id, "user_m3").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let t = transfer(&env, "user_m2", &a.id, "user_m3")
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(t.owner_user_id, "user_m3");
    let sub = create_sub(&env, "user_m3", &a.id, "S").await.unwrap();
    assert_eq!(sub.owner_user_id, "user_m3");
    // The other organization's owner knows nothing of it.
    expect_err(
        transfer(&env, "user_o9", &a.id, "user_o9").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let _ = other;

    // A member leaving hands their accounts (subaccounts included) to the OWNER, with an
    // audit record and an event each.
    let before = head(&env).await;
    remove_member(&env, "user_m1", &org.id, "user_m3")
        .await
        .unwrap();
    for id in [&a.id, &sub.id] {
        let now = get(&env, "user_o1", id, "").await.unwrap();
        assert_eq!(now.owner_user_id, "user_o1", "{now:?}");
    }
    let events = account_events(&env, before).await;
    let mut owners: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let acc = e.account.as_ref().unwrap();
            (acc.id.clone(), acc.owner_user_id.clone())
        })
        .collect();
    owners.sort();
    let mut expected = vec![
        (a.id.clone(), "user_o1".to_string()),
        (sub.id.clone(), "user_o1".to_string()),
    ];
    expected.sort();
    assert_eq!(owners, expected);
    let log = env.audit_log("user_o1", &org.id).await;
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "account.transfer_ownership" && e.error_reason.is_empty())
            .count(),
        3,
        "one by the owner, two on leaving"
    );

    // Identity deleting a user does the same.
    let b = create_account(&env, "user_o1", &org.id, "B", "user_m2").await;
    env.publish_identity(Payload::UserDeleted(UserDeleted {
        user_id: "user_m2".into(),
    }))
    .await;
    let mut owner = String::new();
    for _ in 0..100 {
        owner = get(&env, "user_o1", &b.id, "").await.unwrap().owner_user_id;
        if owner == "user_o1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(owner, "user_o1");
}

#[tokio::test]
async fn acc_3_ownership_moves_only_to_members_and_passes_to_the_owner_on_leaving() {
    ownership_follows_members(Backend::Sqlite).await;
}

#[tokio::test]
async fn acc_3_ownership_moves_only_to_members_and_passes_to_the_owner_on_leaving_postgres() {
    ownership_follows_members(Backend::Postgres).await;
}

#[tokio::test]
async fn acc_4_subaccounts_live_under_one_account_within_their_limit() {
    let env = env_with(Backend::Sqlite, |c| c.max_subaccounts = 2)
        .await
        .unwrap();
    let org = create_org(&env, "user_o1", "Acme").await;
    join(&env, &org.id, "user_o1", "user_m1", OrgRole::User).await;
    join(&env, &org.id, "user_o1", "user_m2", OrgRole::User).await;
    let parent = create_account(&env, "user_o1", &org.id, "P", "user_m1").await;
    // The parent's owner creates; another member cannot (not even see it).
    let s1 = create_sub(&env, "user_m1", &parent.id, "S1").await.unwrap();
    assert_eq!(s1.parent_account_id, parent.id);
    assert_eq!(s1.home_organization_id, org.id);
    assert_eq!(s1.owner_user_id, "user_m1");
    expect_err(
        create_sub(&env, "user_m2", &parent.id, "X")
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );
    // An ADMIN-created subaccount is the admin's, and the parent's owner reaches it.
    let s2 = create_sub(&env, "user_o1", &parent.id, "S2").await.unwrap();
    assert_eq!(s2.owner_user_id, "user_o1");
    assert_eq!(get(&env, "user_m1", &s2.id, "").await.unwrap().id, s2.id);
    let err = expect_err(
        create_sub(&env, "user_m1", &parent.id, "S3")
            .await
            .map(tonic::Response::new),
        Code::ResourceExhausted,
        "SUBACCOUNT_LIMIT_REACHED",
    );
    assert_eq!(
        err.get_details_quota_failure().unwrap().violations[0].subject,
        parent.id
    );
    // Subaccounts do not nest, are not in ListAccounts, and keep their parent open.
    expect_err(
        create_sub(&env, "user_m1", &s1.id, "X")
            .await
            .map(tonic::Response::new),
        Code::FailedPrecondition,
        "ACCOUNT_IS_SUBACCOUNT",
    );
    assert_eq!(list_all(&env, "user_o1", &org.id).await.len(), 1);
    let subs = accounts(&env)
        .list_subaccounts(env.as_user(
            "user_m1",
            ListSubaccountsRequest {
                parent_account_id: parent.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subaccounts;
    assert_eq!(
        subs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [s1.id.as_str(), s2.id.as_str()]
    );
    expect_err(
        close(&env, "user_o1", &parent.id, "").await,
        Code::FailedPrecondition,
        "ACCOUNT_HAS_SUBACCOUNTS",
    );
    close(&env, "user_o1", &s1.id, "").await.unwrap();
    // A closed one frees its slot.
    create_sub(&env, "user_m1", &parent.id, "S3").await.unwrap();
}
