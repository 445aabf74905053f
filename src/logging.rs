//! Log setup: one line per event on stderr, each naming the process's role
//! and index (`[runner:nltk_sentiment:1]` in text, `"process"` in JSON), so
//! the interleaved output of all processes stays readable.
//!
//! `logging.format` (`--log-format`) picks `text` or `json`; every process
//! gets it through the effective configuration. Lines go to stderr through
//! a bounded, lossy non-blocking writer (tracing-appender): a request that
//! logs (the access log, a failing call) never waits for a slow or blocked
//! stderr. Past [`QUEUED_LINES`] waiting lines new ones are dropped, counted,
//! and the count is reported when the process exits.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use tiffin_config::LogFormat;
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines waiting to be written, at most (about 2 MB of typical lines).
pub const QUEUED_LINES: usize = 8192;

static WHO: OnceLock<String> = OnceLock::new();

fn who() -> &'static str {
    WHO.get().map(String::as_str).unwrap_or("tiffin")
}

struct Prefixed(Format);

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
        write!(writer, "[{}] ", who())?;
        self.0.format_event(ctx, writer, event)
    }
}

/// tracing-subscriber's JSON lines with `"process"` as the first key.
struct JsonPrefixed(Format<Json>);

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonPrefixed
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
        LINE.with(|line| {
            let mut line = line.try_borrow_mut().map_err(|_| fmt::Error)?;
            line.clear();
            self.0.format_event(ctx, Writer::new(&mut *line), event)?;
            let rest = line.strip_prefix('{').ok_or(fmt::Error)?;
            // WHO holds a role name (letters, digits, `_`, `:`); quoted by serde_json.
            let process = serde_json::to_string(who()).map_err(|_| fmt::Error)?;
            write!(writer, "{{\"process\":{process},{rest}")
        })
    }
}

/// Keeps the log writer alive; dropping it writes what is queued and says
/// how many lines were dropped, if any.
pub struct LogGuard {
    dropped: ErrorCounter,
    _flush: WorkerGuard,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let n = self.dropped.dropped_lines();
        if n > 0 {
            eprintln!(
                "[{}] {n} log lines were dropped: stderr did not keep up",
                who()
            );
        }
    }
}

/// Installs the subscriber; `who` names this process in every line. Keep
/// the guard until the process ends.
pub fn init(who: String, format: LogFormat) -> LogGuard {
    let _ = WHO.set(who);
    let filter = EnvFilter::try_from_env("TIFFIN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, flush) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("tiffin-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour codes only for a terminal: piped logs must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder
            .event_format(Prefixed(Format::default().with_target(false)))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(JsonPrefixed(
                Format::default()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            ))
            .try_init(),
    };
    LogGuard {
        dropped,
        _flush: flush,
    }
}
