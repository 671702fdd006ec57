//! Second-factor rules (rule ID-10): TOTP codes per RFC 6238 (SHA-1, 6 digits, 30-second steps,
//! one step of skew either way), the `otpauth://` URI, and recovery codes (readable, ≥ 60 bits,
//! stored as the SHA-256 of their normalized form). Which step a code matched is returned so
//! that the caller can accept each step at most once per user.

use orgplane_platform::{ApiError, ApiResult};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::crypto::{constant_time_eq, sha256_hex};

/// Seconds per TOTP step.
pub const TOTP_STEP_SECS: i64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Steps of skew accepted either way.
pub const TOTP_SKEW: i64 = 1;
/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_BYTES: usize = 20;
/// Recovery codes issued at once.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Crockford's base32 alphabet, lower case: no `i`, `l`, `o` or `u` to misread.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters of a recovery code (12 × 5 = 60 bits), shown in groups of four.
const RECOVERY_CODE_CHARS: usize = 12;

fn totp(secret: &[u8]) -> ApiResult<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_skew(TOTP_SKEW as u16)
        .with_step_duration(TOTP_STEP_SECS as u64)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| ApiError::internal(format!("TOTP parameters: {e}")))
}

/// A fresh random TOTP secret.
pub fn new_totp_secret() -> Vec<u8> {
    let bytes: [u8; TOTP_SECRET_BYTES] = rand::random();
    bytes.to_vec()
}

/// The secret as authenticator apps take it: base32 without padding (RFC 4648).
pub fn totp_secret_base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec())
        .to_base32()
        .trim_end_matches('=')
        .to_owned()
}

/// The TOTP step `unix_secs` falls in.
pub fn totp_step(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(TOTP_STEP_SECS)
}

/// The code of `secret` for step `step`.
pub fn totp_code(secret: &[u8], step: i64) -> ApiResult<String> {
    let time = u64::try_from(step.saturating_mul(TOTP_STEP_SECS))
        .map_err(|_| ApiError::internal("TOTP time before 1970"))?;
    Ok(totp(secret)?.generate(time).to_string())
}

/// Whether `code` has the shape of a TOTP code (6 ASCII digits, spaces ignored).
pub fn totp_code_shape(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The step (at `unix_secs`, ±[`TOTP_SKEW`]) whose code `code` is, if any. Every candidate is
/// compared in constant time.
pub fn totp_matching_step(secret: &[u8], code: &str, unix_secs: i64) -> ApiResult<Option<i64>> {
    let Some(code) = totp_code_shape(code) else {
        return Ok(None);
    };
    let now = totp_step(unix_secs);
    let mut matched = None;
    for step in (now - TOTP_SKEW)..=(now + TOTP_SKEW) {
        if step >= 0 && constant_time_eq(&totp_code(secret, step)?, &code) && matched.is_none() {
            matched = Some(step);
        }
    }
    Ok(matched)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `otpauth://totp/` URI (Key URI format) of `secret` for `account` at `issuer`.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> ApiResult<String> {
    let issuer = percent_encode(issuer);
    let uri = format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
        percent_encode(account),
        totp_secret_base32(secret),
    );
    url::Url::parse(&uri).map_err(ApiError::internal)?;
    Ok(uri)
}

/// A new recovery code, `xxxx-xxxx-xxxx`.
pub fn new_recovery_code() -> String {
    let chars: Vec<char> = (0..RECOVERY_CODE_CHARS)
        .map(|_| RECOVERY_ALPHABET[rand::random_range(0..RECOVERY_ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The normalized form of a typed recovery code (case, dashes and spaces ignored; `o` read as
/// `0`, `i` and `l` as `1`), or `None` when it cannot be one.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let mut out = String::with_capacity(RECOVERY_CODE_CHARS);
    for c in code.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        };
        if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
        if out.len() > RECOVERY_CODE_CHARS {
            return None;
        }
    }
    (out.len() == RECOVERY_CODE_CHARS).then_some(out)
}

/// What is stored of a recovery code: the SHA-256 of its normalized form.
pub fn recovery_code_hash(normalized: &str) -> String {
    sha256_hex(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows: the 8-digit values, whose last 6 digits are the 6-digit
    /// codes (the truncation is modulo 10^digits).
    #[test]
    fn id_10_rfc_6238_appendix_b_vectors_through_the_verifier() {
        let secret = b"12345678901234567890";
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in vectors {
            let six = &eight[2..];
            assert_eq!(totp_code(secret, totp_step(time)).unwrap(), six, "T={time}");
            assert_eq!(
                totp_matching_step(secret, six, time).unwrap(),
                Some(totp_step(time)),
                "T={time}"
            );
            // One step either way is accepted; two are not.
            let step = TOTP_STEP_SECS;
            assert_eq!(
                totp_matching_step(secret, six, time + step).unwrap(),
                Some(totp_step(time))
            );
            assert_eq!(
                totp_matching_step(secret, six, time - step).unwrap(),
                Some(totp_step(time))
            );
            assert_eq!(
                totp_matching_step(secret, six, time + 2 * step).unwrap(),
                None
            );
            assert_eq!(
                totp_matching_step(secret, six, time - 2 * step).unwrap(),
                None
            );
        }
        assert_eq!(totp_matching_step(secret, "28708", 59).unwrap(), None);
        assert_eq!(totp_matching_step(secret, "2870821", 59).unwrap(), None);
        assert_eq!(totp_matching_step(secret, "28708a", 59).unwrap(), None);
        assert_eq!(totp_matching_step(secret, "287 082", 59).unwrap(), Some(1));
    }

    #[test]
    fn id_10_secrets_are_160_bits_base32_and_the_uri_names_issuer_and_account() {
        let secret = new_totp_secret();
        assert_eq!(secret.len(), 20);
        let b32 = totp_secret_base32(&secret);
        assert_eq!(b32.len(), 32);
        assert!(!b32.contains('='));
        let uri = otpauth_uri("Orgplane", "ada+x@example.com", &secret).unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Orgplane:ada%2Bx@example.com?secret="),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={b32}&issuer=Orgplane")),
            "{uri}"
        );
        assert_ne!(new_totp_secret(), secret);
    }

    #[test]
    fn id_10_recovery_codes_are_readable_60_bit_and_normalize() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        let normalized = normalize_recovery_code(&code).unwrap();
        assert_eq!(normalized.len(), 12);
        assert_eq!(
            normalize_recovery_code(&code.to_uppercase().replace('-', " ")),
            Some(normalized.clone())
        );
        assert_eq!(
            normalize_recovery_code("abcd-efgh-jkOI"),
            Some("abcdefghjk01".into())
        );
        assert_eq!(normalize_recovery_code("abcd-efgh-jku0"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-jk"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-jkmn-p"), None);
        assert_ne!(new_recovery_code(), code);
        assert_eq!(recovery_code_hash(&normalized).len(), 64);
    }
}
