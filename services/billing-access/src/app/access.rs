//! Who may see billing (rule BILL-1), answered from the organization-role replica in memory
//! after the call's read-your-writes wait; the billing members; CheckBillingAccess; and the
//! audit of refused mutations (ORG-10).

use orgplane_platform::Call;
use orgplane_platform::audit::Attempt;
use orgplane_platform::error::ApiResult;
use orgplane_platform::roles::{OrgAction, allows};
use orgplane_proto::organization::v1::OrgRole;

use crate::app::Billing;
use crate::domain::access::{self, Standing, Subject};
use crate::domain::{Error, Result};
use crate::store::merge;

/// A page of ListBillingMembers.
#[derive(Debug, Clone)]
pub struct MembersQuery {
    /// The organization.
    pub organization_id: String,
    /// The page size (validated).
    pub page_size: u64,
    /// The previous page's token, or empty.
    pub page_token: String,
}

/// A member who may view and manage billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingMember {
    /// The user.
    pub user_id: String,
    /// Their organization role.
    pub role: OrgRole,
    /// Their email (empty when identity did not answer).
    pub email: String,
    /// Their display name (empty when identity did not answer).
    pub display_name: String,
}

/// CheckBillingAccess, decoded.
#[derive(Debug, Clone)]
pub struct AccessCheck {
    /// The organization.
    pub organization_id: String,
    /// Whom the check is about.
    pub subject: Subject,
    /// The organization revision the answer must reflect (`0`: none).
    pub min_organization_revision: i64,
}

/// The answer of CheckBillingAccess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessAnswer {
    /// Whether the subject may view and manage billing.
    pub allowed: bool,
    /// The subject's organization role, if any.
    pub role: Option<OrgRole>,
    /// The organization revision the answer reflects.
    pub revision: i64,
}

impl Billing {
    /// What the replica says about `call`'s caller in `organization_id`. A user's role is the
    /// one the organization's security policy admits (rule ORG-16): a sign-in the policy
    /// refuses is UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`), in that organization only.
    fn standing(&self, call: &Call, organization_id: &str) -> Result<Standing> {
        let active = self
            .replica
            .with_organization(organization_id, |o| o.is_active())
            .unwrap_or(false);
        let role = self
            .replica
            .admitted_role_of(organization_id, &call.principal)?;
        Ok(Standing { active, role })
    }

    /// Admits `call` to `action` in `organization_id`: credentials, the call's revision wait,
    /// and the role (rule BILL-1). The candidate of a merge (rule ORG-15) is NOT_FOUND to
    /// everyone, whatever the replica still says of it: its billing is the prime's now.
    pub async fn admit(&self, call: &Call, organization_id: &str, action: OrgAction) -> Result<()> {
        call.principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(Error::invalid("organization_id", "required"));
        }
        call.wait_for(&self.org_events, 0).await?;
        if merge::prime_of(&self.db, organization_id).await?.is_some() {
            return Err(Error::OrganizationNotFound(organization_id.to_owned()));
        }
        access::authorize(
            &call.principal,
            organization_id,
            self.standing(call, organization_id)?,
            action,
        )
    }

    /// Passes a mutation's `result` through unchanged, recording it first as OUTCOME_FAILURE
    /// when it is a refusal the audit log keeps and the attempt's organization (its scope) is
    /// known here (ORG-10).
    pub async fn audited<T>(
        &self,
        call: &Call,
        attempt: Attempt<String>,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .audited(&self.db, call, result, || async {
                // ORG-10: only callers with standing in the organization write into its log.
                self.replica
                    .with_organization(&attempt.scope, |_| ())
                    .filter(|_| {
                        self.replica
                            .has_standing(call.principal.as_ref(), &attempt.scope)
                    })
                    .map(|()| attempt.entry(&attempt.scope))
            })
            .await
    }

    /// A page of the members who may view and manage billing (OWNER, ADMIN, BILLING), by user
    /// id, with their profiles when identity answers.
    pub async fn billing_members(
        &self,
        query: MembersQuery,
    ) -> Result<(Vec<BillingMember>, String)> {
        let org = &query.organization_id;
        let tokens = &self.runtime.page_tokens;
        let scope = format!("ListBillingMembers|{org}");
        let after: Option<String> = tokens.decode(&scope, &query.page_token)?;
        let mut members: Vec<(String, OrgRole)> = self
            .replica
            .organization(org)
            .map(|o| o.members.into_iter().collect())
            .unwrap_or_default();
        members.retain(|(user, role)| {
            allows(*role, OrgAction::ManageBilling)
                && after.as_ref().is_none_or(|a| user.as_str() > a.as_str())
        });
        members.sort();
        members.truncate(
            usize::try_from(query.page_size)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let (page, next_page_token) =
            tokens.page(&scope, members, query.page_size, |(user, _)| user.clone());
        let ids: Vec<String> = page.iter().map(|(u, _)| u.clone()).collect();
        let profiles = self.directory.profiles(&ids).await;
        let members = page
            .into_iter()
            .map(|(user_id, role)| {
                let (email, display_name) = profiles.get(&user_id).cloned().unwrap_or_default();
                BillingMember {
                    user_id,
                    role,
                    email,
                    display_name,
                }
            })
            .collect();
        Ok((members, next_page_token))
    }

    /// Whether the subject may view and manage billing, after the call has observed the
    /// requested organization revision. Users and API keys ask only about themselves.
    ///
    /// The organization's security policy (rule ORG-16) judges the caller's sign-in: a user
    /// asking about themselves is refused (UNAUTHENTICATED `MFA_REQUIRED` or `SSO_REQUIRED`)
    /// when their token does not satisfy it. A service asking about a user gets that user's
    /// permissions: its call is not the user's sign-in, and the user's own calls meet the
    /// policy wherever they go. API keys carry no sign-in.
    pub async fn check_access(&self, call: &Call, check: AccessCheck) -> Result<AccessAnswer> {
        let own = access::asks_about_itself(&call.principal, &check.subject)?;
        let revision = call
            .wait_for(&self.org_events, check.min_organization_revision)
            .await?;
        let org = &check.organization_id;
        let role = match &check.subject {
            Subject::User(_) if own => self.replica.admitted_role_of(org, &call.principal)?,
            Subject::User(user) => self.replica.role(org, user),
            Subject::ApiKey(_) if own => {
                access::role_of(&call.principal, org, self.standing(call, org)?)
            }
            Subject::ApiKey(key) => {
                let active_org = self
                    .replica
                    .with_organization(org, |o| o.is_active())
                    .unwrap_or(false);
                let facts = self.directory.api_key(key).await?;
                access::key_role(facts.as_ref(), org, active_org)
            }
        };
        Ok(AccessAnswer {
            allowed: access::may_manage_billing(role),
            role,
            revision: revision.max(self.org_events.applied_revision()),
        })
    }
}
