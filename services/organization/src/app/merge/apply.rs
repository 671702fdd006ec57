//! The writes of a merge (rule ORG-15), in the merge's [`WriteUnit`], exactly as the plan says:
//! members join the prime with their resulting roles, units keep their ids and depths, pending
//! invites move (or are withdrawn when the prime already has the invitee), accounts homed in the
//! candidate move with their subaccounts and grants, and the candidate becomes a MERGED
//! tombstone. The audit records are written here; the event by the caller.

use std::collections::HashSet;

use orgplane_platform::Call;
use orgplane_platform::audit::{Entry, proto_json};
use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::events::WriteUnit;
use orgplane_proto::organization::v1::{AccountType, InviteState, MergePlan, OrganizationState};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Pair;
use super::plan::members_of;
use crate::app::App;
use crate::domain::Result;
use crate::store::{
    account, account_entry, account_member, domain, invite, member, organization, unit,
    unit_workspace,
};

impl App {
    /// Carries out `plan` (see the module docs) in `txn` at `now`.
    pub(crate) async fn apply_merge(
        &self,
        txn: &WriteUnit,
        call: &Call,
        pair: &Pair,
        plan: &MergePlan,
        now: i64,
    ) -> Result<()> {
        let (prime, candidate) = (&pair.prime.id, &pair.candidate.id);
        self.move_members(txn, pair, plan, now).await?;
        unit::Entity::update_many()
            .col_expr(unit::Column::OrganizationId, Expr::value(prime.clone()))
            .col_expr(unit::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                unit::Column::Version,
                Expr::col(unit::Column::Version).add(1),
            )
            .filter(unit::Column::OrganizationId.eq(candidate.clone()))
            .filter(unit::Column::Id.is_in(plan.unit_ids.clone()))
            .exec(&**txn)
            .await?;
        // The workspaces move with their units (the workspace service moves them on the event).
        unit_workspace::Entity::update_many()
            .col_expr(
                unit_workspace::Column::OrganizationId,
                Expr::value(prime.clone()),
            )
            .filter(unit_workspace::Column::OrganizationId.eq(candidate.clone()))
            .exec(&**txn)
            .await?;
        self.move_invites(txn, pair, now).await?;
        self.move_accounts(txn, pair, plan, now).await?;
        // The candidate holds no VERIFIED domain (a precondition); its others go.
        domain::Entity::delete_many()
            .filter(domain::Column::OrganizationId.eq(candidate.clone()))
            .exec(&**txn)
            .await?;
        let before = &pair.candidate;
        let mut after = before.clone();
        after.state = OrganizationState::Merged as i32;
        after.merged_into_id = prime.clone();
        // ORG-1: the tombstone no longer holds its name (never purged, it would hold it forever).
        after.name_key = format!("\u{1}merged\u{1}{}", before.id);
        after.update_time_ms = now;
        after.version += 1;
        let updated = organization::Entity::update_many()
            .col_expr(organization::Column::State, Expr::value(after.state))
            .col_expr(
                organization::Column::MergedIntoId,
                Expr::value(after.merged_into_id.clone()),
            )
            .col_expr(
                organization::Column::NameKey,
                Expr::value(after.name_key.clone()),
            )
            .col_expr(organization::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(organization::Column::Version, Expr::value(after.version))
            .filter(organization::Column::Id.eq(before.id.clone()))
            .filter(organization::Column::Version.eq(before.version))
            .filter(organization::Column::State.eq(OrganizationState::Active as i32))
            .exec(&**txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("organization").into());
        }
        let details = serde_json::json!({
            "primeOrganizationId": prime,
            "candidateOrganizationId": candidate,
            "candidateOwnerUserId": before.owner_user_id,
            "plan": proto_json(plan),
        });
        for org in [prime, candidate] {
            self.audit
                .write(
                    &**txn,
                    call,
                    Entry::new(org, "organization.merge", "organization", candidate)
                        .with_details(details.clone()),
                )
                .await?;
        }
        Ok(())
    }

