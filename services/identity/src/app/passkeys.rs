//! Passkeys (WebAuthn) as a second factor (rule ID-10): StartPasskeyEnrollment and
//! ConfirmPasskeyEnrollment, and the two halves of a passkey proof that the MFA challenge uses
//! (rule ID-11): [`App::passkey_request_options`] (the options for the browser and the sealed
//! ceremony state) and [`App::verify_passkey_assertion`]. Ceremony states and credentials are
//! sealed at rest with identity's sealing key; a PENDING factor holds its registration state and
//! expires after 10 minutes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orgplane_platform::db::is_unique_violation;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, PaginatorTrait, QueryOrder, QuerySelect, Set};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::challenge::PASSKEY_AMR;
use super::factors::{ACTIVE, ConfirmedFactor, PENDING, PENDING_FACTOR_TTL_MS, factor_entry};
use super::{App, new_id};
use crate::Config;
use crate::crypto::Sealer;
use crate::domain::validation::{Violations, check_display_name};
use crate::store::entity::{mfa_factor, user};
use orgplane_platform::error::Reason;

/// The `kind` of passkey rows in `mfa_factors`.
pub use super::factors::KIND_PASSKEY as KIND;
/// The label of a passkey whose user chose none.
const DEFAULT_NAME: &str = "Passkey";
/// The largest authenticator response accepted (attestations with certificates included).
const MAX_CREDENTIAL_JSON: usize = 64 * 1024;

/// INVALID_ARGUMENT reason: a registration response that does not verify.
pub const PASSKEY_REJECTED: Reason = Reason::PasskeyRejected;
/// FAILED_PRECONDITION reason: no relying party is configured.
pub const PASSKEYS_NOT_CONFIGURED: Reason = Reason::PasskeysNotConfigured;

/// The refusals of the passkey ceremonies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PasskeyError {
    /// The server has no relying party (`--passkey-rp-id` is empty).
    #[error("passkeys are not configured on this server")]
    NotConfigured,
    /// A registration response that does not verify; the text says why.
    #[error("{0}")]
    Rejected(&'static str),
    /// An assertion that does not verify (or cannot be read): one answer for every cause.
    #[error("the passkey did not verify")]
    AssertionRefused,
}

impl From<PasskeyError> for ApiError {
    fn from(e: PasskeyError) -> ApiError {
        let message = e.to_string();
        match e {
            PasskeyError::NotConfigured => {
                ApiError::failed_precondition(PASSKEYS_NOT_CONFIGURED, "passkeys", message)
            }
            PasskeyError::Rejected(why) => {
                ApiError::invalid_argument_because(PASSKEY_REJECTED, "credential_json", why)
            }
            PasskeyError::AssertionRefused => crate::domain::Error::InvalidMfaCode.into(),
        }
    }
}

/// The relying party: the WebAuthn instance and the key that seals ceremony states and
/// credentials.
#[derive(Clone)]
pub struct Passkeys {
    webauthn: Webauthn,
    sealer: Sealer,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("origins", &self.webauthn.get_allowed_origins())
            .finish_non_exhaustive()
    }
}

/// A started passkey enrollment.
#[derive(Debug, Clone)]
pub struct StartedPasskey {
    /// The PENDING factor.
    pub factor: mfa_factor::Model,
    /// The `PublicKeyCredentialCreationOptions` for `navigator.credentials.create`, as JSON.
    pub creation_options_json: String,
}

/// The user handle the authenticator stores: derived from the user id, so it is stable and
/// carries nothing personal.
fn user_handle(user_id: &str) -> Uuid {
    let digest = Sha256::digest(user_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The additional data that binds an authentication ceremony state to its user.
fn authentication_aad(user_id: &str) -> String {
    format!("passkey-authentication:{user_id}")
}

/// The signature counter stored with `passkey` (0 for authenticators that keep none).
fn counter_of(passkey: &Passkey) -> u32 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v["cred"]["counter"].as_u64())
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(0)
}

