//! Log setup: one line per event on stderr, each prefixed with the process's
//! role and index (`[runner:nltk_sentiment:1]`), so the interleaved output of
//! all processes stays readable.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static WHO: OnceLock<String> = OnceLock::new();

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
        write!(
            writer,
            "[{}] ",
            WHO.get().map(String::as_str).unwrap_or("tiffin")
        )?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the subscriber; `who` names this process in every line.
pub fn init(who: String) {
    let _ = WHO.set(who);
    let filter = EnvFilter::try_from_env("TIFFIN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: piped logs must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(Prefixed(Format::default().with_target(false)))
        .try_init();
}
