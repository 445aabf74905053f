//! The messages exchanged over tiffin's Unix sockets.
//!
//! Two kinds of connection exist:
//! - **data**: an API server calls a runner worker (`DataRequest` /
//!   `DataResponse`); many calls share one connection.
//! - **control**: every worker process, and the `tiffin status`/`scale` CLI,
//!   talks to the supervisor (`ToSupervisor` / `FromSupervisor`).
//!
//! Each message travels in an [`Envelope`](crate::connection::Envelope) that
//! says whether it is a request, the reply to one, or an event; which
//! variants are which is written beside each one. Each connection starts
//! with a hello carrying [`PROTOCOL_VERSION`]; a peer speaking another
//! version is refused, so a stale binary can never misinterpret frames.

use serde::{Deserialize, Serialize};

use tiffin_metrics::{Format, Snapshot};
pub use tiffin_service::CallError;

pub use crate::load::RUNNER_CALLS_IN_FLIGHT;
pub use crate::role::{API_SERVER_TARGET, API_SERVER_TARGET_ALIASES, Role};

/// The wire protocol API servers speak to clients (`serve-http` or `serve-grpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 (`serve-http`).
    #[default]
    Http,
    /// gRPC, BentoML's v1 service (`serve-grpc`).
    Grpc,
}

impl Protocol {
    /// The name used on the command line (`http` or `grpc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// A `--protocol` value that is neither `http` nor `grpc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol '{0}'; expected 'http' or 'grpc'")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(UnknownProtocol(other.to_string())),
        }
    }
}

/// Version of the wire protocol; bumped on any incompatible message change
/// (5: streamed calls, [`DataRequest::StreamCall`]).
pub const PROTOCOL_VERSION: u32 = 5;

/// First message on a control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the connecting process is.
    pub role: Role,
    /// Its process id.
    pub pid: u32,
}

/// A runner worker as API servers see it: where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerEndpoint {
    /// 1-based worker index.
    pub index: usize,
    /// Path of its data socket.
    pub socket: String,
    /// Generation number, so a restarted worker at the same index is a new endpoint.
    pub generation: u64,
}

/// Lifecycle state of a worker as reported by `tiffin status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Spawned, not yet ready.
    Starting,
    /// Serving.
    Ready,
    /// Finishing in-flight work before exiting.
    Draining,
    /// Waiting out a restart backoff.
    Backoff,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Backoff => "backoff",
        })
    }
}

/// One row of `tiffin status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Role and index.
    pub role: Role,
    /// Process id (0 while in backoff).
    pub pid: u32,
    /// Lifecycle state.
    pub state: WorkerState,
    /// Seconds since this process started.
    pub uptime_secs: f64,
    /// How many times this slot was restarted after a crash.
    pub restarts: u64,
    /// Requests this process has served, as of its last report.
    pub requests: u64,
}

/// The supervisor's answer to a status request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Name of the service being served.
    pub service: String,
    /// Supervisor process id.
    pub pid: u32,
    /// Address of the public listener.
    pub listen: String,
    /// Seconds since the supervisor started.
    pub uptime_secs: f64,
    /// Every worker slot.
    pub workers: Vec<WorkerStatus>,
    /// Every autoscaled runner (empty when none is).
    pub autoscaling: Vec<AutoscaleStatus>,
}

/// One autoscaled runner in `tiffin status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// Runner name.
    pub runner: String,
    /// Workers now (not counting those draining away).
    pub current: usize,
    /// The count the autoscaler's latest sample asks for.
    pub desired: usize,
    /// `min_workers`.
    pub min: usize,
    /// `max_workers`.
    pub max: usize,
    /// Set by `tiffin scale RUNNER N`: the count is held at N, and the
    /// autoscaler does not act until `tiffin scale RUNNER auto`.
    pub pinned: Option<usize>,
    /// The latest decision the autoscaler carried out.
    pub last: Option<AutoscaleDecision>,
}

/// One autoscaling decision, with the figures it was taken on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoscaleDecision {
    /// `up` or `down`.
    pub direction: String,
    /// Workers before.
    pub from: usize,
    /// Workers after.
    pub to: usize,
    /// Average calls in flight over the look-back window.
    pub average_in_flight: f64,
    /// Why, in words, with the figures.
    pub reason: String,
    /// Seconds since the decision.
    pub ago_secs: f64,
}

