//! SSO connections, their enforcement and the verified-domain rules of sign-up (rules ID-13,
//! ORG-14), over real gRPC. Domain facts reach identity as organization events from the rig's
//! producer (`DomainChanged`), as they do from the organization service. The organization
//! service's internal RPCs (LookupDomain, ProvisionMember) are answered by
//! [`FakeOrganization`], a real gRPC service on the rig's server that records every call.

use super::*;

pub(super) use super::fake_organization::FakeOrganization;
use orgplane_proto::organization::v1::{DomainPolicy, DomainState};
use std::collections::HashMap;

// ----- helpers ----------------------------------------------------------------------------------

/// A rig with http issuers allowed (the providers of these tests listen on loopback) and the
/// fake organization service.
pub(super) async fn sso_rig_on(db: TestDb) -> (Rig, FakeOrganization) {
    let fake = FakeOrganization::default();
    let rig = Rig::start_full(
        db,
        |c| c.sso_allow_http_issuers = true,
        Workspaces::Absent,
        Some(fake.clone()),
    )
    .await;
    (rig, fake)
}

pub(super) async fn sso_rig() -> (Rig, FakeOrganization) {
    sso_rig_on(TestDb::sqlite()).await
}

/// Publishes that `org` holds `domain` in `state` with `policy`.
pub(super) async fn domain_event(
    rig: &Rig,
    org: &str,
    domain: &str,
    state: DomainState,
    policy: DomainPolicy,
) {
    rig.org_event(Payload::DomainChanged(DomainChanged {
        domain_id: format!("dom_{org}_{domain}"),
        organization_id: org.into(),
        domain_name: domain.into(),
        state: state as i32,
        policy: policy as i32,
    }))
    .await;
}

/// The owner's address of `org` (a domain of its own).
pub(super) fn owner_email(org: &str) -> String {
    format!("owner@{}.owners.test", org.replace('_', "-"))
}

/// An organization `org` whose owner (signed in now) holds `domain` VERIFIED; the owner's token.
pub(super) async fn org_with_domain(rig: &Rig, org: &str, domain: &str) -> (User, String) {
    let (owner, token, _) = rig.user(&owner_email(org)).await;
    rig.create_org(org, &owner.id).await;
    domain_event(rig, org, domain, DomainState::Verified, DomainPolicy::None).await;
    (owner, token)
}

/// A connection spec for `issuer` serving `domains`.
pub(super) fn spec(issuer: &str, client_id: &str, secret: &str, domains: &[&str]) -> SsoConnection {
    SsoConnection {
        display_name: "Corporate IdP".into(),
        oidc: Some(OidcSettings {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: secret.into(),
            redirect_uris: vec![REDIRECT_URI.into()],
            ..Default::default()
        }),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        enabled: true,
        ..Default::default()
    }
}

/// The redirect URI the product hosts in these tests.
pub(super) const REDIRECT_URI: &str = "http://127.0.0.1:9/sso/callback";

