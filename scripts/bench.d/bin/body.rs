//! What both reference servers answer with: the request's body, or "hello"
//! when it is empty. Shared so that bare hyper and bare hop read bodies the
//! same way and differ only by the hop.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;

/// The whole body of `req` (a body that fails to arrive counts as empty),
/// or "hello" when it is empty.
pub async fn or_hello(req: Request<hyper::body::Incoming>) -> Bytes {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if body.is_empty() {
        Bytes::from_static(b"hello")
    } else {
        body
    }
}
