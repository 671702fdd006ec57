//! The one canonical form of email addresses and domain names (rule ID-15), which every service
//! compares addresses in: identity's account keys, organization's invites and members, domains
//! and SSO. Addresses that could reach one account through two spellings are refused instead of
//! being folded together.

use unicode_normalization::UnicodeNormalization;

use crate::error::Reason;
use crate::{ApiError, ApiResult};

/// Reason for an address or domain refused because a character in it folds to an ASCII letter or
/// digit (KELVIN SIGN, fullwidth forms, …), so that two spellings could name one account.
pub const CONFUSABLE_REASON: Reason = Reason::EmailConfusableCharacters;

/// Longest address, in bytes (RFC 5321's path limit less the brackets).
const MAX_ADDRESS: usize = 254;
/// Longest local part, in bytes (RFC 5321).
const MAX_LOCAL: usize = 64;
/// Longest domain name in its ASCII form (RFC 1035).
const MAX_DOMAIN: usize = 253;

/// An address in its canonical form (rule ID-15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The address as given, trimmed, with the local part in NFC and the domain in IDNA ASCII
    /// lower case: what is shown and mailed to.
    pub address: String,
    /// The comparison key: [`Self::address`] with the local part's ASCII letters lower-cased.
    pub key: String,
    /// The domain, IDNA ASCII lower case.
    pub domain: String,
}

/// Parses `raw` (reported as request field `field`) into its canonical form; INVALID_ARGUMENT
/// with a BadRequest violation when it is not an address, or reason [`CONFUSABLE_REASON`] when
/// a character folds to an ASCII letter or digit.
pub fn canonical_email(field: &str, raw: &str) -> ApiResult<Email> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    let bad = || ApiError::invalid_argument(field, "not a valid email address");
    if trimmed.len() > MAX_ADDRESS * 4
        || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    refuse_confusables(field, trimmed)?;
    let (local, domain) = trimmed.rsplit_once('@').ok_or_else(bad)?;
    let local: String = local.nfc().collect();
    if local.is_empty() || local.len() > MAX_LOCAL || local.contains('@') {
        return Err(bad());
    }
    let domain = ascii_domain(domain).ok_or_else(bad)?;
    let address = format!("{local}@{domain}");
    if address.len() > MAX_ADDRESS {
        return Err(bad());
    }
    address.parse::<lettre::Address>().map_err(|_| bad())?;
    let key = format!("{}@{domain}", local.to_ascii_lowercase());
    Ok(Email {
        address,
        key,
        domain,
    })
}

/// A domain name in IDNA ASCII lower case (`Bücher.Example` → `xn--bcher-kva.example`), as
/// domains are stored and compared; INVALID_ARGUMENT on `field` when it is not a host name of
/// at least two labels.
pub fn canonical_domain(field: &str, raw: &str) -> ApiResult<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    refuse_confusables(field, trimmed)?;
    ascii_domain(trimmed)
        .ok_or_else(|| ApiError::invalid_argument(field, "not a valid domain name"))
}

/// The domain of an address that is already canonical (`key` or `address` of [`Email`]).
pub fn domain_of(canonical: &str) -> &str {
    canonical.rsplit_once('@').map_or("", |(_, d)| d)
}

fn ascii_domain(raw: &str) -> Option<String> {
    if raw.ends_with('.') || raw.starts_with('.') {
        return None;
    }
    let ascii = idna::domain_to_ascii_strict(raw).ok()?.to_ascii_lowercase();
    let labels: Vec<&str> = ascii.split('.').collect();
    let host_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| !t.bytes().all(|b| b.is_ascii_digit()));
    (labels.len() >= 2 && ascii.len() <= MAX_DOMAIN && labels.iter().all(host_label) && tld_ok)
        .then_some(ascii)
}

/// Refuses a non-ASCII character whose compatibility normalization or lower-casing yields an
/// ASCII letter or digit (rule ID-15).
fn refuse_confusables(field: &str, raw: &str) -> ApiResult<()> {
    let folds_to_ascii = |c: char| {
        !c.is_ascii()
            && (c.to_string().nfkc().any(|d| d.is_ascii_alphanumeric())
                || c.to_lowercase().any(|d| d.is_ascii_alphanumeric())
                || c.to_uppercase().any(|d| d.is_ascii_alphanumeric()))
    };
    if let Some(c) = raw.chars().find(|&c| folds_to_ascii(c)) {
        return Err(ApiError::invalid_argument_because(
            CONFUSABLE_REASON,
            field,
            format!(
                "contains {c:?} (U+{:04X}), which reads as an ASCII character; type the plain \
                 letter instead",
                c as u32
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
