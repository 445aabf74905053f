//! Exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0.
//!
//! The text format copies what BentoML's Python client (`prometheus_client` in
//! multiprocess mode) writes, so a tiffin scrape diffs cleanly against a
//! BentoML 1.x scrape of the same service, and dashboards and alerts written
//! for BentoML keep matching (the families are listed in
//! <https://docs.bentoml.com/en/latest/guides/observability/metrics.html>):
//! - numbers use Python's `floatToGoString`: `20.0`, `0.005`, `1e-05`,
//!   `1.234567e+06`, `+Inf`, `-Inf`, `NaN` (even its `1e+010` quirk for
//!   values ≥ 10^10, because `le` label values must match byte for byte);
//!   counts are written the same way (`13.0`);
//! - labels are sorted by name, and `le` / `quantile` take their sorted place
//!   among them (`{endpoint=..,http_response_code=..,le="0.005",service_name=..}`);
//! - histograms write `_sum`, then the cumulative `_bucket`s ending with
//!   `le="+Inf"`, then `_count` (the multiprocess collector's order);
//! - counters: `# HELP`/`# TYPE` and samples all use the `_total` name;
//! - help escapes `\` and newline; label values also escape `"`.
//!
//! Summaries (which Python's multiprocess mode cannot export) write
//! `{quantile="0.5"|"0.9"|"0.99"}` from the merged sketch, then `_sum`, `_count`.
//!
//! OpenMetrics differs where the spec requires: counter families are named
//! without `_total` in metadata, help also escapes `"`, histogram/summary
//! samples end with `_count` then `_sum`, and the body ends with `# EOF`.
//!
//! Everything is written into one `String`; numbers are formatted on the stack,
//! so rendering allocates only when the output buffer grows.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Family, Kind, Snapshot, Value};

/// `Content-Type` of [`render_text`] output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Content-Type` of [`render_openmetrics`] output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Quantiles every summary exposes.
pub const SUMMARY_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what a scrape gets unless it asks otherwise).
    #[default]
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format from a scrape's `Accept` header, as Python's
    /// `choose_encoder` does: OpenMetrics when any listed media type is
    /// `application/openmetrics-text`, else text 0.0.4.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|media| {
                media.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/openmetrics-text")
                })
            })
        });
        if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Renders Prometheus text format 0.0.4, formatted like BentoML's Python client.
pub fn render_text(snapshot: &Snapshot) -> String {
    render(snapshot, Format::Text)
}

/// Renders OpenMetrics 1.0 text, terminated by `# EOF`.
pub fn render_openmetrics(snapshot: &Snapshot) -> String {
    render(snapshot, Format::OpenMetrics)
}

/// Renders `snapshot` in `format`.
pub fn render(snapshot: &Snapshot, format: Format) -> String {
    // Rough size: a typical sample line with a few labels is ~150 bytes.
    let lines: usize = snapshot
        .families
        .iter()
        .map(|f| {
            let per_series = match f.kind {
                Kind::Counter | Kind::Gauge(_) => 1,
                Kind::Histogram => f.series.first().map_or(3, |s| match &s.value {
                    Value::Histogram(h) => h.buckets.len() + 3,
                    _ => 3,
                }),
                Kind::Summary => SUMMARY_QUANTILES.len() + 2,
            };
            2 + per_series * f.series.len()
        })
        .sum();
    let mut out = String::with_capacity(lines * 150 + 16);
    for family in &snapshot.families {
        write_family(&mut out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_family(out: &mut String, family: &Family, format: Format) {
    // Counters: the text format names everything `x_total`; OpenMetrics names the family `x`.
    let (name, meta_suffix) = match family.kind {
        Kind::Counter => {
            let base = family.name.strip_suffix("_total").unwrap_or(&family.name);
            (base, if format == Format::Text { "_total" } else { "" })
        }
        _ => (family.name.as_str(), ""),
    };
    out.push_str("# HELP ");
    out.push_str(name);
    out.push_str(meta_suffix);
    out.push(' ');
    escape_help(out, &family.help, format);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(meta_suffix);
    out.push(' ');
    out.push_str(family.kind.type_name());
    out.push('\n');

    for series in &family.series {
        let labels = series.labels.as_slice();
        match &series.value {
            Value::Counter(v) => sample(out, name, "_total", labels, None, |o| fmt_f64(o, *v)),
            Value::Gauge(v) => sample(out, name, "", labels, None, |o| fmt_f64(o, *v)),
            Value::Histogram(h) => {
                if format == Format::Text {
                    sample(out, name, "_sum", labels, None, |o| fmt_f64(o, h.sum));
                }
                for &(bound, count) in &h.buckets {
                    let le = Extra {
                        name: "le",
                        value: bound,
                    };
                    sample(out, name, "_bucket", labels, Some(le), |o| {
                        fmt_count(o, count);
                    });
                }
                let inf = Extra {
                    name: "le",
                    value: f64::INFINITY,
                };
                sample(out, name, "_bucket", labels, Some(inf), |o| {
                    fmt_count(o, h.count);
                });
                sample(out, name, "_count", labels, None, |o| fmt_count(o, h.count));
                if format == Format::OpenMetrics {
                    sample(out, name, "_sum", labels, None, |o| fmt_f64(o, h.sum));
                }
            }
            Value::Summary(s) => {
                for q in SUMMARY_QUANTILES {
                    let extra = Extra {
                        name: "quantile",
                        value: q,
                    };
                    let v = s.sketch.quantile(q);
                    sample(out, name, "", labels, Some(extra), |o| fmt_f64(o, v));
                }
                if format == Format::Text {
                    sample(out, name, "_sum", labels, None, |o| fmt_f64(o, s.sum));
                    sample(out, name, "_count", labels, None, |o| fmt_count(o, s.count));
                } else {
                    sample(out, name, "_count", labels, None, |o| fmt_count(o, s.count));
                    sample(out, name, "_sum", labels, None, |o| fmt_f64(o, s.sum));
                }
            }
        }
    }
}

/// A label the exposition adds (`le`, `quantile`), inserted at its sorted position.
#[derive(Clone, Copy)]
struct Extra {
    name: &'static str,
    value: f64,
}

/// Writes `name+suffix{labels} value\n`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    extra: Option<Extra>,
    value: impl FnOnce(&mut String),
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut extra = extra;
        let mut first = true;
        for (label, label_value) in labels {
            if let Some(e) = extra.filter(|e| e.name < label.as_str()) {
                write_extra(out, e, &mut first);
                extra = None;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, label_value);
            out.push('"');
        }
        if let Some(e) = extra {
            write_extra(out, e, &mut first);
        }
        out.push('}');
    }
    out.push(' ');
    value(out);
    out.push('\n');
}

fn write_extra(out: &mut String, extra: Extra, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(extra.name);
    out.push_str("=\"");
    fmt_f64(out, extra.value);
    out.push('"');
}

/// Help text: `\` and newline escaped; OpenMetrics also escapes `"`.
fn escape_help(out: &mut String, help: &str, format: Format) {
    let quote = format == Format::OpenMetrics;
    escape(out, help, |c| match c {
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '"' if quote => Some("\\\""),
        _ => None,
    });
}

/// Label values: `\`, `"` and newline escaped.
fn escape_label_value(out: &mut String, value: &str) {
    escape(out, value, |c| match c {
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '"' => Some("\\\""),
        _ => None,
    });
}

/// Copies `s`, replacing the characters `map` knows, in runs so clean text is one `push_str`.
fn escape(out: &mut String, s: &str, map: impl Fn(char) -> Option<&'static str>) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if let Some(replacement) = map(c) {
            out.push_str(&s[start..i]);
            out.push_str(replacement);
            start = i + c.len_utf8();
        }
    }
    out.push_str(&s[start..]);
}

