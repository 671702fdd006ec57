//! API keys (rules ID-6, ID-7): CreateApiKey, GetApiKey, ListApiKeys, UpdateApiKey and
//! AuthenticateApiKey. Keys belong to their organization; the secret is shown once and only its
//! hash is stored.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::{Capability, Principal};
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::pagination::{keyset, page_size};
use orgplane_platform::roles::{OrgAction, allows};
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{ApiKeyCreated, ApiKeyStatusChanged};
use orgplane_proto::identity::v1::{ApiKey, ApiKeyKind, ApiKeyStatus};
use sea_orm::entity::prelude::*;
use sea_orm::{Order, QuerySelect};

use super::App;
use super::standing::OrgStanding;
use crate::crypto::{self, sha256_hex};
use crate::domain::Error;
use crate::domain::validation::{Violations, check_display_name, check_request_id};
use crate::store::entity::api_key;
use orgplane_platform::clients::workspace::WorkspaceLookup;
use orgplane_platform::error::Reason;

/// A CreateApiKey request.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// The organization the key belongs to.
    pub organization_id: String,
    /// Its display name.
    pub name: String,
    /// ADMIN or WORKSPACE, the wire enum's number.
    pub kind: i32,
    /// The workspace of a workspace key (empty: the Default Workspace).
    pub workspace_id: String,
    /// The client's idempotency key (may be empty).
    pub request_id: String,
}

/// A created key and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The key.
    pub key: api_key::Model,
    /// Its secret.
    pub secret: String,
}

/// A ListApiKeys request.
#[derive(Debug, Clone, Default)]
pub struct ListApiKeys {
    /// The organization.
    pub organization_id: String,
    /// The page size asked for.
    pub page_size: i32,
    /// The page token of the previous page.
    pub page_token: String,
    /// Only keys with this status (the wire enum's number; 0: any).
    pub status: i32,
    /// Only keys of this kind (0: any).
    pub kind: i32,
    /// Only keys of this workspace.
    pub workspace_id: Option<String>,
}

/// An UpdateApiKey request: the fields named in `paths` take their values from here.
#[derive(Debug, Clone, Default)]
pub struct UpdateApiKey {
    /// The key.
    pub id: String,
    /// New name (path `name`).
    pub name: String,
    /// New status (path `status`), the wire enum's number.
    pub status: i32,
    /// The update mask.
    pub paths: Vec<String>,
    /// The etag the caller read (empty: whatever is current).
    pub etag: String,
}

impl App {
    /// CreateApiKey (rules ID-6, ID-7); a refusal is audited.
    pub async fn create_api_key(&self, call: &Call, cmd: NewApiKey) -> ApiResult<CreatedApiKey> {
        let result = self.try_create_api_key(call, &cmd).await;
        let org = &cmd.organization_id;
        self.audit
            .audited(&self.db, call, result, || async {
                self.knows_organization(org)
                    .then(|| Entry::new(org, "api_key.create", "api_key", ""))
            })
            .await
    }

