//! One multiplexed request/response connection over a Unix socket: the only
//! place in tiffin that pairs replies with requests.
//!
//! Every socket (API server → runner worker, worker → supervisor, CLI →
//! supervisor) carries [`Envelope`]s: a request with an id, the reply with
//! the same id, or a one-way event. Either side may send any of them, so the
//! supervisor can ask a worker for a snapshot on the same connection on which
//! the worker asks the supervisor for a scrape.
//!
//! The life of a connection has two steps:
//!
//! 1. **[`Opening`]**: the hello exchange, one frame at a time and bounded by
//!    [`HANDSHAKE_TIMEOUT`]. The opener sends its hello as a request; the
//!    acceptor reads it, decides, and replies (welcome or refusal).
//! 2. **[`Connection`]**: [`Opening::start`] spawns a reader task and a
//!    writer task. The reader hands replies to their waiting
//!    [`Connection::request`] and every other frame to the handler given at
//!    start, inline, so answering a snapshot request never waits behind the
//!    process's own work. The writer batches whatever is queued into one
//!    write; a large frame goes out from its own buffer, uncopied.
//!
//! Messages are encoded by the sender, before they are queued: a message
//! that cannot be encoded or exceeds the frame limit is an error for that one
//! call ([`ConnectionError::Frame`]), and the connection carries on. When the
//! connection ends, from either side, from a failed write or a malformed
//! frame, every request waiting on it fails at once with
//! [`ConnectionError::Lost`], later sends fail with
//! [`ConnectionError::Closed`], and [`Connection::closed`] resolves. A
//! failed write stops sending at once but lets the reader finish what the
//! peer had already sent, so a peer's last words are never lost.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::FramedRead;

use crate::frame::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, encode_frame};

/// How long each step of the hello exchange may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What travels in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope<M> {
    /// A message that expects a reply carrying the same id.
    Request {
        /// Chosen by the sender, unique among its outstanding requests.
        id: u64,
        /// The message.
        body: M,
    },
    /// The answer to the peer's request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        body: M,
    },
    /// A message that expects no answer.
    Event(M),
}

/// A frame the peer sent that is not a reply to one of ours.
#[derive(Debug)]
pub enum Incoming<M> {
    /// The peer expects an answer: give it with [`Connection::reply`] and `id`.
    Request {
        /// Echo this in the reply.
        id: u64,
        /// The message.
        body: M,
    },
    /// The peer expects no answer.
    Event(M),
}

/// Why a message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The connection had already ended (or could no longer write): the
    /// message was surely not sent.
    #[error("connection to {peer} is closed")]
    Closed {
        /// Who the connection was with.
        peer: String,
    },
    /// The request was sent, but the connection ended before the answer came.
    #[error("connection to {peer} was lost before it answered")]
    Lost {
        /// Who the connection was with.
        peer: String,
    },
    /// This one message could not be framed (too large, or not encodable);
    /// the connection itself is unaffected.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A hello step did not complete within [`HANDSHAKE_TIMEOUT`].
    #[error("{peer} did not complete the handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout {
        /// Who the connection was with.
        peer: String,
    },
    /// The peer broke the hello exchange (sent something other than the
    /// expected request or reply).
    #[error("unexpected handshake message from {peer}: {what}")]
    Handshake {
        /// Who the connection was with.
        peer: String,
        /// What came instead.
        what: String,
    },
}

type Decoder<In> = FrameCodec<Envelope<In>, ()>;

/// A socket during its hello exchange: frames are read and written one at a
/// time, then [`Opening::start`] turns it into a [`Connection`].
pub struct Opening<Out, In> {
    peer: String,
    reader: FramedRead<OwnedReadHalf, Decoder<In>>,
    writer: OwnedWriteHalf,
    max_frame: usize,
    _out: std::marker::PhantomData<fn(Out)>,
}