/// Messages a process sends to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// Request (the first frame): who the process is; answered with
    /// [`FromSupervisor::Welcome`] or [`FromSupervisor::Refused`].
    Hello(Hello),
    /// Event: the process is ready to serve; runner workers give their data socket.
    Ready {
        /// Data socket of a runner worker; `None` for API servers.
        socket: Option<String>,
    },
    /// Reply to [`FromSupervisor::SnapshotRequest`].
    Snapshot {
        /// Every metric of this process.
        snapshot: Snapshot,
        /// Requests served so far, for `tiffin status`.
        requests: u64,
    },
    /// Request from an API server: the aggregated exposition (a `/metrics`
    /// scrape); answered with [`FromSupervisor::Scraped`].
    Scrape {
        /// The exposition format the scrape asked for.
        format: Format,
    },
    /// Request from the CLI: describe every worker; answered with
    /// [`FromSupervisor::Status`].
    Status,
    /// Request from the CLI: set the number of workers of a runner (or
    /// `api-server`); answered with [`FromSupervisor::Scaled`].
    Scale {
        /// Runner name, or `api-server`.
        target: String,
        /// Desired number of workers.
        workers: usize,
    },
    /// Request from the CLI: hand a runner pinned by `Scale` back to its
    /// autoscaler (`tiffin scale RUNNER auto`); answered with
    /// [`FromSupervisor::Scaled`].
    Autoscale {
        /// Runner name.
        target: String,
    },
    /// Event from an API server: a call to this runner found no worker and
    /// is waiting for one (a runner autoscaled to zero starts one at once).
    CallWaiting {
        /// Runner name.
        runner: String,
    },
    /// Event: a draining process has finished its in-flight work and is
    /// exiting; the snapshot is its final one.
    Drained {
        /// Final metrics.
        snapshot: Snapshot,
    },
}

/// Messages the supervisor sends to a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromSupervisor {
    /// Reply to the hello: accepted.
    Welcome {
        /// The supervisor's protocol version.
        version: u32,
    },
    /// Reply to the hello: refused (version mismatch, unknown process...).
    Refused {
        /// Why.
        reason: String,
    },
    /// Request: a metrics snapshot; answered with [`ToSupervisor::Snapshot`].
    SnapshotRequest,
    /// Event: the current set of ready workers of a runner (sent to API servers).
    Workers {
        /// Runner name.
        runner: String,
        /// Every ready worker.
        endpoints: Vec<WorkerEndpoint>,
    },
    /// Reply to [`ToSupervisor::Scrape`]: the aggregated metrics.
    Scraped {
        /// The exposition, rendered in the format asked for.
        body: String,
    },
    /// Reply to [`ToSupervisor::Status`].
    Status {
        /// The report.
        report: StatusReport,
    },
    /// Reply to [`ToSupervisor::Scale`].
    Scaled {
        /// Ok with a human description, or the error message.
        result: Result<String, String>,
    },
    /// Event: stop taking new work, finish in-flight work, report `Drained`, exit.
    Drain,
    /// Reply to any request whose real answer could not be sent (for
    /// example, larger than the frame limit): the request failed, alone.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Messages from an API server to a runner worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataRequest {
    /// Request (the first frame); answered with [`DataResponse::Hello`].
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Request: call a method with a JSON-encoded input; answered with
    /// [`DataResponse::Result`].
    Call {
        /// Method name.
        method: String,
        /// JSON-encoded argument, shared, not copied: the API server keeps
        /// it to retry the call on another worker (the same bytes on the
        /// wire as a `Vec<u8>`).
        payload: bytes::Bytes,
        /// The request's deadline in [`crate::clock`] nanoseconds (`None`:
        /// no deadline). The worker does not start the call once it has
        /// passed, however long the call waited in a queue.
        deadline_ns: Option<u64>,
        /// The id of the client request this call serves (`X-Request-ID`),
        /// at most [`MAX_REQUEST_ID_LEN`] bytes: the worker's log lines and
        /// errors for this call carry it. Empty when the caller had none.
        #[serde(default)]
        request_id: String,
        /// The W3C trace context of the API server's span for this call
        /// (`None`: tracing is off or the call is not traced); the worker's
        /// spans are its children.
        #[serde(default)]
        trace: Option<TraceContext>,
    },
    /// Request: call a stream method (`Runnable::stream_method`). Items come
    /// back as [`DataResponse::StreamItem`] events carrying this request's
    /// envelope id, at most `window` ahead of the credits granted since
    /// ([`DataRequest::StreamCredit`], `stream.rs`); the reply,
    /// [`DataResponse::StreamEnd`], comes after the last item.
    StreamCall {
        /// Method name.
        method: String,
        /// Encoded argument, as in [`DataRequest::Call`].
        payload: bytes::Bytes,
        /// As in [`DataRequest::Call`]: the worker does not start the call
        /// once it has passed (a started stream runs on).
        deadline_ns: Option<u64>,
        /// The client request's id, as in [`DataRequest::Call`].
        request_id: String,
        /// The caller's span, as in [`DataRequest::Call`].
        trace: Option<TraceContext>,
        /// Items the worker may send before its first credit.
        window: u32,
    },
    /// Event: the caller took `items` more items of the stream `call` (a
    /// [`DataRequest::StreamCall`]'s envelope id): the worker may send that
    /// many more.
    StreamCredit {
        /// The stream call's envelope id.
        call: u64,
        /// How many more items may be sent.
        items: u32,
    },
    /// Event: the caller no longer wants the call `call` (its client went
    /// away), a stream or, despite the name, a unary [`DataRequest::Call`]
    /// (the message is older than unary cancellation, and kept so that the
    /// wire did not change). A stream stops pulling its items and ends; a
    /// unary call still queued in the worker is taken out and never runs,
    /// and a running one's method is told (`tiffin::Cancellation`). The
    /// answer the worker still sends is ignored; a call already answered
    /// is left alone.
    StreamCancel {
        /// The call's envelope id.
        call: u64,
    },
}

