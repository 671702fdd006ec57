//! The people of the stories: signing up with a verified address and creating an organization,
//! the steps every story starts with.

use orgplane_platform::testkit::bearer;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;

use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;

use super::cluster::Cluster;
use super::mail;

/// Signs `email` up (a business account), verifies the address from the mailed link and signs in
/// with `password`: the access token and the user's id.
pub async fn signed_up_user(cluster: &Cluster, email: &str, password: &str) -> (String, String) {
    let mut identity = IdentityServiceClient::new(cluster.channel("identity"));
    identity
        .sign_up(identity::SignUpRequest {
            email: email.into(),
            password: password.into(),
            display_name: "Olivia Owner".into(),
            account_type: identity::AccountType::Business as i32,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let token = mail::verification_token(&cluster.mail_dir(), email);
    identity
        .verify_email(identity::VerifyEmailRequest { token })
        .await
        .unwrap();
    let login = identity
        .login(identity::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (login.tokens.unwrap().access_token, login.user.unwrap().id)
}

/// Creates a company named `name` as the holder of `token`: its id.
pub async fn create_organization(cluster: &Cluster, token: &str, name: &str) -> String {
    OrganizationServiceClient::new(cluster.channel("organization"))
        .create_organization(bearer(
            org::CreateOrganizationRequest {
                organization: Some(org::Organization {
                    name: name.into(),
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
