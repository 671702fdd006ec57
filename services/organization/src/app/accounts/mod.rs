//! Accounts (rules ACC-1 … ACC-5): an organization's application and billing boundaries, their
//! subaccounts, imports between organizations, compliance designations and member grants.
//!
//! An account has one home organization, where its list entry is MANAGED; another
//! organization's list may hold it as PENDING (an import awaiting its owner) or INDEPENDENT.
//! Subaccounts have no list entry: they live in their parent's home. Every change of an account
//! is audited and published as `AccountChanged`, as its home organization sees it, in the
//! transaction that makes it.
//!
//! One file per concern: [`manage`] (create, rename and flag, close, transfer, subaccounts),
//! [`import`] (import and acceptance), [`listing`] (reads), [`grants`] (account members and
//! compliance defaults), [`leaving`] (what a member's departure and a purge do to accounts).

pub mod grants;
pub mod import;
pub mod leaving;
pub mod listing;
pub mod manage;

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, Entry, proto_json};
use orgplane_platform::auth::Principal;
use orgplane_platform::convert::{etag, etag_mismatch, timestamp_ms as ts};
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{AccountChanged, event};
use orgplane_proto::organization::v1 as proto;
use orgplane_proto::organization::v1::{AccountState, AccountType, OrganizationState};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::App;
use super::access::Access;
use crate::domain::accounts::{Reach, type_name};
use crate::domain::authz::{Deleted, Standing, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, Result};
use crate::store::query::lock_organization;
use crate::store::{account, account_entry, account_member, organization};

/// What a request says of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFields {
    /// The account's id (updates only).
    pub id: String,
    /// The organization the caller read it through (updates only; empty for its home).
    pub organization_id: String,
    /// Display name.
    pub display_name: String,
    /// The owner (create only; empty for the caller).
    pub owner_user_id: String,
    /// `ComplianceDesignation` as its number (updates only).
    pub compliance: i32,
}

/// An account as one organization's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The account.
    pub account: account::Model,
    /// The organization it is seen through.
    pub organization_id: String,
    /// Its entry there; `None` for a subaccount (seen from its home) and for the home view
    /// events carry.
    pub entry: Option<account_entry::Model>,
}

impl AccountView {
    /// The view of its home organization (what `AccountChanged` carries).
    pub fn home(account: account::Model) -> Self {
        Self {
            organization_id: account.home_organization_id.clone(),
            account,
            entry: None,
        }
    }

    /// What the account is to [`Self::organization_id`] (a subaccount is MANAGED in its home).
    pub fn kind(&self) -> i32 {
        self.entry
            .as_ref()
            .map_or(AccountType::Managed as i32, |e| e.entry_type)
    }
}

/// The API form of an account view. A PENDING entry shows only what the importing organization
/// already knows (the id it named, the type it asked for, when it asked): the account's name,
/// owner, home and designation are the owner's to reveal by accepting.
pub fn message(v: &AccountView) -> proto::Account {
    let a = &v.account;
    if let Some(e) = v
        .entry
        .as_ref()
        .filter(|e| e.entry_type == AccountType::Pending as i32)
    {
        return proto::Account {
            id: a.id.clone(),
            organization_id: v.organization_id.clone(),
            r#type: e.entry_type,
            state: AccountState::Active as i32,
            requested_type: e.requested_type,
            create_time: Some(ts(e.create_time_ms)),
            update_time: Some(ts(e.update_time_ms)),
            etag: etag(e.version),
            ..Default::default()
        };
    }
    proto::Account {
        id: a.id.clone(),
        organization_id: v.organization_id.clone(),
        home_organization_id: a.home_organization_id.clone(),
        display_name: a.display_name.clone(),
        r#type: v.kind(),
        state: a.state,
        owner_user_id: a.owner_user_id.clone(),
        parent_account_id: a.parent_account_id.clone(),
        compliance: a.compliance,
        compliance_source: a.compliance_source,
        create_time: Some(ts(a.create_time_ms)),
        update_time: Some(ts(a.update_time_ms)),
        close_time: a.close_time_ms.map(ts),
        requested_type: 0,
        etag: etag(a.version),
    }
}

impl AuditImage for AccountView {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&message(self))
    }
}

/// `AccountChanged` of `after` as its home sees it; `previous_organization_id` names the
/// organization it left when it moved.
pub fn changed(after: &account::Model, previous_organization_id: &str) -> event::Payload {
    event::Payload::AccountChanged(AccountChanged {
        account: Some(message(&AccountView::home(after.clone()))),
        previous_organization_id: previous_organization_id.to_owned(),
    })
}

/// The audit entry of a change of an account, recorded in `organization_id`.
pub fn entry(
    organization_id: &str,
    action: &str,
    before: Option<&AccountView>,
    after: Option<&AccountView>,
) -> Entry {
    let id = after
        .or(before)
        .map(|v| v.account.id.clone())
        .unwrap_or_default();
    Entry::new(organization_id, action, "account", &id).change(before, after)
}

