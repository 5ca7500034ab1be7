//! W3C trace context through the environment: the specification's environment
//! carrier (TRACEPARENT, TRACESTATE). otel-run reads its parent from there and
//! hands the child a TRACEPARENT for the process span, so nested runs form one trace.

use super::hex;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A span's identity as propagated between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    pub trace_state: String,
}

impl SpanContext {
    /// A context without trace state.
    pub fn new(trace_id: TraceId, span_id: SpanId, sampled: bool) -> SpanContext {
        SpanContext {
            trace_id,
            span_id,
            sampled,
            trace_state: String::new(),
        }
    }

    /// Reads TRACEPARENT / TRACESTATE; an absent or malformed TRACEPARENT gives `None`.
    pub fn from_env(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<SpanContext> {
        let (trace_id, span_id, flags) = parse_traceparent(traceparent?.trim())?;
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            trace_state: tracestate.unwrap_or_default().trim().to_string(),
        })
    }

    /// The `traceparent` header value for this context.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(&self.trace_id),
            hex::encode(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

/// `version-traceid-spanid-flags`, lower-case hex, ids not all zero. Versions above
/// 00 may carry more fields, which are ignored as the W3C specification says.
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut parts = value.split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    let trace_id: TraceId = hex::decode(trace)?;
    let span_id: SpanId = hex::decode(span)?;
    let flags: [u8; 1] = hex::decode(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let ctx = SpanContext::from_env(Some(VALID), Some("rojo=00f067aa0ba902b7")).unwrap();
        assert!(ctx.sampled);
        assert_eq!(hex::encode(&ctx.span_id), "00f067aa0ba902b7");
        assert_eq!(ctx.trace_state, "rojo=00f067aa0ba902b7");
        assert_eq!(ctx.traceparent(), VALID);
    }

    #[test]
    fn not_sampled_flag() {
        let ctx = SpanContext::from_env(Some(&VALID.replace("-01", "-00")), None).unwrap();
        assert!(!ctx.sampled);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::from_env(Some(bad), None), None, "{bad}");
        }
    }

    #[test]
    fn future_versions_may_carry_more_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(SpanContext::from_env(Some(future), None).is_some());
    }
}
