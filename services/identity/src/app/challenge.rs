//! The MFA challenge of rule ID-11: a user with an active factor who proves their password gets
//! a challenge instead of tokens; VerifyMfaChallenge completes it with a second factor. A
//! challenge id is a bearer secret (stored hashed), expires in 5 minutes, ends after 5 wrong
//! proofs, and is used once even under concurrency (a conditional update claims it). Wrong
//! proofs count against the account's sign-in budget like wrong passwords (rule ID-3).

use orgplane_platform::audit::Entry;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::policy::{amr, signal};
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::identity::v1::MfaMethod;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, ExprTrait, Set};

use super::factors::{FactorProof, KIND_PASSKEY, KIND_TOTP};
use super::risk::{join_signals, split_signals};
use super::sessions::Tokens;
use super::{App, as_user};
use crate::crypto::{self, sha256_hex};
use crate::domain::Error;
use crate::domain::validation::check_token_input;
use crate::store::entity::{mfa_challenge, user};
use crate::throttle::sign_in::SignInAttempt;
use orgplane_platform::error::Reason;

/// How long a challenge stays open (5 minutes).
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong proofs that end a challenge.
pub const CHALLENGE_MAX_FAILURES: i32 = 5;

/// A challenge just opened: what the client needs to complete it.
#[derive(Clone)]
pub struct IssuedChallenge {
    /// `mfac_…`, a secret.
    pub id: String,
    /// The proofs the user can give.
    pub methods: Vec<MfaMethod>,
    /// Unix milliseconds.
    pub expire_time_ms: i64,
    /// With a passkey method: the request options (JSON).
    pub passkey_request_options_json: String,
}

impl std::fmt::Debug for IssuedChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedChallenge")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// The proof a VerifyMfaChallenge request carries (exactly one of them set).
#[derive(Clone, Default)]
pub struct ChallengeAnswer {
    /// The challenge id.
    pub challenge_id: String,
    /// A TOTP code.
    pub totp_code: String,
    /// A recovery code.
    pub recovery_code: String,
    /// A passkey assertion (JSON).
    pub passkey_assertion_json: String,
}

impl std::fmt::Debug for ChallengeAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeAnswer(..)")
    }
}

/// A proof of a challenge or a step-up: a code, or a passkey assertion (checked by the passkey
/// part).
#[derive(Debug, Clone)]
pub enum SecondFactor {
    /// A TOTP or recovery code.
    Code(FactorProof),
    /// A passkey assertion (JSON).
    Passkey(String),
}

impl ChallengeAnswer {
    /// The one proof, or INVALID_ARGUMENT.
    fn proof(&self) -> ApiResult<SecondFactor> {
        let given = [
            &self.totp_code,
            &self.recovery_code,
            &self.passkey_assertion_json,
        ]
        .iter()
        .filter(|p| !p.trim().is_empty())
        .count();
        if given != 1 {
            return Err(ApiError::invalid_argument(
                "totp_code",
                "exactly one proof is required: totp_code, recovery_code or passkey_assertion_json",
            ));
        }
        Ok(if !self.totp_code.trim().is_empty() {
            SecondFactor::Code(FactorProof::Totp(self.totp_code.clone()))
        } else if !self.recovery_code.trim().is_empty() {
            SecondFactor::Code(FactorProof::RecoveryCode(self.recovery_code.clone()))
        } else {
            SecondFactor::Passkey(self.passkey_assertion_json.clone())
        })
    }
}

/// `amr` additions of a code proof.
pub(crate) const CODE_AMR: [&str; 2] = [amr::OTP, amr::MFA];
/// `amr` additions of a passkey proof.
pub(crate) const PASSKEY_AMR: [&str; 2] = [amr::HARDWARE_KEY, amr::MFA];

impl App {
    /// The proofs `user_id` can give to a challenge: TOTP with an authenticator app, a recovery
    /// code while unused ones remain, a passkey with a passkey factor. The passkey part adds its
    /// request options where it opens the challenge.
    pub(crate) async fn challenge_methods<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<Vec<MfaMethod>> {
        let factors = self.active_factors(db, user_id).await?;
        let mut methods = Vec::new();
        if factors.iter().any(|f| f.kind == KIND_TOTP) {
            methods.push(MfaMethod::Totp);
        }
        if factors.iter().any(|f| f.kind == KIND_PASSKEY) {
            methods.push(MfaMethod::Passkey);
        }
        if !factors.is_empty() && self.unused_recovery_codes(db, user_id).await? > 0 {
            methods.push(MfaMethod::RecoveryCode);
        }
        Ok(methods)
    }

