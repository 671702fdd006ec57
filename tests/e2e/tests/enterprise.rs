//! Enterprise sign-in, end to end (rules ORG-14, ID-13): the real `orgplane` binary as four
//! processes on SQLite and as one on PostgreSQL, a real DNS server (hickory, in this process) and
//! a real OpenID provider (oidc-provider, a child process).
//!
//! Olivia owns Acme. She registers `acme.test`; the first check finds no record and says so;
//! she publishes the TXT record and the next check verifies the domain. She connects Acme to the
//! company's OpenID provider for that domain, with just-in-time provisioning and SSO enforced.
//! Eve, a new employee who has never used the product, signs in through the provider and lands
//! as a USER member of Acme; her second sign-in finds the same account. Passwords are refused
//! for the domain, whether or not the account exists. The control arm runs the same story
//! without enforcement on the connection: then the password sign-in is not refused, so the
//! check can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use orgplane_oracles::dns::TestDns;
use orgplane_oracles::oidc::{Account, OidcProvider, follow_authorization};
use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use support::cluster::{Cluster, Layout};
use support::people;
use tonic::Code;

use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;

const PASSWORD: &str = "correct horse battery staple";
const OWNER: &str = "olivia@acme.test";
const EMPLOYEE: &str = "eve@acme.test";
const REDIRECT: &str = "https://app.acme.test/sso/callback";

#[tokio::test]
async fn id_13_org_14_a_new_employee_signs_in_through_the_idp_and_lands_as_a_member_four_processes_on_sqlite()
 {
    let refused = run(Layout::FourProcesses, false, true).await.unwrap();
    assert!(refused);
}

#[tokio::test]
async fn id_13_org_14_a_new_employee_signs_in_through_the_idp_and_lands_as_a_member_all_in_one_on_postgres()
 {
    let Some(refused) = run(Layout::All, true, true).await else {
        return;
    };
    assert!(refused);
}

/// The control arm: the same story with a connection that does not enforce SSO; the
/// password sign-in for the domain is then not refused with `SSO_REQUIRED`.
#[tokio::test]
async fn id_13_control_arm_without_enforcement_passwords_are_not_refused() {
    let refused = run(Layout::FourProcesses, false, false).await.unwrap();
    assert!(
        !refused,
        "the control arm must see the password sign-in pass the SSO check"
    );
}

