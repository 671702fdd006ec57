//! Identity's events in this service: `UserDeleted` removes the user from every organization
//! (rule ID-9; the accounts they own pass to each organization's OWNER, rule ACC-3),
//! `UserProfileChanged` keeps the copy of users' names and emails members are answered with,
//! `UserEmailVerified` refreshes the stored member emails (ORG-6), and after a compaction of
//! identity's stream the members' users are re-synced from `BatchGetUsers`.

use orgplane_platform::audit::Entry;
use orgplane_platform::email::canonical_email;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::events::v1::{MemberRemoved, Producer, UserProfileChanged, event::Payload};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::app::App;
use crate::domain::validate::role_of;
use crate::store::{member, profiles, user_profile};

/// Members' users asked of identity per `BatchGetUsers` call in a re-sync (identity's limit).
const RESYNC_USERS_PER_CALL: u64 = 1000;

impl App {
    /// Keeps the stored member emails (ORG-6 ALREADY_A_MEMBER) in step with identity, in their
    /// canonical form (rule ID-15), then enrolls the user where their domain is AUTO_ENROLL
    /// (rule ORG-14). An address identity sent that is not canonicalizable changes nothing.
    pub(crate) async fn email_verified(
        &self,
        txn: &DatabaseTransaction,
        request_id: &str,
        user_id: &str,
        email: &str,
    ) -> ApiResult<()> {
        let email = match canonical_email("email", email) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(user_id, error = %e, "UserEmailVerified with an address that has no canonical form; ignored");
                return Ok(());
            }
        };
        member::Entity::update_many()
            .col_expr(member::Column::Email, Expr::value(email.key.clone()))
            .filter(member::Column::UserId.eq(user_id.to_owned()))
            .exec(txn)
            .await?;
        self.auto_enroll(txn, request_id, user_id, &email).await
    }

    /// Keeps the user's name and email as identity last published them, for member answers.
    pub(crate) async fn profile_changed(
        &self,
        txn: &DatabaseTransaction,
        e: &UserProfileChanged,
    ) -> ApiResult<()> {
        let profile = user_profile::Model {
            user_id: e.user_id.clone(),
            display_name: e.display_name.clone(),
            email: e.email.clone(),
        };
        Ok(profiles::replace(txn, profile).await?)
    }

    /// Removes a deleted user from every organization (rule ID-9), publishing `MemberRemoved`
    /// for each, inside the consumer's transaction, and forgets their profile.
    pub(crate) async fn remove_deleted_user(
        &self,
        txn: &DatabaseTransaction,
        request_id: &str,
        user_id: &str,
    ) -> ApiResult<()> {
        profiles::forget(txn, user_id).await?;
        let memberships = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id.to_owned()))
            .all(txn)
            .await?;
        for m in memberships {
            if role_of(m.role) == OrgRole::Owner {
                // Identity refuses to delete an owner (ID-9); never leave an org without one.
                tracing::warn!(organization_id = %m.organization_id, user_id, "UserDeleted for an OWNER ignored");
                continue;
            }
            member::Entity::delete_many()
                .filter(member::Column::OrganizationId.eq(m.organization_id.clone()))
                .filter(member::Column::UserId.eq(m.user_id.clone()))
                .exec(txn)
                .await?;
            self.audit
                .record_system(
                    txn,
                    Entry::new(&m.organization_id, "member.remove", "member", &m.user_id)
                        .change(Some(&m), None),
                )
                .await?;
            self.outbox
                .append(
                    txn,
                    Payload::MemberRemoved(MemberRemoved {
                        organization_id: m.organization_id.clone(),
                        user_id: m.user_id.clone(),
                        old_role: m.role,
                    }),
                    request_id,
                )
                .await?;
            // Rule ACC-3: their accounts there pass to the organization's OWNER.
            let handed = self
                .hand_over_accounts(txn, &m.organization_id, &m.user_id)
                .await
                .map_err(orgplane_platform::ApiError::from)?;
            for h in handed {
                self.audit.record_system(txn, h.entry()).await?;
                self.outbox
                    .append(txn, crate::app::accounts::changed(&h.after, ""), request_id)
                    .await?;
            }
        }
        Ok(())
    }

    /// Re-sync of identity's stream after compaction: notes where identity's kept events begin,
    /// then asks identity (`BatchGetUsers`, with this service's token) about every member's
    /// user, page by page; users it no longer knows were deleted meanwhile and are removed as
    /// `UserDeleted` removes them, and verified emails are refreshed. Returns the noted
    /// revision: every later event is replayed over this state, which ends in the same state.
    ///
    /// Ended sessions (`SessionsRevoked`) cannot be listed and need not be: a revocation matters
    /// only while its session's access tokens live (minutes), identity keeps events for days, so
    /// every revocation still relevant follows the compaction point and is replayed.
    pub(crate) async fn resync_identity(&self, txn: &DatabaseTransaction) -> ApiResult<i64> {
        let through = orgplane_platform::events::consumer::compacted_through(
            &self.runtime.endpoints.identity,
            self.runtime.service_tokens.as_ref(),
            Producer::Identity,
        )
        .await?;
        let call = Call::system();
        let (mut removed, mut refreshed, mut users) = (0usize, 0u64, 0usize);
        let mut after = String::new();
        loop {
            let ids: Vec<String> = member::Entity::find()
                .select_only()
                .column(member::Column::UserId)
                .distinct()
                .filter(member::Column::UserId.gt(after.clone()))
                .order_by_asc(member::Column::UserId)
                .limit(RESYNC_USERS_PER_CALL)
                .into_tuple()
                .all(txn)
                .await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            users += ids.len();
            let known = self.users.batch(&ids, &call).await?;
            for id in &ids {
                if let Some(u) = known.get(id) {
                    profiles::replace(txn, user_profile::Model::from(u)).await?;
                }
                match known.get(id) {
                    None => {
                        self.remove_deleted_user(txn, &call.request_id, id).await?;
                        removed += 1;
                    }
                    Some(u) if u.email_verified => {
                        let Ok(email) = canonical_email("email", &u.email).map(|e| e.key) else {
                            continue;
                        };
                        refreshed += member::Entity::update_many()
                            .col_expr(member::Column::Email, Expr::value(email.clone()))
                            .filter(member::Column::UserId.eq(id.clone()))
                            .filter(member::Column::Email.ne(email))
                            .exec(txn)
                            .await?
                            .rows_affected;
                    }
                    Some(_) => {}
                }
            }
            if (ids.len() as u64) < RESYNC_USERS_PER_CALL {
                break;
            }
        }
        tracing::info!(
            through,
            users,
            removed,
            refreshed,
            "re-synced identity's users after compaction"
        );
        Ok(through)
    }
}
