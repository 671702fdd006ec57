//! ResetPassword: a new password through a mailed reset link; every session of the user ends.

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiResult, Call};
use sea_orm::Set;
use sea_orm::entity::prelude::*;

use super::{App, as_user, count};
use crate::domain::Error;
use crate::domain::error::LinkKind;
use crate::domain::validation::{check_password_policy, check_token_input};
use crate::store::entity::user;

impl App {
    /// ResetPassword: the number of sessions ended.
    pub async fn reset_password(
        &self,
        call: &Call,
        token: &str,
        new_password: &str,
    ) -> ApiResult<i32> {
        let kind = LinkKind::PasswordReset;
        check_token_input("token", token)?;
        check_password_policy("new_password", new_password)?;
        let row = self.find_mail_token(token, kind).await?;
        let u = user::Entity::find_by_id(row.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or(Error::LinkInvalid(kind))?;
        let hash = self.hasher.hash(new_password).await?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        self.consume_mail_token(&*unit, &row, kind).await?;
        let mut am: user::ActiveModel = u.clone().into();
        am.password_hash = Set(hash);
        am.version = Set(u.version + 1);
        am.update_time_ms = Set(self.now_ms());
        am.update(&*unit).await?;
        let ended = self.revoke_sessions(&*unit, &u.id, None).await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &u.id),
                Entry::new("", "user.reset_password", "user", &u.id),
            )
            .await?;
        let n = count(ended.len());
        let published = self.publish_revoked(&mut unit, &u.id, ended).await?;
        let budgets = &self.throttles.sign_in;
        budgets
            .clear(&*unit, &budgets.account_key(&u.email_key))
            .await?;
        unit.commit().await?;
        self.announce_revoked(published);
        Ok(n)
    }
}
