//! SSO sign-in (rule ID-13): StartSsoLogin opens a 10-minute attempt (PKCE S256, single-use
//! `state` and `nonce`, stored as digests; the verifier sealed) bound to a browser secret;
//! CompleteSsoLogin consumes it (a conditional update: of concurrent completions one wins),
//! redeems the code, verifies the ID token, then finds, links or creates the account
//! ([`super::sso_accounts`]) and answers tokens or an MFA challenge. Also TestSsoConnection,
//! which runs the same discovery and keys against a connection now.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orgplane_platform::email::canonical_email;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::Set;
use sea_orm::entity::prelude::*;
use sha2::Digest;

use super::App;
use super::sso_accounts::SsoSignedIn;
use super::sso_connections::{Connection, split};
use crate::crypto::{self, sha256_hex};
use crate::domain::sso::{ATTEMPT_TTL_MS, SsoError};
use crate::domain::validation::check_token_input;
use crate::oidc::{Expected, OidcError, key_fits};
use crate::store::entity::{sso_attempt, sso_connection};

/// A StartSsoLogin request: exactly one of `email`, `organization_id`, `sso_connection_id`.
#[derive(Debug, Clone, Default)]
pub struct StartSso {
    /// The person's email.
    pub email: String,
    /// An organization with one enabled connection.
    pub organization_id: String,
    /// A connection id.
    pub sso_connection_id: String,
    /// One of the connection's redirect URIs.
    pub redirect_uri: String,
}

/// An opened attempt.
#[derive(Clone)]
pub struct StartedSso {
    /// Where the browser goes.
    pub authorization_url: String,
    /// The single-use `state`.
    pub state: String,
    /// Unix milliseconds.
    pub expire_time_ms: i64,
    /// The browser binding secret.
    pub browser_binding: String,
    /// The connection used.
    pub connection_id: String,
}

impl std::fmt::Debug for StartedSso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSso")
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

/// One check of TestSsoConnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `discovery`, `issuer`, `endpoints`, `algorithms`, `jwks` or `domains`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// Maps a provider failure to the wire (the detail of an invalid token is logged, not answered).
pub(crate) fn provider_error(e: OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(d) => SsoError::ProviderUnavailable(d).into(),
        OidcError::CodeRejected(d) => SsoError::CodeRejected(d).into(),
        OidcError::Invalid(d) => {
            tracing::info!(detail = %d, "SSO ID token refused");
            SsoError::AssertionInvalid.into()
        }
    }
}

impl App {
    /// The enabled connection StartSsoLogin names.
    async fn connection_to_start(&self, cmd: &StartSso) -> ApiResult<sso_connection::Model> {
        let given = [&cmd.email, &cmd.organization_id, &cmd.sso_connection_id]
            .iter()
            .filter(|v| !v.trim().is_empty())
            .count();
        if given != 1 {
            return Err(ApiError::invalid_argument(
                "email",
                "exactly one of email, organization_id and sso_connection_id is required",
            ));
        }
        if cmd.redirect_uri.is_empty() {
            return Err(ApiError::invalid_argument("redirect_uri", "required"));
        }
        let enabled = sso_connection::Column::Enabled.eq(true);
        let mut found = if !cmd.email.trim().is_empty() {
            let email = canonical_email("email", &cmd.email)?;
            let all = self.connections_serving(&email.domain).await?;
            // An enforced connection wins; otherwise the domain's one connection.
            match all.iter().find(|c| c.enforced) {
                Some(c) => vec![c.clone()],
                None => all,
            }
        } else if !cmd.organization_id.trim().is_empty() {
            sso_connection::Entity::find()
                .filter(sso_connection::Column::OrganizationId.eq(cmd.organization_id.trim()))
                .filter(enabled)
                .all(&self.db)
                .await?
        } else {
            sso_connection::Entity::find_by_id(cmd.sso_connection_id.trim().to_owned())
                .filter(enabled)
                .all(&self.db)
                .await?
        };
        found.retain(|c| {
            self.replica
                .with_organization(&c.organization_id, |o| o.is_active())
                .unwrap_or(false)
        });
        match found.len() {
            0 => Err(SsoError::ConnectionNotFound.into()),
            1 => Ok(found.remove(0)),
            _ => Err(SsoError::ConnectionAmbiguous.into()),
        }
    }

