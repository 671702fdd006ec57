//! Conversions between stored rows and API messages, ids, times, etags and input validation.

use orgplane_platform::convert::{etag, timestamp_ms as ts};
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::organization::v1::{
    Invite, InviteState, Member, OrgRole, Organization, OrganizationType, Unit,
};
use tonic::Code;

use crate::store::{invite, member, organization, unit};

/// A new id `<prefix>_<uuidv7>`: opaque, sorts by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// The role stored as a number.
pub fn role_of(v: i32) -> OrgRole {
    OrgRole::try_from(v).unwrap_or(OrgRole::Unspecified)
}

/// The API form of an organization.
pub fn organization(o: &organization::Model) -> Organization {
    Organization {
        id: o.id.clone(),
        name: o.name.clone(),
        r#type: o.org_type,
        primary_email: o.primary_email.clone(),
        state: o.state,
        owner_user_id: o.owner_user_id.clone(),
        create_time: Some(ts(o.create_time_ms)),
        update_time: Some(ts(o.update_time_ms)),
        delete_time: o.delete_time_ms.map(ts),
        purge_time: o.purge_time_ms.map(ts),
        etag: etag(o.version),
    }
}

/// The API form of a membership (email and name filled in later from identity).
pub fn member(m: &member::Model) -> Member {
    Member {
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        email: m.email.clone(),
        display_name: String::new(),
        role: m.role,
        create_time: Some(ts(m.create_time_ms)),
        update_time: Some(ts(m.update_time_ms)),
        etag: etag(m.version),
    }
}

/// The state an invite is in at `now_ms` (PENDING turns EXPIRED by time alone).
pub fn invite_state(i: &invite::Model, now_ms: i64) -> InviteState {
    let state = InviteState::try_from(i.state).unwrap_or(InviteState::Unspecified);
    if state == InviteState::Pending && now_ms >= i.expire_time_ms {
        InviteState::Expired
    } else {
        state
    }
}

/// The API form of an invite at `now_ms`.
pub fn invite(i: &invite::Model, organization_name: &str, now_ms: i64) -> Invite {
    Invite {
        id: i.id.clone(),
        organization_id: i.organization_id.clone(),
        organization_name: organization_name.to_owned(),
        email: i.email.clone(),
        role: i.role,
        state: invite_state(i, now_ms) as i32,
        inviter_user_id: i.inviter_user_id.clone(),
        inviter_api_key_id: i.inviter_api_key_id.clone(),
        create_time: Some(ts(i.create_time_ms)),
        expire_time: Some(ts(i.expire_time_ms)),
        accept_time: i.accept_time_ms.map(ts),
        accepted_user_id: i.accepted_user_id.clone(),
        delete_time: i.delete_time_ms.map(ts),
    }
}

/// The API form of a unit.
pub fn unit(u: &unit::Model) -> Unit {
    Unit {
        id: u.id.clone(),
        organization_id: u.organization_id.clone(),
        parent_unit_id: u.parent_unit_id.clone(),
        name: u.name.clone(),
        depth: u.depth,
        create_time: Some(ts(u.create_time_ms)),
        update_time: Some(ts(u.update_time_ms)),
        etag: etag(u.version),
    }
}

/// INVALID_ARGUMENT with a specific reason and one field violation.
pub fn invalid(reason: &str, field: &str, why: &str) -> ApiError {
    ApiError::new(
        Code::InvalidArgument,
        reason,
        format!("invalid {field}: {why}"),
    )
    .violation(field, why)
}

/// INVALID_ARGUMENT unless `value` is set.
pub fn required(field: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() {
        Err(ApiError::invalid_argument(field, "required"))
    } else {
        Ok(())
    }
}

/// A display name: trimmed, 1-100 characters, no control characters (ORG-1, ORG-9).
pub fn name(field: &str, raw: &str) -> ApiResult<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_argument(field, "must not be empty"));
    }
    if trimmed.chars().count() > 100 {
        return Err(ApiError::invalid_argument(field, "at most 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An email address, normalized to lower case; INVALID_ARGUMENT when it is not one.
pub fn email(field: &str, raw: &str) -> ApiResult<String> {
    let e = raw.trim().to_lowercase();
    let bad = || ApiError::invalid_argument(field, "not an email address");
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

/// An organization type: a known value (UNSPECIFIED allowed: the type is optional).
pub fn org_type(v: i32) -> ApiResult<i32> {
    OrganizationType::try_from(v)
        .map(|t| t as i32)
        .map_err(|_| ApiError::invalid_argument("organization.type", "unknown type"))
}

/// A role that may be given by UpdateMemberRole or an invite: any but OWNER.
pub fn assignable_role(field: &str, v: i32) -> ApiResult<OrgRole> {
    match OrgRole::try_from(v) {
        Ok(OrgRole::Owner) => Err(invalid(
            "OWNER_ROLE_NOT_ASSIGNABLE",
            field,
            "OWNER is given only by TransferOwnership",
        )),
        Ok(OrgRole::Unspecified) => Err(ApiError::invalid_argument(field, "required")),
        Ok(r) => Ok(r),
        Err(_) => Err(ApiError::invalid_argument(field, "unknown role")),
    }
}

/// An AIP-155 request id: empty, or a UUID.
pub fn request_id(raw: &str) -> ApiResult<Option<String>> {
    if raw.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::parse_str(raw)
        .map(|u| Some(u.hyphenated().to_string()))
        .map_err(|_| ApiError::invalid_argument("request_id", "must be a UUID"))
}

/// The paths of an update mask, checked against `allowed`.
pub fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> ApiResult<Vec<String>> {
    let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::invalid_argument(
            "update_mask",
            format!("name the fields to change: {}", allowed.join(", ")),
        ));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            return Err(ApiError::invalid_argument(
                "update_mask",
                format!(
                    "{p:?} cannot be updated; mutable fields: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(paths)
}

/// `s` escaped for a SQL LIKE pattern with `\` as the escape character.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
}
