//! SCIM bearer tokens (rule ID-14): CreateScimToken, ListScimTokens, UpdateScimToken, and
//! [`authenticate`], which the SCIM HTTP adapter runs on every request. An OWNER or ADMIN
//! manages them (changes after a recent sign-in, as for SSO connections); the secret
//! (`opscim_…`) is shown once and stored as its SHA-256 digest only; audit records carry the
//! token's message, never the secret.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::pagination::{keyset, page_size};
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::identity::v1::ScimTokenState;
use sea_orm::entity::prelude::*;
use sea_orm::{Order, PaginatorTrait, QuerySelect};

use super::ScimPrincipal;
use crate::app::{App, new_id};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::Error;
use crate::domain::scim_admin::{
    LAST_USED_GRANULARITY_MS, MAX_TOKENS_PER_ORGANIZATION, ScimAdminError, TOKEN_PREFIX,
    looks_like_token, partial_hint,
};
use crate::domain::validation::{Violations, check_display_name, check_request_id};
use crate::store::entity::scim_token;

/// What other members are told when they try to manage SCIM.
const MANAGERS_ONLY: &str = "only an OWNER or ADMIN may manage SCIM provisioning";

/// A CreateScimToken request.
#[derive(Debug, Clone, Default)]
pub struct NewScimToken {
    /// The organization the token provisions.
    pub organization_id: String,
    /// A name for people.
    pub display_name: String,
    /// `userName` need not be of a VERIFIED domain.
    pub allow_unverified_user_names: bool,
    /// The client's idempotency key (may be empty).
    pub request_id: String,
}

/// A created token and its secret, shown this once (empty on an idempotent retry).
#[derive(Clone)]
pub struct CreatedScimToken {
    /// The token.
    pub token: scim_token::Model,
    /// The secret, `opscim_…`; empty when a retry found the first call's token.
    pub secret: String,
}

impl std::fmt::Debug for CreatedScimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedScimToken")
            .field("token", &self.token.id)
            .finish_non_exhaustive()
    }
}

/// An UpdateScimToken request: the fields named in `paths` take their values from here.
#[derive(Debug, Clone, Default)]
pub struct UpdateScimToken {
    /// The token (`scimt_…`).
    pub id: String,
    /// New name (path `display_name`).
    pub display_name: String,
    /// New state (path `state`), the wire enum's number.
    pub state: i32,
    /// New verified-domain requirement (path `allow_unverified_user_names`).
    pub allow_unverified_user_names: bool,
    /// The update mask.
    pub paths: Vec<String>,
    /// The etag the caller read (empty: whatever is current).
    pub etag: String,
}

/// The principal of an `opscim_…` secret: UNAUTHENTICATED `SCIM_TOKEN_INVALID` when malformed,
/// unknown or DISABLED, or when its organization is no longer ACTIVE (the role replica says).
/// Records the use at most once a minute per token.
pub async fn authenticate(app: &App, secret: &str) -> ApiResult<ScimPrincipal> {
    if !looks_like_token(secret) {
        return Err(ScimAdminError::TokenInvalid.into());
    }
    let row = scim_token::Entity::find()
        .filter(scim_token::Column::TokenHash.eq(sha256_hex(secret)))
        .one(&app.db)
        .await?
        .ok_or(ScimAdminError::TokenInvalid)?;
    if row.state != ScimTokenState::Active as i32 {
        return Err(ScimAdminError::TokenInvalid.into());
    }
    app.require_roles_synced()?;
    let live = app
        .replica
        .with_organization(&row.organization_id, |o| o.is_active())
        .unwrap_or(false);
    if !live {
        return Err(ScimAdminError::TokenInvalid.into());
    }
    let now = app.now_ms();
    if row
        .last_used_ms
        .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
    {
        // Coarse on purpose: at most one write per token and minute.
        let written = scim_token::Entity::update_many()
            .col_expr(scim_token::Column::LastUsedMs, Expr::value(now))
            .filter(scim_token::Column::Id.eq(&row.id))
            .exec(&app.db)
            .await;
        if let Err(e) = written {
            tracing::debug!(error = %e, scim_token_id = %row.id, "recording SCIM token use failed");
        }
    }
    Ok(ScimPrincipal {
        organization_id: row.organization_id,
        token_id: row.id,
        allow_unverified_user_names: row.allow_unverified,
    })
}