    /// Members: each of the candidate's joins the prime with their resulting role (a member of
    /// both has theirs updated); the candidate keeps none.
    async fn move_members(
        &self,
        txn: &WriteUnit,
        pair: &Pair,
        plan: &MergePlan,
        now: i64,
    ) -> Result<()> {
        let (prime, candidate) = (&pair.prime.id, &pair.candidate.id);
        let emails: std::collections::HashMap<String, member::Model> =
            members_of(&**txn, candidate)
                .await?
                .into_iter()
                .map(|m| (m.user_id.clone(), m))
                .collect();
        for m in &plan.members {
            if m.prime_role == 0 {
                let email = emails
                    .get(&m.user_id)
                    .map(|c| c.email.clone())
                    .unwrap_or_default();
                member::Entity::insert(member::ActiveModel::from(member::Model {
                    organization_id: prime.clone(),
                    user_id: m.user_id.clone(),
                    email,
                    role: m.resulting_role,
                    create_time_ms: now,
                    update_time_ms: now,
                    version: 1,
                }))
                .exec(&**txn)
                .await?;
            } else if m.resulting_role != m.prime_role {
                member::Entity::update_many()
                    .col_expr(member::Column::Role, Expr::value(m.resulting_role))
                    .col_expr(member::Column::UpdateTimeMs, Expr::value(now))
                    .col_expr(
                        member::Column::Version,
                        Expr::col(member::Column::Version).add(1),
                    )
                    .filter(member::Column::OrganizationId.eq(prime.clone()))
                    .filter(member::Column::UserId.eq(m.user_id.clone()))
                    .exec(&**txn)
                    .await?;
            }
        }
        member::Entity::delete_many()
            .filter(member::Column::OrganizationId.eq(candidate.clone()))
            .exec(&**txn)
            .await?;
        Ok(())
    }

    /// Pending invites of the candidate move to the prime, unless the invitee is a member of
    /// the prime by now or the prime has a pending invite for them: then the candidate's is
    /// withdrawn (DELETED, kept with the tombstone). Expired, accepted and withdrawn invites stay
    /// with the tombstone.
    async fn move_invites(&self, txn: &WriteUnit, pair: &Pair, now: i64) -> Result<()> {
        let (prime, candidate) = (&pair.prime.id, &pair.candidate.id);
        let members: HashSet<String> = members_of(&**txn, prime)
            .await?
            .into_iter()
            .map(|m| m.email)
            .collect();
        let pending = |org: &str| {
            invite::Entity::find()
                .filter(invite::Column::OrganizationId.eq(org.to_owned()))
                .filter(invite::Column::State.eq(InviteState::Pending as i32))
                .filter(invite::Column::PendingKey.is_not_null())
                .all(&**txn)
        };
        let prime_pending = pending(prime).await?;
        for inv in pending(candidate).await? {
            if inv.expire_time_ms <= now {
                continue;
            }
            let key = inv.pending_key.clone().unwrap_or_default();
            let held = prime_pending
                .iter()
                .find(|p| p.pending_key.as_deref() == Some(key.as_str()));
            let blocked = held.is_some_and(|p| p.expire_time_ms > now);
            if members.contains(&key) || blocked {
                invite::Entity::update_many()
                    .col_expr(
                        invite::Column::State,
                        Expr::value(InviteState::Deleted as i32),
                    )
                    .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
                    .col_expr(invite::Column::DeleteTimeMs, Expr::value(Some(now)))
                    .filter(invite::Column::Id.eq(inv.id.clone()))
                    .exec(&**txn)
                    .await?;
                continue;
            }
            if let Some(expired) = held {
                // An expired invite of the prime no longer blocks one (as CreateInvite does).
                invite::Entity::update_many()
                    .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
                    .filter(invite::Column::Id.eq(expired.id.clone()))
                    .exec(&**txn)
                    .await?;
            }
            invite::Entity::update_many()
                .col_expr(invite::Column::OrganizationId, Expr::value(prime.clone()))
                .filter(invite::Column::Id.eq(inv.id.clone()))
                .exec(&**txn)
                .await?;
        }
        Ok(())
    }