    async fn try_create_api_key(&self, call: &Call, cmd: &NewApiKey) -> ApiResult<CreatedApiKey> {
        let user = call.principal.require_user()?.clone();
        let org = cmd.organization_id.as_str();
        let request_id = cmd.request_id.as_str();
        let mut violations = Violations::default();
        if org.is_empty() {
            violations.add("organization_id", "required");
        }
        let name = violations.check(check_display_name("api_key.name", &cmd.name));
        let kind = ApiKeyKind::try_from(cmd.kind).unwrap_or(ApiKeyKind::Unspecified);
        if kind == ApiKeyKind::Unspecified {
            violations.add(
                "api_key.kind",
                "API_KEY_KIND_ADMIN or API_KEY_KIND_WORKSPACE required",
            );
        }
        if kind == ApiKeyKind::Admin && !cmd.workspace_id.is_empty() {
            violations.add("api_key.workspace_id", "admin keys belong to no workspace");
        }
        if cmd.workspace_id.len() > 128 {
            violations.add("api_key.workspace_id", "too long");
        }
        violations.check(check_request_id(request_id));
        violations.finish()?;
        let name = name.unwrap_or_default();
        self.require_roles_synced()?;
        let role = self
            .replica
            .admitted_role(org, &user)?
            .ok_or_else(|| ApiError::not_found("organization", org))?;
        let admin = kind == ApiKeyKind::Admin;
        if admin {
            if !allows(role, OrgAction::CreateAdminApiKeys) {
                return Err(Error::InsufficientRole(
                    "only an OWNER or ADMIN may create admin API keys",
                )
                .into());
            }
            self.require_org_step_up(call, org, role)?;
        } else if !allows(role, OrgAction::ManageApiKeys) {
            return Err(Error::InsufficientRole(
                "only an OWNER, ADMIN or DEVELOPER may create workspace API keys",
            )
            .into());
        }
        if let Some(existing) = self.key_of_request(&user.user_id, request_id).await? {
            return Err(Error::SecretAlreadyReturned {
                api_key_id: existing.id,
            }
            .into());
        }
        if !admin && !cmd.workspace_id.is_empty() {
            self.require_live_workspace(call, org, &cmd.workspace_id)
                .await?;
            // OWNER/ADMIN may develop everywhere; a DEVELOPER only where added (WS-5): a key
            // must not open a workspace its creator cannot enter.
            if !allows(role, OrgAction::ManageWorkspaces)
                && !self
                    .workspaces
                    .may_develop(call, org, &cmd.workspace_id, &user.user_id)
                    .await?
            {
                return Err(Error::InsufficientRole(
                    "a DEVELOPER may create keys only for workspaces they may develop in",
                )
                .into());
            }
        }
        let minted = crypto::mint_api_key(admin);
        let now = self.now_ms();
        let row = api_key::Model {
            id: minted.id.clone(),
            organization_id: org.to_owned(),
            workspace_id: cmd.workspace_id.clone(),
            kind: kind as i32,
            name,
            status: ApiKeyStatus::Active as i32,
            secret_hash: sha256_hex(&minted.secret),
            hint: minted.hint,
            creator_user_id: user.user_id.clone(),
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
            create_time_ms: now,
            update_time_ms: now,
            last_used_time_ms: None,
            version: 1,
        };
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        if let Err(e) = api_key::ActiveModel::from(row.clone()).insert(&*unit).await {
            if orgplane_platform::db::is_unique_violation(&e) {
                drop(unit);
                let existing = self.key_of_request(&user.user_id, request_id).await?;
                return Err(Error::SecretAlreadyReturned {
                    api_key_id: existing.map(|k| k.id).unwrap_or_default(),
                }
                .into());
            }
            return Err(e.into());
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(org, "api_key.create", "api_key", &row.id)
                    .change(None, Some(&ApiKey::from(&row))),
            )
            .await?;
        unit.append(Payload::ApiKeyCreated(ApiKeyCreated {
            api_key_id: row.id.clone(),
            organization_id: org.to_owned(),
            workspace_id: row.workspace_id.clone(),
            admin,
            active: true,
        }))
        .await?;
        unit.commit().await?;
        Ok(CreatedApiKey {
            key: row,
            secret: minted.secret,
        })
    }

