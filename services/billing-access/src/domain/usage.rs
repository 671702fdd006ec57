//! Usage records (rule BILL-3): what a record must look like to be counted, and why one is
//! refused, and the account a record is billed to (rule BILL-6). Each record of a batch is judged
//! on its own; refusals are answers, not errors.

use orgplane_platform::error::Reason;

/// The most records in one RecordUsage call.
pub const MAX_BATCH: usize = 1000;
/// How far in the future a usage time may be (clock skew between services).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// The earliest accepted usage time: 2000-01-01T00:00:00Z.
pub const MIN_USAGE_TIME_MS: i64 = 946_684_800_000;
/// One minute in milliseconds: the rollup granularity.
pub const MINUTE_MS: i64 = 60_000;

/// A record's usage time as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageTime {
    /// Not sent.
    Missing,
    /// Sent but not a valid time.
    Invalid,
    /// Unix milliseconds.
    At(i64),
}

/// One usage record as a service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    /// The organization billed.
    pub organization_id: String,
    /// The workspace; empty for the Default Workspace.
    pub workspace_id: String,
    /// The API key; empty when none.
    pub api_key_id: String,
    /// The user; empty when unknown.
    pub user_id: String,
    /// The model.
    pub model: String,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// When the usage happened.
    pub usage_time: UsageTime,
    /// The reporting service's key; unique per organization.
    pub idempotency_key: String,
    /// The account named (rule BILL-6); empty for none.
    pub account_id: String,
}

/// Where a record's usage is billed (rule BILL-6): both empty for usage naming no account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BilledAccount {
    /// The billed account: the account named, or the parent of the subaccount named.
    pub account_id: String,
    /// The subaccount named; empty when a top-level account (or none) was named.
    pub subaccount_id: String,
}

/// What this service knows of an account a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFacts<'a> {
    /// Its home organization.
    pub organization_id: &'a str,
    /// Its parent; empty for a top-level account.
    pub parent_account_id: &'a str,
    /// When it was closed (Unix milliseconds); `None` while open.
    pub close_time_ms: Option<i64>,
}

/// Where the usage of `r` at `usage_time_ms` is billed, given what is known of the account it
/// names (`None`: not known here): refused unless the account's home is the record's
/// organization and it was open at the usage time (rule BILL-6).
pub fn bill_to(
    r: &NewUsage,
    usage_time_ms: i64,
    facts: Option<AccountFacts<'_>>,
) -> Result<BilledAccount, Refusal> {
    if r.account_id.is_empty() {
        return Ok(BilledAccount::default());
    }
    let not_found = |retryable| Refusal::AccountNotFound {
        account: r.account_id.clone(),
        organization: r.organization_id.clone(),
        retryable,
    };
    let Some(facts) = facts else {
        return Err(not_found(true));
    };
    if facts.organization_id != r.organization_id {
        return Err(not_found(false));
    }
    if facts
        .close_time_ms
        .is_some_and(|closed| usage_time_ms >= closed)
    {
        return Err(Refusal::AccountClosed(r.account_id.clone()));
    }
    Ok(if facts.parent_account_id.is_empty() {
        BilledAccount {
            account_id: r.account_id.clone(),
            subaccount_id: String::new(),
        }
    } else {
        BilledAccount {
            account_id: facts.parent_account_id.to_owned(),
            subaccount_id: r.account_id.clone(),
        }
    })
}

