//! Users: GetUser, BatchGetUsers, UpdateUser (own profile) and DeleteUser (rule ID-9).

use std::collections::{HashMap, HashSet};

use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{UserDeleted, UserProfileChanged};
use orgplane_proto::identity::v1::{AccountType, User};
use sea_orm::entity::prelude::*;

use super::App;
use super::mail_links::VERIFY_MAIL;
use crate::domain::Error;
use crate::domain::error::LinkKind;
use crate::domain::validation::{check_display_name, normalize_email};
use crate::store::entity::{
    mail_token, refresh_token, session, sign_in_address, sign_in_failure, user,
};

/// `UserProfileChanged` of `user`: published when an account is created and when UpdateUser
/// changes its display name or email, so that the organization service names members from its
/// own copy.
pub(crate) fn profile_changed(user: &user::Model) -> Payload {
    Payload::UserProfileChanged(UserProfileChanged {
        user_id: user.id.clone(),
        display_name: user.display_name.clone(),
        email: user.email.clone(),
    })
}

/// An UpdateUser request: the fields named in `paths` take their values from here.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// The user (`me` allowed).
    pub user_id: String,
    /// New display name (path `display_name`).
    pub display_name: String,
    /// New account type (path `account_type`), the wire enum's number.
    pub account_type: i32,
    /// New email address (path `email`).
    pub email: String,
    /// The update mask.
    pub paths: Vec<String>,
    /// The etag the caller read (empty: whatever is current).
    pub etag: String,
}

