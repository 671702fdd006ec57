//! What a service account may do (least privilege): the one list of capabilities, their string
//! form (the space-separated `scope` claim of service tokens and identity's
//! `--service-accounts` list), and what each of the four Orgplane services uses itself.
//!
//! A service principal is no longer trusted for everything a service may do: each internal RPC
//! and service-only path names the capability it needs and answers PERMISSION_DENIED
//! [`CAPABILITY_REQUIRED`] (metadata `capability`) without it.

use orgplane_proto::events::v1::Producer;

use crate::error::ApiError;
use crate::error::Reason;

/// The reason of a refusal for a missing capability.
pub const CAPABILITY_REQUIRED: Reason = Reason::CapabilityRequired;

/// One thing a service account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `WorkspaceService/CheckAccess` and `BillingAccessService/CheckBillingAccess` about any
    /// user or API key.
    CheckAccess,
    /// `BillingAccessService/RecordUsage`.
    RecordUsage,
    /// `IdentityService/AuthenticateApiKey`: resolving the API keys callers present.
    AuthenticateApiKeys,
    /// `EventService/Watch` of the identity service.
    WatchIdentity,
    /// `EventService/Watch` of the organization service and its `ListRoleAssignments`
    /// snapshot.
    WatchOrganization,
    /// `EventService/Watch` of the workspace service and its snapshot (`ListWorkspaces` of
    /// every organization, `organization_id` `-`).
    WatchWorkspace,
    /// `IdentityService/GetUser` and `BatchGetUsers` of any user.
    ReadUsers,
    /// `IdentityService/GetApiKey` and `ListApiKeys` of any organization.
    ReadApiKeys,
    /// The organization service's reads of any organization (GetOrganization,
    /// ListOrganizations, members, units, policies, …) and `LookupDomain`.
    ReadOrganizations,
    /// `WorkspaceService/GetWorkspace` and `ListWorkspaces` of any organization.
    ReadWorkspaces,
    /// `OrganizationService/ProvisionMember` and `DeprovisionMember`.
    ProvisionMembers,
}

impl Capability {
    /// Every capability, in the order of their bits.
    pub const ALL: [Capability; 11] = [
        Capability::CheckAccess,
        Capability::RecordUsage,
        Capability::AuthenticateApiKeys,
        Capability::WatchIdentity,
        Capability::WatchOrganization,
        Capability::WatchWorkspace,
        Capability::ReadUsers,
        Capability::ReadApiKeys,
        Capability::ReadOrganizations,
        Capability::ReadWorkspaces,
        Capability::ProvisionMembers,
    ];

