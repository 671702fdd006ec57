//! Who sees what (rule ACC-4 and the service comment of `AccountService`): members see what they
//! own or were granted; other tenants get NOT_FOUND for everything naming an account of this
//! organization.

use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

#[tokio::test]
async fn acc_4_members_see_what_they_own_or_were_granted_and_other_tenants_nothing() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_o1", "Acme").await;
    let other = create_org(&env, "user_x1", "Other").await;
    join(&env, &org.id, "user_o1", "user_m1", OrgRole::User).await;
    join(&env, &org.id, "user_o1", "user_m2", OrgRole::Developer).await;
    let mine = create_account(&env, "user_o1", &org.id, "Mine", "user_m1").await;
    let granted = create_account(&env, "user_o1", &org.id, "Granted", "").await;
    let hidden = create_account(&env, "user_o1", &org.id, "Hidden", "").await;
    let sub = create_sub(&env, "user_o1", &mine.id, "S").await.unwrap();
    let mut c = accounts(&env);
    let grant = c
        .add_account_member(env.as_user(
            "user_o1",
            AddAccountMemberRequest {
                account_id: granted.id.clone(),
                organization_id: org.id.clone(),
                user_id: "user_m1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(grant.user_id, "user_m1");
    expect_err(
        c.add_account_member(env.as_user(
            "user_o1",
            AddAccountMemberRequest {
                account_id: granted.id.clone(),
                organization_id: org.id.clone(),
                user_id: "user_m1".into(),
            },
        ))
        .await,
        Code::AlreadyExists,
        "ACCOUNT_MEMBER_EXISTS",
    );
    expect_err(
        c.add_account_member(env.as_user(
            "user_o1",
            AddAccountMemberRequest {
                account_id: granted.id.clone(),
                organization_id: org.id.clone(),
                user_id: "user_x1".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "NOT_ORGANIZATION_MEMBER",
    );
    // user_m1 owns one, was granted one, owns the parent of the subaccount.
    let seen: Vec<String> = list_all(&env, "user_m1", &org.id)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(seen, [mine.id.clone(), granted.id.clone()]);
    get(&env, "user_m1", &sub.id, "").await.unwrap();
    expect_err(
        get(&env, "user_m1", &hidden.id, "")
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(list_all(&env, "user_m2", &org.id).await.is_empty());
    let members = c
        .list_account_members(env.as_user(
            "user_m1",
            ListAccountMembersRequest {
                account_id: granted.id.clone(),
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    c.remove_account_member(env.as_user(
        "user_o1",
        RemoveAccountMemberRequest {
            account_id: granted.id.clone(),
            organization_id: org.id.clone(),
            user_id: "user_m1".into(),
        },
    ))
    .await
    .unwrap();
    expect_err(
        get(&env, "user_m1", &granted.id, "")
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );

    // Another tenant's OWNER: NOT_FOUND for every account RPC naming this organization's
    // account, whether or not it names an organization.
    let x = "user_x1";
    for (id, org_id) in [(&mine.id, ""), (&mine.id, org.id.as_str()), (&sub.id, "")] {
        let nf = |r: Result<(), tonic::Status>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{e:?}");
        };
        nf(get(&env, x, id, org_id).await.map(|_| ()));
        nf(close(&env, x, id, org_id).await.map(|_| ()));
        nf(transfer(&env, x, id, x).await.map(|_| ()));
        nf(accept(&env, x, id, &other.id).await.map(|_| ()));
        nf(create_sub(&env, x, id, "X").await.map(|_| ()));
        let mut acc = get(&env, "user_o1", id, "").await.unwrap();
        acc.organization_id = org_id.to_owned();
        nf(update(&env, x, acc, &["display_name"]).await.map(|_| ()));
        nf(c.list_subaccounts(env.as_user(
            x,
            ListSubaccountsRequest {
                parent_account_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ()));
        // The grants' RPCs name the organization (required).
        let member_req = |user: &str| AddAccountMemberRequest {
            account_id: id.clone(),
            organization_id: org.id.clone(),
            user_id: user.into(),
        };
        nf(c.add_account_member(env.as_user(x, member_req(x)))
            .await
            .map(|_| ()));
        nf(c.list_account_members(env.as_user(
            x,
            ListAccountMembersRequest {
                account_id: id.clone(),
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ()));
        nf(c.remove_account_member(env.as_user(
            x,
            RemoveAccountMemberRequest {
                account_id: id.clone(),
                organization_id: org.id.clone(),
                user_id: "user_m1".into(),
            },
        ))
        .await
        .map(|_| ()));
        // Through their own organization, where the account is not listed.
        nf(get(&env, x, id, &other.id).await.map(|_| ()));
        nf(close(&env, x, id, &other.id).await.map(|_| ()));
    }
    for r in [
        accounts(&env)
            .list_accounts(env.as_user(
                x,
                ListAccountsRequest {
                    organization_id: org.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        accounts(&env)
            .create_account(env.as_user(x, create_req(&org.id, "X", "")))
            .await
            .map(|_| ()),
        set_default(&env, x, &org.id, ComplianceDesignation::Hipaa)
            .await
            .map(|_| ()),
    ] {
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
    }
    // Nothing of it reached this organization's audit log.
    let log = env.audit_log("user_o1", &org.id).await;
    assert!(log.iter().all(|e| e.actor_id != x), "{log:?}");

    // A deleted organization's accounts are hidden like its other resources, from their owners
    // too.
    env.client()
        .delete_organization(env.as_user(
            "user_o1",
            DeleteOrganizationRequest {
                organization_id: org.id.clone(),
                confirm_name: "Acme".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    for (who, id) in [
        ("user_o1", &granted.id),
        ("user_m1", &mine.id),
        ("user_m1", &sub.id),
    ] {
        expect_err(
            get(&env, who, id, "").await.map(tonic::Response::new),
            Code::NotFound,
            "NOT_FOUND",
        );
    }
}
