//! The access log: one line per request, written after the response is
//! built, in BentoML's shape (BentoML 1.2's `AccessLogMiddleware`,
//! `bentoml/_internal/server/http/access.py`):
//!
//! ```text
//! 127.0.0.1:53102 (scheme=http,method=POST,path=/classify,type=application/json,length=20) (status=200,type=application/json,length=3) 0.512ms (trace=…,span=…,sampled=0,request_id=…)
//! ```
//!
//! A gRPC call has the same line with `scheme=grpc`, the path
//! `/{service}/{method}`, and `status=` (its code as BentoML's metrics map
//! it to HTTP) followed by `grpc_status=`. It is written when the response's
//! headers are ready, which for a unary call is its end: tonic answers an
//! error with headers only (`grpc-status` among them), and a success's `0`
//! in the trailers (`grpc/observe.rs`). A streaming API's answer (HTTP, or
//! gRPC's `CallStream`) is written at its stream's end (`tail.rs`); for the
//! other streaming calls (health `Watch`, reflection) the line marks the
//! stream's start.
//!
//! The request's and response's `type`/`length` appear as
//! `api_server.logging.access.request_content_*` / `response_content_*`
//! say; ids are written with `format.trace_id` / `format.span_id`. With
//! `logging.format: json` the same fields are keys of one JSON object
//! (`client`, `scheme`, `method`, `path`, `request_type`, `request_length`,
//! `status`, `response_type`, `response_length`, `latency_ms`, `trace_id`,
//! `span_id`, `sampled`, `request_id`).
//!
//! # What is never written
//!
//! The line has the path without its query string, and of the request's
//! headers only `Content-Type` and `Content-Length`: no `Authorization`
//! header, no bearer token, and no token sent as an `access_token` or
//! `token` query parameter (which the front door refuses with 400 when
//! `api_server.auth` is on, `auth.rs`) is ever logged. The path and the
//! request id, which a client chooses, are escaped in a text line
//! (control characters, `"` and `\`) and written as JSON strings in a
//! JSON line.
//!
//! # Skipped paths
//!
//! Probes and scrapes (`/livez`, `/healthz`, `/readyz`, `/metrics`, and
//! gRPC's health `Check` and `Watch`: `Route::is_probe` in `route.rs`) are
//! not logged, whichever front door they reach: an orchestrator polls them
//! every few seconds and they would drown the requests. BentoML's
//! middleware takes `skip_paths` but its configuration has no key for it,
//! so neither does tiffin: the list is fixed.
//!
//! # Cost
//!
//! The line is written at target `tiffin::access` (so
//! `TIFFIN_LOG=tiffin::access=off` silences it, as BentoML's `bentoml.access`
//! logger level does; the filter is read once, when the server starts). It
//! does not go through `tracing`'s formatter: its fields are written
//! straight into a reused per-thread buffer and the line is handed to the
//! log's bounded, lossy writer (`tiffin_logging::write_text` /
//! `write_json`), so a slow stderr drops lines (counted) rather than
//! holding requests. The whole access log costs about 1.8 µs a request on
//! `echo` (it cost about 15 µs through the fmt layer; `scripts/bench`,
//! section `observability`).

use std::fmt;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderValue;
use tiffin_config::{AccessLogConfig, IdFormat, LogFormat};

/// Longest path written (a request line can be far longer; the rest is cut).
const MAX_LOGGED_PATH: usize = 1024;

/// The access log as configured (exists only when enabled). Cloned into
/// what writes a streaming answer's line at its end (`observation.rs`).
#[derive(Clone)]
pub(crate) struct AccessLog {
    request_type: bool,
    request_length: bool,
    response_type: bool,
    response_length: bool,
    trace_format: IdFormat,
    span_format: IdFormat,
    json: bool,
}

