//! MergeOrganizations (`orgplane.organization.v1.OrganizationService`, rule ORG-15) in the
//! security suites: tenant B's callers naming tenant A's organization as the candidate or the
//! prime ([`cross_tenant`]), members of both organizations who are not the OWNER of both
//! ([`escalation`]), and a real merge with its refusals in the audit suite ([`audit`]).

pub mod audit;
pub mod cross_tenant;
pub mod escalation;

use orgplane_platform::audit::row;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::organization::v1::OrgRole;
use prost::Message;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

pub(crate) use crate::accounts::cross_tenant::{check, expect, unknown_like};
pub(crate) use crate::accounts::verified_domain;
use crate::harness::{Harness, bearer};
use crate::security::Target;

/// The RPC, as its path names it.
pub const PATH: &str = "/orgplane.organization.v1.OrganizationService/MergeOrganizations";

/// The action of its audit records (success and refusal alike).
pub const ACTION: &str = "organization.merge";

/// The raw-call target of MergeOrganizations.
pub fn target() -> Target {
    Target {
        path: PATH.into(),
        service: "organization",
        id_fields: Vec::new(),
    }
}

/// The encoded request merging `candidate` into `prime` (a preview when `validate_only`).
pub fn body(prime: &str, candidate: &str, validate_only: bool, request_id: &str) -> Vec<u8> {
    org_api::MergeOrganizationsRequest {
        prime_organization_id: prime.into(),
        candidate_organization_id: candidate.into(),
        validate_only,
        request_id: request_id.into(),
    }
    .encode_to_vec()
}

/// Creates an organization named `name` as the holder of `token`; answers its id and the
/// organization service's revision.
pub async fn create_org(h: &Harness, token: &str, name: &str) -> anyhow::Result<(String, i64)> {
    let created = h
        .orgs()
        .create_organization(bearer(
            org_api::CreateOrganizationRequest {
                organization: Some(org_api::Organization {
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("CreateOrganization {name:?}: {s:?}"))?
        .into_inner();
    Ok((
        created.organization.unwrap_or_default().id,
        created.revision,
    ))
}

/// Makes the existing user `user` (`<user>@chaos.test`) a member of `org` with `role`, invited
/// by the holder of `owner_token`.
pub async fn join(
    h: &Harness,
    owner_token: &str,
    org: &str,
    user: &str,
    role: OrgRole,
) -> anyhow::Result<()> {
    let invite = h
        .orgs()
        .create_invite(bearer(
            org_api::CreateInviteRequest {
                organization_id: org.into(),
                invite: Some(org_api::Invite {
                    email: format!("{user}@chaos.test"),
                    role: role as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            owner_token,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("CreateInvite {user} to {org}: {s:?}"))?
        .into_inner()
        .invite
        .unwrap_or_default();
    h.orgs()
        .accept_invite(bearer(
            org_api::AcceptInviteRequest {
                invite_id: invite.id,
            },
            &h.user_token(user)?,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("AcceptInvite {user} to {org}: {s:?}"))?;
    Ok(())
}

/// A user (seeded as `<id>@chaos.test`) who may or may not exist yet.
pub async fn seed_user(h: &Harness, id: &str) -> anyhow::Result<()> {
    h.seed_user(id, &format!("{id}@chaos.test")).await
}

/// An organization as its OWNER reads it, with its members, units, invites and domains, and
/// the number of records in its audit log (from the organization service's database).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// GetOrganization.
    pub org: org_api::Organization,
    /// ListMembers.
    pub members: Vec<org_api::Member>,
    /// ListUnits (top level).
    pub units: Vec<org_api::Unit>,
    /// ListInvites (withdrawn included).
    pub invites: Vec<org_api::Invite>,
    /// ListDomains.
    pub domains: Vec<org_api::Domain>,
    /// Audit records in the organization's log.
    pub audit_records: usize,
}

/// The [`Snapshot`] of `org`, read with its OWNER's `owner_token`.
pub async fn snapshot(h: &Harness, org: &str, owner_token: &str) -> anyhow::Result<Snapshot> {
    let o = org.to_owned();
    let mut c = h.orgs();
    let got = c
        .get_organization(bearer(
            org_api::GetOrganizationRequest {
                organization_id: o.clone(),
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .organization
        .unwrap_or_default();
    let members = c
        .list_members(bearer(
            org_api::ListMembersRequest {
                organization_id: o.clone(),
                page_size: 1000,
                ..Default::default()
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .members;
    let units = c
        .list_units(bearer(
            org_api::ListUnitsRequest {
                organization_id: o.clone(),
                page_size: 1000,
                ..Default::default()
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .units;
    let invites = c
        .list_invites(bearer(
            org_api::ListInvitesRequest {
                organization_id: o.clone(),
                page_size: 1000,
                show_deleted: true,
                ..Default::default()
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .invites;
    let domains = c
        .list_domains(bearer(
            org_api::ListDomainsRequest {
                organization_id: o.clone(),
                page_size: 1000,
                ..Default::default()
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .domains;
    Ok(Snapshot {
        org: got,
        members,
        units,
        invites,
        domains,
        audit_records: audit_rows(h, org).await?.len(),
    })
}

/// Every record of `org`'s log in the organization service's database.
pub async fn audit_rows(h: &Harness, org: &str) -> anyhow::Result<Vec<row::Model>> {
    audit_rows_in(h, "organization", org).await
}

/// Every audit row of `org` in `service`'s database.
pub async fn audit_rows_in(
    h: &Harness,
    service: &str,
    org: &str,
) -> anyhow::Result<Vec<row::Model>> {
    let db = h.database(service).await?;
    let rows = row::Entity::find()
        .filter(row::Column::OrganizationId.eq(org.to_owned()))
        .all(&db)
        .await;
    let _ = db.close().await;
    Ok(rows?)
}

/// Whether `org` holds `domain` VERIFIED, as its OWNER (`owner_token`) lists it.
pub async fn holds_verified(
    h: &Harness,
    org: &str,
    owner_token: &str,
    domain: &str,
) -> anyhow::Result<bool> {
    Ok(h.orgs()
        .list_domains(bearer(
            org_api::ListDomainsRequest {
                organization_id: org.into(),
                page_size: 1000,
                state: org_api::DomainState::Verified as i32,
                ..Default::default()
            },
            owner_token,
        ))
        .await?
        .into_inner()
        .domains
        .iter()
        .any(|d| d.domain_name == domain && d.state == org_api::DomainState::Verified as i32))
}

/// The role of `user` in `org`, as the holder of `token` reads it (0: not a member).
pub async fn role_in(h: &Harness, org: &str, user: &str, token: &str) -> anyhow::Result<i32> {
    match h
        .orgs()
        .get_member(bearer(
            org_api::GetMemberRequest {
                organization_id: org.into(),
                user_id: user.into(),
            },
            token,
        ))
        .await
    {
        Ok(m) => Ok(m.into_inner().member.map(|m| m.role).unwrap_or_default()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(0),
        Err(s) => Err(anyhow::anyhow!("GetMember {user} in {org}: {s:?}")),
    }
}