impl<Out, In> Opening<Out, In>
where
    Out: Serialize + Send + 'static,
    In: DeserializeOwned + Send + 'static,
{
    /// Wraps a connected socket; `peer` names the other side in logs and errors.
    pub fn new(stream: UnixStream, peer: impl Into<String>) -> Self {
        let (read, write) = stream.into_split();
        Self {
            peer: peer.into(),
            reader: FramedRead::new(read, FrameCodec::new(DEFAULT_MAX_FRAME)),
            writer: write,
            max_frame: DEFAULT_MAX_FRAME,
            _out: std::marker::PhantomData,
        }
    }

    /// Opener side: sends `hello` as request 0 and returns the peer's reply.
    pub async fn hello(&mut self, hello: Out) -> Result<In, ConnectionError> {
        self.write(&Envelope::Request { id: 0, body: hello })
            .await?;
        match self.read().await? {
            Envelope::Reply { id: 0, body } => Ok(body),
            Envelope::Reply { id, .. } => Err(self.unexpected(format!("a reply to request {id}"))),
            Envelope::Request { .. } => Err(self.unexpected("a request".into())),
            Envelope::Event(_) => Err(self.unexpected("an event".into())),
        }
    }

    /// Acceptor side: reads the peer's hello; answer it with [`Opening::reply`].
    pub async fn accept(&mut self) -> Result<(u64, In), ConnectionError> {
        match self.read().await? {
            Envelope::Request { id, body } => Ok((id, body)),
            Envelope::Reply { .. } => Err(self.unexpected("a reply".into())),
            Envelope::Event(_) => Err(self.unexpected("an event".into())),
        }
    }

    /// Answers the hello request `id` (a welcome or a refusal).
    pub async fn reply(&mut self, id: u64, body: Out) -> Result<(), ConnectionError> {
        self.write(&Envelope::Reply { id, body }).await
    }

    /// Starts the reader and writer tasks. `handler` gets every request and
    /// event of the peer, in order, on the reader task; it is dropped when
    /// the connection ends.
    pub fn start<H>(self, mut handler: H) -> Connection<Out, In>
    where
        H: FnMut(Incoming<In>, &Connection<Out, In>) + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let conn = Connection {
            _out: std::marker::PhantomData,
            inner: Arc::new(Inner {
                peer: self.peer,
                tx,
                pending: Mutex::default(),
                next_id: AtomicU64::new(1),
                closed: closed_tx,
                closed_rx: closed_rx.clone(),
                max_frame: self.max_frame,
            }),
        };
        tokio::spawn(write_loop(
            self.writer,
            rx,
            conn.inner.clone(),
            closed_rx.clone(),
        ));
        let reader_conn = conn.clone();
        let mut reader = self.reader;
        let mut closed = closed_rx;
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = reader.next() => frame,
                    _ = closed.wait_for(|c| *c) => break,
                };
                match frame {
                    Some(Ok(Envelope::Reply { id, body })) => {
                        let waiter = reader_conn.inner.pending().remove(&id);
                        if let Some(w) = waiter {
                            let _ = w.send(body);
                        }
                    }
                    Some(Ok(Envelope::Request { id, body })) => {
                        handler(Incoming::Request { id, body }, &reader_conn)
                    }
                    Some(Ok(Envelope::Event(body))) => handler(Incoming::Event(body), &reader_conn),
                    Some(Err(FrameError::Io(e))) => {
                        tracing::debug!(peer = %reader_conn.inner.peer, error = %e, "connection closed");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::error!(peer = %reader_conn.inner.peer, error = %e, "malformed frame; closing the connection");
                        break;
                    }
                    None => break,
                }
            }
            reader_conn.inner.close();
        });
        conn
    }

    async fn write(&mut self, env: &Envelope<Out>) -> Result<(), ConnectionError> {
        let bytes = encode_frame(env, self.max_frame)?;
        let peer = self.peer.clone();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.writer.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ConnectionError::Closed { peer }),
            Err(_) => Err(ConnectionError::HandshakeTimeout { peer }),
        }
    }

    async fn read(&mut self) -> Result<Envelope<In>, ConnectionError> {
        let peer = self.peer.clone();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.reader.next()).await {
            Ok(Some(Ok(env))) => Ok(env),
            Ok(Some(Err(FrameError::Io(_))) | None) => Err(ConnectionError::Closed { peer }),
            Ok(Some(Err(e))) => Err(ConnectionError::Frame(e)),
            Err(_) => Err(ConnectionError::HandshakeTimeout { peer }),
        }
    }

    fn unexpected(&self, what: String) -> ConnectionError {
        ConnectionError::Handshake {
            peer: self.peer.clone(),
            what,
        }
    }
}

