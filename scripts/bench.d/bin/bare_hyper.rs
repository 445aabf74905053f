//! The benchmark reference: a bare hyper 1 HTTP/1.1 server that answers every
//! request with its body (or "hello"), in one process on tokio's
//! multi-threaded runtime (a thread a core). `scripts/bench` reports tiffin's
//! throughput as a ratio of this.
//! Built as the root package's example `bare_hyper` (Cargo.toml).
//!
//! `BARE_SPIN_NS=N` makes it spin N ns of CPU per request: the embedded
//! section's `bare_spin*` rows use it to say how much work per request a server can add
//! to bare hyper's and still serve a given share of its requests.

mod body;

use std::convert::Infallible;

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3900".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare hyper listening on {addr}");
    let spin = match std::env::var("BARE_SPIN_NS") {
        Ok(v) => match v.parse::<u64>() {
            Ok(ns) => Some(std::time::Duration::from_nanos(ns)),
            // A typo must not measure bare hyper under a spin row's name.
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "BARE_SPIN_NS={v:?} is not a number of nanoseconds: {e}"
                )));
            }
        },
        Err(_) => None,
    };
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let body = body::or_hello(req).await;
                if let Some(spin) = spin {
                    let start = std::time::Instant::now();
                    while start.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                }
                Ok::<_, Infallible>(Response::new(Full::new(body)))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
