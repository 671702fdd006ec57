//! Billing accounts (rule BILL-2): what a new account looks like, and what an update may set.

use orgplane_proto::billing::v1::BillingPlan;

/// The resource type of billing accounts in errors and audit records.
pub const RESOURCE: &str = "billing_account";
/// Seats of a new account.
pub const DEFAULT_SEATS: i32 = 1;
/// The most seats an account may have.
pub const MAX_SEATS: i32 = 1_000_000;
/// The paths an update mask may name.
pub const MUTABLE_PATHS: &str = "plan, billing_email, seats";

/// What an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    /// The new plan.
    pub plan: Option<BillingPlan>,
    /// The new billing email.
    pub billing_email: Option<String>,
    /// The new seat count.
    pub seats: Option<i32>,
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters, at most 254 bytes.
pub fn is_email(s: &str) -> bool {
    if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// A plan an account may be set to (not UNSPECIFIED, not an unknown number).
pub fn settable_plan(plan: i32) -> Option<BillingPlan> {
    match BillingPlan::try_from(plan) {
        Ok(BillingPlan::Unspecified) | Err(_) => None,
        Ok(plan) => Some(plan),
    }
}

/// Whether `seats` is a seat count an account may have.
pub fn valid_seats(seats: i32) -> bool {
    (1..=MAX_SEATS).contains(&seats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("billing@acme.example"));
        assert!(!is_email("billing@acme"));
        assert!(!is_email("bill ing@acme.example"));
        assert!(!is_email("@acme.example"));
        assert!(!is_email(""));
    }

    #[test]
    fn plans_and_seats() {
        assert_eq!(
            settable_plan(BillingPlan::Team as i32),
            Some(BillingPlan::Team)
        );
        assert_eq!(settable_plan(0), None);
        assert_eq!(settable_plan(99), None);
        assert!(valid_seats(1) && valid_seats(MAX_SEATS));
        assert!(!valid_seats(0) && !valid_seats(MAX_SEATS + 1));
    }
}