    /// Accounts (rules ACC-1 … ACC-4): every top-level account homed in the candidate becomes
    /// MANAGED in the prime's list (an INDEPENDENT or PENDING entry of the prime becomes it) and
    /// moves with its subaccounts; grants on moved accounts move with the organization; the
    /// candidate's INDEPENDENT and PENDING entries and their grants are dropped. No
    /// `AccountChanged` is published: the `OrganizationsMerged` event names the moved accounts.
    async fn move_accounts(
        &self,
        txn: &WriteUnit,
        pair: &Pair,
        plan: &MergePlan,
        now: i64,
    ) -> Result<()> {
        let (prime, candidate) = (&pair.prime.id, &pair.candidate.id);
        let moved: HashSet<&str> = plan.account_ids.iter().map(String::as_str).collect();
        let grants = account_member::Entity::find()
            .filter(account_member::Column::OrganizationId.eq(candidate.clone()))
            .all(&**txn)
            .await?;
        account_member::Entity::delete_many()
            .filter(account_member::Column::OrganizationId.eq(candidate.clone()))
            .exec(&**txn)
            .await?;
        for g in grants
            .into_iter()
            .filter(|g| moved.contains(g.account_id.as_str()))
        {
            let key = (prime.clone(), g.account_id.clone(), g.user_id.clone());
            if account_member::Entity::find_by_id(key)
                .one(&**txn)
                .await?
                .is_none()
            {
                account_member::Entity::insert(account_member::ActiveModel::from(
                    account_member::Model {
                        organization_id: prime.clone(),
                        ..g
                    },
                ))
                .exec(&**txn)
                .await?;
            }
        }
        account_entry::Entity::delete_many()
            .filter(account_entry::Column::OrganizationId.eq(candidate.clone()))
            .filter(account_entry::Column::EntryType.ne(AccountType::Managed as i32))
            .exec(&**txn)
            .await?;
        let tops = account::Entity::find()
            .filter(account::Column::Id.is_in(plan.account_ids.clone()))
            .filter(account::Column::ParentAccountId.eq(""))
            .filter(account::Column::HomeOrganizationId.eq(candidate.clone()))
            .all(&**txn)
            .await?;
        for a in tops {
            let entry = account_entry::Entity::find_by_id((candidate.clone(), a.id.clone()))
                .one(&**txn)
                .await?;
            let listed = account_entry::Entity::find_by_id((prime.clone(), a.id.clone()))
                .one(&**txn)
                .await?;
            match listed {
                Some(e) => {
                    account_entry::Entity::update_many()
                        .col_expr(
                            account_entry::Column::EntryType,
                            Expr::value(AccountType::Managed as i32),
                        )
                        .col_expr(account_entry::Column::RequestedType, Expr::value(0))
                        .col_expr(account_entry::Column::State, Expr::value(a.state))
                        .col_expr(account_entry::Column::UpdateTimeMs, Expr::value(now))
                        .col_expr(account_entry::Column::Version, Expr::value(e.version + 1))
                        .filter(account_entry::Column::OrganizationId.eq(prime.clone()))
                        .filter(account_entry::Column::AccountId.eq(a.id.clone()))
                        .exec(&**txn)
                        .await?;
                }
                None => {
                    account_entry::Entity::insert(account_entry::ActiveModel::from(
                        account_entry::Model {
                            organization_id: prime.clone(),
                            account_id: a.id.clone(),
                            entry_type: AccountType::Managed as i32,
                            requested_type: 0,
                            state: a.state,
                            create_time_ms: entry.map_or(now, |e| e.create_time_ms),
                            update_time_ms: now,
                            version: 1,
                        },
                    ))
                    .exec(&**txn)
                    .await?;
                }
            }
            self.move_account(txn, &a, prime, now).await?;
        }
        Ok(())
    }
}
