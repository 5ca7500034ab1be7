//! Context propagation in HTTP headers: W3C tracecontext, B3 single and multi.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::context::{SpanContext, TraceId};
use super::hex;

/// The propagators of OTEL_PROPAGATORS otel-run speaks. Baggage needs no work:
/// the header passes through the proxy unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Propagators {
    pub tracecontext: bool,
    pub b3: bool,
    pub b3multi: bool,
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const B3: &str = "b3";
const B3_TRACE: &str = "x-b3-traceid";
const B3_SPAN: &str = "x-b3-spanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_PARENT: &str = "x-b3-parentspanid";

impl Propagators {
    pub fn new(names: &[String]) -> Propagators {
        let has = |n: &str| names.iter().any(|x| x == n);
        Propagators {
            tracecontext: has("tracecontext"),
            b3: has("b3"),
            b3multi: has("b3multi"),
        }
    }

    /// The remote parent a request carries, in the configured formats' order of precedence.
    pub fn extract(&self, headers: &HeaderMap) -> Option<SpanContext> {
        self.extract_with(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }

    /// [`Propagators::extract`] from any headers: `get` gives a header's value by
    /// its lowercase name.
    pub fn extract_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
        if self.tracecontext
            && let Some(ctx) = SpanContext::from_env(get(TRACEPARENT), get(TRACESTATE))
        {
            return Some(ctx);
        }
        if self.b3
            && let Some(ctx) = get(B3).and_then(parse_b3)
        {
            return Some(ctx);
        }
        if self.b3multi {
            let trace_id = b3_trace_id(get(B3_TRACE)?)?;
            let span_id = b3_id::<8>(get(B3_SPAN)?)?;
            let sampled = !matches!(get(B3_SAMPLED), Some("0" | "false"));
            return Some(SpanContext::new(trace_id, span_id, sampled));
        }
        None
    }

    /// Whether the header `name` (any case) is one the propagators write, so an
    /// incoming value is replaced rather than passed on.
    pub fn replaces(&self, name: &[u8]) -> bool {
        let any = |names: &[&str]| {
            names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        };
        (self.tracecontext && any(&[TRACEPARENT, TRACESTATE]))
            || (self.b3 && any(&[B3]))
            || (self.b3multi && any(&[B3_TRACE, B3_SPAN, B3_SAMPLED, B3_PARENT]))
    }

    /// Writes `context` into the request for the next hop, replacing what was there.
    pub fn inject(&self, headers: &mut HeaderMap, context: &SpanContext) {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.replaces(n.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
        self.inject_with(context, |name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static(name), value);
            }
        });
    }

    /// The headers that carry `context` to the next hop, one `put(name, value)`
    /// each; those [`Propagators::replaces`] are to be left out of the request.
    pub fn inject_with(&self, context: &SpanContext, mut put: impl FnMut(&'static str, &[u8])) {
        if self.tracecontext {
            put(TRACEPARENT, &traceparent(context));
            if !context.trace_state.is_empty() {
                put(TRACESTATE, context.trace_state.as_bytes());
            }
        }
        if !(self.b3 || self.b3multi) {
            return;
        }
        let (trace, span) = (
            hex::encode(&context.trace_id),
            hex::encode(&context.span_id),
        );
        let sampled = if context.sampled { "1" } else { "0" };
        if self.b3 {
            put(B3, format!("{trace}-{span}-{sampled}").as_bytes());
        }
        if self.b3multi {
            put(B3_TRACE, trace.as_bytes());
            put(B3_SPAN, span.as_bytes());
            put(B3_SAMPLED, sampled.as_bytes());
        }
    }
}

/// The `traceparent` value, written without the formatting machinery: it is
/// made for every request.
fn traceparent(context: &SpanContext) -> [u8; 55] {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    hex::write(&context.trace_id, &mut out[3..35]);
    out[35] = b'-';
    hex::write(&context.span_id, &mut out[36..52]);
    out[52..].copy_from_slice(if context.sampled { b"-01" } else { b"-00" });
    out
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parent}]]`; a lone `0`/`d` carries no parent.
fn parse_b3(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = b3_id::<8>(parts.next()?)?;
    let sampled = !matches!(parts.next(), Some("0"));
    Some(SpanContext::new(trace_id, span_id, sampled))
}

/// A B3 trace id: 32 hex digits, or 16 (left-padded with zeros).
fn b3_trace_id(s: &str) -> Option<TraceId> {
    if s.len() == 16 {
        b3_id(&format!("{s:0>32}"))
    } else {
        b3_id(s)
    }
}

/// A B3 id: hex of either case, not all zero.
fn b3_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s).filter(|id| *id != [0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_header_matches_the_formatter() {
        let ctx = crate::telemetry::sampler::child_context(
            &crate::telemetry::Sampler::new("always_on", None),
            None,
        );
        assert_eq!(&traceparent(&ctx)[..], ctx.traceparent().as_bytes());
    }

    #[test]
    fn b3_round_trip_and_precedence() {
        let all = Propagators::new(&["tracecontext".into(), "b3".into(), "b3multi".into()]);
        let ctx = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
            trace_state: "k=v".into(),
        };
        let mut headers = HeaderMap::new();
        all.inject(&mut headers, &ctx);
        assert_eq!(headers["tracestate"], "k=v");
        assert_eq!(
            headers["b3"],
            "07070707070707070707070707070707-0909090909090909-1"
        );
        assert_eq!(headers["x-b3-sampled"], "1");
        assert_eq!(all.extract(&headers), Some(ctx.clone()));
        let b3_only = Propagators::new(&["b3".into()]);
        headers.remove("traceparent");
        let got = b3_only.extract(&headers).unwrap();
        assert_eq!((got.trace_id, got.span_id), (ctx.trace_id, ctx.span_id));
        let mut short = HeaderMap::new();
        short.insert(
            "b3",
            HeaderValue::from_static("a3ce929d0e0e4736-00f067aa0ba902b7-0"),
        );
        let got = b3_only.extract(&short).unwrap();
        assert!(!got.sampled);
        assert_eq!(
            hex::encode(&got.trace_id),
            "0000000000000000a3ce929d0e0e4736"
        );
    }

    #[test]
    fn no_propagator_extracts_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(Propagators::new(&[]).extract(&headers).is_none());
        assert!(
            Propagators::new(&["tracecontext".into()])
                .extract(&headers)
                .is_some()
        );
    }
}