/// Longest request id carried in a [`DataRequest::Call`] (the API server
/// replaces longer ones before they get here).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A span's identity as W3C `traceparent` carries it: the trace, the span
/// (the parent of whatever the receiver starts) and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 128-bit trace id (never 0 when valid).
    pub trace_id: u128,
    /// 64-bit span id of the parent span (never 0 when valid).
    pub span_id: u64,
    /// The `sampled` flag.
    pub sampled: bool,
}

/// Messages from a runner worker to an API server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataResponse {
    /// Reply to the hello.
    Hello {
        /// The worker's protocol version.
        version: u32,
    },
    /// Reply to [`DataRequest::Call`]: the JSON-encoded result, or the error.
    /// `Bytes`, not `Vec<u8>`: serde writes a `Vec<u8>` element by element,
    /// which bincode encodes and decodes a byte at a time (half the CPU of a
    /// 1 MB echo); `Bytes` is one length and one copy, the same bytes on the wire.
    Result(Result<bytes::Bytes, CallError>),
    /// Event: the worker is draining; send no new calls on this connection.
    Draining,
    /// Event: one item of the stream `call` (a [`DataRequest::StreamCall`]'s
    /// envelope id), encoded by the runner codec.
    StreamItem {
        /// The stream call's envelope id.
        call: u64,
        /// The encoded item (`Bytes` for the reason given at [`DataResponse::Result`]).
        item: bytes::Bytes,
    },
    /// Reply to [`DataRequest::StreamCall`], after its last item: how many
    /// items were sent, or the error that ended the stream (after the items
    /// sent before it; a refusal such as [`CallError::Draining`] comes
    /// before any).
    StreamEnd(Result<u64, CallError>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Envelope, Incoming, Opening};
    use crate::frame::{DEFAULT_MAX_FRAME, decode_message, encode_frame};

    /// Encodes as a frame and decodes the frame's body back.
    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(msg: &T) -> T {
        let frame = encode_frame(msg, DEFAULT_MAX_FRAME).unwrap();
        decode_message(&frame[4..]).unwrap()
    }

    #[test]
    fn stream_messages_survive_the_wire() {
        let call = DataRequest::StreamCall {
            method: "generate".into(),
            payload: bytes::Bytes::from_static(b"\"once upon\""),
            deadline_ns: Some(7),
            request_id: "req-1".into(),
            trace: None,
            window: crate::stream::STREAM_WINDOW,
        };
        let DataRequest::StreamCall {
            method,
            payload,
            window,
            ..
        } = round_trip(&call)
        else {
            panic!("not a stream call");
        };
        assert_eq!(
            (method.as_str(), &payload[..], window),
            (
                "generate",
                &b"\"once upon\""[..],
                crate::stream::STREAM_WINDOW
            )
        );
        let credit = round_trip(&DataRequest::StreamCredit { call: 9, items: 8 });
        assert!(matches!(
            credit,
            DataRequest::StreamCredit { call: 9, items: 8 }
        ));
        assert!(matches!(
            round_trip(&DataRequest::StreamCancel { call: 9 }),
            DataRequest::StreamCancel { call: 9 }
        ));
        let item = DataResponse::StreamItem {
            call: 9,
            item: bytes::Bytes::from_static(b"tok"),
        };
        assert!(
            matches!(round_trip(&item), DataResponse::StreamItem { call: 9, item } if &item[..] == b"tok")
        );
        let failed = DataResponse::StreamEnd(Err(CallError::Failed("ran dry".into())));
        assert!(
            matches!(round_trip(&failed), DataResponse::StreamEnd(Err(CallError::Failed(m))) if m == "ran dry")
        );
        assert!(matches!(
            round_trip(&DataResponse::StreamEnd(Ok(3))),
            DataResponse::StreamEnd(Ok(3))
        ));
    }

    #[test]
    fn older_messages_keep_their_encoding() {
        // Stream messages were added after the others: a call or a result
        // of version 4 is the same bytes in version 5.
        let frame = encode_frame(&DataResponse::Draining, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(&frame[4..], &[2]);
        let env = Envelope::Event(DataResponse::Draining);
        assert!(matches!(
            round_trip(&env),
            Envelope::Event(DataResponse::Draining)
        ));
    }

    #[test]
    fn a_unary_call_s_cancel_is_the_stream_cancel_frame_unchanged() {
        // Unary cancellation reuses `StreamCancel`: the bytes are version
        // 5's, so the protocol version did not move.
        let frame =
            encode_frame(&DataRequest::StreamCancel { call: 9 }, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(&frame[4..], &[4, 9]);
    }

    /// A worker stand-in that answers a stream call with three items and
    /// then an error, tied to the call's envelope id.
    #[tokio::test]
    async fn a_stream_s_items_arrive_before_its_end_and_an_error_after_items_is_kept() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut api = Opening::<DataRequest, DataResponse>::new(a, "worker");
        let mut worker = Opening::<DataResponse, DataRequest>::new(b, "api server");
        let hello = DataRequest::Hello {
            version: PROTOCOL_VERSION,
        };
        let (welcome, ()) = tokio::join!(api.hello(hello), async {
            let (id, _) = worker.accept().await.unwrap();
            let reply = DataResponse::Hello {
                version: PROTOCOL_VERSION,
            };
            worker.reply(id, reply).await.unwrap();
        });
        assert!(matches!(
            welcome.unwrap(),
            DataResponse::Hello {
                version: PROTOCOL_VERSION
            }
        ));
        let _worker = worker.start(|msg, conn| {
            if let Incoming::Request {
                id,
                body: DataRequest::StreamCall { .. },
            } = msg
            {
                for word in ["a", "b", "c"] {
                    let item = bytes::Bytes::from_static(word.as_bytes());
                    conn.send(DataResponse::StreamItem { call: id, item })
                        .unwrap();
                }
                let end = DataResponse::StreamEnd(Err(CallError::Failed("ran dry".into())));
                conn.reply(id, end).unwrap();
            }
        });
        let (items_tx, mut items) = tokio::sync::mpsc::unbounded_channel();
        let api = api.start(move |msg, _| {
            if let Incoming::Event(DataResponse::StreamItem { call, item }) = msg {
                items_tx.send((call, item)).unwrap();
            }
        });
        let pending = api
            .send_request(|_| DataRequest::StreamCall {
                method: "words".into(),
                payload: bytes::Bytes::new(),
                deadline_ns: None,
                request_id: String::new(),
                trace: None,
                window: 16,
            })
            .unwrap();
        let sent_id = Some(pending.id());
        let end = pending.await.unwrap();
        assert!(
            matches!(end, DataResponse::StreamEnd(Err(CallError::Failed(m))) if m == "ran dry")
        );
        // Every item was handed over before the end reply resolved.
        for word in ["a", "b", "c"] {
            let (call, item) = items.try_recv().unwrap();
            assert_eq!((Some(call), &item[..]), (sent_id, word.as_bytes()));
        }
    }
}
