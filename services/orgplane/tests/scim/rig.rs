//! A running Orgplane for the SCIM suites: all four services in this process
//! (`orgplane::start`, on SQLite or PostgreSQL), a real DNS server for domain verification, and
//! the SCIM routes on the process's own HTTP listener (`--http-listen` on port 0).

use std::path::{Path, PathBuf};
use std::time::Duration;

use orgplane::{Cli, Service, Started};
use orgplane_oracles::dns::TestDns;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery staple 42";

/// A running system.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub started: Option<Started>,
    pub channel: Channel,
    pub scim_base: String,
    pub http: reqwest::Client,
    pub dns: TestDns,
    _dbs: Vec<TestDb>,
}

/// An answer of the SCIM endpoint.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Rig {
    /// Starts the system; `None` when PostgreSQL was asked for and is not set up.
    pub async fn start(postgres: bool) -> Option<Rig> {
        let dir = tempfile::tempdir().unwrap();
        let dns = TestDns::start(&["acme.test", "globex.test", "initech.test"]).await;
        let mut args: Vec<String> = vec![
            "orgplane".into(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
            "--mail-url".into(),
            format!("file://{}", dir.path().join("mail").display()),
            "--organization-mail-url".into(),
            format!("file://{}", dir.path().join("mail").display()),
            "--organization-dns-server".into(),
            dns.addr.to_string(),
            "--organization-domain-check-interval-secs".into(),
            "0".into(),
            "--signing-key-encryption-key".into(),
            "b3JncGxhbmUtYmVuY2gtc2lnbmluZy1rZXktMDAwMDA=".into(),
        ];
        let mut dbs = Vec::new();
        if postgres {
            for s in Service::ALL {
                let Some(db) = TestDb::postgres().await else {
                    eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                    return None;
                };
                args.push(format!("--{}-database-url", s.name()));
                args.push(db.url.clone());
                dbs.push(db);
            }
        }
        let cli = <Cli as clap::Parser>::try_parse_from(args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let started = orgplane::start(&cli, &Service::ALL, listener, shutdown.clone())
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{}", started.addr))
            .unwrap()
            .connect_lazy();
        let http = started.http_addr.expect("the HTTP listener is on");
        let scim_base = format!("http://{http}/scim/v2");
        let rig = Rig {
            dir,
            shutdown,
            started: Some(started),
            channel,
            scim_base,
            http: reqwest::Client::new(),
            dns,
            _dbs: dbs,
        };
        rig.wait_serving().await;
        Some(rig)
    }

    async fn wait_serving(&self) {
        for _ in 0..600 {
            let signed_up = self.identity().get_jwks(identity::GetJwksRequest {}).await;
            if signed_up.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("identity never answered");
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    pub fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel.clone())
    }

    pub fn orgs(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.channel.clone())
    }

    /// A SCIM request with `token` (None: no Authorization header).
    pub async fn scim(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.scim_base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    /// Signs up, verifies and signs in `email`: (access token, refresh token, user id).
    pub async fn person(&self, email: &str) -> (String, String, String) {
        let mut identity = self.identity();
        identity
            .sign_up(identity::SignUpRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: "Test Person".into(),
                account_type: identity::AccountType::Business as i32,
                request_id: String::new(),
            })
            .await
            .unwrap();
        let token = verification_token(&self.mail_dir(), email);
        identity
            .verify_email(identity::VerifyEmailRequest { token })
            .await
            .unwrap();
        self.login(email).await.unwrap()
    }

    /// Signs in `email`: (access token, refresh token, user id).
    pub async fn login(&self, email: &str) -> Result<(String, String, String), tonic::Status> {
        let login = self
            .identity()
            .login(identity::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await?
            .into_inner();
        let tokens = login.tokens.unwrap();
        Ok((
            tokens.access_token,
            tokens.refresh_token,
            login.user.unwrap().id,
        ))
    }

    /// An organization owned by a new person, holding `domain` VERIFIED (through the DNS
    /// record), with a SCIM token.
    pub async fn tenant(&self, name: &str, domain: &str) -> Tenant {
        let owner_email = format!("owner@{domain}");
        let (owner_token, _, _) = self.person(&owner_email).await;
        let mut orgs = self.orgs();
        let org_id = orgs
            .create_organization(bearer(
                org::CreateOrganizationRequest {
                    organization: Some(org::Organization {
                        name: name.into(),
                        r#type: org::OrganizationType::Company as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &owner_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap()
            .id;
        let created = orgs
            .create_domain(bearer(
                org::CreateDomainRequest {
                    organization_id: org_id.clone(),
                    domain: Some(org::Domain {
                        domain_name: domain.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &owner_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .domain
            .unwrap();
        let challenge = created.challenge.unwrap();
        self.dns
            .set_txt(&challenge.record_name, &[challenge.record_value.as_str()])
            .await;
        let verified = orgs
            .verify_domain(bearer(
                org::VerifyDomainRequest {
                    domain_id: created.id.clone(),
                },
                &owner_token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            verified.domain.unwrap().state,
            org::DomainState::Verified as i32
        );
        // Identity must have applied the verification before SCIM checks userNames.
        let identity = self
            .started
            .as_ref()
            .unwrap()
            .opened
            .identity
            .clone()
            .unwrap();
        identity
            .organization_events()
            .wait_for(verified.revision, Duration::from_secs(10))
            .await
            .unwrap();
        let (token, token_id) = self.scim_token(&org_id, &owner_token, false).await;
        Tenant {
            org_id,
            owner_token,
            token,
            token_id,
        }
    }

    /// A new SCIM token of `org_id`: (secret, id).
    pub async fn scim_token(
        &self,
        org_id: &str,
        owner_token: &str,
        allow_unverified: bool,
    ) -> (String, String) {
        let created = self
            .identity()
            .create_scim_token(bearer(
                identity::CreateScimTokenRequest {
                    organization_id: org_id.into(),
                    scim_token: Some(identity::ScimToken {
                        display_name: "IdP".into(),
                        allow_unverified_user_names: allow_unverified,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                owner_token,
            ))
            .await
            .unwrap()
            .into_inner();
        (created.token, created.scim_token.unwrap().id)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.started.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s.wait()).await;
        }
    }
}

/// An organization set up for SCIM.
pub struct Tenant {
    pub org_id: String,
    pub owner_token: String,
    pub token: String,
    pub token_id: String,
}

/// The token of the newest verification link mailed to `to`.
fn verification_token(dir: &Path, to: &str) -> String {
    for _ in 0..100 {
        let mut newest: Option<(std::time::SystemTime, String)> = None;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if !text.contains(&format!("To: {to}")) && !text.contains(&format!("<{to}>")) {
                continue;
            }
            let Some(i) = text.find("verify-email?token=") else {
                continue;
            };
            let rest = &text[i + "verify-email?token=".len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == ')' || c == ';')
                .unwrap_or(rest.len());
            let time = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(t, _)| time >= *t) {
                newest = Some((time, rest[..end].to_owned()));
            }
        }
        if let Some((_, token)) = newest {
            return token;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no verification mail to {to}");
}
