//! Privilege escalation: every org role tries to grant itself or others a role above its own
//! (UpdateMemberRole, CreateInvite, AcceptInvite tampering, AddWorkspaceMember /
//! UpdateWorkspaceMember, TransferOwnership, admin API keys, a workspace admin by hand managing
//! its workspace), to remove or demote the OWNER, to create, rename, flag, close or take over
//! accounts and change the compliance defaults ([`crate::accounts::escalation`]), to merge
//! organizations they do not both own ([`crate::merge::escalation`]), to write
//! protected fields through the field masks of every Update RPC (generated from the protos: every
//! field of the resource not in the RPC's documented mutable paths), and to steer tampered or
//! replayed page tokens of every paginated List RPC (also generated; the account lists included)
//! into another tenant's rows. Each case asserts the exact gRPC code; at the end every role is
//! re-read and must be unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1 as ws_api;
use orgplane_proto::workspace::v1::WorkspaceRole;
use prost::Message;
use prost_types::FileDescriptorSet;
use prost_types::field_descriptor_proto::Type;
use tonic::{Code, Status};

use crate::Figures;
use crate::harness::{Harness, bearer, mask};
use crate::security::{Cred, Target, call, create_api_key_full};

/// Records one case: `got` must be `want`.
pub(crate) fn case(f: &mut Figures, name: &str, got: &Result<impl Sized, Status>, want: Code) {
    f.operations += 1;
    let code = got.as_ref().map_or_else(Status::code, |_| Code::Ok);
    if code == want {
        f.attacks_passed += 1;
    } else {
        f.attacks_failed += 1;
        let msg = got
            .as_ref()
            .err()
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        f.failures
            .push(format!("{name}: {code:?} {msg} (expected {want:?})"));
    }
}

/// One top-level field of an encoded message: its number and, for length-delimited fields,
/// its bytes (varints as their value).
#[derive(Debug, Clone)]
pub enum Field {
    /// A varint.
    Varint(u64),
    /// Length-delimited bytes (strings, messages).
    Bytes(Vec<u8>),
    /// Fixed 32/64-bit value.
    Fixed,
}

/// The top-level fields of encoded message `buf` (enough of the wire format to read responses
/// of RPCs known only from their descriptors).
pub fn fields(mut buf: &[u8]) -> Vec<(u32, Field)> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let Some(key) = varint(&mut buf) else { break };
        let num = (key >> 3) as u32;
        let field = match key & 7 {
            0 => match varint(&mut buf) {
                Some(v) => Field::Varint(v),
                None => break,
            },
            1 if buf.len() >= 8 => {
                buf = &buf[8..];
                Field::Fixed
            }
            5 if buf.len() >= 4 => {
                buf = &buf[4..];
                Field::Fixed
            }
            2 => {
                let Some(len) = varint(&mut buf) else { break };
                let len = len as usize;
                if len > buf.len() {
                    break;
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v.to_vec())
            }
            _ => break,
        };
        out.push((num, field));
    }
    out
}

/// The string value of field `num` of encoded message `buf`, if present.
pub fn string_field(buf: &[u8], num: u32) -> Option<String> {
    fields(buf).into_iter().find_map(|(n, f)| match f {
        Field::Bytes(b) if n == num => String::from_utf8(b).ok(),
        _ => None,
    })
}

/// The descriptors of every message, by full name (`.package.Message`), and every method of the
/// [`SERVICES`] with its input and output types.
pub struct Protos {
    /// Messages by full name.
    pub messages: BTreeMap<String, prost_types::DescriptorProto>,
    /// (`/package.Service/Method`, service process, input type, output type, streaming).
    pub methods: Vec<(String, &'static str, String, String, bool)>,
}

/// The services the matrices cover and the process serving each (the organization process also
/// serves AccountService).
pub const SERVICES: [(&str, &str); 5] = [
    ("orgplane.identity.v1.IdentityService", "identity"),
    (
        "orgplane.organization.v1.OrganizationService",
        "organization",
    ),
    ("orgplane.organization.v1.AccountService", "organization"),
    ("orgplane.workspace.v1.WorkspaceService", "workspace"),
    ("orgplane.billing.v1.BillingAccessService", "billing-access"),
];

impl Protos {
    /// Reads the compiled descriptor set.
    pub fn load() -> anyhow::Result<Self> {
        let set = FileDescriptorSet::decode(orgplane_proto::FILE_DESCRIPTOR_SET)?;
        let mut messages = BTreeMap::new();
        for file in &set.file {
            for m in &file.message_type {
                messages.insert(format!(".{}.{}", file.package(), m.name()), m.clone());
            }
        }
        let mut methods = Vec::new();
        for file in &set.file {
            for svc in &file.service {
                let full = format!("{}.{}", file.package(), svc.name());
                let Some((_, process)) = SERVICES.iter().find(|(n, _)| *n == full) else {
                    continue;
                };
                for m in &svc.method {
                    methods.push((
                        format!("/{full}/{}", m.name()),
                        *process,
                        m.input_type().to_owned(),
                        m.output_type().to_owned(),
                        m.client_streaming() || m.server_streaming(),
                    ));
                }
            }
        }
        Ok(Self { messages, methods })
    }

    /// The number of field `name` of message `message`.
    pub fn field(&self, message: &str, name: &str) -> Option<u32> {
        self.messages
            .get(message)?
            .field
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.number() as u32)
    }
}

