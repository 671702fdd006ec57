//! Usage and cost reports (rules BILL-3, BILL-4, BILL-6): buckets, ranges and dimensions. Pages are runs
//! of consecutive buckets, empty ones included.

use crate::domain::error::{Error, Result};

/// The most grouped rows on one page; a page ends early (at a bucket boundary) beyond it.
pub const MAX_ROWS_PER_PAGE: usize = 10_000;
/// The most values in one filter list.
pub const MAX_FILTER_VALUES: usize = 1000;
/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The latest accepted report end: 9999-12-31.
pub const MAX_TIME_MS: i64 = 253_402_214_400_000;

/// A dimension a report groups or filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The workspace.
    Workspace,
    /// The API key.
    ApiKey,
    /// The model.
    Model,
    /// The user.
    User,
    /// The billed account (rule BILL-6).
    Account,
    /// The subaccount named (rule BILL-6).
    Subaccount,
}

/// The kind of tokens a cost line prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenKind {
    /// Input (prompt) tokens.
    Input,
    /// Output (completion) tokens.
    Output,
}

/// The bucket-aligned range `[start, end)` of a request for `[start_ms, end_ms)`: INVALID_ARGUMENT
/// unless the end is after the start.
pub fn aligned_range(start_ms: i64, end_ms: i64, width: i64) -> Result<(i64, i64)> {
    if end_ms <= start_ms {
        return Err(Error::invalid("end_time", "must be after start_time"));
    }
    let start = start_ms - start_ms.rem_euclid(width);
    let end = match end_ms.rem_euclid(width) {
        0 => end_ms,
        r => end_ms + (width - r),
    };
    Ok((start, end))
}

/// Where a page starts given the cursor of its token (`(next, end)`), checked against the
/// request's aligned `[start, end)`.
pub fn page_start(
    cursor: Option<(i64, i64)>,
    start: i64,
    end: i64,
    width: i64,
) -> Result<(i64, i64)> {
    match cursor {
        Some((next, end)) if next >= start && next < end && (next - start) % width == 0 => {
            Ok((next, end))
        }
        Some(_) => Err(Error::invalid(
            "page_token",
            "not a page token issued for this request",
        )),
        None => Ok((start, end)),
    }
}

/// A filter list, refused when it is too long.
pub fn check_filter<'a>(field: &str, values: &'a [String]) -> Result<&'a [String]> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_FILTER_VALUES} values"),
        ));
    }
    Ok(values)
}

/// The end of a page of `buckets` buckets of `width` from `from`, clipped to `end`.
pub fn page_end(from: i64, end: i64, buckets: u64, width: i64) -> i64 {
    let span = i64::try_from(buckets)
        .ok()
        .and_then(|b| b.checked_mul(width))
        .unwrap_or(i64::MAX);
    Ord::min(from.saturating_add(span), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_align_to_buckets() {
        assert_eq!(aligned_range(90, 150, 60).ok(), Some((60, 180)));
        assert_eq!(aligned_range(120, 180, 60).ok(), Some((120, 180)));
        assert!(aligned_range(5, 5, 60).is_err());
    }

    #[test]
    fn page_tokens_must_fit_the_request() {
        assert_eq!(page_start(None, 0, 600, 60).ok(), Some((0, 600)));
        assert_eq!(
            page_start(Some((120, 600)), 0, 600, 60).ok(),
            Some((120, 600))
        );
        assert!(page_start(Some((130, 600)), 0, 600, 60).is_err());
        assert_eq!(page_end(0, 600, 3, 60), 180);
        assert_eq!(page_end(0, 100, u64::MAX, 60), 100);
    }
}