impl App {
    /// CreateScimToken (rule ID-14); a refusal is audited in a known organization.
    pub async fn create_scim_token(
        &self,
        call: &Call,
        cmd: NewScimToken,
    ) -> ApiResult<CreatedScimToken> {
        let result = self.try_create_scim_token(call, &cmd).await;
        let org = &cmd.organization_id;
        self.audit
            .audited(&self.db, call, result, || async {
                self.knows_organization(org)
                    .then(|| Entry::new(org, "scim_token.created", "scim_token", ""))
            })
            .await
    }

    async fn try_create_scim_token(
        &self,
        call: &Call,
        cmd: &NewScimToken,
    ) -> ApiResult<CreatedScimToken> {
        let org = cmd.organization_id.as_str();
        let mut v = Violations::default();
        if org.is_empty() {
            v.add("organization_id", "required");
        }
        let name = v.check(check_display_name(
            "scim_token.display_name",
            &cmd.display_name,
        ));
        v.check(check_request_id(&cmd.request_id));
        v.finish()?;
        self.require_org_manager(call, org, true, MANAGERS_ONLY)?;
        if let Some(first) = self.token_of_request(org, &cmd.request_id).await? {
            return Ok(CreatedScimToken {
                token: first,
                secret: String::new(),
            });
        }
        let user = call.principal.require_user()?;
        let secret = random_token(TOKEN_PREFIX);
        let now = self.now_ms();
        let row = scim_token::Model {
            id: new_id("scimt"),
            organization_id: org.to_owned(),
            display_name: name.unwrap_or_default(),
            token_hash: sha256_hex(&secret),
            partial_hint: partial_hint(&secret),
            state: ScimTokenState::Active as i32,
            allow_unverified: cmd.allow_unverified_user_names,
            creator_user_id: user.user_id.clone(),
            request_id: (!cmd.request_id.is_empty()).then(|| cmd.request_id.clone()),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            last_used_ms: None,
        };
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let held = scim_token::Entity::find()
            .filter(scim_token::Column::OrganizationId.eq(org))
            .count(&*unit)
            .await?;
        if held >= MAX_TOKENS_PER_ORGANIZATION {
            return Err(ScimAdminError::TokenLimit.into());
        }
        if let Err(e) = scim_token::ActiveModel::from(row.clone())
            .insert(&*unit)
            .await
        {
            if orgplane_platform::db::is_unique_violation(&e) {
                drop(unit);
                if let Some(first) = self.token_of_request(org, &cmd.request_id).await? {
                    return Ok(CreatedScimToken {
                        token: first,
                        secret: String::new(),
                    });
                }
            }
            return Err(e.into());
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(org, "scim_token.created", "scim_token", &row.id)
                    .change(None, Some(&row)),
            )
            .await?;
        unit.commit().await?;
        Ok(CreatedScimToken { token: row, secret })
    }

