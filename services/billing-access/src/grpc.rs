//! The gRPC handlers: decode, authorize, call the domain, encode. UpdateBillingAccount passes
//! its result through [`Core::audited`](crate::Core::audited), so that a refusal is audited as OUTCOME_FAILURE
//! (ORG-10); RecordUsage is a service's batch whose per-record refusals are in its response.

use std::sync::Arc;

use orgplane_platform::Call;
use orgplane_platform::audit::Attempt;
use orgplane_platform::auth::Principal;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::pagination::page_size;
use orgplane_platform::roles::{OrgAction, allows};
use orgplane_proto::billing::v1::billing_access_service_server::BillingAccessService;
use orgplane_proto::billing::v1::check_billing_access_request::Subject;
use orgplane_proto::billing::v1::*;
use orgplane_proto::organization::v1::OrgRole;
use tonic::{Request, Response, Status};

use crate::{Core, accounts, reports, usage};

/// The handlers of `orgplane.billing.v1.BillingAccessService`.
#[derive(Debug, Clone)]
pub struct BillingAccessApi {
    core: Arc<Core>,
}

impl BillingAccessApi {
    /// Handlers over the service's shared state.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Checks credentials, waits for the requested organization revision, validates the
    /// organization id, and authorizes `action`.
    async fn guard(&self, call: &Call, organization_id: &str, action: OrgAction) -> ApiResult<()> {
        call.principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        call.wait_for(&self.core.org_events, 0).await?;
        self.core
            .authorize(&call.principal, organization_id, action)
    }