/// One finished request, as the line shows it.
pub(crate) struct Entry<'a> {
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// `http` (tiffin serves no TLS).
    pub scheme: &'static str,
    /// Request method.
    pub method: &'a Method,
    /// Request path.
    pub path: &'a str,
    /// Request `Content-Type`.
    pub request_type: Option<&'a HeaderValue>,
    /// Request `Content-Length`.
    pub request_length: Option<&'a HeaderValue>,
    /// Response status (for gRPC, its code as BentoML maps it to HTTP).
    pub status: u16,
    /// The gRPC status code (gRPC calls only).
    pub grpc_status: Option<i32>,
    /// Response `Content-Type`.
    pub response_type: Option<&'a HeaderValue>,
    /// Response body length, when known.
    pub response_length: Option<u64>,
    /// From request to response.
    pub latency: Duration,
    /// Trace id (0: not traced).
    pub trace_id: u128,
    /// The request span's id (0: not traced).
    pub span_id: u64,
    /// Whether the trace is sampled.
    pub sampled: bool,
    /// The request id.
    pub request_id: &'a str,
}

impl AccessLog {
    /// The access log `config` asks for, or `None` when it is disabled.
    /// The id formats were checked at start (`Config::validate`); a bad one
    /// here falls back to BentoML's default.
    pub(crate) fn new(config: &AccessLogConfig, format: LogFormat) -> Option<AccessLog> {
        if !config.enabled || !tracing::enabled!(target: "tiffin::access", tracing::Level::INFO) {
            return None;
        }
        let parse = |spec: &str, default: &str| {
            IdFormat::parse(spec)
                .or_else(|_| IdFormat::parse(default))
                .ok()
        };
        Some(AccessLog {
            request_type: config.request_content_type,
            request_length: config.request_content_length,
            response_type: config.response_content_type,
            response_length: config.response_content_length,
            trace_format: parse(&config.format.trace_id, "032x")?,
            span_format: parse(&config.format.span_id, "016x")?,
            json: format == LogFormat::Json,
        })
    }

    /// Writes the line of one request.
    pub(crate) fn write(&self, e: &Entry<'_>) {
        if self.json {
            tiffin_logging::write_json("tiffin::access", |f| self.json_fields(f, e));
        } else {
            tiffin_logging::write_text(|buf| self.text(buf, e));
        }
    }

    /// The text line after its head (see the module docs). Written byte by
    /// byte, with no `core::fmt`: formatting the address, the ids and the
    /// latency through it was most of the line's cost in a profile of `echo`.
    fn text(&self, buf: &mut Vec<u8>, e: &Entry<'_>) -> io::Result<()> {
        push_client(buf, e.client);
        buf.extend_from_slice(b" (scheme=");
        buf.extend_from_slice(e.scheme.as_bytes());
        buf.extend_from_slice(b",method=");
        tiffin_logging::visible(buf, e.method.as_str());
        buf.extend_from_slice(b",path=");
        escaped(buf, logged_path(e.path));
        if self.request_type {
            buf.extend_from_slice(b",type=");
            header(buf, e.request_type);
        }
        if self.request_length {
            buf.extend_from_slice(b",length=");
            header(buf, e.request_length);
        }
        buf.extend_from_slice(b") (status=");
        push_int(buf, e.status);
        if let Some(code) = e.grpc_status {
            buf.extend_from_slice(b",grpc_status=");
            push_int(buf, code);
        }
        if self.response_type {
            buf.extend_from_slice(b",type=");
            header(buf, e.response_type);
        }
        if self.response_length {
            buf.extend_from_slice(b",length=");
            if let Some(n) = e.response_length {
                push_int(buf, n);
            }
        }
        buf.extend_from_slice(b") ");
        push_ms(buf, e.latency);
        buf.extend_from_slice(b"ms (trace=");
        self.trace_format.push(buf, e.trace_id);
        buf.extend_from_slice(b",span=");
        self.span_format.push(buf, u128::from(e.span_id));
        buf.extend_from_slice(if e.sampled {
            b",sampled=1,request_id="
        } else {
            b",sampled=0,request_id="
        });
        escaped(buf, e.request_id);
        buf.push(b')');
        Ok(())
    }