    /// The token of `org` created with `request_id`, if any (none for an empty `request_id`).
    async fn token_of_request(
        &self,
        org: &str,
        request_id: &str,
    ) -> ApiResult<Option<scim_token::Model>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(scim_token::Entity::find()
            .filter(scim_token::Column::OrganizationId.eq(org))
            .filter(scim_token::Column::RequestId.eq(request_id))
            .one(&self.db)
            .await?)
    }

    /// ListScimTokens: a page of the organization's tokens, oldest first (never a secret).
    pub async fn list_scim_tokens(
        &self,
        call: &Call,
        org: &str,
        requested_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<scim_token::Model>, String)> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let size = page_size(requested_size)?;
        let standing = self.standing(&call.principal, org)?;
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(Error::InsufficientRole(MANAGERS_ONLY).into());
        }
        let scope = format!("ListScimTokens|{org}");
        let after: Option<(i64, String)> = self.page_tokens.decode(&scope, page_token)?;
        let q = scim_token::Entity::find().filter(scim_token::Column::OrganizationId.eq(org));
        let rows = keyset(
            q,
            scim_token::Column::CreateTimeMs,
            scim_token::Column::Id,
            after,
            Order::Asc,
        )
        .limit(size + 1)
        .all(&self.db)
        .await?;
        Ok(self
            .page_tokens
            .page(&scope, rows, size, |t| (t.create_time_ms, t.id.clone())))
    }

    /// The token `id` if the caller may manage it (NOT_FOUND otherwise, whether or not it
    /// exists).
    async fn visible_token(&self, principal: &Principal, id: &str) -> ApiResult<scim_token::Model> {
        if id.is_empty() {
            return Err(ApiError::invalid_argument("scim_token.id", "required"));
        }
        principal.require_authenticated()?;
        let hidden = || ApiError::not_found("scim_token", id);
        let row = scim_token::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(hidden)?;
        let standing = self.standing_or(principal, &row.organization_id, hidden)?;
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(Error::InsufficientRole(MANAGERS_ONLY).into());
        }
        Ok(row)
    }

    /// UpdateScimToken: renames, disables or enables a token, or changes its verified-domain
    /// requirement; audited with the token before and after. A refusal is audited in the
    /// token's organization.
    pub async fn update_scim_token(
        &self,
        call: &Call,
        cmd: UpdateScimToken,
    ) -> ApiResult<scim_token::Model> {
        let result = self.try_update_scim_token(call, &cmd).await;
        self.audit
            .audited(&self.db, call, result, || async {
                let row = scim_token::Entity::find_by_id(cmd.id.clone())
                    .one(&self.db)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "reading a refused token failed"))
                    .ok()
                    .flatten()?;
                Some(Entry::new(
                    &row.organization_id,
                    "scim_token.updated",
                    "scim_token",
                    &row.id,
                ))
            })
            .await
    }

    async fn try_update_scim_token(
        &self,
        call: &Call,
        cmd: &UpdateScimToken,
    ) -> ApiResult<scim_token::Model> {
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let before = self.visible_token(&call.principal, &cmd.id).await?;
        self.require_org_manager(call, &before.organization_id, true, MANAGERS_ONLY)?;
        check_etag(&cmd.etag, before.version, "scim_token")?;
        let mut after = before.clone();
        for path in &cmd.paths {
            match path.as_str() {
                "display_name" => {
                    after.display_name =
                        check_display_name("scim_token.display_name", &cmd.display_name)?;
                }
                "state" => {
                    let state =
                        ScimTokenState::try_from(cmd.state).unwrap_or(ScimTokenState::Unspecified);
                    if state == ScimTokenState::Unspecified {
                        return Err(ApiError::invalid_argument(
                            "scim_token.state",
                            "SCIM_TOKEN_STATE_ACTIVE or SCIM_TOKEN_STATE_DISABLED required",
                        ));
                    }
                    after.state = state as i32;
                }
                "allow_unverified_user_names" => {
                    after.allow_unverified = cmd.allow_unverified_user_names;
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    ));
                }
            }
        }
        after.version += 1;
        after.update_time_ms = self.now_ms();
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let done = scim_token::Entity::update_many()
            .col_expr(
                scim_token::Column::DisplayName,
                Expr::value(after.display_name.clone()),
            )
            .col_expr(scim_token::Column::State, Expr::value(after.state))
            .col_expr(
                scim_token::Column::AllowUnverified,
                Expr::value(after.allow_unverified),
            )
            .col_expr(scim_token::Column::Version, Expr::value(after.version))
            .col_expr(
                scim_token::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .filter(scim_token::Column::Id.eq(&before.id))
            .filter(scim_token::Column::Version.eq(before.version))
            .exec(&*unit)
            .await?;
        if done.rows_affected != 1 {
            return Err(etag_mismatch("scim_token"));
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(
                    &before.organization_id,
                    "scim_token.updated",
                    "scim_token",
                    &before.id,
                )
                .change(Some(&before), Some(&after)),
            )
            .await?;
        unit.commit().await?;
        Ok(after)
    }
}
