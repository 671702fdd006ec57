//! Sessions and their tokens (rules ID-3, ID-4): Login with the sign-in budgets, Refresh with
//! rotation and reuse detection, Logout, and the revocation of ended sessions that every
//! verifier learns from `SessionsRevoked`.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::{Claims, USER_AUDIENCE};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::revocation;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::events::v1::SessionsRevoked;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QuerySelect, Set};

use orgplane_platform::policy::amr;

use super::challenge::IssuedChallenge;
use super::risk::{ADDRESS_MEMORY_MS, join_signals, split_signals};
use super::{ACCESS_TOKEN_TTL_SECS, App, REFRESH_TOKEN_TTL, SESSION_TTL, as_user, count, new_id};
use crate::crypto::{self, sha256_hex};
use crate::domain::Error;
use crate::domain::validation::{check_token_input, normalize_email};
use crate::store::entity::{refresh_token, session, user};
use crate::throttle::sign_in::SignInAttempt;

/// Sessions ended by a write unit, published in it: announced to this process's verifiers once
/// it committed ([`App::announce_revoked`]).
#[derive(Debug)]
#[must_use = "announce the ended sessions after the commit"]
pub(crate) struct EndedSessions(Option<SessionsRevoked>);

/// How a Login ended (rule ID-11).
#[derive(Debug, Clone)]
pub enum SignInOutcome {
    /// Signed in.
    Tokens {
        /// The new session's tokens.
        tokens: Tokens,
        /// Organizations whose policy requires a second factor the user has not enrolled
        /// (rule ORG-16).
        enrollment_required: Vec<String>,
    },
    /// A second factor is needed: complete the challenge with VerifyMfaChallenge.
    Challenge(IssuedChallenge),
}

/// A Login's user and outcome.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user whose password was proven.
    pub user: user::Model,
    /// Tokens or a challenge.
    pub outcome: SignInOutcome,
}

/// `current` (space-separated RFC 8176 methods) with `added`, in a stable order.
pub(crate) fn merge_amr(current: &str, added: &[&str]) -> String {
    const ORDER: [&str; 6] = [
        amr::PASSWORD,
        amr::EXTERNAL,
        crate::domain::sso::SSO_AMR,
        amr::OTP,
        amr::HARDWARE_KEY,
        amr::MFA,
    ];
    let mut all: Vec<&str> = current
        .split_whitespace()
        .chain(added.iter().copied())
        .collect();
    all.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
    all.dedup();
    all.join(" ")
}

/// The tokens of a session.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token (EdDSA JWT).
    pub access_token: String,
    /// When it expires, Unix seconds.
    pub access_expire_secs: i64,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// When it expires, Unix milliseconds.
    pub refresh_expire_ms: i64,
    /// The session.
    pub session_id: String,
}

