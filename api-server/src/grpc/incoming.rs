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

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Interval, MissedTickBehavior};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::accept::{self, HEARTBEAT, LoadBoard};
use crate::connections::AcceptBackoff;
use tiffin_metrics::count_guard::CountGuard;

/// A gRPC connection, counted as open while it lives.
pub(crate) struct Held {
    stream: TcpStream,
    _open: CountGuard<Arc<AtomicUsize>>,
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
    backoff: AcceptBackoff,
    heartbeat: Interval,
}

/// The connections of the shared `listener`, balanced over the servers of
/// `board` (`None`: accept as they come).
pub(crate) fn incoming(
    listener: AsyncFd<std::net::TcpListener>,
    board: Option<LoadBoard>,
    backoff: AcceptBackoff,
) -> impl Stream<Item = io::Result<Held>> {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = Accepting {
        listener,
        board,
        open: Arc::new(AtomicUsize::new(0)),
        backoff,
        heartbeat,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let open = &st.open;
            tokio::select! {
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
                        let held = Held { stream, _open: counted };
                        return Some((Ok(held), st));
                    }
                    Err(e) => tokio::time::sleep(st.backoff.failed(&e)).await,
                },
            }
        }
    })
}