/// Runs the story; answers whether a password sign-in for the domain was refused with
/// `SSO_REQUIRED` (`None`: PostgreSQL is not set up).
async fn run(layout: Layout, postgres: bool, enforced: bool) -> Option<bool> {
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
    let dns = TestDns::start(&["acme.test"]).await;
    let idp = OidcProvider::start(REDIRECT).await;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("ORGPLANE_ORGANIZATION_DNS_SERVER", dns.addr.to_string()),
        (
            "ORGPLANE_ORGANIZATION_DOMAIN_CHECK_INTERVAL_SECS",
            "0".to_owned(),
        ),
        ("ORGPLANE_SSO_ALLOW_HTTP_ISSUERS", "true".to_owned()),
    ];
    let cluster = Cluster::start(layout, dir.path(), urls, env).await;
    let mut identity = IdentityServiceClient::new(cluster.channel("identity"));
    let mut orgs = OrganizationServiceClient::new(cluster.channel("organization"));

    // Olivia signs up and creates Acme.
    let (owner_token, _) = people::signed_up_user(&cluster, OWNER, PASSWORD).await;
    let acme = people::create_organization(&cluster, &owner_token, "Acme").await;

    // She registers the domain and checks it before publishing the record: not verified, and
    // the check says what it found.
    let domain = orgs
        .create_domain(bearer(
            org::CreateDomainRequest {
                organization_id: acme.clone(),
                domain: Some(org::Domain {
                    domain_name: "ACME.test".into(),
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
    assert_eq!(domain.domain_name, "acme.test");
    assert_eq!(domain.state, org::DomainState::Pending as i32);
    let challenge = domain.challenge.clone().unwrap();
    assert_eq!(challenge.record_name, "_orgplane-challenge.acme.test");
    let verify = || {
        bearer(
            org::VerifyDomainRequest {
                domain_id: domain.id.clone(),
            },
            &owner_token,
        )
    };
    let first = orgs.verify_domain(verify()).await.unwrap().into_inner();
    let failed = first.domain.unwrap();
    assert_eq!(failed.state, org::DomainState::Failed as i32);
    let check = failed.last_check.unwrap();
    assert_eq!(check.outcome, org::DomainCheckOutcome::NotFound as i32);
    assert!(!check.detail.is_empty());

    // She publishes the record: the next check verifies the domain.
    dns.set_txt(&challenge.record_name, &[challenge.record_value.as_str()])
        .await;
    let second = orgs.verify_domain(verify()).await.unwrap().into_inner();
    let verified = second.domain.unwrap();
    assert_eq!(verified.state, org::DomainState::Verified as i32);
    assert!(second.revision > 0);

    // She connects Acme to the company's provider for the domain (identity must have applied
    // the verification first: the revision says when).
    let mut create = bearer(
        identity::CreateSsoConnectionRequest {
            organization_id: acme.clone(),
            sso_connection: Some(identity::SsoConnection {
                display_name: "Acme IdP".into(),
                oidc: Some(identity::OidcSettings {
                    issuer: idp.issuer.clone(),
                    client_id: idp.client_id.clone(),
                    client_secret: idp.client_secret.clone(),
                    redirect_uris: vec![REDIRECT.into()],
                    ..Default::default()
                }),
                domains: vec!["acme.test".into()],
                enforced,
                jit_provisioning: true,
                default_role: org::OrgRole::User as i32,
                enabled: true,
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &owner_token,
    );
    create.metadata_mut().insert(
        "x-min-organization-revision",
        second.revision.to_string().parse().unwrap(),
    );
    let connection = identity
        .create_sso_connection(create)
        .await
        .unwrap()
        .into_inner()
        .sso_connection
        .unwrap();
    let tested = identity
        .test_sso_connection(bearer(
            identity::TestSsoConnectionRequest {
                sso_connection_id: connection.id.clone(),
            },
            &owner_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(tested.ok, "{:?}", tested.checks);

    // Eve exists only at the provider. She signs in through it and lands in Acme as a USER.
    idp.upsert_account(&Account::new("eve-0001", EMPLOYEE))
        .await;
    let first_sign_in = sso_sign_in(&mut identity).await;
    assert!(first_sign_in.user_created);
    assert!(first_sign_in.membership_created);
    let eve = first_sign_in.user.unwrap();
    assert_eq!(eve.email, EMPLOYEE);
    assert!(eve.email_verified);
    let eve_token = first_sign_in.tokens.unwrap().access_token;
    let member = orgs
        .get_member(bearer(
            org::GetMemberRequest {
                organization_id: acme.clone(),
                user_id: eve.id.clone(),
            },
            &owner_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(member.role, org::OrgRole::User as i32);
    // Her own token opens Acme.
    orgs.get_organization(bearer(
        org::GetOrganizationRequest {
            organization_id: acme.clone(),
        },
        &eve_token,
    ))
    .await
    .unwrap();

    // The next sign-in finds the same account and adds nothing.
    let again = sso_sign_in(&mut identity).await;
    assert!(!again.user_created);
    assert!(!again.membership_created);
    assert_eq!(again.user.unwrap().id, eve.id);

    // Passwords for the domain: refused before any password check, for Eve (who has none) and
    // for an address with no account alike.
    let mut refused = true;
    for email in [EMPLOYEE, "nobody@acme.test"] {
        let answer = identity
            .login(identity::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(answer.code(), Code::Unauthenticated, "{email}");
        refused &= reason_of(&answer).as_deref() == Some("SSO_REQUIRED");
    }
    cluster.stop().await;
    Some(refused)
}

/// Eve's browser through StartSsoLogin, the provider and CompleteSsoLogin.
async fn sso_sign_in(
    identity: &mut IdentityServiceClient<tonic::transport::Channel>,
) -> identity::CompleteSsoLoginResponse {
    let started = identity
        .start_sso_login(identity::StartSsoLoginRequest {
            email: EMPLOYEE.into(),
            redirect_uri: REDIRECT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (code, state) = follow_authorization(&started.authorization_url)
        .await
        .unwrap()
        .code_and_state();
    assert_eq!(state, started.state);
    identity
        .complete_sso_login(identity::CompleteSsoLoginRequest {
            state,
            code,
            browser_binding: started.browser_binding,
        })
        .await
        .unwrap()
        .into_inner()
}