impl App {
    /// The ids of the user's sessions not yet ended (all, or only `only`).
    pub(crate) async fn active_sessions<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        only: Option<&str>,
    ) -> ApiResult<Vec<String>> {
        let mut q = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedTimeMs.is_null());
        if let Some(id) = only {
            q = q.filter(session::Column::Id.eq(id));
        }
        Ok(q.into_tuple().all(txn).await?)
    }

    /// Ends the user's sessions (all, or only `only`); returns the ids of those that were still
    /// active, for [`Self::publish_revoked`].
    pub(crate) async fn revoke_sessions<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        only: Option<&str>,
    ) -> ApiResult<Vec<String>> {
        let ended = self.active_sessions(txn, user_id, only).await?;
        // By id: a session started concurrently is not ended by a revocation it did not see.
        for chunk in ended.chunks(500) {
            session::Entity::update_many()
                .col_expr(session::Column::RevokedTimeMs, Expr::value(self.now_ms()))
                .filter(session::Column::Id.is_in(chunk.iter().cloned()))
                .filter(session::Column::RevokedTimeMs.is_null())
                .exec(txn)
                .await?;
        }
        let mut del =
            refresh_token::Entity::delete_many().filter(refresh_token::Column::UserId.eq(user_id));
        if let Some(id) = only {
            del = del.filter(refresh_token::Column::SessionId.eq(id));
        }
        // Rotated tokens of a revoked session are kept so that reuse is still recognised;
        // unrotated ones are useless once the session ended.
        del.filter(refresh_token::Column::Rotated.eq(false))
            .exec(txn)
            .await?;
        Ok(ended)
    }

    /// Records the end of `session_ids` for every verifier (rule ID-4): revocation rows and
    /// `SessionsRevoked`, in `unit`, the write that ended them. Call it after the unit's other
    /// writes; pass the result to [`Self::announce_revoked`] after the commit.
    pub(crate) async fn publish_revoked(
        &self,
        unit: &mut WriteUnit,
        user_id: &str,
        session_ids: Vec<String>,
    ) -> ApiResult<EndedSessions> {
        if session_ids.is_empty() {
            return Ok(EndedSessions(None));
        }
        let event = revocation::sessions_revoked(user_id, session_ids);
        revocation::record(&**unit, &event).await?;
        unit.append(Payload::SessionsRevoked(event.clone())).await?;
        Ok(EndedSessions(Some(event)))
    }

    /// After the commit of [`Self::publish_revoked`]'s unit: this process refuses the sessions'
    /// tokens at once.
    pub(crate) fn announce_revoked(&self, published: EndedSessions) {
        if let EndedSessions(Some(event)) = published {
            self.revocations.remember(&event);
        }
    }

    async fn issue_refresh<C: ConnectionTrait>(
        &self,
        txn: &C,
        s: &session::Model,
    ) -> ApiResult<(String, i64)> {
        let token = crypto::random_token("opr_");
        let now = self.now_ms();
        let expire = (now + REFRESH_TOKEN_TTL.num_milliseconds()).min(s.expire_time_ms);
        refresh_token::ActiveModel {
            token_hash: Set(sha256_hex(&token)),
            session_id: Set(s.id.clone()),
            user_id: Set(s.user_id.clone()),
            create_time_ms: Set(now),
            expire_time_ms: Set(expire),
            rotated: Set(false),
        }
        .insert(txn)
        .await?;
        Ok((token, expire))
    }

    fn access_token(&self, s: &session::Model, mfa_enrolled: bool) -> ApiResult<(String, i64)> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + ACCESS_TOKEN_TTL_SECS;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: s.user_id.clone(),
            aud: USER_AUDIENCE.to_owned(),
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: Some(s.auth_time),
            sid: Some(s.id.clone()),
            amr: split_signals(&s.amr),
            mfa_enrolled,
            risk: split_signals(&s.risk),
            scope: None,
        };
        Ok((self.keys.signer().sign(&claims)?, exp))
    }

    /// A new refresh token (in `txn`) and access token for session `s`: the token carries the
    /// session's `amr` and `risk`, and whether the user has an active factor now (rule ID-11).
    pub(crate) async fn tokens_for<C: ConnectionTrait>(
        &self,
        txn: &C,
        s: &session::Model,
    ) -> ApiResult<Tokens> {
        let (refresh_token, refresh_expire_ms) = self.issue_refresh(txn, s).await?;
        let mfa_enrolled = self.has_active_factor(txn, &s.user_id).await?;
        let (access_token, access_expire_secs) = self.access_token(s, mfa_enrolled)?;
        Ok(Tokens {
            access_token,
            access_expire_secs,
            refresh_token,
            refresh_expire_ms,
            session_id: s.id.clone(),
        })
    }

    /// Starts a session of `user_id` in `unit`, signed in with `methods` (`amr`) and carrying
    /// the sign-in's `risk` signals; returns its tokens and id.
    pub(crate) async fn start_session(
        &self,
        unit: &mut WriteUnit,
        user_id: &str,
        methods: &[&str],
        risk: &[&str],
    ) -> ApiResult<(Tokens, String)> {
        let now = self.clock.now();
        let s = session::Model {
            id: new_id("sess"),
            user_id: user_id.to_owned(),
            auth_time: chrono::Utc::now().timestamp(),
            create_time_ms: now.timestamp_millis(),
            expire_time_ms: (now + SESSION_TTL).timestamp_millis(),
            revoked_time_ms: None,
            amr: merge_amr("", methods),
            risk: join_signals(risk),
        };
        session::ActiveModel::from(s.clone())
            .insert(&**unit)
            .await?;
        let tokens = self.tokens_for(&**unit, &s).await?;
        Ok((tokens, s.id))
    }

    /// Takes one attempt from the peer's and the account's sign-in budgets before the proof is
    /// checked (rule ID-3), shared by every replica through the database: attempts in flight
    /// count, so that a burst of concurrent guesses cannot all pass the check before the first
    /// failure is recorded. From an address `user_id` signed in from lately, the account's
    /// budget is that address's own, so that guesses from elsewhere do not lock the owner out
    /// (`user_id` empty for an unknown account, which costs the same). Say how it ended:
    /// [`Self::proof_failed`], or [`SignInAttempt::succeeded`] in the sign-in's write.
    pub(crate) async fn begin_sign_in(
        &self,
        call: &Call,
        account: &str,
        user_id: &str,
    ) -> ApiResult<SignInAttempt<'_>> {
        let now = self.now_ms();
        let known = (user_id, now - ADDRESS_MEMORY_MS);
        self.throttles
            .sign_in
            .begin(&self.db, now, &self.peer_key(call), account, known)
            .await
    }

    /// A wrong password or second-factor proof: a failure against the budgets `attempt` drew
    /// on (rule ID-3) and, for a user, one of their recent failures (rule ID-12). Each in a
    /// write of its own, so that it stays when the request fails.
    pub(crate) async fn proof_failed(
        &self,
        attempt: SignInAttempt<'_>,
        user_id: Option<&str>,
    ) -> ApiResult<()> {
        attempt.failed(&self.db, self.now_ms()).await?;
        if let Some(user_id) = user_id {
            self.record_sign_in_failure(user_id).await?;
        }
        Ok(())
    }

    /// Login (rules ID-3, ID-11, ID-12): tokens, or an MFA challenge for a user with an active
    /// factor.
    pub async fn login(&self, call: &Call, email: &str, password: &str) -> ApiResult<SignedIn> {
        if email.trim().is_empty() {
            return Err(ApiError::invalid_argument("email", "required"));
        }
        if password.is_empty() {
            return Err(ApiError::invalid_argument("password", "required"));
        }
        let key = normalize_email("email", email)
            .map(|(_, k)| k)
            .unwrap_or_else(|_| email.trim().to_lowercase());
        // Rule ID-13: before the budget and any password check, the same for unknown addresses.
        self.refuse_password_sign_in(&key).await?;
        let found = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&key))
            .one(&self.db)
            .await?;
        let attempt = self
            .begin_sign_in(call, &key, found.as_ref().map_or("", |u| u.id.as_str()))
            .await?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.as_str())
            .unwrap_or("");
        // Oversized passwords are never hashed; they cannot be right.
        let ok = if password.len() > crypto::MAX_PASSWORD_BYTES {
            false
        } else {
            self.hasher.verify(password, hash).await?
        };
        let u = match found {
            Some(u) if ok => u,
            wrong => {
                self.proof_failed(attempt, wrong.as_ref().map(|u| u.id.as_str()))
                    .await?;
                return Err(Error::InvalidCredentials.into());
            }
        };
        let address = self.peer_key(call);
        let risk = self.sign_in_risk(&self.db, &u.id, &address).await?;
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        if self.has_active_factor(&*unit, &u.id).await? {
            let challenge = self.open_challenge(&*unit, &u.id, None, &risk).await?;
            self.audit
                .write(
                    &*unit,
                    &as_user(call, &u.id),
                    Entry::new("", "session.mfa_challenge", "user", &u.id),
                )
                .await?;
            unit.commit().await?;
            // The account's budget is cleared only once the factor is proven: wrong codes
            // keep counting (rule ID-3).
            drop(attempt);
            return Ok(SignedIn {
                user: u,
                outcome: SignInOutcome::Challenge(challenge),
            });
        }
        let (tokens, session_id) = self
            .start_session(&mut unit, &u.id, &[amr::PASSWORD], &risk)
            .await?;
        self.record_sign_in_address(&*unit, &u.id, &address).await?;
        attempt.succeeded(&*unit).await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &u.id),
                Entry::new("", "session.create", "session", &session_id),
            )
            .await?;
        unit.commit().await?;
        let enrollment_required = self
            .replica
            .organizations_of(&u.id)
            .into_iter()
            .filter(|(org, role)| self.replica.policy(org).requires_mfa(Some(*role)))
            .map(|(org, _)| org)
            .collect();
        Ok(SignedIn {
            user: u,
            outcome: SignInOutcome::Tokens {
                tokens,
                enrollment_required,
            },
        })
    }

    /// Refresh: rotates the refresh token (rule ID-4).
    pub async fn refresh(&self, call: &Call, token: &str) -> ApiResult<Tokens> {
        check_token_input("refresh_token", token)?;
        let hash = sha256_hex(token);
        let row = refresh_token::Entity::find_by_id(hash.clone())
            .one(&self.db)
            .await?
            .ok_or(Error::RefreshTokenInvalid)?;
        if row.rotated {
            return Err(self.refresh_reused(call, &row).await);
        }
        let now = self.now_ms();
        if row.expire_time_ms <= now {
            return Err(Error::RefreshTokenInvalid.into());
        }
        let s = session::Entity::find_by_id(row.session_id.clone())
            .one(&self.db)
            .await?
            .filter(|s| s.revoked_time_ms.is_none() && s.expire_time_ms > now)
            .ok_or(Error::RefreshTokenInvalid)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let rotated = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::Rotated, Expr::value(true))
            .filter(refresh_token::Column::TokenHash.eq(&hash))
            .filter(refresh_token::Column::Rotated.eq(false))
            .exec(&*unit)
            .await?;
        if rotated.rows_affected != 1 {
            drop(unit);
            return Err(self.refresh_reused(call, &row).await);
        }
        let tokens = self.tokens_for(&*unit, &s).await?;
        self.audit
            .write(
                &*unit,
                &as_user(call, &s.user_id),
                Entry::new("", "session.refresh", "session", &s.id),
            )
            .await?;
        unit.commit().await?;
        Ok(tokens)
    }

    /// A rotated refresh token came back: end its session (rule ID-4).
    async fn refresh_reused(&self, call: &Call, row: &refresh_token::Model) -> ApiError {
        let revoke = async {
            let mut unit = WriteUnit::begin(&self.outbox, call).await?;
            let ended = self
                .revoke_sessions(&*unit, &row.user_id, Some(&row.session_id))
                .await?;
            self.audit
                .write(
                    &*unit,
                    call,
                    Entry::new("", "session.revoke_on_reuse", "session", &row.session_id),
                )
                .await?;
            let published = self.publish_revoked(&mut unit, &row.user_id, ended).await?;
            unit.commit().await?;
            self.announce_revoked(published);
            Ok::<(), ApiError>(())
        };
        if let Err(e) = revoke.await {
            return e;
        }
        tracing::warn!(session_id = %row.session_id, "refresh token reused; session revoked");
        Error::RefreshTokenReused.into()
    }

    /// Logout: the number of sessions ended (the one of `refresh`, or the caller's, or all).
    pub async fn logout(&self, call: &Call, refresh: &str, all: bool) -> ApiResult<i32> {
        let (user_id, session_id) = if refresh.is_empty() {
            let u = call.principal.require_user()?;
            (u.user_id.clone(), u.session_id.clone())
        } else {
            check_token_input("refresh_token", refresh)?;
            let row = refresh_token::Entity::find_by_id(sha256_hex(refresh))
                .one(&self.db)
                .await?
                .ok_or(Error::RefreshTokenInvalid)?;
            (row.user_id, row.session_id)
        };
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let ended = self
            .revoke_sessions(&*unit, &user_id, (!all).then_some(session_id.as_str()))
            .await?;
        let (action, resource) = if all {
            ("session.revoke_all", &user_id)
        } else {
            ("session.revoke", &session_id)
        };
        self.audit
            .write(
                &*unit,
                &as_user(call, &user_id),
                Entry::new("", action, "session", resource),
            )
            .await?;
        let n = count(ended.len());
        let published = self.publish_revoked(&mut unit, &user_id, ended).await?;
        unit.commit().await?;
        self.announce_revoked(published);
        Ok(n)
    }
}
