//! An organization's security policy is enforced by every service (rule ORG-16), with second
//! factors enrolled and used through identity (rules ID-10, ID-11): the real `orgplane` binary,
//! as four processes (the policy crosses the network as `SecurityPolicyChanged`) and as one, on
//! SQLite and PostgreSQL.
//!
//! Olivia owns two organizations. She enrolls an authenticator app; the token she held before
//! (password only) and the one renewed by the enrollment (with `mfa`) are both kept. After she
//! makes the first organization require a second factor, the password-only token is refused there
//! by identity, organization, workspace (a listing and CheckAccess) and billing-access with
//! UNAUTHENTICATED `MFA_REQUIRED` — at the revision the policy change returned, with no waiting —
//! and still works in the second organization; the token with a second factor works in both, and
//! so does a new sign-in through the MFA challenge. The control arm runs the same system with
//! enforcement switched off in its auth layer and shows that the check then finds every service
//! leaking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{Cluster, Layout};
use support::people;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use billing::billing_access_service_client::BillingAccessServiceClient;
use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "olivia@strict.example";

/// The reads every service answers for an organization, in this order.
const READS: [&str; 5] = [
    "identity ListApiKeys",
    "organization GetOrganization",
    "workspace ListWorkspaces",
    "workspace CheckAccess",
    "billing-access GetBillingAccount",
];

#[tokio::test]
async fn org_16_every_service_enforces_the_policy_four_processes_on_sqlite() {
    let leaks = run(Layout::FourProcesses, false, false).await;
    assert!(leaks.unwrap().is_empty());
}

#[tokio::test]
async fn org_16_every_service_enforces_the_policy_all_in_one_on_postgres() {
    let Some(leaks) = run(Layout::All, true, false).await else {
        return;
    };
    assert!(leaks.is_empty());
}

/// The control arm: with enforcement off, the same check finds every read of the strict
/// organization answering a password-only token.
#[tokio::test]
async fn org_16_control_arm_without_enforcement_the_check_finds_every_service_leaking() {
    let leaks = run(Layout::FourProcesses, false, true).await.unwrap();
    assert_eq!(
        leaks,
        READS.to_vec(),
        "the control arm must detect the bypass"
    );
}

