//! What a valid input is: names, emails, types, roles, request ids, update masks, and the
//! states derived from stored values.

use orgplane_platform::policy::{
    MAX_REAUTH_MAX_AGE_SECS, MIN_REAUTH_MAX_AGE_SECS, MfaRequirement as Mfa,
};
use orgplane_proto::organization::v1::{
    InviteState, MfaRequirement, OrgRole, OrganizationKind, OrganizationType, SignInMethod,
};

use super::{Error, Result};

/// INVALID_ARGUMENT unless `value` is set.
pub fn required(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        Err(Error::invalid(field, "required"))
    } else {
        Ok(())
    }
}

/// A display name: trimmed, 1-100 characters, no control characters (ORG-1, ORG-9).
pub fn name(field: &str, raw: &str) -> Result<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > 100 {
        return Err(Error::invalid(field, "at most 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// An email address, normalized to lower case; INVALID_ARGUMENT when it is not one.
pub fn email(field: &str, raw: &str) -> Result<String> {
    let e = raw.trim().to_lowercase();
    let bad = || Error::invalid(field, "not an email address");
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(bad());
    }
    Ok(e)
}

/// An optional email: empty (after trimming) stays empty.
pub fn optional_email(field: &str, raw: &str) -> Result<String> {
    if raw.trim().is_empty() {
        Ok(String::new())
    } else {
        email(field, raw)
    }
}

/// An organization type: a known value (UNSPECIFIED allowed: the type is optional).
pub fn org_type(v: i32) -> Result<i32> {
    OrganizationType::try_from(v)
        .map(|t| t as i32)
        .map_err(|_| Error::invalid("organization.type", "unknown type"))
}

/// An organization's kind as created (ORG-13): UNSPECIFIED is STANDARD.
pub fn org_kind(v: i32) -> Result<i32> {
    match OrganizationKind::try_from(v) {
        Ok(OrganizationKind::Unspecified) => Ok(OrganizationKind::Standard as i32),
        Ok(k) => Ok(k as i32),
        Err(_) => Err(Error::invalid("organization.kind", "unknown kind")),
    }
}

/// A role that may be given by UpdateMemberRole or an invite: any but OWNER.
pub fn assignable_role(field: &'static str, v: i32) -> Result<OrgRole> {
    match OrgRole::try_from(v) {
        Ok(OrgRole::Owner) => Err(Error::OwnerNotAssignable { field }),
        Ok(OrgRole::Unspecified) => Err(Error::invalid(field, "required")),
        Ok(r) => Ok(r),
        Err(_) => Err(Error::invalid(field, "unknown role")),
    }
}

/// The role stored as a number.
pub fn role_of(v: i32) -> OrgRole {
    OrgRole::try_from(v).unwrap_or(OrgRole::Unspecified)
}

/// An AIP-155 request id: empty, or a UUID.
pub fn request_id(raw: &str) -> Result<Option<String>> {
    if raw.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::parse_str(raw)
        .map(|u| Some(u.hyphenated().to_string()))
        .map_err(|_| Error::invalid("request_id", "must be a UUID"))
}

/// The paths of an update mask, checked against `allowed`.
pub fn mask_paths(paths: &[String], allowed: &[&str]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!("name the fields to change: {}", allowed.join(", ")),
        ));
    }
    for p in paths {
        if !allowed.contains(&p.as_str()) {
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "{p:?} cannot be updated; mutable fields: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(paths.to_vec())
}

/// A security policy's MFA requirement (rule ORG-16): a known value, not UNSPECIFIED.
pub fn mfa_requirement(field: &str, v: i32) -> Result<Mfa> {
    match MfaRequirement::try_from(v) {
        Ok(MfaRequirement::Optional) => Ok(Mfa::Optional),
        Ok(MfaRequirement::Required) => Ok(Mfa::Required),
        Ok(MfaRequirement::RequiredForPrivilegedRoles) => Ok(Mfa::RequiredForPrivilegedRoles),
        Ok(MfaRequirement::Unspecified) => Err(Error::invalid(
            field,
            "required: OPTIONAL, REQUIRED or REQUIRED_FOR_PRIVILEGED_ROLES",
        )),
        Err(_) => Err(Error::invalid(field, "unknown requirement")),
    }
}

/// A security policy's re-authentication age in seconds: whole seconds, one minute to one day
/// (rules ORG-16, ID-6).
pub fn reauth_max_age(field: &str, d: Option<&prost_types::Duration>) -> Result<i64> {
    let d = d.ok_or_else(|| Error::invalid(field, "required"))?;
    if d.nanos != 0 {
        return Err(Error::invalid(field, "must be whole seconds"));
    }
    if !(MIN_REAUTH_MAX_AGE_SECS..=MAX_REAUTH_MAX_AGE_SECS).contains(&d.seconds) {
        return Err(Error::invalid(
            field,
            format!(
                "must be {MIN_REAUTH_MAX_AGE_SECS} to {MAX_REAUTH_MAX_AGE_SECS} seconds (one minute to one day)"
            ),
        ));
    }
    Ok(d.seconds)
}

/// A security policy's allowed sign-in methods as `(password, sso)`: at least one, each known,
/// none twice (rule ORG-16).
pub fn sign_in_methods(field: &str, methods: &[i32]) -> Result<(bool, bool)> {
    if methods.is_empty() {
        return Err(Error::invalid(field, "allow at least one sign-in method"));
    }
    let (mut password, mut sso) = (false, false);
    for m in methods {
        let seen = match SignInMethod::try_from(*m) {
            Ok(SignInMethod::Password) => &mut password,
            Ok(SignInMethod::Sso) => &mut sso,
            Ok(SignInMethod::Unspecified) => {
                return Err(Error::invalid(
                    field,
                    "SIGN_IN_METHOD_UNSPECIFIED is not a method",
                ));
            }
            Err(_) => return Err(Error::invalid(field, "unknown sign-in method")),
        };
        if *seen {
            return Err(Error::invalid(field, "each method may be listed once"));
        }
        *seen = true;
    }
    Ok((password, sso))
}

/// The state of an invite stored as `state` expiring at `expire_time_ms`, at `now_ms` (PENDING
/// turns EXPIRED by time alone).
pub fn invite_state(state: i32, expire_time_ms: i64, now_ms: i64) -> InviteState {
    let state = InviteState::try_from(state).unwrap_or(InviteState::Unspecified);
    if state == InviteState::Pending && now_ms >= expire_time_ms {
        InviteState::Expired
    } else {
        state
    }
}

/// A branding address (rule ORG-13): an absolute `https://` URL with a host, at most 2048
/// characters.
pub fn https_uri(field: &str, raw: &str) -> Result<String> {
    if raw.len() > 2048 {
        return Err(Error::invalid(field, "at most 2048 characters"));
    }
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() && raw.starts_with("https://") => {
            Ok(raw.to_owned())
        }
        _ => Err(Error::invalid(field, "must be an https:// address")),
    }
}

