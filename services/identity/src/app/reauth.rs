//! Reauthenticate (rules ID-6, ID-12): the signed-in user proves their presence again (password,
//! TOTP code or recovery code) and gets fresh tokens for the same session, whose `auth_time` is
//! now and whose risk signals are cleared; a second factor also adds `otp mfa` to its `amr`.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::UserPrincipal;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Set};

use super::App;
use super::challenge::{CODE_AMR, IssuedChallenge};
use super::factors::FactorProof;
use super::sessions::{Tokens, merge_amr};
use crate::crypto;
use crate::domain::Error;
use crate::store::entity::{refresh_token, session, user};

/// The proof a Reauthenticate request carries.
#[derive(Clone)]
pub enum ReauthProof {
    /// The password.
    Password(String),
    /// A TOTP or recovery code.
    Factor(FactorProof),
    /// A passkey step-up (answered with a challenge).
    Passkey,
}

impl std::fmt::Debug for ReauthProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReauthProof::Password(_) => f.write_str("Password(..)"),
            ReauthProof::Factor(p) => write!(f, "Factor({p:?})"),
            ReauthProof::Passkey => f.write_str("Passkey"),
        }
    }
}

impl ReauthProof {
    /// The one proof of a request, or INVALID_ARGUMENT when there is not exactly one.
    pub fn exactly_one(
        password: &str,
        totp_code: &str,
        recovery_code: &str,
        passkey: bool,
    ) -> ApiResult<Self> {
        let given = [
            !password.is_empty(),
            !totp_code.trim().is_empty(),
            !recovery_code.trim().is_empty(),
            passkey,
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(ApiError::invalid_argument(
                "password",
                "exactly one proof is required: password, totp_code, recovery_code or passkey",
            ));
        }
        Ok(if !password.is_empty() {
            ReauthProof::Password(password.to_owned())
        } else if !totp_code.trim().is_empty() {
            ReauthProof::Factor(FactorProof::Totp(totp_code.to_owned()))
        } else if !recovery_code.trim().is_empty() {
            ReauthProof::Factor(FactorProof::RecoveryCode(recovery_code.to_owned()))
        } else {
            ReauthProof::Passkey
        })
    }
}

impl App {
    /// Renews `user`'s session in `txn` after a proof of presence: `auth_time` now, `added`
    /// methods in its `amr`, risk signals cleared, its unrotated refresh tokens replaced.
    pub(crate) async fn renew_session<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: &UserPrincipal,
        added: &[&str],
    ) -> ApiResult<Tokens> {
        let now = self.now_ms();
        let s = session::Entity::find_by_id(user.session_id.clone())
            .one(txn)
            .await?
            .filter(|s| {
                s.user_id == user.user_id && s.revoked_time_ms.is_none() && s.expire_time_ms > now
            })
            .ok_or(Error::SessionEnded)?;
        let mut fresh = s.clone();
        fresh.auth_time = chrono::Utc::now().timestamp();
        fresh.amr = merge_amr(&s.amr, added);
        fresh.risk = String::new();
        let mut am: session::ActiveModel = s.into();
        am.auth_time = Set(fresh.auth_time);
        am.amr = Set(fresh.amr.clone());
        am.risk = Set(String::new());
        am.update(txn).await?;
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::SessionId.eq(&fresh.id))
            .filter(refresh_token::Column::Rotated.eq(false))
            .exec(txn)
            .await?;
        self.tokens_for(txn, &fresh).await
    }

    /// Reauthenticate (rules ID-6, ID-12). Wrong proofs count against the account's sign-in
    /// budget like a failed Login (rule ID-3) and as recent failures.
    pub async fn reauthenticate(&self, call: &Call, proof: ReauthProof) -> ApiResult<Tokens> {
        let principal = call.principal.require_user()?.clone();
        let account = format!("user:{}", principal.user_id);
        let user_id = Some(principal.user_id.as_str());
        let (code, attempt) = match proof {
            ReauthProof::Passkey => {
                // Answered by `start_passkey_step_up`; the API routes it there.
                return Err(self
                    .passkey_proof_unavailable(&self.db, &principal.user_id)
                    .await?);
            }
            ReauthProof::Password(password) => {
                let attempt = self
                    .begin_sign_in(call, &account, &principal.user_id)
                    .await?;
                let u = user::Entity::find_by_id(principal.user_id.clone())
                    .one(&self.db)
                    .await?;
                let hash = u.as_ref().map(|u| u.password_hash.as_str()).unwrap_or("");
                let ok = password.len() <= crypto::MAX_PASSWORD_BYTES
                    && self.hasher.verify(&password, hash).await?;
                if !ok || u.is_none() {
                    self.proof_failed(attempt, user_id).await?;
                    return Err(Error::WrongPassword.into());
                }
                (None, attempt)
            }
            ReauthProof::Factor(code) => {
                let attempt = self
                    .begin_sign_in(call, &account, &principal.user_id)
                    .await?;
                (Some(code), attempt)
            }
        };
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        if let Some(code) = &code
            && !self
                .check_factor_proof(&*unit, &principal.user_id, code)
                .await?
        {
            drop(unit);
            self.proof_failed(attempt, user_id).await?;
            return Err(Error::InvalidMfaCode.into());
        }
        let added: &[&str] = if code.is_some() { &CODE_AMR } else { &[] };
        let tokens = self.renew_session(&*unit, &principal, added).await?;
        self.record_sign_in_address(&*unit, &principal.user_id, &self.peer_key(call))
            .await?;
        attempt.succeeded(&*unit).await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(
                    "",
                    "session.reauthenticate",
                    "session",
                    &principal.session_id,
                ),
            )
            .await?;
        unit.commit().await?;
        Ok(tokens)
    }

    /// Reauthenticate with `passkey` (rules ID-6, ID-12): a challenge bound to the caller's
    /// session, carrying the passkey request options; VerifyMfaChallenge with the assertion
    /// renews the session. FAILED_PRECONDITION when the user has no passkey or passkeys are not
    /// configured.
    pub async fn start_passkey_step_up(&self, call: &Call) -> ApiResult<IssuedChallenge> {
        let principal = call.principal.require_user()?.clone();
        if self
            .passkey_request_options(&principal.user_id)
            .await?
            .is_none()
        {
            return Err(self
                .passkey_proof_unavailable(&self.db, &principal.user_id)
                .await?);
        }
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let challenge = self
            .open_challenge(&*unit, &principal.user_id, Some(&principal.session_id), &[])
            .await?;
        unit.commit().await?;
        Ok(challenge)
    }
}
