//! Which account a SCIM User names (rule ID-14, ID-15): `userName` checked (an address of a
//! domain the organization holds VERIFIED, unless the token relaxes it), its uniqueness key,
//! and the account found by canonical address or created without a password. An existing
//! account is linked only through a VERIFIED domain.

use orgplane_platform::audit::Entry;
use orgplane_platform::email::{Email, canonical_email};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::events::v1::UserEmailVerified;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::identity::v1::{AccountType, User};
use sea_orm::entity::prelude::*;
use serde_json::Value;

use super::ScimPrincipal;
use crate::app::users::profile_changed;
use crate::app::{App, new_id};
use crate::store::entity::user;
use orgplane_platform::error::Reason;

/// Reason of the 409 when the address belongs to an account the organization cannot vouch for.
pub const ACCOUNT_NOT_LINKABLE: Reason = Reason::ScimAccountNotLinkable;

/// The domain of the placeholder address an account gets when a relaxed token provisions a
/// `userName` that is no address: `.invalid` is reserved (RFC 2606), so it never resolves and
/// is never mailed.
pub const PLACEHOLDER_DOMAIN: &str = "scim.invalid";

/// A `userName`, checked: its uniqueness key and the account address it stands for.
pub(super) struct UserName {
    /// The canonical address's key, or [`name_key`] for a name that is no address.
    pub key: String,
    /// The account's address (a placeholder for a name that is no address).
    pub email: Email,
    /// Whether the organization holds the address's domain VERIFIED.
    pub verified: bool,
}

/// The uniqueness key of a `userName` that is no address: `name:` and the name lower-cased
/// (SCIM compares `userName` ignoring case); `None` when empty, over 256 characters or with
/// control characters. The prefix keeps it apart from address keys.
fn name_key(raw: &str) -> Option<String> {
    let name = raw.trim();
    let fits = !name.is_empty() && name.chars().count() <= 256;
    (fits && !name.chars().any(char::is_control)).then(|| format!("name:{}", name.to_lowercase()))
}

/// The uniqueness key of any `userName`: the canonical address's, else [`name_key`].
pub(super) fn user_name_key(raw: &str) -> Option<String> {
    match canonical_email("userName", raw) {
        Ok(email) => Some(email.key),
        Err(_) => name_key(raw),
    }
}

/// The account's display name from the SCIM name attributes, else the address's local part.
fn display_name_of(resource: &Value, email: &Email) -> String {
    let name = &resource["name"];
    let joined = [name["givenName"].as_str(), name["familyName"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    [
        resource["displayName"].as_str(),
        name["formatted"].as_str(),
        Some(joined.as_str()),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|n| !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control))
    .map(str::to_owned)
    .unwrap_or_else(|| {
        email
            .address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

impl App {
    /// Checks `userName` (rule ID-15 form, a VERIFIED domain of the organization unless the
    /// token relaxes it). A relaxed token also accepts a `userName` that is no address (the
    /// conformance testers invent such names): its account gets a placeholder address of
    /// [`PLACEHOLDER_DOMAIN`], never verified, never linked, never mailed.
    pub(super) fn scim_user_name(&self, p: &ScimPrincipal, raw: &str) -> ApiResult<UserName> {
        let email = match canonical_email("userName", raw) {
            Ok(email) => email,
            Err(refused) if p.allow_unverified_user_names => {
                let key = name_key(raw).ok_or(refused)?;
                let placeholder = format!("{}@{PLACEHOLDER_DOMAIN}", new_id("scim"));
                return Ok(UserName {
                    key,
                    email: canonical_email("userName", &placeholder)?,
                    verified: false,
                });
            }
            Err(refused) => return Err(refused),
        };
        let verified = self
            .replica
            .holds_verified(&p.organization_id, &email.domain);
        if !verified && !p.allow_unverified_user_names {
            return Err(ApiError::invalid_argument(
                "userName",
                format!(
                    "{} is not a VERIFIED domain of this organization",
                    email.domain
                ),
            ));
        }
        Ok(UserName {
            key: email.key.clone(),
            email,
            verified,
        })
    }

    /// The uniqueness key of a new `userName` for an existing SCIM user, checked as at creation.
    /// The linked account keeps its own address: an organization renames its SCIM user, never
    /// the account, which may belong to other organizations too.
    pub(super) fn scim_user_name_key(&self, p: &ScimPrincipal, raw: &str) -> ApiResult<String> {
        match canonical_email("userName", raw) {
            Ok(_) => Ok(self.scim_user_name(p, raw)?.key),
            Err(refused) if p.allow_unverified_user_names => name_key(raw).ok_or(refused),
            Err(refused) => Err(refused),
        }
    }

    /// The account `email` names, or a new one without a password: linked only when the
    /// domain is VERIFIED by the organization.
    pub(super) async fn scim_account(
        &self,
        unit: &mut WriteUnit,
        call: &Call,
        p: &ScimPrincipal,
        email: &Email,
        verified: bool,
        resource: &Value,
    ) -> ApiResult<user::Model> {
        if let Some(existing) = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email.key))
            .one(&**unit)
            .await?
        {
            if !verified {
                return Err(ApiError::already_exists(
                    ACCOUNT_NOT_LINKABLE,
                    "an account with this address exists and its domain is not VERIFIED by this organization",
                ));
            }
            return Ok(existing);
        }
        let now = self.now_ms();
        let row = user::Model {
            id: new_id("user"),
            email: email.address.clone(),
            email_key: email.key.clone(),
            email_verified: verified,
            display_name: display_name_of(resource, email),
            account_type: AccountType::Business as i32,
            // No password is usable: an empty hash never verifies (SSO or a reset link).
            password_hash: String::new(),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: None,
        };
        user::ActiveModel::from(row.clone())
            .insert(&**unit)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    ApiError::aborted(
                        Reason::ConcurrentWrite,
                        "the account was created meanwhile; retry",
                    )
                } else {
                    e.into()
                }
            })?;
        self.audit
            .write(
                &**unit,
                call,
                Entry::new(&p.organization_id, "user.create", "user", &row.id)
                    .change(None, Some(&User::from(&row))),
            )
            .await?;
        unit.append(profile_changed(&row)).await?;
        if verified {
            unit.append(Payload::UserEmailVerified(UserEmailVerified {
                user_id: row.id.clone(),
                email: row.email.clone(),
            }))
            .await?;
        }
        Ok(row)
    }
}
