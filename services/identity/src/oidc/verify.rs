//! The ID token's verification (rule ID-13): the algorithm pinned to the connection's list,
//! the key named by `kid` (fetched again once when unknown) or, without `kid`, every key that
//! fits the algorithm; issuer, audience, `azp` when several audiences, expiry with a small
//! leeway, and the nonce StartSsoLogin sent (compared as digests, in constant time).

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Discovery, LEEWAY_SECS, OidcClient, OidcError};

/// The claims of an ID token SSO reads.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// The provider's subject.
    pub sub: String,
    /// The audience (one string or several).
    #[serde(default)]
    pub aud: serde_json::Value,
    /// The authorized party.
    #[serde(default)]
    pub azp: Option<String>,
    /// The nonce StartSsoLogin sent.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The address.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider verified it (a boolean, or the string `"true"` some providers send).
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    /// The person's name.
    #[serde(default)]
    pub name: Option<String>,
    /// How the person authenticated (RFC 8176).
    #[serde(default)]
    pub amr: Option<Vec<String>>,
}

impl IdClaims {
    /// Whether the provider asserted the address verified.
    pub fn email_verified(&self) -> bool {
        match &self.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        }
    }

    fn audiences(&self) -> Vec<String> {
        match &self.aud {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// What an ID token must say.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The issuer (the connection's, equal to discovery's).
    pub issuer: &'a str,
    /// This client's id.
    pub client_id: &'a str,
    /// The accepted algorithms.
    pub algorithms: &'a [String],
    /// SHA-256 (hex) of the nonce StartSsoLogin sent.
    pub nonce_hash: &'a str,
}

pub(super) fn algorithm_name(a: Algorithm) -> String {
    format!("{a:?}")
}

pub(super) fn algorithm_of(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>().ok()
}

/// Whether key `k` can verify `alg`: its declared algorithm (when it has one) is `alg`, and its
/// type fits the family.
pub fn key_fits(k: &Jwk, alg: Algorithm) -> bool {
    if matches!(
        k.common.public_key_use,
        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
    ) {
        return false;
    }
    if let Some(declared) = k.common.key_algorithm
        && format!("{declared:?}") != algorithm_name(alg)
    {
        return false;
    }
    matches!(
        (&k.algorithm, alg),
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (
            AlgorithmParameters::EllipticCurve(_),
            Algorithm::ES256 | Algorithm::ES384
        ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

impl OidcClient {
    /// Verifies `id_token` against the provider's keys (fetched again once when it names an
    /// unknown `kid`) and `expected`; answers its claims.
    pub async fn verify(
        &self,
        discovery: &Discovery,
        id_token: &str,
        expected: &Expected<'_>,
    ) -> Result<IdClaims, OidcError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| OidcError::Invalid(format!("malformed ID token header: {e}")))?;
        let alg = header.alg;
        if !expected
            .algorithms
            .iter()
            .any(|a| algorithm_of(a) == Some(alg))
        {
            return Err(OidcError::Invalid(format!(
                "algorithm {} is not accepted by the connection",
                algorithm_name(alg)
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[expected.issuer]);
        validation.set_audience(&[expected.client_id]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut keys = self.keys(&discovery.jwks_uri, false).await?;
        if let Some(kid) = &header.kid
            && keys.find(kid).is_none()
        {
            keys = self.keys(&discovery.jwks_uri, true).await?;
        }
        let mut outcome = try_keys(id_token, &keys, header.kid.as_deref(), alg, &validation);
        // A token without `kid` that no cached key verifies may be signed by a new key: fetch
        // the set once more (rate-limited like unknown kids).
        if header.kid.is_none() && matches!(outcome, Err(KeyMiss::NoKey | KeyMiss::Signature(_))) {
            keys = self.keys(&discovery.jwks_uri, true).await?;
            outcome = try_keys(id_token, &keys, None, alg, &validation);
        }
        let claims = outcome.map_err(|miss| {
            OidcError::Invalid(match miss {
                KeyMiss::NoKey => match &header.kid {
                    Some(kid) => format!("no key {kid:?} in the provider's key set"),
                    None => format!("no key for {}", algorithm_name(alg)),
                },
                KeyMiss::Signature(d) | KeyMiss::Claims(d) => d,
            })
        })?;
        if claims.sub.is_empty() {
            return Err(OidcError::Invalid("empty sub".into()));
        }
        let audiences = claims.audiences();
        let azp_ok = match &claims.azp {
            Some(azp) => azp == expected.client_id,
            None => audiences.len() <= 1,
        };
        if !azp_ok {
            return Err(OidcError::Invalid("azp does not name this client".into()));
        }
        let nonce_ok = claims.nonce.as_deref().is_some_and(|n| {
            crate::crypto::constant_time_eq(&crate::crypto::sha256_hex(n), expected.nonce_hash)
        });
        if !nonce_ok {
            return Err(OidcError::Invalid("the nonce does not match".into()));
        }
        Ok(claims)
    }
}

/// Why no key verified a token.
enum KeyMiss {
    /// No key fits its `kid` or algorithm.
    NoKey,
    /// Keys fit, none verified the signature.
    Signature(String),
    /// The signature verified; a claim did not (issuer, audience, expiry, …).
    Claims(String),
}

/// Verifies `token` with the keys of `set` named `kid` (or, without one, every key fitting
/// `alg`).
fn try_keys(
    token: &str,
    set: &JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
    validation: &Validation,
) -> Result<IdClaims, KeyMiss> {
    let candidates: Vec<&Jwk> = set
        .keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.common.key_id.as_deref() == Some(kid)))
        .filter(|k| key_fits(k, alg))
        .collect();
    if candidates.is_empty() {
        return Err(KeyMiss::NoKey);
    }
    let mut miss = KeyMiss::Signature("no key verified the signature".into());
    for k in candidates {
        let Ok(key) = DecodingKey::from_jwk(k) else {
            continue;
        };
        match jsonwebtoken::decode::<IdClaims>(token, &key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                miss = match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidEcdsaKey => KeyMiss::Signature(e.to_string()),
                    _ => KeyMiss::Claims(e.to_string()),
                };
                if matches!(miss, KeyMiss::Claims(_)) {
                    return Err(miss);
                }
            }
        }
    }
    Err(miss)
}
