//! API keys (rule ID-7) as the other services see them: resolved by identity, cached briefly,
//! and dropped from the cache when identity reports the key deactivated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::*;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};
use crate::revocation::SessionRevocations;

/// Resolves API keys (identity's `AuthenticateApiKey` in the other services).
pub trait ApiKeyResolver: Send + Sync + 'static {
    /// The key's principal, or UNAUTHENTICATED for an unknown, malformed or inactive key.
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>>;
}

/// Caches successful API-key resolutions briefly, keyed by the SHA-256 of the key. With
/// [`CachedApiKeys::with_revocations`], a resolution cached before its key was deactivated is
/// not used again (identity is asked, and refuses the key).
pub struct CachedApiKeys {
    inner: Arc<dyn ApiKeyResolver>,
    ttl: Duration,
    /// Digest → the principal, and when the resolution that produced it started.
    cache: Mutex<HashMap<[u8; 32], (ApiKeyPrincipal, Instant)>>,
    revocations: Option<Arc<SessionRevocations>>,
}

impl CachedApiKeys {
    /// Wraps `inner`, keeping answers for `ttl` (without revocations, a deactivated key keeps
    /// working at most that long).
    pub fn new(inner: Arc<dyn ApiKeyResolver>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cache: Mutex::new(HashMap::new()),
            revocations: None,
        }
    }

    /// Distrusts cached resolutions of keys that `revocations` saw deactivated since.
    pub fn with_revocations(mut self, revocations: Arc<SessionRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    fn deactivated_since(&self, principal: &ApiKeyPrincipal, since: Instant) -> bool {
        self.revocations
            .as_ref()
            .is_some_and(|r| r.key_deactivated_since(&principal.key_id, since))
    }
}

impl ApiKeyResolver for CachedApiKeys {
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
        Box::pin(async move {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((p, started)) = cache.get(&digest) {
                    if self.deactivated_since(p, *started) {
                        cache.remove(&digest);
                    } else if started.elapsed() < self.ttl {
                        return Ok(p.clone());
                    }
                }
            }
            let started = Instant::now();
            let principal = self.inner.resolve(key).await?;
            if self.deactivated_since(&principal, started) {
                // Deactivated while identity answered: ask again, and cache nothing.
                return self.inner.resolve(key).await;
            }
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() > 10_000 {
                cache.retain(|_, (_, started)| started.elapsed() < self.ttl);
            }
            cache.insert(digest, (principal.clone(), started));
            Ok(principal)
        })
    }
}

/// The ErrorInfo reason for an API key that is malformed or unknown.
pub const API_KEY_INVALID: Reason = Reason::ApiKeyInvalid;

/// The ErrorInfo reason for an API key that is INACTIVE, or whose organization is deleted.
pub const API_KEY_INACTIVE: Reason = Reason::ApiKeyInactive;

/// The error for an API key that is malformed or unknown (every service answers identity's
/// reasons, so a caller sees the same one wherever it presents the key).
pub fn invalid_api_key() -> ApiError {
    ApiError::unauthenticated(API_KEY_INVALID, "invalid API key")
}

/// The error for an API key that is INACTIVE, or whose organization is deleted or purged.
pub fn inactive_api_key() -> ApiError {
    ApiError::unauthenticated(API_KEY_INACTIVE, "the API key is inactive")
}
