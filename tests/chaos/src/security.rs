//! The cross-tenant matrix, generated from the protos: for every unary RPC of the services
//! whose request has an `organization_id` field, a request naming tenant A's organization (and
//! A's workspace / member / account where the request has `workspace_id` / `user_id` /
//! `account_id`) is sent by members of tenant B with every role. Each must be refused with a
//! non-member code (NOT_FOUND, or PERMISSION_DENIED / UNAUTHENTICATED for internal RPCs;
//! INVALID_ARGUMENT is accepted for requests refused by validation before any lookup), and no
//! response, of any RPC, may contain an id of tenant A or tenant C (their accounts' ids and
//! names included). The RPCs that name A's resources by other ids (workspace, invite, unit, API
//! key, user, account) or through an Update RPC's nested resource are attacked the same way,
//! with a baseline by A's owner for the reads. New RPCs are covered automatically (an RPC naming
//! an id the matrix cannot fill fails it). Then [`crate::oversize`] sends hostile text to every
//! string field of every RPC, [`crate::accounts::cross_tenant`] names A's accounts through
//! B's organization and imports A's account into B, and [`crate::merge::cross_tenant`] merges
//! A's organization into B's and B's into A's.

use std::path::Path;

use bytes::{Buf, BufMut};
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::organization::v1::OrgRole;
use prost::Message;
use prost_types::FileDescriptorSet;
use prost_types::field_descriptor_proto::Type;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::Figures;
use crate::harness::{Harness, bearer};

mod id_only;
use id_only::id_only_matrix;

/// The services (the harness's child processes) whose audit logs are checked for outsiders'
/// records (ORG-10); identity runs in the harness's own process.
const AUDITED: [&str; 3] = crate::harness::CHILDREN;

/// How an attacker authenticates.
#[derive(Debug, Clone)]
pub enum Cred {
    /// `authorization: Bearer <token>`.
    Token(String),
    /// `x-api-key: <secret>`.
    ApiKey(String),
}

/// The RPCs whose required fields [`required_fields`] fills, so that their answers test the
/// tenant check rather than validation.
pub const FILLED: [&str; 10] = [
    "CreateAccount",
    "UpdateComplianceDefaults",
    "CreateApiKey",
    "CreateInvite",
    "CreateUnit",
    "UpdateMemberRole",
    "CreateDomain",
    "ProvisionMember",
    "DeprovisionMember",
    "CreateScimToken",
];

