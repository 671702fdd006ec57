//! The internal calls services make to the organization service on behalf of a call:
//! `LookupDomain` (which organizations hold an address's domain VERIFIED, and which invited it —
//! identity's sign-up restriction, rule ORG-14) and `ProvisionMember` (identity's just-in-time
//! SSO membership, rule ID-13; SCIM, rule ID-14, also with `set_role`) and `DeprovisionMember`
//! (SCIM deactivation and deletion), and `GetUnit` (which organization a unit belongs to: the
//! workspace service's placement check, rule ORG-9). Every call carries the caller's service token, request id and
//! trace, and a deadline; no answer is UNAVAILABLE `ORGANIZATION_UNAVAILABLE`, never a silent
//! pass.

use std::sync::Arc;
use std::time::Duration;

use super::ServiceChannel;
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::organization::v1::{
    DeprovisionMemberRequest, GetUnitRequest, LookupDomainRequest, LookupDomainResponse, OrgRole,
    ProvisionMemberRequest, ProvisionMemberResponse,
};

use crate::call::Call;
use crate::clients::{ServiceTokenSource, outgoing};
use crate::error::Reason;
use crate::error::{ApiError, ApiResult, error_reason_of};

/// How long a caller waits for the organization service.
const ORGANIZATION_DEADLINE: Duration = Duration::from_secs(5);

/// Reason of UNAVAILABLE when the organization service did not answer.
pub const ORGANIZATION_UNAVAILABLE: Reason = Reason::OrganizationUnavailable;

/// A member provisioned by [`OrganizationClient::provision_member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provisioned {
    /// The member's role after the call.
    pub role: OrgRole,
    /// Whether the call (or the first with its request id) added the member.
    pub created: bool,
    /// The revision of `MemberAdded` (or `MemberRoleChanged`); 0 when nothing changed.
    pub revision: i64,
}

/// What [`OrganizationClient::deprovision_member`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprovisioned {
    /// Whether the call (or the first with its request id) removed the member.
    pub removed: bool,
    /// The revision of `MemberRemoved`; 0 when nothing was removed.
    pub revision: i64,
}

/// What [`OrganizationClient::provision_member`] asks for.
#[derive(Debug, Clone, Copy)]
pub struct MemberProvision<'a> {
    /// The organization.
    pub organization_id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The role of a new member (never OWNER).
    pub role: OrgRole,
    /// Whether an existing member's role changes to `role`.
    pub existing: ExistingRole,
    /// The idempotency key: one change, one key.
    pub request_id: &'a str,
    /// Why, for the audit log: `sso_jit`, `scim`.
    pub source: &'a str,
}

/// How [`OrganizationClient::provision_member`] treats an existing member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingRole {
    /// An existing member keeps their role (SSO just-in-time provisioning).
    Keep,
    /// An existing member's role becomes the given one, never the OWNER's (SCIM group mappings).
    Set,
}

/// Internal calls to the organization service.
#[derive(Clone)]
pub struct OrganizationClient {
    channel: ServiceChannel,
    service_tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for OrganizationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrganizationClient").finish_non_exhaustive()
    }
}

/// UNAVAILABLE `ORGANIZATION_UNAVAILABLE`.
pub fn organization_unavailable() -> ApiError {
    ApiError::unavailable(
        ORGANIZATION_UNAVAILABLE,
        "the organization service did not answer; retry",
    )
    .retry_after(Duration::from_secs(1))
}

