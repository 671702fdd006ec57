//! The id-only part of the cross-tenant matrix: the RPCs that name a tenant's resources without
//! a top-level `organization_id` (ids of workspaces, invites, units, keys, users, accounts, and
//! the Update RPCs' nested resources), each body filled with tenant A's ids.

use super::*;

/// The encoded request of an RPC that names tenant `a`'s resources without a top-level
/// `organization_id` (the id-only and Update RPCs), or `None` when the matrix does not know it.
fn id_only_body(method: &str, id_fields: &[(i32, String)], a: &Tenant) -> Option<Vec<u8>> {
    use orgplane_proto::billing::v1 as bill_api;
    use orgplane_proto::workspace::v1 as ws_api;
    let mask = |p: &str| {
        Some(prost_types::FieldMask {
            paths: vec![p.to_owned()],
        })
    };
    let body = match method {
        "UpdateOrganization" => org_api::UpdateOrganizationRequest {
            organization: Some(org_api::Organization {
                id: a.org.clone(),
                name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateUnit" => org_api::UpdateUnitRequest {
            unit: Some(org_api::Unit {
                id: a.unit.clone(),
                name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateWorkspace" => ws_api::UpdateWorkspaceRequest {
            workspace: Some(ws_api::Workspace {
                id: a.ws.clone(),
                name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateWorkspaceMember" => ws_api::UpdateWorkspaceMemberRequest {
            workspace_member: Some(ws_api::WorkspaceMember {
                workspace_id: a.ws.clone(),
                user_id: a.member.clone(),
                role: ws_api::WorkspaceRole::Admin as i32,
                ..Default::default()
            }),
            update_mask: mask("role"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateBillingAccount" => bill_api::UpdateBillingAccountRequest {
            billing_account: Some(bill_api::BillingAccount {
                organization_id: a.org.clone(),
                seats: 3,
                ..Default::default()
            }),
            update_mask: mask("seats"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateApiKey" => id_api::UpdateApiKeyRequest {
            api_key: Some(id_api::ApiKey {
                id: a.key.clone(),
                name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateUser" => id_api::UpdateUserRequest {
            user: Some(id_api::User {
                id: a.member.clone(),
                display_name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateSecurityPolicy" => org_api::UpdateSecurityPolicyRequest {
            security_policy: Some(org_api::SecurityPolicy {
                organization_id: a.org.clone(),
                mfa_requirement: org_api::MfaRequirement::Required as i32,
                ..Default::default()
            }),
            update_mask: mask("mfa_requirement"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateDomain" => org_api::UpdateDomainRequest {
            domain: Some(org_api::Domain {
                id: a.domain.clone(),
                policy: org_api::DomainPolicy::Blocked as i32,
                ..Default::default()
            }),
            update_mask: mask("policy"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateSsoConnection" => id_api::UpdateSsoConnectionRequest {
            sso_connection: Some(id_api::SsoConnection {
                id: a.sso.clone(),
                display_name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateScimToken" => id_api::UpdateScimTokenRequest {
            scim_token: Some(id_api::ScimToken {
                id: a.scim.clone(),
                state: id_api::ScimTokenState::Disabled as i32,
                ..Default::default()
            }),
            update_mask: mask("state"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateScimSettings" => id_api::UpdateScimSettingsRequest {
            scim_settings: Some(id_api::ScimSettings {
                organization_id: a.org.clone(),
                default_role: OrgRole::Admin as i32,
                ..Default::default()
            }),
            update_mask: mask("default_role"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateBranding" => org_api::UpdateBrandingRequest {
            branding: Some(org_api::Branding {
                organization_id: a.org.clone(),
                display_name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        "UpdateAccount" => org_api::UpdateAccountRequest {
            account: Some(org_api::Account {
                id: a.accounts.account.clone(),
                display_name: "attacker".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
            etag: String::new(),
        }
        .encode_to_vec(),
        m if m.starts_with("Update") => return None,
        // Valid apart from the operator, so that the answer is the tenant check (ORG-13).
        "CreateChildOrganization" => org_api::CreateChildOrganizationRequest {
            operator_organization_id: a.org.clone(),
            organization: Some(org_api::Organization {
                name: "attacker child".into(),
                ..Default::default()
            }),
            owner_email: "attacker-child-owner@chaos.test".into(),
            request_id: String::new(),
        }
        .encode_to_vec(),
        // A user's own second factors and challenges, named by id only: a caller reaches only
        // their own (identity's suite proves it with real factors of two users); here each
        // must answer as for an unknown id, never INVALID_ARGUMENT or OK.
        "ConfirmTotpEnrollment" => id_api::ConfirmTotpEnrollmentRequest {
            factor_id: "mfa_of_tenant_a".into(),
            code: "123456".into(),
        }
        .encode_to_vec(),
        "ConfirmPasskeyEnrollment" => id_api::ConfirmPasskeyEnrollmentRequest {
            factor_id: "mfa_of_tenant_a".into(),
            credential_json: "{}".into(),
        }
        .encode_to_vec(),
        "DeleteMfaFactor" => id_api::DeleteMfaFactorRequest {
            factor_id: "mfa_of_tenant_a".into(),
        }
        .encode_to_vec(),
        "VerifyMfaChallenge" => id_api::VerifyMfaChallengeRequest {
            challenge_id: "mfac_not_yours".into(),
            recovery_code: "aaaa-bbbb-cccc".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "AddWorkspaceMember" => {
            let mut b = ws_api::AddWorkspaceMemberRequest {
                role: ws_api::WorkspaceRole::Admin as i32,
                ..Default::default()
            }
            .encode_to_vec();
            for (num, name) in id_fields {
                let v = match name.as_str() {
                    "workspace_id" => &a.ws,
                    "user_id" => &a.member,
                    _ => continue,
                };
                encode_string(&mut b, *num, v);
            }
            b
        }
        // A's organization as the prime (resolved first), beside a candidate of the same shape
        // that does not exist; [`crate::merge::cross_tenant`] pairs A's with B's both ways.
        "MergeOrganizations" => org_api::MergeOrganizationsRequest {
            prime_organization_id: a.org.clone(),
            candidate_organization_id: crate::merge::unknown_like(&a.org),
            validate_only: false,
            request_id: uuid::Uuid::new_v4().to_string(),
        }
        .encode_to_vec(),
        // Valid apart from the caller: a subaccount needs its display name.
        "CreateSubaccount" => org_api::CreateSubaccountRequest {
            parent_account_id: a.accounts.account.clone(),
            subaccount: Some(org_api::Account {
                display_name: "attacker subaccount".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }
        .encode_to_vec(),
        _ => {
            let mut b = Vec::new();
            for (num, name) in id_fields {
                if name == "request_id" {
                    continue;
                }
                encode_string(&mut b, *num, a.id_for(name)?);
            }
            b
        }
    };
    Some(body)
}

/// The RPCs that name a tenant's resources without a top-level `organization_id` (ids of
/// workspaces, invites, units, keys, users, and the Update RPCs' nested resources), attacked by
/// every caller of tenant B: each must be refused as for a non-member and answer nothing of A.
pub(super) async fn id_only_matrix(
    h: &Harness,
    f: &mut Figures,
    a: &Tenant,
    c: &Tenant,
    attackers: &[(String, Cred)],
) -> anyhow::Result<usize> {
    let protos = crate::escalation::Protos::load()?;
    let secrets = a.secrets();
    let others = c.secrets();
    let mut n = 0;
    for (path, service, input, _, streaming) in &protos.methods {
        let method = path.rsplit('/').next().unwrap_or_default();
        if *streaming
            || protos.field(input, "organization_id").is_some()
            || ["AuthenticateApiKey", "IssueServiceToken"].contains(&method)
        {
            continue;
        }
        let id_fields: Vec<(i32, String)> = protos
            .messages
            .get(input.as_str())
            .map(|m| {
                m.field
                    .iter()
                    .filter(|f| {
                        f.r#type() == Type::String
                            && f.name().ends_with("_id")
                            && f.name() != "request_id"
                    })
                    .map(|f| (f.number(), f.name().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if id_fields.is_empty() && !method.starts_with("Update") {
            continue;
        }
        let Some(body) = id_only_body(method, &id_fields, a) else {
            f.attacks_failed += 1;
            f.failures.push(format!(
                "{path}: names a resource the cross-tenant matrix cannot fill (add it)"
            ));
            continue;
        };
        n += 1;
        let t = Target {
            path: path.clone(),
            service,
            id_fields,
        };
        // Baseline: the same read by A's owner works, so the refusals are the tenant check.
        if method.starts_with("Get") || t.path.contains("AccountService/List") {
            let own = Cred::Token(h.user_token("user_tenant_a_owner")?);
            match call(h, &t, body.clone(), &own).await {
                Ok(_) => f.attacks_passed += 1,
                Err(s) => {
                    f.attacks_failed += 1;
                    f.failures.push(format!(
                        "{path} by tenant A's owner (baseline): {:?} {}",
                        s.code(),
                        s.message()
                    ));
                }
            }
        }
        for (role, cred) in attackers {
            match call(h, &t, body.clone(), cred).await {
                Ok(bytes) => {
                    f.leaks += 1;
                    f.failures.push(format!(
                        "{path} as {role} of another org answered OK{}",
                        if contains_any(&bytes, &secrets) {
                            " with tenant A data"
                        } else {
                            ""
                        }
                    ));
                }
                Err(s) => {
                    if contains_any(s.message().as_bytes(), &others)
                        || contains_any(s.details(), &others)
                    {
                        f.leaks += 1;
                    }
                    // AcceptInvite answers a caller with another email INVITE_EMAIL_MISMATCH and
                    // nothing about the organization (documented).
                    let ok = match s.code() {
                        Code::NotFound | Code::PermissionDenied | Code::Unauthenticated => true,
                        Code::FailedPrecondition => method == "AcceptInvite",
                        _ => false,
                    };
                    if ok {
                        f.attacks_passed += 1;
                    } else {
                        f.attacks_failed += 1;
                        f.failures.push(format!(
                            "{path} as {role} of another org: {:?} {}",
                            s.code(),
                            s.message()
                        ));
                    }
                }
            }
        }
    }
    Ok(n)
}
