//! Mailed single-use links (rules ID-2, ID-8): minting and consuming their tokens, sending them,
//! ResendVerification / RequestPasswordReset, and VerifyEmail.

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::mail::Mail;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::events::v1::UserEmailVerified;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::identity::v1::User;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Set};

use super::{App, MAIL_TOKEN_TTL, as_user};
use crate::crypto::{self, sha256_hex};
use crate::domain::Error;
use crate::domain::error::LinkKind;
use crate::domain::validation::{check_token_input, normalize_email};
use crate::store::entity::{mail_token, user};

/// The mail that carries a link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkMail {
    /// The subject line.
    pub subject: &'static str,
    /// The path of the link under the public URL.
    pub path: &'static str,
}

/// The verification mail.
pub(crate) const VERIFY_MAIL: LinkMail = LinkMail {
    subject: "Verify your email address",
    path: "verify-email",
};
/// The reset mail a user asked for.
pub(crate) const RESET_MAIL: LinkMail = LinkMail {
    subject: "Reset your password",
    path: "reset-password",
};
/// The reset mail an OWNER or ADMIN caused (rule ID-8).
pub(crate) const ADMIN_RESET_MAIL: LinkMail = LinkMail {
    subject: "Choose a new password",
    path: "reset-password",
};

/// The `purpose` column of a link's token.
fn purpose(kind: LinkKind) -> &'static str {
    match kind {
        LinkKind::Verification => "verify",
        LinkKind::PasswordReset => "reset",
    }
}

/// An email address verified by VerifyEmail.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The user after verification.
    pub user: user::Model,
    /// The revision of `UserEmailVerified`.
    pub revision: i64,
}

impl App {
    /// Mints a `kind` link token for `user_id` at `email` in `txn`, voiding earlier unused ones.
    pub(crate) async fn new_mail_token<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        kind: LinkKind,
        email: &str,
    ) -> ApiResult<String> {
        mail_token::Entity::update_many()
            .col_expr(mail_token::Column::Used, Expr::value(true))
            .filter(mail_token::Column::UserId.eq(user_id))
            .filter(mail_token::Column::Purpose.eq(purpose(kind)))
            .filter(mail_token::Column::Used.eq(false))
            .exec(txn)
            .await?;
        let token = crypto::random_token("");
        let now = self.now_ms();
        mail_token::ActiveModel {
            token_hash: Set(sha256_hex(&token)),
            user_id: Set(user_id.to_owned()),
            purpose: Set(purpose(kind).to_owned()),
            email: Set(email.to_owned()),
            create_time_ms: Set(now),
            expire_time_ms: Set(now + MAIL_TOKEN_TTL.num_milliseconds()),
            used: Set(false),
        }
        .insert(txn)
        .await?;
        Ok(token)
    }

    /// Mails `token`'s link to `to`.
    pub(crate) async fn send_link(&self, to: &str, mail: LinkMail, token: &str) -> ApiResult<()> {
        let link = format!(
            "{}/{}?token={token}",
            self.mail.public_url.trim_end_matches('/'),
            mail.path
        );
        let body = format!(
            "Hello,\n\nopen this link within 24 hours:\n\n{link}\n\nIf you did not ask for it, ignore this message.\n\n-- Orgplane\n"
        );
        self.mail
            .mailer
            .send(
                &self.mail.from,
                Mail {
                    to: to.to_owned(),
                    subject: mail.subject.to_owned(),
                    body,
                },
            )
            .await
    }

    /// Mails a link after its transaction committed; a failure is logged, not answered.
    pub(crate) async fn send_link_or_log(
        &self,
        user_id: &str,
        to: &str,
        mail: LinkMail,
        token: &str,
    ) {
        if let Err(e) = self.send_link(to, mail, token).await {
            tracing::warn!(user_id = %user_id, error = %e, "mail not sent");
        }
    }

    /// Looks up an unused `kind` link token.
    pub(crate) async fn find_mail_token(
        &self,
        token: &str,
        kind: LinkKind,
    ) -> ApiResult<mail_token::Model> {
        let row = mail_token::Entity::find_by_id(sha256_hex(token))
            .one(&self.db)
            .await?
            .filter(|t| t.purpose == purpose(kind) && !t.used)
            .ok_or(Error::LinkInvalid(kind))?;
        if row.expire_time_ms <= self.now_ms() {
            return Err(Error::LinkExpired(kind).into());
        }
        Ok(row)
    }

    /// Marks `row` used in `txn`; LinkInvalid when a concurrent use won.
    pub(crate) async fn consume_mail_token<C: ConnectionTrait>(
        &self,
        txn: &C,
        row: &mail_token::Model,
        kind: LinkKind,
    ) -> ApiResult<()> {
        let done = mail_token::Entity::update_many()
            .col_expr(mail_token::Column::Used, Expr::value(true))
            .filter(mail_token::Column::TokenHash.eq(&row.token_hash))
            .filter(mail_token::Column::Used.eq(false))
            .exec(txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(Error::LinkInvalid(kind).into());
        }
        Ok(())
    }

    /// ResendVerification (`kind` Verification) and RequestPasswordReset (PasswordReset): mails
    /// a link when the account exists (and, for verification, is unverified); answers the same
    /// either way.
    pub async fn mail_link(&self, call: &Call, email: &str, kind: LinkKind) -> ApiResult<()> {
        let (_, key) = normalize_email("email", email)?;
        self.throttles.mail_peer.hit(&self.peer_key(call))?;
        self.throttles.mail_address.hit(&key)?;
        let Some(u) = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&key))
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        let (action, mail) = match kind {
            LinkKind::Verification if u.email_verified => return Ok(()),
            LinkKind::Verification => ("user.resend_verification", VERIFY_MAIL),
            LinkKind::PasswordReset => ("user.request_password_reset", RESET_MAIL),
        };
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let token = self.new_mail_token(&*unit, &u.id, kind, &u.email).await?;
        self.audit
            .write(&*unit, call, Entry::new("", action, "user", &u.id))
            .await?;
        unit.commit().await?;
        self.send_link_or_log(&u.id, &u.email, mail, &token).await;
        Ok(())
    }

    /// VerifyEmail: the user and the revision of `UserEmailVerified`.
    pub async fn verify_email(&self, call: &Call, token: &str) -> ApiResult<Verified> {
        let kind = LinkKind::Verification;
        check_token_input("token", token)?;
        let row = self.find_mail_token(token, kind).await?;
        let before = user::Entity::find_by_id(row.user_id.clone())
            .one(&self.db)
            .await?
            .filter(|u| u.email == row.email)
            .ok_or(Error::LinkInvalid(kind))?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        self.consume_mail_token(&*unit, &row, kind).await?;
        let mut after = before.clone();
        after.email_verified = true;
        after.version += 1;
        after.update_time_ms = self.now_ms();
        let mut am: user::ActiveModel = before.clone().into();
        am.email_verified = Set(true);
        am.version = Set(after.version);
        am.update_time_ms = Set(after.update_time_ms);
        am.update(&*unit).await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &before.id),
                Entry::new("", "user.verify_email", "user", &before.id)
                    .change(Some(&User::from(&before)), Some(&User::from(&after))),
            )
            .await?;
        let revision = unit
            .append(Payload::UserEmailVerified(UserEmailVerified {
                user_id: after.id.clone(),
                email: after.email.clone(),
            }))
            .await?;
        unit.commit().await?;
        Ok(Verified {
            user: after,
            revision,
        })
    }
}
