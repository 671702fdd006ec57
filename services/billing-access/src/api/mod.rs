//! The gRPC adapter of `orgplane.billing.v1.BillingAccessService`: each handler builds the
//! [`Call`], decodes the request into the app's command, calls [`Billing`], and encodes the
//! answer. Proto conversion lives here; so do the outgoing calls to other services
//! ([`clients`]).

pub mod access;
pub mod accounts;
pub mod clients;
pub mod reports;
pub mod usage;

use std::sync::Arc;

use orgplane_platform::Call;
use orgplane_platform::error::ApiError;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::billing::v1::billing_access_service_server::BillingAccessService;
use orgplane_proto::billing::v1::*;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::domain::Error;

/// The handlers of `orgplane.billing.v1.BillingAccessService`.
#[derive(Debug, Clone)]
pub struct BillingAccessApi {
    app: Arc<Billing>,
}

impl BillingAccessApi {
    /// Handlers over the service's shared state.
    pub fn new(app: Arc<Billing>) -> Self {
        Self { app }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        ApiError::from(err).into()
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl BillingAccessService for BillingAccessApi {
    async fn get_billing_account(
        &self,
        request: Request<GetBillingAccountRequest>,
    ) -> Reply<GetBillingAccountResponse> {
        accounts::get(&self.app, request).await
    }

    async fn update_billing_account(
        &self,
        request: Request<UpdateBillingAccountRequest>,
    ) -> Reply<UpdateBillingAccountResponse> {
        accounts::update(&self.app, request).await
    }

    async fn list_billing_accounts(
        &self,
        request: Request<ListBillingAccountsRequest>,
    ) -> Reply<ListBillingAccountsResponse> {
        accounts::list(&self.app, request).await
    }

    async fn list_billing_members(
        &self,
        request: Request<ListBillingMembersRequest>,
    ) -> Reply<ListBillingMembersResponse> {
        access::list_billing_members(&self.app, request).await
    }

    async fn check_billing_access(
        &self,
        request: Request<CheckBillingAccessRequest>,
    ) -> Reply<CheckBillingAccessResponse> {
        access::check_billing_access(&self.app, request).await
    }

    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Reply<RecordUsageResponse> {
        usage::record_usage(&self.app, request).await
    }

    async fn get_usage_report(
        &self,
        request: Request<GetUsageReportRequest>,
    ) -> Reply<GetUsageReportResponse> {
        reports::usage_report(&self.app, request).await
    }

    async fn get_cost_report(
        &self,
        request: Request<GetCostReportRequest>,
    ) -> Reply<GetCostReportResponse> {
        reports::cost_report(&self.app, request).await
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        let call = Call::of(&request)?;
        let body = request.into_inner();
        let org = body.organization_id;
        self.app.admit(&call, &org, OrgAction::ReadAuditLog).await?;
        let filter = body.filter.unwrap_or_default();
        let (audit_events, next_page_token) = self
            .app
            .audit
            .list(
                &self.app.db,
                &self.app.runtime.page_tokens,
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
