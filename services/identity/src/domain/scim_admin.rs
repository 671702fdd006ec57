//! The pure rules of SCIM administration (rule ID-14): what a SCIM token secret looks like, how
//! many tokens an organization may hold, what valid group-to-role settings are, and the
//! refusals of token authentication, each reason named once.

use orgplane_platform::ApiError;
use orgplane_proto::organization::v1::OrgRole;

use super::validation::Violations;
use orgplane_platform::error::Reason;

/// The prefix of every SCIM token secret, so that scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "opscim_";
/// Characters after the prefix: 32 random bytes in unpadded base64url.
const TOKEN_BODY_CHARS: usize = 43;
/// Most tokens an organization may hold, DISABLED ones included.
pub const MAX_TOKENS_PER_ORGANIZATION: u64 = 25;
/// Most group-to-role mappings in an organization's settings.
pub const MAX_MAPPINGS: usize = 100;
/// Longest group `displayName` a mapping may name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 256;
/// How often `last_used_time` is written at most (once a minute per token).
pub const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Whether `secret` has the shape of a SCIM token (checked before any database read).
pub fn looks_like_token(secret: &str) -> bool {
    secret.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
        body.len() == TOKEN_BODY_CHARS
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The non-secret hint of a token: its prefix and last four characters.
pub fn partial_hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{TOKEN_PREFIX}…{tail}")
}

/// A role SCIM may give (`default_role` or a mapping's): any role but OWNER and UNSPECIFIED.
pub fn check_provisioned_role(v: &mut Violations, field: &str, role: i32) -> OrgRole {
    match OrgRole::try_from(role) {
        Ok(OrgRole::Owner) => {
            v.add(
                field,
                "OWNER cannot be given through SCIM; choose another role",
            );
            OrgRole::User
        }
        Ok(OrgRole::Unspecified) => {
            v.add(field, "required");
            OrgRole::User
        }
        Ok(r) => r,
        Err(_) => {
            v.add(field, "unknown role");
            OrgRole::User
        }
    }
}

/// Group-to-role mappings: at most [`MAX_MAPPINGS`], each group name 1 to
/// [`MAX_GROUP_NAME_CHARS`] characters (surrounding space trimmed) and named once ignoring case,
/// each role one SCIM may give. Answers (name as given, trimmed; role), in order.
pub fn check_mappings(v: &mut Violations, mappings: &[(String, i32)]) -> Vec<(String, OrgRole)> {
    if mappings.len() > MAX_MAPPINGS {
        v.add(
            "scim_settings.group_mappings",
            &format!("at most {MAX_MAPPINGS} mappings"),
        );
        return Vec::new();
    }
    let mut seen: Vec<String> = Vec::with_capacity(mappings.len());
    let mut out = Vec::with_capacity(mappings.len());
    for (i, (group, role)) in mappings.iter().enumerate() {
        let name_field = format!("scim_settings.group_mappings[{i}].group_display_name");
        let role_field = format!("scim_settings.group_mappings[{i}].organization_role");
        let name = group.trim();
        let chars = name.chars().count();
        if chars == 0 {
            v.add(&name_field, "required");
        } else if chars > MAX_GROUP_NAME_CHARS {
            v.add(
                &name_field,
                &format!("at most {MAX_GROUP_NAME_CHARS} characters"),
            );
        } else if name.chars().any(char::is_control) {
            v.add(&name_field, "must not contain control characters");
        }
        let key = group_key(name);
        if chars > 0 && seen.contains(&key) {
            v.add(
                &name_field,
                "names a group already mapped (case is ignored)",
            );
        }
        seen.push(key);
        let role = check_provisioned_role(v, &role_field, *role);
        out.push((name.to_owned(), role));
    }
    out
}

/// The form in which group names are compared: lower case (what [`super`]'s callers and the
/// stored groups' `display_name_key` use).
pub fn group_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A refusal of SCIM administration or authentication.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScimAdminError {
    /// The organization holds [`MAX_TOKENS_PER_ORGANIZATION`] tokens already.
    #[error(
        "an organization may hold at most {MAX_TOKENS_PER_ORGANIZATION} SCIM tokens, disabled ones included"
    )]
    TokenLimit,
    /// An unknown, malformed or DISABLED token, or one of an organization that is gone: one
    /// answer for all, so a caller learns nothing about which.
    #[error("the SCIM token is invalid or disabled")]
    TokenInvalid,
}

impl From<ScimAdminError> for ApiError {
    fn from(e: ScimAdminError) -> ApiError {
        let message = e.to_string();
        match e {
            ScimAdminError::TokenLimit => {
                ApiError::failed_precondition(Reason::ScimTokenLimit, "scim_tokens", message)
            }
            ScimAdminError::TokenInvalid => {
                ApiError::unauthenticated(Reason::ScimTokenInvalid, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_token;

    #[test]
    fn id_14_minted_tokens_have_the_checked_shape_and_a_four_character_hint() {
        let secret = random_token(TOKEN_PREFIX);
        assert!(looks_like_token(&secret), "{secret}");
        let hint = partial_hint(&secret);
        assert!(hint.starts_with("opscim_…"));
        assert!(secret.ends_with(hint.trim_start_matches("opscim_…")));
        assert_eq!(hint.chars().count(), "opscim_…".chars().count() + 4);
        assert!(!looks_like_token(&secret[..secret.len() - 1]));
        assert!(!looks_like_token(&format!("{secret}A")));
        assert!(!looks_like_token(&secret.replace("opscim_", "opscmi_")));
        assert!(!looks_like_token(&format!("opscim_{}", "!".repeat(43))));
    }

    #[test]
    fn id_14_mappings_refuse_owner_unspecified_duplicates_and_overlong_names() {
        let mut v = Violations::default();
        let ok = check_mappings(
            &mut v,
            &[
                ("Admins".into(), OrgRole::Admin as i32),
                ("devs".into(), OrgRole::Developer as i32),
            ],
        );
        assert!(v.finish().is_ok());
        assert_eq!(ok[0], ("Admins".into(), OrgRole::Admin));
        for bad in [
            vec![("Admins".into(), OrgRole::Owner as i32)],
            vec![("Admins".into(), OrgRole::Unspecified as i32)],
            vec![("Admins".into(), 99)],
            vec![
                ("Admins".into(), OrgRole::Admin as i32),
                ("ADMINS ".into(), OrgRole::User as i32),
            ],
            vec![(String::new(), OrgRole::User as i32)],
            vec![("x".repeat(257), OrgRole::User as i32)],
            (0..101)
                .map(|i| (format!("g{i}"), OrgRole::User as i32))
                .collect(),
        ] {
            let mut v = Violations::default();
            check_mappings(&mut v, &bad);
            assert!(v.finish().is_err(), "{bad:?}");
        }
        let mut v = Violations::default();
        check_mappings(&mut v, &[("x".repeat(256), OrgRole::User as i32)]);
        assert!(v.finish().is_ok());
    }
}
