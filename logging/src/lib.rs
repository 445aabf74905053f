//! Log lines for every tiffin process: one line per event on stderr, each
//! naming the process's role and index (`[runner:nltk_sentiment:1]` in text,
//! `"process"` in JSON), so the interleaved output of all processes stays
//! readable.
//!
//! `logging.format` (`--log-format`) picks `text` or `json`; every process
//! gets it through the effective configuration. Lines go to stderr through
//! a bounded, lossy writer of our own (`sink.rs`): a request that logs (the
//! access log, a failing call) never waits for a slow or blocked stderr,
//! and a busy server's lines are gathered and written a batch at a time.
//! Past [`MAX_QUEUED_BYTES`] of waiting lines new ones are dropped, counted,
//! and the count is reported when the process exits.
//!
//! # Two ways in
//!
//! Ordinary events are `tracing` events, formatted by tracing-subscriber.
//! A line written for every request (the access log) takes the direct path,
//! [`write_text`] / [`write_json`]: the caller writes its fields into a
//! reused per-thread buffer, this crate adds the same head an event gets
//! (process, timestamp, level; or their JSON keys) and hands the line to the
//! same writer, so the two kinds interleave as whole lines. Through the fmt
//! layer an access line cost about 15 µs on the slower bench machine (it
//! sanitizes the message a character at a time); on the direct path the
//! whole access log, writing included, costs about 1.8 µs a request on
//! `echo` (`scripts/bench`, section `observability`; README, Benchmarks).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write as _};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use tiffin_config::LogFormat;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

mod sink;

use sink::Sink;
pub use sink::{GATHER, MAX_QUEUED_BYTES};

static WHO: OnceLock<String> = OnceLock::new();

/// Where every line goes, for the subscriber and the direct path alike.
enum Out {
    /// The sink and its writer thread.
    Sink(Arc<Sink>),
    /// stderr itself, a `write` per line: only when the system refused the
    /// writer thread.
    Stderr,
}

impl Out {
    /// Writes or queues one whole line; false when it was dropped.
    fn push(&self, line: &[u8]) -> bool {
        match self {
            Out::Sink(sink) => sink.push(line),
            Out::Stderr => io::stderr().write_all(line).is_ok(),
        }
    }
}

/// Set by [`init`]; until then the direct path writes nothing.
static WRITER: OnceLock<Out> = OnceLock::new();

/// What the subscriber writes an event's line into, one `write_all` per
/// line (tracing-subscriber formats the whole line first).
struct LineWriter(&'static Out);

impl io::Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        // A dropped line is counted by the sink, not an error for the caller.
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// This process's name in its lines (`tiffin` before [`init`]).
pub fn who() -> &'static str {
    WHO.get().map(String::as_str).unwrap_or("tiffin")
}

/// tracing-subscriber's line format, with this process named first.
enum Prefixed {
    /// `[who] ` before the text line.
    Text(Format),
    /// The JSON line with `"process"` as its first key.
    Json(Format<Json>),
}

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let json = match self {
            Prefixed::Text(text) => {
                write!(writer, "[{}] ", who())?;
                return text.format_event(ctx, writer, event);
            }
            Prefixed::Json(json) => json,
        };
        LINE.with(|line| {
            let mut line = line.try_borrow_mut().map_err(|_| fmt::Error)?;
            line.clear();
            json.format_event(ctx, Writer::new(&mut *line), event)?;
            let rest = line.strip_prefix('{').ok_or(fmt::Error)?;
            // WHO holds a role name (letters, digits, `_`, `:`); quoted by serde_json.
            let process = serde_json::to_string(who()).map_err(|_| fmt::Error)?;
            write!(writer, "{{\"process\":{process},{rest}")
        })
    }
}

/// Keeps the log writer alive; dropping it writes what is queued (waiting
/// a bounded time) and says how many lines were dropped, if any.
pub struct LogGuard {
    sink: Option<(Arc<Sink>, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some((sink, handle)) = self.sink.take() else {
            return;
        };
        sink.close();
        if handle.is_finished() {
            let _ = handle.join();
        }
        let n = sink.dropped();
        if n > 0 {
            eprintln!(
                "[{}] {n} log lines were dropped: stderr did not keep up",
                who()
            );
        }
    }
}