impl Passkeys {
    /// The relying party of `config`, or `None` when `--passkey-rp-id` is empty; an invalid id or
    /// origin fails start-up with a message naming the setting.
    pub fn from_config(config: &Config, sealer: Sealer) -> ApiResult<Option<Self>> {
        let rp_id = config.passkey_rp_id.trim().to_ascii_lowercase();
        if rp_id.is_empty() {
            return Ok(None);
        }
        match url::Host::parse(&rp_id) {
            Ok(url::Host::Domain(d)) if d == rp_id => {}
            _ => {
                return Err(ApiError::invalid_argument(
                    "passkey_rp_id",
                    format!(
                        "{rp_id:?} is not a domain name (ORGPLANE_PASSKEY_RP_ID takes e.g. example.com, without scheme, port or path)"
                    ),
                ));
            }
        }
        let mut origins = Vec::new();
        for raw in config
            .passkey_origin
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            origins.push(check_origin(raw, &rp_id)?);
        }
        let Some((first, rest)) = origins.split_first() else {
            return Err(ApiError::invalid_argument(
                "passkey_origin",
                "at least one origin is needed when passkeys are on (ORGPLANE_PASSKEY_ORIGIN, e.g. https://app.example.com)",
            ));
        };
        let name = config.passkey_rp_name.trim();
        let bad = |e: webauthn_rs::prelude::WebauthnError| {
            ApiError::invalid_argument("passkey_origin", format!("rejected by WebAuthn: {e}"))
        };
        let mut builder = WebauthnBuilder::new(&rp_id, first).map_err(bad)?;
        for origin in rest {
            builder = builder.append_allowed_origin(origin);
        }
        if !name.is_empty() {
            builder = builder.rp_name(name);
        }
        Ok(Some(Self {
            webauthn: builder.build().map_err(bad)?,
            sealer,
        }))
    }

    fn seal<T: Serialize>(&self, value: &T, aad: &str) -> ApiResult<String> {
        let json = serde_json::to_vec(value).map_err(ApiError::internal)?;
        Ok(URL_SAFE_NO_PAD.encode(self.sealer.seal(&json, aad)?))
    }

    fn open<T: DeserializeOwned>(&self, sealed: &str, aad: &str) -> Result<T, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.as_bytes())
            .map_err(|e| e.to_string())?;
        let plain = self.sealer.open(&bytes, aad)?;
        serde_json::from_slice(&plain).map_err(|e| e.to_string())
    }

    /// The user's ACTIVE passkeys, with their rows.
    async fn active_passkeys<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<Vec<(mfa_factor::Model, Passkey)>> {
        let rows = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::Kind.eq(KIND))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .order_by_asc(mfa_factor::Column::CreateTimeMs)
            .all(db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let opened = row
                .passkey_sealed
                .as_deref()
                .ok_or_else(|| "no credential".to_owned())
                .and_then(|s| self.open::<Passkey>(s, &row.id));
            match opened {
                Ok(passkey) => out.push((row, passkey)),
                // One unreadable row must not lock the user out of their other factors.
                Err(e) => {
                    tracing::error!(factor_id = %row.id, error = %e, "cannot open a stored passkey")
                }
            }
        }
        Ok(out)
    }

    /// The request options (`PublicKeyCredentialRequestOptions`, JSON) and the sealed ceremony
    /// state for a passkey proof by `user_id`, or `None` when they have no ACTIVE passkey.
    pub(crate) async fn request_options<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<Option<(String, String)>> {
        let passkeys: Vec<Passkey> = self
            .active_passkeys(db, user_id)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if passkeys.is_empty() {
            return Ok(None);
        }
        let (challenge, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(ApiError::internal)?;
        let options = serde_json::to_string(&challenge.public_key).map_err(ApiError::internal)?;
        let sealed = self.seal(&state, &authentication_aad(user_id))?;
        Ok(Some((options, sealed)))
    }

    /// Verifies `assertion_json` (a `PublicKeyCredential`) against the ceremony state
    /// `sealed_state` of [`Self::request_options`] for `user_id`; on success stores the
    /// credential's new counter and backup state and the use time, and returns the factor id.
    /// A counter that did not advance (a replayed or cloned credential) is refused; the stored
    /// credential is swapped conditionally, so two concurrent uses of one assertion cannot both
    /// pass. The caller must still use each ceremony state once: authenticators that keep no
    /// counter cannot be told from a replay here.
    pub(crate) async fn verify_assertion<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
        sealed_state: &str,
        assertion_json: &str,
        now_ms: i64,
    ) -> ApiResult<String> {
        let refused = || ApiError::from(PasskeyError::AssertionRefused);
        if assertion_json.len() > MAX_CREDENTIAL_JSON {
            return Err(refused());
        }
        let state: PasskeyAuthentication = self
            .open(sealed_state, &authentication_aad(user_id))
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey ceremony state does not open");
                refused()
            })?;
        let credential: PublicKeyCredential =
            serde_json::from_str(assertion_json).map_err(|_| refused())?;
        let credential_id = URL_SAFE_NO_PAD.encode(&credential.raw_id);
        let row = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(user_id))
            .filter(mfa_factor::Column::Kind.eq(KIND))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .filter(mfa_factor::Column::CredentialId.eq(&credential_id))
            .one(db)
            .await?
            .ok_or_else(refused)?;
        let stored_sealed = row.passkey_sealed.clone().ok_or_else(refused)?;
        let mut passkey: Passkey = self.open(&stored_sealed, &row.id).map_err(|e| {
            tracing::error!(factor_id = %row.id, error = %e, "cannot open a stored passkey");
            refused()
        })?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey assertion refused");
                refused()
            })?;
        let stored_counter = counter_of(&passkey);
        if (result.counter() > 0 || stored_counter > 0) && result.counter() <= stored_counter {
            tracing::warn!(
                factor_id = %row.id,
                counter = result.counter(),
                stored_counter,
                "passkey counter did not advance: a replayed assertion or a cloned authenticator"
            );
            return Err(refused());
        }
        if passkey.update_credential(&result).is_none() {
            return Err(refused());
        }
        let sealed = self.seal(&passkey, &row.id)?;
        let swapped = mfa_factor::Entity::update_many()
            .col_expr(mfa_factor::Column::PasskeySealed, Expr::value(sealed))
            .col_expr(mfa_factor::Column::LastUsedTimeMs, Expr::value(now_ms))
            .filter(mfa_factor::Column::Id.eq(&row.id))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .filter(mfa_factor::Column::PasskeySealed.eq(stored_sealed))
            .exec(db)
            .await?;
        if swapped.rows_affected == 0 {
            return Err(refused());
        }
        Ok(row.id)
    }
}

