//! Least-privilege service accounts: the real `orgplane` binary's identity issues each configured
//! account a token carrying only its capabilities, and every service refuses what the token does
//! not name.
//!
//! A product backend configured with `check-access` alone asks CheckAccess and
//! CheckBillingAccess about the organization's owner and gets answers; on Watch (each
//! producer), ListOrganizations, GetOrganization, ListWorkspaces, GetUser, RecordUsage and
//! AuthenticateApiKey it gets PERMISSION_DENIED `CAPABILITY_REQUIRED` naming the capability it
//! lacks. The control arm runs the same calls as an account holding every capability: each one
//! passes, so the probe does see an account that may do more. The four processes' own accounts
//! hold only what their services use (`@identity`, …): the owner's access reaching the
//! workspace and billing-access services through their event streams shows they still do
//! everything the system needs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use orgplane_platform::auth::CAPABILITY_REQUIRED;
use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::events::v1 as events;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{CHECKER, Cluster, Layout, UNRESTRICTED};
use support::people;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use billing::billing_access_service_client::BillingAccessServiceClient;
use events::event_service_client::EventServiceClient;
use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

#[tokio::test]
async fn service_accounts_a_backend_that_only_checks_access_can_do_only_that_four_processes_on_sqlite()
 {
    run(Layout::FourProcesses, false).await;
}

#[tokio::test]
async fn service_accounts_a_backend_that_only_checks_access_can_do_only_that_all_in_one_on_postgres()
 {
    run(Layout::All, true).await;
}

/// What one call answered: passed, refused for a capability (which), or another failure.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    NeedsCapability(String),
    Failed(String),
}

fn outcome<T>(answer: Result<T, Status>) -> Outcome {
    match answer {
        Ok(_) => Outcome::Passed,
        Err(s)
            if s.code() == Code::PermissionDenied
                && reason_of(&s).as_deref() == Some(CAPABILITY_REQUIRED.as_str_name()) =>
        {
            let capability = s
                .get_details_error_info()
                .and_then(|i| i.metadata.get("capability").cloned())
                .unwrap_or_default();
            Outcome::NeedsCapability(capability)
        }
        Err(s) => Outcome::Failed(format!(
            "{:?} {:?}: {}",
            s.code(),
            reason_of(&s),
            s.message()
        )),
    }
}

async fn run(layout: Layout, postgres: bool) {
    let mut dbs = Vec::new();
    let urls = if postgres {
        for _ in 0..4 {
            let Some(db) = TestDb::postgres().await else {
                eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                return;
            };
            dbs.push(db);
        }
        Some(dbs.iter().map(|d| d.url.clone()).collect())
    } else {
        None
    };
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(layout, root.path(), urls, Vec::new()).await;
    let (owner_token, owner_id) = people::signed_up_user(
        &cluster,
        "sam@backend.example",
        "correct horse battery staple",
    )
    .await;
    let org_id = people::create_organization(&cluster, &owner_token, "Backend Co").await;

    let checker = service_token(&cluster, CHECKER.0, CHECKER.1).await;
    let unrestricted = service_token(&cluster, UNRESTRICTED.0, UNRESTRICTED.1).await;

    // The owner's access reaches the workspace and billing services through the internal
    // accounts' streams; the checker may ask about it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let access = check_access(&cluster, &checker, &org_id, &owner_id).await;
        if access.as_ref().is_ok_and(|allowed| *allowed) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner's access never reached the workspace service: {access:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let probed = probe(&cluster, &checker, &org_id, &owner_id).await;
    let expected: Vec<(&str, Outcome)> = vec![
        ("CheckAccess", Outcome::Passed),
        ("CheckBillingAccess", Outcome::Passed),
        ("Watch identity", needs("watch:identity")),
        ("Watch organization", needs("watch:organization")),
        ("Watch workspace", needs("watch:workspace")),
        ("ListOrganizations", needs("read-organizations")),
        ("GetOrganization", needs("read-organizations")),
        ("ListWorkspaces", needs("read-workspaces")),
        ("GetUser", needs("read-users")),
        ("RecordUsage", needs("record-usage")),
        ("AuthenticateApiKey", needs("authenticate-api-keys")),
    ];
    assert_eq!(probed, expected, "the check-access-only backend");

    // Control: an account holding every capability passes every call of the probe.
    let control = probe(&cluster, &unrestricted, &org_id, &owner_id).await;
    let refused: Vec<_> = control
        .iter()
        .filter(|(_, o)| *o != Outcome::Passed)
        .collect();
    assert!(
        refused.is_empty(),
        "the control account should pass everywhere: {refused:?}"
    );
    cluster.stop().await;
}