/// Writes a count the way Python writes `float(count)`.
fn fmt_count(out: &mut String, n: u64) {
    if n < 1_000_000 {
        let _ = write!(out, "{n}.0");
    } else {
        fmt_f64(out, n as f64);
    }
}

/// Writes `v` exactly as Python's `prometheus_client.utils.floatToGoString`.
pub fn fmt_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Fast path for the common case (counts, small integers): Python's repr is `N.0`.
    if v.fract() == 0.0 && v.abs() < 1e6 {
        let _ = write!(out, "{}.0", v as i64);
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like Python's repr,
    // but breaks an exact tie between two shortest candidates upwards where
    // Python (David Gay's dtoa) picks the closest with ties to even; Rust's
    // fixed-precision mode rounds exactly that way, so redo it at the same
    // length and keep it if it still round-trips.
    let mut shortest = StackStr::new();
    if write!(shortest, "{v:e}").is_err() {
        let _ = write!(out, "{v}");
        return;
    }
    let digits = shortest
        .as_str()
        .split('e')
        .next()
        .map_or(0, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let mut exact = StackStr::new();
    let use_exact = digits > 1
        && write!(exact, "{:.*e}", digits - 1, v).is_ok()
        && exact.as_str() != shortest.as_str()
        && exact.as_str().parse::<f64>() == Ok(v);
    let s = if use_exact {
        exact.as_str()
    } else {
        shortest.as_str()
    };
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let Some((mantissa, exp)) = s.split_once('e') else {
        out.push_str(s);
        return;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        out.push_str(s);
        return;
    };
    let (first, rest) = match mantissa.split_once('.') {
        Some((first, rest)) => (first, rest),
        None => (mantissa, ""),
    };
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        // Python repr's scientific form: `1e+16`, `1.5e-07`.
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if !negative && exp >= 6 {
        // floatToGoString switches to exponents at 7 integer digits, writing
        // `e+0` then the exponent (so 1e10 is `1e+010`); copied verbatim.
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e+0{exp}");
    } else if exp >= 0 {
        // Positional with at least one fractional digit: `1234.5`, `100.0`.
        let int_digits = exp.unsigned_abs() as usize;
        out.push_str(first);
        let (int_rest, frac) = rest.split_at(int_digits.min(rest.len()));
        out.push_str(int_rest);
        for _ in int_rest.len()..int_digits {
            out.push('0');
        }
        out.push('.');
        out.push_str(if frac.is_empty() { "0" } else { frac });
    } else {
        // 0.00ddd
        out.push_str("0.");
        for _ in 1..exp.unsigned_abs() {
            out.push('0');
        }
        out.push_str(first);
        out.push_str(rest);
    }
}

/// A small stack buffer for formatting one number without allocating.
struct StackStr {
    buf: [u8; 40],
    len: usize,
}

impl StackStr {
    fn new() -> Self {
        StackStr {
            buf: [0; 40],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this is always valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