    /// StartSsoLogin (rule ID-13).
    pub async fn start_sso_login(&self, call: &Call, cmd: StartSso) -> ApiResult<StartedSso> {
        let conn = self.connection_to_start(&cmd).await?;
        // A sign-in the organization's policy would refuse afterwards is not started (ORG-16).
        if !self.replica.policy(&conn.organization_id).sso_allowed {
            return Err(SsoError::SsoNotAllowed(conn.organization_id.clone()).into());
        }
        if !split(&conn.redirect_uris).contains(&cmd.redirect_uri) {
            return Err(ApiError::invalid_argument(
                "redirect_uri",
                "not one of the connection's redirect URIs",
            ));
        }
        self.throttles.sso_peer.hit(&self.peer_key(call))?;
        let discovery = self
            .oidc
            .discovery(&conn.issuer, false)
            .await
            .map_err(provider_error)?;
        let state = crypto::random_token("");
        let nonce = crypto::random_token("");
        let verifier = crypto::random_base62(64);
        let binding = crypto::random_token("ssob_");
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let state_hash = sha256_hex(&state);
        let now = self.now_ms();
        let expire_time_ms = now + ATTEMPT_TTL_MS;
        let sealed = self.sealer.seal(verifier.as_bytes(), &state_hash)?;
        sso_attempt::ActiveModel {
            state_hash: Set(state_hash),
            connection_id: Set(conn.id.clone()),
            nonce_hash: Set(sha256_hex(&nonce)),
            binding_hash: Set(sha256_hex(&binding)),
            verifier_sealed: Set(base64::engine::general_purpose::STANDARD.encode(sealed)),
            redirect_uri: Set(cmd.redirect_uri.clone()),
            create_time_ms: Set(now),
            expire_time_ms: Set(expire_time_ms),
            used_time_ms: Set(None),
        }
        .insert(&self.db)
        .await?;
        // Attempts past their time are useless: sweep a few on the way.
        sso_attempt::Entity::delete_many()
            .filter(sso_attempt::Column::ExpireTimeMs.lt(now - ATTEMPT_TTL_MS))
            .exec(&self.db)
            .await?;
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| SsoError::ProviderUnavailable(format!("authorization_endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &conn.client_id)
                .append_pair("redirect_uri", &cmd.redirect_uri)
                .append_pair("scope", &conn.scopes)
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if !cmd.email.trim().is_empty() {
                q.append_pair("login_hint", cmd.email.trim());
            }
        }
        Ok(StartedSso {
            authorization_url: url.into(),
            state,
            expire_time_ms,
            browser_binding: binding,
            connection_id: conn.id,
        })
    }

    /// Consumes the attempt of `state` (one winner among concurrent completions): its row, or
    /// UNAUTHENTICATED `SSO_STATE_INVALID` for an unknown, used or expired state or a binding
    /// that does not match.
    async fn consume_attempt(&self, state: &str, binding: &str) -> ApiResult<sso_attempt::Model> {
        let state_hash = sha256_hex(state);
        let now = self.now_ms();
        let attempt = sso_attempt::Entity::find_by_id(state_hash.clone())
            .one(&self.db)
            .await?
            .filter(|a| a.used_time_ms.is_none() && a.expire_time_ms > now)
            .ok_or(SsoError::StateInvalid)?;
        if !crypto::constant_time_eq(&sha256_hex(binding), &attempt.binding_hash) {
            return Err(SsoError::StateInvalid.into());
        }
        let claimed = sso_attempt::Entity::update_many()
            .col_expr(sso_attempt::Column::UsedTimeMs, Expr::value(now))
            .filter(sso_attempt::Column::StateHash.eq(&state_hash))
            .filter(sso_attempt::Column::UsedTimeMs.is_null())
            .filter(sso_attempt::Column::ExpireTimeMs.gt(now))
            .exec(&self.db)
            .await?;
        if claimed.rows_affected != 1 {
            return Err(SsoError::StateInvalid.into());
        }
        Ok(attempt)
    }

    /// CompleteSsoLogin (rule ID-13).
    pub async fn complete_sso_login(
        &self,
        call: &Call,
        state: &str,
        code: &str,
        binding: &str,
    ) -> ApiResult<SsoSignedIn> {
        check_token_input("state", state)?;
        check_token_input("browser_binding", binding)?;
        if code.is_empty() || code.len() > 4096 {
            return Err(ApiError::invalid_argument(
                "code",
                "required, at most 4096 bytes",
            ));
        }
        let attempt = self.consume_attempt(state, binding).await?;
        let conn = sso_connection::Entity::find_by_id(attempt.connection_id.clone())
            .one(&self.db)
            .await?
            .filter(|c| c.enabled)
            .ok_or(SsoError::StateInvalid)?;
        let discovery = self
            .oidc
            .discovery(&conn.issuer, false)
            .await
            .map_err(provider_error)?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&attempt.verifier_sealed)
            .map_err(ApiError::internal)?;
        let verifier = String::from_utf8(
            self.sealer
                .open(&sealed, &attempt.state_hash)
                .map_err(ApiError::internal)?,
        )
        .map_err(ApiError::internal)?;
        let secret = self.client_secret(&conn)?;
        let id_token = self
            .oidc
            .redeem(
                &discovery,
                &conn.client_id,
                secret.as_deref(),
                code,
                &verifier,
                &attempt.redirect_uri,
            )
            .await
            .map_err(provider_error)?;
        let algorithms = split(&conn.algorithms);
        let claims = self
            .oidc
            .verify(
                &discovery,
                &id_token,
                &Expected {
                    issuer: &conn.issuer,
                    client_id: &conn.client_id,
                    algorithms: &algorithms,
                    nonce_hash: &attempt.nonce_hash,
                },
            )
            .await
            .map_err(provider_error)?;
        self.sso_sign_in(call, &conn, &claims).await
    }

