//! Reauthenticate (rule ID-6): the signed-in user confirms their password again and gets fresh
//! tokens for the same session, whose `auth_time` is now.

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::Set;
use sea_orm::entity::prelude::*;

use super::App;
use super::sessions::Tokens;
use crate::crypto;
use crate::domain::Error;
use crate::store::entity::{refresh_token, session, user};

impl App {
    /// Reauthenticate (rule ID-6). A wrong password counts against the account's sign-in
    /// budget like a failed Login (rule ID-3).
    pub async fn reauthenticate(&self, call: &Call, password: &str) -> ApiResult<Tokens> {
        let principal = call.principal.require_user()?.clone();
        if password.is_empty() {
            return Err(ApiError::invalid_argument("password", "required"));
        }
        let account = format!("user:{}", principal.user_id);
        self.check_login_budget(call, &account)?;
        let u = user::Entity::find_by_id(principal.user_id.clone())
            .one(&self.db)
            .await?;
        let hash = u.as_ref().map(|u| u.password_hash.as_str()).unwrap_or("");
        let ok = password.len() <= crypto::MAX_PASSWORD_BYTES
            && self.hasher.verify(password, hash).await?;
        if !ok || u.is_none() {
            return Err(Error::WrongPassword.into());
        }
        let now = self.now_ms();
        let s = session::Entity::find_by_id(principal.session_id.clone())
            .one(&self.db)
            .await?
            .filter(|s| {
                s.user_id == principal.user_id
                    && s.revoked_time_ms.is_none()
                    && s.expire_time_ms > now
            })
            .ok_or(Error::SessionEnded)?;
        let mut fresh = s.clone();
        fresh.auth_time = chrono::Utc::now().timestamp();
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let mut am: session::ActiveModel = s.into();
        am.auth_time = Set(fresh.auth_time);
        am.update(&*unit).await?;
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::SessionId.eq(&fresh.id))
            .filter(refresh_token::Column::Rotated.eq(false))
            .exec(&*unit)
            .await?;
        let tokens = self.tokens_for(&*unit, &fresh).await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new("", "session.reauthenticate", "session", &fresh.id),
            )
            .await?;
        unit.commit().await?;
        self.login_succeeded(call, &account);
        Ok(tokens)
    }
}