    /// The key `user_id` created with `request_id`, if any (none for an empty `request_id`).
    async fn key_of_request(
        &self,
        user_id: &str,
        request_id: &str,
    ) -> ApiResult<Option<api_key::Model>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(api_key::Entity::find()
            .filter(api_key::Column::CreatorUserId.eq(user_id))
            .filter(api_key::Column::RequestId.eq(request_id))
            .one(&self.db)
            .await?)
    }

    /// Rule ID-7: `workspace_id` must be an ACTIVE workspace of `org`, as the workspace service
    /// says. Unknown and other organizations' workspaces answer the same NOT_FOUND.
    async fn require_live_workspace(
        &self,
        call: &Call,
        org: &str,
        workspace_id: &str,
    ) -> ApiResult<()> {
        match self.workspaces.workspace(call, workspace_id).await? {
            WorkspaceLookup::Found {
                organization_id,
                archived,
            } if organization_id == org => {
                if archived {
                    Err(Error::WorkspaceArchived {
                        workspace_id: workspace_id.to_owned(),
                    }
                    .into())
                } else {
                    Ok(())
                }
            }
            WorkspaceLookup::Malformed(why) => {
                Err(ApiError::invalid_argument("api_key.workspace_id", why))
            }
            _ => Err(ApiError::not_found("workspace", workspace_id)),
        }
    }

    /// The key `id` and the caller's standing in its organization, if the caller may manage it.
    async fn visible_key(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ApiResult<(api_key::Model, OrgStanding)> {
        if id.is_empty() {
            return Err(ApiError::invalid_argument("api_key_id", "required"));
        }
        principal.require_authenticated()?;
        let row = api_key::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("api_key", id))?;
        let standing = self.standing_or(principal, &row.organization_id, || {
            ApiError::not_found("api_key", id)
        })?;
        if !standing.allows(OrgAction::ManageApiKeys) {
            return Err(Error::InsufficientRole(
                "only an OWNER, ADMIN or DEVELOPER may manage API keys",
            )
            .into());
        }
        Ok((row, standing))
    }

    /// GetApiKey.
    pub async fn get_api_key(&self, call: &Call, id: &str) -> ApiResult<api_key::Model> {
        Ok(self.visible_key(&call.principal, id).await?.0)
    }

    /// ListApiKeys: a page of keys, newest first, and the next page token.
    pub async fn list_api_keys(
        &self,
        call: &Call,
        query: ListApiKeys,
    ) -> ApiResult<(Vec<api_key::Model>, String)> {
        let org = query.organization_id.as_str();
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let size = page_size(query.page_size)?;
        let standing = self.standing(&call.principal, org)?;
        if !standing.allows(OrgAction::ManageApiKeys) {
            return Err(Error::InsufficientRole(
                "only an OWNER, ADMIN or DEVELOPER may list API keys",
            )
            .into());
        }
        let status = ApiKeyStatus::try_from(query.status)
            .map_err(|_| ApiError::invalid_argument("status", "unknown status"))?;
        let kind = ApiKeyKind::try_from(query.kind)
            .map_err(|_| ApiError::invalid_argument("kind", "unknown kind"))?;
        let workspace = query.workspace_id.as_deref();
        let scope = format!(
            "ListApiKeys|{org}|{}|{}|{}",
            status as i32,
            kind as i32,
            serde_json::json!(workspace)
        );
        let after: Option<(i64, String)> = self.page_tokens.decode(&scope, &query.page_token)?;
        let mut q = api_key::Entity::find().filter(api_key::Column::OrganizationId.eq(org));
        if status != ApiKeyStatus::Unspecified {
            q = q.filter(api_key::Column::Status.eq(status as i32));
        }
        if kind != ApiKeyKind::Unspecified {
            q = q.filter(api_key::Column::Kind.eq(kind as i32));
        }
        if let Some(ws) = workspace {
            q = q.filter(api_key::Column::WorkspaceId.eq(ws));
        }
        let rows = keyset(
            q,
            api_key::Column::CreateTimeMs,
            api_key::Column::Id,
            after,
            Order::Desc,
        )
        .limit(size + 1)
        .all(&self.db)
        .await?;
        Ok(self
            .page_tokens
            .page(&scope, rows, size, |k| (k.create_time_ms, k.id.clone())))
    }
}

