//! IssueServiceToken: short-lived tokens for Orgplane's own services and the configured service
//! accounts, refused (and throttled per peer) for anything else. A token's `scope` names the
//! account's capabilities: the configured list, or for this process's own account what the
//! services of this process use.

use orgplane_platform::auth::{Claims, SERVICE_AUDIENCE};
use orgplane_platform::runtime::ServiceAccount;
use orgplane_platform::{ApiError, ApiResult, Call};

use super::{App, SERVICE_TOKEN_TTL_SECS};
use crate::crypto::{self, sha256_hex};
use crate::domain::Error;

/// A service token and its expiry.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    /// The token (EdDSA JWT, audience `SERVICE_AUDIENCE`).
    pub token: String,
    /// When it expires, Unix seconds.
    pub expire_secs: i64,
}

impl App {
    /// IssueServiceToken for `client_id` with `secret`.
    pub async fn issue_service_token(
        &self,
        call: &Call,
        client_id: &str,
        secret: &str,
    ) -> ApiResult<ServiceToken> {
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(ApiError::invalid_argument(
                "client_id",
                "required, at most 128 characters",
            ));
        }
        if secret.is_empty() || secret.len() > 512 {
            return Err(ApiError::invalid_argument(
                "client_secret",
                "required, at most 512 bytes",
            ));
        }
        let peer = format!("peer:{}", self.peer_key(call));
        self.throttles.client_failures.check(&peer)?;
        let own = constant_eq_own(&self.own_account, client_id, secret);
        let configured = self.service_accounts.get(client_id).filter(|account| {
            crypto::constant_time_eq(&account.secret_sha256, &sha256_hex(secret))
        });
        let capabilities = match (own, configured) {
            (true, _) => self.own_account.capabilities,
            (false, Some(account)) => account.capabilities,
            (false, None) => {
                self.throttles.client_failures.record(&peer);
                tracing::warn!(client_id, "service token refused");
                return Err(Error::InvalidClientCredentials.into());
            }
        };
        let now = chrono::Utc::now().timestamp();
        let exp = now + SERVICE_TOKEN_TTL_SECS;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: client_id.to_owned(),
            aud: SERVICE_AUDIENCE.to_owned(),
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: None,
            sid: None,
            scope: Some(capabilities.to_scope()),
            ..Default::default()
        };
        Ok(ServiceToken {
            token: self.keys.signer().sign(&claims)?,
            expire_secs: exp,
        })
    }
}

fn constant_eq_own(own: &ServiceAccount, client_id: &str, secret: &str) -> bool {
    // Both comparisons always run.
    let id_ok = crypto::constant_time_eq(&own.client_id, client_id);
    let secret_ok = crypto::constant_time_eq(&own.client_secret, secret);
    id_ok & secret_ok & !own.client_secret.is_empty()
}
