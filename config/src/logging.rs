//! Logging settings: BentoML's per-request access log
//! (`api_server.logging.access.*`) and tiffin's own choice of line format
//! (`logging.format`, set by `--log-format`).
//!
//! The access-log keys and defaults are BentoML 1.2's
//! (`bentoml/_internal/configuration/v1/default_configuration.yaml`): the log
//! is on, with the request's and the response's content type and length.
//! `format.trace_id` and `format.span_id` are Python format specs there
//! (`032x`: 32 lower-case hex digits, zero-padded); tiffin accepts the same
//! small language, `[0][width](x|X|d)`, and parses it once at start
//! ([`IdFormat::parse`]) so that writing a line never re-reads it.
//!
//! BentoML has no key for the line format of its logs (it configures Python's
//! `logging`), so `logging.format` is tiffin's: `text` (the default, one
//! human-readable line per event) or `json` (one JSON object per line, the
//! same fields), for every process of the service.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// `api_server.logging.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServerLogging {
    /// The per-request access log (`api_server.logging.access.*`).
    pub access: AccessLogConfig,
}

/// `api_server.logging.access.*`: one line per request, written after the
/// response, in BentoML's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Whether the access log is written (default true).
    pub enabled: bool,
    /// Show the request's `Content-Length` (default true).
    pub request_content_length: bool,
    /// Show the request's `Content-Type` (default true).
    pub request_content_type: bool,
    /// Show the response's length in bytes (default true).
    pub response_content_length: bool,
    /// Show the response's `Content-Type` (default true).
    pub response_content_type: bool,
    /// How trace and span ids are written (`format.trace_id`, `format.span_id`).
    pub format: AccessLogIdFormat,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            request_content_length: true,
            request_content_type: true,
            response_content_length: true,
            response_content_type: true,
            format: AccessLogIdFormat::default(),
        }
    }
}

/// `api_server.logging.access.format.*`: Python-style format specs for the ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogIdFormat {
    /// Format of the trace id, a 128-bit number (default `032x`).
    pub trace_id: String,
    /// Format of the span id, a 64-bit number (default `016x`).
    pub span_id: String,
}

impl Default for AccessLogIdFormat {
    fn default() -> Self {
        AccessLogIdFormat {
            trace_id: "032x".to_owned(),
            span_id: "016x".to_owned(),
        }
    }
}

/// The widest field an id format may ask for.
pub const MAX_ID_WIDTH: usize = 64;

/// A parsed id format spec: `[0][width](x|X|d)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdFormat {
    /// Pad with zeros (else spaces) up to `width`.
    pub zero_pad: bool,
    /// Minimum width, at most [`MAX_ID_WIDTH`].
    pub width: usize,
    /// How the number is written.
    pub radix: IdRadix,
}

/// The digits of an [`IdFormat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdRadix {
    /// `x`: lower-case hex.
    LowerHex,
    /// `X`: upper-case hex.
    UpperHex,
    /// `d`: decimal (BentoML's log examples show ids this way).
    Decimal,
}