/// Runs the story and returns the reads of the strict organization that answered the
/// password-only token (`None`: PostgreSQL is not set up).
async fn run(layout: Layout, postgres: bool, control_arm: bool) -> Option<Vec<&'static str>> {
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
    let env = if control_arm {
        vec![("ORGPLANE_E2E_CONTROL_ARM", "no-security-policy".to_owned())]
    } else {
        Vec::new()
    };
    let cluster = Cluster::start(layout, dir.path(), urls, env).await;
    let s = Story { cluster: &cluster };

    // Olivia signs up, signs in with her password and creates two organizations.
    let (password_only, user_id) = s.signed_up_user().await;
    let strict = s.create_organization(&password_only, "Strict").await;
    let relaxed = s.create_organization(&password_only, "Relaxed").await;

    // She enrolls an authenticator app: the enrollment renews her session with a second factor.
    let started = s
        .identity()
        .start_totp_enrollment(bearer(
            identity::StartTotpEnrollmentRequest {
                display_name: "Phone".into(),
            },
            &password_only,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(started.otpauth_uri.starts_with("otpauth://totp/"));
    let secret = started.secret.clone();
    let confirmed = s
        .identity()
        .confirm_totp_enrollment(bearer(
            identity::ConfirmTotpEnrollmentRequest {
                factor_id: started.factor.unwrap().id,
                code: totp_now(&secret),
            },
            &password_only,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    let with_factor = confirmed.tokens.unwrap().access_token;
    let amr = claims(&with_factor)["amr"].clone();
    assert_eq!(
        amr,
        serde_json::json!(["pwd", "otp", "mfa"]),
        "amr of {amr}"
    );
    assert!(claims(&password_only).get("mfa_enrolled").is_none());

    // The strict organization requires a second factor from everyone.
    let updated = s
        .orgs()
        .update_security_policy(bearer(
            org::UpdateSecurityPolicyRequest {
                security_policy: Some(org::SecurityPolicy {
                    organization_id: strict.clone(),
                    mfa_requirement: org::MfaRequirement::Required as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["mfa_requirement".into()],
                }),
                etag: String::new(),
            },
            &with_factor,
        ))
        .await
        .unwrap()
        .into_inner();
    let revision = updated.revision;

    // At that revision every service refuses the password-only token in the strict organization…
    let answers = s.reads(&password_only, &strict, &user_id, revision).await;
    let mut leaks = Vec::new();
    for (read, answer) in READS.iter().zip(&answers) {
        match answer {
            Ok(()) => leaks.push(*read),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{read}: {status:?}");
                assert_eq!(reason_of(status).as_deref(), Some("MFA_REQUIRED"), "{read}");
                let details = status.get_error_details();
                let info = details.error_info().unwrap();
                assert_eq!(info.metadata["organization_id"], strict, "{read}");
                assert!(info.metadata.contains_key("enrollment_required"), "{read}");
            }
        }
    }
    if control_arm {
        return Some(leaks);
    }

    // …and answers it in the relaxed one; the token with a second factor works in both.
    for (who, token, organization) in [
        ("password-only in Relaxed", &password_only, &relaxed),
        ("with a factor in Strict", &with_factor, &strict),
        ("with a factor in Relaxed", &with_factor, &relaxed),
    ] {
        let answers = s.reads(token, organization, &user_id, revision).await;
        for (read, answer) in READS.iter().zip(answers) {
            assert!(answer.is_ok(), "{who}: {read}: {answer:?}");
        }
    }

    // A new sign-in answers a challenge; a recovery code completes it, once.
    let login = s
        .identity()
        .login(identity::LoginRequest {
            email: EMAIL.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        login.tokens.is_none(),
        "a user with a factor gets no tokens from Login"
    );
    let challenge = login.mfa_challenge.unwrap();
    assert!(
        challenge
            .methods
            .contains(&(identity::MfaMethod::Totp as i32))
    );
    let verify = |recovery_code: &str, challenge_id: &str| identity::VerifyMfaChallengeRequest {
        challenge_id: challenge_id.into(),
        recovery_code: recovery_code.into(),
        ..Default::default()
    };
    let signed_in = s
        .identity()
        .verify_mfa_challenge(verify(
            &confirmed.recovery_codes[0],
            &challenge.challenge_id,
        ))
        .await
        .unwrap()
        .into_inner();
    let challenged = signed_in.tokens.unwrap().access_token;
    for (read, answer) in READS
        .iter()
        .zip(s.reads(&challenged, &strict, &user_id, revision).await)
    {
        assert!(answer.is_ok(), "after the challenge: {read}: {answer:?}");
    }
    let again = s
        .identity()
        .login(identity::LoginRequest {
            email: EMAIL.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mfa_challenge
        .unwrap();
    let reused = s
        .identity()
        .verify_mfa_challenge(verify(&confirmed.recovery_codes[0], &again.challenge_id))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert_eq!(reason_of(&reused).as_deref(), Some("INVALID_MFA_CODE"));

    cluster.stop().await;
    Some(leaks)
}

struct Story<'a> {
    cluster: &'a Cluster,
}

impl Story<'_> {
    fn identity(&self) -> IdentityServiceClient<tonic::transport::Channel> {
        IdentityServiceClient::new(self.cluster.channel("identity"))
    }

    fn orgs(&self) -> OrganizationServiceClient<tonic::transport::Channel> {
        OrganizationServiceClient::new(self.cluster.channel("organization"))
    }

    /// Signs Olivia up, verifies her address and signs her in: her access token and id.
    async fn signed_up_user(&self) -> (String, String) {
        people::signed_up_user(self.cluster, EMAIL, PASSWORD).await
    }

    async fn create_organization(&self, token: &str, name: &str) -> String {
        people::create_organization(self.cluster, token, name).await
    }

    /// The reads of [`READS`] by the holder of `token` in `organization`, each asking the service
    /// to have applied the organization service's `revision` first.
    async fn reads(
        &self,
        token: &str,
        organization: &str,
        user_id: &str,
        revision: i64,
    ) -> Vec<Result<(), Status>> {
        fn at<T>(message: T, token: &str, revision: i64) -> tonic::Request<T> {
            let mut r = bearer(message, token);
            r.metadata_mut().insert(
                "x-min-organization-revision",
                revision.to_string().parse().unwrap(),
            );
            r
        }
        let identity = self
            .identity()
            .list_api_keys(at(
                identity::ListApiKeysRequest {
                    organization_id: organization.into(),
                    ..Default::default()
                },
                token,
                revision,
            ))
            .await
            .map(drop);
        let organization_read = self
            .orgs()
            .get_organization(at(
                org::GetOrganizationRequest {
                    organization_id: organization.into(),
                },
                token,
                revision,
            ))
            .await
            .map(drop);
        let workspaces = WorkspaceServiceClient::new(self.cluster.channel("workspace"));
        let listing = workspaces
            .clone()
            .list_workspaces(at(
                ws::ListWorkspacesRequest {
                    organization_id: organization.into(),
                    page_size: 10,
                    ..Default::default()
                },
                token,
                revision,
            ))
            .await
            .map(drop);
        // The user asks about themselves in the Default Workspace (empty id).
        let check = workspaces
            .clone()
            .check_access(at(
                ws::CheckAccessRequest {
                    organization_id: organization.into(),
                    subject: Some(ws::check_access_request::Subject::UserId(user_id.into())),
                    permission: ws::Permission::Develop as i32,
                    ..Default::default()
                },
                token,
                revision,
            ))
            .await
            .map(drop);
        let billing = BillingAccessServiceClient::new(self.cluster.channel("billing-access"))
            .get_billing_account(at(
                billing::GetBillingAccountRequest {
                    organization_id: organization.into(),
                },
                token,
                revision,
            ))
            .await
            .map(drop);
        vec![identity, organization_read, listing, check, billing]
    }
}

/// The current RFC 6238 code of a base32 `secret` (SHA-1, 6 digits, 30 s).
fn totp_now(secret: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now).to_string()
}

/// The claims of a JWT, unverified (the services verified it).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
