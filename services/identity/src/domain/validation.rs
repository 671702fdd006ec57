//! Input rules: email addresses (one canonical key per account), display names, passwords
//! (rule ID-3) and opaque token inputs. Each check names the request field it reports on.

use orgplane_platform::{ApiError, ApiResult};

/// Shortest password, in characters (rule ID-3).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password, in bytes (rule ID-3), refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Longest mail-link or refresh token accepted as input.
const MAX_TOKEN_INPUT: usize = 512;
/// Longest client-chosen request id.
pub const MAX_REQUEST_ID: usize = 128;

/// Validates an email address and returns it (local part in NFC, domain in IDNA ASCII lower
/// case) with its comparison key: the one canonical form of rule ID-15, shared by every service.
pub fn normalize_email(field: &str, raw: &str) -> ApiResult<(String, String)> {
    let email = orgplane_platform::email::canonical_email(field, raw)?;
    Ok((email.address, email.key))
}

/// A display name (users, API keys): 1–100 characters after trimming, no control characters.
pub fn check_display_name(field: &str, name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if len == 0 {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    if len > 100 {
        return Err(ApiError::invalid_argument(field, "at most 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(field, "no control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Checks the password policy (rule ID-3) for field `field`.
pub fn check_password_policy(field: &str, password: &str) -> ApiResult<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_argument(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid_argument(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An opaque token given as input (mail link, refresh token): present, ASCII, bounded.
pub fn check_token_input(field: &str, token: &str) -> ApiResult<()> {
    if token.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    if token.len() > MAX_TOKEN_INPUT || !token.is_ascii() {
        return Err(ApiError::invalid_argument(field, "malformed"));
    }
    Ok(())
}

/// A client-chosen request id: at most [`MAX_REQUEST_ID`] characters.
pub fn check_request_id(request_id: &str) -> ApiResult<()> {
    if request_id.len() > MAX_REQUEST_ID {
        return Err(ApiError::invalid_argument(
            "request_id",
            format!("at most {MAX_REQUEST_ID} characters"),
        ));
    }
    Ok(())
}

/// The violations found while checking a request, reported together as one INVALID_ARGUMENT.
#[derive(Debug, Default)]
pub struct Violations(Vec<ApiError>);

impl Violations {
    /// Keeps `result`'s value, or remembers its error.
    pub fn check<T>(&mut self, result: ApiResult<T>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Remembers a violation of `field`.
    pub fn add(&mut self, field: &str, description: &str) {
        self.0.push(ApiError::invalid_argument(field, description));
    }

    /// One INVALID_ARGUMENT listing every violation (with the first one's message), if any.
    pub fn finish(self) -> ApiResult<()> {
        let mut all = self.0.iter().map(|e| {
            let msg = e.message();
            // "invalid <field>: <why>"
            msg.strip_prefix("invalid ")
                .and_then(|m| m.split_once(": "))
                .unwrap_or(("request", msg))
        });
        let Some((field, why)) = all.next() else {
            return Ok(());
        };
        Err(
            all.fold(ApiError::invalid_argument(field, why), |merged, (f, w)| {
                merged.violation(f, w)
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_by_their_lower_case_key() {
        let (email, key) = normalize_email("email", "  Ada@Example.COM ").unwrap();
        assert_eq!(email, "Ada@example.com");
        assert_eq!(key, "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
        ] {
            assert!(normalize_email("email", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_policy_counts_characters_and_bytes() {
        assert!(check_password_policy("p", "short").is_err());
        assert!(check_password_policy("p", "twelve chars").is_ok());
        assert!(
            check_password_policy("p", &"é".repeat(129)).is_err(),
            "258 bytes"
        );
        assert!(
            check_password_policy("p", &"é".repeat(128)).is_ok(),
            "256 bytes"
        );
    }

    #[test]
    fn violations_are_reported_together() {
        let mut v = Violations::default();
        assert_eq!(
            v.check(check_display_name("name", " Ada ")),
            Some("Ada".into())
        );
        v.check(check_display_name("display_name", ""));
        v.add("account_type", "required");
        let err = v.finish().unwrap_err();
        assert_eq!(err.reason(), "INVALID_ARGUMENT");
        assert_eq!(err.message(), "invalid display_name: required");
        assert!(Violations::default().finish().is_ok());
    }
}
