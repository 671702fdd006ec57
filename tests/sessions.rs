//! An ended session ends its access tokens everywhere (rules ID-4, ID-8): after Logout, reuse of
//! a rotated refresh token, or an admin password reset, every service refuses the session's
//! access token — also one it had already verified and cached — with UNAUTHENTICATED
//! `SESSION_REVOKED`, while other sessions keep working. The real `orgplane` binary, as four
//! processes (identity's `SessionsRevoked` crosses the network) and as one, on SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{Cluster, Layout};
use support::mail;
use tonic::{Code, Status};

use billing::billing_access_service_client::BillingAccessServiceClient;
use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

const PASSWORD: &str = "correct horse battery staple";
/// How long a revocation may take to reach every service (it is asynchronous).
const PROPAGATION: Duration = Duration::from_secs(10);
const SERVICES: [&str; 4] = ["identity", "organization", "workspace", "billing-access"];

/// A running Orgplane and the PostgreSQL databases it uses (dropped after it stops).
struct System {
    cluster: Cluster,
    _dir: tempfile::TempDir,
    _dbs: Vec<TestDb>,
}

impl System {
    /// Starts Orgplane in `layout`, on PostgreSQL when `postgres` (`None` when it is not set up).
    async fn start(layout: Layout, postgres: bool) -> Option<System> {
        let mut dbs = Vec::new();
        if postgres {
            for _ in 0..4 {
                let Some(db) = TestDb::postgres().await else {
                    eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                    return None;
                };
                dbs.push(db);
            }
        }
        let urls = (!dbs.is_empty()).then(|| dbs.iter().map(|d| d.url.clone()).collect());
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(layout, dir.path(), urls, Vec::new()).await;
        Some(System {
            cluster,
            _dir: dir,
            _dbs: dbs,
        })
    }

    fn identity(&self) -> IdentityServiceClient<tonic::transport::Channel> {
        IdentityServiceClient::new(self.cluster.channel("identity"))
    }

    fn orgs(&self) -> OrganizationServiceClient<tonic::transport::Channel> {
        OrganizationServiceClient::new(self.cluster.channel("organization"))
    }

