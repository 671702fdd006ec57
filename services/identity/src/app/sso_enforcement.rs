//! What SSO and verified domains mean for password sign-in and sign-up (rules ID-13, ORG-14):
//! an address whose domain an enabled, enforced connection serves (and its organization holds
//! VERIFIED) signs in and up only through SSO; an address of a domain an organization holds
//! VERIFIED with policy RESTRICTED signs up only with that organization's invite, which only the
//! organization service knows (asked with `LookupDomain`; no answer fails closed, and only for
//! RESTRICTED domains: other sign-ups never call it).

use orgplane_platform::email::domain_of;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::organization::v1::DomainPolicy;
use sea_orm::entity::prelude::*;

use super::App;
use crate::domain::sso::SsoError;
use crate::store::entity::{sso_connection, sso_connection_domain};

impl App {
    /// The enabled connections serving `domain` whose organization holds it VERIFIED.
    pub(crate) async fn connections_serving(
        &self,
        domain: &str,
    ) -> ApiResult<Vec<sso_connection::Model>> {
        if domain.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sso_connection_domain::Entity::find()
            .filter(sso_connection_domain::Column::DomainName.eq(domain))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| d.connection_id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sso_connection::Entity::find()
            .filter(sso_connection::Column::Id.is_in(ids))
            .filter(sso_connection::Column::Enabled.eq(true))
            .all(&self.db)
            .await?
            .into_iter()
            .filter(|c| self.replica.holds_verified(&c.organization_id, domain))
            .collect())
    }

    /// Whether password sign-in for addresses of `domain` is refused (rule ID-13).
    pub(crate) async fn sso_enforced_for(&self, domain: &str) -> ApiResult<bool> {
        Ok(self
            .connections_serving(domain)
            .await?
            .iter()
            .any(|c| c.enforced))
    }

    /// Login's first check (rule ID-13): UNAUTHENTICATED `SSO_REQUIRED` for an address
    /// (`email_key`, canonical) of an enforced domain, whether or not an account has it, before
    /// any password is looked at.
    pub(crate) async fn refuse_password_sign_in(&self, email_key: &str) -> ApiResult<()> {
        if self.sso_enforced_for(domain_of(email_key)).await? {
            return Err(SsoError::SsoRequiredLogin.into());
        }
        Ok(())
    }

    /// SignUp's domain checks for canonical `email_key`: FAILED_PRECONDITION `SSO_REQUIRED` for
    /// an enforced domain; for a domain an organization holds VERIFIED with policy RESTRICTED,
    /// FAILED_PRECONDITION `EMAIL_DOMAIN_RESTRICTED` unless that organization invited the
    /// address (UNAVAILABLE `ORGANIZATION_UNAVAILABLE` when the organization does not answer).
    pub(crate) async fn check_sign_up_domain(&self, call: &Call, email_key: &str) -> ApiResult<()> {
        let domain = domain_of(email_key);
        if self.sso_enforced_for(domain).await? {
            return Err(SsoError::SsoRequiredSignUp.into());
        }
        let restricted = self
            .replica
            .holders_of_domain(domain)
            .iter()
            .any(|d| d.policy == DomainPolicy::Restricted);
        if !restricted {
            return Ok(());
        }
        // The organization service knows the invites (and holds the freshest domain state).
        let answer = self.organizations.lookup_domain(call, email_key).await?;
        let refused = answer
            .verified_domains
            .iter()
            .filter(|d| d.policy == DomainPolicy::Restricted as i32)
            .any(|d| !answer.invited_organization_ids.contains(&d.organization_id));
        if refused {
            return Err(SsoError::DomainRestricted(domain.to_owned()).into());
        }
        Ok(())
    }
}
