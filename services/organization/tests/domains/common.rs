//! The rig of the domain tests: the organization service with its DNS checks pointed at the
//! in-process test DNS server (zones `test` and `example`), an operator-added consumer mail
//! domain, and helpers for the calls the tests repeat.

use orgplane_platform::error::reason_of;
use orgplane_proto::organization::v1::*;
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{Backend, Rig};
use orgplane_oracles::dns::TestDns;

/// The domain an operator adds to the consumer list in these tests.
pub const OPERATOR_CONSUMER_DOMAIN: &str = "freemail-operator.test";

pub struct Env {
    pub rig: Rig,
    pub dns: TestDns,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

/// The rig on `backend` with checks every time (interval 0), or `None` without PostgreSQL.
pub async fn env(backend: Backend) -> Option<Env> {
    env_with(backend, 0).await
}

/// The rig with a check interval of `interval_secs`.
pub async fn env_with(backend: Backend, interval_secs: u64) -> Option<Env> {
    env_asking(backend, interval_secs, None).await
}

/// The rig with a check interval of `interval_secs`, its checks asking `server` instead of the
/// test DNS server when given.
pub async fn env_asking(
    backend: Backend,
    interval_secs: u64,
    server: Option<std::net::SocketAddr>,
) -> Option<Env> {
    let dns = TestDns::start(&["test", "example"]).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("consumer.txt");
    std::fs::write(
        &list,
        format!("# added by the operator\n{OPERATOR_CONSUMER_DOMAIN}  # a free mail service\n\n"),
    )
    .unwrap();
    let addr = server.unwrap_or(dns.addr);
    let rig = Rig::with_config(
        backend,
        |_| {},
        |c| {
            c.dns_servers = vec![addr];
            c.dns_timeout_ms = if server.is_some() { 300 } else { 3000 };
            c.domain_check_interval_secs = interval_secs;
            c.consumer_mail_domains_file = Some(list.clone());
        },
    )
    .await?;
    Some(Env {
        rig,
        dns,
        _dir: dir,
    })
}

pub fn expect_err<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: Code,
    reason: &str,
) -> tonic::Status {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    assert_eq!(reason_of(&err).as_deref(), Some(reason), "{err:?}");
    err
}

pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    })
}

pub async fn create_org(rig: &Rig, owner: &str, name: &str) -> Organization {
    rig.client()
        .create_organization(rig.as_user(
            owner,
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
}

pub fn create_req(org: &str, name: &str, policy: DomainPolicy) -> CreateDomainRequest {
    CreateDomainRequest {
        organization_id: org.into(),
        domain: Some(Domain {
            domain_name: name.into(),
            policy: policy as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

pub async fn create_domain(
    rig: &Rig,
    owner: &str,
    org: &str,
    name: &str,
    policy: DomainPolicy,
) -> Domain {
    rig.client()
        .create_domain(rig.as_user(owner, create_req(org, name, policy)))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap()
}

/// Publishes `domain`'s challenge value (and `others`) at its record name.
pub async fn publish(env: &Env, d: &Domain, others: &[&str]) {
    let c = d.challenge.as_ref().unwrap();
    let mut values = vec![c.record_value.as_str()];
    values.extend_from_slice(others);
    env.dns.set_txt(&c.record_name, &values).await;
}

pub async fn verify(
    rig: &Rig,
    caller: &str,
    id: &str,
) -> Result<VerifyDomainResponse, tonic::Status> {
    rig.client()
        .verify_domain(rig.as_user(
            caller,
            VerifyDomainRequest {
                domain_id: id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn verified(
    env: &Env,
    owner: &str,
    org: &str,
    name: &str,
    policy: DomainPolicy,
) -> Domain {
    let d = create_domain(env, owner, org, name, policy).await;
    publish(env, &d, &[]).await;
    let v = verify(env, owner, &d.id).await.unwrap();
    let d = v.domain.unwrap();
    assert_eq!(d.state(), DomainState::Verified, "{d:?}");
    d
}

pub async fn update_policy(
    rig: &Rig,
    owner: &str,
    d: &Domain,
    policy: DomainPolicy,
) -> Result<UpdateDomainResponse, tonic::Status> {
    rig.client()
        .update_domain(rig.as_user(
            owner,
            UpdateDomainRequest {
                domain: Some(Domain {
                    id: d.id.clone(),
                    policy: policy as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["policy"]),
                etag: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// A string field of an audit image.
pub fn field(s: &Option<prost_types::Struct>, key: &str) -> Option<String> {
    match s.as_ref()?.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(v) => Some(v.clone()),
        prost_types::value::Kind::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Invites `user` (`<user>@example.com`) as USER and accepts; returns the accept revision.
pub async fn add_user(rig: &Rig, org: &str, inviter: &str, user: &str) -> i64 {
    let mut c = rig.client();
    let inv = c
        .create_invite(rig.as_user(inviter, invite_req(org, &format!("{user}@example.com"))))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    c.accept_invite(rig.as_user(user, AcceptInviteRequest { invite_id: inv.id }))
        .await
        .unwrap()
        .into_inner()
        .revision
}

pub fn invite_req(org: &str, email: &str) -> CreateInviteRequest {
    CreateInviteRequest {
        organization_id: org.into(),
        invite: Some(Invite {
            email: email.into(),
            role: OrgRole::User as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}
