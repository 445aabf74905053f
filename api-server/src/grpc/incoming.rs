//! The gRPC server's connections, accepted with the HTTP server's balance.
//!
//! tonic's own `TcpIncoming` accepts whenever the listener is readable, so
//! gRPC API servers sharing one socket split connections as unevenly as
//! HTTP ones did before `accept.rs`. [`incoming`] is the stream tonic serves
//! instead: each connection comes from [`accept::accept`], which defers to
//! a less-loaded peer, and is wrapped in [`Held`], which counts it as open
//! until tonic drops it. The count is published to the board at every
//! accept and every [`HEARTBEAT`], as the HTTP accept loop does.
//!
//! Accepting is cancel-safe: when tonic stops polling the stream (drain), no
//! connection has been taken from the shared socket and left unserved;
//! pending ones stay queued for the other servers. Dropping the stream drops
//! the [`LoadBoard`], which takes this server off it.
//!
//! A drain must not close a connection whose first call is on its way.
//! hyper-util's protocol detection takes a graceful shutdown before the
//! HTTP/2 preface for a cancel and drops the socket; after the preface, the
//! GOAWAY that starts a graceful shutdown makes a client that has not yet
//! sent its first request refuse to send it. Either way the client, which
//! connected before the drain, sees its call fail. So every connection is
//! fresh until its first call reaches the server (the observe layer marks
//! it through [`ConnInfo`], which tonic puts in every request's
//! extensions), and a drain first closes the [`Door`] (no more accepts, off
//! the board), then waits until no connection is fresh ([`Door::fresh`],
//! bounded by the caller), and only then asks tonic to shut down; HTTP does
//! the same with its own count (`connections.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::accept::{self, HEARTBEAT, LoadBoard};
use crate::connections::{AcceptBackoff, Fresh};
use crate::tls::{DoorTls, Stream};
use tiffin_metrics::count_guard::CountGuard;

/// What tonic puts in the extensions of every request on a [`Held`]
/// connection: the peer's address, and the connection's [`Fresh`] mark.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    /// The peer, as tonic's own `TcpConnectInfo` has it.
    pub tcp: TcpConnectInfo,
    /// Cleared by the connection's first call.
    pub fresh: Arc<Fresh>,
}

/// A gRPC connection, counted as open while it lives, and as fresh until
/// its first call begins.
pub(crate) struct Held {
    stream: Stream,
    tcp: TcpConnectInfo,
    _open: CountGuard<Arc<AtomicUsize>>,
    fresh: Arc<Fresh>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.fresh.begun();
    }
}

impl Connected for Held {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.tcp.clone(),
            fresh: Arc::clone(&self.fresh),
        }
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

struct Accepting {
    listener: AsyncFd<std::net::TcpListener>,
    board: Option<LoadBoard>,
    open: Arc<AtomicUsize>,
    fresh: Arc<AtomicUsize>,
    backoff: AcceptBackoff,
    heartbeat: Interval,
    closed: watch::Receiver<bool>,
    /// TLS for every accepted connection (`api_server.ssl`), with the watch
    /// that reloads its files: it ends when accepting does.
    tls: Option<DoorTls>,
}

/// The accepting side of a gRPC server, as its drain sees it.
pub(crate) struct Door {
    close: watch::Sender<bool>,
    fresh: Arc<AtomicUsize>,
}

impl Door {
    /// Stops accepting: the stream drops the listener and the board (so the
    /// other servers take every new connection) and then never yields again.
    pub fn close(&self) {
        let _ = self.close.send(true);
    }

    /// Connections accepted on which no call has begun yet.
    pub fn fresh(&self) -> &AtomicUsize {
        &self.fresh
    }
}

/// The connections of the shared `listener`, balanced over the servers of
/// `board` (`None`: accept as they come), and the [`Door`] that stops them.
pub(crate) fn incoming(
    listener: AsyncFd<std::net::TcpListener>,
    board: Option<LoadBoard>,
    backoff: AcceptBackoff,
    tls: Option<DoorTls>,
) -> (impl futures::Stream<Item = io::Result<Held>>, Door) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (close, closed) = watch::channel(false);
    let fresh = Arc::new(AtomicUsize::new(0));
    let state = Accepting {
        listener,
        board,
        open: Arc::new(AtomicUsize::new(0)),
        fresh: Arc::clone(&fresh),
        backoff,
        heartbeat,
        closed,
        tls,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if *st.closed.borrow() {
                drop(st);
                // tonic keeps polling until its own shutdown signal, which
                // comes once no connection is fresh.
                return std::future::pending().await;
            }
            let open = &st.open;
            tokio::select! {
                _ = st.closed.changed() => {
                    // Closed, or the door is gone with its server: stop either way.
                    drop(st);
                    return std::future::pending().await;
                }
                _ = st.heartbeat.tick() => {
                    if let Some(board) = &st.board {
                        board.publish(open.load(Ordering::Relaxed));
                    }
                }
                accepted = accept::accept(
                    &st.listener,
                    st.board.as_ref(),
                    || open.load(Ordering::Relaxed),
                ) => match accepted {
                    Ok((stream, _client)) => {
                        st.backoff.succeeded();
                        let _ = stream.set_nodelay(true);
                        let (counted, before) = CountGuard::enter_after(Arc::clone(open));
                        if let Some(board) = &st.board {
                            board.publish(before + 1);
                        }
                        let tcp = stream.connect_info();
                        let held = Held {
                            stream: crate::tls::wrap(st.tls.as_ref(), stream),
                            tcp,
                            _open: counted,
                            fresh: Fresh::new(&st.fresh),
                        };
                        return Some((Ok(held), st));
                    }
                    Err(e) => tokio::time::sleep(st.backoff.failed(&e)).await,
                },
            }
        }
    });
    (stream, Door { close, fresh })
}