/// Installs the subscriber; `who` names this process in every line. Keep
/// the guard until the process ends. Without a writer thread (the system
/// refused one) every line goes to stderr directly, each a `write`.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(who: String, format: LogFormat) -> LogGuard {
    let _ = WHO.set(who);
    let filter = EnvFilter::try_from_env("TIFFIN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let started = Sink::start(io::stderr()).ok();
    let out = WRITER.get_or_init(|| match &started {
        Some((sink, _)) => Out::Sink(sink.clone()),
        None => Out::Stderr,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LineWriter(out))
        // Colour codes only for a terminal: piped logs must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder
            .event_format(Prefixed::Text(Format::default().with_target(false)))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(Prefixed::Json(
                Format::default()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            ))
            .try_init(),
    };
    LogGuard { sink: started }
}

thread_local! {
    /// The direct path's line, reused: a line allocates nothing here (the
    /// writer copies it once into its queue).
    static DIRECT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Lines longer than this are cut (a hostile path must not make a line of
/// megabytes); the cut line still ends in a newline.
pub const MAX_DIRECT_LINE: usize = 8 * 1024;

/// Writes one INFO text line, `[who] <timestamp>  INFO <body>`, the head a
/// `tracing` event gets from [`init`]'s text format. `body` writes the rest
/// (without the newline) into the buffer it is given; write values that come
/// from a client with [`visible`]. Returns whether the line was queued
/// (false before [`init`], or when the writer's queue is full).
pub fn write_text(body: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> bool {
    direct(|buf| {
        write!(buf, "[{}] ", who())?;
        timestamp(buf, std::time::SystemTime::now())?;
        buf.extend_from_slice(b"  INFO ");
        body(buf)
    })
}

/// Writes one INFO JSON line with the keys a `tracing` event gets from
/// [`init`]'s JSON format: `process`, `timestamp`, `level`, the fields
/// `body` adds (through [`JsonFields`]), then `target`.
pub fn write_json(target: &str, body: impl FnOnce(&mut JsonFields<'_>) -> io::Result<()>) -> bool {
    direct(|buf| {
        buf.extend_from_slice(b"{\"process\":");
        json_str(buf, who())?;
        buf.extend_from_slice(b",\"timestamp\":\"");
        timestamp(buf, std::time::SystemTime::now())?;
        buf.extend_from_slice(b"\",\"level\":\"INFO\"");
        body(&mut JsonFields(buf))?;
        buf.extend_from_slice(b",\"target\":");
        json_str(buf, target)?;
        buf.push(b'}');
        Ok(())
    })
}

/// Builds the line in the thread's buffer and queues it.
fn direct(build: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> bool {
    let Some(writer) = WRITER.get() else {
        return false;
    };
    DIRECT.with(|line| {
        let Ok(mut buf) = line.try_borrow_mut() else {
            return false;
        };
        buf.clear();
        if build(&mut buf).is_err() {
            return false;
        }
        finish_line(&mut buf);
        // Queued whole, or dropped and counted when the queue is full;
        // never blocks on stderr (but for the no-thread fallback).
        writer.push(&buf)
    })
}

/// Cuts `buf` to [`MAX_DIRECT_LINE`] and ends it with a newline.
fn finish_line(buf: &mut Vec<u8>) {
    if buf.len() >= MAX_DIRECT_LINE {
        buf.truncate(MAX_DIRECT_LINE - 1);
        // The cut may split a UTF-8 character: drop its leading bytes.
        while buf.last().is_some_and(|b| b & 0xc0 == 0x80) {
            buf.pop();
        }
        if buf.last().is_some_and(|b| *b >= 0xc0) {
            buf.pop();
        }
    }
    buf.push(b'\n');
}

/// `2026-12-02T16:55:16.123456Z`, as tracing-subscriber writes its default
/// timestamp, in UTC.
fn timestamp(buf: &mut Vec<u8>, now: std::time::SystemTime) -> io::Result<()> {
    let t = time::OffsetDateTime::from(now);
    write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Writes `s` for a text line: visible characters as they are; control
/// characters (which could end the line or drive a terminal) as `\xNN` /
/// `\u{NN}`, as tracing-subscriber's message sanitizer does.
pub fn visible(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    for ch in s.chars() {
        match ch {
            c if c.is_control() => {
                let n = u32::from(c);
                let _ = if n < 0x80 {
                    write!(buf, "\\x{n:02x}")
                } else {
                    write!(buf, "\\u{{{n:x}}}")
                };
            }
            c => {
                let mut utf8 = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// A JSON string (quoted and escaped by serde_json).
fn json_str(buf: &mut Vec<u8>, s: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *buf, s).map_err(io::Error::other)
}

/// The fields of a direct JSON line; each call adds `,"key":value`. Keys
/// are the caller's constants (written as they are, not escaped).
pub struct JsonFields<'a>(&'a mut Vec<u8>);

impl JsonFields<'_> {
    /// Fields written into `buf` (for a caller that tests its own fields;
    /// [`write_json`] makes one itself).
    pub fn new(buf: &mut Vec<u8>) -> JsonFields<'_> {
        JsonFields(buf)
    }

    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A string field (escaped).
    pub fn str(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.key(key);
        json_str(self.0, value)
    }

    /// A string field built by `Display` (escaped).
    pub fn display(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        self.key(key);
        // Written in place between quotes; Display output may hold anything,
        // so output with a byte JSON must escape is taken back and escaped.
        self.0.push(b'"');
        let start = self.0.len();
        write!(self.0, "{value}")?;
        if self.0[start..]
            .iter()
            .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
        {
            let raw = self.0.split_off(start);
            self.0.pop();
            let text = String::from_utf8_lossy(&raw);
            return json_str(self.0, &text);
        }
        self.0.push(b'"');
        Ok(())
    }

    /// An unsigned number.
    pub fn u64(&mut self, key: &str, value: u64) -> io::Result<()> {
        self.key(key);
        write!(self.0, "{value}")
    }

    /// A signed number.
    pub fn i64(&mut self, key: &str, value: i64) -> io::Result<()> {
        self.key(key);
        write!(self.0, "{value}")
    }

    /// A float (`null` when not finite, which JSON cannot hold).
    pub fn f64(&mut self, key: &str, value: f64) -> io::Result<()> {
        self.key(key);
        if value.is_finite() {
            write!(self.0, "{value}")
        } else {
            self.0.extend_from_slice(b"null");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_tracing_subscribers() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_230_516_123_456);
        let mut buf = Vec::new();
        timestamp(&mut buf, t).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-12-02T16:55:16.123456Z"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_text_values() {
        let mut buf = Vec::new();
        visible(&mut buf, "/a\nb\x1b[31mc\u{85}é");
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "/a\\x0ab\\x1b[31mc\\u{85}é"
        );
    }

    #[test]
    fn json_fields_are_escaped_and_in_order() {
        let mut buf = Vec::new();
        let mut f = JsonFields(&mut buf);
        f.str("path", "/a\"b\n").unwrap();
        f.u64("status", 200).unwrap();
        f.i64("grpc_status", -1).unwrap();
        f.f64("latency_ms", 0.5).unwrap();
        f.f64("bad", f64::NAN).unwrap();
        f.display("client", "127.0.0.1:80").unwrap();
        f.display("quoted", "a\"b\\c\n").unwrap();
        let line = format!("{{\"a\":1{}}}", String::from_utf8(buf).unwrap());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["grpc_status"], -1);
        assert_eq!(v["latency_ms"], 0.5);
        assert!(v["bad"].is_null());
        assert_eq!(v["client"], "127.0.0.1:80");
        assert_eq!(v["quoted"], "a\"b\\c\n");
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_end_in_a_newline() {
        let mut buf = "é".repeat(MAX_DIRECT_LINE).into_bytes();
        finish_line(&mut buf);
        assert!(buf.len() <= MAX_DIRECT_LINE);
        assert_eq!(buf.last(), Some(&b'\n'));
        assert!(std::str::from_utf8(&buf).is_ok());
    }
}
