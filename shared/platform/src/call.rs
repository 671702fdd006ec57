//! One value per RPC, built once from the request by the handler before anything else: who calls
//! ([`Principal`], placed in the extensions by the auth layer), the request id (placed there by
//! the RPC layer), when the caller stops waiting (`grpc-timeout`), which organization revision it
//! must observe (`x-min-organization-revision`), and the peer address. [`Call::wait_for`] is the
//! only read-your-writes wait in Orgplane.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Principal;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::events::ConsumerHandle;

/// The metadata header naming an organization revision the call must observe (read your writes
/// across services: the `revision` of a mutating answer of the organization service).
pub const MIN_ORGANIZATION_REVISION_HEADER: &str = "x-min-organization-revision";

/// The metadata header of a caller's forwarded client address, read by services that count per
/// client (behind trusted proxies only).
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// How long a revision wait may last when the caller sent no deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The most a wait keeps back from the caller's deadline, so that the UNAVAILABLE answer still
/// reaches the caller before its own DEADLINE_EXCEEDED (a tenth of short deadlines).
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// One RPC as its handler sees it; see the module docs.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who calls (shared with the auth layer's cache: cloning it copies nothing).
    pub principal: Arc<Principal>,
    /// The caller's `x-request-id`, or one generated for this call.
    pub request_id: String,
    /// When waits inside this call give up.
    pub deadline: Instant,
    /// The organization revision the caller must observe (`0`: none).
    pub min_organization_revision: i64,
    /// The transport peer's address (none in in-process tests).
    pub peer: Option<IpAddr>,
    /// The raw `x-forwarded-for` header, for services that trust some proxies.
    pub forwarded_for: Option<String>,
}

impl Call {
    /// Reads the call out of `request`: INVALID_ARGUMENT when the revision header is malformed.
    pub fn of<T>(request: &tonic::Request<T>) -> ApiResult<Call> {
        let metadata = request.metadata();
        let timeout = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let min_organization_revision = match metadata.get(MIN_ORGANIZATION_REVISION_HEADER) {
            None => 0,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|r| *r >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_argument(
                        MIN_ORGANIZATION_REVISION_HEADER,
                        "must be a non-negative revision number",
                    )
                })?,
        };
        Ok(Call {
            principal: Principal::shared(request),
            request_id: RequestContext::of(request).request_id,
            deadline: deadline_after(timeout),
            min_organization_revision,
            peer: request
                .remote_addr()
                .or_else(|| {
                    request
                        .extensions()
                        .get::<crate::tls::server::ConnectionInfo>()
                        .and_then(|c| c.remote_addr())
                })
                .map(|a| a.ip()),
            forwarded_for: forwarded_for(metadata),
        })
    }

    /// A call made by the system itself (purges, expiries, event handlers): anonymous, with a
    /// fresh request id and the default wait.
    pub fn system() -> Call {
        Call::from_principal(Principal::Anonymous)
    }

    /// A call by `principal` with a fresh request id and the default wait (unit tests, tools).
    pub fn from_principal(principal: Principal) -> Call {
        Call {
            principal: Arc::new(principal),
            request_id: crate::context::new_request_id(),
            deadline: deadline_after(None),
            min_organization_revision: 0,
            peer: None,
            forwarded_for: None,
        }
    }

    /// The request context (request id) of this call, for the audit log.
    pub fn context(&self) -> RequestContext {
        RequestContext {
            request_id: self.request_id.clone(),
        }
    }

    /// What is left of the call's wait budget.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits until `stream` has applied the larger of `explicit` (a revision named in the
    /// request message) and the call's `x-min-organization-revision` header, within the call's
    /// deadline: UNAVAILABLE `REVISION_NOT_YET_APPLIED` after it, never a stale answer (WS-10).
    /// INVALID_ARGUMENT for a negative `explicit`. Returns the revision applied.
    pub async fn wait_for(&self, stream: &ConsumerHandle, explicit: i64) -> ApiResult<i64> {
        if explicit < 0 {
            return Err(ApiError::invalid_argument(
                "min_organization_revision",
                "must not be negative",
            ));
        }
        let wanted = explicit.max(self.min_organization_revision);
        self.wait_exactly(stream, wanted).await
    }

    /// Waits until `stream` has applied `revision` (any producer's), within the deadline.
    pub async fn wait_exactly(&self, stream: &ConsumerHandle, revision: i64) -> ApiResult<i64> {
        if revision <= stream.applied_revision() {
            return Ok(stream.applied_revision());
        }
        stream.wait_for(revision, self.remaining()).await
    }
}

/// Every `x-forwarded-for` value in order, joined as one list: a proxy may add its own header
/// line instead of appending to the client's, and only the whole list tells which hops were
/// added by trusted proxies.
fn forwarded_for(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let values: Vec<&str> = metadata
        .get_all(FORWARDED_FOR_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// When a wait must give up given the caller's `grpc-timeout`: a little before it, or after
/// [`DEFAULT_WAIT`].
fn deadline_after(timeout: Option<Duration>) -> Instant {
    let budget = timeout
        .map(|t| t.saturating_sub((t / 10).min(DEADLINE_MARGIN)))
        .unwrap_or(DEFAULT_WAIT);
    Instant::now() + budget
}

/// A `grpc-timeout` value (`<digits><unit>`, at most 8 digits, units H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "x", "12", "123456789S", "-1S", "+1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ws_10_the_revision_header_is_read_once_and_checked() {
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert(MIN_ORGANIZATION_REVISION_HEADER, "42".parse().unwrap());
        request
            .metadata_mut()
            .insert("grpc-timeout", "500m".parse().unwrap());
        let call = Call::of(&request).unwrap();
        assert_eq!(call.min_organization_revision, 42);
        assert!(call.remaining() <= Duration::from_millis(500));
        assert!(call.remaining() >= Duration::from_millis(400));

        let mut bad = tonic::Request::new(());
        bad.metadata_mut()
            .insert(MIN_ORGANIZATION_REVISION_HEADER, "-1".parse().unwrap());
        let err = Call::of(&bad).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn id_3_every_forwarded_for_line_is_kept_in_order() {
        let mut request = tonic::Request::new(());
        let metadata = request.metadata_mut();
        metadata.append(FORWARDED_FOR_HEADER, "203.0.113.9".parse().unwrap());
        metadata.append(FORWARDED_FOR_HEADER, "10.0.0.2, 10.0.0.3".parse().unwrap());
        let call = Call::of(&request).unwrap();
        assert_eq!(
            call.forwarded_for.as_deref(),
            Some("203.0.113.9, 10.0.0.2, 10.0.0.3")
        );
        assert_eq!(
            Call::of(&tonic::Request::new(())).unwrap().forwarded_for,
            None
        );
    }

    #[test]
    fn without_a_deadline_a_call_waits_the_default() {
        let call = Call::of(&tonic::Request::new(())).unwrap();
        assert!(call.remaining() > DEFAULT_WAIT - Duration::from_secs(1));
        assert_eq!(*call.principal, Principal::Anonymous);
    }
}