    /// The name in `scope` claims and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::CheckAccess => "check-access",
            Capability::RecordUsage => "record-usage",
            Capability::AuthenticateApiKeys => "authenticate-api-keys",
            Capability::WatchIdentity => "watch:identity",
            Capability::WatchOrganization => "watch:organization",
            Capability::WatchWorkspace => "watch:workspace",
            Capability::ReadUsers => "read-users",
            Capability::ReadApiKeys => "read-api-keys",
            Capability::ReadOrganizations => "read-organizations",
            Capability::ReadWorkspaces => "read-workspaces",
            Capability::ProvisionMembers => "provision-members",
        }
    }

    /// The capability named `name`, if any.
    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The capability of watching `producer`'s events; `None` for an unknown producer.
    pub fn watching(producer: Producer) -> Option<Capability> {
        match producer {
            Producer::Identity => Some(Capability::WatchIdentity),
            Producer::Organization => Some(Capability::WatchOrganization),
            Producer::Workspace => Some(Capability::WatchWorkspace),
            _ => None,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of capabilities (what one service account holds).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u16);

impl Capabilities {
    /// No capability: an account configured without a list, or a token without `scope`.
    pub const NONE: Capabilities = Capabilities(0);

    /// Every capability (tests and tools that stand in for the whole system).
    pub fn all() -> Self {
        Self::of(&Capability::ALL)
    }

    /// The set of `caps`.
    pub fn of(caps: &[Capability]) -> Self {
        Self(caps.iter().fold(0, |bits, c| bits | c.bit()))
    }

    /// Whether the set holds `cap`.
    pub fn has(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of both sets.
    pub fn union(self, other: Capabilities) -> Self {
        Self(self.0 | other.0)
    }

    /// The capabilities in the set.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.has(*c))
    }

    /// The space-separated `scope` claim (OAuth style).
    pub fn to_scope(self) -> String {
        self.iter()
            .map(Capability::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The set a `scope` claim names; names this version does not know are ignored (a newer
    /// identity may mint them).
    pub fn from_scope(scope: &str) -> Self {
        Self::of(
            &scope
                .split_ascii_whitespace()
                .filter_map(Capability::parse)
                .collect::<Vec<_>>(),
        )
    }

    /// What the Orgplane service `service` (`identity`, `organization`, `workspace`,
    /// `billing-access`) calls on the others, and nothing more: the capabilities of its own
    /// service account. `None` for other names.
    pub fn of_service(service: &str) -> Option<Self> {
        use Capability::*;
        let caps: &[Capability] = match service {
            // Org replica, its own stream (revocations of replicas sharing its database),
            // LookupDomain at sign-up, SSO and SCIM provisioning, the workspace of a new
            // workspace key, and whether its creator may develop there.
            "identity" => &[
                AuthenticateApiKeys,
                WatchOrganization,
                WatchIdentity,
                ReadOrganizations,
                ProvisionMembers,
                ReadWorkspaces,
                CheckAccess,
            ],
            // Deleted users and verified emails, unit assignments, members' profiles.
            "organization" => &[
                AuthenticateApiKeys,
                WatchIdentity,
                WatchWorkspace,
                ReadUsers,
            ],
            // Org replica, the API-key replica and its snapshot, a unit's organization (ORG-9).
            "workspace" => &[
                AuthenticateApiKeys,
                WatchOrganization,
                WatchIdentity,
                ReadApiKeys,
                ReadOrganizations,
            ],
            // Org replica, workspaces, ended sessions, members' profiles and keys' facts.
            "billing-access" => &[
                AuthenticateApiKeys,
                WatchOrganization,
                WatchWorkspace,
                WatchIdentity,
                ReadUsers,
                ReadApiKeys,
            ],
            _ => return None,
        };
        Some(Self::of(caps))
    }

    /// PERMISSION_DENIED [`CAPABILITY_REQUIRED`] naming `cap` unless the set holds it.
    pub fn require(self, cap: Capability, account: &str) -> Result<(), ApiError> {
        if self.has(cap) {
            return Ok(());
        }
        Err(ApiError::permission_denied(
            CAPABILITY_REQUIRED,
            format!(
                "service account {account:?} may not do this: it needs the capability {:?}",
                cap.as_str()
            ),
        )
        .with_metadata("capability", cap.as_str())
        .with_metadata("service_account", account))
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Parses a capability list of identity's `--service-accounts` (`+`-separated names, or
/// `@<service>` for what that Orgplane service uses); the error names what is wrong.
pub fn parse_capability_list(list: &str) -> Result<Capabilities, String> {
    let mut caps = Capabilities::NONE;
    for name in list.split('+').map(str::trim).filter(|n| !n.is_empty()) {
        let more = match name.strip_prefix('@') {
            Some(service) => Capabilities::of_service(service).ok_or_else(|| {
                format!(
                    "{name:?} is not a service (use @identity, @organization, @workspace or \
                     @billing-access)"
                )
            })?,
            None => Capability::parse(name)
                .map(|c| Capabilities::of(&[c]))
                .ok_or_else(|| {
                    format!(
                        "unknown capability {name:?} (known: {})",
                        Capabilities::all().to_scope().replace(' ', ", ")
                    )
                })?,
        };
        caps = caps.union(more);
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scope_ignores_unknown_names() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
        }
        let all = Capabilities::all();
        assert_eq!(Capabilities::from_scope(&all.to_scope()), all);
        let some = Capabilities::from_scope("check-access  future-thing record-usage");
        assert_eq!(
            some,
            Capabilities::of(&[Capability::CheckAccess, Capability::RecordUsage])
        );
        assert!(Capabilities::from_scope("").is_empty());
    }

    #[test]
    fn lists_take_names_and_service_presets() {
        let caps = parse_capability_list("check-access+@workspace").unwrap();
        assert!(caps.has(Capability::CheckAccess));
        assert!(caps.has(Capability::ReadOrganizations));
        assert!(!caps.has(Capability::RecordUsage));
        assert!(parse_capability_list("check-acces").is_err());
        assert!(parse_capability_list("@search").is_err());
        let err = Capabilities::NONE
            .require(Capability::WatchIdentity, "product")
            .unwrap_err();
        assert_eq!(err.error_reason(), CAPABILITY_REQUIRED);
    }
}
