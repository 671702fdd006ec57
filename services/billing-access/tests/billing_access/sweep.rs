//! The sweep: every billing RPC with an empty request answers a deliberate code, never
//! UNIMPLEMENTED or INTERNAL: without credentials, and with a user's token.

use orgplane_proto::billing::v1::*;
use tonic::Code;

use crate::support::Rig;

macro_rules! sweep {
    ($client:expr, $token:expr, $expect:expr, $($method:ident($req:ty)),+ $(,)?) => {{
        let mut seen = Vec::new();
        $(
            let err = $client
                .$method(match &$token {
                    Some(t) => orgplane_platform::testkit::bearer(<$req>::default(), t),
                    None => tonic::Request::new(<$req>::default()),
                })
                .await
                .expect_err(stringify!($method));
            assert!(
                !matches!(err.code(), Code::Unimplemented | Code::Internal | Code::Unknown),
                "{} answered {:?}", stringify!($method), err.code()
            );
            assert!(
                $expect.contains(&err.code()),
                "{} answered {:?}: {}", stringify!($method), err.code(), err.message()
            );
            seen.push(stringify!($method));
        )+
        assert_eq!(seen.len(), 9, "every RPC of the service is swept");
    }};
}

#[tokio::test]
async fn sweep_every_rpc_with_an_empty_request_answers_a_deliberate_code() {
    let rig = Rig::sqlite().await;
    let mut c = rig.client();
    sweep!(
        c,
        None::<String>,
        [Code::Unauthenticated],
        get_billing_account(GetBillingAccountRequest),
        update_billing_account(UpdateBillingAccountRequest),
        list_billing_accounts(ListBillingAccountsRequest),
        list_billing_members(ListBillingMembersRequest),
        check_billing_access(CheckBillingAccessRequest),
        record_usage(RecordUsageRequest),
        get_usage_report(GetUsageReportRequest),
        get_cost_report(GetCostReportRequest),
        list_audit_events(ListAuditEventsRequest),
    );
    sweep!(
        c,
        Some(rig.auth.user_token("user_1")),
        [Code::InvalidArgument, Code::PermissionDenied],
        get_billing_account(GetBillingAccountRequest),
        update_billing_account(UpdateBillingAccountRequest),
        list_billing_accounts(ListBillingAccountsRequest),
        list_billing_members(ListBillingMembersRequest),
        check_billing_access(CheckBillingAccessRequest),
        record_usage(RecordUsageRequest),
        get_usage_report(GetUsageReportRequest),
        get_cost_report(GetCostReportRequest),
        list_audit_events(ListAuditEventsRequest),
    );
}