/// A caller's reach of one account through one organization.
#[derive(Debug, Clone)]
pub struct Reached {
    /// The account as that organization sees it.
    pub view: AccountView,
    /// The caller's access to that organization, when they have any.
    pub access: Option<Access>,
    /// How the caller stands to the account.
    pub reach: Reach,
}

impl Reached {
    /// The calling user, when the caller is one.
    fn user(call: &Call) -> Option<&str> {
        match call.principal.as_ref() {
            Principal::User(u) => Some(&u.user_id),
            _ => None,
        }
    }

    /// PERMISSION_DENIED unless the caller is the OWNER or an ADMIN of the organization.
    pub fn require_admin(&self) -> Result<()> {
        match &self.access {
            Some(a) => a.require(OrgAction::ManageOrganization),
            None => Err(orgplane_platform::roles::insufficient_role(
                "this needs the OWNER or ADMIN role in the organization",
            )
            .into()),
        }
    }

    /// Whether the caller is the OWNER or an ADMIN of the organization (or its admin key).
    pub fn administers(&self) -> bool {
        self.access
            .as_ref()
            .is_some_and(|a| a.allows(OrgAction::ManageOrganization))
    }

    /// FAILED_PRECONDITION `ACCOUNT_NOT_MANAGED` unless the organization seen through manages
    /// the account (its home).
    pub fn require_managed(&self) -> Result<()> {
        let kind = self.view.kind();
        if kind == AccountType::Managed as i32 {
            return Ok(());
        }
        Err(Error::AccountNotManaged {
            account_id: self.view.account.id.clone(),
            kind: type_name(kind),
        })
    }

    /// FAILED_PRECONDITION `ACCOUNT_CLOSED` when the account is closed.
    pub fn require_open(&self) -> Result<()> {
        require_open(&self.view.account)
    }
}

/// FAILED_PRECONDITION `ACCOUNT_CLOSED` when `a` is closed.
pub fn require_open(a: &account::Model) -> Result<()> {
    if a.state == AccountState::Closed as i32 {
        return Err(Error::AccountClosed {
            account_id: a.id.clone(),
        });
    }
    Ok(())
}

/// Whether organization `id` exists and is ACTIVE (a DELETED one hides its accounts).
pub(crate) async fn organization_active<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<organization::Model>> {
    Ok(organization::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|o| o.state == OrganizationState::Active as i32))
}

/// Whether `user_id` is a member of `organization_id`.
pub(crate) async fn is_member<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
    user_id: &str,
) -> Result<bool> {
    Ok(
        crate::store::member::Entity::find_by_id((organization_id.to_owned(), user_id.to_owned()))
            .one(db)
            .await?
            .is_some(),
    )
}

/// Writes `after` over `before` (ABORTED `ETAG_MISMATCH` when the account changed meanwhile) and
/// keeps the state of its list entries in step.
pub(crate) async fn save<C: ConnectionTrait>(
    db: &C,
    before: &account::Model,
    after: &account::Model,
) -> Result<()> {
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::HomeOrganizationId,
            Expr::value(after.home_organization_id.clone()),
        )
        .col_expr(
            account::Column::DisplayName,
            Expr::value(after.display_name.clone()),
        )
        .col_expr(
            account::Column::OwnerUserId,
            Expr::value(after.owner_user_id.clone()),
        )
        .col_expr(account::Column::State, Expr::value(after.state))
        .col_expr(account::Column::Compliance, Expr::value(after.compliance))
        .col_expr(
            account::Column::ComplianceSource,
            Expr::value(after.compliance_source),
        )
        .col_expr(
            account::Column::UpdateTimeMs,
            Expr::value(after.update_time_ms),
        )
        .col_expr(
            account::Column::CloseTimeMs,
            Expr::value(after.close_time_ms),
        )
        .col_expr(account::Column::Version, Expr::value(after.version))
        .filter(account::Column::Id.eq(before.id.clone()))
        .filter(account::Column::Version.eq(before.version))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(etag_mismatch("account").into());
    }
    if after.state != before.state {
        account_entry::Entity::update_many()
            .col_expr(account_entry::Column::State, Expr::value(after.state))
            .filter(account_entry::Column::AccountId.eq(after.id.clone()))
            .exec(db)
            .await?;
    }
    Ok(())
}

impl App {
    /// The account limit of `organization_id` (rule ACC-1).
    pub fn max_accounts(&self, organization_id: &str) -> u64 {
        self.config.max_accounts_of(organization_id)
    }

    /// RESOURCE_EXHAUSTED `ACCOUNT_LIMIT_REACHED` when `organization_id`'s list holds as many
    /// open entries as it may (rule ACC-1). Takes the organization's row lock first, so that
    /// concurrent creations and imports count one after the other (PostgreSQL; SQLite writers
    /// are serial anyway).
    pub(crate) async fn check_account_limit<C: ConnectionTrait>(
        &self,
        txn: &C,
        organization_id: &str,
    ) -> Result<()> {
        lock_organization(txn, organization_id).await?;
        let open = account_entry::Entity::find()
            .filter(account_entry::Column::OrganizationId.eq(organization_id.to_owned()))
            .filter(account_entry::Column::State.eq(AccountState::Active as i32))
            .count(txn)
            .await?;
        let max = self.max_accounts(organization_id);
        if open >= max {
            return Err(Error::AccountLimitReached {
                organization_id: organization_id.to_owned(),
                max,
            });
        }
        Ok(())
    }

