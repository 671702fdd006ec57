//! SSO connections (rule ID-13): Create, Get, List (Update and Delete in
//! [`super::sso_changes`]). An OWNER or ADMIN of the
//! organization manages them (admitted by its security policy, ORG-16), with a recent sign-in
//! for changes (ID-6, ID-12); every domain a connection serves must be VERIFIED by the
//! organization at write time (ORG-14). The client secret is sealed at rest (associated data:
//! the connection id) and never answered; audit records carry ids only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::pagination::{keyset, page_size};
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Order, QueryOrder, QuerySelect, Set};

use super::{App, new_id};
use crate::domain::Error;
use crate::domain::sso::{self as rules, SsoError};
use crate::domain::validation::{Violations, check_display_name, check_request_id};
use crate::store::entity::{sso_connection, sso_connection_domain};

/// The settable fields of a connection (the wire's `SsoConnection` without output fields).
#[derive(Clone, Default)]
pub struct ConnectionSpec {
    /// A name for people.
    pub display_name: String,
    /// The issuer URL.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret (empty: none, or keep on update).
    pub client_secret: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Accepted ID-token algorithms.
    pub algorithms: Vec<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Domains served.
    pub domains: Vec<String>,
    /// Password sign-in refused for the domains.
    pub enforced: bool,
    /// Just-in-time provisioning.
    pub jit_provisioning: bool,
    /// Role of provisioned members (the wire enum's number).
    pub default_role: i32,
    /// The provider's second factor counts.
    pub trust_idp_mfa: bool,
    /// Usable for sign-in.
    pub enabled: bool,
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSpec")
            .field("issuer", &self.issuer)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// A CreateSsoConnection request.
#[derive(Debug, Clone, Default)]
pub struct NewSsoConnection {
    /// The organization.
    pub organization_id: String,
    /// The connection.
    pub spec: ConnectionSpec,
    /// The client's idempotency key (may be empty).
    pub request_id: String,
}

/// An UpdateSsoConnection request: the fields named in `paths` take their values from `spec`.
#[derive(Debug, Clone, Default)]
pub struct UpdateSsoConnection {
    /// The connection.
    pub id: String,
    /// New values.
    pub spec: ConnectionSpec,
    /// The update mask.
    pub paths: Vec<String>,
    /// The etag the caller read (empty: whatever is current).
    pub etag: String,
}

/// A connection with the domains it serves.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The row.
    pub row: sso_connection::Model,
    /// Its domains, by name.
    pub domains: Vec<String>,
}

/// A checked spec, ready to store.
pub(super) struct Checked {
    pub(super) display_name: String,
    pub(super) scopes: Vec<String>,
    pub(super) algorithms: Vec<String>,
    pub(super) redirect_uris: Vec<String>,
    pub(super) domains: Vec<String>,
    pub(super) default_role: OrgRole,
}

impl App {
    pub(super) fn check_spec(&self, spec: &ConnectionSpec, v: &mut Violations) -> Checked {
        let allow_http = self.oidc.allows_http();
        let display_name = v
            .check(check_display_name(
                "sso_connection.display_name",
                &spec.display_name,
            ))
            .unwrap_or_default();
        v.check(rules::check_issuer(
            "sso_connection.oidc.issuer",
            &spec.issuer,
            allow_http,
        ));
        rules::check_client_id(v, &spec.client_id);
        rules::check_client_secret(v, &spec.client_secret);
        Checked {
            display_name,
            scopes: rules::check_scopes(v, &spec.scopes),
            algorithms: rules::check_algorithms(v, &spec.algorithms),
            redirect_uris: rules::check_redirect_uris(v, &spec.redirect_uris, allow_http),
            domains: rules::check_domains(v, &spec.domains),
            default_role: rules::check_default_role(v, spec.default_role),
        }
    }

    /// The signed-in OWNER or ADMIN of `org` who may manage its SSO connections
    /// ([`App::require_org_manager`]).
    pub(super) fn sso_manager(&self, call: &Call, org: &str, step_up: bool) -> ApiResult<()> {
        self.require_org_manager(
            call,
            org,
            step_up,
            "only an OWNER or ADMIN may manage SSO connections",
        )
        .map(|_| ())
    }