impl App {
    /// UpdateApiKey: renames or (de)activates a key; publishes `ApiKeyStatusChanged`; a refusal
    /// is audited in the key's organization.
    pub async fn update_api_key(
        &self,
        call: &Call,
        cmd: UpdateApiKey,
    ) -> ApiResult<api_key::Model> {
        let result = self.try_update_api_key(call, &cmd).await;
        self.audit
            .audited(&self.db, call, result, || async {
                let key = api_key::Entity::find_by_id(cmd.id.clone())
                    .one(&self.db)
                    .await
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "could not read the key of a refused update");
                    })
                    .ok()
                    .flatten()?;
                Some(Entry::new(
                    &key.organization_id,
                    "api_key.update",
                    "api_key",
                    &key.id,
                ))
            })
            .await
    }

    async fn try_update_api_key(
        &self,
        call: &Call,
        cmd: &UpdateApiKey,
    ) -> ApiResult<api_key::Model> {
        if cmd.id.is_empty() {
            return Err(ApiError::invalid_argument("api_key.id", "required"));
        }
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let (before, standing) = self.visible_key(&call.principal, &cmd.id).await?;
        if standing == OrgStanding::Service {
            // `read-api-keys` reads keys; changing one is for the organization's people.
            return Err(ApiError::permission_denied(
                Reason::UserOrAdminKeyRequired,
                "a service account may read API keys, not change them",
            ));
        }
        if before.kind == ApiKeyKind::Admin as i32
            && !standing.allows(OrgAction::CreateAdminApiKeys)
        {
            return Err(Error::InsufficientRole(
                "only an OWNER or ADMIN may change admin API keys",
            )
            .into());
        }
        check_etag(&cmd.etag, before.version, "api_key")?;
        let mut after = before.clone();
        for path in &cmd.paths {
            match path.as_str() {
                "name" => after.name = check_display_name("api_key.name", &cmd.name)?,
                "status" => {
                    let s = ApiKeyStatus::try_from(cmd.status).unwrap_or(ApiKeyStatus::Unspecified);
                    if s == ApiKeyStatus::Unspecified {
                        return Err(ApiError::invalid_argument(
                            "api_key.status",
                            "ACTIVE or INACTIVE required",
                        ));
                    }
                    after.status = s as i32;
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
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let done = api_key::Entity::update_many()
            .col_expr(api_key::Column::Name, Expr::value(after.name.clone()))
            .col_expr(api_key::Column::Status, Expr::value(after.status))
            .col_expr(api_key::Column::Version, Expr::value(after.version))
            .col_expr(
                api_key::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .filter(api_key::Column::Id.eq(&before.id))
            .filter(api_key::Column::Version.eq(before.version))
            .exec(&*unit)
            .await?;
        if done.rows_affected != 1 {
            return Err(etag_mismatch("api_key"));
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(
                    &before.organization_id,
                    "api_key.update",
                    "api_key",
                    &before.id,
                )
                .change(Some(&ApiKey::from(&before)), Some(&ApiKey::from(&after))),
            )
            .await?;
        let active = after.status == ApiKeyStatus::Active as i32;
        if after.status != before.status {
            unit.append(Payload::ApiKeyStatusChanged(ApiKeyStatusChanged {
                api_key_id: after.id.clone(),
                organization_id: after.organization_id.clone(),
                active,
            }))
            .await?;
        }
        let changed_status = unit.revision().is_some();
        unit.commit().await?;
        if changed_status {
            self.revocations.key_status_changed(&after.id, active);
        }
        Ok(after)
    }

    /// AuthenticateApiKey (services with `authenticate-api-keys`): the active key behind
    /// `secret`.
    pub async fn authenticate_api_key(
        &self,
        call: &Call,
        secret: &str,
    ) -> ApiResult<api_key::Model> {
        call.principal
            .require_capability(Capability::AuthenticateApiKeys)?;
        let invalid = orgplane_platform::auth::invalid_api_key;
        if secret.is_empty() {
            return Err(ApiError::invalid_argument("key", "required"));
        }
        if secret.len() > 256 {
            return Err(invalid());
        }
        let (id, admin) = crypto::parse_api_key(secret).ok_or_else(invalid)?;
        let row = api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(invalid)?;
        if !crypto::constant_time_eq(&row.secret_hash, &sha256_hex(secret))
            || admin != (row.kind == ApiKeyKind::Admin as i32)
        {
            return Err(invalid());
        }
        self.require_roles_synced()?;
        let org_live = self
            .replica
            .with_organization(&row.organization_id, |o| o.is_active())
            .unwrap_or(false);
        if row.status != ApiKeyStatus::Active as i32 || !org_live {
            return Err(orgplane_platform::auth::inactive_api_key());
        }
        let now = self.now_ms();
        if row.last_used_time_ms.is_none_or(|t| now - t > 60_000) {
            // Coarse on purpose: at most one write per key and minute.
            let r = api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedTimeMs, Expr::value(now))
                .filter(api_key::Column::Id.eq(&row.id))
                .exec(&self.db)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "recording API key use failed");
            }
        }
        Ok(row)
    }
}