/// What the writer task is asked to do.
enum Command {
    /// Write one encoded frame, length prefix included ([`encode_frame`]).
    Frame(Bytes),
    /// Write everything queued before this, flush, say so, and end.
    Finish(oneshot::Sender<()>),
}

struct Inner<In> {
    peer: String,
    tx: mpsc::UnboundedSender<Command>,
    pending: Mutex<HashMap<u64, oneshot::Sender<In>>>,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
    closed_rx: watch::Receiver<bool>,
    max_frame: usize,
}

impl<In> Inner<In> {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<In>>> {
        self.pending.lock()
    }

    fn is_closed(&self) -> bool {
        *self.closed_rx.borrow()
    }

    /// Marks the connection ended, then fails every waiting request (in this
    /// order, so a request registered after the drain sees the mark).
    fn close(&self) {
        self.closed.send_replace(true);
        let waiters: Vec<_> = self.pending().drain().collect();
        drop(waiters);
    }
}

/// A started connection; cheap to clone, every clone is the same connection.
pub struct Connection<Out, In> {
    inner: Arc<Inner<In>>,
    _out: std::marker::PhantomData<fn(Out)>,
}

impl<Out, In> Clone for Connection<Out, In> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _out: std::marker::PhantomData,
        }
    }
}

impl<Out, In> fmt::Debug for Connection<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.inner.peer)
            .field("closed", &self.inner.is_closed())
            .finish()
    }
}

/// The reply to a request sent with [`Connection::send_request`]: a future
/// that owns its waiter, and removes it if dropped before the reply comes.
pub struct PendingReply<In> {
    id: u64,
    rx: oneshot::Receiver<In>,
    inner: Arc<Inner<In>>,
    armed: bool,
}

impl<In> PendingReply<In> {
    /// The request's envelope id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<In> fmt::Debug for PendingReply<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("id", &self.id)
            .finish()
    }
}

impl<In> std::future::Future for PendingReply<In> {
    type Output = Result<In, ConnectionError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let answer = std::task::ready!(std::pin::Pin::new(&mut self.rx).poll(cx));
        self.armed = false;
        std::task::Poll::Ready(answer.map_err(|_| ConnectionError::Lost {
            peer: self.inner.peer.clone(),
        }))
    }
}

impl<In> Drop for PendingReply<In> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.pending().remove(&self.id);
        }
    }
}

impl<Out: Serialize, In> Connection<Out, In> {
    /// Who the connection is with.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Whether messages can still be sent (the connection has not ended and
    /// its writer has not failed).
    pub fn is_open(&self) -> bool {
        !self.inner.is_closed() && !self.inner.tx.is_closed()
    }

    /// Resolves once the connection has ended (from either side).
    pub async fn closed(&self) {
        let mut rx = self.inner.closed_rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends `body` as a request and waits for the reply. The wait has no
    /// bound of its own beyond the connection's life: callers bound it.
    pub async fn request(&self, body: Out) -> Result<In, ConnectionError> {
        self.send_request(|_| body)?.await
    }

    /// Sends a request whose body is made from its id, and answers the
    /// pending reply at once: a caller that expects events tied to the
    /// request (a streamed call's items) knows the id before anything can
    /// arrive, and the reply's future borrows nothing.
    pub fn send_request(
        &self,
        body: impl FnOnce(u64) -> Out,
    ) -> Result<PendingReply<In>, ConnectionError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = body(id);
        let (tx, rx) = oneshot::channel();
        self.inner.pending().insert(id, tx);
        let pending = PendingReply {
            id,
            rx,
            inner: Arc::clone(&self.inner),
            armed: true,
        };
        // Checked after registering: a close in between has drained the map.
        if self.inner.is_closed() {
            return Err(self.closed_error());
        }
        self.enqueue(&Envelope::Request { id, body: &body })?;
        Ok(pending)
    }

