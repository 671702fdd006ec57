//! The rig of the account tests: the organization service (with its DNS checks pointed at the
//! in-process test DNS server, zone `test`, for the verified domains imports need), an
//! `AccountService` client and the calls the tests repeat.

use orgplane_platform::error::reason_of;
use orgplane_proto::events::v1::{AccountChanged, event};
use orgplane_proto::organization::v1::account_service_client::AccountServiceClient;
use orgplane_proto::organization::v1::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{Backend, Rig};
use orgplane_oracles::dns::TestDns;

/// The rig with its DNS server.
pub struct Env {
    pub rig: Rig,
    pub dns: TestDns,
}

impl std::ops::Deref for Env {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

/// The rig on `backend` with `configure` applied to the service's settings, or `None` without
/// PostgreSQL.
pub async fn env_with(
    backend: Backend,
    configure: impl FnOnce(&mut orgplane_organization::Config),
) -> Option<Env> {
    let dns = TestDns::start(&["test"]).await;
    let addr = dns.addr;
    let rig = Rig::with_config(
        backend,
        |_| {},
        |c| {
            c.dns_servers = vec![addr];
            c.domain_check_interval_secs = 0;
            configure(c);
        },
    )
    .await?;
    Some(Env { rig, dns })
}

/// The rig on `backend` with the default limits.
pub async fn env(backend: Backend) -> Option<Env> {
    env_with(backend, |_| {}).await
}

/// An `AccountService` client on the rig.
pub fn accounts(rig: &Rig) -> AccountServiceClient<Channel> {
    AccountServiceClient::new(rig.channel())
}

/// Asserts `r` failed with `code` and ErrorInfo `reason`; answers the status.
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    reason: &str,
) -> tonic::Status {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    assert_eq!(reason_of(&err).as_deref(), Some(reason), "{err:?}");
    err
}