    /// Opens a challenge for `user_id` in `txn`: for a sign-in (`session_id` `None`, carrying
    /// the sign-in's `risk`) or a step-up of that session. With a passkey among the user's
    /// factors, the challenge keeps the sealed state of a passkey ceremony and answers its
    /// request options.
    pub(crate) async fn open_challenge<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        session_id: Option<&str>,
        risk: &[&str],
    ) -> ApiResult<IssuedChallenge> {
        let id = crypto::random_token("mfac_");
        let now = self.now_ms();
        let expire_time_ms = now + CHALLENGE_TTL_MS;
        let mut methods = self.challenge_methods(txn, user_id).await?;
        let passkey = if methods.contains(&MfaMethod::Passkey) {
            self.passkey_request_options(user_id).await?
        } else {
            None
        };
        if passkey.is_none() {
            methods.retain(|m| *m != MfaMethod::Passkey);
        }
        let (options, state) = passkey.unzip();
        mfa_challenge::ActiveModel {
            id_hash: Set(sha256_hex(&id)),
            user_id: Set(user_id.to_owned()),
            session_id: Set(session_id.map(str::to_owned)),
            risk: Set(join_signals(risk)),
            passkey_state_sealed: Set(state),
            failures: Set(0),
            create_time_ms: Set(now),
            expire_time_ms: Set(expire_time_ms),
            used_time_ms: Set(None),
            sign_in_amr: Set(String::new()),
        }
        .insert(txn)
        .await?;
        Ok(IssuedChallenge {
            id,
            methods,
            expire_time_ms,
            passkey_request_options_json: options.unwrap_or_default(),
        })
    }

    /// The answer to a passkey proof that cannot be checked: the user has no passkey
    /// (FAILED_PRECONDITION `MFA_NOT_ENROLLED`), or passkeys are not configured here.
    pub(crate) async fn passkey_proof_unavailable<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<ApiError> {
        let has_passkey = self
            .active_factors(db, user_id)
            .await?
            .iter()
            .any(|f| f.kind == KIND_PASSKEY);
        Ok(if has_passkey {
            ApiError::failed_precondition(
                Reason::PasskeysNotConfigured,
                "passkey",
                "passkeys are not configured on this server; use a code",
            )
        } else {
            Error::MfaNotEnrolled("you have no passkey enrolled; use another proof").into()
        })
    }

    /// Whether `assertion` (a passkey's `PublicKeyCredential` JSON) verifies against a
    /// challenge's sealed ceremony `state`, in `txn` (which also advances the credential's
    /// signature counter). A refused assertion is `false`; other failures are errors.
    async fn check_passkey_proof<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        state: &str,
        assertion: &str,
    ) -> ApiResult<bool> {
        let Some(passkeys) = &self.passkeys else {
            return Ok(false);
        };
        match passkeys
            .verify_assertion(txn, user_id, state, assertion, self.now_ms())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.reason() == ApiError::from(Error::InvalidMfaCode).reason() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Counts a wrong proof against challenge `id_hash` (ending it at the fifth), against the
    /// sign-in budgets of `attempt` (rule ID-3) and the account's recent failures (rule ID-12).
    async fn challenge_failed(
        &self,
        id_hash: &str,
        user_id: &str,
        attempt: SignInAttempt<'_>,
    ) -> ApiResult<()> {
        mfa_challenge::Entity::update_many()
            .col_expr(
                mfa_challenge::Column::Failures,
                Expr::col(mfa_challenge::Column::Failures).add(1),
            )
            .filter(mfa_challenge::Column::IdHash.eq(id_hash))
            .filter(mfa_challenge::Column::UsedTimeMs.is_null())
            .exec(&self.db)
            .await?;
        mfa_challenge::Entity::update_many()
            .col_expr(
                mfa_challenge::Column::UsedTimeMs,
                Expr::value(self.now_ms()),
            )
            .filter(mfa_challenge::Column::IdHash.eq(id_hash))
            .filter(mfa_challenge::Column::UsedTimeMs.is_null())
            .filter(mfa_challenge::Column::Failures.gte(CHALLENGE_MAX_FAILURES))
            .exec(&self.db)
            .await?;
        self.proof_failed(attempt, Some(user_id)).await
    }

    /// VerifyMfaChallenge (rule ID-11): the session's tokens (a new session for a sign-in, the
    /// renewed one for a step-up) and the user.
    pub async fn verify_mfa_challenge(
        &self,
        call: &Call,
        answer: &ChallengeAnswer,
    ) -> ApiResult<(Tokens, user::Model)> {
        check_token_input("challenge_id", &answer.challenge_id)?;
        let proof = answer.proof()?;
        let id_hash = sha256_hex(&answer.challenge_id);
        let now = self.now_ms();
        let live = |c: &mfa_challenge::Model| {
            c.used_time_ms.is_none()
                && c.expire_time_ms > now
                && c.failures < CHALLENGE_MAX_FAILURES
        };
        let challenge = mfa_challenge::Entity::find_by_id(id_hash.clone())
            .one(&self.db)
            .await?
            .filter(live)
            .ok_or(Error::MfaChallengeInvalid)?;
        let step_up = match &challenge.session_id {
            None => None,
            Some(sid) => {
                let me = call.principal.require_user()?;
                if me.user_id != challenge.user_id || &me.session_id != sid {
                    return Err(Error::MfaChallengeInvalid.into());
                }
                Some(me.clone())
            }
        };
        let u = user::Entity::find_by_id(challenge.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or(Error::MfaChallengeInvalid)?;
        let account = match step_up {
            None => u.email_key.clone(),
            Some(_) => format!("user:{}", u.id),
        };
        let attempt = self.begin_sign_in(call, &account, &u.id).await?;
        if matches!(proof, SecondFactor::Passkey(_)) && challenge.passkey_state_sealed.is_none() {
            return Err(self.passkey_proof_unavailable(&self.db, &u.id).await?);
        }
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let claimed = mfa_challenge::Entity::update_many()
            .col_expr(mfa_challenge::Column::UsedTimeMs, Expr::value(now))
            .filter(mfa_challenge::Column::IdHash.eq(&id_hash))
            .filter(mfa_challenge::Column::UsedTimeMs.is_null())
            .filter(mfa_challenge::Column::ExpireTimeMs.gt(now))
            .filter(mfa_challenge::Column::Failures.lt(CHALLENGE_MAX_FAILURES))
            .exec(&*unit)
            .await?;
        if claimed.rows_affected != 1 {
            return Err(Error::MfaChallengeInvalid.into());
        }
        let (proven, factor_amr) = match &proof {
            SecondFactor::Code(code) => (
                self.check_factor_proof(&*unit, &u.id, code).await?,
                CODE_AMR,
            ),
            SecondFactor::Passkey(assertion) => (
                self.check_passkey_proof(
                    &*unit,
                    &u.id,
                    challenge
                        .passkey_state_sealed
                        .as_deref()
                        .unwrap_or_default(),
                    assertion,
                )
                .await?,
                PASSKEY_AMR,
            ),
        };
        if !proven {
            drop(unit);
            self.challenge_failed(&id_hash, &u.id, attempt).await?;
            return Err(Error::InvalidMfaCode.into());
        }
        let address = self.peer_key(call);
        let tokens = match step_up {
            Some(me) => {
                let tokens = self.renew_session(&*unit, &me, &factor_amr).await?;
                self.audit
                    .write(
                        &*unit,
                        call,
                        Entry::new("", "session.reauthenticate", "session", &me.session_id),
                    )
                    .await?;
                tokens
            }
            None => {
                let mut risk = split_signals(&challenge.risk);
                if self.had_recent_failures(&*unit, &u.id).await?
                    && !risk.iter().any(|r| r == signal::RECENT_FAILURES)
                {
                    risk.push(signal::RECENT_FAILURES.to_owned());
                }
                let risk: Vec<&str> = risk.iter().map(String::as_str).collect();
                // The first factor: a password, or the SSO sign-in that opened the challenge.
                let first = split_signals(&challenge.sign_in_amr);
                let mut methods: Vec<&str> = if first.is_empty() {
                    vec![amr::PASSWORD]
                } else {
                    first.iter().map(String::as_str).collect()
                };
                methods.extend(factor_amr);
                let (tokens, session_id) = self
                    .start_session(&mut unit, &u.id, &methods, &risk)
                    .await?;
                self.audit
                    .write(
                        &*unit,
                        &as_user(call, &u.id),
                        Entry::new("", "session.create", "session", &session_id),
                    )
                    .await?;
                tokens
            }
        };
        self.record_sign_in_address(&*unit, &u.id, &address).await?;
        attempt.succeeded(&*unit).await?;
        unit.commit().await?;
        Ok((tokens, u))
    }
}
