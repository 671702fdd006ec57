//! Secrets never in logs, errors or list responses: with the child services logging at debug
//! level and the in-process identity's logs captured, the scenario signs up, verifies, logs in,
//! refreshes, re-authenticates, resets a password, mints service tokens, creates API keys and
//! uses them (and wrong ones), invites and accepts; then it scans every child's `stderr.log`,
//! the captured identity log, every error message and details returned, every List/Get
//! response and every audit record for the passwords, API key secrets, access and refresh
//! tokens, service client secrets, verification/reset tokens, invite ids and signing-key
//! material it saw, and for anything shaped like a JWT or a full API key (the tokens the services
//! mint for each other included). The mails may carry their own link and nothing else secret.
//!
//! Not covered: SQL statement logs (`sqlx`/`sea_orm` at debug print bound values by design and
//! are kept at info here; only hashes of secrets are stored, but invite ids would show).

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use prost::Message;
use tonic::Status;

use crate::Figures;
use crate::attacks::keyed;
use crate::harness::{CHILDREN, Harness, PRODUCT, bearer};

/// The log filter of this scenario: everything at trace (transport frames included), except SQL
/// statements.
pub const LOG_FILTER: &str = "trace,sqlx=info,sea_orm=info";

const CAPTURE_LIMIT: usize = 64 << 20;

/// How many secrets scenarios are running in this process: the capture records only then, so
/// the subscriber costs the other tests of the process (almost) nothing.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What this process's global tracing subscriber wrote (identity runs in-process), if this
/// scenario could install it.
fn capture() -> Option<&'static Arc<Mutex<Vec<u8>>>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    static BUF: OnceLock<Option<Arc<Mutex<Vec<u8>>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        // Dynamic (asked at every event), not `filter_fn`, whose answer is cached per callsite:
        // a callsite first hit while no secrets scenario ran would stay silent for good.
        let active = tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
            ACTIVE.load(std::sync::atomic::Ordering::Relaxed) > 0
        });
        let installed = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .with_filter(tracing_subscriber::EnvFilter::new(LOG_FILTER))
                    .with_filter(active),
            )
            .try_init()
            .is_ok();
        installed.then_some(buf)
    })
    .as_ref()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock()
            && b.len() < CAPTURE_LIMIT
        {
            b.extend_from_slice(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the scenario on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let db = crate::db_label(postgres);
    let captured = capture();
    ACTIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = captured
        .and_then(|b| b.lock().ok().map(|b| b.len()))
        .unwrap_or(0);
    let mut h = Harness::start(bin, postgres).await?;
    let result = async {
        h.set_env(None, "RUST_LOG", LOG_FILTER);
        for name in CHILDREN {
            h.restart(name).await?;
        }
        scenario(&h, db, captured.map(|b| (b, start))).await
    }
    .await;
    ACTIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    h.stop().await?;
    result
}

/// The secrets seen, with what they are.
#[derive(Default)]
struct Seen {
    secrets: Vec<(String, String)>,
    /// Mail-link capabilities (verification/reset tokens, invite ids): legitimate in their own
    /// mail (and invite ids in OWNER/ADMIN answers), nowhere else.
    links: Vec<(String, String)>,
    /// Errors returned, with the values the request itself carried (echoing those back to
    /// their sender is not a leak).
    errors: Vec<(Status, Vec<String>)>,
    responses: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn secret(&mut self, what: &str, value: &str) {
        if value.len() >= 8 {
            self.secrets.push((what.to_owned(), value.to_owned()));
        }
    }
    fn link(&mut self, what: &str, value: &str) {
        if value.len() >= 8 {
            self.links.push((what.to_owned(), value.to_owned()));
        }
    }
    fn answer<T: Message>(&mut self, what: &str, r: Result<tonic::Response<T>, Status>) {
        match r {
            Ok(resp) => self
                .responses
                .push((what.to_owned(), resp.into_inner().encode_to_vec())),
            Err(s) => self.errors.push((s, Vec::new())),
        }
    }
    fn answer_to<T: Message>(&mut self, given: &str, r: Result<tonic::Response<T>, Status>) {
        if let Err(s) = r {
            self.errors.push((s, vec![given.to_owned()]));
        }
    }
}

/// Credentials recognised by their shape, whoever they belong to (e.g. the tokens the services
/// mint for each other, which the scenario never sees): a JWT (`eyJ…` header and payload) and a
/// full API key (`opk_[admin_]<16>_<38>`).
fn shapes(haystack: &[u8]) -> Vec<&'static str> {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut found = Vec::new();
    let run = |from: usize, ok: &dyn Fn(u8) -> bool| {
        haystack[from..].iter().take_while(|c| ok(**c)).count()
    };
    for i in 0..haystack.len().saturating_sub(3) {
        if haystack[i..].starts_with(b"eyJ") && (i == 0 || !b64(haystack[i - 1])) {
            let head = run(i, &b64);
            let dot = i + head;
            if head >= 16
                && haystack.get(dot) == Some(&b'.')
                && haystack[dot + 1..].starts_with(b"eyJ")
            {
                found.push("a JWT");
                break;
            }
        }
    }
    for i in 0..haystack.len().saturating_sub(4) {
        if haystack[i..].starts_with(b"opk_") {
            let mut j = i + 4;
            if haystack[j..].starts_with(b"admin_") {
                j += 6;
            }
            let id = run(j, &|c: u8| c.is_ascii_alphanumeric());
            if id == 16
                && haystack.get(j + 16) == Some(&b'_')
                && run(j + 17, &|c: u8| c.is_ascii_alphanumeric()) >= 38
            {
                found.push("a full API key");
                break;
            }
        }
    }
    found
}