/// Valid values for the required non-id fields of `method` (encoded request fields; the id
/// fields are added separately).
pub fn required_fields(method: &str) -> Vec<u8> {
    match method {
        "CreateApiKey" => id_api::CreateApiKeyRequest {
            api_key: Some(id_api::ApiKey {
                kind: id_api::ApiKeyKind::Workspace as i32,
                name: "attacker key".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateInvite" => org_api::CreateInviteRequest {
            invite: Some(org_api::Invite {
                email: "attacker-invitee@chaos.test".into(),
                role: OrgRole::Developer as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateUnit" => org_api::CreateUnitRequest {
            unit: Some(org_api::Unit {
                name: "attacker unit".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "UpdateMemberRole" => org_api::UpdateMemberRoleRequest {
            role: OrgRole::Admin as i32,
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateDomain" => org_api::CreateDomainRequest {
            domain: Some(org_api::Domain {
                domain_name: "attacker-domain.chaos.test".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "ProvisionMember" => org_api::ProvisionMemberRequest {
            role: OrgRole::Admin as i32,
            source: "scim".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "DeprovisionMember" => org_api::DeprovisionMemberRequest {
            request_id: "attacker-deprovision".into(),
            source: "scim".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateAccount" => org_api::CreateAccountRequest {
            account: Some(org_api::Account {
                display_name: "attacker account".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        "UpdateComplianceDefaults" => org_api::UpdateComplianceDefaultsRequest {
            designation: org_api::ComplianceDesignation::Hipaa as i32,
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateScimToken" => id_api::CreateScimTokenRequest {
            scim_token: Some(id_api::ScimToken {
                display_name: "attacker token".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        _ => Vec::new(),
    }
}

/// Creates an API key of `kind` in `org` (in workspace `ws` for workspace keys) as `owner`,
/// retrying while identity has not yet applied the organization's events; returns its secret.
pub async fn create_api_key(
    h: &Harness,
    owner: &str,
    org: &str,
    ws: Option<&str>,
    kind: id_api::ApiKeyKind,
) -> anyhow::Result<String> {
    Ok(create_api_key_full(h, owner, org, ws, kind).await?.secret)
}

/// As [`create_api_key`], returning the whole response (the key's metadata and its secret).
pub async fn create_api_key_full(
    h: &Harness,
    owner: &str,
    org: &str,
    ws: Option<&str>,
    kind: id_api::ApiKeyKind,
) -> anyhow::Result<id_api::CreateApiKeyResponse> {
    let start = std::time::Instant::now();
    loop {
        let mut client =
            id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        let result = client
            .create_api_key(bearer(
                id_api::CreateApiKeyRequest {
                    organization_id: org.into(),
                    api_key: Some(id_api::ApiKey {
                        kind: kind as i32,
                        name: format!("{kind:?} key"),
                        workspace_id: ws.unwrap_or_default().into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &h.user_token(owner)?,
            ))
            .await;
        match result {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if start.elapsed() < std::time::Duration::from_secs(20) => {
                let _ = s;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(s) => anyhow::bail!("CreateApiKey {kind:?}: {s:?}"),
        }
    }
}

/// Passes encoded messages through untouched.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Debug, Clone, Default)]
pub struct RawCoder;

impl Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

/// One RPC of the matrix.
#[derive(Debug, Clone)]
pub struct Target {
    /// `/package.Service/Method`.
    pub path: String,
    /// The serving child process (identity is in-process).
    pub service: &'static str,
    /// (field number, field name) of the request's top-level string `*_id` fields.
    pub id_fields: Vec<(i32, String)>,
}

/// Every unary RPC of the services ([`crate::escalation::SERVICES`]) whose request has a string
/// `organization_id`.
pub fn targets() -> anyhow::Result<Vec<Target>> {
    let set = FileDescriptorSet::decode(orgplane_proto::FILE_DESCRIPTOR_SET)?;
    let mut messages = std::collections::HashMap::new();
    for file in &set.file {
        for m in &file.message_type {
            messages.insert(format!(".{}.{}", file.package(), m.name()), m.clone());
        }
    }
    let mut out = Vec::new();
    for file in &set.file {
        for svc in &file.service {
            let full = format!("{}.{}", file.package(), svc.name());
            let Some((_, service)) = crate::escalation::SERVICES.iter().find(|(n, _)| *n == full)
            else {
                continue;
            };
            for m in &svc.method {
                if m.client_streaming() || m.server_streaming() {
                    continue;
                }
                let Some(input) = messages.get(m.input_type()) else {
                    continue;
                };
                let id_fields: Vec<(i32, String)> = input
                    .field
                    .iter()
                    .filter(|f| f.r#type() == Type::String && f.name().ends_with("_id"))
                    .map(|f| (f.number(), f.name().to_owned()))
                    .collect();
                if id_fields.iter().any(|(_, n)| n == "organization_id") {
                    out.push(Target {
                        path: format!("/{full}/{}", m.name()),
                        service,
                        id_fields,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn encode_string(buf: &mut Vec<u8>, field: i32, value: &str) {
    prost::encoding::string::encode(field as u32, &value.to_owned(), buf);
}

/// The ids of one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub(crate) org: String,
    pub(crate) ws: String,
    /// The tenant's OWNER (`user_<name>_owner`).
    pub(crate) owner: String,
    /// A DEVELOPER of the tenant, with a direct workspace role and an account grant.
    pub(crate) member: String,
    /// A pending invite, a unit and an admin API key of the tenant (ids only).
    invite: String,
    unit: String,
    key: String,
    /// A registered (PENDING) domain of the tenant (rule ORG-14).
    domain: String,
    /// A (disabled) SSO connection of the tenant (rule ID-13).
    sso: String,
    /// A SCIM token of the tenant (rule ID-14).
    scim: String,
    /// Its account, subaccount and member grant (rules ACC-1, ACC-4).
    pub(crate) accounts: crate::accounts::Seeded,
}

impl Tenant {
    /// The tenant's ids by the request fields that carry them.
    fn ids(&self) -> crate::oversize::Ids {
        crate::oversize::Ids {
            by_field: vec![
                ("organization_id", self.org.clone()),
                ("workspace_id", self.ws.clone()),
                ("user_id", self.member.clone()),
                ("invite_id", self.invite.clone()),
                ("unit_id", self.unit.clone()),
                ("api_key_id", self.key.clone()),
                ("domain_id", self.domain.clone()),
                ("sso_connection_id", self.sso.clone()),
                ("scim_token_id", self.scim.clone()),
                ("account_id", self.accounts.account.clone()),
            ],
        }
    }

    /// Everything of the tenant another tenant must never read: its ids, its owner's and
    /// member's user ids and its account's display name.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        vec![
            &self.org,
            &self.ws,
            &self.owner,
            &self.member,
            &self.invite,
            &self.unit,
            &self.key,
            &self.domain,
            &self.sso,
            &self.scim,
            &self.accounts.account,
            &self.accounts.subaccount,
            &self.accounts.name,
        ]
    }

    /// The value the matrices put in request field `name` naming this tenant's resources, or
    /// `None` for a field that names none of them.
    fn id_for(&self, name: &str) -> Option<&str> {
        Some(match name {
            "organization_id" | "operator_organization_id" => &self.org,
            "workspace_id" => &self.ws,
            "user_id" => &self.member,
            "invite_id" => &self.invite,
            "unit_id" | "parent_unit_id" => &self.unit,
            "api_key_id" => &self.key,
            "domain_id" => &self.domain,
            "sso_connection_id" => &self.sso,
            "account_id" | "parent_account_id" => &self.accounts.account,
            // TransferAccountOwnership: a member of the account's home, so that only the caller
            // is wrong.
            "new_owner_user_id" => &self.member,
            _ => return None,
        })
    }
}

/// A SCIM token of `org`, created by its owner: what UpdateScimToken names by id.
pub(crate) async fn seed_scim_token(
    h: &Harness,
    org: &str,
    owner_token: &str,
) -> anyhow::Result<String> {
    Ok(h.identity_client()
        .create_scim_token(bearer(
            id_api::CreateScimTokenRequest {
                organization_id: org.into(),
                scim_token: Some(id_api::ScimToken {
                    display_name: "Chaos provisioning".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .scim_token
        .unwrap_or_default()
        .id)
}

/// A disabled SSO connection of `org` (no domains; its provider is never contacted), created by
/// its owner: what GetSsoConnection, UpdateSsoConnection, DeleteSsoConnection and
/// TestSsoConnection name by id.
pub(crate) async fn seed_sso_connection(
    h: &Harness,
    org: &str,
    owner_token: &str,
) -> anyhow::Result<String> {
    Ok(h.identity_client()
        .create_sso_connection(bearer(
            id_api::CreateSsoConnectionRequest {
                organization_id: org.into(),
                sso_connection: Some(id_api::SsoConnection {
                    display_name: "Chaos IdP".into(),
                    oidc: Some(id_api::OidcSettings {
                        issuer: "https://idp.chaos.test".into(),
                        client_id: "chaos-client".into(),
                        client_secret: "chaos-client-secret".into(),
                        redirect_uris: vec!["https://app.chaos.test/sso/callback".into()],
                        ..Default::default()
                    }),
                    enabled: false,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .sso_connection
        .unwrap_or_default()
        .id)
}

/// Runs the matrix on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db).await;
    h.stop().await?;
    result
}

async fn seed(h: &Harness, name: &str) -> anyhow::Result<Tenant> {
    let owner = format!("user_{name}_owner");
    let (org, ws) = h.seed_org(&owner).await?;
    let member = format!("user_{name}_member");
    h.add_member(&owner, &org, &member, OrgRole::Developer)
        .await?;
    let token = h.user_token(&owner)?;
    // The member has a direct role in the workspace (once workspace knows the membership).
    let start = std::time::Instant::now();
    loop {
        let r = h
            .workspaces()
            .add_workspace_member(bearer(
                orgplane_proto::workspace::v1::AddWorkspaceMemberRequest {
                    workspace_id: ws.clone(),
                    user_id: member.clone(),
                    role: orgplane_proto::workspace::v1::WorkspaceRole::Developer as i32,
                    request_id: String::new(),
                },
                &token,
            ))
            .await;
        match r {
            Ok(_) => break,
            Err(s)
                if s.code() == Code::FailedPrecondition
                    && start.elapsed() < std::time::Duration::from_secs(10) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(s) => anyhow::bail!("AddWorkspaceMember {member}: {s:?}"),
        }
    }
    let invite = h
        .orgs()
        .create_invite(bearer(
            org_api::CreateInviteRequest {
                organization_id: org.clone(),
                invite: Some(org_api::Invite {
                    email: format!("pending-{name}@chaos.test"),
                    role: OrgRole::User as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await?
        .into_inner()
        .invite
        .unwrap_or_default()
        .id;
    let unit = h
        .orgs()
        .create_unit(bearer(
            org_api::CreateUnitRequest {
                organization_id: org.clone(),
                unit: Some(org_api::Unit {
                    name: format!("unit {name}"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await?
        .into_inner()
        .unit
        .unwrap_or_default()
        .id;
    let key = create_api_key_full(h, &owner, &org, None, id_api::ApiKeyKind::Admin)
        .await?
        .api_key
        .unwrap_or_default()
        .id;
    let domain = h
        .orgs()
        .create_domain(bearer(
            org_api::CreateDomainRequest {
                organization_id: org.clone(),
                domain: Some(org_api::Domain {
                    domain_name: format!("{}.chaos.test", name.replace('_', "-")),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await?
        .into_inner()
        .domain
        .unwrap_or_default()
        .id;
    let sso = seed_sso_connection(h, &org, &token).await?;
    let scim = seed_scim_token(h, &org, &token).await?;
    let accounts = crate::accounts::seed(h, name, &org, &token, &member).await?;
    Ok(Tenant {
        org,
        ws,
        owner,
        member,
        invite,
        unit,
        key,
        domain,
        sso,
        scim,
        accounts,
    })
}

async fn scenario(h: &Harness, db: &str) -> anyhow::Result<Figures> {
    let mut f = Figures::new("cross-tenant-matrix", db);
    let a = seed(h, "tenant_a").await?;
    let b = seed(h, "tenant_b").await?;
    let c = seed(h, "tenant_c").await?;
    // Attackers: tenant B's owner and a member of B with every other role.
    let mut attackers = vec![("OWNER".to_owned(), "user_tenant_b_owner".to_owned())];
    for role in [
        OrgRole::Admin,
        OrgRole::Billing,
        OrgRole::Developer,
        OrgRole::User,
    ] {
        let u = format!("user_b_{}", role.as_str_name().to_lowercase());
        h.add_member("user_tenant_b_owner", &b.org, &u, role)
            .await?;
        attackers.push((role.as_str_name().to_owned(), u));
    }
    let mut attackers: Vec<(String, Cred)> = attackers
        .into_iter()
        .map(|(role, user)| h.user_token(&user).map(|t| (role, Cred::Token(t))))
        .collect::<anyhow::Result<_>>()?;
    let admin_key = create_api_key(
        h,
        "user_tenant_b_owner",
        &b.org,
        None,
        id_api::ApiKeyKind::Admin,
    )
    .await?;
    let ws_key = create_api_key(
        h,
        "user_tenant_b_owner",
        &b.org,
        Some(&b.ws),
        id_api::ApiKeyKind::Workspace,
    )
    .await?;
    attackers.push(("ADMIN_API_KEY".into(), Cred::ApiKey(admin_key)));
    attackers.push(("WORKSPACE_API_KEY".into(), Cred::ApiKey(ws_key)));
    let targets = targets()?;
    // ORG-10: what A's logs hold before the attacks (every service's); nothing of B may be added.
    let mut a_log_before = std::collections::BTreeSet::new();
    for service in AUDITED {
        for r in crate::merge::audit_rows_in(h, service, &a.org).await? {
            a_log_before.insert(r.id);
        }
    }
    // Every id of A and C (accounts included); only C's in error messages, as a refusal may
    // repeat the ids the request named.
    let others = c.secrets();
    let secrets: Vec<&str> = a.secrets().into_iter().chain(others.clone()).collect();
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut validated_first = std::collections::BTreeSet::new();
    for t in &targets {
        let method = t.path.rsplit('/').next().unwrap_or_default().to_owned();
        let mut body = required_fields(&method);
        let request_id = uuid::Uuid::new_v4().to_string();
        for (num, name) in &t.id_fields {
            let value = match name.as_str() {
                "request_id" => request_id.as_str(),
                n => a.id_for(n).unwrap_or("x"),
            };
            encode_string(&mut body, *num, value);
        }
        for (role, cred) in &attackers {
            let result = call(h, t, body.clone(), cred).await;
            match result {
                Ok(bytes) => {
                    f.leaks += 1;
                    f.failures
                        .push(format!("{} as {role} of another org answered OK", t.path));
                    if contains_any(&bytes, &secrets) {
                        f.failures
                            .push(format!("{} returned tenant A data", t.path));
                    }
                }
                Err(s) => {
                    *codes.entry(format!("{:?}", s.code())).or_default() += 1;
                    if s.code() == Code::InvalidArgument {
                        validated_first.insert(method.clone());
                        if FILLED.contains(&method.as_str()) {
                            f.attacks_failed += 1;
                            f.failures.push(format!(
                                "{} as {role}: INVALID_ARGUMENT although its required fields are \
                                 filled ({}); the tenant check is not what answered",
                                t.path,
                                s.message()
                            ));
                            continue;
                        }
                    }
                    let leaked = contains_any(s.message().as_bytes(), &others)
                        || contains_any(s.details(), &others);
                    if leaked {
                        f.leaks += 1;
                    }
                    if matches!(
                        s.code(),
                        Code::NotFound
                            | Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::InvalidArgument
                    ) {
                        f.attacks_passed += 1;
                    } else {
                        f.attacks_failed += 1;
                        f.failures.push(format!(
                            "{} as {role} of another org: {:?} {}",
                            t.path,
                            s.code(),
                            s.message()
                        ));
                    }
                }
            }
        }
        // The same RPC on the attacker's own organization must not return A's or C's rows.
        let mut own = required_fields(&method);
        for (num, name) in &t.id_fields {
            let value = match name.as_str() {
                "request_id" => request_id.as_str(),
                n => b.id_for(n).unwrap_or("x"),
            };
            encode_string(&mut own, *num, value);
        }
        if t.path.contains("/List") || t.path.contains("/Get") {
            let token = Cred::Token(h.user_token("user_tenant_b_owner")?);
            if let Ok(bytes) = call(h, t, own, &token).await
                && contains_any(&bytes, &secrets)
            {
                f.leaks += 1;
                f.failures.push(format!(
                    "{} on B's own org returned another tenant's rows",
                    t.path
                ));
            }
        }
    }
    let id_only = id_only_matrix(h, &mut f, &a, &c, &attackers).await?;
    // ORG-10: refusals of B's callers are never recorded in A's organization log (a refusal that
    // came before the tenant check must not let an outsider write there); A's own refusals may be.
    let mut written: Vec<String> = Vec::new();
    for service in AUDITED {
        for r in crate::merge::audit_rows_in(h, service, &a.org).await? {
            if !a_log_before.contains(&r.id)
                && r.outcome == orgplane_proto::audit::v1::Outcome::Failure as i32
                && !r.actor_id.starts_with("user_tenant_a_")
            {
                written.push(format!(
                    "{service}: {} by {} ({})",
                    r.action, r.actor_id, r.error_reason
                ));
            }
        }
    }
    if written.is_empty() {
        f.attacks_passed += 1;
    } else {
        f.attacks_failed += 1;
        f.failures.push(format!(
            "B's callers wrote {} records into A's audit logs: {written:?}",
            written.len()
        ));
    }
    // Last, as it may change the tenant: hostile text in every string field, by its own owner.
    let x = seed(h, "tenant_x").await?;
    let oversized = crate::oversize::sweep(h, &mut f, "user_tenant_x_owner", &x.ids()).await?;
    // Then accounts named through B's organization or none, and B's imports of A's account
    // (they leave an INDEPENDENT entry of A's account in B's list).
    let accounts = crate::accounts::cross_tenant(h, &mut f, (&a, &b, &c), &attackers).await?;
    // Last, as it verifies a domain of A: merges naming A's organization (rule ORG-15).
    let merges =
        crate::merge::cross_tenant::cross_tenant(h, &mut f, (&a, &b, &c), &attackers).await?;
    f.operations = f.attacks_passed + f.attacks_failed;
    f.notes = format!(
        "{} RPCs with organization_id + {id_only} naming other ids x {} callers; codes {:?}; \
         refused by validation first: {:?}; {oversized} hostile-text fields; accounts: {accounts}; {merges}",
        targets.len(),
        attackers.len(),
        codes,
        validated_first
    );
    Ok(f)
}

pub(crate) fn contains_any(haystack: &[u8], needles: &[&str]) -> bool {
    needles
        .iter()
        .any(|n| !n.is_empty() && haystack.windows(n.len()).any(|w| w == n.as_bytes()))
}

/// Sends the encoded request `body` to `t` with `cred`.
pub async fn call(h: &Harness, t: &Target, body: Vec<u8>, cred: &Cred) -> Result<Vec<u8>, Status> {
    let channel = if t.service == "identity" {
        h.identity_channel()
    } else {
        h.channel(t.service)
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::try_from(t.path.as_str())
        .map_err(|e| Status::internal(e.to_string()))?;
    let req = match cred {
        Cred::Token(token) => bearer(body, token),
        Cred::ApiKey(key) => {
            let mut req = tonic::Request::new(body);
            if let Ok(v) = key.parse() {
                req.metadata_mut().insert("x-api-key", v);
            }
            req.set_timeout(std::time::Duration::from_secs(10));
            req
        }
    };
    grpc.unary(req, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}
