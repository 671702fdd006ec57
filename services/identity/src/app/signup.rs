//! SignUp (rules ID-1, ID-2, ID-3): a new account with a hashed password and a verification
//! link; a retried request with the same `request_id` answers with the account it created.

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::identity::v1::{AccountType, User};
use sea_orm::entity::prelude::*;

use super::mail_links::VERIFY_MAIL;
use super::users::profile_changed;
use super::{App, as_user, new_id};
use crate::domain::Error;
use crate::domain::error::LinkKind;
use crate::domain::validation::{
    Violations, check_display_name, check_password_policy, check_request_id, normalize_email,
};
use crate::store::entity::user;

/// A SignUp request.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    /// The email address.
    pub email: String,
    /// The password (rule ID-3).
    pub password: String,
    /// The display name.
    pub display_name: String,
    /// BUSINESS or PERSONAL (rule ID-1), as the wire enum's number.
    pub account_type: i32,
    /// The client's idempotency key (may be empty).
    pub request_id: String,
}

impl App {
    /// SignUp.
    pub async fn sign_up(&self, call: &Call, cmd: SignUp) -> ApiResult<user::Model> {
        let mut violations = Violations::default();
        let email = violations.check(normalize_email("email", &cmd.email));
        violations.check(check_password_policy("password", &cmd.password));
        let name = violations.check(check_display_name("display_name", &cmd.display_name));
        let kind = AccountType::try_from(cmd.account_type).unwrap_or(AccountType::Unspecified);
        if kind == AccountType::Unspecified {
            violations.add(
                "account_type",
                "ACCOUNT_TYPE_BUSINESS or ACCOUNT_TYPE_PERSONAL required",
            );
        }
        violations.check(check_request_id(&cmd.request_id));
        violations.finish()?;
        let (Some((email, email_key)), Some(name)) = (email, name) else {
            return Err(orgplane_platform::ApiError::invalid_argument(
                "email", "required",
            ));
        };
        let request_id = cmd.request_id.as_str();
        if let Some(first) = self.signed_up_by(request_id, &email_key).await? {
            return Ok(first);
        }
        self.throttles.signup_peer.hit(&self.peer_key(call))?;
        // Rules ID-13 and ORG-14: enforced SSO domains, RESTRICTED domains without an invite.
        self.check_sign_up_domain(call, &email_key).await?;
        if user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email_key))
            .one(&self.db)
            .await?
            .is_some()
        {
            // A copy of this request may have created the account meanwhile (AIP-155).
            return match self.signed_up_by(request_id, &email_key).await? {
                Some(first) => Ok(first),
                None => Err(Error::EmailTaken.into()),
            };
        }
        let hash = self.hasher.hash(&cmd.password).await?;
        let now = self.now_ms();
        let id = new_id("user");
        let row = user::Model {
            id: id.clone(),
            email: email.clone(),
            email_key,
            email_verified: false,
            display_name: name,
            account_type: kind as i32,
            password_hash: hash,
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        };
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let inserted = user::ActiveModel::from(row.clone()).insert(&*unit).await;
        if let Err(e) = inserted {
            if !orgplane_platform::db::is_unique_violation(&e) {
                return Err(e.into());
            }
            drop(unit);
            return match self.signed_up_by(request_id, &row.email_key).await? {
                Some(first) => Ok(first),
                None => Err(Error::EmailTaken.into()),
            };
        }
        let token = self
            .new_mail_token(&*unit, &id, LinkKind::Verification, &email)
            .await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &id),
                Entry::new("", "user.create", "user", &id).change(None, Some(&User::from(&row))),
            )
            .await?;
        unit.append(profile_changed(&row)).await?;
        unit.commit().await?;
        self.send_link_or_log(&id, &email, VERIFY_MAIL, &token)
            .await;
        Ok(row)
    }

    /// The account an earlier SignUp with `request_id` created for `email_key`, if any: a retried
    /// or duplicated SignUp answers with it instead of EMAIL_ALREADY_REGISTERED.
    async fn signed_up_by(
        &self,
        request_id: &str,
        email_key: &str,
    ) -> ApiResult<Option<user::Model>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(user::Entity::find()
            .filter(user::Column::SignupRequestId.eq(request_id))
            .one(&self.db)
            .await?
            .filter(|u| u.email_key == email_key))
    }
}
