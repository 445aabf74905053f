//! One accepted connection on a TLS door.
//!
//! The handshake runs inside the connection's first read or write, not in
//! the accept loop: hyper and tonic poll a [`TlsConn`] as they would a
//! `TcpStream`, and a slow or silent client holds only its own task. It is
//! bounded by [`HANDSHAKE_TIMEOUT`], after which reads fail with
//! `TimedOut` and the server drops the connection.
//!
//! Before the handshake, the first byte is peeked: every TLS connection
//! starts with a handshake record (content type 22). Anything else is a
//! client speaking plaintext to a TLS port, usually `http://` where
//! `https://` was meant; it gets a `400 Bad Request` saying so, and the
//! connection is closed, instead of a TLS alert it cannot read or a hang.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

/// The longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS record type that starts every handshake.
const HANDSHAKE_RECORD: u8 = 22;

/// What a plaintext client is told.
const PLAINTEXT_BODY: &str =
    "{\"error\":\"this port serves HTTPS (TLS): the request was plain HTTP; use https://\"}";

fn plaintext_answer() -> Vec<u8> {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAINTEXT_BODY}",
        PLAINTEXT_BODY.len()
    )
    .into_bytes()
}

enum State {
    /// Waiting for the first byte.
    Sniff(TcpStream, Arc<ServerConfig>),
    /// Handshaking.
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    /// Telling a plaintext client off: the answer and how much of it is written.
    Refuse(TcpStream, Vec<u8>, usize),
    /// Serving.
    Ready(Box<TlsStream<TcpStream>>),
    /// Failed or refused: every further call fails.
    Done,
}

/// A server-side connection that becomes TLS on first use (module docs).
pub struct TlsConn {
    state: State,
    /// The handshake's bound; dropped once it is done, so a long-lived
    /// connection holds no timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TlsConn {
    /// Wraps an accepted `stream`, to be served with `config`.
    pub fn new(stream: TcpStream, config: Arc<ServerConfig>) -> TlsConn {
        TlsConn {
            state: State::Sniff(stream, config),
            deadline: Some(Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT))),
        }
    }

    /// The TLS session once the handshake is done.
    pub fn session(&self) -> Option<&rustls::ServerConnection> {
        match &self.state {
            State::Ready(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// Drives the connection until it is serving TLS.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return Poll::Ready(Ok(())),
                State::Done => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the TLS handshake did not complete",
                    )));
                }
                State::Sniff(stream, _) => {
                    let mut first = [0u8; 1];
                    let mut buf = ReadBuf::new(&mut first);
                    match stream.poll_peek(cx, &mut buf) {
                        Poll::Pending => return self.pending_or_timeout(cx),
                        Poll::Ready(Err(e)) => {
                            self.state = State::Done;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(0)) => {
                            self.state = State::Done;
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        Poll::Ready(Ok(_)) => {}
                    }
                    let State::Sniff(stream, config) =
                        std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!("matched Sniff above")
                    };
                    self.state = if first[0] == HANDSHAKE_RECORD {
                        State::Handshake(Box::new(
                            tokio_rustls::TlsAcceptor::from(config).accept(stream),
                        ))
                    } else {
                        State::Refuse(stream, plaintext_answer(), 0)
                    };
                }
                State::Handshake(accept) => match Pin::new(accept.as_mut()).poll(cx) {
                    Poll::Pending => return self.pending_or_timeout(cx),
                    Poll::Ready(Ok(tls)) => {
                        self.state = State::Ready(Box::new(tls));
                        self.deadline = None;
                    }
                    Poll::Ready(Err(e)) => {
                        self.state = State::Done;
                        return Poll::Ready(Err(e));
                    }
                },
                State::Refuse(stream, answer, written) => {
                    while *written < answer.len() {
                        match Pin::new(&mut *stream).poll_write(cx, &answer[*written..]) {
                            Poll::Pending => return self.pending_or_timeout(cx),
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                            Poll::Ready(Ok(n)) => *written += n,
                        }
                    }
                    let _ = Pin::new(&mut *stream).poll_shutdown(cx);
                    self.state = State::Done;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a plaintext request on a TLS port (answered 400)",
                    )));
                }
            }
        }
    }

    /// `Pending`, unless the handshake deadline has passed.
    fn pending_or_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            self.state = State::Done;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake took too long",
            )));
        }
        Poll::Pending
    }

    fn ready_stream(&mut self) -> Pin<&mut TlsStream<TcpStream>> {
        match &mut self.state {
            State::Ready(s) => Pin::new(s.as_mut()),
            _ => unreachable!("poll_ready returned Ready(Ok)"),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        this.ready_stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        this.ready_stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        this.ready_stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Ready(_) => this.ready_stream().poll_flush(cx),
            // Nothing of ours is buffered before the handshake.
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(_) => this.ready_stream().poll_shutdown(cx),
            State::Sniff(s, _) | State::Refuse(s, _, _) => Pin::new(s).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}
