//! A streaming API's answer in flight, the same for both front doors
//! (docs/streaming.md): HTTP writes its [`Piece`]s as chunks in the API's
//! `StreamFormat` (`http.rs`), gRPC as the messages of a server-streaming
//! `CallStream` (`grpc/stream.rs`).
//!
//! [`start`] runs the API's handler and waits for the first item, so that an
//! error before it is the request's error and `api_server.traffic.timeout`
//! (applied around it, `traffic.rs`) bounds the time to it. Then every item
//! is passed on as soon as the runner sends it, each within
//! `api_server.traffic.stream_idle_timeout` of the one before; the runner's
//! credit window (`ipc/src/stream.rs`) is granted as the front door takes
//! items, so a client that stops reading pauses the model.
//!
//! The stream ends the request (`tail.rs`): its meter and its concurrency
//! slot are released at the last item or error ending, with the stream's
//! status (200, or its error's), or with 499 when the client went away and
//! the front door dropped the stream, which also drops the runner's stream
//! and so cancels its call.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tiffin_service::{AnswerItems, Api, ApiError};

use crate::state::ServerState;
use crate::tail::{self, StreamEnd};

/// What a front door writes next.
pub(crate) enum Piece {
    /// One item, already written in the API's `StreamFormat`.
    Item(Bytes),
    /// The stream ended well; nothing follows.
    End,
    /// The stream failed after its first item; nothing follows.
    Failed(ApiError),
}

/// Runs `api`'s streaming handler on `body` and waits for its first item:
/// the request's error if the stream fails before it, else the pieces to
/// write. `label` maps the status a stream ends with to the one its request
/// is recorded with (the front door's view of it: gRPC records its code's).
pub(crate) async fn start(
    state: &ServerState,
    api: &Api,
    body: Bytes,
    content_type: Option<&str>,
    label: fn(u16) -> u16,
) -> Result<BoxStream<'static, Piece>, ApiError> {
    let started = Instant::now();
    let mut items = api.answer_stream(body, content_type).await?;
    let first = match items.next().await {
        Some(Err(e)) => return Err(e),
        Some(Ok(first)) => Some(first),
        // Not polled again after its end: the next piece is the end.
        None => {
            items = futures::stream::empty().boxed();
            None
        }
    };
    let endpoint = api.route();
    let counted = state.streams.as_ref().map(|m| {
        if first.is_some() {
            m.first_item(&endpoint, started.elapsed().as_secs_f64());
        }
        m.items(&endpoint)
    });
    let flow = Flow {
        first,
        items: Some(items),
        idle: state.traffic.stream_idle_timeout(),
        counted: counted.unwrap_or_default(),
        end: Some(tail::stream_end()),
        label,
        api: api.name.clone(),
    };
    Ok(futures::stream::unfold(flow, Flow::next).boxed())
}

/// The state of a stream between two pieces.
struct Flow {
    /// The first item, until it is passed on.
    first: Option<Bytes>,
    /// The runner's items; `None` once the stream ended (dropping them
    /// cancels the runner's call, if it still runs).
    items: Option<AnswerItems>,
    idle: Duration,
    counted: tiffin_metrics::CounterChild,
    end: Option<StreamEnd>,
    label: fn(u16) -> u16,
    api: String,
}

impl Flow {
    async fn next(mut self) -> Option<(Piece, Flow)> {
        if let Some(first) = self.first.take() {
            self.counted.inc();
            return Some((Piece::Item(first), self));
        }
        let items = self.items.as_mut()?;
        let piece = match tokio::time::timeout(self.idle, items.next()).await {
            Ok(Some(Ok(item))) => {
                self.counted.inc();
                return Some((Piece::Item(item), self));
            }
            Ok(Some(Err(e))) => Piece::Failed(e),
            Ok(None) => Piece::End,
            Err(_) => Piece::Failed(ApiError::gateway_timeout(format!(
                "the stream sent no item for {:?} (api_server.traffic.stream_idle_timeout)",
                self.idle
            ))),
        };
        // Over: stop the runner's stream first, then end the request.
        self.items = None;
        let status = match &piece {
            Piece::Failed(e) => {
                tracing::warn!(api = %self.api, status = e.status, error = %e.message, "a stream failed after its first item");
                e.status
            }
            _ => 200,
        };
        if let Some(end) = self.end.take() {
            end.finish((self.label)(status));
        }
        Some((piece, self))
    }
}