/// An allowed origin: `https` (or `http` on `localhost`), no path, on `rp_id`'s domain.
fn check_origin(raw: &str, rp_id: &str) -> ApiResult<Url> {
    let bad = |why: &str| {
        ApiError::invalid_argument(
            "passkey_origin",
            format!("{raw:?} {why} (ORGPLANE_PASSKEY_ORIGIN takes e.g. https://app.example.com)"),
        )
    };
    let url = Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    let host = url.domain().ok_or_else(|| bad("has no domain name"))?;
    match url.scheme() {
        "https" => {}
        "http" if host == "localhost" => {}
        _ => return Err(bad("must use https (http only on localhost)")),
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("is not an origin: it has a path, query or fragment"));
    }
    if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
        return Err(bad(&format!(
            "is not on the relying party's domain {rp_id:?} (ORGPLANE_PASSKEY_RP_ID)"
        )));
    }
    Ok(url)
}

impl App {
    fn passkeys(&self) -> ApiResult<&Passkeys> {
        self.passkeys
            .as_ref()
            .ok_or_else(|| PasskeyError::NotConfigured.into())
    }

    /// StartPasskeyEnrollment (rule ID-10): a PENDING passkey factor holding the sealed
    /// registration state, and the creation options. Needs a recent sign-in (with a second factor
    /// when the user has one); the user's existing passkeys are excluded.
    pub async fn start_passkey_enrollment(
        &self,
        call: &Call,
        display_name: &str,
    ) -> ApiResult<StartedPasskey> {
        let me = self.require_factor_step_up(call).await?.user_id;
        let name = if display_name.trim().is_empty() {
            DEFAULT_NAME.to_owned()
        } else {
            check_display_name("display_name", display_name)?
        };
        let passkeys = self.passkeys()?;
        let now = self.now_ms();
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        // Locks the user's row (PostgreSQL; SQLite writers are serial): concurrent enrollments
        // cannot both pass the factor limit.
        let owner = user::Entity::find_by_id(me.clone())
            .lock_exclusive()
            .one(&*unit)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &me))?;
        self.make_room_for_factor(&*unit, &me).await?;
        let exclude: Vec<Vec<u8>> = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::UserId.eq(&me))
            .filter(mfa_factor::Column::Kind.eq(KIND))
            .filter(mfa_factor::Column::State.eq(ACTIVE))
            .select_only()
            .column(mfa_factor::Column::CredentialId)
            .into_tuple::<Option<String>>()
            .all(&*unit)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|id| URL_SAFE_NO_PAD.decode(id.as_bytes()).ok())
            .collect();
        let (options, state) = passkeys
            .webauthn
            .start_passkey_registration(
                user_handle(&me),
                &owner.email,
                &owner.display_name,
                Some(exclude),
            )
            .map_err(ApiError::internal)?;
        let id = new_id("mfa");
        let factor = mfa_factor::Model {
            id: id.clone(),
            user_id: me.clone(),
            kind: KIND.to_owned(),
            create_time_ms: now,
            display_name: name,
            state: PENDING,
            secret_sealed: None,
            passkey_sealed: Some(passkeys.seal(&state, &id)?),
            credential_id: None,
            expire_time_ms: Some(now + PENDING_FACTOR_TTL_MS),
            last_used_time_ms: None,
        };
        mfa_factor::ActiveModel {
            id: Set(factor.id.clone()),
            user_id: Set(factor.user_id.clone()),
            kind: Set(factor.kind.clone()),
            create_time_ms: Set(factor.create_time_ms),
            display_name: Set(factor.display_name.clone()),
            state: Set(factor.state),
            secret_sealed: Set(None),
            passkey_sealed: Set(factor.passkey_sealed.clone()),
            credential_id: Set(None),
            expire_time_ms: Set(factor.expire_time_ms),
            last_used_time_ms: Set(None),
        }
        .insert(&*unit)
        .await?;
        self.audit
            .write(&*unit, call, factor_entry("mfa_factor.create", &factor))
            .await?;
        unit.commit().await?;
        Ok(StartedPasskey {
            factor,
            creation_options_json: serde_json::to_string(&options.public_key)
                .map_err(ApiError::internal)?,
        })
    }

    /// ConfirmPasskeyEnrollment (rule ID-10): verifies the authenticator's registration response
    /// against the PENDING factor's ceremony state and makes the factor ACTIVE with its sealed
    /// credential (its state is replaced, so a response cannot be used twice). The user's first
    /// factor yields recovery codes, and the caller's session is renewed with `hwk mfa`.
    pub async fn confirm_passkey_enrollment(
        &self,
        call: &Call,
        factor_id: &str,
        credential_json: &str,
    ) -> ApiResult<ConfirmedFactor> {
        let me = self.require_factor_step_up(call).await?.user_id;
        let mut violations = Violations::default();
        if factor_id.is_empty() {
            violations.add("factor_id", "required");
        } else if factor_id.len() > 128 {
            violations.add("factor_id", "too long");
        }
        if credential_json.trim().is_empty() {
            violations.add("credential_json", "required");
        }
        violations.finish()?;
        let passkeys = self.passkeys()?;
        if credential_json.len() > MAX_CREDENTIAL_JSON {
            return Err(PasskeyError::Rejected("the response is too large").into());
        }
        let now = self.now_ms();
        let not_found = || ApiError::not_found("mfa_factor", factor_id);
        let factor = mfa_factor::Entity::find_by_id(factor_id.to_owned())
            .filter(mfa_factor::Column::UserId.eq(&me))
            .filter(mfa_factor::Column::Kind.eq(KIND))
            .filter(mfa_factor::Column::State.eq(PENDING))
            .filter(mfa_factor::Column::ExpireTimeMs.gt(now))
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let state_sealed = factor.passkey_sealed.clone().ok_or_else(not_found)?;
        let state: PasskeyRegistration = passkeys
            .open(&state_sealed, &factor.id)
            .map_err(ApiError::internal)?;
        let response: RegisterPublicKeyCredential =
            serde_json::from_str(credential_json).map_err(|_| {
                PasskeyError::Rejected(
                    "not the JSON of a PublicKeyCredential from navigator.credentials.create",
                )
            })?;
        let passkey = passkeys
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(|e| {
                tracing::debug!(error = %e, factor_id = %factor.id, "passkey registration refused");
                PasskeyError::Rejected(
                    "the response does not verify for this enrollment (wrong origin, challenge or signature)",
                )
            })?;
        let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
        let already = || PasskeyError::Rejected("this passkey is already registered");
        let taken = mfa_factor::Entity::find()
            .filter(mfa_factor::Column::CredentialId.eq(&credential_id))
            .count(&self.db)
            .await?;
        if taken > 0 {
            return Err(already().into());
        }
        let sealed = passkeys.seal(&passkey, &factor.id)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        // Only a PENDING, unexpired factor whose ceremony state is the one verified: of two
        // concurrent confirmations, one wins.
        let activated = mfa_factor::Entity::update_many()
            .col_expr(mfa_factor::Column::State, Expr::value(ACTIVE))
            .col_expr(
                mfa_factor::Column::PasskeySealed,
                Expr::value(sealed.clone()),
            )
            .col_expr(
                mfa_factor::Column::CredentialId,
                Expr::value(credential_id.clone()),
            )
            .col_expr(mfa_factor::Column::ExpireTimeMs, Expr::value(None::<i64>))
            .filter(mfa_factor::Column::Id.eq(&factor.id))
            .filter(mfa_factor::Column::State.eq(PENDING))
            .filter(mfa_factor::Column::ExpireTimeMs.gt(now))
            .filter(mfa_factor::Column::PasskeySealed.eq(state_sealed))
            .exec(&*unit)
            .await;
        let activated = match activated {
            Ok(r) => r.rows_affected,
            Err(e) if is_unique_violation(&e) => return Err(already().into()),
            Err(e) => return Err(e.into()),
        };
        if activated == 0 {
            return Err(not_found());
        }
        let factor = mfa_factor::Model {
            state: ACTIVE,
            passkey_sealed: Some(sealed),
            credential_id: Some(credential_id),
            expire_time_ms: None,
            ..factor
        };
        let user = call.principal.require_user()?;
        let first = self.active_factors(&*unit, &me).await?.len() == 1;
        let recovery_codes = if first {
            self.issue_recovery_codes(&*unit, &me).await?
        } else {
            Vec::new()
        };
        let tokens = self.renew_session(&*unit, user, &PASSKEY_AMR).await?;
        self.audit
            .write(&*unit, call, factor_entry("mfa_factor.confirm", &factor))
            .await?;
        unit.commit().await?;
        Ok(ConfirmedFactor {
            factor,
            recovery_codes,
            tokens,
        })
    }

    /// The options and sealed ceremony state of a passkey proof by `user_id` (for an MFA
    /// challenge, rule ID-11): the `PublicKeyCredentialRequestOptions` JSON for
    /// `navigator.credentials.get` and the state to keep with the challenge. `None` when the user
    /// has no ACTIVE passkey or passkeys are not configured.
    pub async fn passkey_request_options(
        &self,
        user_id: &str,
    ) -> ApiResult<Option<(String, String)>> {
        match &self.passkeys {
            Some(p) => p.request_options(&self.db, user_id).await,
            None => Ok(None),
        }
    }

    /// Verifies a passkey assertion (`PublicKeyCredential` JSON) of `user_id` against the sealed
    /// ceremony state of [`Self::passkey_request_options`]; returns the factor id. Every failure,
    /// unreadable input included, is UNAUTHENTICATED `INVALID_MFA_CODE`. The caller uses each
    /// state once (the challenge's conditional update).
    pub async fn verify_passkey_assertion(
        &self,
        user_id: &str,
        sealed_state: &str,
        assertion_json: &str,
    ) -> ApiResult<String> {
        let Some(p) = &self.passkeys else {
            return Err(PasskeyError::AssertionRefused.into());
        };
        p.verify_assertion(
            &self.db,
            user_id,
            sealed_state,
            assertion_json,
            self.now_ms(),
        )
        .await
    }
}

#[cfg(test)]
mod tests;
