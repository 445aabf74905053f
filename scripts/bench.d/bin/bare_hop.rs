//! The benchmark's second reference: bare hyper plus one process hop, the
//! least any server costs whose HTTP front end hands each request to another
//! process (as tiffin's API server hands it to a runner worker).
//!
//! `bare_hop ADDR` starts itself again as the back process (`bare_hop back
//! SOCKET`), then serves HTTP/1.1 on ADDR like `bare_hyper`, except that each
//! request body (or "hello") goes over a Unix socket to the back process,
//! which returns it, and that reply is the response. Each HTTP connection
//! has its own Unix connection, so there is no multiplexing, no id, no lock
//! and no retry buffer: only the two extra processes' reads, writes and
//! wake-ups that a hop cannot avoid. Frames are a 4-byte little-endian
//! length and the bytes. `scripts/bench` reports tiffin's `echo` against it
//! to separate what the hop costs from what tiffin adds to it. Built as the
//! root package's example `bare_hop` (Cargo.toml).

mod body;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

/// Frames above this are refused: the hop never needs more than the
/// benchmark's largest body (1 MB).
const MAX_FRAME: usize = 64 << 20;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("back") {
        let socket = args.get(2).map(PathBuf::from).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "back needs a socket")
        })?;
        // One thread: the back process only copies bytes.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(back(&socket));
    }
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3901".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(front(&addr))
}

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes one frame with one write.
async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "body too long"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame).await
}

async fn back(socket: &Path) -> std::io::Result<()> {
    let listener = UnixListener::bind(socket)?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            while let Ok(Some(body)) = read_frame(&mut r).await {
                if write_frame(&mut w, &body).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn front(addr: &str) -> std::io::Result<()> {
    let dir = std::env::temp_dir().join(format!("tiffin-bare-hop-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("back.sock");
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("back")
        .arg(&socket)
        .kill_on_drop(true)
        .spawn()?;
    // The back process binds its socket within milliseconds; wait at most 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while UnixStream::connect(&socket).await.is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill().await;
            return Err(std::io::Error::other("the back process did not listen"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare hyper with one hop listening on {addr}");
    let serve = async {
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let socket = socket.clone();
            tokio::spawn(async move {
                let Ok(hop) = UnixStream::connect(&socket).await else {
                    return;
                };
                let (r, w) = hop.into_split();
                // hyper serves one request at a time per HTTP/1.1 connection,
                // so this lock is never contended: it only lends the halves.
                let hop = Arc::new(Mutex::new((BufReader::new(r), w)));
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let hop = Arc::clone(&hop);
                    async move {
                        let body = body::or_hello(req).await;
                        let mut hop = hop.lock().await;
                        let (r, w) = &mut *hop;
                        let reply = match write_frame(w, &body).await {
                            Ok(()) => read_frame(r).await,
                            Err(e) => Err(e),
                        };
                        Ok::<_, Infallible>(match reply {
                            Ok(Some(reply)) => Response::new(Full::new(Bytes::from(reply))),
                            _ => {
                                let mut r = Response::new(Full::new(Bytes::from_static(b"hop")));
                                *r.status_mut() = StatusCode::BAD_GATEWAY;
                                r
                            }
                        })
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    // SIGTERM (what `scripts/bench` sends) or SIGINT: stop the back process too.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result: std::io::Result<()> = tokio::select! {
        r = serve => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
