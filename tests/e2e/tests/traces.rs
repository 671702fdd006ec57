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
    name: String,
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
                        name: span.name,
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
            ("RUST_LOG", "info".to_string()),
        ],
    )
    .await;
    wait_serving(app.channel(), "").await;
    let mail = dir.path().join("data/mail");
    let (_, owner) = signed_up(app.channel(), &mail, "owner@example.com").await;
    let (member_id, member) = signed_up(app.channel(), &mail, "dev@example.com").await;

    let mut orgs = OrganizationServiceClient::new(app.channel());
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
            user_id: member_id,
            role: OrgRole::Admin as i32,
            etag: String::new(),
        },
        &owner,
    ))
    .await
    .unwrap();

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
            .filter(|s| s.trace_id == rpc.trace_id && s.name == "apply_event")
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
    assert!(app.terminate().await.success());
}
