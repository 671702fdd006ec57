//! AIP-158 pagination: page sizes with one default and one clamp, and opaque, tamper-evident page
//! tokens bound to the request that produced them.
//!
//! A token is `base64url(payload || HMAC-SHA256(key, payload))` where the payload holds a digest
//! of the request's *scope* (method, parent, filter and order, built by the caller) and the
//! keyset cursor. A token altered by a client, or replayed with a different filter or parent,
//! is INVALID_ARGUMENT — so a page token can never be steered into another tenant's rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sea_orm::{ColumnTrait, Condition, EntityTrait, Order, QueryFilter, QueryOrder, Select, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Page size used when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page; larger requests are clamped to it.
pub const MAX_PAGE_SIZE: u64 = 1000;

const MAC_LEN: usize = 32;

/// The page size to use for a request's `page_size`: 0 means the default, values above the
/// maximum are clamped, negative values are INVALID_ARGUMENT.
pub fn page_size(requested: i32) -> Result<u64, ApiError> {
    match requested {
        n if n < 0 => Err(ApiError::invalid_argument(
            "page_size",
            "must not be negative",
        )),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// Encodes and verifies page tokens with one secret key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Payload<C> {
    /// Digest of the scope, hex, truncated.
    s: String,
    /// The cursor: the sort key of the last row returned.
    c: C,
}

impl PageTokens {
    /// Tokens signed with `secret`. Every replica of a service must share the secret, or a token
    /// from one replica is refused by another.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    /// Tokens signed with a random key: valid only within this process.
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = rand::random();
        Self::new(&key)
    }

    fn scope_digest(scope: &str) -> String {
        let digest = Sha256::digest(scope.as_bytes());
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// The token that continues after `cursor` for a request with this `scope`.
    pub fn encode<C: Serialize>(&self, scope: &str, cursor: &C) -> String {
        let payload = Payload {
            s: Self::scope_digest(scope),
            c: cursor,
        };
        let mut bytes = serde_json::to_vec(&payload).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor in `token`, `None` for the first page (an empty token). A token that was
    /// tampered with, or made for another scope, is INVALID_ARGUMENT.
    pub fn decode<C: DeserializeOwned>(
        &self,
        scope: &str,
        token: &str,
    ) -> Result<Option<C>, ApiError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            ApiError::invalid_argument(
                "page_token",
                "not a page token issued for this request; start again without one",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() <= MAC_LEN {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_slice(tag).map_err(|_| invalid())?;
        let payload: Payload<C> = serde_json::from_slice(payload).map_err(|_| invalid())?;
        if payload.s != Self::scope_digest(scope) {
            return Err(ApiError::invalid_argument(
                "page_token",
                "the page token was issued for different request parameters",
            ));
        }
        Ok(Some(payload.c))
    }

    /// Splits `rows` (fetched with `limit = page_size + 1`) into the page and its next token.
    pub fn page<T, C: Serialize>(
        &self,
        scope: &str,
        mut rows: Vec<T>,
        page_size: u64,
        cursor_of: impl Fn(&T) -> C,
    ) -> (Vec<T>, String) {
        let size = usize::try_from(page_size).unwrap_or(usize::MAX);
        if rows.len() > size {
            rows.truncate(size);
            let next = rows
                .last()
                .map(|last| self.encode(scope, &cursor_of(last)))
                .unwrap_or_default();
            (rows, next)
        } else {
            (rows, String::new())
        }
    }
}

/// The condition "(`sort`, `id`) comes after `key` in `order`": for [`Order::Desc`] the rows
/// whose key is smaller, otherwise those whose key is larger (a keyset cursor over a sort
/// column that may repeat, with the id breaking ties).
pub fn after_key<C: ColumnTrait>(
    sort: C,
    id: C,
    key: (impl Into<Value>, impl Into<Value>),
    order: &Order,
) -> Condition {
    let (sort_value, id_value) = (key.0.into(), key.1.into());
    let (sort_beyond, id_beyond) = match order {
        Order::Desc => (sort.lt(sort_value.clone()), id.lt(id_value)),
        _ => (sort.gt(sort_value.clone()), id.gt(id_value)),
    };
    Condition::any()
        .add(sort_beyond)
        .add(Condition::all().add(sort.eq(sort_value)).add(id_beyond))
}

/// `query` in keyset order of (`sort`, `id`) in `order`, from after `after` (a cursor decoded
/// by [`PageTokens::decode`]; `None` for the first page).
pub fn keyset<E: EntityTrait, C: ColumnTrait>(
    query: Select<E>,
    sort: C,
    id: C,
    after: Option<(impl Into<Value>, impl Into<Value>)>,
    order: Order,
) -> Select<E> {
    let query = match after {
        Some(key) => query.filter(after_key(sort, id, key, &order)),
        None => query,
    };
    query.order_by(sort, order.clone()).order_by(id, order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(-1).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn token_round_trips_within_its_scope() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode("ListMembers|org_a|", &("2026-01-01", "user_9"));
        let cursor: Option<(String, String)> = tokens.decode("ListMembers|org_a|", &token).unwrap();
        assert_eq!(cursor, Some(("2026-01-01".into(), "user_9".into())));
        assert_eq!(
            tokens
                .decode::<(String, String)>("ListMembers|org_a|", "")
                .unwrap(),
            None
        );
    }

    #[test]
    fn token_for_another_scope_is_refused() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode("ListMembers|org_a|", &"user_9");
        let err = tokens
            .decode::<String>("ListMembers|org_b|", &token)
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn tampered_token_is_refused() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.encode("scope", &"user_1");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[8] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(tokens.decode::<String>("scope", &tampered).is_err());
        assert!(tokens.decode::<String>("scope", "!!notbase64").is_err());
        assert!(tokens.decode::<String>("scope", "AAAA").is_err());
        let other_key = PageTokens::new(b"other");
        assert!(other_key.decode::<String>("scope", &token).is_err());
    }

    #[test]
    fn page_splits_off_the_extra_row() {
        let tokens = PageTokens::new(b"k");
        let (rows, next) = tokens.page("s", vec![1, 2, 3], 2, |r| *r);
        assert_eq!(rows, [1, 2]);
        assert_eq!(tokens.decode::<i32>("s", &next).unwrap(), Some(2));
        let (rows, next) = tokens.page("s", vec![1, 2], 2, |r| *r);
        assert_eq!(rows, [1, 2]);
        assert!(next.is_empty());
    }
}
