//! Changes to SSO connections (rule ID-13): UpdateSsoConnection (field mask, etag) and
//! DeleteSsoConnection (its domains, attempts in flight and federated identities go with it).
//! Same authorization as creation: an OWNER or ADMIN with a recent sign-in; audited with ids.

use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::entity::prelude::*;

use super::App;
use super::sso_connections::{Connection, ConnectionSpec, UpdateSsoConnection, split};
use crate::domain::validation::Violations;
use crate::store::entity::{
    federated_identity, sso_attempt, sso_connection, sso_connection_domain,
};

impl App {
    /// The audit entry of a refused change to connection `id`, in its organization.
    async fn refused_entry(&self, id: &str, action: &str) -> Option<Entry> {
        let row = sso_connection::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "reading a refused connection failed"))
            .ok()
            .flatten()?;
        Some(Entry::new(
            &row.organization_id,
            action,
            "sso_connection",
            &row.id,
        ))
    }

    /// UpdateSsoConnection; a refusal is audited in the connection's organization.
    pub async fn update_sso_connection(
        &self,
        call: &Call,
        cmd: UpdateSsoConnection,
    ) -> ApiResult<Connection> {
        let result = self.try_update_sso_connection(call, &cmd).await;
        self.audit
            .audited(&self.db, call, result, || {
                self.refused_entry(&cmd.id, "sso_connection.update")
            })
            .await
    }

    async fn try_update_sso_connection(
        &self,
        call: &Call,
        cmd: &UpdateSsoConnection,
    ) -> ApiResult<Connection> {
        if cmd.id.is_empty() {
            return Err(ApiError::invalid_argument("sso_connection.id", "required"));
        }
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let before = self.visible_connection(&call.principal, &cmd.id).await?;
        self.sso_manager(call, &before.organization_id, true)?;
        check_etag(&cmd.etag, before.version, "sso_connection")?;
        let old_domains = self.connection_domains(&self.db, &before.id).await?;
        let p = &cmd.spec;
        let mut merged = ConnectionSpec {
            display_name: before.display_name.clone(),
            issuer: before.issuer.clone(),
            client_id: before.client_id.clone(),
            client_secret: String::new(),
            scopes: split(&before.scopes),
            algorithms: split(&before.algorithms),
            redirect_uris: split(&before.redirect_uris),
            domains: old_domains,
            enforced: before.enforced,
            jit_provisioning: before.jit_provisioning,
            default_role: before.default_role,
            trust_idp_mfa: before.trust_idp_mfa,
            enabled: before.enabled,
        };
        let mut secret: Option<String> = None;
        let mut domains_changed = false;
        for path in &cmd.paths {
            match path.as_str() {
                "display_name" => merged.display_name = p.display_name.clone(),
                "oidc" => {
                    merged.issuer = p.issuer.clone();
                    merged.client_id = p.client_id.clone();
                    merged.scopes = p.scopes.clone();
                    merged.algorithms = p.algorithms.clone();
                    merged.redirect_uris = p.redirect_uris.clone();
                    if !p.client_secret.is_empty() {
                        secret = Some(p.client_secret.clone());
                    }
                }
                "oidc.issuer" => merged.issuer = p.issuer.clone(),
                "oidc.client_id" => merged.client_id = p.client_id.clone(),
                "oidc.client_secret" => secret = Some(p.client_secret.clone()),
                "oidc.scopes" => merged.scopes = p.scopes.clone(),
                "oidc.allowed_algorithms" => merged.algorithms = p.algorithms.clone(),
                "oidc.redirect_uris" => merged.redirect_uris = p.redirect_uris.clone(),
                "domains" => {
                    merged.domains = p.domains.clone();
                    domains_changed = true;
                }
                "enforced" => merged.enforced = p.enforced,
                "jit_provisioning" => merged.jit_provisioning = p.jit_provisioning,
                "default_role" => merged.default_role = p.default_role,
                "trust_idp_mfa" => merged.trust_idp_mfa = p.trust_idp_mfa,
                "enabled" => merged.enabled = p.enabled,
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    ));
                }
            }
        }
        if let Some(s) = &secret {
            merged.client_secret = s.clone();
        }
        let mut v = Violations::default();
        let checked = self.check_spec(&merged, &mut v);
        v.finish()?;
        if domains_changed {
            self.require_verified(&before.organization_id, &checked.domains)?;
        }
        let mut after = before.clone();
        after.display_name = checked.display_name;
        after.issuer = merged.issuer.clone();
        after.client_id = merged.client_id.trim().to_owned();
        if let Some(s) = &secret {
            after.client_secret_sealed = self.seal_client_secret(s, &before.id)?;
        }
        after.scopes = checked.scopes.join(" ");
        after.algorithms = checked.algorithms.join(" ");
        after.redirect_uris = checked.redirect_uris.join(" ");
        after.enforced = merged.enforced;
        after.jit_provisioning = merged.jit_provisioning;
        after.default_role = checked.default_role as i32;
        after.trust_idp_mfa = merged.trust_idp_mfa;
        after.enabled = merged.enabled;
        after.version += 1;
        after.update_time_ms = self.now_ms();
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let mut update = sso_connection::ActiveModel::from(after.clone()).reset_all();
        update.id = sea_orm::Unchanged(before.id.clone());
        let done = sso_connection::Entity::update_many()
            .set(update)
            .filter(sso_connection::Column::Id.eq(&before.id))
            .filter(sso_connection::Column::Version.eq(before.version))
            .exec(&*unit)
            .await?;
        if done.rows_affected != 1 {
            return Err(etag_mismatch("sso_connection"));
        }
        if domains_changed {
            self.store_domains(&*unit, &before.id, &checked.domains)
                .await?;
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(
                    &before.organization_id,
                    "sso_connection.update",
                    "sso_connection",
                    &before.id,
                ),
            )
            .await?;
        unit.commit().await?;
        self.with_domains(after).await
    }

    /// DeleteSsoConnection: the connection, its domains, its attempts in flight and the
    /// federated identities it linked go; the accounts keep their other credentials.
    pub async fn delete_sso_connection(&self, call: &Call, id: &str, etag: &str) -> ApiResult<()> {
        let result = self.try_delete_sso_connection(call, id, etag).await;
        self.audit
            .audited(&self.db, call, result, || {
                self.refused_entry(id, "sso_connection.delete")
            })
            .await
    }

    async fn try_delete_sso_connection(&self, call: &Call, id: &str, etag: &str) -> ApiResult<()> {
        let row = self.visible_connection(&call.principal, id).await?;
        self.sso_manager(call, &row.organization_id, true)?;
        check_etag(etag, row.version, "sso_connection")?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let done = sso_connection::Entity::delete_many()
            .filter(sso_connection::Column::Id.eq(id))
            .filter(sso_connection::Column::Version.eq(row.version))
            .exec(&*unit)
            .await?;
        if done.rows_affected != 1 {
            return Err(etag_mismatch("sso_connection"));
        }
        sso_connection_domain::Entity::delete_many()
            .filter(sso_connection_domain::Column::ConnectionId.eq(id))
            .exec(&*unit)
            .await?;
        sso_attempt::Entity::delete_many()
            .filter(sso_attempt::Column::ConnectionId.eq(id))
            .exec(&*unit)
            .await?;
        federated_identity::Entity::delete_many()
            .filter(federated_identity::Column::ConnectionId.eq(id))
            .exec(&*unit)
            .await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(
                    &row.organization_id,
                    "sso_connection.delete",
                    "sso_connection",
                    id,
                ),
            )
            .await?;
        unit.commit().await?;
        Ok(())
    }
}