impl OrganizationClient {
    /// Calls over `channel` with tokens from `service_tokens`.
    pub fn new(
        channel: impl Into<ServiceChannel>,
        service_tokens: Arc<dyn ServiceTokenSource>,
    ) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            channel,
            service_tokens,
        }
    }

    async fn request<T>(&self, message: T, call: &Call) -> ApiResult<tonic::Request<T>> {
        let token = self.service_tokens.token().await?;
        let mut request = outgoing(message, token.as_deref(), Some(&call.context()));
        request.set_timeout(ORGANIZATION_DEADLINE);
        Ok(request)
    }

    /// LookupDomain for `email`: the organizations holding its domain VERIFIED and those with a
    /// pending invite for it.
    pub async fn lookup_domain(&self, call: &Call, email: &str) -> ApiResult<LookupDomainResponse> {
        let request = self
            .request(
                LookupDomainRequest {
                    email: email.to_owned(),
                },
                call,
            )
            .await?;
        OrganizationServiceClient::new(self.channel.clone())
            .lookup_domain(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| {
                tracing::warn!(code = ?s.code(), detail = s.message(), "LookupDomain failed");
                organization_unavailable()
            })
    }

    /// ProvisionMember: makes `user_id` a member of `organization_id` with `role` once per
    /// `request_id`. The organization's refusals (FAILED_PRECONDITION such as
    /// `EMAIL_DOMAIN_BLOCKED` or `ORGANIZATION_DELETED`, NOT_FOUND) keep their code and reason;
    /// no answer is UNAVAILABLE `ORGANIZATION_UNAVAILABLE`.
    pub async fn provision_member(
        &self,
        call: &Call,
        member: MemberProvision<'_>,
    ) -> ApiResult<Provisioned> {
        let organization_id = member.organization_id;
        let request = self
            .request(
                ProvisionMemberRequest {
                    organization_id: organization_id.to_owned(),
                    user_id: member.user_id.to_owned(),
                    role: member.role as i32,
                    request_id: member.request_id.to_owned(),
                    source: member.source.to_owned(),
                    set_role: member.existing == ExistingRole::Set,
                },
                call,
            )
            .await?;
        let answer = OrganizationServiceClient::new(self.channel.clone())
            .provision_member(request)
            .await;
        match answer {
            Ok(r) => {
                let r: ProvisionMemberResponse = r.into_inner();
                Ok(Provisioned {
                    role: OrgRole::try_from(r.role).unwrap_or(OrgRole::Unspecified),
                    created: r.created,
                    revision: r.revision,
                })
            }
            Err(s) => Err(refusal(s, organization_id, "ProvisionMember")),
        }
    }

    /// DeprovisionMember: ends `user_id`'s membership of `organization_id` once per `request_id`
    /// (not a member: `removed` false). Refusals (FAILED_PRECONDITION
    /// `OWNERSHIP_TRANSFER_REQUIRED`, NOT_FOUND) keep their code and reason; no answer is
    /// UNAVAILABLE `ORGANIZATION_UNAVAILABLE`.
    pub async fn deprovision_member(
        &self,
        call: &Call,
        organization_id: &str,
        user_id: &str,
        request_id: &str,
        source: &str,
    ) -> ApiResult<Deprovisioned> {
        let request = self
            .request(
                DeprovisionMemberRequest {
                    organization_id: organization_id.to_owned(),
                    user_id: user_id.to_owned(),
                    request_id: request_id.to_owned(),
                    source: source.to_owned(),
                },
                call,
            )
            .await?;
        let answer = OrganizationServiceClient::new(self.channel.clone())
            .deprovision_member(request)
            .await;
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Deprovisioned {
                    removed: r.removed,
                    revision: r.revision,
                })
            }
            Err(s) => Err(refusal(s, organization_id, "DeprovisionMember")),
        }
    }

    /// The organization `unit_id` belongs to; `None` when no such unit exists. No answer is
    /// UNAVAILABLE `ORGANIZATION_UNAVAILABLE`.
    pub async fn unit_organization(&self, call: &Call, unit_id: &str) -> ApiResult<Option<String>> {
        let request = self
            .request(
                GetUnitRequest {
                    unit_id: unit_id.to_owned(),
                },
                call,
            )
            .await?;
        match OrganizationServiceClient::new(self.channel.clone())
            .get_unit(request)
            .await
        {
            Ok(r) => Ok(r.into_inner().unit.map(|u| u.organization_id)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => {
                tracing::warn!(code = ?s.code(), detail = s.message(), "GetUnit failed");
                Err(organization_unavailable())
            }
        }
    }
}

/// The organization service's refusal `s` as the caller's error: FAILED_PRECONDITION keeps its
/// reason, NOT_FOUND names the organization, anything else is UNAVAILABLE.
fn refusal(s: tonic::Status, organization_id: &str, rpc: &'static str) -> ApiError {
    match s.code() {
        tonic::Code::FailedPrecondition => {
            let reason = error_reason_of(&s).unwrap_or(Reason::FailedPrecondition);
            ApiError::failed_precondition(reason, organization_id, s.message())
        }
        tonic::Code::NotFound => ApiError::not_found("organization", organization_id),
        code => {
            tracing::warn!(?code, detail = s.message(), rpc, "organization call failed");
            organization_unavailable()
        }
    }
}