    /// The JSON line's fields (see the module docs); absent values are left
    /// out, as `tracing` leaves out a `None` field.
    fn json_fields(&self, f: &mut tiffin_logging::JsonFields<'_>, e: &Entry<'_>) -> io::Result<()> {
        f.display("client", Client(e.client))?;
        f.str("scheme", e.scheme)?;
        f.str("method", e.method.as_str())?;
        f.str("path", logged_path(e.path))?;
        if let Some(v) = shown(e.request_type, self.request_type) {
            f.str("request_type", v)?;
        }
        if let Some(v) = shown(e.request_length, self.request_length) {
            f.str("request_length", v)?;
        }
        f.u64("status", u64::from(e.status))?;
        if let Some(code) = e.grpc_status {
            f.i64("grpc_status", i64::from(code))?;
        }
        if let Some(v) = shown(e.response_type, self.response_type) {
            f.str("response_type", v)?;
        }
        if let Some(n) = e.response_length.filter(|_| self.response_length) {
            f.u64("response_length", n)?;
        }
        f.f64("latency_ms", e.latency.as_secs_f64() * 1000.0)?;
        f.display("trace_id", Id(self.trace_format, e.trace_id))?;
        f.display("span_id", Id(self.span_format, u128::from(e.span_id)))?;
        f.u64("sampled", u64::from(e.sampled))?;
        f.str("request_id", e.request_id)
    }
}

/// The path as logged: at most [`MAX_LOGGED_PATH`] bytes, cut on a
/// character boundary.
fn logged_path(path: &str) -> &str {
    let mut end = path.len().min(MAX_LOGGED_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// A client's text (a path, a request id) in a text line: control
/// characters escaped as `tiffin_logging::visible` writes them, and `"`
/// and `\` escaped with a backslash, so that no client can end a field,
/// forge a line or make one escape look like another.
fn escaped(buf: &mut Vec<u8>, s: &str) {
    let mut rest = s;
    while let Some(at) = rest.find(['"', '\\']) {
        tiffin_logging::visible(buf, &rest[..at]);
        buf.push(b'\\');
        buf.push(rest.as_bytes()[at]);
        rest = &rest[at + 1..];
    }
    tiffin_logging::visible(buf, rest);
}

/// A header's value in a text line (`?` for bytes that are not visible
/// ASCII, nothing when absent).
fn header(buf: &mut Vec<u8>, v: Option<&HeaderValue>) {
    match v.map(HeaderValue::to_str) {
        Some(Ok(s)) => tiffin_logging::visible(buf, s),
        Some(Err(_)) => buf.push(b'?'),
        None => {}
    }
}

/// A header shown in a JSON line: its text when the key is on.
fn shown(v: Option<&HeaderValue>, on: bool) -> Option<&str> {
    v.filter(|_| on).and_then(|v| v.to_str().ok())
}

/// An integer in decimal.
fn push_int(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (`0.123`), to the nearest microsecond.
fn push_ms(buf: &mut Vec<u8>, latency: Duration) {
    let micros = (latency.as_nanos() + 500) / 1000;
    push_int(buf, micros / 1000);
    let frac = (micros % 1000) as u16;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `ip:port` (`[v6]:port`), or `_` as BentoML writes an unknown client.
fn push_client(buf: &mut Vec<u8>, client: Option<SocketAddr>) {
    match client {
        Some(SocketAddr::V4(a)) => {
            let [p, q, r, s] = a.ip().octets();
            for (i, octet) in [p, q, r, s].into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_int(buf, octet);
            }
            buf.push(b':');
            push_int(buf, a.port());
        }
        Some(a) => {
            let _ = write!(buf, "{a}");
        }
        None => buf.push(b'_'),
    }
}

/// An id in its configured format.
struct Id(IdFormat, u128);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, self.1)
    }
}

