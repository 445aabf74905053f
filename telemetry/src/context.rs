//! W3C trace context (`traceparent`) as tiffin reads it from clients and
//! carries it between its own processes.
//!
//! A client's `traceparent` header (https://www.w3.org/TR/trace-context/,
//! section 3.2) is `version-traceid-parentid-flags`, e.g.
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. Between the API
//! server and a runner worker the same three values travel as a
//! [`TraceContext`] inside `DataRequest::Call` (`ipc/src/proto.rs`), so the
//! worker's spans become children of the API server's without any header.

pub use tiffin_ipc::proto::TraceContext;

/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// Parses a `traceparent` header value; `None` for anything the
/// specification says to ignore (wrong length or shape, upper-case hex,
/// version `ff`, an all-zero trace or parent id).
pub fn parse_traceparent(value: &[u8]) -> Option<TraceContext> {
    // A future version may append fields after a dash; version 00 may not.
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex(&value[0..2])? as u8;
    if version == 0xff
        || (version == 0 && value.len() != TRACEPARENT_LEN)
        || (value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-')
    {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let span_id = hex(&value[36..52])? as u64;
    let flags = hex(&value[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Writes `ctx` as a version-00 `traceparent` value.
pub fn format_traceparent(ctx: &TraceContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        ctx.trace_id,
        ctx.span_id,
        u8::from(ctx.sampled)
    )
}

/// Lower-case hex digits only (the specification forbids upper case), at
/// most 32 of them.
fn hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    let mut n: u128 = 0;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(v);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_round_trips() {
        let ctx = parse_traceparent(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id, 0x00f067aa0ba902b7);
        assert!(ctx.sampled);
        assert_eq!(format_traceparent(&ctx), EXAMPLE);
    }

    #[test]
    fn invalid_values_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what";
        assert!(parse_traceparent(later.as_bytes()).is_some_and(|c| !c.sampled));
    }
}
