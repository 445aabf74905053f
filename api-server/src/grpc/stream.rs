//! `CallStream`, the server-streaming call of a streaming API
//! (docs/streaming.md): tiffin's addition to `bentoml.grpc.v1.BentoService`,
//! whose only inference call, `Call`, answers one message.
//!
//! The items come from the same stream as HTTP's (`crate::stream`), so the
//! runner's credit window, the idle bound, the metrics and the request's
//! end at its last item are the same. Each item is one `Response`, with the
//! content the API's output kind gives it: `json` for a JSON-lines API (the
//! line's value), `text` for an event-stream API (the event's data, the
//! text an SSE client reads). The end is the call's `OK`; an error after
//! items ends the call with its status and message, as an error before the
//! first item does. When the client cancels (or goes away), tonic drops the
//! response stream, which cancels the runner's call.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tiffin_service::{Api, StreamFormat};
use tonic::Status;

use super::content::response_content;
use super::proto;
use super::status::{code_for_http_status, http_status_for_code, status_from_api_error};
use crate::state::ServerState;
use crate::stream::Piece;

/// The messages of a `CallStream`.
pub(super) type Messages = BoxStream<'static, Result<proto::Response, Status>>;

/// A stream of the one message of an API that answers one body.
pub(super) fn one(message: proto::Response) -> Messages {
    futures::stream::once(std::future::ready(Ok(message))).boxed()
}

/// Runs the streaming API `api` (answering in `format`) on `body` within
/// the traffic limits, and waits for its first item: its error as the
/// call's status, or the messages.
pub(super) async fn answer(
    state: &ServerState,
    api: &Api,
    format: StreamFormat,
    body: Bytes,
    content_type: Option<&str>,
) -> Result<Messages, Status> {
    // Metered as the code the call ends with, as a unary call is.
    let label = |status| http_status_for_code(code_for_http_status(status));
    let pieces = state
        .traffic
        .within(crate::stream::start(state, api, body, content_type, label))
        .await
        .map_err(status_from_api_error)?;
    let api = api.clone();
    let messages = pieces.filter_map(move |piece| {
        std::future::ready(match piece {
            Piece::Item(item) => Some(message(&api, format, &item)),
            Piece::End => None,
            Piece::Failed(e) => Some(Err(status_from_api_error(e))),
        })
    });
    Ok(messages.boxed())
}

/// The message of one item, written in `format` on its way.
fn message(api: &Api, format: StreamFormat, item: &[u8]) -> Result<proto::Response, Status> {
    let content = response_content(api, Bytes::from(unwritten(format, item)))?;
    Ok(proto::Response {
        content: Some(content),
    })
}

/// An item as it was before `format` wrote it for HTTP: a JSON line without
/// its newline, an event's data with its lines joined by `\n`, as an
/// event-stream client reads it.
fn unwritten(format: StreamFormat, item: &[u8]) -> Vec<u8> {
    match format {
        StreamFormat::JsonLines => item.strip_suffix(b"\n").unwrap_or(item).to_vec(),
        StreamFormat::EventStream => {
            let mut data = Vec::with_capacity(item.len());
            let lines = item
                .split(|&b| b == b'\n')
                .filter_map(|line| line.strip_prefix(b"data:"));
            for (i, line) in lines.enumerate() {
                if i > 0 {
                    data.push(b'\n');
                }
                // One space after the colon is the format's, not the data's.
                data.extend_from_slice(line.strip_prefix(b" ").unwrap_or(line));
            }
            data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_lose_what_their_http_format_added() {
        let lines = StreamFormat::JsonLines;
        let item = lines.item(&serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(unwritten(lines, &item), br#"{"a":[1,2]}"#);
        let events = StreamFormat::EventStream;
        for text in ["w0", "two\nlines", " spaced", ""] {
            let item = events.item(&text).unwrap();
            assert_eq!(unwritten(events, &item), text.as_bytes(), "{text:?}");
        }
        let item = events.item(&serde_json::json!({"n": 1})).unwrap();
        assert_eq!(unwritten(events, &item), br#"{"n":1}"#);
    }
}
