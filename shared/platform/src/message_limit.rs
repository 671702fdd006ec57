//! The request message limit, answered as the API's status table says: RESOURCE_EXHAUSTED
//! `MESSAGE_TOO_LARGE` with the limit in bytes, on every service and every RPC of a server.
//!
//! The layer reads the 5-byte prefix of each gRPC frame of the request body (compression flag,
//! 32-bit length) as the bytes pass, before tonic decodes anything: a frame announcing more
//! than the limit ends the body with that error, which tonic answers as the call's status. So
//! the answer depends on the framing only, not on the wording of tonic's own OUT_OF_RANGE
//! refusal, and the oversized message is never buffered.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Request;
use http_body::Frame;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::error::Reason;

/// The ErrorInfo reason of a request message over the server's limit.
pub const MESSAGE_TOO_LARGE: Reason = Reason::MessageTooLarge;

/// Refuses request messages longer than `limit` bytes with RESOURCE_EXHAUSTED
/// [`MESSAGE_TOO_LARGE`] (metadata `limit_bytes`, `message_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct MessageLimitLayer {
    limit: usize,
}

impl MessageLimitLayer {
    /// A layer refusing messages over `limit` bytes (the server's `max_message_bytes`).
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// The service produced by [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<Request<Body>> for MessageLimit<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let limit = self.limit;
        self.inner
            .call(req.map(|body| Body::new(LimitedBody::new(body, limit))))
    }
}

/// The error for a message of `len` bytes over `limit`.
pub fn too_large(len: u64, limit: usize) -> ApiError {
    ApiError::quota_exceeded(
        MESSAGE_TOO_LARGE,
        "request message size",
        format!("the request message is {len} bytes; the limit is {limit} bytes"),
    )
    .with_metadata("limit_bytes", limit.to_string())
    .with_metadata("message_bytes", len.to_string())
}

/// Length of a gRPC frame prefix: compression flag and big-endian 32-bit length.
const PREFIX: usize = 5;

/// A request body that follows the gRPC framing of the bytes it passes on.
struct LimitedBody {
    inner: Body,
    limit: usize,
    /// The prefix being read, and how much of it arrived.
    prefix: [u8; PREFIX],
    have: usize,
    /// Bytes of the current message still to pass.
    remaining: u64,
    /// The limit was exceeded: the body ended with the error.
    refused: bool,
}

impl LimitedBody {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            prefix: [0; PREFIX],
            have: 0,
            remaining: 0,
            refused: false,
        }
    }

    /// Follows the frames through `data`; the first announced length over the limit is an error.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = data.len().min(PREFIX - self.have);
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == PREFIX {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u64::from(u32::from_be_bytes([a, b, c, d]));
                if len > self.limit as u64 {
                    return Err(too_large(len, self.limit));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.refused {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
            && let Some(data) = data
            && let Err(e) = self.scan(data)
        {
            self.refused = true;
            return Poll::Ready(Some(Err(e.into())));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7, len as usize));
        out
    }

    #[test]
    fn prefixes_are_followed_across_chunks_and_frames() {
        let mut body = LimitedBody::new(Body::empty(), 10);
        let mut bytes = frame(10);
        bytes.extend(frame(3));
        // Every split point, byte by byte: within the limit passes.
        for chunk in bytes.chunks(1) {
            body.scan(chunk).unwrap();
        }
        assert_eq!((body.have, body.remaining), (0, 0));
        let mut bytes = frame(4);
        bytes.extend_from_slice(&[0, 0, 0]);
        body.scan(&bytes).unwrap();
        let refused = body.scan(&[0, 11]).unwrap_err();
        assert_eq!(refused.error_reason(), MESSAGE_TOO_LARGE);
        assert_eq!(refused.code(), crate::error::Code::ResourceExhausted);
    }
}
