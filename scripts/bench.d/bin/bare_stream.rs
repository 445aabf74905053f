//! The streaming benchmark's reference (scripts/bench section `stream`): the
//! built-in `text_generator`'s model (`tiffin_builtins::generate`) served
//! at `POST /generate` by bare hyper, in the same wire format as tiffin
//! (Server-Sent Events, one `data: <token>` event per token as its own
//! chunk, then `event: end`), with no runner hop, no IPC, no credit window:
//! the limit of streaming that model over hyper. The tokens are drawn in the
//! response body's `poll_frame`, one per frame, with `pace_ms` waited on a
//! tokio timer before each. Built as the root package's example
//! `bare_stream` (Cargo.toml).

mod body;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tiffin_builtins::generate::{Model, Request as Generate, Tokens};

/// The SSE ending tiffin writes (`tiffin_service::StreamFormat::EventStream`).
const END: &[u8] = b"event: end\ndata: \n\n";

/// A response body drawing one token per frame.
struct TokenBody {
    tokens: Tokens,
    pace: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl Body for TokenBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if !self.pace.is_zero() {
            let pace = self.pace;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pace)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let frame = match self.tokens.next() {
            Some(token) => Bytes::from(format!("data: {token}\n\n")),
            None => {
                self.ended = true;
                Bytes::from_static(END)
            }
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

type Answer = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn refuse(status: StatusCode, message: String) -> Answer {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r
}

async fn generate(model: Arc<Model>, req: Request<hyper::body::Incoming>) -> Answer {
    if req.uri().path() != "/generate" {
        return refuse(StatusCode::NOT_FOUND, "POST /generate".into());
    }
    // An empty body reads as "hello", which is not JSON: 400, as tiffin.
    let body = body::or_hello(req).await;
    let request = serde_json::from_slice(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| Generate::from_json(v).map_err(|e| e.message));
    let request = match request {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let body = TokenBody {
        tokens: Tokens::new(model, &request),
        pace: Duration::from_millis(request.pace_ms),
        sleep: None,
        ended: false,
    };
    let mut r = Response::new(body.boxed());
    let headers = r.headers_mut();
    headers.insert("content-type", "text/event-stream".parse().expect("static"));
    headers.insert("cache-control", "no-cache".parse().expect("static"));
    r
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3900".into());
    let model = Arc::new(Model::builtin().map_err(std::io::Error::other)?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare stream listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let model = model.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let model = model.clone();
                async move { Ok::<_, Infallible>(generate(model, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
