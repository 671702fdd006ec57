//! Creating, renaming and flagging, closing and transferring accounts, and creating subaccounts
//! (rules ACC-1, ACC-3, ACC-4, ACC-5).

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1::{AccountState, AccountType, ComplianceSource};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::{AccountFields, AccountView, changed, entry, is_member, require_open, save};
use crate::app::App;
use crate::app::access::Access;
use crate::domain::accounts::designation;
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::query::{lock_organization, new_id};
use crate::store::{account, account_entry};

/// CreateAccount.
#[derive(Debug, Clone, Default)]
pub struct CreateAccount {
    /// The organization.
    pub organization_id: String,
    /// The new account (the request's `account`, if any).
    pub account: Option<AccountFields>,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// CreateSubaccount.
#[derive(Debug, Clone, Default)]
pub struct CreateSubaccount {
    /// The parent account.
    pub parent_account_id: String,
    /// The new subaccount (the request's `subaccount`, if any).
    pub subaccount: Option<AccountFields>,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// UpdateAccount: rename, flag.
#[derive(Debug, Clone, Default)]
pub struct UpdateAccount {
    /// The new values (the request's `account`, if any).
    pub account: Option<AccountFields>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

/// The calling user's id, when the caller is one.
fn caller_user(call: &Call) -> Option<String> {
    match call.principal.as_ref() {
        Principal::User(u) => Some(u.user_id.clone()),
        _ => None,
    }
}

/// `a` one change later at `now`.
fn touched(a: &account::Model, now: i64) -> account::Model {
    let mut after = a.clone();
    after.update_time_ms = now;
    after.version += 1;
    after
}

impl App {
    /// CreateAccount (rules ACC-1, ACC-3, ACC-5).
    pub async fn create_account(&self, call: &Call, cmd: CreateAccount) -> Result<AccountView> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateAccount|{actor}|{}|{r}", cmd.organization_id));
        let first = self.create_account_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || {
            self.create_account_once(call, cmd)
        })
        .await
    }