impl IdFormat {
    /// Parses a spec such as `032x`, `x` or `d`; the error says what is allowed.
    pub fn parse(spec: &str) -> Result<IdFormat, String> {
        let bad = || {
            format!(
                "'{spec}' is not an id format; expected [0][width](x|X|d) with width at most \
                 {MAX_ID_WIDTH}, e.g. 032x"
            )
        };
        let (body, radix) = match spec.chars().last() {
            Some('x') => (&spec[..spec.len() - 1], IdRadix::LowerHex),
            Some('X') => (&spec[..spec.len() - 1], IdRadix::UpperHex),
            Some('d') => (&spec[..spec.len() - 1], IdRadix::Decimal),
            _ => return Err(bad()),
        };
        let (zero_pad, digits) = match body.strip_prefix('0') {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let width = if digits.is_empty() {
            0
        } else if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 3 {
            digits.parse::<usize>().map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        if width > MAX_ID_WIDTH {
            return Err(bad());
        }
        Ok(IdFormat {
            zero_pad,
            width,
            radix,
        })
    }

    /// Appends `value` in this format to `buf`. Hex is written digit by
    /// digit: `core::fmt`'s padded `u128` hex was a third of the access
    /// log's cost in a profile of `echo` (README, "Access log").
    pub fn push(&self, buf: &mut Vec<u8>, value: u128) {
        let digits: &[u8; 16] = match self.radix {
            IdRadix::LowerHex => b"0123456789abcdef",
            IdRadix::UpperHex => b"0123456789ABCDEF",
            IdRadix::Decimal => {
                // Rare (not BentoML's default): the formatter is fine here.
                let mut s = String::new();
                let _ = self.write(&mut s, value);
                buf.extend_from_slice(s.as_bytes());
                return;
            }
        };
        let needed = (32 - value.leading_zeros() as usize / 4).max(1);
        let pad = self.width.saturating_sub(needed);
        buf.extend(std::iter::repeat_n(
            if self.zero_pad { b'0' } else { b' ' },
            pad,
        ));
        for i in (0..needed).rev() {
            buf.push(digits[((value >> (4 * i)) & 0xf) as usize]);
        }
    }

    /// Writes `value` in this format.
    pub fn write(&self, out: &mut impl fmt::Write, value: u128) -> fmt::Result {
        let w = self.width;
        match (self.radix, self.zero_pad) {
            (IdRadix::LowerHex, true) => write!(out, "{value:0w$x}"),
            (IdRadix::LowerHex, false) => write!(out, "{value:w$x}"),
            (IdRadix::UpperHex, true) => write!(out, "{value:0w$X}"),
            (IdRadix::UpperHex, false) => write!(out, "{value:w$X}"),
            (IdRadix::Decimal, true) => write!(out, "{value:0w$}"),
            (IdRadix::Decimal, false) => write!(out, "{value:w$}"),
        }
    }
}

impl ApiServerLogging {
    /// Checks the id formats (the booleans need no check).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let format = &self.access.format;
        for (key, spec) in [
            (
                "api_server.logging.access.format.trace_id",
                &format.trace_id,
            ),
            ("api_server.logging.access.format.span_id", &format.span_id),
        ] {
            IdFormat::parse(spec).map_err(|reason| ConfigError::invalid(key, reason))?;
        }
        Ok(())
    }
}

/// `logging.*`: tiffin's settings for every process's log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Line format of every log line, access log included (`logging.format`,
    /// `--log-format`; default `text`).
    pub format: LogFormat,
}

/// `logging.format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, prefixed with the process.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(spec: &str, value: u128) -> String {
        let mut s = String::new();
        IdFormat::parse(spec)
            .expect("valid spec")
            .write(&mut s, value)
            .expect("write");
        s
    }

    #[test]
    fn id_formats_follow_python_specs() {
        assert_eq!(shown("032x", 0xabc), format!("{:032x}", 0xabc));
        assert_eq!(shown("016x", 0xabc), "0000000000000abc");
        assert_eq!(shown("x", 255), "ff");
        assert_eq!(shown("X", 255), "FF");
        assert_eq!(shown("d", 255), "255");
        assert_eq!(shown("5d", 7), "    7");
    }

    #[test]
    fn pushed_ids_are_the_formatted_ids() {
        let values = [
            0,
            1,
            0xf,
            0x10,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            1 << 100,
        ];
        for spec in [
            "032x", "016x", "x", "X", "08X", "40x", "5x", "0x", "d", "5d", "040d",
        ] {
            let format = IdFormat::parse(spec).expect("valid spec");
            for value in values {
                let mut pushed = Vec::new();
                format.push(&mut pushed, value);
                assert_eq!(
                    String::from_utf8(pushed).expect("ascii"),
                    shown(spec, value),
                    "{spec} of {value:#x}"
                );
            }
        }
    }

    #[test]
    fn bad_id_formats_are_refused() {
        for spec in [
            "", "032", "32s", "0x", "-1x", "999x", "65x", "1234x", "0 2x",
        ] {
            if spec == "0x" {
                // "0x": zero padding, no width, hex: valid.
                assert!(IdFormat::parse(spec).is_ok());
                continue;
            }
            assert!(IdFormat::parse(spec).is_err(), "{spec} accepted");
        }
    }
}
