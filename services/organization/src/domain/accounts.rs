//! The rules of accounts (ACC-1 … ACC-5) that need no database: which inputs are valid, what an
//! account is to an organization, and who may see it.

use orgplane_proto::organization::v1::{AccountState, AccountType, ComplianceDesignation};

use super::{Error, Result};

/// The name of an `AccountType` number, as error metadata and messages say it.
pub fn type_name(t: i32) -> &'static str {
    match AccountType::try_from(t) {
        Ok(AccountType::Managed) => "MANAGED",
        Ok(AccountType::Independent) => "INDEPENDENT",
        Ok(AccountType::Pending) => "PENDING",
        _ => "UNSPECIFIED",
    }
}

/// The type an import asks for: MANAGED (also when unspecified) or INDEPENDENT.
pub fn import_type(v: i32) -> Result<AccountType> {
    match AccountType::try_from(v) {
        Ok(AccountType::Unspecified | AccountType::Managed) => Ok(AccountType::Managed),
        Ok(AccountType::Independent) => Ok(AccountType::Independent),
        _ => Err(Error::invalid("type", "MANAGED or INDEPENDENT")),
    }
}

/// A designation to set (rule ACC-5): NONE or HIPAA.
pub fn designation(field: &str, v: i32) -> Result<ComplianceDesignation> {
    match ComplianceDesignation::try_from(v) {
        Ok(ComplianceDesignation::Unspecified) => Err(Error::invalid(field, "required")),
        Ok(d) => Ok(d),
        Err(_) => Err(Error::invalid(field, "unknown designation")),
    }
}

/// A ListAccounts type filter (0: every type).
pub fn type_filter(v: i32) -> Result<i32> {
    AccountType::try_from(v)
        .map(|t| t as i32)
        .map_err(|_| Error::invalid("type", "unknown type"))
}

/// The states a list shows: the one asked for, else ACTIVE only unless `show_closed` (`None`:
/// every state).
pub fn states_shown(state: i32, show_closed: bool) -> Result<Option<i32>> {
    match AccountState::try_from(state) {
        Ok(AccountState::Unspecified) if show_closed => Ok(None),
        Ok(AccountState::Unspecified) => Ok(Some(AccountState::Active as i32)),
        Ok(s) => Ok(Some(s as i32)),
        Err(_) => Err(Error::invalid("state", "unknown state")),
    }
}

/// The domain of a stored (canonical) email address, empty when it has none.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, d)| d)
}

/// How a caller stands to one account seen through one organization (the service comment of
/// `AccountService`, rule ACC-4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// The caller reads every account of the organization: its OWNER or an ADMIN (or an admin
    /// API key, a service, the operator reading a child).
    pub reads_all: bool,
    /// The caller owns the account.
    pub owner: bool,
    /// The caller owns the account's parent (a subaccount).
    pub parent_owner: bool,
    /// The caller was granted access to the account through the organization.
    pub granted: bool,
}

impl Reach {
    /// Whether the caller may see the account at all; anything else is NOT_FOUND.
    pub fn visible(&self) -> bool {
        self.reads_all || self.owner || self.parent_owner || self.granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_2_imports_ask_for_managed_or_independent() {
        assert_eq!(import_type(0).unwrap(), AccountType::Managed);
        assert_eq!(import_type(1).unwrap(), AccountType::Managed);
        assert_eq!(import_type(2).unwrap(), AccountType::Independent);
        assert!(import_type(3).is_err());
        assert!(import_type(9).is_err());
    }

    #[test]
    fn acc_5_designations_must_be_named() {
        assert!(designation("d", 0).is_err());
        assert_eq!(designation("d", 2).unwrap(), ComplianceDesignation::Hipaa);
        assert!(designation("d", 7).is_err());
    }

    #[test]
    fn lists_show_active_accounts_unless_asked() {
        assert_eq!(states_shown(0, false).unwrap(), Some(1));
        assert_eq!(states_shown(0, true).unwrap(), None);
        assert_eq!(states_shown(2, false).unwrap(), Some(2));
        assert!(states_shown(5, false).is_err());
        assert_eq!(email_domain("a@b.test"), "b.test");
        assert_eq!(email_domain("nope"), "");
        assert!(!Reach::default().visible());
    }
}