/// The documented mutable paths of each Update RPC (from the proto comments). An Update RPC
/// missing here fails the suite, so new ones are covered.
pub const MUTABLE: [(&str, &[&str]); 14] = [
    ("UpdateOrganization", &["name", "type", "primary_email"]),
    ("UpdateAccount", &["display_name", "compliance"]),
    ("UpdateUnit", &["name", "parent_unit_id"]),
    ("UpdateWorkspace", &["name", "unit_id"]),
    ("UpdateWorkspaceMember", &["role"]),
    ("UpdateBillingAccount", &["plan", "billing_email", "seats"]),
    ("UpdateApiKey", &["name", "status"]),
    ("UpdateUser", &["display_name", "account_type", "email"]),
    (
        "UpdateSecurityPolicy",
        &[
            "mfa_requirement",
            "reauthentication_max_age",
            "allowed_sign_in_methods",
            "restrict_invites_to_verified_domains",
            "enforced_fields",
        ],
    ),
    (
        "UpdateBranding",
        &[
            "display_name",
            "logo_uri",
            "icon_uri",
            "primary_color",
            "accent_color",
            "mail_sender_name",
            "enforced_fields",
        ],
    ),
    ("UpdateDomain", &["policy"]),
    (
        "UpdateSsoConnection",
        &[
            "display_name",
            "oidc",
            "domains",
            "enforced",
            "jit_provisioning",
            "default_role",
            "trust_idp_mfa",
            "enabled",
        ],
    ),
    (
        "UpdateScimToken",
        &["display_name", "state", "allow_unverified_user_names"],
    ),
    ("UpdateScimSettings", &["group_mappings", "default_role"]),
];

/// The Update RPCs without a field mask: UpdateMemberRole (one role) and
/// UpdateComplianceDefaults (one designation). An Update RPC without `update_mask` missing here
/// fails the suite.
pub const WITHOUT_MASK: [&str; 2] = ["UpdateMemberRole", "UpdateComplianceDefaults"];

/// Runs the suite on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db).await;
    h.stop().await?;
    result
}

const OWNER: &str = "user_esc_owner";
const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

fn user_of(role: OrgRole) -> String {
    if role == OrgRole::Owner {
        OWNER.to_owned()
    } else {
        format!(
            "user_esc_{}",
            role.as_str_name()
                .trim_start_matches("ORG_ROLE_")
                .to_lowercase()
        )
    }
}

async fn role_in(h: &Harness, org: &str, user: &str) -> anyhow::Result<i32> {
    Ok(h.orgs()
        .get_member(bearer(
            org_api::GetMemberRequest {
                organization_id: org.into(),
                user_id: user.into(),
            },
            &h.user_token(OWNER)?,
        ))
        .await?
        .into_inner()
        .member
        .map(|m| m.role)
        .unwrap_or_default())
}

