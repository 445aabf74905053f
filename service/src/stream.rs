//! How an API's stream of results is written on an HTTP response: the
//! formats a streaming API may declare ([`StreamFormat`]) and the bytes of
//! each item, of the end, and of an error after items.
//!
//! A streaming API (`Service::stream_api`) answers a sequence of items, each
//! written as soon as it exists. Its format says how a client reads them:
//!
//! | format | content type | an item | the end | an error after items |
//! |---|---|---|---|---|
//! | [`StreamFormat::JsonLines`] | `application/x-ndjson` | its JSON, then `\n` | the body ends | a last line `{"error": "..."}` |
//! | [`StreamFormat::EventStream`] | `text/event-stream` | `data: <item>` and a blank line | `event: end` | `event: error`, `data: <message>` |
//!
//! In an event stream a string item is sent as its text (a token is read as
//! `data: word`, not `data: "word"`), any other item as its JSON; an item
//! of several lines becomes several `data:` lines, which a client joins
//! back with `\n` (the HTML living standard's event-stream rules). The
//! final `end` or `error` event lets a client tell a finished stream from a
//! cut connection, which an event stream by itself cannot.

use bytes::Bytes;
use serde::Serialize;

use crate::error::ApiError;

/// How a streaming API writes its items on the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// Newline-delimited JSON: one JSON value per line.
    JsonLines,
    /// Server-Sent Events (`text/event-stream`).
    EventStream,
}

impl StreamFormat {
    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            StreamFormat::JsonLines => "application/x-ndjson",
            StreamFormat::EventStream => "text/event-stream",
        }
    }

    /// The bytes of one item.
    pub fn item<T: Serialize>(self, item: &T) -> Result<Bytes, ApiError> {
        let value = serde_json::to_value(item)
            .map_err(|e| ApiError::internal(format!("cannot encode a stream item: {e}")))?;
        Ok(match self {
            StreamFormat::JsonLines => {
                let mut line = value.to_string().into_bytes();
                line.push(b'\n');
                Bytes::from(line)
            }
            StreamFormat::EventStream => match value {
                serde_json::Value::String(text) => event(None, &text),
                other => event(None, &other.to_string()),
            },
        })
    }

    /// The bytes that close a stream that ended well (none for JSON lines:
    /// the end of the body says it).
    pub fn end(self) -> Option<Bytes> {
        match self {
            StreamFormat::JsonLines => None,
            StreamFormat::EventStream => Some(event(Some("end"), "")),
        }
    }

    /// The bytes that close a stream that failed after its first item.
    pub fn error(self, error: &ApiError) -> Bytes {
        match self {
            StreamFormat::JsonLines => {
                let mut line = serde_json::json!({ "error": error.message })
                    .to_string()
                    .into_bytes();
                line.push(b'\n');
                Bytes::from(line)
            }
            StreamFormat::EventStream => event(Some("error"), &error.message),
        }
    }
}

/// One server-sent event: its type, when not the default `message`, and
/// its data, a `data:` line per line of `data`.
fn event(kind: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 16);
    if let Some(kind) = kind {
        out.push_str("event: ");
        out.push_str(kind);
        out.push('\n');
    }
    // `\r\n`, `\r` and `\n` all end a line in an event stream.
    for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn json_lines_write_one_compact_value_per_line() {
        let item = serde_json::json!({ "token": "a\nb", "n": 1 });
        let line = text(StreamFormat::JsonLines.item(&item).unwrap());
        assert_eq!(line, "{\"n\":1,\"token\":\"a\\nb\"}\n");
        assert_eq!(StreamFormat::JsonLines.end(), None);
        let err = text(StreamFormat::JsonLines.error(&ApiError::internal("boom")));
        assert_eq!(err, "{\"error\":\"boom\"}\n");
    }

    #[test]
    fn event_stream_sends_strings_as_text_and_other_values_as_json() {
        let f = StreamFormat::EventStream;
        assert_eq!(text(f.item(&"hello").unwrap()), "data: hello\n\n");
        assert_eq!(text(f.item(&vec![1, 2]).unwrap()), "data: [1,2]\n\n");
    }

    #[test]
    fn event_stream_splits_an_item_of_several_lines_into_data_lines() {
        let f = StreamFormat::EventStream;
        assert_eq!(
            text(f.item(&"one\ntwo\r\nthree\rfour").unwrap()),
            "data: one\ndata: two\ndata: three\ndata: four\n\n"
        );
    }

    #[test]
    fn event_stream_ends_with_an_end_or_error_event() {
        let f = StreamFormat::EventStream;
        assert_eq!(text(f.end().unwrap()), "event: end\ndata: \n\n");
        let err = text(f.error(&ApiError::internal("model failed\nat item 3")));
        assert_eq!(err, "event: error\ndata: model failed\ndata: at item 3\n\n");
    }
}