    /// Every name in `domains` VERIFIED by `org` in the replica (rule ORG-14).
    pub(super) fn require_verified(&self, org: &str, domains: &[String]) -> ApiResult<()> {
        match domains
            .iter()
            .find(|d| !self.replica.holds_verified(org, d))
        {
            Some(d) => Err(SsoError::DomainNotVerified(d.clone()).into()),
            None => Ok(()),
        }
    }

    pub(super) fn seal_client_secret(&self, secret: &str, id: &str) -> ApiResult<Option<String>> {
        if secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            STANDARD.encode(self.sealer.seal(secret.as_bytes(), id)?),
        ))
    }

    /// The client secret of `row` in clear, if it has one.
    pub(crate) fn client_secret(&self, row: &sso_connection::Model) -> ApiResult<Option<String>> {
        let Some(sealed) = &row.client_secret_sealed else {
            return Ok(None);
        };
        let bytes = STANDARD.decode(sealed).map_err(ApiError::internal)?;
        let plain = self
            .sealer
            .open(&bytes, &row.id)
            .map_err(ApiError::internal)?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(ApiError::internal)
    }

    /// The domains of connection `id`.
    pub(crate) async fn connection_domains<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> ApiResult<Vec<String>> {
        Ok(sso_connection_domain::Entity::find()
            .select_only()
            .column(sso_connection_domain::Column::DomainName)
            .filter(sso_connection_domain::Column::ConnectionId.eq(id))
            .order_by_asc(sso_connection_domain::Column::DomainName)
            .into_tuple()
            .all(db)
            .await?)
    }

    pub(super) async fn with_domains(&self, row: sso_connection::Model) -> ApiResult<Connection> {
        let domains = self.connection_domains(&self.db, &row.id).await?;
        Ok(Connection { row, domains })
    }

    pub(super) async fn store_domains<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: &str,
        domains: &[String],
    ) -> ApiResult<()> {
        sso_connection_domain::Entity::delete_many()
            .filter(sso_connection_domain::Column::ConnectionId.eq(id))
            .exec(txn)
            .await?;
        if domains.is_empty() {
            return Ok(());
        }
        sso_connection_domain::Entity::insert_many(domains.iter().map(|d| {
            sso_connection_domain::ActiveModel {
                connection_id: Set(id.to_owned()),
                domain_name: Set(d.clone()),
            }
        }))
        .exec(txn)
        .await?;
        Ok(())
    }

    async fn connection_of_request(
        &self,
        org: &str,
        request_id: &str,
    ) -> ApiResult<Option<sso_connection::Model>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(sso_connection::Entity::find()
            .filter(sso_connection::Column::OrganizationId.eq(org))
            .filter(sso_connection::Column::RequestId.eq(request_id))
            .one(&self.db)
            .await?)
    }

    /// CreateSsoConnection; a refusal is audited in a known organization.
    pub async fn create_sso_connection(
        &self,
        call: &Call,
        cmd: NewSsoConnection,
    ) -> ApiResult<Connection> {
        let result = self.try_create_sso_connection(call, &cmd).await;
        let org = &cmd.organization_id;
        self.audit
            .audited(&self.db, call, result, || async {
                self.knows_organization(org)
                    .then(|| Entry::new(org, "sso_connection.create", "sso_connection", ""))
            })
            .await
    }

    async fn try_create_sso_connection(
        &self,
        call: &Call,
        cmd: &NewSsoConnection,
    ) -> ApiResult<Connection> {
        let org = cmd.organization_id.as_str();
        let mut v = Violations::default();
        if org.is_empty() {
            v.add("organization_id", "required");
        }
        let checked = self.check_spec(&cmd.spec, &mut v);
        v.check(check_request_id(&cmd.request_id));
        v.finish()?;
        self.sso_manager(call, org, true)?;
        if let Some(first) = self.connection_of_request(org, &cmd.request_id).await? {
            return self.with_domains(first).await;
        }
        self.require_verified(org, &checked.domains)?;
        let user = call.principal.require_user()?;
        let id = new_id("ssoc");
        let now = self.now_ms();
        let spec = &cmd.spec;
        let row = sso_connection::Model {
            id: id.clone(),
            organization_id: org.to_owned(),
            display_name: checked.display_name,
            issuer: spec.issuer.clone(),
            client_id: spec.client_id.trim().to_owned(),
            client_secret_sealed: self.seal_client_secret(&spec.client_secret, &id)?,
            scopes: checked.scopes.join(" "),
            algorithms: checked.algorithms.join(" "),
            redirect_uris: checked.redirect_uris.join(" "),
            enforced: spec.enforced,
            jit_provisioning: spec.jit_provisioning,
            default_role: checked.default_role as i32,
            trust_idp_mfa: spec.trust_idp_mfa,
            enabled: spec.enabled,
            creator_user_id: user.user_id.clone(),
            request_id: (!cmd.request_id.is_empty()).then(|| cmd.request_id.clone()),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
        };
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        if let Err(e) = sso_connection::ActiveModel::from(row.clone())
            .insert(&*unit)
            .await
        {
            if orgplane_platform::db::is_unique_violation(&e) {
                drop(unit);
                if let Some(first) = self.connection_of_request(org, &cmd.request_id).await? {
                    return self.with_domains(first).await;
                }
            }
            return Err(e.into());
        }
        self.store_domains(&*unit, &id, &checked.domains).await?;
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(org, "sso_connection.create", "sso_connection", &id),
            )
            .await?;
        unit.commit().await?;
        Ok(Connection {
            row,
            domains: checked.domains,
        })
    }

    /// The connection `id` if the caller may see it (NOT_FOUND otherwise, whether or not it
    /// exists), after `manager` authorized the caller in its organization.
    pub(super) async fn visible_connection(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ApiResult<sso_connection::Model> {
        if id.is_empty() {
            return Err(ApiError::invalid_argument("sso_connection_id", "required"));
        }
        principal.require_authenticated()?;
        let hidden = || ApiError::not_found("sso_connection", id);
        let row = sso_connection::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(hidden)?;
        let standing = self.standing_or(principal, &row.organization_id, hidden)?;
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(
                Error::InsufficientRole("only an OWNER or ADMIN may see SSO connections").into(),
            );
        }
        Ok(row)
    }

    /// GetSsoConnection.
    pub async fn get_sso_connection(&self, call: &Call, id: &str) -> ApiResult<Connection> {
        let row = self.visible_connection(&call.principal, id).await?;
        self.with_domains(row).await
    }

    /// ListSsoConnections: a page of the organization's connections, oldest first.
    pub async fn list_sso_connections(
        &self,
        call: &Call,
        org: &str,
        requested_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<Connection>, String)> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let size = page_size(requested_size)?;
        let standing = self.standing(&call.principal, org)?;
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(
                Error::InsufficientRole("only an OWNER or ADMIN may list SSO connections").into(),
            );
        }
        let scope = format!("ListSsoConnections|{org}");
        let after: Option<(i64, String)> = self.page_tokens.decode(&scope, page_token)?;
        let q =
            sso_connection::Entity::find().filter(sso_connection::Column::OrganizationId.eq(org));
        let rows = keyset(
            q,
            sso_connection::Column::CreateTimeMs,
            sso_connection::Column::Id,
            after,
            Order::Asc,
        )
        .limit(size + 1)
        .all(&self.db)
        .await?;
        let (rows, next) = self
            .page_tokens
            .page(&scope, rows, size, |c| (c.create_time_ms, c.id.clone()));
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_domains(row).await?);
        }
        Ok((out, next))
    }

    /// The connection `id` for TestSsoConnection (same visibility as Get).
    pub(crate) async fn connection_to_test(&self, call: &Call, id: &str) -> ApiResult<Connection> {
        self.get_sso_connection(call, id).await
    }
}

/// The items of a space-separated column.
pub(crate) fn split(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}