async fn scenario(h: &Harness, db: &str) -> anyhow::Result<Figures> {
    let mut f = Figures::new("privilege-escalation", db);
    let (org, ws) = h.seed_org(OWNER).await?;
    let mut revision = 0;
    for role in ROLES {
        revision = h.add_member(OWNER, &org, &user_of(role), role).await?;
    }
    let target = "user_esc_target";
    revision = revision.max(h.add_member(OWNER, &org, target, OrgRole::User).await?);
    // Tenant F: another organization with members, for page-token replays.
    let f_owner = "user_esc_f_owner";
    let (f_org, f_ws) = h.seed_org(f_owner).await?;
    for i in 0..3 {
        h.add_member(
            f_owner,
            &f_org,
            &format!("user_esc_f_{i}"),
            OrgRole::Billing,
        )
        .await?;
    }
    wait_workspace_applied(h, &org, revision).await;
    let roles_before: Vec<(String, i32)> = {
        let mut v = Vec::new();
        for u in ROLES
            .iter()
            .map(|r| user_of(*r))
            .chain([OWNER.to_owned(), target.to_owned()])
        {
            let r = role_in(h, &org, &u).await?;
            v.push((u, r));
        }
        v
    };
    let admin_created =
        create_api_key_full(h, OWNER, &org, None, id_api::ApiKeyKind::Admin).await?;
    let admin_key = admin_created.secret.clone();
    let admin_key_id = admin_created.api_key.unwrap_or_default().id;

    // 1. Role grants above one's own.
    let mut refused_grants: Vec<(String, String)> = Vec::new();
    for role in ROLES {
        let me = user_of(role);
        let token = h.user_token(&me)?;
        let name = role.as_str_name();
        let higher: Vec<OrgRole> = [OrgRole::Owner, OrgRole::Admin, OrgRole::Billing]
            .into_iter()
            .filter(|r| *r != role && (role != OrgRole::Admin || *r == OrgRole::Owner))
            .collect();
        for up in &higher {
            // OWNER is never assignable (validated before anything else); other grants need
            // OWNER or ADMIN.
            let want = if *up == OrgRole::Owner {
                Code::InvalidArgument
            } else {
                Code::PermissionDenied
            };
            for (who, user) in [("itself", me.as_str()), ("another member", target)] {
                let r = h
                    .orgs()
                    .update_member_role(bearer(
                        org_api::UpdateMemberRoleRequest {
                            organization_id: org.clone(),
                            user_id: user.into(),
                            role: *up as i32,
                            etag: String::new(),
                        },
                        &token,
                    ))
                    .await;
                if want == Code::PermissionDenied
                    && r.as_ref()
                        .is_err_and(|s| s.code() == Code::PermissionDenied)
                {
                    refused_grants.push((me.clone(), user.to_owned()));
                }
                case(
                    &mut f,
                    &format!("{name} UpdateMemberRole {who} → {}", up.as_str_name()),
                    &r,
                    want,
                );
            }
            let r = h
                .orgs()
                .create_invite(bearer(
                    org_api::CreateInviteRequest {
                        organization_id: org.clone(),
                        invite: Some(org_api::Invite {
                            email: format!("esc-{}-{}@chaos.test", name, up.as_str_name())
                                .to_lowercase(),
                            role: *up as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await;
            case(
                &mut f,
                &format!("{name} CreateInvite as {}", up.as_str_name()),
                &r,
                want,
            );
        }
        // Workspace admin for oneself (ADMIN already administers every workspace). BILLING
        // sees every workspace (WORKSPACE_BILLING) but may not manage it; DEVELOPER and USER
        // were not added to this one, so it does not exist for them (ORG-2, WS-5).
        let ws_want = if role == OrgRole::Billing {
            Code::PermissionDenied
        } else {
            Code::NotFound
        };
        if role != OrgRole::Admin {
            let r = h
                .workspaces()
                .add_workspace_member(bearer(
                    ws_api::AddWorkspaceMemberRequest {
                        workspace_id: ws.clone(),
                        user_id: me.clone(),
                        role: WorkspaceRole::Admin as i32,
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await;
            case(
                &mut f,
                &format!("{name} AddWorkspaceMember itself as WORKSPACE_ADMIN"),
                &r,
                ws_want,
            );
            let r = h
                .workspaces()
                .update_workspace_member(bearer(
                    ws_api::UpdateWorkspaceMemberRequest {
                        workspace_member: Some(ws_api::WorkspaceMember {
                            workspace_id: ws.clone(),
                            user_id: me.clone(),
                            role: WorkspaceRole::Admin as i32,
                            ..Default::default()
                        }),
                        update_mask: mask(&["role"]),
                        etag: String::new(),
                    },
                    &token,
                ))
                .await;
            case(
                &mut f,
                &format!("{name} UpdateWorkspaceMember itself to WORKSPACE_ADMIN"),
                &r,
                ws_want,
            );
        }
        // Ownership by a non-owner.
        for (who, user) in [("itself", me.as_str()), ("another member", target)] {
            let r = h
                .orgs()
                .transfer_ownership(bearer(
                    org_api::TransferOwnershipRequest {
                        organization_id: org.clone(),
                        new_owner_user_id: user.into(),
                    },
                    &token,
                ))
                .await;
            case(
                &mut f,
                &format!("{name} TransferOwnership to {who}"),
                &r,
                Code::PermissionDenied,
            );
        }
        // Removing or demoting the OWNER.
        let r = h
            .orgs()
            .remove_member(bearer(
                org_api::RemoveMemberRequest {
                    organization_id: org.clone(),
                    user_id: OWNER.into(),
                },
                &token,
            ))
            .await;
        let want = if role == OrgRole::Admin {
            Code::FailedPrecondition
        } else {
            Code::PermissionDenied
        };
        case(&mut f, &format!("{name} RemoveMember(OWNER)"), &r, want);
        let r = h
            .orgs()
            .update_member_role(bearer(
                org_api::UpdateMemberRoleRequest {
                    organization_id: org.clone(),
                    user_id: OWNER.into(),
                    role: OrgRole::User as i32,
                    etag: String::new(),
                },
                &token,
            ))
            .await;
        case(&mut f, &format!("{name} demotes the OWNER"), &r, want);
    }
    // The OWNER itself, and an admin API key, against the OWNER's role.
    let owner_token = h.user_token(OWNER)?;
    let r = h
        .orgs()
        .update_member_role(bearer(
            org_api::UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: OWNER.into(),
                role: OrgRole::Admin as i32,
                etag: String::new(),
            },
            &owner_token,
        ))
        .await;
    case(&mut f, "OWNER demotes itself", &r, Code::FailedPrecondition);
    let r = h
        .orgs()
        .remove_member(bearer(
            org_api::RemoveMemberRequest {
                organization_id: org.clone(),
                user_id: OWNER.into(),
            },
            &owner_token,
        ))
        .await;
    case(&mut f, "OWNER removes itself", &r, Code::FailedPrecondition);
    let r = h
        .workspaces()
        .add_workspace_member(bearer(
            ws_api::AddWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: target.into(),
                role: WorkspaceRole::Billing as i32,
                request_id: String::new(),
            },
            &owner_token,
        ))
        .await;
    case(
        &mut f,
        "OWNER assigns WORKSPACE_BILLING by hand (WS-4)",
        &r,
        Code::InvalidArgument,
    );
    let key = Cred::ApiKey(admin_key.clone());
    for (name, path, body) in [
        (
            "admin API key RemoveMember(OWNER)",
            "/orgplane.organization.v1.OrganizationService/RemoveMember",
            org_api::RemoveMemberRequest {
                organization_id: org.clone(),
                user_id: OWNER.into(),
            }
            .encode_to_vec(),
        ),
        (
            "admin API key TransferOwnership",
            "/orgplane.organization.v1.OrganizationService/TransferOwnership",
            org_api::TransferOwnershipRequest {
                organization_id: org.clone(),
                new_owner_user_id: target.into(),
            }
            .encode_to_vec(),
        ),
        (
            "admin API key UpdateMemberRole → OWNER",
            "/orgplane.organization.v1.OrganizationService/UpdateMemberRole",
            org_api::UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: target.into(),
                role: OrgRole::Owner as i32,
                etag: String::new(),
            }
            .encode_to_vec(),
        ),
    ] {
        let t = Target {
            path: path.into(),
            service: "organization",
            id_fields: Vec::new(),
        };
        let r = call(h, &t, body, &key).await;
        let want = match name {
            "admin API key RemoveMember(OWNER)" => Code::FailedPrecondition,
            "admin API key TransferOwnership" => Code::PermissionDenied,
            _ => Code::InvalidArgument,
        };
        case(&mut f, name, &r, want);
    }

    // API keys are power: an admin key acts as ADMIN, so only OWNER/ADMIN may mint or manage
    // one (ID-7); a workspace key only where the caller may develop.
    for role in [OrgRole::Billing, OrgRole::Developer, OrgRole::User] {
        let token = h.user_token(&user_of(role))?;
        let name = role.as_str_name();
        let mut ident =
            id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        let r = ident
            .create_api_key(bearer(
                id_api::CreateApiKeyRequest {
                    organization_id: org.clone(),
                    api_key: Some(id_api::ApiKey {
                        kind: id_api::ApiKeyKind::Admin as i32,
                        name: "escalation".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await;
        case(
            &mut f,
            &format!("{name} CreateApiKey ADMIN"),
            &r,
            Code::PermissionDenied,
        );
        let r = ident
            .update_api_key(bearer(
                id_api::UpdateApiKeyRequest {
                    api_key: Some(id_api::ApiKey {
                        id: admin_key_id.clone(),
                        status: id_api::ApiKeyStatus::Inactive as i32,
                        ..Default::default()
                    }),
                    update_mask: mask(&["status"]),
                    etag: String::new(),
                },
                &token,
            ))
            .await;
        case(
            &mut f,
            &format!("{name} deactivates the OWNER's admin key"),
            &r,
            Code::PermissionDenied,
        );
        if role != OrgRole::Developer {
            let r = ident
                .create_api_key(bearer(
                    id_api::CreateApiKeyRequest {
                        organization_id: org.clone(),
                        api_key: Some(id_api::ApiKey {
                            kind: id_api::ApiKeyKind::Workspace as i32,
                            name: "escalation".into(),
                            workspace_id: ws.clone(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await;
            // Neither role may create keys at all: refused by role whatever the workspace
            // (so the answer says nothing about it).
            case(
                &mut f,
                &format!("{name} CreateApiKey WORKSPACE"),
                &r,
                Code::PermissionDenied,
            );
        }
    }
    // A workspace admin by hand (org USER) administers only the workspace's content, not its
    // membership, settings or lifecycle (OWNER/ADMIN only).
    let wsadmin = user_of(OrgRole::User);
    h.workspaces()
        .add_workspace_member(bearer(
            ws_api::AddWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: wsadmin.clone(),
                role: WorkspaceRole::Admin as i32,
                request_id: String::new(),
            },
            &owner_token,
        ))
        .await?;
    let t = h.user_token(&wsadmin)?;
    let r = h
        .workspaces()
        .add_workspace_member(bearer(
            ws_api::AddWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: target.into(),
                role: WorkspaceRole::Admin as i32,
                request_id: String::new(),
            },
            &t,
        ))
        .await;
    case(
        &mut f,
        "WORKSPACE_ADMIN by hand adds another WORKSPACE_ADMIN",
        &r,
        Code::PermissionDenied,
    );
    let r = h
        .workspaces()
        .update_workspace(bearer(
            ws_api::UpdateWorkspaceRequest {
                workspace: Some(ws_api::Workspace {
                    id: ws.clone(),
                    name: "taken".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            &t,
        ))
        .await;
    case(
        &mut f,
        "WORKSPACE_ADMIN by hand renames the workspace",
        &r,
        Code::PermissionDenied,
    );
    let r = h
        .workspaces()
        .archive_workspace(bearer(
            ws_api::ArchiveWorkspaceRequest {
                workspace_id: ws.clone(),
                etag: String::new(),
            },
            &t,
        ))
        .await;
    case(
        &mut f,
        "WORKSPACE_ADMIN by hand archives the workspace",
        &r,
        Code::PermissionDenied,
    );
    let r = h
        .workspaces()
        .remove_workspace_member(bearer(
            ws_api::RemoveWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: wsadmin.clone(),
            },
            &t,
        ))
        .await;
    case(
        &mut f,
        "WORKSPACE_ADMIN by hand removes itself",
        &r,
        Code::PermissionDenied,
    );

    // 1b. Accounts: no member without the role creates, renames, flags, closes or takes over
    // an account, or changes the compliance defaults.
    let members: Vec<(OrgRole, String)> = ROLES.iter().map(|r| (*r, user_of(*r))).collect();
    crate::accounts::escalation::roles(h, &mut f, &org, OWNER, &members).await?;

    // 2. AcceptInvite tampering.
    accept_invite_tampering(h, &mut f, &org).await?;

    // 3. Protected fields through field masks.
    field_masks(h, &mut f, &org, &ws, &admin_key).await?;

    // 4. Page tokens (the account lists' parent: an account of each tenant with two
    // subaccounts and two grants).
    let acct = crate::accounts::escalation::page_rows(
        h,
        &org,
        OWNER,
        ["user_esc_developer", "user_esc_billing"],
    )
    .await?;
    let f_acct = crate::accounts::escalation::page_rows(
        h,
        &f_org,
        f_owner,
        ["user_esc_f_0", "user_esc_f_1"],
    )
    .await?;
    page_tokens(
        h,
        &mut f,
        (&org, &ws, OWNER, &acct),
        (&f_org, &f_ws, f_owner, &f_acct),
    )
    .await?;

    // Nothing changed: every role is as before, the OWNER is still the owner.
    for (user, before) in &roles_before {
        let now = role_in(h, &org, user).await?;
        f.operations += 1;
        if now != *before {
            f.failures
                .push(format!("{user}'s role changed from {before} to {now}"));
        }
    }
    let o = h
        .orgs()
        .get_organization(bearer(
            org_api::GetOrganizationRequest {
                organization_id: org.clone(),
            },
            &owner_token,
        ))
        .await?
        .into_inner()
        .organization
        .unwrap_or_default();
    if o.owner_user_id != OWNER || o.state != org_api::OrganizationState::Active as i32 {
        f.failures.push(format!(
            "organization owner/state changed: {} {}",
            o.owner_user_id, o.state
        ));
    }
    refusals_audited(h, &mut f, &org, &owner_token, &refused_grants).await?;
    // 5. Merges (rule ORG-15) by members of both organizations who are not the OWNER of both.
    crate::merge::escalation::run(h, &mut f).await?;
    Ok(f)
}

/// Every refused grant (`(actor, member)`, PERMISSION_DENIED) left an OUTCOME_FAILURE record of
/// `member.update_role` in the organization's audit log, as its OWNER reads it (ORG-10).
async fn refusals_audited(
    h: &Harness,
    f: &mut Figures,
    org: &str,
    owner_token: &str,
    refused: &[(String, String)],
) -> anyhow::Result<()> {
    use orgplane_proto::audit::v1::{AuditEventFilter, Outcome};
    let mut records = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = h
            .orgs()
            .list_audit_events(bearer(
                org_api::ListAuditEventsRequest {
                    organization_id: org.to_owned(),
                    filter: Some(AuditEventFilter {
                        action: "member.update_role".into(),
                        outcome: Outcome::Failure as i32,
                        ..Default::default()
                    }),
                    page_size: 100,
                    page_token,
                },
                owner_token,
            ))
            .await?
            .into_inner();
        records.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut audited = 0;
    for (actor, member) in refused {
        f.operations += 1;
        if records.iter().any(|r| {
            &r.actor_id == actor
                && &r.resource_id == member
                && r.status_code == "PERMISSION_DENIED"
                && !r.error_reason.is_empty()
        }) {
            f.attacks_passed += 1;
            audited += 1;
        } else {
            f.attacks_failed += 1;
            f.failures.push(format!(
                "{actor}'s refused UpdateMemberRole of {member} left no OUTCOME_FAILURE audit record"
            ));
        }
    }
    f.notes.push_str(&format!(
        "; {audited}/{} refused role grants audited as OUTCOME_FAILURE",
        refused.len()
    ));
    Ok(())
}

/// Waits (up to 10 s) until workspace has applied organization revision `revision`, so that the
/// refusals below are about roles, not replication lag.
async fn wait_workspace_applied(h: &Harness, org: &str, revision: i64) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        let req = bearer(
            ws_api::CheckAccessRequest {
                organization_id: org.into(),
                subject: Some(ws_api::check_access_request::Subject::UserId(OWNER.into())),
                permission: ws_api::Permission::Read as i32,
                min_organization_revision: revision,
                ..Default::default()
            },
            &h.product_token().unwrap_or_default(),
        );
        if h.workspaces().check_access(req).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn accept_invite_tampering(h: &Harness, f: &mut Figures, org: &str) -> anyhow::Result<()> {
    let owner = h.user_token(OWNER)?;
    let invite = |email: &str, role: OrgRole| org_api::CreateInviteRequest {
        organization_id: org.into(),
        invite: Some(org_api::Invite {
            email: email.into(),
            role: role as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let invitee = "user_esc_invitee";
    h.seed_user(invitee, "user_esc_invitee@chaos.test").await?;
    let other = "user_esc_outsider";
    h.seed_user(other, "user_esc_outsider@chaos.test").await?;
    let inv = h
        .orgs()
        .create_invite(bearer(
            invite("user_esc_invitee@chaos.test", OrgRole::User),
            &owner,
        ))
        .await?
        .into_inner()
        .invite
        .unwrap_or_default();
    let accept = |id: &str, token: &str| {
        let t = Target {
            path: "/orgplane.organization.v1.OrganizationService/AcceptInvite".into(),
            service: "organization",
            id_fields: Vec::new(),
        };
        let mut body = org_api::AcceptInviteRequest {
            invite_id: id.into(),
        }
        .encode_to_vec();
        // Tampering: unknown fields claiming a role (2 = OWNER, 5 = role OWNER) are ignored.
        prost::encoding::int32::encode(2, &(OrgRole::Owner as i32), &mut body);
        prost::encoding::int32::encode(5, &(OrgRole::Owner as i32), &mut body);
        let cred = Cred::Token(token.to_owned());
        async move { call(h, &t, body, &cred).await }
    };
    let r = accept(&inv.id, &h.user_token(other)?).await;
    case(
        f,
        "AcceptInvite by a user with another email",
        &r,
        Code::FailedPrecondition,
    );
    let r = accept(&format!("{}x", inv.id), &h.user_token(invitee)?).await;
    case(f, "AcceptInvite of a forged invite id", &r, Code::NotFound);
    let r = accept(&inv.id, &h.user_token(invitee)?).await;
    case(f, "AcceptInvite with role fields smuggled in", &r, Code::Ok);
    let role = role_in(h, org, invitee).await?;
    f.operations += 1;
    if role != OrgRole::User as i32 {
        f.attacks_failed += 1;
        f.failures.push(format!(
            "smuggled AcceptInvite made the invitee role {role}"
        ));
    } else {
        f.attacks_passed += 1;
    }
    let r = accept(&inv.id, &h.user_token(invitee)?).await;
    case(f, "AcceptInvite twice", &r, Code::FailedPrecondition);
    // A withdrawn invite cannot be accepted.
    let second = "user_esc_withdrawn";
    h.seed_user(second, "user_esc_withdrawn@chaos.test").await?;
    let inv2 = h
        .orgs()
        .create_invite(bearer(
            invite("user_esc_withdrawn@chaos.test", OrgRole::Admin),
            &owner,
        ))
        .await?
        .into_inner()
        .invite
        .unwrap_or_default();
    h.orgs()
        .delete_invite(bearer(
            org_api::DeleteInviteRequest {
                invite_id: inv2.id.clone(),
            },
            &owner,
        ))
        .await?;
    let r = accept(&inv2.id, &h.user_token(second)?).await;
    case(
        f,
        "AcceptInvite of a deleted invite",
        &r,
        Code::FailedPrecondition,
    );
    Ok(())
}

/// The encoded resource of each Update RPC with its identifying fields set, and the caller.
fn update_resource(
    method: &str,
    org: &str,
    ws: &str,
    unit: &str,
    ids: (&str, &str, &str, &str),
) -> Option<(Vec<u8>, &'static str)> {
    let (key_id, sso_id, scim_id, account_id) = ids;
    Some(match method {
        "UpdateAccount" => (
            org_api::Account {
                id: account_id.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateOrganization" => (
            org_api::Organization {
                id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateUnit" => (
            org_api::Unit {
                id: unit.into(),
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateWorkspace" => (
            ws_api::Workspace {
                id: ws.into(),
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateWorkspaceMember" => (
            ws_api::WorkspaceMember {
                workspace_id: ws.into(),
                organization_id: org.into(),
                user_id: "user_esc_developer".into(),
                role: WorkspaceRole::User as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateBillingAccount" => (
            bill_api::BillingAccount {
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateApiKey" => (
            id_api::ApiKey {
                id: key_id.into(),
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateUser" => (
            id_api::User {
                id: "user_esc_user".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            "user_esc_user",
        ),
        "UpdateSecurityPolicy" => (
            org_api::SecurityPolicy {
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateBranding" => (
            org_api::Branding {
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        // The mask is judged before the domain is looked up: an unknown id will do.
        "UpdateDomain" => (
            org_api::Domain {
                id: "dom_escalation_mask".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateSsoConnection" => (
            id_api::SsoConnection {
                id: sso_id.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateScimToken" => (
            id_api::ScimToken {
                id: scim_id.into(),
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        "UpdateScimSettings" => (
            id_api::ScimSettings {
                organization_id: org.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            OWNER,
        ),
        _ => return None,
    })
}

async fn field_masks(
    h: &Harness,
    f: &mut Figures,
    org: &str,
    ws: &str,
    admin_key: &str,
) -> anyhow::Result<()> {
    let protos = Protos::load()?;
    let owner = h.user_token(OWNER)?;
    let unit = h
        .orgs()
        .create_unit(bearer(
            org_api::CreateUnitRequest {
                organization_id: org.into(),
                unit: Some(org_api::Unit {
                    name: "mask unit".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &owner,
        ))
        .await?
        .into_inner()
        .unit
        .unwrap_or_default()
        .id;
    // The developer gets a direct workspace role so UpdateWorkspaceMember has a target.
    h.workspaces()
        .add_workspace_member(bearer(
            ws_api::AddWorkspaceMemberRequest {
                workspace_id: ws.into(),
                user_id: "user_esc_developer".into(),
                role: WorkspaceRole::Developer as i32,
                request_id: String::new(),
            },
            &owner,
        ))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "AddWorkspaceMember for the mask cases: {e:?}; so far: {:?}",
                f.failures
            )
        })?;
    let key_id = {
        let mut c =
            id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        c.list_api_keys(bearer(
            id_api::ListApiKeysRequest {
                organization_id: org.into(),
                ..Default::default()
            },
            &owner,
        ))
        .await?
        .into_inner()
        .api_keys
        .first()
        .map(|k| k.id.clone())
        .unwrap_or_default()
    };
    let _ = admin_key;
    let sso_id = crate::security::seed_sso_connection(h, org, &owner).await?;
    let scim_id = crate::security::seed_scim_token(h, org, &owner).await?;
    let account_id = crate::accounts::create(h, org, &owner, "mask account", "").await?;
    let mut covered = 0;
    for (path, process, input, _, streaming) in &protos.methods {
        let method = path.rsplit('/').next().unwrap_or_default();
        if *streaming || !method.starts_with("Update") {
            continue;
        }
        if protos.field(input, "update_mask").is_none() {
            if !WITHOUT_MASK.contains(&method) {
                f.attacks_failed += 1;
                f.failures.push(format!(
                    "{path}: an Update RPC without update_mask the suite does not know (add it)"
                ));
            }
            continue;
        }
        let Some((_, mutable)) = MUTABLE.iter().find(|(m, _)| *m == method) else {
            f.attacks_failed += 1;
            f.failures.push(format!(
                "{path}: an Update RPC the field-mask table does not know (add its mutable paths)"
            ));
            continue;
        };
        let Some((resource, caller)) = update_resource(
            method,
            org,
            ws,
            &unit,
            (&key_id, &sso_id, &scim_id, &account_id),
        ) else {
            continue;
        };
        let input_msg = protos.messages.get(input.as_str());
        let Some(res_field) = input_msg.and_then(|m| m.field.first()) else {
            continue;
        };
        let Some(res_msg) = protos.messages.get(res_field.type_name()) else {
            continue;
        };
        let mask_num = protos.field(input, "update_mask").unwrap_or(2);
        let t = Target {
            path: path.clone(),
            service: process,
            id_fields: Vec::new(),
        };
        let cred = Cred::Token(h.user_token(caller)?);
        covered += 1;
        let mut paths: Vec<String> = res_msg
            .field
            .iter()
            .map(|fd| fd.name().to_owned())
            .filter(|n| !mutable.contains(&n.as_str()))
            .collect();
        paths.extend(["no_such_field".into(), "name.first".into(), String::new()]);
        for p in paths {
            let mut body = Vec::new();
            prost::encoding::bytes::encode(res_field.number() as u32, &resource, &mut body);
            let m = prost_types::FieldMask {
                paths: vec![p.clone()],
            };
            prost::encoding::message::encode(mask_num, &m, &mut body);
            let r = call(h, &t, body, &cred).await;
            case(
                f,
                &format!("{method} mask [{p}]"),
                &r,
                Code::InvalidArgument,
            );
        }
        // An empty mask is refused too.
        let mut body = Vec::new();
        prost::encoding::bytes::encode(res_field.number() as u32, &resource, &mut body);
        let r = call(h, &t, body, &cred).await;
        case(
            f,
            &format!("{method} without a mask"),
            &r,
            Code::InvalidArgument,
        );
    }
    f.notes = format!("{covered} Update RPCs' protected fields; ");
    // Output-only fields set alongside a mutable path are ignored, not written.
    let r = h
        .orgs()
        .update_organization(bearer(
            org_api::UpdateOrganizationRequest {
                organization: Some(org_api::Organization {
                    id: org.into(),
                    name: "Escalated name".into(),
                    owner_user_id: "user_esc_user".into(),
                    state: org_api::OrganizationState::Deleted as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            &owner,
        ))
        .await;
    case(
        f,
        "UpdateOrganization [name] with owner/state set alongside",
        &r,
        Code::Ok,
    );
    crate::accounts::escalation::output_only_ignored(
        h,
        f,
        org,
        &account_id,
        OWNER,
        "user_esc_developer",
    )
    .await?;
    Ok(())
}

/// The paginated List RPCs (request with `page_token` and `page_size`) whose parent is an
/// organization, a workspace or an account.
fn paginated(protos: &Protos) -> Vec<(String, &'static str, String, String)> {
    protos
        .methods
        .iter()
        .filter(|(_, _, input, _, streaming)| {
            !streaming
                && protos.field(input, "page_token").is_some()
                && protos.field(input, "page_size").is_some()
                && (protos.field(input, "organization_id").is_some()
                    || protos.field(input, "workspace_id").is_some()
                    || protos.field(input, "parent_account_id").is_some())
        })
        .map(|(p, s, i, o, _)| (p.clone(), *s, i.clone(), o.clone()))
        .collect()
}

/// The page-token cases. Each tenant is (organization, workspace, OWNER, account): the account
/// is the parent of the account lists.
async fn page_tokens(
    h: &Harness,
    f: &mut Figures,
    a: (&str, &str, &str, &str),
    b: (&str, &str, &str, &str),
) -> anyhow::Result<()> {
    let protos = Protos::load()?;
    let a_token = Cred::Token(h.user_token(a.2)?);
    let b_token = Cred::Token(h.user_token(b.2)?);
    // Rows for every list: invites, units, a second workspace in each tenant.
    for (tenant, owner) in [(a, a.2), (b, b.2)] {
        let token = h.user_token(owner)?;
        for i in 0..2 {
            h.orgs()
                .create_invite(bearer(
                    org_api::CreateInviteRequest {
                        organization_id: tenant.0.into(),
                        invite: Some(org_api::Invite {
                            email: format!("page-{i}-{owner}@chaos.test"),
                            role: OrgRole::User as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await?;
            h.orgs()
                .create_unit(bearer(
                    org_api::CreateUnitRequest {
                        organization_id: tenant.0.into(),
                        unit: Some(org_api::Unit {
                            name: format!("page unit {i}"),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await?;
            create_api_key_full(h, owner, tenant.0, None, id_api::ApiKeyKind::Admin).await?;
            // Two billing changes, so billing's audit log has a second page.
            let _ = h
                .billing()
                .update_billing_account(bearer(
                    bill_api::UpdateBillingAccountRequest {
                        billing_account: Some(bill_api::BillingAccount {
                            organization_id: tenant.0.into(),
                            seats: 2 + i,
                            ..Default::default()
                        }),
                        update_mask: mask(&["seats"]),
                        etag: String::new(),
                    },
                    &token,
                ))
                .await;
        }
        h.workspaces()
            .create_workspace(bearer(
                ws_api::CreateWorkspaceRequest {
                    organization_id: tenant.0.into(),
                    workspace: Some(ws_api::Workspace {
                        name: "page ws".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await?;
    }
    // A's ids must never appear in an answer to B.
    let a_ids = [a.0, a.1, a.3];
    let mut covered = Vec::new();
    let mut no_second_page = Vec::new();
    for (path, service, input, output) in paginated(&protos) {
        let method = path.rsplit('/').next().unwrap_or_default().to_owned();
        let t = Target {
            path: path.clone(),
            service,
            id_fields: Vec::new(),
        };
        let size = protos.field(&input, "page_size").unwrap_or(2);
        let tok = protos.field(&input, "page_token").unwrap_or(3);
        let next = protos.field(&output, "next_page_token").unwrap_or(2);
        let parent = |tenant: (&str, &str, &str, &str)| {
            let mut body = Vec::new();
            if let Some(n) = protos.field(&input, "organization_id") {
                prost::encoding::string::encode(n, &tenant.0.to_owned(), &mut body);
            }
            for field in ["account_id", "parent_account_id"] {
                if let Some(n) = protos.field(&input, field) {
                    prost::encoding::string::encode(n, &tenant.3.to_owned(), &mut body);
                }
            }
            if let Some(n) = protos.field(&input, "workspace_id")
                && protos.field(&input, "organization_id").is_none()
            {
                prost::encoding::string::encode(n, &tenant.1.to_owned(), &mut body);
            }
            prost::encoding::int32::encode(size, &1, &mut body);
            body
        };
        let first = call(h, &t, parent(a), &a_token).await;
        let Some(page_token) = first
            .as_ref()
            .ok()
            .and_then(|bytes| string_field(bytes, next))
            .filter(|s| !s.is_empty())
        else {
            no_second_page.push(format!(
                "{method} ({})",
                first
                    .err()
                    .map(|s| format!("{:?}", s.code()))
                    .unwrap_or("1 page".into())
            ));
            continue;
        };
        covered.push(method.clone());
        // Baseline: the genuine token works for its own request.
        let mut body = parent(a);
        prost::encoding::string::encode(tok, &page_token, &mut body);
        let r = call(h, &t, body, &a_token).await;
        case(
            f,
            &format!("{method} genuine page token (baseline)"),
            &r,
            Code::Ok,
        );
        let mut tampered: Vec<(String, String)> = Vec::new();
        let bytes = page_token.as_bytes();
        for pos in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.to_vec();
            b[pos] = if b[pos] == b'A' { b'B' } else { b'A' };
            tampered.push((
                format!("byte {pos} flipped"),
                String::from_utf8_lossy(&b).into_owned(),
            ));
        }
        tampered.push((
            "truncated".into(),
            page_token[..page_token.len() - 3].to_owned(),
        ));
        tampered.push(("not base64".into(), "!!!not-a-token!!!".into()));
        tampered.push(("8 KiB".into(), "A".repeat(8 << 10)));
        for (what, token) in &tampered {
            let mut body = parent(a);
            prost::encoding::string::encode(tok, token, &mut body);
            let r = call(h, &t, body, &a_token).await;
            case(
                f,
                &format!("{method} page token {what}"),
                &r,
                Code::InvalidArgument,
            );
        }
        // Replayed with tenant B's parent, by B's owner: refused, and never A's rows.
        let mut body = parent(b);
        prost::encoding::string::encode(tok, &page_token, &mut body);
        let r = call(h, &t, body, &b_token).await;
        if let Ok(bytes) = &r
            && contains_any(bytes, &a_ids)
        {
            f.leaks += 1;
        }
        case(
            f,
            &format!("{method} A's page token with B's parent"),
            &r,
            Code::InvalidArgument,
        );
        // Replayed with a different filter: the first enum filter field set to 1.
        if let Some(filter) = protos.messages.get(&input).and_then(|m| {
            m.field
                .iter()
                .find(|fd| fd.r#type() == Type::Enum && fd.name() != "page_size")
                .map(|fd| fd.number() as u32)
        }) {
            let mut body = parent(a);
            prost::encoding::string::encode(tok, &page_token, &mut body);
            prost::encoding::int32::encode(filter, &1, &mut body);
            let r = call(h, &t, body, &a_token).await;
            case(
                f,
                &format!("{method} page token with another filter"),
                &r,
                Code::InvalidArgument,
            );
        }
    }
    f.notes.push_str(&format!(
        "page tokens of {} lists tampered ({}); single-page or refused: {:?}",
        covered.len(),
        covered.join(", "),
        no_second_page
    ));
    if covered.len() < 6 {
        f.failures.push(format!(
            "only {} paginated lists had a second page: {covered:?}",
            covered.len()
        ));
    }
    for list in ["ListAccounts", "ListSubaccounts", "ListAccountMembers"] {
        if !covered.iter().any(|c| c == list) {
            f.failures.push(format!(
                "{list} had no second page: its page tokens were not tampered"
            ));
        }
    }
    Ok(())
}

fn contains_any(haystack: &[u8], needles: &[&str]) -> bool {
    needles
        .iter()
        .any(|n| !n.is_empty() && haystack.windows(n.len()).any(|w| w == n.as_bytes()))
}