impl App {
    /// GetUser.
    pub async fn get_user(&self, call: &Call, user_id: &str) -> ApiResult<user::Model> {
        let principal = &*call.principal;
        Self::require_reader(principal)?;
        let id = self.resolve_user_id(principal, user_id)?;
        let my_orgs = self.orgs_of(principal);
        if !self.may_see(principal, &id, &my_orgs) {
            return Err(ApiError::not_found("user", &id));
        }
        user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))
    }

    /// BatchGetUsers: the visible users in request order and the missing ids.
    pub async fn batch_get_users(
        &self,
        call: &Call,
        ids: &[String],
    ) -> ApiResult<(Vec<user::Model>, Vec<String>)> {
        let principal = &*call.principal;
        Self::require_reader(principal)?;
        if ids.is_empty() {
            return Err(ApiError::invalid_argument("user_ids", "at least one id"));
        }
        if ids.len() > 1000 {
            return Err(ApiError::invalid_argument("user_ids", "at most 1000 ids"));
        }
        if ids.iter().any(|i| i.is_empty()) {
            return Err(ApiError::invalid_argument(
                "user_ids",
                "ids must not be empty",
            ));
        }
        let mut wanted: Vec<String> = Vec::with_capacity(ids.len());
        let mut seen = HashSet::new();
        for raw in ids {
            let id = self.resolve_user_id(principal, raw)?;
            if seen.insert(id.clone()) {
                wanted.push(id);
            }
        }
        let my_orgs = self.orgs_of(principal);
        let visible: Vec<String> = wanted
            .iter()
            .filter(|id| self.may_see(principal, id, &my_orgs))
            .cloned()
            .collect();
        let mut found: HashMap<String, user::Model> = HashMap::new();
        for chunk in visible.chunks(500) {
            for u in user::Entity::find()
                .filter(user::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?
            {
                found.insert(u.id.clone(), u);
            }
        }
        let mut users = Vec::new();
        let mut missing = Vec::new();
        for id in wanted {
            match found.remove(&id) {
                Some(u) => users.push(u),
                None => missing.push(id),
            }
        }
        Ok((users, missing))
    }

    /// UpdateUser: `display_name`, `account_type` (PERSONAL → BUSINESS) and `email` (which
    /// needs verifying again).
    pub async fn update_user(&self, call: &Call, cmd: UpdateUser) -> ApiResult<user::Model> {
        let me = call.principal.require_user()?.user_id.clone();
        if cmd.user_id.is_empty() {
            return Err(ApiError::invalid_argument("user.id", "required"));
        }
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let id = self.resolve_user_id(&call.principal, &cmd.user_id)?;
        if id != me {
            return Err(Error::NotAccountOwner("users may change only their own profile").into());
        }
        let before = user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))?;
        check_etag(&cmd.etag, before.version, "user")?;
        let mut after = before.clone();
        let mut new_email = None;
        for path in &cmd.paths {
            match path.as_str() {
                "display_name" => {
                    after.display_name =
                        check_display_name("user.display_name", &cmd.display_name)?;
                }
                "account_type" => {
                    let to =
                        AccountType::try_from(cmd.account_type).unwrap_or(AccountType::Unspecified);
                    if to == AccountType::Unspecified {
                        return Err(ApiError::invalid_argument("user.account_type", "required"));
                    }
                    if before.account_type == AccountType::Business as i32
                        && to == AccountType::Personal
                    {
                        return Err(Error::AccountTypeDowngrade {
                            user_id: id.clone(),
                        }
                        .into());
                    }
                    after.account_type = to as i32;
                }
                "email" => {
                    let (email, key) = normalize_email("user.email", &cmd.email)?;
                    if key != before.email_key {
                        if user::Entity::find()
                            .filter(user::Column::EmailKey.eq(&key))
                            .one(&self.db)
                            .await?
                            .is_some()
                        {
                            return Err(Error::EmailTaken.into());
                        }
                        after.email_key = key;
                        after.email_verified = false;
                        new_email = Some(email.clone());
                    }
                    after.email = email;
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    ));
                }
            }
        }
        after.version = before.version + 1;
        after.update_time_ms = self.now_ms();
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let mut am: user::ActiveModel = before.clone().into();
        am.display_name = sea_orm::Set(after.display_name.clone());
        am.account_type = sea_orm::Set(after.account_type);
        am.email = sea_orm::Set(after.email.clone());
        am.email_key = sea_orm::Set(after.email_key.clone());
        am.email_verified = sea_orm::Set(after.email_verified);
        am.version = sea_orm::Set(after.version);
        am.update_time_ms = sea_orm::Set(after.update_time_ms);
        let updated = user::Entity::update_many()
            .set(am)
            .filter(user::Column::Id.eq(&id))
            .filter(user::Column::Version.eq(before.version))
            .exec(&*unit)
            .await;
        match updated {
            Ok(r) if r.rows_affected == 1 => {}
            Ok(_) => return Err(etag_mismatch("user")),
            Err(e) if orgplane_platform::db::is_unique_violation(&e) => {
                return Err(Error::EmailTaken.into());
            }
            Err(e) => return Err(e.into()),
        }
        if after.display_name != before.display_name || after.email != before.email {
            unit.append(profile_changed(&after)).await?;
        }
        let token = match &new_email {
            Some(email) => Some(
                self.new_mail_token(&*unit, &id, LinkKind::Verification, email)
                    .await?,
            ),
            None => None,
        };
        self.audit
            .write(
                &*unit,
                call,
                Entry::new("", "user.update", "user", &id)
                    .change(Some(&User::from(&before)), Some(&User::from(&after))),
            )
            .await?;
        unit.commit().await?;
        if let (Some(email), Some(token)) = (new_email, token) {
            self.send_link_or_log(&id, &email, VERIFY_MAIL, &token)
                .await;
        }
        Ok(after)
    }

    /// DeleteUser (rule ID-9): the revision of `UserDeleted`.
    pub async fn delete_user(&self, call: &Call, user_id: &str) -> ApiResult<i64> {
        let me = call.principal.require_user()?.user_id.clone();
        let id = self.resolve_user_id(&call.principal, user_id)?;
        if id != me {
            return Err(Error::NotAccountOwner("users may delete only their own account").into());
        }
        self.require_roles_synced()?;
        let owned = self.owned_organizations(&id);
        if let Some(org) = owned.first() {
            return Err(Error::OwnershipTransferRequired {
                organization_id: org.clone(),
                count: owned.len(),
            }
            .into());
        }
        let before = user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let ended = self.active_sessions(&*unit, &id, None).await?;
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::UserId.eq(&id))
            .exec(&*unit)
            .await?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(&id))
            .exec(&*unit)
            .await?;
        mail_token::Entity::delete_many()
            .filter(mail_token::Column::UserId.eq(&id))
            .exec(&*unit)
            .await?;
        self.remove_second_factors(&*unit, &id).await?;
        sign_in_address::Entity::delete_many()
            .filter(sign_in_address::Column::UserId.eq(&id))
            .exec(&*unit)
            .await?;
        sign_in_failure::Entity::delete_many()
            .filter(sign_in_failure::Column::UserId.eq(&id))
            .exec(&*unit)
            .await?;
        user::Entity::delete_by_id(id.clone()).exec(&*unit).await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new("", "user.delete", "user", &id).change(Some(&User::from(&before)), None),
            )
            .await?;
        let published = self.publish_revoked(&mut unit, &id, ended).await?;
        let revision = unit
            .append(Payload::UserDeleted(UserDeleted {
                user_id: id.clone(),
            }))
            .await?;
        unit.commit().await?;
        self.announce_revoked(published);
        Ok(revision)
    }
}