/// Why one record of a batch is not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required field is empty.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// A field has a value that is never valid.
    #[error("{0}")]
    InvalidField(String),
    /// The usage time is before 2000 or in the future.
    #[error("usage_time must be after 2000-01-01 and not in the future")]
    UsageTimeOutOfRange,
    /// The model has no price (retryable once the table lists it).
    #[error("model {0:?} is not in the price table")]
    UnknownModel(String),
    /// The organization is deleted (retryable: it may be undeleted).
    #[error("organization {0:?} is deleted")]
    OrganizationDeleted(String),
    /// The organization is unknown here; retryable unless it was purged.
    #[error("organization {id:?} is not known")]
    OrganizationNotFound {
        /// The organization.
        id: String,
        /// Whether it may still become known (not purged).
        retryable: bool,
    },
    /// The workspace belongs to another organization.
    #[error("workspace {workspace:?} does not belong to organization {organization:?}")]
    WorkspaceNotFound {
        /// The workspace.
        workspace: String,
        /// The record's organization.
        organization: String,
    },
    /// The workspace was archived before the usage time.
    #[error("workspace {0:?} was archived before usage_time")]
    WorkspaceArchived(String),
    /// The account is not known here (retryable: it may be soon), or its home is another
    /// organization (rule BILL-6).
    #[error("account {account:?} is not an account of organization {organization:?}")]
    AccountNotFound {
        /// The account named.
        account: String,
        /// The record's organization.
        organization: String,
        /// Whether it may still become known (it is not known at all).
        retryable: bool,
    },
    /// The account was closed before the usage time (rule BILL-6).
    #[error("account {0:?} was closed before usage_time")]
    AccountClosed(String),
}

impl Refusal {
    /// The stable reason answered in the record's result (a name of the contract's
    /// `ErrorReason`, like every ErrorInfo reason).
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::MissingField(_) => Reason::MissingField,
            Refusal::InvalidField(_) => Reason::InvalidField,
            Refusal::UsageTimeOutOfRange => Reason::UsageTimeOutOfRange,
            Refusal::UnknownModel(_) => Reason::UnknownModel,
            Refusal::OrganizationDeleted(_) => Reason::OrganizationDeleted,
            Refusal::OrganizationNotFound { .. } => Reason::OrganizationNotFound,
            Refusal::WorkspaceNotFound { .. } => Reason::WorkspaceNotFound,
            Refusal::WorkspaceArchived(_) => Reason::WorkspaceArchived,
            Refusal::AccountNotFound { .. } => Reason::AccountNotFound,
            Refusal::AccountClosed(_) => Reason::AccountClosed,
        }
    }

    /// Whether sending the same record again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Refusal::UnknownModel(_) | Refusal::OrganizationDeleted(_) => true,
            Refusal::OrganizationNotFound { retryable, .. }
            | Refusal::AccountNotFound { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// What happened to one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Counted now.
    Accepted,
    /// Counted before (or earlier in the same batch).
    Duplicate,
    /// Not counted.
    Refused(Refusal),
}

fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_id(id: &str) -> bool {
    id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The checks that need nothing but the record, the clock and the price list: the usage time
/// in Unix milliseconds, or why the record is refused.
pub fn check_record(
    r: &NewUsage,
    now_ms: i64,
    priced: impl Fn(&str) -> bool,
) -> Result<i64, Refusal> {
    for (field, value) in [
        ("organization_id", &r.organization_id),
        ("model", &r.model),
        ("idempotency_key", &r.idempotency_key),
    ] {
        if value.is_empty() {
            return Err(Refusal::MissingField(field));
        }
    }
    if !valid_key(&r.idempotency_key) {
        return Err(Refusal::InvalidField(
            "idempotency_key must be 1-128 printable ASCII characters".into(),
        ));
    }
    for (field, value) in [
        ("organization_id", &r.organization_id),
        ("workspace_id", &r.workspace_id),
        ("api_key_id", &r.api_key_id),
        ("user_id", &r.user_id),
        ("model", &r.model),
        ("account_id", &r.account_id),
    ] {
        if !valid_id(value) {
            return Err(Refusal::InvalidField(format!(
                "{field} must be at most 128 printable ASCII characters"
            )));
        }
    }
    if r.input_tokens < 0 || r.output_tokens < 0 {
        return Err(Refusal::InvalidField(
            "input_tokens and output_tokens must not be negative".into(),
        ));
    }
    let ms = match r.usage_time {
        UsageTime::Missing => return Err(Refusal::MissingField("usage_time")),
        UsageTime::Invalid => {
            return Err(Refusal::InvalidField(
                "usage_time is not a valid time".into(),
            ));
        }
        UsageTime::At(ms) => ms,
    };
    if !(MIN_USAGE_TIME_MS..=now_ms.saturating_add(MAX_CLOCK_SKEW_MS)).contains(&ms) {
        return Err(Refusal::UsageTimeOutOfRange);
    }
    if !priced(&r.model) {
        return Err(Refusal::UnknownModel(r.model.clone()));
    }
    Ok(ms)
}

/// The start of the minute `ms` falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: UsageTime) -> NewUsage {
        NewUsage {
            organization_id: "o".into(),
            workspace_id: String::new(),
            api_key_id: String::new(),
            user_id: String::new(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            usage_time: time,
            idempotency_key: "k".into(),
            account_id: String::new(),
        }
    }

    #[test]
    fn bill_3_records_are_judged_one_by_one_with_stable_reasons() {
        let now = MIN_USAGE_TIME_MS + 10 * MINUTE_MS;
        let priced = |m: &str| m == "m";
        assert_eq!(
            check_record(&record(UsageTime::At(now)), now, priced),
            Ok(now)
        );
        let refused = |r: &NewUsage| check_record(r, now, priced).err();
        let missing = refused(&record(UsageTime::Missing));
        assert_eq!(
            missing.as_ref().map(Refusal::reason),
            Some(Reason::MissingField)
        );
        assert_eq!(
            missing.map(|r| r.to_string()).as_deref(),
            Some("usage_time is required")
        );
        let future = refused(&record(UsageTime::At(now + MAX_CLOCK_SKEW_MS + 1)));
        assert_eq!(future, Some(Refusal::UsageTimeOutOfRange));
        let mut unpriced = record(UsageTime::At(now));
        unpriced.model = "x".into();
        let unknown = refused(&unpriced);
        assert!(unknown.as_ref().is_some_and(Refusal::retryable));
        assert_eq!(
            unknown.as_ref().map(Refusal::reason),
            Some(Reason::UnknownModel)
        );
        assert_eq!(minute_of(MINUTE_MS + 59_999), MINUTE_MS);
    }

    #[test]
    fn bill_6_a_subaccount_is_billed_to_its_parent_and_foreign_or_closed_accounts_are_refused() {
        let mut r = record(UsageTime::At(10));
        assert_eq!(bill_to(&r, 10, None), Ok(BilledAccount::default()));
        r.account_id = "acct_sub".into();
        let facts = AccountFacts {
            organization_id: "o",
            parent_account_id: "acct_top",
            close_time_ms: None,
        };
        assert_eq!(
            bill_to(&r, 10, Some(facts)),
            Ok(BilledAccount {
                account_id: "acct_top".into(),
                subaccount_id: "acct_sub".into(),
            })
        );
        let top = AccountFacts {
            parent_account_id: "",
            ..facts
        };
        assert_eq!(
            bill_to(&r, 10, Some(top)).map(|b| b.account_id),
            Ok("acct_sub".to_owned())
        );
        let unknown = bill_to(&r, 10, None).err();
        assert!(unknown.as_ref().is_some_and(Refusal::retryable));
        let foreign = bill_to(
            &r,
            10,
            Some(AccountFacts {
                organization_id: "other",
                ..facts
            }),
        )
        .err();
        assert_eq!(
            foreign.as_ref().map(Refusal::reason),
            Some(Reason::AccountNotFound)
        );
        assert!(!foreign.as_ref().is_some_and(Refusal::retryable));
        let closed = AccountFacts {
            close_time_ms: Some(10),
            ..facts
        };
        assert!(bill_to(&r, 9, Some(closed)).is_ok());
        assert_eq!(
            bill_to(&r, 10, Some(closed)),
            Err(Refusal::AccountClosed("acct_sub".into()))
        );
    }
}
