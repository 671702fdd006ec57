//! Minting: the Ed25519 key identity signs every Orgplane JWT with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

use super::*;
use crate::error::{ApiError, ApiResult};

/// An Ed25519 signing key with its `kid`: how identity mints every Orgplane JWT.
pub struct Signer {
    kid: String,
    secret: ed25519_dalek::SigningKey,
    encoding: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for the 32-byte Ed25519 seed `seed`.
    pub fn from_seed(kid: impl Into<String>, seed: &[u8; 32]) -> ApiResult<Self> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let secret = ed25519_dalek::SigningKey::from_bytes(seed);
        let der = secret.to_pkcs8_der().map_err(ApiError::internal)?;
        Ok(Self {
            kid: kid.into(),
            encoding: jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
            secret,
        })
    }

    /// A new random key.
    pub fn generate(kid: impl Into<String>) -> ApiResult<Self> {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(kid, &seed)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte seed, for storage (encrypted at rest by identity).
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public half, as published in the JWKS.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(self.secret.verifying_key().as_bytes()),
        }
    }

    /// Signs `claims` as an EdDSA JWT with this key's `kid`.
    pub fn sign(&self, claims: &Claims) -> ApiResult<String> {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(ApiError::internal)
    }
}