/// `ip:port`, or `_` as BentoML writes an unknown client.
struct Client(Option<SocketAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("_"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POST: Method = Method::POST;
    static JSON: HeaderValue = HeaderValue::from_static("application/json");
    static LENGTH: HeaderValue = HeaderValue::from_static("20");

    fn entry() -> Entry<'static> {
        Entry {
            client: "127.0.0.1:53102".parse().ok(),
            scheme: "http",
            method: &POST,
            path: "/classify\u{1b}[2J",
            request_type: Some(&JSON),
            request_length: Some(&LENGTH),
            status: 200,
            grpc_status: None,
            response_type: Some(&JSON),
            response_length: Some(3),
            latency: Duration::from_micros(512),
            trace_id: 0xab,
            span_id: 0xcd,
            sampled: true,
            request_id: "req-1",
        }
    }

    fn log(json: bool) -> AccessLog {
        AccessLog {
            request_type: true,
            request_length: true,
            response_type: true,
            response_length: true,
            trace_format: IdFormat::parse("032x").unwrap(),
            span_format: IdFormat::parse("016x").unwrap(),
            json,
        }
    }

    #[test]
    fn a_text_line_has_bentomls_shape_with_control_characters_escaped() {
        let mut buf = Vec::new();
        log(false).text(&mut buf, &entry()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "127.0.0.1:53102 (scheme=http,method=POST,path=/classify\\x1b[2J,type=application/json,length=20) \
             (status=200,type=application/json,length=3) 0.512ms \
             (trace=000000000000000000000000000000ab,span=00000000000000cd,sampled=1,request_id=req-1)"
        );
    }

    #[test]
    fn a_clients_quotes_backslashes_and_control_characters_are_escaped_in_path_and_id() {
        let mut e = entry();
        e.path = "/a\"b\\c\nd";
        e.request_id = "id\"),x=\\";
        let mut buf = Vec::new();
        log(false).text(&mut buf, &e).unwrap();
        let line = String::from_utf8(buf).unwrap();
        assert!(line.contains(",path=/a\\\"b\\\\c\\x0ad,"), "{line}");
        assert!(line.ends_with(",request_id=id\\\"),x=\\\\)"), "{line}");
    }

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for nanos in [
            0,
            499,
            500,
            123_456,
            999_499,
            999_500,
            1_000_000,
            12_345_678_901,
        ] {
            let d = Duration::from_nanos(nanos);
            let mut buf = Vec::new();
            push_ms(&mut buf, d);
            let micros = (nanos + 500) / 1000;
            let expected = format!("{}.{:03}", micros / 1000, micros % 1000);
            assert_eq!(String::from_utf8(buf).unwrap(), expected, "{nanos} ns");
        }
        for addr in [
            "127.0.0.1:3000",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:8080",
        ] {
            let a: SocketAddr = addr.parse().unwrap();
            let mut buf = Vec::new();
            push_client(&mut buf, Some(a));
            assert_eq!(String::from_utf8(buf).unwrap(), a.to_string());
        }
        let mut buf = Vec::new();
        push_client(&mut buf, None);
        assert_eq!(buf, b"_");
    }

    #[test]
    fn a_json_line_has_the_same_fields() {
        let mut buf = Vec::new();
        let mut f = tiffin_logging::JsonFields::new(&mut buf);
        log(true).json_fields(&mut f, &entry()).unwrap();
        let line = format!("{{\"x\":0{}}}", String::from_utf8(buf).unwrap());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["client"], "127.0.0.1:53102");
        assert_eq!(v["path"], "/classify\u{1b}[2J");
        assert_eq!(v["request_type"], "application/json");
        assert_eq!(v["request_length"], "20");
        assert_eq!(v["status"], 200);
        assert!(v.get("grpc_status").is_none());
        assert_eq!(v["response_length"], 3);
        assert_eq!(v["latency_ms"], 0.512);
        assert_eq!(v["trace_id"], format!("{:032x}", 0xab));
        assert_eq!(v["sampled"], 1);
        assert_eq!(v["request_id"], "req-1");
    }
}
