//! Member credential resets by an organization's OWNER or ADMIN (rule ID-8): AdminResetPassword
//! and AdminResetMfa. Refusals are audited in the organization.

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::identity::v1::MfaFactorState;
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Set};

use super::mail_links::ADMIN_RESET_MAIL;
use super::standing::OrgStanding;
use super::{App, count};
use crate::domain::Error;
use crate::domain::error::LinkKind;
use crate::store::entity::{mfa_challenge, mfa_factor, recovery_code, totp_step, user};

/// Whose credentials to reset, in which organization.
#[derive(Debug, Clone, Default)]
pub struct MemberReset {
    /// The organization the caller acts in.
    pub organization_id: String,
    /// The member.
    pub user_id: String,
}

impl MemberReset {
    fn entry(&self, action: &str) -> Entry {
        Entry::new(&self.organization_id, action, "user", &self.user_id)
    }
}

impl App {
    /// Checks that the caller may reset the member's credentials (rule ID-8): OWNER or ADMIN
    /// (an admin key counts as ADMIN), and only the OWNER for the OWNER (`OWNER_PROTECTED`).
    fn authorize_member_reset(&self, call: &Call, target: &MemberReset) -> ApiResult<()> {
        let org = &target.organization_id;
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        if target.user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        let standing = self.standing(&call.principal, org)?;
        if standing == OrgStanding::Service {
            return Err(Error::MemberCredentialsRequired.into());
        }
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(Error::InsufficientRole(
                "only an OWNER or ADMIN may reset a member's credentials",
            )
            .into());
        }
        let target_role = self
            .replica
            .role(org, &target.user_id)
            .ok_or_else(|| ApiError::not_found("member", &target.user_id))?;
        if target_role == OrgRole::Owner && standing != OrgStanding::Member(OrgRole::Owner) {
            return Err(Error::OwnerProtected.into());
        }
        Ok(())
    }

    /// Passes a member reset's `result` through, recording a refusal in the organization when
    /// the replica knows it (ORG-10).
    async fn audited_reset<T>(
        &self,
        call: &Call,
        target: &MemberReset,
        action: &str,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .audited(&self.db, call, result, || async {
                self.knows_organization(&target.organization_id)
                    .then(|| target.entry(action))
            })
            .await
    }

    /// AdminResetPassword (rule ID-8): the number of sessions ended.
    pub async fn admin_reset_password(&self, call: &Call, target: MemberReset) -> ApiResult<i32> {
        let result = self.try_admin_reset_password(call, &target).await;
        self.audited_reset(call, &target, "user.admin_reset_password", result)
            .await
    }

    async fn try_admin_reset_password(&self, call: &Call, target: &MemberReset) -> ApiResult<i32> {
        self.authorize_member_reset(call, target)?;
        let u = user::Entity::find_by_id(target.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("member", &target.user_id))?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let mut am: user::ActiveModel = u.clone().into();
        am.password_hash = Set(String::new());
        am.version = Set(u.version + 1);
        am.update_time_ms = Set(self.now_ms());
        am.update(&*unit).await?;
        let ended = self.revoke_sessions(&*unit, &u.id, None).await?;
        let token = self
            .new_mail_token(&*unit, &u.id, LinkKind::PasswordReset, &u.email)
            .await?;
        self.audit
            .write(&*unit, call, target.entry("user.admin_reset_password"))
            .await?;
        let n = count(ended.len());
        let published = self.publish_revoked(&mut unit, &u.id, ended).await?;
        unit.commit().await?;
        self.announce_revoked(published);
        self.send_link(&u.email, ADMIN_RESET_MAIL, &token).await?;
        Ok(n)
    }

    /// AdminResetMfa (rule ID-8): the number of enrolled factors removed and of sessions ended.
    pub async fn admin_reset_mfa(&self, call: &Call, target: MemberReset) -> ApiResult<(i32, i32)> {
        let result = self.try_admin_reset_mfa(call, &target).await;
        self.audited_reset(call, &target, "user.admin_reset_mfa", result)
            .await
    }

    async fn try_admin_reset_mfa(
        &self,
        call: &Call,
        target: &MemberReset,
    ) -> ApiResult<(i32, i32)> {
        self.authorize_member_reset(call, target)?;
        let user_id = target.user_id.as_str();
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let enrolled = mfa_factor::Entity::delete_many()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::State.eq(MfaFactorState::Active as i32))
            .exec(&*unit)
            .await?;
        self.remove_second_factors(&*unit, user_id).await?;
        let ended = self.revoke_sessions(&*unit, user_id, None).await?;
        self.audit
            .write(&*unit, call, target.entry("user.admin_reset_mfa"))
            .await?;
        let n = count(ended.len());
        let published = self.publish_revoked(&mut unit, user_id, ended).await?;
        unit.commit().await?;
        self.announce_revoked(published);
        Ok((i32::try_from(enrolled.rows_affected).unwrap_or(i32::MAX), n))
    }

    /// Removes every second-factor row of `user_id` in `txn`: factors, recovery codes, the last
    /// TOTP step, open challenges (rules ID-8, ID-9).
    pub(crate) async fn remove_second_factors<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
    ) -> ApiResult<()> {
        mfa_factor::Entity::delete_many()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        totp_step::Entity::delete_many()
            .filter(totp_step::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        mfa_challenge::Entity::delete_many()
            .filter(mfa_challenge::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        Ok(())
    }
}
