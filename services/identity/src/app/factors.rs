//! Second factors (rule ID-10): TOTP enrollment, listing and removal, recovery codes, and the
//! checks of factor proofs that sign-in (rule ID-11) and step-up (rule ID-12) share. Every change
//! needs a recent sign-in through the platform's one step-up check, and is audited with ids and
//! kinds only. TOTP secrets are sealed at rest (associated data: the factor id); recovery codes
//! are stored as digests; a TOTP step is accepted at most once per user, in the database, so
//! that neither a restart nor a second replica reopens it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::{Principal, UserPrincipal};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::policy::{SecurityPolicy, StepUp, amr, require_recent_sign_in};
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::identity::v1::MfaFactorState;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, Set, Statement};

use super::sessions::Tokens;
use super::{App, count, new_id};
use crate::domain::Error;
use crate::domain::mfa::{
    RECOVERY_CODE_COUNT, new_recovery_code, new_totp_secret, normalize_recovery_code, otpauth_uri,
    recovery_code_hash, totp_matching_step, totp_secret_base32,
};
use crate::domain::validation::check_display_name;
use crate::store::entity::{mfa_factor, recovery_code, user};

/// The most factors (ACTIVE and unexpired PENDING) a user may have.
pub const MAX_FACTORS: usize = 10;
/// How long a PENDING factor waits for its confirmation (10 minutes).
pub const PENDING_FACTOR_TTL_MS: i64 = 10 * 60 * 1000;
/// `mfa_factors.kind` of an authenticator app.
pub const KIND_TOTP: &str = "totp";
/// `mfa_factors.kind` of a passkey.
pub const KIND_PASSKEY: &str = "passkey";
/// The label of a TOTP factor when none is given.
const DEFAULT_TOTP_NAME: &str = "Authenticator app";

pub(crate) const PENDING: i32 = MfaFactorState::Pending as i32;
pub(crate) const ACTIVE: i32 = MfaFactorState::Active as i32;

/// A second-factor proof offered at sign-in or step-up.
#[derive(Clone)]
pub enum FactorProof {
    /// A TOTP code.
    Totp(String),
    /// A recovery code (used up when it matches).
    RecoveryCode(String),
}

impl std::fmt::Debug for FactorProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FactorProof::Totp(_) => "Totp(..)",
            FactorProof::RecoveryCode(_) => "RecoveryCode(..)",
        })
    }
}

/// A TOTP enrollment just started: the PENDING factor, its secret (base32) and `otpauth://`
/// URI, shown this once.
#[derive(Clone)]
pub struct StartedTotp {
    /// The PENDING factor.
    pub factor: mfa_factor::Model,
    /// The secret, base32 without padding.
    pub secret: String,
    /// The Key URI for a QR code.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for StartedTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedTotp")
            .field("factor", &self.factor.id)
            .finish_non_exhaustive()
    }
}

/// A factor just confirmed: the ACTIVE factor, recovery codes (with the first factor only) and
/// the caller's renewed tokens.
#[derive(Clone)]
pub struct ConfirmedFactor {
    /// The factor, now ACTIVE.
    pub factor: mfa_factor::Model,
    /// 10 codes with the user's first factor; empty otherwise.
    pub recovery_codes: Vec<String>,
    /// The session's tokens, signed in with a second factor.
    pub tokens: Tokens,
}

impl std::fmt::Debug for ConfirmedFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmedFactor")
            .field("factor", &self.factor.id)
            .finish_non_exhaustive()
    }
}

/// The audit entry of a factor change, whatever its kind: ids, type and state only.
pub(crate) fn factor_entry(action: &str, factor: &mfa_factor::Model) -> Entry {
    let state = if factor.state == ACTIVE {
        "MFA_FACTOR_STATE_ACTIVE"
    } else {
        "MFA_FACTOR_STATE_PENDING"
    };
    Entry::new("", action, "mfa_factor", &factor.id).with_details(serde_json::json!({
        "id": factor.id,
        "userId": factor.user_id,
        "type": factor.kind,
        "state": state,
    }))
}