pub(super) async fn create_connection(
    rig: &Rig,
    token: &str,
    org: &str,
    connection: SsoConnection,
) -> Result<SsoConnection, tonic::Status> {
    rig.client()
        .create_sso_connection(bearer(
            CreateSsoConnectionRequest {
                organization_id: org.into(),
                sso_connection: Some(connection),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().sso_connection.unwrap())
}

fn metadata_of(status: &tonic::Status) -> HashMap<String, String> {
    status.get_details_error_info().unwrap().metadata
}

fn violations_of(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

// ----- connections ------------------------------------------------------------------------------

async fn id_13_connection_flow(rig: &Rig) {
    let (owner, token) = org_with_domain(rig, "org_a", "acme.test").await;
    // An unverified domain is refused with its name.
    let err = create_connection(
        rig,
        &token,
        "org_a",
        spec(
            "http://127.0.0.1:1",
            "client-a",
            "s3cret-value-of-the-client",
            &["other.test"],
        ),
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "EMAIL_DOMAIN_NOT_VERIFIED");
    assert_eq!(metadata_of(&err)["domain_name"], "other.test");
    // A domain another organization verified is not this one's.
    rig.create_org("org_b", "user_other_owner").await;
    domain_event(
        rig,
        "org_b",
        "beta.test",
        DomainState::Verified,
        DomainPolicy::None,
    )
    .await;
    let err = create_connection(
        rig,
        &token,
        "org_a",
        spec("http://127.0.0.1:1", "client-a", "x", &["beta.test"]),
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "EMAIL_DOMAIN_NOT_VERIFIED");
    // Bad fields come back together, each named.
    let mut bad = spec("http://127.0.0.1:1", "", "x", &["acme.test"]);
    let oidc = bad.oidc.as_mut().unwrap();
    oidc.allowed_algorithms = vec!["HS256".into(), "none".into()];
    oidc.scopes = vec!["email".into()];
    oidc.redirect_uris = vec![];
    bad.default_role = OrgRole::Owner as i32;
    let err = create_connection(rig, &token, "org_a", bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let fields = violations_of(&err);
    for f in [
        "sso_connection.oidc.client_id",
        "sso_connection.oidc.allowed_algorithms",
        "sso_connection.oidc.scopes",
        "sso_connection.oidc.redirect_uris",
        "sso_connection.default_role",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    // Created: defaults applied, the secret never answered.
    let secret = "s3cret-value-of-the-client-a";
    let created = create_connection(
        rig,
        &token,
        "org_a",
        spec("http://127.0.0.1:1", "client-a", secret, &["ACME.test"]),
    )
    .await
    .unwrap();
    assert!(created.id.starts_with("ssoc_"));
    // A retry with the same request id answers the same connection.
    let keyed = |id: &str| CreateSsoConnectionRequest {
        organization_id: "org_a".into(),
        sso_connection: Some(spec("http://127.0.0.1:1", "client-k", "x", &[])),
        request_id: id.into(),
    };
    let rid = uuid::Uuid::new_v4().to_string();
    let once = rig
        .client()
        .create_sso_connection(bearer(keyed(&rid), &token))
        .await
        .unwrap();
    let twice = rig
        .client()
        .create_sso_connection(bearer(keyed(&rid), &token))
        .await
        .unwrap();
    let keyed_id = once.into_inner().sso_connection.unwrap().id;
    assert_eq!(twice.into_inner().sso_connection.unwrap().id, keyed_id);
    rig.client()
        .delete_sso_connection(bearer(
            DeleteSsoConnectionRequest {
                sso_connection_id: keyed_id,
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    let oidc = created.oidc.clone().unwrap();
    assert!(oidc.client_secret.is_empty() && oidc.client_secret_set);
    assert_eq!(oidc.scopes, vec!["openid", "email", "profile"]);
    assert_eq!(oidc.allowed_algorithms, vec!["RS256"]);
    assert_eq!(created.domains, vec!["acme.test"]);
    assert_eq!(created.default_role, OrgRole::User as i32);
    assert_eq!(created.etag, "v1");
    // Get and List for OWNER/ADMIN; a USER is refused, an outsider sees nothing.
    let got = rig
        .client()
        .get_sso_connection(bearer(
            GetSsoConnectionRequest {
                sso_connection_id: created.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sso_connection
        .unwrap();
    assert_eq!(got, created);
    let (member, member_token, _) = rig.user("member@elsewhere.test").await;
    rig.add_member("org_a", &member.id, OrgRole::User).await;
    let err = rig
        .client()
        .get_sso_connection(bearer(
            GetSsoConnectionRequest {
                sso_connection_id: created.id.clone(),
            },
            &member_token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let err = create_connection(
        rig,
        &member_token,
        "org_a",
        spec("http://127.0.0.1:1", "c", "x", &["acme.test"]),
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let (_, outsider, _) = rig.user("outsider@elsewhere.test").await;
    let err = rig
        .client()
        .get_sso_connection(bearer(
            GetSsoConnectionRequest {
                sso_connection_id: created.id.clone(),
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = rig
        .client()
        .list_sso_connections(bearer(
            ListSsoConnectionsRequest {
                organization_id: "org_a".into(),
                page_size: 0,
                page_token: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sso_connections, vec![created.clone()]);
    // Update by mask with the etag; a stale etag is ABORTED; an empty secret keeps the stored one.
    let mut patch = created.clone();
    patch.display_name = "Renamed".into();
    patch.enforced = true;
    patch.oidc.as_mut().unwrap().client_secret = String::new();
    let updated = rig
        .client()
        .update_sso_connection(bearer(
            UpdateSsoConnectionRequest {
                sso_connection: Some(patch.clone()),
                update_mask: mask(&["display_name", "enforced", "oidc"]),
                etag: created.etag.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sso_connection
        .unwrap();
    assert_eq!(updated.display_name, "Renamed");
    assert!(updated.enforced && updated.oidc.as_ref().unwrap().client_secret_set);
    assert_eq!(updated.etag, "v2");
    let err = rig
        .client()
        .update_sso_connection(bearer(
            UpdateSsoConnectionRequest {
                sso_connection: Some(patch.clone()),
                update_mask: mask(&["display_name"]),
                etag: created.etag.clone(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = rig
        .client()
        .update_sso_connection(bearer(
            UpdateSsoConnectionRequest {
                sso_connection: Some(patch),
                update_mask: mask(&["organization_id"]),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The secret is sealed: absent from the database in clear.
    let rows = rig
        .db()
        .query_all_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "SELECT client_secret_sealed FROM sso_connections",
        ))
        .await
        .unwrap();
    for row in rows {
        let sealed: Option<String> = row.try_get("", "client_secret_sealed").unwrap();
        let sealed = sealed.expect("a sealed secret");
        assert!(!sealed.contains(secret) && !sealed.contains("s3cret"));
    }
    // Audit records name the connection, never the secret.
    let audit = rig
        .db()
        .query_all_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "SELECT action, resource_id FROM audit_log WHERE action LIKE 'sso_connection.%'",
        ))
        .await
        .unwrap();
    assert!(audit.len() >= 2, "create and update audited");
    // Delete with a stale etag is refused, then goes.
    let err = rig
        .client()
        .delete_sso_connection(bearer(
            DeleteSsoConnectionRequest {
                sso_connection_id: created.id.clone(),
                etag: "v1".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    rig.client()
        .delete_sso_connection(bearer(
            DeleteSsoConnectionRequest {
                sso_connection_id: created.id.clone(),
                etag: "v2".into(),
            },
            &token,
        ))
        .await
        .unwrap();
    let err = rig
        .client()
        .get_sso_connection(bearer(
            GetSsoConnectionRequest {
                sso_connection_id: created.id,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let _ = owner;
}

#[tokio::test]
async fn id_13_connections_validate_need_verified_domains_seal_the_secret_and_use_etags() {
    let (rig, _) = sso_rig().await;
    id_13_connection_flow(&rig).await;
}

#[tokio::test]
async fn id_13_connections_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let (rig, _) = sso_rig_on(db).await;
    id_13_connection_flow(&rig).await;
}

/// Without `--sso-allow-http-issuers`, issuers must be https.
#[tokio::test]
async fn id_13_issuers_are_https_unless_the_deployment_allows_http() {
    let rig = Rig::sqlite().await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    let err = create_connection(
        &rig,
        &token,
        "org_a",
        spec("http://127.0.0.1:1", "client", "x", &["acme.test"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(violations_of(&err).contains(&"sso_connection.oidc.issuer".to_owned()));
    create_connection(
        &rig,
        &token,
        "org_a",
        spec("https://idp.example.com", "client", "x", &["acme.test"]),
    )
    .await
    .unwrap();
}

/// TestSsoConnection reports problems as answers; StartSsoLogin refuses a provider whose
/// discovery names another issuer.
#[tokio::test]
async fn id_13_test_sso_connection_says_what_is_wrong() {
    let (rig, _) = sso_rig().await;
    let idp = orgplane_oracles::oidc::MockProvider::start(REDIRECT_URI).await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    let mut c = spec(
        &idp.issuer,
        &idp.client_id,
        &idp.client_secret,
        &["acme.test"],
    );
    c.oidc.as_mut().unwrap().allowed_algorithms = vec!["PS384".into()];
    let conn = create_connection(&rig, &token, "org_a", c).await.unwrap();
    idp.override_discovery(serde_json::json!({ "issuer": "https://elsewhere.test" }))
        .await;
    domain_event(
        &rig,
        "org_a",
        "acme.test",
        DomainState::Failed,
        DomainPolicy::None,
    )
    .await;
    let answer = rig
        .client()
        .test_sso_connection(bearer(
            TestSsoConnectionRequest {
                sso_connection_id: conn.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.ok);
    let detail = |name: &str| {
        let c = answer.checks.iter().find(|c| c.name == name).unwrap();
        (c.ok, c.detail.clone())
    };
    assert!(detail("discovery").0);
    let (ok, issuer) = detail("issuer");
    assert!(!ok);
    assert_eq!(
        issuer,
        format!(
            "issuer in discovery is \"https://elsewhere.test\", expected {:?}",
            idp.issuer
        )
    );
    assert!(!detail("algorithms").0);
    assert!(
        detail("jwks").1.contains("no key for PS384"),
        "{:?}",
        detail("jwks")
    );
    assert_eq!(
        detail("domains"),
        (false, "not VERIFIED by the organization: acme.test".into())
    );
    let err = rig
        .client()
        .start_sso_login(StartSsoLoginRequest {
            sso_connection_id: conn.id,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unavailable, "SSO_PROVIDER_UNAVAILABLE");
}
