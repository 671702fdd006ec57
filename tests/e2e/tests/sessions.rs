//! An ended session ends its access tokens everywhere (rules ID-4, ID-8): after Logout, reuse of
//! a rotated refresh token, or an admin password reset, every service refuses the session's
//! access token — also one it had already verified and cached — with UNAUTHENTICATED
//! `SESSION_REVOKED`, while other sessions keep working. Likewise a deactivated API key (ID-7)
//! is refused by every service as soon as identity's `ApiKeyStatusChanged` reaches it, although
//! its resolution was cached. The real `orgplane` binary, as four processes (identity's events
//! cross the network) and as one, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

    /// Creates an organization owned by the holder of `token`: its id, and the organization
    /// service's revision after the change.
    async fn create_organization(&self, token: &str) -> (String, i64) {
        let created = self
            .orgs()
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
            .into_inner();
        (created.organization.unwrap().id, created.revision)
    }

    /// One authenticated read on each service with `cred`, in the order of [`SERVICES`].
    async fn reads(
        &self,
        cred: impl Into<Credential<'_>>,
        org_id: &str,
    ) -> Vec<Result<(), Status>> {
        let cred = cred.into();
        let identity = match cred {
            Credential::Token(_) => self
                .identity()
                .get_user(cred.on(identity::GetUserRequest {
                    user_id: "me".into(),
                }))
                .await
                .map(drop),
            Credential::AdminKey { id, .. } => self
                .identity()
                .get_api_key(cred.on(identity::GetApiKeyRequest {
                    api_key_id: id.into(),
                }))
                .await
                .map(drop),
        };
        let organization = self
            .orgs()
            .get_organization(cred.on(org::GetOrganizationRequest {
                organization_id: org_id.into(),
            }))
            .await
            .map(drop);
        let workspace = WorkspaceServiceClient::new(self.cluster.channel("workspace"))
            .list_workspaces(cred.on(ws::ListWorkspacesRequest {
                organization_id: org_id.into(),
                page_size: 10,
                ..Default::default()
            }))
            .await
            .map(drop);
        let billing = BillingAccessServiceClient::new(self.cluster.channel("billing-access"))
            .get_billing_account(cred.on(billing::GetBillingAccountRequest {
                organization_id: org_id.into(),
            }))
            .await
            .map(drop);
        vec![identity, organization, workspace, billing]
    }

    /// Waits until every service answers `cred`'s reads (the organization's events reach the
    /// workspace and billing services asynchronously); each answer is then cached as verified.
    async fn accepted_everywhere<'a>(
        &self,
        what: &str,
        cred: impl Into<Credential<'a>> + Copy,
        org_id: &str,
    ) {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let results = self.reads(cred, org_id).await;
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

    /// Waits until every service refuses `cred` with UNAUTHENTICATED and one of `reasons`, and
    /// returns how long that took.
    async fn refused_everywhere<'a>(
        &self,
        what: &str,
        cred: impl Into<Credential<'a>> + Copy,
        org_id: &str,
        reasons: &[&str],
    ) -> Duration {
        let started = Instant::now();
        loop {
            let results = self.reads(cred, org_id).await;
            let revoked = |r: &Result<(), Status>| {
                r.as_ref().is_err_and(|s| {
                    s.code() == Code::Unauthenticated
                        && reason_of(s).is_some_and(|r| reasons.contains(&r.as_str()))
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

/// What a read authenticates with.
#[derive(Clone, Copy)]
enum Credential<'a> {
    /// An access token.
    Token(&'a str),
    /// An admin API key: its id and secret.
    AdminKey { id: &'a str, secret: &'a str },
}

impl<'a> From<&'a str> for Credential<'a> {
    fn from(token: &'a str) -> Self {
        Credential::Token(token)
    }
}

impl<'a> From<&'a String> for Credential<'a> {
    fn from(token: &'a String) -> Self {
        Credential::Token(token)
    }
}

impl Credential<'_> {
    /// `message` carrying this credential.
    fn on<T>(self, message: T) -> tonic::Request<T> {
        match self {
            Credential::Token(token) => bearer(message, token),
            Credential::AdminKey { secret, .. } => {
                let mut request = tonic::Request::new(message);
                request
                    .metadata_mut()
                    .insert("x-api-key", secret.parse().unwrap());
                request
            }
        }
    }
}

const SESSION_REVOKED: &[&str] = &["SESSION_REVOKED"];

async fn logged_out_session_is_refused_by_every_service(layout: Layout, postgres: bool) {
    let Some(sys) = System::start(layout, postgres).await else {
        return;
    };
    sys.verified_user("sam@sessions.test").await;
    let (laptop, _) = sys.login("sam@sessions.test").await;
    let (phone, _) = sys.login("sam@sessions.test").await;
    let (org_id, _) = sys.create_organization(&laptop.access_token).await;
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
        .refused_everywhere(
            "logged-out laptop",
            &laptop.access_token,
            &org_id,
            SESSION_REVOKED,
        )
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
    let (org_id, _) = sys.create_organization(&first.access_token).await;
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
        let took = sys
            .refused_everywhere(what, token, &org_id, SESSION_REVOKED)
            .await;
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
    let (org_id, _) = sys.create_organization(&owner.access_token).await;
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
        let took = sys
            .refused_everywhere(what, token, &org_id, SESSION_REVOKED)
            .await;
        eprintln!("AdminResetPassword: {what} refused everywhere in {took:?}");
    }
    sys.accepted_everywhere("the owner who reset", &owner.access_token, &org_id)
        .await;
    sys.cluster.stop().await;
}

/// How long a cached API-key resolution lives in `orgplane` (`run.rs`): a deactivated key must be
/// refused well before it, through the event rather than the expiry.
const KEY_CACHE_LIFETIME: Duration = Duration::from_secs(10);

async fn deactivated_key_is_refused_by_every_service(layout: Layout, postgres: bool) {
    let Some(sys) = System::start(layout, postgres).await else {
        return;
    };
    sys.verified_user("kim@keys.test").await;
    let (owner, _) = sys.login("kim@keys.test").await;
    let (org_id, created_at) = sys.create_organization(&owner.access_token).await;
    // Identity waits until it has heard of the organization's creation.
    let mut create = bearer(
        identity::CreateApiKeyRequest {
            organization_id: org_id.clone(),
            api_key: Some(identity::ApiKey {
                kind: identity::ApiKeyKind::Admin as i32,
                name: "deploy bot".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &owner.access_token,
    );
    create.metadata_mut().insert(
        "x-min-organization-revision",
        created_at.to_string().parse().unwrap(),
    );
    let created = sys
        .identity()
        .create_api_key(create)
        .await
        .unwrap()
        .into_inner();
    let key_id = created.api_key.unwrap().id;
    let key = Credential::AdminKey {
        id: &key_id,
        secret: &created.secret,
    };
    // Every service resolves the key and caches the resolution.
    sys.accepted_everywhere("the new admin key", key, &org_id)
        .await;
    let cached_at = Instant::now();

    let set_status = |status: identity::ApiKeyStatus| {
        let mut identity = sys.identity();
        let request = bearer(
            identity::UpdateApiKeyRequest {
                api_key: Some(identity::ApiKey {
                    id: key_id.clone(),
                    status: status as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
                etag: String::new(),
            },
            &owner.access_token,
        );
        async move { identity.update_api_key(request).await }
    };
    set_status(identity::ApiKeyStatus::Inactive).await.unwrap();
    let took = sys
        .refused_everywhere("the deactivated key", key, &org_id, &["API_KEY_INACTIVE"])
        .await;
    eprintln!(
        "UpdateApiKey INACTIVE reached every service in {took:?} ({layout:?}, postgres: {postgres})"
    );
    assert!(
        cached_at.elapsed() < KEY_CACHE_LIFETIME,
        "refused only after {:?}: the cached resolutions may simply have expired",
        cached_at.elapsed()
    );

    // Active again: accepted again everywhere.
    set_status(identity::ApiKeyStatus::Active).await.unwrap();
    sys.accepted_everywhere("the reactivated key", key, &org_id)
        .await;
    sys.cluster.stop().await;
}

#[tokio::test]
async fn id_7_a_deactivated_api_key_is_refused_by_every_service_before_its_cache_expires() {
    deactivated_key_is_refused_by_every_service(Layout::FourProcesses, false).await;
}

#[tokio::test]
async fn id_7_a_deactivated_api_key_is_refused_by_every_service_in_one_process_on_postgres() {
    deactivated_key_is_refused_by_every_service(Layout::All, true).await;
}
