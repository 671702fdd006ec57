//! Imports between organizations (rules ACC-2, ACC-3): MANAGED imports need the owner's email
//! in a VERIFIED domain, stay PENDING until the owner accepts, then move the account;
//! INDEPENDENT ones are listed and granted but never changed by the importing organization.

use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

async fn a_managed_import_moves_the_account(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    set_email(&env, "user_own", "user_own@acme.test");
    let home = create_org(&env, "user_h", "Home").await;
    let dest = create_org(&env, "user_d", "Dest").await;
    join(&env, &home.id, "user_h", "user_own", OrgRole::User).await;
    let a = create_account(&env, "user_h", &home.id, "Moving", "user_own").await;
    let sub_own = create_sub(&env, "user_own", &a.id, "OwnSub").await.unwrap();
    let sub_admin = create_sub(&env, "user_h", &a.id, "AdminSub").await.unwrap();

    // No VERIFIED domain of the owner's address: refused, without naming the owner's domain
    // (the account may be another tenant's).
    let err = expect_err(
        import(&env, "user_d", &dest.id, &a.id, AccountType::Managed).await,
        Code::FailedPrecondition,
        "EMAIL_DOMAIN_NOT_VERIFIED",
    );
    let info = tonic_types::StatusExt::get_details_error_info(&err).unwrap();
    assert_eq!(
        info.metadata.get("account_id").map(String::as_str),
        Some(a.id.as_str())
    );
    assert!(!info.metadata.contains_key("domain_name"));
    assert!(!err.message().contains("acme.test"), "{}", err.message());
    // Subaccounts move only with their parent; unknown ids are NOT_FOUND.
    expect_err(
        import(&env, "user_d", &dest.id, &sub_own.id, AccountType::Managed).await,
        Code::FailedPrecondition,
        "ACCOUNT_IS_SUBACCOUNT",
    );
    expect_err(
        import(&env, "user_d", &dest.id, "acct_nope", AccountType::Managed).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    verified_domain(&env, "user_d", &dest.id, "acme.test").await;
    let pending = import(&env, "user_d", &dest.id, &a.id, AccountType::Unspecified)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    // A PENDING entry shows only what the importer named and asked for.
    assert_eq!(pending.r#type(), AccountType::Pending);
    assert_eq!(pending.requested_type(), AccountType::Managed);
    assert_eq!(pending.organization_id, dest.id);
    assert!(pending.display_name.is_empty() && pending.owner_user_id.is_empty());
    assert!(pending.home_organization_id.is_empty());
    assert_eq!(
        list_all(&env, "user_d", &dest.id).await,
        std::slice::from_ref(&pending)
    );
    expect_err(
        import(&env, "user_d", &dest.id, &a.id, AccountType::Independent).await,
        Code::FailedPrecondition,
        "ACCOUNT_ALREADY_IN_ORGANIZATION",
    );
    // The importer cannot rename it through its PENDING entry.
    let mut through_dest = pending.clone();
    through_dest.display_name = "Mine now".into();
    expect_err(
        update(&env, "user_d", through_dest, &["display_name"]).await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_MANAGED",
    );
    // Only the owner accepts; they must be a member of the importing organization.
    expect_err(
        accept(&env, "user_d", &a.id, &dest.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        accept(&env, "user_h", &a.id, &dest.id).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        accept(&env, "user_own", &a.id, &dest.id).await,
        Code::FailedPrecondition,
        "ACCOUNT_OWNER_NOT_MANAGED",
    );
    join(&env, &dest.id, "user_d", "user_own", OrgRole::User).await;
    expect_err(
        accept(&env, "user_own", &a.id, &home.id).await,
        Code::FailedPrecondition,
        "ACCOUNT_IMPORT_NOT_PENDING",
    );
    let before = head(&env).await;
    let moved = accept(&env, "user_own", &a.id, &dest.id)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(moved.r#type(), AccountType::Managed);
    assert_eq!(moved.home_organization_id, dest.id);
    assert_eq!(moved.display_name, "Moving");
    assert_eq!(moved.owner_user_id, "user_own");
    // Gone from the former home's list, there as MANAGED.
    assert!(list_all(&env, "user_h", &home.id).await.is_empty());
    assert_eq!(
        list_all(&env, "user_d", &dest.id).await,
        std::slice::from_ref(&moved)
    );
    expect_err(
        get(&env, "user_h", &a.id, &home.id)
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );
    // The subaccounts moved with it; the one owned by the former home's OWNER (not a member of
    // the new home) passed to the account's owner (rule ACC-3).
    let s1 = get(&env, "user_d", &sub_own.id, "").await.unwrap();
    let s2 = get(&env, "user_d", &sub_admin.id, "").await.unwrap();
    assert_eq!(s1.home_organization_id, dest.id);
    assert_eq!(s1.owner_user_id, "user_own");
    assert_eq!(s2.home_organization_id, dest.id);
    assert_eq!(s2.owner_user_id, "user_own");
    // One event per account, naming the organization left; audit records in both.
    let events = account_events(&env, before).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e.previous_organization_id == home.id
        && e.account.as_ref().unwrap().home_organization_id == dest.id));
    let out = env.audit_log("user_h", &home.id).await;
    assert!(
        out.iter()
            .any(|e| e.action == "account.move_out" && e.resource_id == a.id)
    );
    let inn = env.audit_log("user_d", &dest.id).await;
    assert!(
        inn.iter()
            .any(|e| e.action == "account.accept_import" && e.resource_id == a.id)
    );
    // Accepted once: no longer pending.
    expect_err(
        accept(&env, "user_own", &a.id, &dest.id).await,
        Code::FailedPrecondition,
        "ACCOUNT_IMPORT_NOT_PENDING",
    );
}

#[tokio::test]
async fn acc_2_a_managed_import_needs_a_verified_domain_and_the_owner_and_moves_the_account() {
    a_managed_import_moves_the_account(Backend::Sqlite).await;
}

#[tokio::test]
async fn acc_2_a_managed_import_needs_a_verified_domain_and_the_owner_and_moves_the_account_postgres()
 {
    a_managed_import_moves_the_account(Backend::Postgres).await;
}

#[tokio::test]
async fn acc_2_independent_accounts_are_listed_and_granted_but_never_changed_by_the_importer() {
    let env = env_with(Backend::Sqlite, |c| c.max_accounts = 2)
        .await
        .unwrap();
    let home = create_org(&env, "user_h", "Home").await;
    let dest = create_org(&env, "user_d", "Dest").await;
    join(&env, &dest.id, "user_d", "user_v", OrgRole::User).await;
    let a = create_account(&env, "user_h", &home.id, "Shared", "").await;
    let b = create_account(&env, "user_h", &home.id, "Other", "").await;
    // No domain needed for INDEPENDENT; pending imports count against the limit.
    let p = import(&env, "user_d", &dest.id, &a.id, AccountType::Independent)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(p.requested_type(), AccountType::Independent);
    create_account(&env, "user_d", &dest.id, "Own", "").await;
    expect_err(
        import(&env, "user_d", &dest.id, &b.id, AccountType::Independent).await,
        Code::ResourceExhausted,
        "ACCOUNT_LIMIT_REACHED",
    );
    // No grants on a PENDING entry.
    expect_err(
        accounts(&env)
            .add_account_member(env.as_user(
                "user_d",
                AddAccountMemberRequest {
                    account_id: a.id.clone(),
                    organization_id: dest.id.clone(),
                    user_id: "user_v".into(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_MANAGED",
    );
    let before = head(&env).await;
    let ind = accept(&env, "user_h", &a.id, &dest.id)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(ind.r#type(), AccountType::Independent);
    assert_eq!(ind.organization_id, dest.id);
    assert_eq!(ind.home_organization_id, home.id);
    assert_eq!(ind.display_name, "Shared");
    let events = account_events(&env, before).await;
    assert_eq!(events.len(), 1);
    assert!(events[0].previous_organization_id.is_empty());
    assert_eq!(events[0].account.as_ref().unwrap().organization_id, home.id);
    // Still MANAGED at home.
    assert_eq!(
        get(&env, "user_h", &a.id, "").await.unwrap().r#type(),
        AccountType::Managed
    );
    // The importer cannot rename, flag, transfer or close it.
    let mut through_dest = ind.clone();
    through_dest.display_name = "Ours".into();
    expect_err(
        update(&env, "user_d", through_dest, &["display_name"]).await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_MANAGED",
    );
    let mut home_view = ind.clone();
    home_view.organization_id = String::new();
    home_view.display_name = "Ours".into();
    expect_err(
        update(&env, "user_d", home_view, &["display_name"]).await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_MANAGED",
    );
    expect_err(
        transfer(&env, "user_d", &a.id, "user_d").await,
        Code::FailedPrecondition,
        "ACCOUNT_NOT_MANAGED",
    );
    // Its members may be granted access to it.
    accounts(&env)
        .add_account_member(env.as_user(
            "user_d",
            AddAccountMemberRequest {
                account_id: a.id.clone(),
                organization_id: dest.id.clone(),
                user_id: "user_v".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(get(&env, "user_v", &a.id, &dest.id).await.unwrap(), ind);
    assert_eq!(
        list_all(&env, "user_v", &dest.id).await,
        std::slice::from_ref(&ind)
    );
    // ... but through the account's home they see nothing.
    expect_err(
        get(&env, "user_v", &a.id, "")
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );
    // Closing it through the importer only takes it off the importer's list.
    let removed = close(&env, "user_d", &a.id, &dest.id)
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(removed.state(), AccountState::Active);
    assert_eq!(list_all(&env, "user_d", &dest.id).await.len(), 1);
    let at_home = get(&env, "user_h", &a.id, "").await.unwrap();
    assert_eq!(at_home.state(), AccountState::Active);
    // A pending import is withdrawn the same way.
    import(&env, "user_d", &dest.id, &b.id, AccountType::Independent)
        .await
        .unwrap();
    close(&env, "user_d", &b.id, &dest.id).await.unwrap();
    expect_err(
        accept(&env, "user_h", &b.id, &dest.id).await,
        Code::FailedPrecondition,
        "ACCOUNT_IMPORT_NOT_PENDING",
    );
    let log = env.audit_log("user_d", &dest.id).await;
    for action in [
        "account.import",
        "account.accept_import",
        "account.remove",
        "account.withdraw_import",
    ] {
        assert!(log.iter().any(|e| e.action == action), "{action}: {log:?}");
    }
}
