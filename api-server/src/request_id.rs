//! Request ids: taken from the client when sane, made up otherwise, returned
//! in the response and carried to every runner call the request makes.
//!
//! # Rules
//!
//! 1. A client's `X-Request-ID` is kept when it is 1 to
//!    [`MAX_REQUEST_ID_LEN`] bytes of visible ASCII (`!` to `~`): such a value
//!    can be echoed in a header and written in a log line without escaping,
//!    and its size is bounded whatever the client sends. Anything else is
//!    replaced as if it were absent; a hostile value is never echoed.
//! 2. Without one, a valid W3C `traceparent` gives the id: its trace id, 32
//!    hex digits, so the id finds the request in the tracing backend.
//! 3. Otherwise the id is new: the trace id of the request's span when
//!    tracing is on (same reason), else 128 random bits in hex.
//!
//! The response carries it as `X-Request-ID` and as BentoML's
//! `X-BentoML-Request-ID` (`observation.rs` chooses it and sets both).
//! Runner calls take it from a task-local set around the request's handler
//! (`request_scope.rs`, as `deadline.rs` does for the deadline), so
//! `Runner::call`, which knows nothing of requests, still sends it in
//! `DataRequest::Call`, and the runner worker's log lines and errors for
//! that call carry it.
//!
//! # Cost
//!
//! One `HeaderValue` per request (a client's is shared, not copied), cloned
//! by reference count into both response headers and the task-local; one
//! small `String` per runner call for the frame.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use hyper::HeaderMap;
use hyper::header::HeaderValue;
use tiffin_telemetry::TraceContext;

pub use tiffin_ipc::proto::MAX_REQUEST_ID_LEN;

/// The client's request id header, and ours in responses.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";
/// BentoML's response header for the same id.
pub(crate) const X_BENTOML_REQUEST_ID: &str = "x-bentoml-request-id";
/// W3C trace context.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Whether a client's id may be kept (rule 1).
pub(crate) fn is_sane(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The client's `X-Request-ID` when sane, and its `traceparent` when valid.
pub(crate) fn from_headers(headers: &HeaderMap) -> (Option<HeaderValue>, Option<TraceContext>) {
    let id = headers
        .get(X_REQUEST_ID)
        .filter(|v| is_sane(v.as_bytes()))
        .cloned();
    let parent = headers
        .get(TRACEPARENT)
        .and_then(|v| tiffin_telemetry::parse_traceparent(v.as_bytes()));
    (id, parent)
}

/// The id for a request without a sane `X-Request-ID` (rules 2 and 3):
/// `trace_id` (the client's or our span's) when known, else random.
pub(crate) fn make(trace_id: Option<u128>) -> HeaderValue {
    let n = trace_id.filter(|&t| t != 0).unwrap_or_else(random_u128);
    let mut buf = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

thread_local! {
    /// SplitMix64 state, seeded once per thread from std's per-process
    /// random hash keys (which come from the OS).
    static RNG: Cell<u64> = Cell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        h.finish()
    });
}

/// 128 random bits: unique enough for ids, not for secrets.
fn random_u128() -> u128 {
    RNG.with(|state| {
        let next = || {
            let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (u128::from(next()) << 64) | u128::from(next())
    })
}

/// Sets both response headers to `id`.
pub(crate) fn set_response_headers(headers: &mut HeaderMap, id: &HeaderValue) {
    headers.insert(X_REQUEST_ID, id.clone());
    headers.insert(X_BENTOML_REQUEST_ID, id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_bounded_visible_ascii() {
        assert!(is_sane(b"abc-123_x.y"));
        assert!(is_sane(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane("é".as_bytes()));
    }

    #[test]
    fn made_ids_are_32_hex_digits_and_follow_the_trace() {
        let id = make(Some(0xabc));
        assert_eq!(id.to_str().ok(), Some("00000000000000000000000000000abc"));
        let a = make(None);
        let b = make(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