    /// UpdateBillingAccount after authentication: validate, authorize, write.
    async fn update_account(
        &self,
        call: &Call,
        body: &UpdateBillingAccountRequest,
    ) -> ApiResult<crate::entity::account::Model> {
        let Some(account) = body.billing_account.as_ref() else {
            return Err(ApiError::invalid_argument("billing_account", "required"));
        };
        let org = account.organization_id.clone();
        if org.is_empty() {
            return Err(ApiError::invalid_argument(
                "billing_account.organization_id",
                "required",
            ));
        }
        self.guard(call, &org, OrgAction::ManageBilling).await?;
        let mask = body
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let changes = accounts::changes_from_mask(account, &mask)?;
        accounts::update(
            &self.core.db,
            &self.core.audit,
            call,
            &org,
            changes,
            &body.etag,
            self.core.runtime.clock.now(),
        )
        .await
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl BillingAccessService for BillingAccessApi {
    async fn get_billing_account(
        &self,
        request: Request<GetBillingAccountRequest>,
    ) -> Reply<GetBillingAccountResponse> {
        let call = Call::of(&request)?;
        let org = request.get_ref().organization_id.clone();
        self.guard(&call, &org, OrgAction::ManageBilling).await?;
        let account = accounts::get(&self.core.db, &org).await?;
        Ok(Response::new(GetBillingAccountResponse {
            billing_account: Some(accounts::to_proto(&account)),
        }))
    }

    async fn update_billing_account(
        &self,
        request: Request<UpdateBillingAccountRequest>,
    ) -> Reply<UpdateBillingAccountResponse> {
        let call = Call::of(&request)?;
        call.principal.require_authenticated()?;
        let org = request
            .get_ref()
            .billing_account
            .as_ref()
            .map(|a| a.organization_id.clone())
            .unwrap_or_default();
        let result = self.update_account(&call, request.get_ref()).await;
        let attempt = Attempt::new(
            org.clone(),
            "billing_account.update",
            "billing_account",
            &org,
        );
        let updated = self.core.audited(&call, attempt, result).await?;
        Ok(Response::new(UpdateBillingAccountResponse {
            billing_account: Some(accounts::to_proto(&updated)),
        }))
    }

    async fn list_billing_members(
        &self,
        request: Request<ListBillingMembersRequest>,
    ) -> Reply<ListBillingMembersResponse> {
        let call = Call::of(&request)?;
        let body = request.get_ref();
        let org = body.organization_id.clone();
        self.guard(&call, &org, OrgAction::ManageBilling).await?;
        let size = page_size(body.page_size)?;
        let scope = format!("ListBillingMembers|{org}");
        let after: Option<String> = self
            .core
            .runtime
            .page_tokens
            .decode(&scope, &body.page_token)?;
        let mut members: Vec<(String, OrgRole)> = self
            .core
            .replica
            .organization(&org)
            .map(|o| o.members.into_iter().collect())
            .unwrap_or_default();
        members.retain(|(user, role)| {
            allows(*role, OrgAction::ManageBilling)
                && after.as_ref().is_none_or(|a| user.as_str() > a.as_str())
        });
        members.sort();
        members.truncate(
            usize::try_from(size)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let (page, next_page_token) =
            self.core
                .runtime
                .page_tokens
                .page(&scope, members, size, |(user, _)| user.clone());
        let ids: Vec<String> = page.iter().map(|(u, _)| u.clone()).collect();
        let profiles = self.core.profiles(&ids).await;
        let billing_members = page
            .into_iter()
            .map(|(user_id, role)| {
                let (email, display_name) = profiles.get(&user_id).cloned().unwrap_or_default();
                BillingMember {
                    organization_id: org.clone(),
                    user_id,
                    email,
                    display_name,
                    org_role: role as i32,
                }
            })
            .collect();
        Ok(Response::new(ListBillingMembersResponse {
            billing_members,
            next_page_token,
        }))
    }

    async fn check_billing_access(
        &self,
        request: Request<CheckBillingAccessRequest>,
    ) -> Reply<CheckBillingAccessResponse> {
        let call = Call::of(&request)?;
        let principal = &*call.principal;
        principal.require_authenticated()?;
        let body = request.get_ref();
        if body.organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required").into());
        }
        let subject = match &body.subject {
            Some(Subject::UserId(u)) if !u.is_empty() => Subject::UserId(u.clone()),
            Some(Subject::ApiKeyId(k)) if !k.is_empty() => Subject::ApiKeyId(k.clone()),
            _ => {
                return Err(
                    ApiError::invalid_argument("subject", "set user_id or api_key_id").into(),
                );
            }
        };
        let own = match (principal, &subject) {
            (Principal::Service(_), _) => false,
            (Principal::User(u), Subject::UserId(id)) if &u.user_id == id => true,
            (Principal::ApiKey(k), Subject::ApiKeyId(id)) if &k.key_id == id => true,
            _ => {
                return Err(ApiError::permission_denied(
                    "SUBJECT_NOT_CALLER",
                    "users and API keys may only check their own access",
                )
                .into());
            }
        };
        let revision = call
            .wait_for(&self.core.org_events, body.min_organization_revision)
            .await?;
        let org = &body.organization_id;
        let role = match &subject {
            Subject::UserId(user) => self.core.replica.role(org, user),
            Subject::ApiKeyId(key) => {
                if own {
                    self.core.role_of(principal, org)
                } else {
                    let active_org = self
                        .core
                        .replica
                        .organization(org)
                        .is_some_and(|o| o.is_active());
                    match self.core.api_key(key).await? {
                        Some(k)
                            if active_org && k.active && k.admin && &k.organization_id == org =>
                        {
                            Some(OrgRole::Admin)
                        }
                        _ => None,
                    }
                }
            }
        };
        let allowed = role.is_some_and(|r| allows(r, OrgAction::ManageBilling));
        Ok(Response::new(CheckBillingAccessResponse {
            allowed,
            org_role: role.unwrap_or(OrgRole::Unspecified) as i32,
            organization_revision: revision.max(self.core.org_events.applied_revision()),
        }))
    }

    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Reply<RecordUsageResponse> {
        let call = Call::of(&request)?;
        call.principal.require_service()?;
        // A producer that just created an organization may ask for it to be known here first.
        call.wait_for(&self.core.org_events, 0).await?;
        let results = usage::record_usage(&self.core, &call, &request.get_ref().records).await?;
        Ok(Response::new(RecordUsageResponse { results }))
    }

    async fn get_usage_report(
        &self,
        request: Request<GetUsageReportRequest>,
    ) -> Reply<GetUsageReportResponse> {
        let call = Call::of(&request)?;
        let org = request.get_ref().organization_id.clone();
        self.guard(&call, &org, OrgAction::ManageBilling).await?;
        let report = reports::usage_report(
            &self.core.db,
            &self.core.runtime.page_tokens,
            self.core.runtime.clock.now(),
            request.get_ref(),
        )
        .await?;
        Ok(Response::new(report))
    }

    async fn get_cost_report(
        &self,
        request: Request<GetCostReportRequest>,
    ) -> Reply<GetCostReportResponse> {
        let call = Call::of(&request)?;
        let org = request.get_ref().organization_id.clone();
        self.guard(&call, &org, OrgAction::ManageBilling).await?;
        let report = reports::cost_report(
            &self.core.db,
            &self.core.runtime.page_tokens,
            &self.core.prices,
            self.core.runtime.clock.now(),
            request.get_ref(),
        )
        .await?;
        Ok(Response::new(report))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        let call = Call::of(&request)?;
        let org = request.get_ref().organization_id.clone();
        self.guard(&call, &org, OrgAction::ReadAuditLog).await?;
        let body = request.get_ref();
        let filter = body.filter.clone().unwrap_or_default();
        let (audit_events, next_page_token) = self
            .core
            .audit
            .list(
                &self.core.db,
                &self.core.runtime.page_tokens,
                &org,
                &filter,
                body.page_size,
                &body.page_token,
            )
            .await?;
        Ok(Response::new(ListAuditEventsResponse {
            audit_events,
            next_page_token,
        }))
    }
}