    /// Signs up a BUSINESS account and opens the mailed verification link.
    async fn verified_user(&self, email: &str) {
        self.identity()
            .sign_up(identity::SignUpRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: "Sam Session".into(),
                account_type: identity::AccountType::Business as i32,
                request_id: String::new(),
            })
            .await
            .unwrap();
        let token = mail::verification_token(&self.cluster.mail_dir(), email);
        self.identity()
            .verify_email(identity::VerifyEmailRequest { token })
            .await
            .unwrap();
    }

    /// A new session of `email`: its tokens and the user's id.
    async fn login(&self, email: &str) -> (identity::SessionTokens, String) {
        let resp = self
            .identity()
            .login(identity::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        (resp.tokens.unwrap(), resp.user.unwrap().id)
    }

    /// Creates an organization owned by the holder of `token`.
    async fn create_organization(&self, token: &str) -> String {
        self.orgs()
            .create_organization(bearer(
                org::CreateOrganizationRequest {
                    organization: Some(org::Organization {
                        name: "Sessions Inc".into(),
                        r#type: org::OrganizationType::Company as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap()
            .id
    }

    /// One authenticated read on each service with `token`, in the order of [`SERVICES`].
    async fn reads(&self, token: &str, org_id: &str) -> Vec<Result<(), Status>> {
        let identity = self
            .identity()
            .get_user(bearer(
                identity::GetUserRequest {
                    user_id: "me".into(),
                },
                token,
            ))
            .await
            .map(drop);
        let organization = self
            .orgs()
            .get_organization(bearer(
                org::GetOrganizationRequest {
                    organization_id: org_id.into(),
                },
                token,
            ))
            .await
            .map(drop);
        let workspace = WorkspaceServiceClient::new(self.cluster.channel("workspace"))
            .list_workspaces(bearer(
                ws::ListWorkspacesRequest {
                    organization_id: org_id.into(),
                    page_size: 10,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop);
        let billing = BillingAccessServiceClient::new(self.cluster.channel("billing-access"))
            .get_billing_account(bearer(
                billing::GetBillingAccountRequest {
                    organization_id: org_id.into(),
                },
                token,
            ))
            .await
            .map(drop);
        vec![identity, organization, workspace, billing]
    }

    /// Waits until every service answers `token`'s reads (the organization's events reach the
    /// workspace and billing services asynchronously); each answer is then cached as verified.
    async fn accepted_everywhere(&self, what: &str, token: &str, org_id: &str) {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let results = self.reads(token, org_id).await;
            if results.iter().all(Result::is_ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not accepted by every service within {PROPAGATION:?}: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every service refuses `token` with UNAUTHENTICATED `SESSION_REVOKED`, and
    /// returns how long that took.
    async fn refused_everywhere(&self, what: &str, token: &str, org_id: &str) -> Duration {
        let started = Instant::now();
        loop {
            let results = self.reads(token, org_id).await;
            let revoked = |r: &Result<(), Status>| {
                r.as_ref().is_err_and(|s| {
                    s.code() == Code::Unauthenticated
                        && reason_of(s).as_deref() == Some("SESSION_REVOKED")
                })
            };
            if results.iter().all(revoked) {
                return started.elapsed();
            }
            for (service, result) in SERVICES.iter().zip(&results) {
                // Until the revocation arrives a service may still accept the token; it never
                // answers anything else.
                assert!(
                    result.is_ok() || revoked(result),
                    "{what}: {service} answered {result:?}"
                );
            }
            assert!(
                started.elapsed() < PROPAGATION,
                "{what}: not refused by every service within {PROPAGATION:?}: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn logged_out_session_is_refused_by_every_service(layout: Layout, postgres: bool) {
    let Some(sys) = System::start(layout, postgres).await else {
        return;
    };
    sys.verified_user("sam@sessions.test").await;
    let (laptop, _) = sys.login("sam@sessions.test").await;
    let (phone, _) = sys.login("sam@sessions.test").await;
    let org_id = sys.create_organization(&laptop.access_token).await;
    sys.accepted_everywhere("laptop", &laptop.access_token, &org_id)
        .await;
    sys.accepted_everywhere("phone", &phone.access_token, &org_id)
        .await;

    let ended = sys
        .identity()
        .logout(bearer(
            identity::LogoutRequest::default(),
            &laptop.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .ended_session_count;
    assert_eq!(ended, 1, "only the calling session ends");

    // Identity refuses at once: the revocation is in its memory when Logout answers.
    let at_identity = sys
        .reads(&laptop.access_token, &org_id)
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(reason_of(&at_identity).as_deref(), Some("SESSION_REVOKED"));
    let took = sys
        .refused_everywhere("logged-out laptop", &laptop.access_token, &org_id)
        .await;
    eprintln!("Logout reached every service in {took:?} ({layout:?}, postgres: {postgres})");
    // The same user's other session is untouched.
    for (service, result) in SERVICES
        .iter()
        .zip(sys.reads(&phone.access_token, &org_id).await)
    {
        assert!(result.is_ok(), "phone on {service}: {result:?}");
    }
    // The logged-out session cannot be refreshed either.
    let status = sys
        .identity()
        .refresh(identity::RefreshRequest {
            refresh_token: laptop.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    sys.cluster.stop().await;
}

#[tokio::test]
async fn id_4_access_token_of_a_logged_out_session_is_refused_by_every_service() {
    logged_out_session_is_refused_by_every_service(Layout::FourProcesses, false).await;
}

#[tokio::test]
async fn id_4_access_token_of_a_logged_out_session_is_refused_by_every_service_on_postgres() {
    logged_out_session_is_refused_by_every_service(Layout::FourProcesses, true).await;
}

#[tokio::test]
async fn id_4_reuse_of_a_rotated_refresh_token_refuses_the_sessions_access_tokens_everywhere() {
    // `orgplane all`: one process, one auth layer fed by identity and the three consumers.
    let sys = System::start(Layout::All, false).await.unwrap();
    sys.verified_user("rita@sessions.test").await;
    let (first, _) = sys.login("rita@sessions.test").await;
    let (other, _) = sys.login("rita@sessions.test").await;
    let org_id = sys.create_organization(&first.access_token).await;
    let rotated = sys
        .identity()
        .refresh(identity::RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(rotated.session_id, first.session_id);
    for token in [&first.access_token, &rotated.access_token] {
        sys.accepted_everywhere("before reuse", token, &org_id)
            .await;
    }

    // The rotated refresh token comes back (stolen, replayed): the whole session ends.
    let status = sys
        .identity()
        .refresh(identity::RefreshRequest {
            refresh_token: first.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status).as_deref(), Some("REFRESH_TOKEN_REUSED"));

    for (what, token) in [
        ("the first access token", &first.access_token),
        ("the access token of the rotation", &rotated.access_token),
    ] {
        let took = sys.refused_everywhere(what, token, &org_id).await;
        eprintln!("refresh-token reuse: {what} refused everywhere in {took:?}");
    }
    sys.accepted_everywhere("the user's other session", &other.access_token, &org_id)
        .await;
    sys.cluster.stop().await;
}

#[tokio::test]
async fn id_8_admin_password_reset_ends_every_session_of_the_member_everywhere() {
    let sys = System::start(Layout::FourProcesses, false).await.unwrap();
    sys.verified_user("olga@sessions.test").await;
    let (owner, _) = sys.login("olga@sessions.test").await;
    let org_id = sys.create_organization(&owner.access_token).await;
    sys.orgs()
        .create_invite(bearer(
            org::CreateInviteRequest {
                organization_id: org_id.clone(),
                invite: Some(org::Invite {
                    email: "bert@sessions.test".into(),
                    role: org::OrgRole::Billing as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &owner.access_token,
        ))
        .await
        .unwrap();
    sys.verified_user("bert@sessions.test").await;
    let (desk, bert_id) = sys.login("bert@sessions.test").await;
    let invite_id = mail::invite_id(&sys.cluster.mail_dir(), "bert@sessions.test");
    let joined = sys
        .orgs()
        .accept_invite(bearer(
            org::AcceptInviteRequest { invite_id },
            &desk.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let (laptop, _) = sys.login("bert@sessions.test").await;
    for token in [&desk.access_token, &laptop.access_token] {
        sys.accepted_everywhere("the member before the reset", token, &org_id)
            .await;
    }

    let mut reset = bearer(
        identity::AdminResetPasswordRequest {
            organization_id: org_id.clone(),
            user_id: bert_id,
        },
        &owner.access_token,
    );
    reset.metadata_mut().insert(
        "x-min-organization-revision",
        joined.to_string().parse().unwrap(),
    );
    let ended = sys
        .identity()
        .admin_reset_password(reset)
        .await
        .unwrap()
        .into_inner()
        .ended_session_count;
    assert_eq!(ended, 2, "both of the member's sessions end");

    for (what, token) in [
        ("the member's first session", &desk.access_token),
        ("the member's second session", &laptop.access_token),
    ] {
        let took = sys.refused_everywhere(what, token, &org_id).await;
        eprintln!("AdminResetPassword: {what} refused everywhere in {took:?}");
    }
    sys.accepted_everywhere("the owner who reset", &owner.access_token, &org_id)
        .await;
    sys.cluster.stop().await;
}