    /// Sends `body` as an event (no reply expected).
    pub fn send(&self, body: Out) -> Result<(), ConnectionError> {
        self.enqueue(&Envelope::Event(&body))
    }

    /// Answers the peer's request `id`.
    pub fn reply(&self, id: u64, body: Out) -> Result<(), ConnectionError> {
        self.enqueue(&Envelope::Reply { id, body: &body })
    }

    /// Writes and flushes everything sent so far, then ends the connection.
    /// Waits at most `limit` for the peer to take the bytes.
    pub async fn finish(&self, limit: Duration) {
        let (done, flushed) = oneshot::channel();
        if self.inner.tx.send(Command::Finish(done)).is_ok() {
            let _ = tokio::time::timeout(limit, flushed).await;
        }
        self.inner.close();
    }

    fn enqueue(&self, env: &Envelope<&Out>) -> Result<(), ConnectionError> {
        if self.inner.is_closed() {
            return Err(self.closed_error());
        }
        let frame = encode_frame(env, self.inner.max_frame)?;
        self.inner
            .tx
            .send(Command::Frame(frame))
            .map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> ConnectionError {
        ConnectionError::Closed {
            peer: self.inner.peer.clone(),
        }
    }
}

/// Frames at least this long are written from their own buffer; shorter ones
/// are gathered into one buffer, so that many small frames queued at once
/// leave in one write (copying them costs less than a write each).
const DIRECT_WRITE: usize = 16 * 1024;

/// Gathered small frames are written once they reach this much, so that the
/// gathering buffer stays small however much is queued.
const GATHER_LIMIT: usize = 64 * 1024;

async fn write_loop<In>(
    mut sink: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Command>,
    inner: Arc<Inner<In>>,
    mut closed: watch::Receiver<bool>,
) {
    let mut finished = None;
    let mut gathered = BytesMut::new();
    let result: std::io::Result<()> = async {
        loop {
            let first = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = closed.wait_for(|c| *c) => None,
            };
            let Some(first) = first else { return Ok(()) };
            let mut next = Some(first);
            // Everything already queued goes out together: small frames in
            // one write, each large one from its own buffer.
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Frame(frame) if frame.len() >= DIRECT_WRITE => {
                        sink.write_all_buf(&mut gathered).await?;
                        sink.write_all(&frame).await?;
                    }
                    Command::Frame(frame) => {
                        gathered.extend_from_slice(&frame);
                        if gathered.len() >= GATHER_LIMIT {
                            sink.write_all_buf(&mut gathered).await?;
                        }
                    }
                    Command::Finish(done) => {
                        finished = Some(done);
                        break;
                    }
                }
                next = rx.try_recv().ok();
            }
            sink.write_all_buf(&mut gathered).await?;
            if finished.is_some() {
                return Ok(());
            }
        }
    }
    .await;
    match (result, finished) {
        (Ok(()), Some(done)) => {
            inner.close();
            let _ = done.send(());
        }
        (Ok(()), None) => inner.close(),
        // The peer stopped reading. Sending fails from now on (the queue is
        // gone), but the reader goes on to the end of what the peer sent:
        // its last words (a reply, a drain notice) must not be lost.
        (Err(e), finished) => {
            tracing::warn!(peer = %inner.peer, error = %e, "write failed; no more sending on this connection");
            drop(finished);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Side = Connection<String, String>;

    /// Both ends of a socket pair, past the hello exchange.
    async fn opened() -> (Opening<String, String>, Opening<String, String>) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut opener = Opening::<String, String>::new(a, "acceptor");
        let mut acceptor = Opening::<String, String>::new(b, "opener");
        let (hello, ()) = tokio::join!(opener.hello("hi".into()), async {
            let (id, body) = acceptor.accept().await.unwrap();
            acceptor.reply(id, format!("welcome {body}")).await.unwrap();
        });
        assert_eq!(hello.unwrap(), "welcome hi");
        (opener, acceptor)
    }

    /// Two started connections; the acceptor answers requests with the
    /// upper-cased body and forwards events to the returned channel.
    async fn pair() -> (Side, Side, mpsc::UnboundedReceiver<String>) {
        let (opener, acceptor) = opened().await;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let echo = move |msg: Incoming<String>, conn: &Side| match msg {
            Incoming::Request { id, body } => conn.reply(id, body.to_uppercase()).unwrap(),
            Incoming::Event(body) => events_tx.send(body).unwrap(),
        };
        let b_side = acceptor.start(echo);
        let a_side = opener.start(|_, _| {});
        (a_side, b_side, events_rx)
    }

    #[tokio::test]
    async fn replies_find_their_requests_whatever_the_order() {
        let (a, _b, _events) = pair().await;
        let calls = (0..200).map(|i| {
            let a = a.clone();
            async move { a.request(format!("call {i}")).await.unwrap() }
        });
        let answers = futures::future::join_all(calls).await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer, &format!("CALL {i}"));
        }
        assert!(a.inner.pending().is_empty());
    }

    #[tokio::test]
    async fn events_arrive_in_order_on_the_handler() {
        let (a, _b, mut events) = pair().await;
        for i in 0..10 {
            a.send(format!("e{i}")).unwrap();
        }
        for i in 0..10 {
            assert_eq!(events.recv().await.unwrap(), format!("e{i}"));
        }
    }

    #[tokio::test]
    async fn a_request_waiting_when_the_peer_goes_away_fails_at_once() {
        let (opener, acceptor) = opened().await;
        // The peer never answers requests, then hangs up.
        let silent = acceptor.start(|_, _| {});
        let conn = opener.start(|_, _| {});
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.request("anyone?".into()).await }
        });
        tokio::task::yield_now().await;
        silent.finish(Duration::from_secs(1)).await;
        let err = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request must not hang")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ConnectionError::Lost { .. }), "{err}");
        tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("closed() resolves");
        let err = conn.send("late".into()).unwrap_err();
        assert!(matches!(err, ConnectionError::Closed { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_message_over_the_frame_limit_fails_alone() {
        let (a, _b, _events) = pair().await;
        let huge = "x".repeat(DEFAULT_MAX_FRAME + 1);
        let err = a.request(huge).await.unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::Frame(FrameError::TooLarge { .. })
        ));
        assert!(
            a.inner.pending().is_empty(),
            "the failed request left a waiter"
        );
        assert_eq!(a.request("still here".into()).await.unwrap(), "STILL HERE");
    }

    #[tokio::test]
    async fn finish_delivers_what_was_sent_before_it() {
        let (a, _b, mut events) = pair().await;
        for i in 0..100 {
            a.send(format!("last words {i}")).unwrap();
        }
        a.finish(Duration::from_secs(5)).await;
        for i in 0..100 {
            assert_eq!(events.recv().await.unwrap(), format!("last words {i}"));
        }
        assert!(!a.is_open());
    }

    #[tokio::test]
    async fn an_abandoned_request_leaves_no_waiter_behind() {
        let (opener, acceptor) = opened().await;
        let _silent = acceptor.start(|_, _| {});
        let conn = opener.start(|_, _| {});
        let gave_up =
            tokio::time::timeout(Duration::from_millis(20), conn.request("?".into())).await;
        assert!(gave_up.is_err());
        assert!(conn.inner.pending().is_empty());
    }

    #[tokio::test]
    async fn a_hello_that_is_not_a_request_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut raw = a;
        let event = encode_frame(&Envelope::Event("hi".to_string()), 1024).unwrap();
        raw.write_all(&event).await.unwrap();
        let mut acceptor = Opening::<String, String>::new(b, "raw");
        let err = acceptor.accept().await.unwrap_err();
        assert!(matches!(err, ConnectionError::Handshake { .. }), "{err}");
    }
}
