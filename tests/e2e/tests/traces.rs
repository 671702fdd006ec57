//! Traces across services: one `UpdateMemberRole` produces one trace that spans the organization
//! service's RPC and the workspace and billing-access services' application of the event it
//! published. The real `orgplane` binary exports over OTLP to a collector in this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use orgplane_platform::testkit::bearer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{AccountType, LoginRequest, SignUpRequest, VerifyEmailRequest};
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::organization::v1::{
    AcceptInviteRequest, CreateInviteRequest, CreateOrganizationRequest, Invite, OrgRole,
    Organization, UpdateMemberRoleRequest,
};
use support::{Orgplane, wait_serving};
use tonic::transport::Channel;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Seen {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    /// The exporting process's `service.name`.
    service: String,
    /// OTLP `SpanKind`: 2 server, 3 client, 4 producer, 5 consumer.
    kind: i32,
    /// OTLP status code: 2 is ERROR.
    status: i32,
    attributes: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Seen>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut seen = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
                            Value::IntValue(i) => Some((kv.key.clone(), i.to_string())),
                            _ => None,
                        })
                        .collect();
                    seen.push(Seen {
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        name: span.name,
                        service: service.clone(),
                        kind: span.kind,
                        status: span.status.map(|s| s.code).unwrap_or(0),
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn verification_token(mail_dir: &std::path::Path, email: &str) -> String {
    for entry in std::fs::read_dir(mail_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if text.contains(&format!("To: {email}")) && text.contains("verify") {
            let start = text.find("token=").unwrap() + "token=".len();
            return text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
        }
    }
    panic!("no verification mail for {email}");
}

async fn signed_up(channel: Channel, mail_dir: &std::path::Path, email: &str) -> (String, String) {
    let mut identity = IdentityServiceClient::new(channel);
    let user = identity
        .sign_up(SignUpRequest {
            email: email.into(),
            password: "correct horse battery staple".into(),
            display_name: email.into(),
            account_type: AccountType::Business as i32,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    identity
        .verify_email(VerifyEmailRequest {
            token: verification_token(mail_dir, email),
        })
        .await
        .unwrap();
    let tokens = identity
        .login(LoginRequest {
            email: email.into(),
            password: "correct horse battery staple".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    (user.id, tokens.access_token)
}

/// The story both tests trace: an owner and a developer sign up, the owner creates an
/// organization and invites the developer, who accepts; then the owner makes the developer an
/// ADMIN (the role change). Returns the organization's id and the developer's id and token.
async fn role_change(
    identity: Channel,
    organization: Channel,
    mail: &std::path::Path,
) -> (String, String, String) {
    let (_, owner) = signed_up(identity.clone(), mail, "owner@example.com").await;
    let (member_id, member) = signed_up(identity, mail, "dev@example.com").await;
    let mut orgs = OrganizationServiceClient::new(organization);
    let org = orgs
        .create_organization(bearer(
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: "Tracecorp".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    let invite = orgs
        .create_invite(bearer(
            CreateInviteRequest {
                organization_id: org.id.clone(),
                invite: Some(Invite {
                    email: "dev@example.com".into(),
                    role: OrgRole::Developer as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    orgs.accept_invite(bearer(
        AcceptInviteRequest {
            invite_id: invite.id,
        },
        &member,
    ))
    .await
    .unwrap();
    orgs.update_member_role(bearer(
        UpdateMemberRoleRequest {
            organization_id: org.id.clone(),
            user_id: member_id.clone(),
            role: OrgRole::Admin as i32,
            etag: String::new(),
        },
        &owner,
    ))
    .await
    .unwrap();
    (org.id, member_id, member)
}

#[tokio::test]
async fn traces_one_role_change_is_one_trace_across_services() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let dir = tempfile::tempdir().unwrap();
    let app = Orgplane::start(
        &["all"],
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            // The standard variable names the service, over the process's own default.
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=acme-orgplane,deployment.environment=test".to_string(),
            ),
            ("RUST_LOG", "info".to_string()),
        ],
    )
    .await;
    wait_serving(app.channel(), "").await;
    role_change(app.channel(), app.channel(), &dir.path().join("data/mail")).await;

    let rpc_name = "orgplane.organization.v1.OrganizationService/UpdateMemberRole";
    let mut consumers_in_trace = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = collector.0.lock().unwrap().clone();
        let Some(rpc) = seen.iter().find(|s| s.name == rpc_name) else {
            continue;
        };
        consumers_in_trace = seen
            .iter()
            .filter(|s| s.trace_id == rpc.trace_id && s.kind == 5)
            .filter_map(|s| s.attributes.get("consumer").cloned())
            .collect();
        consumers_in_trace.sort();
        consumers_in_trace.dedup();
        if consumers_in_trace.contains(&"workspace".to_string())
            && consumers_in_trace.contains(&"billing-access".to_string())
        {
            break;
        }
    }
    assert!(
        consumers_in_trace.contains(&"workspace".to_string())
            && consumers_in_trace.contains(&"billing-access".to_string()),
        "the UpdateMemberRole trace includes the workspace and billing-access application of its event; \
         consumers seen in it: {consumers_in_trace:?}"
    );
    let services: std::collections::BTreeSet<String> = collector
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.service.clone())
        .collect();
    assert_eq!(
        services,
        ["acme-orgplane".to_string()].into(),
        "OTEL_RESOURCE_ATTRIBUTES' service.name wins over `orgplane`"
    );
    assert!(app.terminate().await.success());
}

/// Four `serve` processes export to the collector: one UpdateMemberRole is one trace holding
/// four distinct `service.name`s — the organization service's server span, its publish span
/// (producer) and the consumers' process spans (identity, workspace, billing-access) as its
/// children; calls between the services are client spans whose children are the other
/// process's server spans; and a server answering UNAVAILABLE has status ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_four_processes_name_their_services_pair_client_and_server_spans_and_mark_errors() {
    use support::cluster::{Cluster, Layout};
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        Layout::FourProcesses,
        dir.path(),
        None,
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            ("RUST_LOG", "info".to_string()),
        ],
    )
    .await;
    let (org_id, member_id, member) = role_change(
        cluster.channel("identity"),
        cluster.channel("organization"),
        &cluster.mail_dir(),
    )
    .await;
    // A forced UNAVAILABLE: a revision the workspace service will not reach within the call.
    let mut check = bearer(
        orgplane_proto::workspace::v1::CheckAccessRequest {
            organization_id: org_id.clone(),
            workspace_id: String::new(),
            subject: Some(
                orgplane_proto::workspace::v1::check_access_request::Subject::UserId(member_id),
            ),
            permission: orgplane_proto::workspace::v1::Permission::Read as i32,
            min_organization_revision: 1_000_000,
            min_workspace_revision: 0,
        },
        &member,
    );
    check.set_timeout(Duration::from_millis(800));
    let unavailable =
        orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient::new(
            cluster.channel("workspace"),
        )
        .check_access(check)
        .await
        .unwrap_err();
    assert_eq!(
        unavailable.code(),
        tonic::Code::Unavailable,
        "{unavailable:?}"
    );

    let rpc_name = "orgplane.organization.v1.OrganizationService/UpdateMemberRole";
    let mut services = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = collector.0.lock().unwrap().clone();
        let Some(rpc) = seen.iter().find(|s| s.name == rpc_name && s.kind == 2) else {
            continue;
        };
        services = seen
            .iter()
            .filter(|s| s.trace_id == rpc.trace_id)
            .map(|s| s.service.clone())
            .collect();
        if services.len() >= 4 {
            break;
        }
    }
    let expected: std::collections::BTreeSet<String> = [
        "orgplane-billing-access",
        "orgplane-identity",
        "orgplane-organization",
        "orgplane-workspace",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        services, expected,
        "one role change, one trace, four services"
    );

    let rpc = seen.iter().find(|s| s.name == rpc_name).unwrap();
    let publish = seen
        .iter()
        .find(|s| s.kind == 4 && s.trace_id == rpc.trace_id)
        .expect("a producer span in the role change's trace");
    assert_eq!(publish.service, "orgplane-organization");
    let consumers: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.kind == 5 && s.parent_span_id == publish.span_id)
        .collect();
    assert!(
        consumers.len() >= 3,
        "identity, workspace and billing-access process the event as children of its publish span: {consumers:?}"
    );

    // Client/server pairs between processes: a client span's child is a server span of another
    // service, with the same method.
    let pairs = seen
        .iter()
        .filter(|c| c.kind == 3)
        .filter(|c| {
            seen.iter().any(|s| {
                s.kind == 2
                    && s.parent_span_id == c.span_id
                    && s.service != c.service
                    && s.name == c.name
            })
        })
        .count();
    assert!(
        pairs > 0,
        "inter-service calls are client/server span pairs"
    );

    let check_span = seen
        .iter()
        .find(|s| {
            s.kind == 2
                && s.name == "orgplane.workspace.v1.WorkspaceService/CheckAccess"
                && s.attributes.get("rpc.grpc.status_code").map(String::as_str) == Some("14")
        })
        .expect("the UNAVAILABLE CheckAccess span");
    assert_eq!(check_span.status, 2, "UNAVAILABLE is an ERROR for a server");
    assert_eq!(check_span.service, "orgplane-workspace");
    cluster.stop().await;
}
