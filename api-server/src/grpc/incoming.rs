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
//! A drain must not close a connection that was accepted but has not sent
//! its HTTP/2 preface yet: hyper-util's protocol detection treats a graceful
//! shutdown in that state as a cancel and drops the socket, and the client,
//! whose call is already on its way, sees "connection closed". So a drain
//! first closes the [`Door`] (no more accepts, off the board), then waits
//! until every connection is past its preface ([`Door::fresh`], bounded by
//! the caller), and only then asks tonic to shut down gracefully; HTTP does
//! the same with its own count (`connections.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::accept::{self, HEARTBEAT, LoadBoard};
use crate::connections::AcceptBackoff;
use tiffin_metrics::count_guard::CountGuard;

/// The bytes of the HTTP/2 client preface (RFC 9113, section 3.4), which
/// hyper-util reads before it hands a connection to HTTP/2.
const PREFACE_LEN: usize = 24;

/// A gRPC connection, counted as open while it lives, and as fresh until
/// its preface has been read.
pub(crate) struct Held {
    stream: TcpStream,
    _open: CountGuard<Arc<AtomicUsize>>,
    fresh: Option<CountGuard<Arc<AtomicUsize>>>,
    preface_left: usize,
}

impl Held {
    /// `read` more bytes arrived (0: the peer closed): once the preface is
    /// in, the connection is no longer fresh.
    fn arrived(&mut self, read: usize) {
        self.preface_left = self.preface_left.saturating_sub(read);
        if read == 0 || self.preface_left == 0 {
            self.fresh = None;
        }
    }
}

impl Connected for Held {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if self.fresh.is_some() => {
                let read = buf.filled().len().saturating_sub(before);
                self.arrived(read);
            }
            Poll::Ready(Err(_)) => self.fresh = None,
            _ => {}
        }
        polled
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

    /// Connections accepted whose HTTP/2 preface has not arrived yet.
    pub fn fresh(&self) -> usize {
        self.fresh.load(Ordering::Relaxed)
    }
}

/// The connections of the shared `listener`, balanced over the servers of
/// `board` (`None`: accept as they come), and the [`Door`] that stops them.
pub(crate) fn incoming(
    listener: AsyncFd<std::net::TcpListener>,
    board: Option<LoadBoard>,
    backoff: AcceptBackoff,
) -> (impl Stream<Item = io::Result<Held>>, Door) {
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
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if *st.closed.borrow() {
                drop(st);
                // tonic keeps polling until its own shutdown signal, which
                // comes once the fresh connections are past their preface.
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
                        let held = Held {
                            stream,
                            _open: counted,
                            fresh: Some(CountGuard::enter(Arc::clone(&st.fresh))),
                            preface_left: PREFACE_LEN,
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