impl App {
    /// The signed-in caller, when their sign-in is recent and safe enough to change their own
    /// factors (rules ID-6, ID-10, ID-12): the platform's one step-up check, under a policy that
    /// requires a second factor from a user who has an active one (as the database says now,
    /// not only as the token said at issue).
    pub(crate) async fn require_factor_step_up(&self, call: &Call) -> ApiResult<UserPrincipal> {
        let mut user = call.principal.require_user()?.clone();
        user.sign_in.mfa_enrolled |= self.has_active_factor(&self.db, &user.user_id).await?;
        let policy = SecurityPolicy::own_account(&user, self.step_up.num_seconds());
        let principal = Principal::User(user);
        require_recent_sign_in(
            &principal,
            StepUp {
                policy: &policy,
                role: None,
                organization_id: None,
            },
            chrono::Utc::now().timestamp(),
        )
        .cloned()
    }

    /// Whether `user_id` has an ACTIVE factor (the tokens' `mfa_enrolled`).
    pub(crate) async fn has_active_factor<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<bool> {
        Ok(mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .one(db)
            .await?
            .is_some())
    }

    /// The ACTIVE factors of `user_id`, oldest first.
    pub(crate) async fn active_factors<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<Vec<mfa_factor::Model>> {
        Ok(mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .order_by_asc(mfa_factor::Column::CreateTimeMs)
            .all(db)
            .await?)
    }

    /// How many unused recovery codes `user_id` has.
    pub(crate) async fn unused_recovery_codes<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<u64> {
        Ok(recovery_code::Entity::find()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .filter(recovery_code::Column::UsedTimeMs.is_null())
            .count(db)
            .await?)
    }

    fn seal_secret(&self, secret: &[u8], factor_id: &str) -> ApiResult<String> {
        Ok(STANDARD.encode(self.sealer.seal(secret, factor_id)?))
    }

    fn open_secret(&self, factor: &mfa_factor::Model) -> ApiResult<Vec<u8>> {
        let sealed = factor
            .secret_sealed
            .as_deref()
            .ok_or_else(|| ApiError::internal(format!("factor {} has no secret", factor.id)))?;
        let bytes = STANDARD.decode(sealed).map_err(ApiError::internal)?;
        self.sealer
            .open(&bytes, &factor.id)
            .map_err(|e| ApiError::internal(format!("factor {}: {e}", factor.id)))
    }