/// An organization created by `owner`.
pub async fn create_org(rig: &Rig, owner: &str, name: &str) -> Organization {
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

/// Gives `user` the email `email` at identity (before they join anything).
pub fn set_email(rig: &Rig, user: &str, email: &str) {
    let email = email.to_owned();
    rig.identity.set(user, |u| u.email = email);
}

/// Invites `user` (at the email identity knows for them) to `org` as `role` and accepts.
pub async fn join(rig: &Rig, org: &str, inviter: &str, user: &str, role: OrgRole) {
    let email = rig.identity.user(user).unwrap().email;
    let mut c = rig.client();
    let inv = c
        .create_invite(rig.as_user(
            inviter,
            CreateInviteRequest {
                organization_id: org.into(),
                invite: Some(Invite {
                    email,
                    role: role as i32,
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
    c.accept_invite(rig.as_user(user, AcceptInviteRequest { invite_id: inv.id }))
        .await
        .unwrap();
}

/// Registers `name` for `org` (as `owner`), publishes its challenge and verifies it.
pub async fn verified_domain(env: &Env, owner: &str, org: &str, name: &str) -> Domain {
    crate::harness::dns::verified_domain(&env.rig, &env.dns, owner, org, name).await
}

/// The request creating account `name` in `org`, owned by `owner` (empty: the caller).
pub fn create_req(org: &str, name: &str, owner: &str) -> CreateAccountRequest {
    CreateAccountRequest {
        organization_id: org.into(),
        account: Some(Account {
            display_name: name.into(),
            owner_user_id: owner.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Account `name` created in `org` by `caller`, owned by `owner` (empty: the caller).
pub async fn create_account(
    rig: &Rig,
    caller: &str,
    org: &str,
    name: &str,
    owner: &str,
) -> Account {
    accounts(rig)
        .create_account(rig.as_user(caller, create_req(org, name, owner)))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
}

/// Subaccount `name` under `parent`, created by `caller`.
pub async fn create_sub(
    rig: &Rig,
    caller: &str,
    parent: &str,
    name: &str,
) -> Result<Account, tonic::Status> {
    accounts(rig)
        .create_subaccount(rig.as_user(
            caller,
            CreateSubaccountRequest {
                parent_account_id: parent.into(),
                subaccount: Some(Account {
                    display_name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().subaccount.unwrap())
}

/// GetAccount through `org` (empty: home) as `caller`.
pub async fn get(rig: &Rig, caller: &str, id: &str, org: &str) -> Result<Account, tonic::Status> {
    accounts(rig)
        .get_account(rig.as_user(
            caller,
            GetAccountRequest {
                account_id: id.into(),
                organization_id: org.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().account.unwrap())
}

/// Every account of `org`'s list that `caller` sees, closed ones included.
pub async fn list_all(rig: &Rig, caller: &str, org: &str) -> Vec<Account> {
    accounts(rig)
        .list_accounts(rig.as_user(
            caller,
            ListAccountsRequest {
                organization_id: org.into(),
                show_closed: true,
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .accounts
}

/// CloseAccount through `org` (empty: home) as `caller`.
pub async fn close(
    rig: &Rig,
    caller: &str,
    id: &str,
    org: &str,
) -> Result<tonic::Response<CloseAccountResponse>, tonic::Status> {
    accounts(rig)
        .close_account(rig.as_user(
            caller,
            CloseAccountRequest {
                account_id: id.into(),
                organization_id: org.into(),
                etag: String::new(),
            },
        ))
        .await
}

/// ImportAccount of `id` into `org` as `kind`, by `caller`.
pub async fn import(
    rig: &Rig,
    caller: &str,
    org: &str,
    id: &str,
    kind: AccountType,
) -> Result<tonic::Response<ImportAccountResponse>, tonic::Status> {
    accounts(rig)
        .import_account(rig.as_user(
            caller,
            ImportAccountRequest {
                organization_id: org.into(),
                account_id: id.into(),
                r#type: kind as i32,
            },
        ))
        .await
}

/// AcceptAccountImport of `id` into `org`, by `caller`.
pub async fn accept(
    rig: &Rig,
    caller: &str,
    id: &str,
    org: &str,
) -> Result<tonic::Response<AcceptAccountImportResponse>, tonic::Status> {
    accounts(rig)
        .accept_account_import(rig.as_user(
            caller,
            AcceptAccountImportRequest {
                account_id: id.into(),
                organization_id: org.into(),
            },
        ))
        .await
}

/// TransferAccountOwnership of `id` to `to`, by `caller`.
pub async fn transfer(
    rig: &Rig,
    caller: &str,
    id: &str,
    to: &str,
) -> Result<tonic::Response<TransferAccountOwnershipResponse>, tonic::Status> {
    accounts(rig)
        .transfer_account_ownership(rig.as_user(
            caller,
            TransferAccountOwnershipRequest {
                account_id: id.into(),
                new_owner_user_id: to.into(),
                etag: String::new(),
            },
        ))
        .await
}

/// UpdateAccount of `a` with `paths`, by `caller`.
pub async fn update(
    rig: &Rig,
    caller: &str,
    a: Account,
    paths: &[&str],
) -> Result<tonic::Response<UpdateAccountResponse>, tonic::Status> {
    accounts(rig)
        .update_account(rig.as_user(
            caller,
            UpdateAccountRequest {
                account: Some(a),
                update_mask: orgplane_platform::testkit::mask(paths),
                etag: String::new(),
            },
        ))
        .await
}

/// Sets `org`'s default designation, as `caller`.
pub async fn set_default(
    rig: &Rig,
    caller: &str,
    org: &str,
    d: ComplianceDesignation,
) -> Result<tonic::Response<UpdateComplianceDefaultsResponse>, tonic::Status> {
    accounts(rig)
        .update_compliance_defaults(rig.as_user(
            caller,
            UpdateComplianceDefaultsRequest {
                organization_id: org.into(),
                designation: d as i32,
                etag: String::new(),
            },
        ))
        .await
}

/// RemoveMember `user` from `org`, by `caller`.
pub async fn remove_member(
    rig: &Rig,
    caller: &str,
    org: &str,
    user: &str,
) -> Result<tonic::Response<RemoveMemberResponse>, tonic::Status> {
    rig.client()
        .remove_member(rig.as_user(
            caller,
            RemoveMemberRequest {
                organization_id: org.into(),
                user_id: user.into(),
            },
        ))
        .await
}

/// The `AccountChanged` events the service published after revision `after`.
pub async fn account_events(rig: &Rig, after: i64) -> Vec<AccountChanged> {
    rig.events_after(after, 0)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(event::Payload::AccountChanged(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The outbox head now (the revision later events follow).
pub async fn head(rig: &Rig) -> i64 {
    rig.org.outbox().head().await.unwrap().revision
}