    /// TestSsoConnection: the checks, in order, and whether all passed.
    pub async fn test_sso_connection(&self, call: &Call, id: &str) -> ApiResult<Vec<Check>> {
        let Connection { row, domains } = self.connection_to_test(call, id).await?;
        let mut checks = Vec::new();
        match self.oidc.fetch_discovery(&row.issuer).await {
            Err(e) => checks.push(check("discovery", false, e.to_string())),
            Ok(d) => {
                checks.push(check("discovery", true, format!("read {}", d.source)));
                self.test_against(&row, &d.document, &mut checks).await;
            }
        }
        let unverified: Vec<&String> = domains
            .iter()
            .filter(|d| !self.replica.holds_verified(&row.organization_id, d))
            .collect();
        checks.push(if unverified.is_empty() {
            check(
                "domains",
                true,
                format!("{} domain(s) VERIFIED by the organization", domains.len()),
            )
        } else {
            check(
                "domains",
                false,
                format!(
                    "not VERIFIED by the organization: {}",
                    unverified
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        });
        Ok(checks)
    }

    async fn test_against(
        &self,
        row: &sso_connection::Model,
        d: &crate::oidc::Discovery,
        checks: &mut Vec<Check>,
    ) {
        checks.push(if d.issuer == row.issuer {
            check("issuer", true, format!("issuer is {}", d.issuer))
        } else {
            check(
                "issuer",
                false,
                format!(
                    "issuer in discovery is {:?}, expected {:?}",
                    d.issuer, row.issuer
                ),
            )
        });
        let mut problems = Vec::new();
        for (what, url) in [
            ("authorization_endpoint", &d.authorization_endpoint),
            ("token_endpoint", &d.token_endpoint),
            ("jwks_uri", &d.jwks_uri),
        ] {
            if let Err(e) = self.oidc.check_endpoint(what, url) {
                problems.push(e.to_string());
            }
        }
        if !d.code_challenge_methods_supported.is_empty()
            && !d
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            problems.push("the provider does not offer PKCE S256".to_owned());
        }
        checks.push(if problems.is_empty() {
            check(
                "endpoints",
                true,
                "authorization, token and key endpoints usable",
            )
        } else {
            check("endpoints", false, problems.join("; "))
        });
        let accepted = split(&row.algorithms);
        let offered = &d.id_token_signing_alg_values_supported;
        let common: Vec<&String> = accepted.iter().filter(|a| offered.contains(a)).collect();
        checks.push(if common.is_empty() {
            check(
                "algorithms",
                false,
                format!(
                    "the provider signs with {}, the connection accepts {}",
                    offered.join(", "),
                    accepted.join(", ")
                ),
            )
        } else {
            check(
                "algorithms",
                true,
                format!(
                    "ID tokens signed with {}",
                    common
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        });
        checks.push(match self.oidc.keys(&d.jwks_uri, true).await {
            Err(e) => check("jwks", false, e.to_string()),
            Ok(set) => {
                let missing: Vec<&String> = accepted
                    .iter()
                    .filter(|a| {
                        a.parse::<jsonwebtoken::Algorithm>()
                            .map(|alg| !set.keys.iter().any(|k| key_fits(k, alg)))
                            .unwrap_or(true)
                    })
                    .collect();
                if missing.len() == accepted.len() {
                    check(
                        "jwks",
                        false,
                        format!(
                            "{} key(s); no key for {}",
                            set.keys.len(),
                            accepted.join(", ")
                        ),
                    )
                } else {
                    check("jwks", true, format!("{} key(s) usable", set.keys.len()))
                }
            }
        });
    }
}
