//! SSO's pure rules (rule ID-13): what a valid connection is (issuer, scopes, algorithms,
//! redirect URIs, domains, default role), which ID-token `amr` values name a second factor, and
//! the refusals of SSO sign-in and of its enforcement, each reason named once.

use orgplane_platform::ApiError;
use orgplane_proto::organization::v1::OrgRole;

use super::validation::Violations;
use orgplane_platform::error::Reason;

/// The `amr` value of a session started through SSO (with `ext`, RFC 8176's federated method).
pub const SSO_AMR: &str = "sso";
/// Scopes asked for when a connection names none.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
/// The ID-token algorithm accepted when a connection names none.
pub const DEFAULT_ALGORITHM: &str = "RS256";
/// The JWS algorithms a connection may accept; `none` and the HMAC algorithms never.
pub const ALLOWED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// ID-token `amr` values that name a second factor (RFC 8176).
pub const SECOND_FACTOR_AMR: [&str; 7] = ["mfa", "otp", "hwk", "swk", "fpt", "face", "sc"];
/// How long a sign-in attempt stays open (10 minutes).
pub const ATTEMPT_TTL_MS: i64 = 10 * 60 * 1000;
/// Most domains, scopes, algorithms or redirect URIs in one connection.
const MAX_ITEMS: usize = 50;
/// Longest URL or client id accepted.
const MAX_URL: usize = 2048;

/// Whether an ID token's `amr` names a second factor.
pub fn names_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| SECOND_FACTOR_AMR.contains(&m.as_str()))
}

/// An issuer URL: `https://` (or `http://` when the deployment allows it), a host, no query or
/// fragment, no user info.
pub fn check_issuer(field: &str, issuer: &str, allow_http: bool) -> Result<(), ApiError> {
    if issuer.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    check_url(field, issuer, allow_http)
}

