//! ListAccounts and ListSubaccounts: oldest first, keyset-paginated, each page token bound to
//! its filters and reader; members other than OWNER and ADMIN see only what they own or were
//! granted (rule ACC-4).

use std::collections::HashMap;

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_platform::roles::OrgAction;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{AccountView, organization_active};
use crate::app::access::Access;
use crate::app::{App, Page};
use crate::domain::accounts::{states_shown, type_filter};
use crate::domain::authz::{Deleted, Standing, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, Result};
use crate::store::query::keyset;
use crate::store::{account, account_entry, account_member};

/// ListAccounts.
#[derive(Debug, Clone, Default)]
pub struct ListAccounts {
    /// The organization.
    pub organization_id: String,
    /// `AccountType` filter as its number (0: every type).
    pub r#type: i32,
    /// `AccountState` filter as its number (0: ACTIVE unless `show_closed`).
    pub state: i32,
    /// With no state filter, closed accounts too.
    pub show_closed: bool,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// ListSubaccounts.
#[derive(Debug, Clone, Default)]
pub struct ListSubaccounts {
    /// The parent account.
    pub parent_account_id: String,
    /// Closed subaccounts too.
    pub show_closed: bool,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

fn user_of(call: &Call) -> &str {
    match call.principal.as_ref() {
        Principal::User(u) => &u.user_id,
        _ => "",
    }
}

/// `id` is an account `user` owns, or one granted to them in `organization_id`.
fn owned_or_granted<C: ColumnTrait>(id: C, organization_id: &str, user: &str) -> Condition {
    let owned = Query::select()
        .column(account::Column::Id)
        .from(account::Entity)
        .and_where(account::Column::OwnerUserId.eq(user.to_owned()))
        .to_owned();
    let granted = Query::select()
        .column(account_member::Column::AccountId)
        .from(account_member::Entity)
        .and_where(account_member::Column::OrganizationId.eq(organization_id.to_owned()))
        .and_where(account_member::Column::UserId.eq(user.to_owned()))
        .to_owned();
    Condition::any()
        .add(id.in_subquery(owned))
        .add(id.in_subquery(granted))
}

impl App {
    /// ListAccounts (rules ACC-1, ACC-2).
    pub async fn list_accounts(&self, call: &Call, cmd: ListAccounts) -> Result<Page<AccountView>> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let kind = type_filter(cmd.r#type)?;
        let states = states_shown(cmd.state, cmd.show_closed)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        let org = access.org.clone();
        let reads_all = access.allows(OrgAction::ManageOrganization)
            || matches!(
                access.standing,
                Standing::Service | Standing::Operator { .. }
            );
        let user = user_of(call);
        let viewer = if reads_all { "*" } else { user };
        let scope = format!("ListAccounts|{}|{kind}|{states:?}|{viewer}", org.id);
        let cursor: Option<(i64, String)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query = account_entry::Entity::find()
            .filter(account_entry::Column::OrganizationId.eq(org.id.clone()));
        if kind != 0 {
            query = query.filter(account_entry::Column::EntryType.eq(kind));
        }
        if let Some(s) = states {
            query = query.filter(account_entry::Column::State.eq(s));
        }
        if !reads_all {
            query = query.filter(owned_or_granted(
                account_entry::Column::AccountId,
                &org.id,
                user,
            ));
        }
        if let Some((t, id)) = cursor {
            query = query.filter(keyset(
                account_entry::Column::CreateTimeMs,
                t,
                account_entry::Column::AccountId,
                id,
                false,
            ));
        }
        let rows = query
            .order_by_asc(account_entry::Column::CreateTimeMs)
            .order_by_asc(account_entry::Column::AccountId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self.runtime.page_tokens.page(&scope, rows, size, |e| {
            (e.create_time_ms, e.account_id.clone())
        });
        let ids: Vec<String> = rows.iter().map(|e| e.account_id.clone()).collect();
        let mut accounts: HashMap<String, account::Model> = account::Entity::find()
            .filter(account::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let mut items = Vec::with_capacity(rows.len());
        for e in rows {
            let Some(a) = accounts.remove(&e.account_id) else {
                continue;
            };
            // An account whose home organization is deleted is hidden like its other resources.
            if a.home_organization_id != org.id
                && organization_active(&self.db, &a.home_organization_id)
                    .await?
                    .is_none()
            {
                continue;
            }
            items.push(AccountView {
                account: a,
                organization_id: org.id.clone(),
                entry: Some(e),
            });
        }
        Ok(Page {
            items,
            next_page_token: next,
        })
    }

    /// ListSubaccounts (rule ACC-4): the parent's owner and the home's OWNER and ADMIN see them
    /// all; others the ones they own or were granted.
    pub async fn list_subaccounts(
        &self,
        call: &Call,
        cmd: ListSubaccounts,
    ) -> Result<Page<AccountView>> {
        require_caller(&call.principal)?;
        required("parent_account_id", &cmd.parent_account_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let parent = self.reach(call, &cmd.parent_account_id, "").await?;
        if !parent.view.account.parent_account_id.is_empty() {
            return Err(Error::not_found("account", &cmd.parent_account_id));
        }
        let p = parent.view.account;
        let sees_all = parent.reach.reads_all || parent.reach.owner;
        let user = user_of(call);
        let viewer = if sees_all { "*" } else { user };
        let scope = format!("ListSubaccounts|{}|{}|{viewer}", p.id, cmd.show_closed);
        let cursor: Option<(i64, String)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query =
            account::Entity::find().filter(account::Column::ParentAccountId.eq(p.id.clone()));
        if !cmd.show_closed {
            query = query.filter(
                account::Column::State
                    .eq(orgplane_proto::organization::v1::AccountState::Active as i32),
            );
        }
        if !sees_all {
            query = query.filter(owned_or_granted(
                account::Column::Id,
                &p.home_organization_id,
                user,
            ));
        }
        if let Some((t, id)) = cursor {
            query = query.filter(keyset(
                account::Column::CreateTimeMs,
                t,
                account::Column::Id,
                id,
                false,
            ));
        }
        let rows = query
            .order_by_asc(account::Column::CreateTimeMs)
            .order_by_asc(account::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self
            .runtime
            .page_tokens
            .page(&scope, rows, size, |a| (a.create_time_ms, a.id.clone()));
        Ok(Page {
            items: rows.into_iter().map(AccountView::home).collect(),
            next_page_token: next,
        })
    }
}
