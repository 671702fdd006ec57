//! Usage records (rule BILL-3): what a record must look like to be counted, and why one is
//! refused. Each record of a batch is judged on its own; refusals are answers, not errors.

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
        }
    }

    /// Whether sending the same record again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Refusal::UnknownModel(_) | Refusal::OrganizationDeleted(_) => true,
            Refusal::OrganizationNotFound { retryable, .. } => *retryable,
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
}
