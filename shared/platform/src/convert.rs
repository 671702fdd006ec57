//! Conversions every service's API adapter shares: timestamps, the one etag format, and the
//! stale-etag refusal (AIP-154). Etags are opaque to clients; inside Orgplane every resource
//! that can be updated keeps an integer row version, and its etag is `v<version>`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

/// The wire timestamp of Unix milliseconds.
pub fn timestamp_ms(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // In 0..1_000_000_000 by construction.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or_default(),
    }
}

/// The wire timestamp of a chrono time.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// Unix milliseconds of a wire timestamp (`None` when it is out of range).
pub fn millis_of(t: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds
        .checked_mul(1000)?
        .checked_add(i64::from(t.nanos / 1_000_000))
}

/// The etag of row version `version`.
pub fn etag(version: i64) -> String {
    format!("v{version}")
}

/// Checks a request's etag against the resource's current `version`: an empty etag means
/// "whatever is current"; anything else must match, or the answer is [`etag_mismatch`].
pub fn check_etag(given: &str, version: i64, resource: &str) -> ApiResult<()> {
    if given.is_empty() || given == etag(version) {
        Ok(())
    } else {
        Err(etag_mismatch(resource))
    }
}

/// ABORTED `ETAG_MISMATCH`: `resource` changed since the caller read it (or a concurrent change
/// won the race); the caller reads it again and retries.
pub fn etag_mismatch(resource: &str) -> ApiError {
    ApiError::aborted(
        Reason::EtagMismatch,
        format!(
            "the {} changed since it was read; read it again and retry",
            resource.replace('_', " ")
        ),
    )
    .with_metadata("resource_type", resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_millis() {
        for ms in [0, 1, 999, 1_000, -1, -1_001, 1_733_000_000_123] {
            assert_eq!(millis_of(&timestamp_ms(ms)), Some(ms), "{ms}");
        }
        let t = DateTime::from_timestamp_millis(1_733_000_000_123).unwrap();
        assert_eq!(timestamp(t), timestamp_ms(1_733_000_000_123));
        let bad = Timestamp {
            seconds: 1,
            nanos: -5,
        };
        assert_eq!(millis_of(&bad), None);
    }

    #[test]
    fn org_3_an_etag_matches_its_version_only() {
        assert_eq!(etag(3), "v3");
        assert!(check_etag("", 3, "workspace").is_ok());
        assert!(check_etag("v3", 3, "workspace").is_ok());
        let err = check_etag("v2", 3, "workspace").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert_eq!(err.reason(), "ETAG_MISMATCH");
        assert!(err.message().contains("workspace"));
    }
}