fn needs(capability: &str) -> Outcome {
    Outcome::NeedsCapability(capability.into())
}

async fn service_token(cluster: &Cluster, client_id: &str, secret: &str) -> String {
    IdentityServiceClient::new(cluster.channel("identity"))
        .issue_service_token(identity::IssueServiceTokenRequest {
            client_id: client_id.into(),
            client_secret: secret.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

async fn check_access(
    cluster: &Cluster,
    token: &str,
    org_id: &str,
    user_id: &str,
) -> Result<bool, Status> {
    WorkspaceServiceClient::new(cluster.channel("workspace"))
        .check_access(bearer(
            ws::CheckAccessRequest {
                organization_id: org_id.into(),
                subject: Some(ws::check_access_request::Subject::UserId(user_id.into())),
                permission: ws::Permission::Read as i32,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().allowed)
}

/// Every call of the probe as the holder of `token`, in a fixed order.
async fn probe(
    cluster: &Cluster,
    token: &str,
    org_id: &str,
    user_id: &str,
) -> Vec<(&'static str, Outcome)> {
    let mut out = vec![(
        "CheckAccess",
        outcome(check_access(cluster, token, org_id, user_id).await),
    )];
    let billing_access = BillingAccessServiceClient::new(cluster.channel("billing-access"))
        .check_billing_access(bearer(
            billing::CheckBillingAccessRequest {
                organization_id: org_id.into(),
                subject: Some(billing::check_billing_access_request::Subject::UserId(
                    user_id.into(),
                )),
                min_organization_revision: 0,
            },
            token,
        ))
        .await;
    out.push(("CheckBillingAccess", outcome(billing_access)));
    for (name, service, producer) in [
        ("Watch identity", "identity", events::Producer::Identity),
        (
            "Watch organization",
            "organization",
            events::Producer::Organization,
        ),
        ("Watch workspace", "workspace", events::Producer::Workspace),
    ] {
        let opened = EventServiceClient::new(cluster.channel(service))
            .watch(bearer(
                events::WatchRequest {
                    producer: producer as i32,
                    after_revision: 0,
                    max_batch_size: 0,
                },
                token,
            ))
            .await;
        // A stream that opened must also deliver: the first message.
        let first = match opened {
            Ok(stream) => stream.into_inner().message().await.map(|_| ()),
            Err(s) => Err(s),
        };
        out.push((name, outcome(first)));
    }
    let mut orgs = OrganizationServiceClient::new(cluster.channel("organization"));
    let listed = orgs
        .list_organizations(bearer(org::ListOrganizationsRequest::default(), token))
        .await;
    out.push(("ListOrganizations", outcome(listed)));
    let got = orgs
        .get_organization(bearer(
            org::GetOrganizationRequest {
                organization_id: org_id.into(),
            },
            token,
        ))
        .await;
    out.push(("GetOrganization", outcome(got)));
    let workspaces = WorkspaceServiceClient::new(cluster.channel("workspace"))
        .list_workspaces(bearer(
            ws::ListWorkspacesRequest {
                organization_id: org_id.into(),
                ..Default::default()
            },
            token,
        ))
        .await;
    out.push(("ListWorkspaces", outcome(workspaces)));
    let mut identity = IdentityServiceClient::new(cluster.channel("identity"));
    let user = identity
        .get_user(bearer(
            identity::GetUserRequest {
                user_id: user_id.into(),
            },
            token,
        ))
        .await;
    out.push(("GetUser", outcome(user)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let usage = BillingAccessServiceClient::new(cluster.channel("billing-access"))
        .record_usage(bearer(
            billing::RecordUsageRequest {
                records: vec![billing::UsageRecord {
                    organization_id: org_id.into(),
                    user_id: user_id.into(),
                    model: "orgmodel-small-1".into(),
                    input_tokens: 1,
                    usage_time: Some(prost_types::Timestamp {
                        seconds: now.as_secs() as i64 - 5,
                        nanos: 0,
                    }),
                    idempotency_key: format!("probe-{}", now.as_nanos()),
                    ..Default::default()
                }],
            },
            token,
        ))
        .await;
    out.push(("RecordUsage", outcome(usage)));
    // No such key: an account allowed to ask learns that (UNAUTHENTICATED), one that may not
    // ask is refused first.
    let key = identity
        .authenticate_api_key(bearer(
            identity::AuthenticateApiKeyRequest {
                key: "opk_nosuchkey".into(),
            },
            token,
        ))
        .await;
    let key = match outcome(key) {
        Outcome::Failed(why) if why.starts_with("Unauthenticated") => Outcome::Passed,
        other => other,
    };
    out.push(("AuthenticateApiKey", key));
    out
}