    /// The caller's reach of account `account_id` through `organization_id` (empty: its home);
    /// NOT_FOUND when the account is not in that organization's list, the organization (or the
    /// account's home) is not ACTIVE, or the caller may not see the account (the service comment
    /// of `AccountService`: never PERMISSION_DENIED, so that ids cannot be probed).
    pub(crate) async fn reach(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
    ) -> Result<Reached> {
        require_caller(&call.principal)?;
        required("account_id", account_id)?;
        let not_found = || Error::not_found("account", account_id);
        let a = account::Entity::find_by_id(account_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let org_id = if organization_id.is_empty() {
            a.home_organization_id.clone()
        } else {
            organization_id.to_owned()
        };
        if organization_active(&self.db, &org_id).await?.is_none()
            || (org_id != a.home_organization_id
                && organization_active(&self.db, &a.home_organization_id)
                    .await?
                    .is_none())
        {
            return Err(not_found());
        }
        let entry = if a.parent_account_id.is_empty() {
            Some(
                account_entry::Entity::find_by_id((org_id.clone(), a.id.clone()))
                    .one(&self.db)
                    .await?
                    .ok_or_else(not_found)?,
            )
        } else if org_id == a.home_organization_id {
            None
        } else {
            return Err(not_found());
        };
        let access =
            match Access::resolve(&self.db, &call.principal, &org_id, Deleted::Hidden).await {
                Ok(access) => Some(access),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
        let user = Reached::user(call);
        let mut reach = Reach {
            reads_all: access.as_ref().is_some_and(|x| {
                x.allows(OrgAction::ManageOrganization)
                    || matches!(x.standing, Standing::Service | Standing::Operator { .. })
            }),
            owner: user == Some(a.owner_user_id.as_str()),
            ..Reach::default()
        };
        if !reach.visible() && !a.parent_account_id.is_empty() {
            reach.parent_owner = account::Entity::find_by_id(a.parent_account_id.clone())
                .one(&self.db)
                .await?
                .is_some_and(|p| user == Some(p.owner_user_id.as_str()));
        }
        if let (false, Some(u), Some(_)) = (reach.visible(), user, &access) {
            reach.granted =
                account_member::Entity::find_by_id((org_id.clone(), a.id.clone(), u.to_owned()))
                    .one(&self.db)
                    .await?
                    .is_some();
        }
        if !reach.visible() {
            return Err(not_found());
        }
        Ok(Reached {
            view: AccountView {
                account: a,
                organization_id: org_id,
                entry,
            },
            access,
            reach,
        })
    }

    /// The reach of an account acted on through `organization_id` (empty: its home) by a caller
    /// who must administer that organization, or (with `owner_may`) own the account. Asked
    /// through its home, a caller who administers another organization that holds the account
    /// INDEPENDENT or PENDING gets `ACCOUNT_NOT_MANAGED` rather than NOT_FOUND or
    /// PERMISSION_DENIED: that organization knows the account.
    pub(crate) async fn reach_to_manage(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
        owner_may: bool,
    ) -> Result<Reached> {
        let denied = match self.reach(call, account_id, organization_id).await {
            Ok(r) => {
                r.require_managed()?;
                if r.administers() || (owner_may && r.reach.owner) {
                    return Ok(r);
                }
                r.require_admin()
                    .err()
                    .unwrap_or_else(|| Error::not_found("account", account_id))
            }
            Err(e) if e.is_not_found() => e,
            Err(e) => return Err(e),
        };
        if organization_id.is_empty()
            && let Some(e) = self.held_elsewhere(call, account_id).await?
        {
            return Err(e);
        }
        Err(denied)
    }

    /// `ACCOUNT_NOT_MANAGED` when the caller administers an organization other than the
    /// account's home whose list holds it.
    async fn held_elsewhere(&self, call: &Call, account_id: &str) -> Result<Option<Error>> {
        let entries = account_entry::Entity::find()
            .filter(account_entry::Column::AccountId.eq(account_id.to_owned()))
            .filter(account_entry::Column::EntryType.ne(AccountType::Managed as i32))
            .all(&self.db)
            .await?;
        for e in entries {
            let Ok(access) = Access::resolve(
                &self.db,
                &call.principal,
                &e.organization_id,
                Deleted::Hidden,
            )
            .await
            else {
                continue;
            };
            if access.allows(OrgAction::ManageOrganization) {
                return Ok(Some(Error::AccountNotManaged {
                    account_id: account_id.to_owned(),
                    kind: type_name(e.entry_type),
                }));
            }
        }
        Ok(None)
    }

    /// GetAccount.
    pub async fn get_account(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
    ) -> Result<AccountView> {
        Ok(self.reach(call, account_id, organization_id).await?.view)
    }
}