    /// Accepts TOTP step `step` for `user_id` when it is later than the last step the user
    /// used: one conditional write, so that concurrent requests, a restart or another replica on
    /// the same database cannot accept a step twice (rule ID-10).
    async fn claim_totp_step<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        step: i64,
    ) -> ApiResult<bool> {
        let done = txn
            .execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "INSERT INTO totp_steps (user_id, last_step) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET last_step = excluded.last_step \
                 WHERE totp_steps.last_step < excluded.last_step",
                [user_id.into(), step.into()],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `code` is a current, unused code of one of `factors` (all of `user_id`); on
    /// success the step is used up and the factor's last use recorded, in `txn`.
    async fn check_totp<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        factors: &[mfa_factor::Model],
        code: &str,
    ) -> ApiResult<bool> {
        let now = self.clock.now();
        for factor in factors.iter().filter(|f| f.kind == KIND_TOTP) {
            let secret = self.open_secret(factor)?;
            let Some(step) = totp_matching_step(&secret, code, now.timestamp())? else {
                continue;
            };
            if !self.claim_totp_step(txn, user_id, step).await? {
                return Ok(false);
            }
            mfa_factor::Entity::update_many()
                .col_expr(
                    mfa_factor::Column::LastUsedTimeMs,
                    Expr::value(now.timestamp_millis()),
                )
                .filter(mfa_factor::Column::Id.eq(&factor.id))
                .exec(txn)
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Uses up one of `user_id`'s recovery codes: one conditional update, so a code works once.
    async fn consume_recovery_code<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        code: &str,
    ) -> ApiResult<bool> {
        let Some(normalized) = normalize_recovery_code(code) else {
            return Ok(false);
        };
        let used = recovery_code::Entity::update_many()
            .col_expr(
                recovery_code::Column::UsedTimeMs,
                Expr::value(self.now_ms()),
            )
            .filter(recovery_code::Column::UserId.eq(user_id))
            .filter(recovery_code::Column::CodeHash.eq(recovery_code_hash(&normalized)))
            .filter(recovery_code::Column::UsedTimeMs.is_null())
            .exec(txn)
            .await?;
        Ok(used.rows_affected == 1)
    }

    /// Checks a second-factor proof of `user_id` in `txn` (using it up when right): `Ok(false)`
    /// for a wrong, stale or reused code; FAILED_PRECONDITION `MFA_NOT_ENROLLED` when the user
    /// has no factor of that kind.
    pub(crate) async fn check_factor_proof<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        proof: &FactorProof,
    ) -> ApiResult<bool> {
        let factors = self.active_factors(txn, user_id).await?;
        match proof {
            FactorProof::Totp(code) => {
                if !factors.iter().any(|f| f.kind == KIND_TOTP) {
                    return Err(Error::MfaNotEnrolled(
                        "you have no authenticator app enrolled; use another proof",
                    )
                    .into());
                }
                self.check_totp(txn, user_id, &factors, code).await
            }
            FactorProof::RecoveryCode(code) => {
                if factors.is_empty() || self.unused_recovery_codes(txn, user_id).await? == 0 {
                    return Err(Error::MfaNotEnrolled(
                        "you have no unused recovery codes; use another proof",
                    )
                    .into());
                }
                self.consume_recovery_code(txn, user_id, code).await
            }
        }
    }

    /// Replaces `user_id`'s recovery codes with [`RECOVERY_CODE_COUNT`] new ones, in `txn`;
    /// returns them (the only time they exist in plain text).
    pub(crate) async fn issue_recovery_codes<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
    ) -> ApiResult<Vec<String>> {
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .exec(txn)
            .await?;
        let now = self.now_ms();
        let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        while codes.len() < RECOVERY_CODE_COUNT {
            let code = new_recovery_code();
            if codes.contains(&code) {
                continue;
            }
            let normalized = normalize_recovery_code(&code)
                .ok_or_else(|| ApiError::internal("a new recovery code does not normalize"))?;
            recovery_code::ActiveModel {
                user_id: Set(user_id.to_owned()),
                code_hash: Set(recovery_code_hash(&normalized)),
                create_time_ms: Set(now),
                used_time_ms: Set(None),
            }
            .insert(txn)
            .await?;
            codes.push(code);
        }
        Ok(codes)
    }

    /// Makes the caller's PENDING factor `factor_id` ACTIVE in `txn` (NOT_FOUND when it is not
    /// theirs, not pending or expired), issues recovery codes when it is their first active
    /// factor, renews the caller's session with `methods` (e.g. `otp`) and `mfa` in its `amr`,
    /// and audits the change. Shared by every kind of factor.
    pub(crate) async fn activate_factor(
        &self,
        unit: &WriteUnit,
        call: &Call,
        user: &UserPrincipal,
        factor_id: &str,
        methods: &[&str],
    ) -> ApiResult<ConfirmedFactor> {
        let now = self.now_ms();
        let activated = mfa_factor::Entity::update_many()
            .col_expr(mfa_factor::Column::State, Expr::value(ACTIVE))
            .col_expr(
                mfa_factor::Column::ExpireTimeMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(mfa_factor::Column::LastUsedTimeMs, Expr::value(now))
            .filter(mfa_factor::Column::Id.eq(factor_id))
            .filter(mfa_factor::Column::UserId.eq(&user.user_id))
            .filter(mfa_factor::Column::State.eq(PENDING))
            .filter(mfa_factor::Column::ExpireTimeMs.gt(now))
            .exec(&**unit)
            .await?;
        if activated.rows_affected != 1 {
            return Err(ApiError::not_found("mfa_factor", factor_id));
        }
        let factor = mfa_factor::Entity::find_by_id(factor_id.to_owned())
            .one(&**unit)
            .await?
            .ok_or_else(|| ApiError::not_found("mfa_factor", factor_id))?;
        let first = self.active_factors(&**unit, &user.user_id).await?.len() == 1;
        let recovery_codes = if first {
            self.issue_recovery_codes(&**unit, &user.user_id).await?
        } else {
            Vec::new()
        };
        let mut added = methods.to_vec();
        added.push(amr::MFA);
        let tokens = self.renew_session(&**unit, user, &added).await?;
        self.audit
            .write(&**unit, call, factor_entry("mfa_factor.activate", &factor))
            .await?;
        Ok(ConfirmedFactor {
            factor,
            recovery_codes,
            tokens,
        })
    }

    /// Deletes `user_id`'s expired PENDING factors and counts the rest, in `txn`:
    /// RESOURCE_EXHAUSTED `MFA_FACTOR_LIMIT` when a new one would exceed [`MAX_FACTORS`].
    pub(crate) async fn make_room_for_factor<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
    ) -> ApiResult<()> {
        mfa_factor::Entity::delete_many()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::State.eq(PENDING))
            .filter(mfa_factor::Column::ExpireTimeMs.lte(self.now_ms()))
            .exec(txn)
            .await?;
        let held = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .count(txn)
            .await?;
        if held >= MAX_FACTORS as u64 {
            return Err(Error::MfaFactorLimit(MAX_FACTORS).into());
        }
        Ok(())
    }

    /// StartTotpEnrollment (rule ID-10).
    pub async fn start_totp_enrollment(
        &self,
        call: &Call,
        display_name: &str,
    ) -> ApiResult<StartedTotp> {
        let display_name = if display_name.trim().is_empty() {
            DEFAULT_TOTP_NAME.to_owned()
        } else {
            check_display_name("display_name", display_name)?
        };
        let me = self.require_factor_step_up(call).await?;
        let account = user::Entity::find_by_id(me.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or(Error::SessionEnded)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        self.make_room_for_factor(&*unit, &me.user_id).await?;
        let now = self.now_ms();
        let id = new_id("mfa");
        let secret = new_totp_secret();
        let factor = mfa_factor::Model {
            id: id.clone(),
            user_id: me.user_id.clone(),
            kind: KIND_TOTP.to_owned(),
            create_time_ms: now,
            display_name,
            state: PENDING,
            secret_sealed: Some(self.seal_secret(&secret, &id)?),
            passkey_sealed: None,
            credential_id: None,
            expire_time_ms: Some(now + PENDING_FACTOR_TTL_MS),
            last_used_time_ms: None,
        };
        mfa_factor::ActiveModel::from(factor.clone())
            .insert(&*unit)
            .await?;
        self.audit
            .write(&*unit, call, factor_entry("mfa_factor.create", &factor))
            .await?;
        unit.commit().await?;
        Ok(StartedTotp {
            otpauth_uri: otpauth_uri(&self.totp_issuer, &account.email, &secret)?,
            secret: totp_secret_base32(&secret),
            factor,
        })
    }

    /// ConfirmTotpEnrollment (rule ID-10). Wrong codes count against the account's budget
    /// (rule ID-3).
    pub async fn confirm_totp_enrollment(
        &self,
        call: &Call,
        factor_id: &str,
        code: &str,
    ) -> ApiResult<ConfirmedFactor> {
        if factor_id.is_empty() {
            return Err(ApiError::invalid_argument("factor_id", "required"));
        }
        if code.trim().is_empty() {
            return Err(ApiError::invalid_argument("code", "required"));
        }
        let me = self.require_factor_step_up(call).await?;
        let now = self.now_ms();
        let pending = mfa_factor::Entity::find_by_id(factor_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|f| {
                f.user_id == me.user_id
                    && f.kind == KIND_TOTP
                    && f.state == PENDING
                    && f.expire_time_ms.is_some_and(|t| t > now)
            })
            .ok_or_else(|| ApiError::not_found("mfa_factor", factor_id))?;
        let account = format!("user:{}", me.user_id);
        let attempt = self.begin_sign_in(call, &account, &me.user_id).await?;
        let secret = self.open_secret(&pending)?;
        let step = totp_matching_step(&secret, code, self.clock.now().timestamp())?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let accepted = match step {
            Some(step) => self.claim_totp_step(&*unit, &me.user_id, step).await?,
            None => false,
        };
        if !accepted {
            drop(unit);
            self.proof_failed(attempt, Some(&me.user_id)).await?;
            return Err(Error::InvalidMfaCode.into());
        }
        let confirmed = self
            .activate_factor(&unit, call, &me, factor_id, &[amr::OTP])
            .await?;
        attempt.succeeded(&*unit).await?;
        unit.commit().await?;
        Ok(confirmed)
    }

    /// ListMfaFactors: the caller's factors (ACTIVE, and PENDING ones not yet expired), oldest
    /// first, and how many recovery codes remain.
    pub async fn list_mfa_factors(&self, call: &Call) -> ApiResult<(Vec<mfa_factor::Model>, i32)> {
        let me = call.principal.require_user()?;
        let now = self.now_ms();
        let factors = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(&me.user_id))
            .order_by_asc(mfa_factor::Column::CreateTimeMs)
            .order_by_asc(mfa_factor::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .filter(|f| f.state == ACTIVE || f.expire_time_ms.is_some_and(|t| t > now))
            .collect();
        let remaining = self.unused_recovery_codes(&self.db, &me.user_id).await?;
        Ok((factors, i32::try_from(remaining).unwrap_or(i32::MAX)))
    }

    /// DeleteMfaFactor (rule ID-10): the number of ACTIVE factors left. Removing the last one
    /// also removes the recovery codes.
    pub async fn delete_mfa_factor(&self, call: &Call, factor_id: &str) -> ApiResult<i32> {
        if factor_id.is_empty() {
            return Err(ApiError::invalid_argument("factor_id", "required"));
        }
        let me = self.require_factor_step_up(call).await?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let factor = mfa_factor::Entity::find_by_id(factor_id.to_owned())
            .one(&*unit)
            .await?
            .filter(|f| f.user_id == me.user_id)
            .ok_or_else(|| ApiError::not_found("mfa_factor", factor_id))?;
        mfa_factor::Entity::delete_by_id(factor.id.clone())
            .exec(&*unit)
            .await?;
        let left = self.active_factors(&*unit, &me.user_id).await?.len();
        if left == 0 {
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::UserId.eq(&me.user_id))
                .exec(&*unit)
                .await?;
        }
        self.audit
            .write(&*unit, call, factor_entry("mfa_factor.delete", &factor))
            .await?;
        unit.commit().await?;
        Ok(count(left))
    }

    /// RegenerateRecoveryCodes (rule ID-10): 10 new codes; the previous ones stop working.
    pub async fn regenerate_recovery_codes(&self, call: &Call) -> ApiResult<Vec<String>> {
        let me = self.require_factor_step_up(call).await?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        if !self.has_active_factor(&*unit, &me.user_id).await? {
            return Err(Error::MfaNotEnrolled(
                "recovery codes come with a second factor: enroll one first",
            )
            .into());
        }
        let codes = self.issue_recovery_codes(&*unit, &me.user_id).await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new("", "mfa_recovery_codes.regenerate", "user", &me.user_id),
            )
            .await?;
        unit.commit().await?;
        Ok(codes)
    }
}