    async fn create_account_once(&self, call: &Call, cmd: CreateAccount) -> Result<AccountView> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let input = cmd
            .account
            .ok_or_else(|| Error::invalid("account", "required"))?;
        let name = validate::name("account.display_name", &input.display_name)?;
        let request_id = validate::request_id(&cmd.request_id)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let owner = match (input.owner_user_id.is_empty(), caller_user(call)) {
            (false, _) => input.owner_user_id.clone(),
            (true, Some(me)) => me,
            (true, None) => {
                return Err(Error::invalid(
                    "account.owner_user_id",
                    "required when an API key creates the account",
                ));
            }
        };
        let (_, actor) = principal.actor();
        let key = request_id.map(|r| format!("CreateAccount|{actor}|{}|{r}", org.id));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let a = account::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::not_found("account", &id))?;
            return Ok(AccountView::home(a));
        }
        let now = self.now_ms();
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        self.check_account_limit(&*txn, &org.id).await?;
        if !is_member(&*txn, &org.id, &owner).await? {
            return Err(Error::AccountOwnerNotManaged { user_id: owner });
        }
        let defaults = self.compliance_defaults_in(&*txn, &org.id).await?;
        let a = account::Model {
            id: new_id("acct"),
            home_organization_id: org.id.clone(),
            parent_account_id: String::new(),
            display_name: name,
            owner_user_id: owner,
            state: AccountState::Active as i32,
            compliance: defaults.designation,
            compliance_source: ComplianceSource::OrganizationDefault as i32,
            create_time_ms: now,
            update_time_ms: now,
            close_time_ms: None,
            version: 1,
        };
        let e = account_entry::Model {
            organization_id: org.id.clone(),
            account_id: a.id.clone(),
            entry_type: AccountType::Managed as i32,
            requested_type: 0,
            state: a.state,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        account::Entity::insert(account::ActiveModel::from(a.clone()))
            .exec(&*txn)
            .await?;
        account_entry::Entity::insert(account_entry::ActiveModel::from(e.clone()))
            .exec(&*txn)
            .await?;
        self.remember(&txn, key.as_deref(), &org.id, &a.id).await?;
        let view = AccountView {
            account: a.clone(),
            organization_id: org.id.clone(),
            entry: Some(e),
        };
        self.audit
            .write(
                &*txn,
                call,
                entry(&org.id, "account.create", None, Some(&view)),
            )
            .await?;
        txn.append(changed(&a, "")).await?;
        txn.commit().await?;
        Ok(view)
    }

    /// CreateSubaccount (rules ACC-4, ACC-5): owned by the caller (by the parent's owner when
    /// an admin API key asks), with the parent's designation at this moment.
    pub async fn create_subaccount(
        &self,
        call: &Call,
        cmd: CreateSubaccount,
    ) -> Result<AccountView> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateSubaccount|{actor}|{}|{r}", cmd.parent_account_id));
        let first = self.create_subaccount_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || {
            self.create_subaccount_once(call, cmd)
        })
        .await
    }

    async fn create_subaccount_once(
        &self,
        call: &Call,
        cmd: CreateSubaccount,
    ) -> Result<AccountView> {
        require_caller(&call.principal)?;
        required("parent_account_id", &cmd.parent_account_id)?;
        let input = cmd
            .subaccount
            .ok_or_else(|| Error::invalid("subaccount", "required"))?;
        let name = validate::name("subaccount.display_name", &input.display_name)?;
        let request_id = validate::request_id(&cmd.request_id)?;
        let parent = self
            .reach_to_manage(call, &cmd.parent_account_id, "", true)
            .await?;
        let p = parent.view.account.clone();
        if !p.parent_account_id.is_empty() {
            return Err(Error::AccountIsSubaccount {
                account_id: p.id.clone(),
                what: "subaccounts do not nest: create it under the top-level account",
            });
        }
        parent.require_open()?;
        let (_, actor) = call.principal.actor();
        let key = request_id.map(|r| format!("CreateSubaccount|{actor}|{}|{r}", p.id));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let a = account::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::not_found("account", &id))?;
            return Ok(AccountView::home(a));
        }
        let owner = caller_user(call).unwrap_or_else(|| p.owner_user_id.clone());
        let now = self.now_ms();
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        lock_organization(&*txn, &p.home_organization_id).await?;
        // The parent as it is now, under the lock that closing and moving it take too.
        let p = account::Entity::find_by_id(p.id.clone())
            .one(&*txn)
            .await?
            .ok_or_else(|| Error::not_found("account", &cmd.parent_account_id))?;
        require_open(&p)?;
        let open = account::Entity::find()
            .filter(account::Column::ParentAccountId.eq(p.id.clone()))
            .filter(account::Column::State.eq(AccountState::Active as i32))
            .count(&*txn)
            .await?;
        let max = self.config.max_subaccounts;
        if open >= max {
            return Err(Error::SubaccountLimitReached {
                account_id: p.id.clone(),
                max,
            });
        }
        let a = account::Model {
            id: new_id("acct"),
            home_organization_id: p.home_organization_id.clone(),
            parent_account_id: p.id.clone(),
            display_name: name,
            owner_user_id: owner,
            state: AccountState::Active as i32,
            compliance: p.compliance,
            compliance_source: ComplianceSource::Parent as i32,
            create_time_ms: now,
            update_time_ms: now,
            close_time_ms: None,
            version: 1,
        };
        account::Entity::insert(account::ActiveModel::from(a.clone()))
            .exec(&*txn)
            .await?;
        self.remember(&txn, key.as_deref(), &a.home_organization_id, &a.id)
            .await?;
        let view = AccountView::home(a.clone());
        self.audit
            .write(
                &*txn,
                call,
                entry(
                    &a.home_organization_id,
                    "account.create_subaccount",
                    None,
                    Some(&view),
                ),
            )
            .await?;
        txn.append(changed(&a, "")).await?;
        txn.commit().await?;
        Ok(view)
    }

    /// UpdateAccount (rules ACC-1, ACC-5): rename, or flag the designation (source EXPLICIT).
    pub async fn update_account(&self, call: &Call, cmd: UpdateAccount) -> Result<AccountView> {
        require_caller(&call.principal)?;
        let input = cmd
            .account
            .ok_or_else(|| Error::invalid("account", "required"))?;
        required("account.id", &input.id)?;
        let paths = validate::mask_paths(&cmd.paths, &["display_name", "compliance"])?;
        let name = if paths.iter().any(|p| p == "display_name") {
            Some(validate::name("account.display_name", &input.display_name)?)
        } else {
            None
        };
        let compliance = if paths.iter().any(|p| p == "compliance") {
            Some(designation("account.compliance", input.compliance)?)
        } else {
            None
        };
        let r = self
            .reach_to_manage(call, &input.id, &input.organization_id, false)
            .await?;
        r.require_open()?;
        let before = r.view.account.clone();
        check_etag(&cmd.etag, before.version, "account")?;
        let mut after = touched(&before, self.now_ms());
        if let Some(n) = name {
            after.display_name = n;
        }
        if let Some(d) = compliance {
            after.compliance = d as i32;
            after.compliance_source = ComplianceSource::Explicit as i32;
        }
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        save(&*txn, &before, &after).await?;
        let view = AccountView {
            account: after.clone(),
            ..r.view.clone()
        };
        self.audit
            .write(
                &*txn,
                call,
                entry(
                    &before.home_organization_id,
                    "account.update",
                    Some(&r.view),
                    Some(&view),
                ),
            )
            .await?;
        txn.append(changed(&after, "")).await?;
        txn.commit().await?;
        Ok(view)
    }

    /// CloseAccount: closes a MANAGED account (or a subaccount) for good; withdraws a PENDING
    /// import; removes an INDEPENDENT account from the acting organization's list.
    pub async fn close_account(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
        etag: &str,
    ) -> Result<AccountView> {
        let r = self.reach(call, account_id, organization_id).await?;
        r.require_admin()?;
        let org_id = r.view.organization_id.clone();
        if let Some(e) = r
            .view
            .entry
            .as_ref()
            .filter(|e| e.entry_type != AccountType::Managed as i32)
        {
            let pending = e.entry_type == AccountType::Pending as i32;
            let version = if pending {
                e.version
            } else {
                r.view.account.version
            };
            check_etag(etag, version, "account")?;
            let txn = WriteUnit::begin(&self.outbox, call).await?;
            let deleted = account_entry::Entity::delete_many()
                .filter(account_entry::Column::OrganizationId.eq(org_id.clone()))
                .filter(account_entry::Column::AccountId.eq(account_id.to_owned()))
                .filter(account_entry::Column::Version.eq(e.version))
                .exec(&*txn)
                .await?;
            if deleted.rows_affected == 0 {
                return Err(etag_mismatch("account").into());
            }
            let action = if pending {
                "account.withdraw_import"
            } else {
                "account.remove"
            };
            self.audit
                .write(&*txn, call, entry(&org_id, action, Some(&r.view), None))
                .await?;
            txn.commit().await?;
            return Ok(r.view);
        }
        r.require_open()?;
        let before = r.view.account.clone();
        check_etag(etag, before.version, "account")?;
        let now = self.now_ms();
        let mut after = touched(&before, now);
        after.state = AccountState::Closed as i32;
        after.close_time_ms = Some(now);
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        lock_organization(&*txn, &before.home_organization_id).await?;
        let open_children = account::Entity::find()
            .filter(account::Column::ParentAccountId.eq(before.id.clone()))
            .filter(account::Column::State.eq(AccountState::Active as i32))
            .count(&*txn)
            .await?;
        if open_children > 0 {
            return Err(Error::AccountHasSubaccounts {
                account_id: before.id.clone(),
            });
        }
        save(&*txn, &before, &after).await?;
        // Pending imports of a closed account can never be accepted: withdraw them.
        account_entry::Entity::delete_many()
            .filter(account_entry::Column::AccountId.eq(before.id.clone()))
            .filter(account_entry::Column::EntryType.eq(AccountType::Pending as i32))
            .exec(&*txn)
            .await?;
        let mut view = r.view.clone();
        view.account = after.clone();
        if let Some(e) = view.entry.as_mut() {
            e.state = after.state;
        }
        self.audit
            .write(
                &*txn,
                call,
                entry(&org_id, "account.close", Some(&r.view), Some(&view)),
            )
            .await?;
        txn.append(changed(&after, "")).await?;
        txn.commit().await?;
        Ok(view)
    }

    /// TransferAccountOwnership (rule ACC-3): only to a member of the home organization.
    pub async fn transfer_account_ownership(
        &self,
        call: &Call,
        account_id: &str,
        new_owner_user_id: &str,
        etag: &str,
    ) -> Result<AccountView> {
        require_caller(&call.principal)?;
        required("account_id", account_id)?;
        required("new_owner_user_id", new_owner_user_id)?;
        let r = self.reach_to_manage(call, account_id, "", true).await?;
        r.require_open()?;
        let before = r.view.account.clone();
        check_etag(etag, before.version, "account")?;
        if before.owner_user_id == new_owner_user_id {
            return Err(Error::invalid(
                "new_owner_user_id",
                "this user already owns the account",
            ));
        }
        let mut after = touched(&before, self.now_ms());
        after.owner_user_id = new_owner_user_id.to_owned();
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        // The lock a member's removal takes too: the new owner cannot leave meanwhile.
        lock_organization(&*txn, &before.home_organization_id).await?;
        if !is_member(&*txn, &before.home_organization_id, new_owner_user_id).await? {
            return Err(Error::AccountOwnerNotManaged {
                user_id: new_owner_user_id.to_owned(),
            });
        }
        save(&*txn, &before, &after).await?;
        let view = AccountView {
            account: after.clone(),
            ..r.view.clone()
        };
        self.audit
            .write(
                &*txn,
                call,
                entry(
                    &before.home_organization_id,
                    "account.transfer_ownership",
                    Some(&r.view),
                    Some(&view),
                ),
            )
            .await?;
        txn.append(changed(&after, "")).await?;
        txn.commit().await?;
        Ok(view)
    }
}
