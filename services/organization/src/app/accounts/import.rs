//! Imports (rule ACC-2): an organization asks for an account of another, as MANAGED (the
//! account moves once its owner accepts; the owner's email must be in a VERIFIED domain of the
//! importing organization) or INDEPENDENT (listed, never changed). Until the owner accepts, the
//! importing organization's list holds it as PENDING, and it counts against its limit.

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1::{AccountType, DomainState};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{AccountView, changed, entry, is_member, organization_active, require_open, save};
use crate::app::App;
use crate::app::access::Access;
use crate::domain::accounts::{email_domain, import_type, type_name};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, Result};
use crate::store::query::lock_organization;
use crate::store::{account, account_entry, account_member, domain, member};

/// ImportAccount.
#[derive(Debug, Clone, Default)]
pub struct ImportAccount {
    /// The importing organization.
    pub organization_id: String,
    /// The account.
    pub account_id: String,
    /// `AccountType` asked for as its number (0: MANAGED).
    pub r#type: i32,
}

impl App {
    /// The email domain of `a`'s owner: the address stored with their membership of the home
    /// organization (rule ACC-3 keeps them a member; identity's emails never change and
    /// `UserEmailVerified` refreshes the stored one), else identity's answer.
    async fn owner_domain<C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        a: &account::Model,
    ) -> Result<String> {
        let stored =
            member::Entity::find_by_id((a.home_organization_id.clone(), a.owner_user_id.clone()))
                .one(db)
                .await?
                .map(|m| m.email)
                .filter(|e| !e.is_empty());
        let email = match stored {
            Some(e) => e,
            None => self
                .users
                .get(&a.owner_user_id, call)
                .await?
                .map(|u| u.email.to_lowercase())
                .unwrap_or_default(),
        };
        Ok(email_domain(&email).to_owned())
    }

    /// `EMAIL_DOMAIN_NOT_VERIFIED` unless `a`'s owner's email is in a VERIFIED domain of
    /// `organization_id` (rule ACC-2).
    async fn require_owner_domain<C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        a: &account::Model,
        organization_id: &str,
    ) -> Result<()> {
        let d = self.owner_domain(db, call, a).await?;
        let held = domain::Entity::find()
            .filter(domain::Column::OrganizationId.eq(organization_id.to_owned()))
            .filter(domain::Column::DomainName.eq(d))
            .filter(domain::Column::State.eq(DomainState::Verified as i32))
            .one(db)
            .await?;
        if held.is_none() {
            return Err(Error::AccountOwnerDomainNotVerified {
                account_id: a.id.clone(),
            });
        }
        Ok(())
    }

    /// ImportAccount (rule ACC-2).
    pub async fn import_account(&self, call: &Call, cmd: ImportAccount) -> Result<AccountView> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        required("account_id", &cmd.account_id)?;
        let kind = import_type(cmd.r#type)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let not_found = || Error::not_found("account", &cmd.account_id);
        let a = account::Entity::find_by_id(cmd.account_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        if organization_active(&self.db, &a.home_organization_id)
            .await?
            .is_none()
        {
            return Err(not_found());
        }
        if !a.parent_account_id.is_empty() {
            return Err(Error::AccountIsSubaccount {
                account_id: a.id.clone(),
                what: "a subaccount moves only with its parent: import the parent account",
            });
        }
        require_open(&a)?;
        let already = |e: account_entry::Model| Error::AccountAlreadyInOrganization {
            account_id: a.id.clone(),
            kind: type_name(e.entry_type),
        };
        if let Some(e) = account_entry::Entity::find_by_id((org.id.clone(), a.id.clone()))
            .one(&self.db)
            .await?
        {
            return Err(already(e));
        }
        if kind == AccountType::Managed {
            self.require_owner_domain(&self.db, call, &a, &org.id)
                .await?;
        }
        let now = self.now_ms();
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        self.check_account_limit(&*txn, &org.id).await?;
        if let Some(e) = account_entry::Entity::find_by_id((org.id.clone(), a.id.clone()))
            .one(&*txn)
            .await?
        {
            return Err(already(e));
        }
        let e = account_entry::Model {
            organization_id: org.id.clone(),
            account_id: a.id.clone(),
            entry_type: AccountType::Pending as i32,
            requested_type: kind as i32,
            state: a.state,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        account_entry::Entity::insert(account_entry::ActiveModel::from(e.clone()))
            .exec(&*txn)
            .await?;
        let view = AccountView {
            account: a,
            organization_id: org.id.clone(),
            entry: Some(e),
        };
        self.audit
            .write(
                &*txn,
                call,
                entry(&org.id, "account.import", None, Some(&view)),
            )
            .await?;
        txn.commit().await?;
        Ok(view)
    }

    /// AcceptAccountImport (rules ACC-2, ACC-3): the owner accepts. A MANAGED import moves the
    /// account and its subaccounts (subaccount owners who are not members of the new home pass
    /// to the account's owner, rule ACC-3; grants made by the former home end); an INDEPENDENT
    /// one lists it as INDEPENDENT.
    pub async fn accept_account_import(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
    ) -> Result<AccountView> {
        require_caller(&call.principal)?;
        required("account_id", account_id)?;
        required("organization_id", organization_id)?;
        let not_found = || Error::not_found("account", account_id);
        let Principal::User(user) = call.principal.as_ref() else {
            return Err(not_found());
        };
        let a = account::Entity::find_by_id(account_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|a| a.owner_user_id == user.user_id)
            .ok_or_else(not_found)?;
        if organization_active(&self.db, organization_id)
            .await?
            .is_none()
            || organization_active(&self.db, &a.home_organization_id)
                .await?
                .is_none()
        {
            return Err(not_found());
        }
        let not_pending = || Error::AccountImportNotPending {
            account_id: a.id.clone(),
            organization_id: organization_id.to_owned(),
        };
        let pending = account_entry::Entity::find_by_id((organization_id.to_owned(), a.id.clone()))
            .one(&self.db)
            .await?
            .filter(|e| e.entry_type == AccountType::Pending as i32)
            .ok_or_else(not_pending)?;
        require_open(&a)?;
        let managed = pending.requested_type == AccountType::Managed as i32;
        if managed {
            self.require_owner_domain(&self.db, call, &a, organization_id)
                .await?;
        }
        let now = self.now_ms();
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        // Both organizations' locks, in one order, so that two moves cannot deadlock.
        let mut orgs = [a.home_organization_id.clone(), organization_id.to_owned()];
        orgs.sort();
        for o in &orgs {
            lock_organization(&*txn, o).await?;
        }
        let updated = account_entry::Entity::update_many()
            .col_expr(
                account_entry::Column::EntryType,
                Expr::value(pending.requested_type),
            )
            .col_expr(account_entry::Column::RequestedType, Expr::value(0))
            .col_expr(account_entry::Column::State, Expr::value(a.state))
            .col_expr(account_entry::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                account_entry::Column::Version,
                Expr::value(pending.version + 1),
            )
            .filter(account_entry::Column::OrganizationId.eq(organization_id.to_owned()))
            .filter(account_entry::Column::AccountId.eq(a.id.clone()))
            .filter(account_entry::Column::Version.eq(pending.version))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(not_pending());
        }
        let mut accepted = pending.clone();
        accepted.entry_type = pending.requested_type;
        accepted.requested_type = 0;
        accepted.update_time_ms = now;
        accepted.version += 1;
        let before_view = AccountView {
            account: a.clone(),
            organization_id: organization_id.to_owned(),
            entry: Some(pending),
        };
        if !managed {
            let view = AccountView {
                entry: Some(accepted),
                ..before_view.clone()
            };
            for org in [organization_id, a.home_organization_id.as_str()] {
                self.audit
                    .write(
                        &*txn,
                        call,
                        entry(
                            org,
                            "account.accept_import",
                            Some(&before_view),
                            Some(&view),
                        ),
                    )
                    .await?;
            }
            txn.append(changed(&a, "")).await?;
            txn.commit().await?;
            return Ok(view);
        }
        if !is_member(&*txn, organization_id, &a.owner_user_id).await? {
            return Err(Error::AccountOwnerNotManaged {
                user_id: a.owner_user_id.clone(),
            });
        }
        let previous = a.home_organization_id.clone();
        let moves = self.move_account(&txn, &a, organization_id, now).await?;
        let view = AccountView {
            account: moves
                .first()
                .map(|(_, after)| after.clone())
                .unwrap_or_else(|| a.clone()),
            organization_id: organization_id.to_owned(),
            entry: Some(accepted),
        };
        for (i, (before, after)) in moves.iter().enumerate() {
            let (old, new) = if i == 0 {
                (
                    AccountView {
                        organization_id: previous.clone(),
                        ..before_view.clone()
                    },
                    view.clone(),
                )
            } else {
                (
                    AccountView::home(before.clone()),
                    AccountView::home(after.clone()),
                )
            };
            for (org, action) in [
                (previous.as_str(), "account.move_out"),
                (organization_id, "account.accept_import"),
            ] {
                self.audit
                    .write(&*txn, call, entry(org, action, Some(&old), Some(&new)))
                    .await?;
            }
            txn.append(changed(after, &previous)).await?;
        }
        txn.commit().await?;
        Ok(view)
    }

    /// Moves `a` and its subaccounts to `to` in `txn`: the former home's entry and grants go.
    /// Answers each account before and after, `a` first.
    pub(crate) async fn move_account(
        &self,
        txn: &WriteUnit,
        a: &account::Model,
        to: &str,
        now: i64,
    ) -> Result<Vec<(account::Model, account::Model)>> {
        let from = a.home_organization_id.clone();
        account_entry::Entity::delete_many()
            .filter(account_entry::Column::OrganizationId.eq(from.clone()))
            .filter(account_entry::Column::AccountId.eq(a.id.clone()))
            .exec(&**txn)
            .await?;
        let mut all = vec![a.clone()];
        all.extend(
            account::Entity::find()
                .filter(account::Column::ParentAccountId.eq(a.id.clone()))
                .all(&**txn)
                .await?,
        );
        let mut moves = Vec::with_capacity(all.len());
        for before in all {
            let mut after = before.clone();
            after.home_organization_id = to.to_owned();
            after.update_time_ms = now;
            after.version += 1;
            if before.id != a.id && !is_member(&**txn, to, &before.owner_user_id).await? {
                after.owner_user_id = a.owner_user_id.clone();
            }
            save(&**txn, &before, &after).await?;
            account_member::Entity::delete_many()
                .filter(account_member::Column::OrganizationId.eq(from.clone()))
                .filter(account_member::Column::AccountId.eq(before.id.clone()))
                .exec(&**txn)
                .await?;
            moves.push((before, after));
        }
        Ok(moves)
    }
}