/// A branding colour (rule ORG-13): `#rrggbb`, answered in lower case.
pub fn color(field: &str, raw: &str) -> Result<String> {
    let hex = raw.strip_prefix('#').unwrap_or_default();
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(field, "must be #rrggbb"));
    }
    Ok(raw.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_normalized() {
        assert_eq!(email("e", " Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.com",
            "a@b",
            "a b@c.com",
            "a@b..com",
            "a@@b.com",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("n", "  Acme ").unwrap(), "Acme");
        assert!(name("n", "   ").is_err());
        assert!(name("n", &"x".repeat(101)).is_err());
        assert!(name("n", &"é".repeat(100)).is_ok());
        assert!(name("n", "a\u{7}b").is_err());
    }

    #[test]
    fn org_13_branding_addresses_and_colours() {
        assert_eq!(
            https_uri("u", "https://cdn.example.com/logo.png").unwrap(),
            "https://cdn.example.com/logo.png"
        );
        let long = format!("https://example.com/{}", "a".repeat(2030));
        for bad in [
            "http://example.com/x",
            "https:/x",
            "example.com",
            "https://",
            &long,
        ] {
            assert!(https_uri("u", bad).is_err(), "{bad}");
        }
        assert_eq!(color("c", "#A0b1C2").unwrap(), "#a0b1c2");
        for bad in ["a0b1c2", "#a0b1c", "#a0b1c2f", "#g0b1c2", "#ééé"] {
            assert!(color("c", bad).is_err(), "{bad}");
        }
    }
}