fn hits<'a>(haystack: &[u8], needles: &'a [(String, String)]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|(_, n)| haystack.windows(n.len()).any(|w| w == n.as_bytes()))
        .map(|(what, _)| what.as_str())
        .collect()
}

async fn scenario(
    h: &Harness,
    db: &str,
    captured: Option<(&Arc<Mutex<Vec<u8>>>, usize)>,
) -> anyhow::Result<Figures> {
    let mut f = Figures::new("secrets", db);
    let mut s = Seen::default();
    let email = "secret.owner@chaos.test";
    let password = "Pa55word-correct-horse-1";
    s.secret("password", password);
    // SignUp, verification, login, refresh, re-authentication.
    let r = h
        .identity_client()
        .sign_up(id_api::SignUpRequest {
            email: email.into(),
            password: password.into(),
            display_name: "Secret Owner".into(),
            account_type: id_api::AccountType::Business as i32,
            request_id: String::new(),
        })
        .await;
    s.answer("SignUp", r);
    let verify = h
        .mail_value(email, "verify-email?token=")
        .ok_or_else(|| anyhow::anyhow!("no verification mail"))?;
    s.link("verification token", &verify);
    let r = h
        .identity_client()
        .verify_email(id_api::VerifyEmailRequest {
            token: verify.clone(),
        })
        .await;
    s.answer("VerifyEmail", r);
    // Reusing it fails; the error must not echo it.
    let r = h
        .identity_client()
        .verify_email(id_api::VerifyEmailRequest {
            token: verify.clone(),
        })
        .await;
    s.answer("VerifyEmail again", r);
    let wrong = "Wr0ng-password-guess-42";
    s.secret("wrong password", wrong);
    let r = h
        .identity_client()
        .login(id_api::LoginRequest {
            email: email.into(),
            password: wrong.into(),
        })
        .await;
    s.answer("Login (wrong password)", r);
    let login = h
        .identity_client()
        .login(id_api::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await?
        .into_inner();
    let tokens = login.tokens.clone().unwrap_or_default();
    let user_id = login.user.clone().unwrap_or_default().id;
    s.secret("access token", &tokens.access_token);
    s.secret("refresh token", &tokens.refresh_token);
    s.responses.push((
        "Login".into(),
        id_api::User::encode_to_vec(&login.user.unwrap_or_default()),
    ));
    let refreshed = h
        .identity_client()
        .refresh(id_api::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await?
        .into_inner()
        .tokens
        .unwrap_or_default();
    s.secret("access token (refreshed)", &refreshed.access_token);
    s.secret("refresh token (refreshed)", &refreshed.refresh_token);
    let access = refreshed.access_token.clone();
    let re = h
        .identity_client()
        .reauthenticate(bearer(
            id_api::ReauthenticateRequest {
                password: password.into(),
                ..Default::default()
            },
            &access,
        ))
        .await?
        .into_inner()
        .tokens
        .unwrap_or_default();
    s.secret("access token (reauthenticated)", &re.access_token);
    s.secret("refresh token (reauthenticated)", &re.refresh_token);
    let access = if re.access_token.is_empty() {
        access
    } else {
        re.access_token.clone()
    };
    let r = h
        .identity_client()
        .reauthenticate(bearer(
            id_api::ReauthenticateRequest {
                password: wrong.into(),
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("Reauthenticate (wrong password)", r);
    // Service tokens.
    s.secret("product client secret", "secret-product");
    for name in CHILDREN {
        s.secret(&format!("{name} client secret"), &format!("secret-{name}"));
    }
    let st = h
        .identity_client()
        .issue_service_token(id_api::IssueServiceTokenRequest {
            client_id: PRODUCT.into(),
            client_secret: "secret-product".into(),
        })
        .await?
        .into_inner();
    s.secret("service token", &st.access_token);
    let r = h
        .identity_client()
        .issue_service_token(id_api::IssueServiceTokenRequest {
            client_id: PRODUCT.into(),
            client_secret: "secret-product-but-wrong".into(),
        })
        .await;
    s.secret("wrong client secret", "secret-product-but-wrong");
    s.answer("IssueServiceToken (wrong secret)", r);
    // Organization, API keys (used, and a forged one), invite and acceptance.
    let created = h
        .orgs()
        .create_organization(bearer(
            org_api::CreateOrganizationRequest {
                organization: Some(org_api::Organization {
                    name: "Secret Org".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &access,
        ))
        .await?
        .into_inner();
    let org = created.organization.unwrap_or_default().id;
    let mut keys = Vec::new();
    for (kind, name) in [
        (id_api::ApiKeyKind::Admin, "admin"),
        (id_api::ApiKeyKind::Workspace, "workspace"),
    ] {
        let start = std::time::Instant::now();
        let key = loop {
            let r = h
                .identity_client()
                .create_api_key(bearer(
                    id_api::CreateApiKeyRequest {
                        organization_id: org.clone(),
                        api_key: Some(id_api::ApiKey {
                            kind: kind as i32,
                            name: format!("{name} key"),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &access,
                ))
                .await;
            match r {
                Ok(r) => break r.into_inner(),
                Err(e) if start.elapsed() < std::time::Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        s.secret(&format!("{name} API key secret"), &key.secret);
        s.responses.push((
            "CreateApiKey (metadata)".into(),
            key.api_key.clone().unwrap_or_default().encode_to_vec(),
        ));
        keys.push(key.secret);
    }
    let admin_key = keys[0].clone();
    let forged = format!("{}x", &admin_key[..admin_key.len() - 1]);
    s.secret("forged API key", &forged);
    let r = h
        .orgs()
        .get_organization(keyed(
            org_api::GetOrganizationRequest {
                organization_id: org.clone(),
            },
            &admin_key,
        ))
        .await;
    s.answer("GetOrganization (admin key)", r);
    for (what, key) in [("forged key", &forged), ("workspace key", &keys[1])] {
        let r = h
            .orgs()
            .get_organization(keyed(
                org_api::GetOrganizationRequest {
                    organization_id: org.clone(),
                },
                key,
            ))
            .await;
        s.answer(&format!("GetOrganization ({what})"), r);
        let r = h
            .workspaces()
            .list_workspaces(keyed(
                ws_api::ListWorkspacesRequest {
                    organization_id: org.clone(),
                    ..Default::default()
                },
                key,
            ))
            .await;
        s.answer(&format!("ListWorkspaces ({what})"), r);
        let r = h
            .billing()
            .get_billing_account(keyed(
                orgplane_proto::billing::v1::GetBillingAccountRequest {
                    organization_id: org.clone(),
                },
                key,
            ))
            .await;
        s.answer(&format!("GetBillingAccount ({what})"), r);
    }
    let bogus_bearer = format!("{access}tampered");
    let r = h
        .orgs()
        .get_organization(bearer(
            org_api::GetOrganizationRequest {
                organization_id: org.clone(),
            },
            &bogus_bearer,
        ))
        .await;
    s.answer("GetOrganization (tampered token)", r);
    let invitee = "secret.invitee@chaos.test";
    let invitee_id = "user_secret_invitee";
    h.seed_user(invitee_id, invitee).await?;
    let r = h
        .orgs()
        .create_invite(bearer(
            org_api::CreateInviteRequest {
                organization_id: org.clone(),
                invite: Some(org_api::Invite {
                    email: invitee.into(),
                    role: org_api::OrgRole::Developer as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &access,
        ))
        .await?
        .into_inner();
    let invite_id = r.invite.unwrap_or_default().id;
    s.link("invite id", &invite_id);
    let r = h
        .orgs()
        .accept_invite(bearer(
            org_api::AcceptInviteRequest {
                invite_id: invite_id.clone(),
            },
            &h.user_token(invitee_id)?,
        ))
        .await;
    s.answer("AcceptInvite", r);
    // A stranger guessing the invite must not learn anything from the error.
    h.seed_user("user_secret_stranger", "stranger@chaos.test")
        .await?;
    let r = h
        .orgs()
        .accept_invite(bearer(
            org_api::AcceptInviteRequest {
                invite_id: invite_id.clone(),
            },
            &h.user_token("user_secret_stranger")?,
        ))
        .await;
    s.answer_to(&invite_id, r);
    // Password reset by mail, then the old password is refused and the new one works.
    h.identity_client()
        .request_password_reset(id_api::RequestPasswordResetRequest {
            email: email.into(),
        })
        .await?;
    let reset = h
        .mail_value(email, "reset-password?token=")
        .ok_or_else(|| anyhow::anyhow!("no reset mail"))?;
    s.link("reset token", &reset);
    let new_password = "N3w-password-battery-staple";
    s.secret("new password", new_password);
    let r = h
        .identity_client()
        .reset_password(id_api::ResetPasswordRequest {
            token: reset.clone(),
            new_password: new_password.into(),
        })
        .await;
    s.answer("ResetPassword", r);
    let r = h
        .identity_client()
        .reset_password(id_api::ResetPasswordRequest {
            token: reset.clone(),
            new_password: "An0ther-password-attempt".into(),
        })
        .await;
    s.secret("second new password", "An0ther-password-attempt");
    s.answer("ResetPassword (reused)", r);
    let after = h
        .identity_client()
        .login(id_api::LoginRequest {
            email: email.into(),
            password: new_password.into(),
        })
        .await?
        .into_inner()
        .tokens
        .unwrap_or_default();
    s.secret("access token (after reset)", &after.access_token);
    s.secret("refresh token (after reset)", &after.refresh_token);
    let access = after.access_token;
    // Signing-key material: the sealing key file.
    if let Ok(k) = std::fs::read_to_string(h.dir.path().join("identity-signing.key")) {
        s.secret("signing-key encryption key", k.trim());
    }
    // Every List/Get the owner may call, and the audit logs.
    let r = h
        .identity_client()
        .list_api_keys(bearer(
            id_api::ListApiKeysRequest {
                organization_id: org.clone(),
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("ListApiKeys", r);
    let r = h
        .identity_client()
        .get_user(bearer(
            id_api::GetUserRequest {
                user_id: user_id.clone(),
            },
            &access,
        ))
        .await;
    s.answer("GetUser", r);
    let r = h
        .orgs()
        .list_members(bearer(
            org_api::ListMembersRequest {
                organization_id: org.clone(),
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("ListMembers", r);
    let r = h
        .orgs()
        .list_organizations(bearer(
            org_api::ListOrganizationsRequest::default(),
            &access,
        ))
        .await;
    s.answer("ListOrganizations", r);
    let r = h
        .orgs()
        .list_audit_events(bearer(
            org_api::ListAuditEventsRequest {
                organization_id: org.clone(),
                page_size: 1000,
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("organization ListAuditEvents", r);
    let r = h
        .workspaces()
        .list_audit_events(bearer(
            ws_api::ListAuditEventsRequest {
                organization_id: org.clone(),
                page_size: 1000,
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("workspace ListAuditEvents", r);
    let r = h
        .billing()
        .list_audit_events(bearer(
            orgplane_proto::billing::v1::ListAuditEventsRequest {
                organization_id: org.clone(),
                page_size: 1000,
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("billing ListAuditEvents", r);
    let r = h
        .billing()
        .list_billing_members(bearer(
            orgplane_proto::billing::v1::ListBillingMembersRequest {
                organization_id: org.clone(),
                ..Default::default()
            },
            &access,
        ))
        .await;
    s.answer("ListBillingMembers", r);
    // Second factors (rules ID-10, ID-11): the TOTP secret and URI, the recovery codes and the
    // challenge ids are secrets like passwords. Last, since this user's sign-ins now need a code.
    let started = h
        .identity_client()
        .start_totp_enrollment(bearer(
            id_api::StartTotpEnrollmentRequest {
                display_name: "Phone".into(),
            },
            &access,
        ))
        .await?
        .into_inner();
    s.secret("TOTP secret", &started.secret);
    s.secret("otpauth URI", &started.otpauth_uri);
    let factor_id = started.factor.map(|f| f.id).unwrap_or_default();
    let r = h
        .identity_client()
        .confirm_totp_enrollment(bearer(
            id_api::ConfirmTotpEnrollmentRequest {
                factor_id: factor_id.clone(),
                code: "000000".into(),
            },
            &access,
        ))
        .await;
    s.answer("ConfirmTotpEnrollment (wrong code)", r);
    let confirmed = h
        .identity_client()
        .confirm_totp_enrollment(bearer(
            id_api::ConfirmTotpEnrollmentRequest {
                factor_id,
                code: totp_now(&started.secret)?,
            },
            &access,
        ))
        .await?
        .into_inner();
    for code in &confirmed.recovery_codes {
        s.secret("recovery code", code);
    }
    let renewed = confirmed.tokens.unwrap_or_default();
    s.secret("access token (with a factor)", &renewed.access_token);
    s.secret("refresh token (with a factor)", &renewed.refresh_token);
    let r = h
        .identity_client()
        .list_mfa_factors(bearer(
            id_api::ListMfaFactorsRequest {},
            &renewed.access_token,
        ))
        .await;
    s.answer("ListMfaFactors", r);
    let challenge = h
        .identity_client()
        .login(id_api::LoginRequest {
            email: email.into(),
            password: new_password.into(),
        })
        .await?
        .into_inner()
        .mfa_challenge
        .unwrap_or_default();
    s.secret("MFA challenge id", &challenge.challenge_id);
    let wrong_code = "zzzz-zzzz-zzzz";
    let r = h
        .identity_client()
        .verify_mfa_challenge(id_api::VerifyMfaChallengeRequest {
            challenge_id: challenge.challenge_id.clone(),
            recovery_code: wrong_code.into(),
            ..Default::default()
        })
        .await;
    s.answer_to(wrong_code, r);
    if let Some(code) = confirmed.recovery_codes.first() {
        let signed_in = h
            .identity_client()
            .verify_mfa_challenge(id_api::VerifyMfaChallengeRequest {
                challenge_id: challenge.challenge_id.clone(),
                recovery_code: code.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tokens
            .unwrap_or_default();
        s.secret("access token (challenge)", &signed_in.access_token);
        s.secret("refresh token (challenge)", &signed_in.refresh_token);
    }
    // At rest: identity's database holds hashes and sealed values only.
    s.responses.push((
        "identity database at rest".into(),
        database_at_rest(h.identity_db()?).await?,
    ));

    // Identity has no ListAuditEvents: its records are read from its database.
    {
        use orgplane_platform::audit::row;
        use sea_orm::EntityTrait;
        for r in row::Entity::find().all(h.identity_db()?).await? {
            s.responses.push((
                format!("identity audit {}", r.action),
                format!(
                    "{} {} {}",
                    r.resource_id,
                    r.before_json.unwrap_or_default(),
                    r.after_json.unwrap_or_default()
                )
                .into_bytes(),
            ));
        }
    }

    // The scan.
    let all: Vec<(String, String)> = s.secrets.iter().chain(s.links.iter()).cloned().collect();
    let leak = |f: &mut Figures, place: String, found: Vec<&str>| {
        f.operations += 1;
        if found.is_empty() {
            f.attacks_passed += 1;
        } else {
            f.leaks += found.len() as u64;
            f.failures.push(format!("{place} contains: {found:?}"));
        }
    };
    for (e, given) in &s.errors {
        let mut found = hits(&[e.message().as_bytes(), e.details()].concat(), &all);
        found.retain(|what| !all.iter().any(|(w, v)| w == what && given.contains(v)));
        leak(
            &mut f,
            format!("error {:?} {:?}", e.code(), e.message()),
            found,
        );
    }
    for (what, bytes) in &s.responses {
        // Invite ids are returned to OWNER/ADMIN legitimately (ListInvites, audit resource ids).
        let mut found = hits(bytes, &s.secrets);
        found.extend(shapes(bytes));
        leak(&mut f, format!("response {what}"), found);
    }
    let mut log_bytes = 0usize;
    for name in CHILDREN {
        // The services log to stdout (kept by the harness in stdout.log); stderr has the rest.
        for file in ["stdout.log", "stderr.log"] {
            let log = std::fs::read(h.dir.path().join(name).join(file)).unwrap_or_default();
            log_bytes += log.len();
            let mut found = hits(&log, &all);
            found.extend(shapes(&log));
            leak(&mut f, format!("{name} {file}"), found);
        }
    }
    let identity_log = match captured {
        Some((buf, start)) => {
            let log = buf
                .lock()
                .map(|b| b.get(start..).unwrap_or_default().to_vec())
                .unwrap_or_default();
            log_bytes += log.len();
            if log.is_empty() {
                f.failures
                    .push("identity's in-process log: nothing captured, nothing scanned".into());
            }
            let mut found = hits(&log, &all);
            found.extend(shapes(&log));
            leak(&mut f, "identity (in-process) log".into(), found);
            format!("identity log {} KiB captured", log.len() >> 10)
        }
        None => "identity's in-process log NOT captured (another subscriber was installed)".into(),
    };
    // Mail: each message may carry its own link, nothing else secret.
    let mut mails = 0;
    let mut links_in_mail = 0;
    for entry in std::fs::read_dir(h.dir.path().join("mail"))?.flatten() {
        let text = std::fs::read(entry.path()).unwrap_or_default();
        mails += 1;
        let own: Vec<&str> = hits(&text, &s.links);
        links_in_mail += own.len();
        let mut found = hits(&text, &s.secrets);
        if own.len() > 1 {
            found.extend(own);
        }
        leak(&mut f, format!("mail {}", entry.path().display()), found);
    }
    // The shape scanner's positive control: it recognises the real token and key.
    for (what, v) in s
        .secrets
        .iter()
        .filter(|(w, _)| w == "access token" || w == "admin API key secret")
    {
        if shapes(v.as_bytes()).is_empty() {
            f.failures
                .push(format!("the shape scanner does not recognise the {what}"));
        }
    }
    // The scanner's positive control: each mailed link is found in its mail.
    if links_in_mail < s.links.len() {
        f.failures.push(format!(
            "the scan found {links_in_mail} of the {} mailed links in the mails",
            s.links.len()
        ));
    }
    if log_bytes < 64 << 10 {
        f.failures.push(format!(
            "only {log_bytes} bytes of logs were written: the scan proves nothing"
        ));
    }
    let _ = std::io::stderr().flush();
    f.notes = format!(
        "{} secrets + {} link tokens; scanned {} errors, {} responses/audit records, {} KiB of child logs at {LOG_FILTER:?}, {mails} mails; {identity_log}",
        s.secrets.len(),
        s.links.len(),
        s.errors.len(),
        s.responses.len(),
        log_bytes >> 10,
    );
    Ok(f)
}

/// The current RFC 6238 code of a base32 `secret` (SHA-1, 6 digits, 30 s).
pub(crate) fn totp_now(secret: &str) -> anyhow::Result<String> {
    let secret = totp_rs::Secret::try_from_base32(secret)
        .map_err(|e| anyhow::anyhow!("TOTP secret is not base32: {e:?}"))?;
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP: {e:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(totp.generate(now).to_string())
}

/// Everything a database holds, as bytes to scan: the SQLite file and its write-ahead log, or
/// every PostgreSQL table's rows as JSON.
async fn database_at_rest(db: &sea_orm::DatabaseConnection) -> anyhow::Result<Vec<u8>> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let backend = db.get_database_backend();
    let mut out = Vec::new();
    match backend {
        DbBackend::Sqlite => {
            let rows = db
                .query_all_raw(Statement::from_string(backend, "PRAGMA database_list"))
                .await?;
            for row in rows {
                let file: String = row.try_get_by_index(2)?;
                if file.is_empty() {
                    continue;
                }
                for suffix in ["", "-wal"] {
                    out.extend(std::fs::read(format!("{file}{suffix}")).unwrap_or_default());
                }
            }
            anyhow::ensure!(!out.is_empty(), "identity's SQLite file was not found");
        }
        _ => {
            let tables = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
                ))
                .await?;
            for t in tables {
                let table: String = t.try_get_by_index(0)?;
                let rows = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT row_to_json(t)::text FROM \"{table}\" t"),
                    ))
                    .await?;
                for r in rows {
                    let json: String = r.try_get_by_index(0)?;
                    out.extend(json.into_bytes());
                    out.push(b'\n');
                }
            }
        }
    }
    Ok(out)
}