fn check_url(field: &str, raw: &str, allow_http: bool) -> Result<(), ApiError> {
    if raw.len() > MAX_URL {
        return Err(ApiError::invalid_argument(field, "too long"));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| ApiError::invalid_argument(field, format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => {
            return Err(ApiError::invalid_argument(
                field,
                "must start with https://",
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_argument(field, "must name a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid_argument(
            field,
            "must have no query or fragment",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid_argument(field, "must have no user info"));
    }
    Ok(())
}

/// A redirect URI: an absolute `https` URL (or `http` on loopback hosts, as RFC 8252 allows,
/// or anywhere when the deployment allows http issuers), no fragment.
pub fn check_redirect_uri(field: &str, raw: &str, allow_http: bool) -> Result<(), ApiError> {
    if raw.len() > MAX_URL {
        return Err(ApiError::invalid_argument(field, "too long"));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| ApiError::invalid_argument(field, format!("not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && (loopback || allow_http));
    if !scheme_ok {
        return Err(ApiError::invalid_argument(
            field,
            "must be https:// (http only on loopback)",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::invalid_argument(field, "must have no fragment"));
    }
    Ok(())
}

/// Scopes (each a printable token, `openid` among them); empty means the default.
pub fn check_scopes(v: &mut Violations, scopes: &[String]) -> Vec<String> {
    if scopes.is_empty() {
        return DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    }
    if scopes.len() > MAX_ITEMS {
        v.add("sso_connection.oidc.scopes", "too many scopes");
    }
    let bad = scopes.iter().any(|s| {
        s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
    });
    if bad {
        v.add(
            "sso_connection.oidc.scopes",
            "each scope is a printable token",
        );
    }
    if !scopes.iter().any(|s| s == "openid") {
        v.add("sso_connection.oidc.scopes", "must include openid");
    }
    dedup(scopes)
}

/// Algorithms (each one of [`ALLOWED_ALGORITHMS`]); empty means RS256.
pub fn check_algorithms(v: &mut Violations, algorithms: &[String]) -> Vec<String> {
    if algorithms.is_empty() {
        return vec![DEFAULT_ALGORITHM.to_owned()];
    }
    for a in algorithms {
        if !ALLOWED_ALGORITHMS.contains(&a.as_str()) {
            let why = if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS")
            {
                format!("{a:?} is refused: only asymmetric signatures are accepted")
            } else {
                format!("{a:?} is not one of {}", ALLOWED_ALGORITHMS.join(", "))
            };
            v.add("sso_connection.oidc.allowed_algorithms", &why);
        }
    }
    dedup(algorithms)
}

/// Redirect URIs: at least one, each valid.
pub fn check_redirect_uris(v: &mut Violations, uris: &[String], allow_http: bool) -> Vec<String> {
    if uris.is_empty() {
        v.add(
            "sso_connection.oidc.redirect_uris",
            "at least one is required",
        );
    }
    if uris.len() > MAX_ITEMS {
        v.add("sso_connection.oidc.redirect_uris", "too many");
    }
    for u in uris {
        v.check(check_redirect_uri(
            "sso_connection.oidc.redirect_uris",
            u,
            allow_http,
        ));
    }
    dedup(uris)
}

/// Domains in their canonical form (IDNA ASCII lower case), without duplicates.
pub fn check_domains(v: &mut Violations, domains: &[String]) -> Vec<String> {
    if domains.len() > MAX_ITEMS {
        v.add("sso_connection.domains", "too many domains");
    }
    let canonical: Vec<String> = domains
        .iter()
        .filter_map(|d| {
            v.check(orgplane_platform::email::canonical_domain(
                "sso_connection.domains",
                d,
            ))
        })
        .collect();
    dedup(&canonical)
}

/// The role of provisioned members: any role but OWNER; unspecified means USER.
pub fn check_default_role(v: &mut Violations, role: i32) -> OrgRole {
    match OrgRole::try_from(role) {
        Ok(OrgRole::Unspecified) => OrgRole::User,
        Ok(OrgRole::Owner) => {
            v.add(
                "sso_connection.default_role",
                "OWNER cannot be provisioned; choose another role",
            );
            OrgRole::User
        }
        Ok(r) => r,
        Err(_) => {
            v.add("sso_connection.default_role", "unknown role");
            OrgRole::User
        }
    }
}

/// A client id: 1–2048 printable characters.
pub fn check_client_id(v: &mut Violations, client_id: &str) {
    if client_id.trim().is_empty() {
        v.add("sso_connection.oidc.client_id", "required");
    } else if client_id.len() > MAX_URL || client_id.chars().any(char::is_control) {
        v.add(
            "sso_connection.oidc.client_id",
            "at most 2048 printable characters",
        );
    }
}

/// A client secret: at most 4096 bytes, no control characters (empty: none).
pub fn check_client_secret(v: &mut Violations, secret: &str) {
    if secret.len() > 4096 || secret.chars().any(char::is_control) {
        v.add(
            "sso_connection.oidc.client_secret",
            "at most 4096 bytes, no control characters",
        );
    }
}

fn dedup(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// A refusal of SSO (rule ID-13) or of its enforcement.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SsoError {
    /// A connection domain the organization does not hold VERIFIED.
    #[error("the organization has not verified the domain {0}; verify it first")]
    DomainNotVerified(String),
    /// No enabled connection serves the address, organization or id.
    #[error("no enabled SSO connection serves this sign-in")]
    ConnectionNotFound,
    /// The organization has several enabled connections.
    #[error("the organization has several SSO connections; name one with sso_connection_id")]
    ConnectionAmbiguous,
    /// The provider did not answer or answered something unusable.
    #[error("the identity provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// Unknown, used or expired `state`, or a wrong browser binding.
    #[error("the sign-in attempt is unknown, used or expired; start again")]
    StateInvalid,
    /// The provider refused the code.
    #[error("the identity provider refused the authorization code: {0}")]
    CodeRejected(String),
    /// The ID token failed verification; the detail is logged, not answered.
    #[error("the identity provider's ID token is not valid")]
    AssertionInvalid,
    /// An account with the address exists and may not be linked.
    #[error(
        "an account with this address exists and the identity provider cannot be trusted to link it"
    )]
    AccountNotLinkable,
    /// The person is not a member and the connection does not provision.
    #[error("you are not a member of the organization and the connection does not add members")]
    ProvisioningDisabled,
    /// Password sign-in (or sign-up) for an address of an enforced domain.
    #[error("this address signs in through single sign-on (StartSsoLogin)")]
    SsoRequiredLogin,
    /// Sign-up for an address of an enforced domain.
    #[error("this address signs up through single sign-on (StartSsoLogin)")]
    SsoRequiredSignUp,
    /// Sign-up for an address of a RESTRICTED domain without an invite.
    #[error("addresses of {0} join only by invitation of the organization that holds it")]
    DomainRestricted(String),
    /// The connection's organization does not allow SSO sign-in (rule ORG-16).
    #[error("the organization's security policy does not allow signing in through single sign-on")]
    SsoNotAllowed(String),
}

impl From<SsoError> for ApiError {
    fn from(e: SsoError) -> ApiError {
        let message = e.to_string();
        match e {
            SsoError::DomainNotVerified(d) => {
                ApiError::failed_precondition(Reason::EmailDomainNotVerified, &d, message)
                    .with_metadata("domain_name", d)
            }
            SsoError::ConnectionNotFound => ApiError::new(
                orgplane_platform::error::Code::NotFound,
                Reason::SsoConnectionNotFound,
                message,
            ),
            SsoError::ConnectionAmbiguous => ApiError::failed_precondition(
                Reason::SsoConnectionAmbiguous,
                "sso_connection",
                message,
            ),
            SsoError::ProviderUnavailable(_) => {
                ApiError::unavailable(Reason::SsoProviderUnavailable, message)
                    .retry_after(std::time::Duration::from_secs(2))
            }
            SsoError::StateInvalid => ApiError::unauthenticated(Reason::SsoStateInvalid, message),
            SsoError::CodeRejected(_) => {
                ApiError::unauthenticated(Reason::SsoCodeRejected, message)
            }
            SsoError::AssertionInvalid => {
                ApiError::unauthenticated(Reason::SsoAssertionInvalid, message)
            }
            SsoError::AccountNotLinkable => {
                ApiError::failed_precondition(Reason::SsoAccountNotLinkable, "email", message)
            }
            SsoError::ProvisioningDisabled => ApiError::failed_precondition(
                Reason::SsoProvisioningDisabled,
                "membership",
                message,
            ),
            SsoError::SsoRequiredLogin => {
                ApiError::unauthenticated(orgplane_platform::policy::SSO_REQUIRED, message)
            }
            SsoError::SsoRequiredSignUp => ApiError::failed_precondition(
                orgplane_platform::policy::SSO_REQUIRED,
                "email",
                message,
            ),
            SsoError::DomainRestricted(d) => {
                ApiError::failed_precondition(Reason::EmailDomainRestricted, &d, message)
                    .with_metadata("domain_name", d)
            }
            SsoError::SsoNotAllowed(org) => {
                ApiError::failed_precondition(Reason::SsoNotAllowed, "security_policy", message)
                    .with_metadata("organization_id", org)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_must_be_https_unless_allowed() {
        assert!(check_issuer("i", "https://idp.example.com", false).is_ok());
        assert!(check_issuer("i", "http://127.0.0.1:4000", false).is_err());
        assert!(check_issuer("i", "http://127.0.0.1:4000", true).is_ok());
        assert!(check_issuer("i", "https://idp.example.com/?x=1", false).is_err());
        assert!(check_issuer("i", "https://idp.example.com/#f", false).is_err());
        assert!(check_issuer("i", "", false).is_err());
    }

    #[test]
    fn hmac_and_none_are_refused_and_defaults_apply() {
        let mut v = Violations::default();
        assert_eq!(check_algorithms(&mut v, &[]), vec!["RS256"]);
        assert_eq!(check_scopes(&mut v, &[]), DEFAULT_SCOPES.to_vec());
        assert!(v.finish().is_ok());
        for bad in ["HS256", "none", "RS1"] {
            let mut v = Violations::default();
            check_algorithms(&mut v, &[bad.to_owned()]);
            assert!(v.finish().is_err(), "{bad}");
        }
        let mut v = Violations::default();
        check_scopes(&mut v, &["email".to_owned()]);
        assert!(v.finish().is_err(), "openid is required");
    }

    #[test]
    fn second_factor_amr_values_are_recognised() {
        assert!(names_second_factor(&["pwd".into(), "mfa".into()]));
        assert!(names_second_factor(&["hwk".into()]));
        assert!(!names_second_factor(&["pwd".into()]));
    }
}
