//! What a member's departure and an organization's purge do to accounts. Rule ACC-3 keeps an
//! account's owner a member of its home organization: when a member leaves (RemoveMember,
//! DeprovisionMember, identity's `UserDeleted`), the accounts they own there pass to the
//! organization's OWNER in the same transaction, and their grants there end.

use orgplane_platform::audit::Entry;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{AccountView, entry, save};
use crate::app::App;
use crate::domain::Result;
use crate::store::query::lock_organization;
use crate::store::{account, account_entry, account_member, compliance_default, organization};

/// An account that passed to the organization's OWNER: before and after, with its audit entry.
#[derive(Debug, Clone)]
pub struct HandedOver {
    /// The account before.
    pub before: account::Model,
    /// The account after, owned by the OWNER.
    pub after: account::Model,
}

impl HandedOver {
    /// The audit entry of the change, in the account's home organization.
    pub fn entry(&self) -> Entry {
        entry(
            &self.after.home_organization_id,
            "account.transfer_ownership",
            Some(&AccountView::home(self.before.clone())),
            Some(&AccountView::home(self.after.clone())),
        )
    }
}

impl App {
    /// Passes the accounts `user_id` owns in `organization_id` (subaccounts and closed ones
    /// included) to its OWNER and drops the user's grants there, in `txn` (rule ACC-3). The
    /// caller audits each change ([`HandedOver::entry`]) and publishes `AccountChanged`
    /// ([`super::changed`]). Nothing passes when the organization has no OWNER (a child whose
    /// first owner has not joined yet) or the user is the OWNER.
    pub(crate) async fn hand_over_accounts<C: ConnectionTrait>(
        &self,
        txn: &C,
        organization_id: &str,
        user_id: &str,
    ) -> Result<Vec<HandedOver>> {
        account_member::Entity::delete_many()
            .filter(account_member::Column::OrganizationId.eq(organization_id.to_owned()))
            .filter(account_member::Column::UserId.eq(user_id.to_owned()))
            .exec(txn)
            .await?;
        let Some(org) = organization::Entity::find_by_id(organization_id.to_owned())
            .one(txn)
            .await?
        else {
            return Ok(Vec::new());
        };
        if org.owner_user_id.is_empty() || org.owner_user_id == user_id {
            return Ok(Vec::new());
        }
        // The lock TransferAccountOwnership takes: no account passes to a member leaving now.
        lock_organization(txn, &org.id).await?;
        let owned = account::Entity::find()
            .filter(account::Column::HomeOrganizationId.eq(org.id.clone()))
            .filter(account::Column::OwnerUserId.eq(user_id.to_owned()))
            .all(txn)
            .await?;
        let now = self.now_ms();
        let mut out = Vec::with_capacity(owned.len());
        for before in owned {
            let mut after = before.clone();
            after.owner_user_id = org.owner_user_id.clone();
            after.update_time_ms = now;
            after.version += 1;
            save(txn, &before, &after).await?;
            out.push(HandedOver { before, after });
        }
        Ok(out)
    }

    /// Removes a purged organization's accounts (and their subaccounts, entries in other
    /// organizations' lists and grants), its own entries of other accounts, its grants and its
    /// compliance defaults, in the purge's transaction.
    pub(crate) async fn purge_accounts<C: ConnectionTrait>(
        &self,
        txn: &C,
        organization_id: &str,
    ) -> Result<()> {
        let ids: Vec<String> = account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .filter(account::Column::HomeOrganizationId.eq(organization_id.to_owned()))
            .into_tuple()
            .all(txn)
            .await?;
        for chunk in ids.chunks(500) {
            account_entry::Entity::delete_many()
                .filter(account_entry::Column::AccountId.is_in(chunk.to_vec()))
                .exec(txn)
                .await?;
            account_member::Entity::delete_many()
                .filter(account_member::Column::AccountId.is_in(chunk.to_vec()))
                .exec(txn)
                .await?;
        }
        account::Entity::delete_many()
            .filter(account::Column::HomeOrganizationId.eq(organization_id.to_owned()))
            .exec(txn)
            .await?;
        account_entry::Entity::delete_many()
            .filter(account_entry::Column::OrganizationId.eq(organization_id.to_owned()))
            .exec(txn)
            .await?;
        account_member::Entity::delete_many()
            .filter(account_member::Column::OrganizationId.eq(organization_id.to_owned()))
            .exec(txn)
            .await?;
        compliance_default::Entity::delete_many()
            .filter(compliance_default::Column::OrganizationId.eq(organization_id.to_owned()))
            .exec(txn)
            .await?;
        Ok(())
    }
}
