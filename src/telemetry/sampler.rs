//! The sampler of otel-run's own spans, and the context of a new span.

use super::context::{SpanContext, TraceId};
use super::ids::fast_id;

/// The sampler of otel-run's own spans, decided once from OTEL_TRACES_SAMPLER.
/// Samplers otel-run cannot run itself (jaeger_remote, xray) behave as
/// `parentbased_always_on` here; the child still gets the configured sampler.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Follow a remote parent's decision.
    parent_based: bool,
    /// The share of root traces kept, 0.0 to 1.0.
    ratio: f64,
}

/// `parentbased_always_on`, the specification's default.
impl Default for Sampler {
    fn default() -> Sampler {
        Sampler {
            parent_based: true,
            ratio: 1.0,
        }
    }
}

impl Sampler {
    /// `sampler` is a name of OTEL_TRACES_SAMPLER, `ratio` its argument for the
    /// ratio samplers (validated between 0 and 1 when the settings resolve).
    pub fn new(sampler: &str, ratio: Option<f64>) -> Sampler {
        let parent_based = sampler.starts_with("parentbased_")
            || !matches!(sampler, "always_on" | "always_off" | "traceidratio");
        let ratio = match sampler.trim_start_matches("parentbased_") {
            "always_off" => 0.0,
            "traceidratio" => ratio.unwrap_or(1.0),
            _ => 1.0,
        };
        Sampler {
            parent_based,
            ratio,
        }
    }

    /// Whether a span of `trace_id` under `parent` (or a root) is recorded.
    pub fn sample(&self, parent: Option<&SpanContext>, trace_id: &TraceId) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.sampled,
            // As the SDKs do: the trace id's low 64 bits against the ratio's share of 2^64.
            _ => {
                let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
                self.ratio >= 1.0 || (low as f64) < self.ratio * (u64::MAX as f64)
            }
        }
    }
}

/// The context of a new span under `parent` (or a new trace), with fast ids:
/// for the spans made in numbers (the proxies').
pub fn child_context(sampler: &Sampler, parent: Option<&SpanContext>) -> SpanContext {
    let trace_id = parent.map_or_else(fast_id, |p| p.trace_id);
    SpanContext {
        trace_id,
        span_id: fast_id(),
        sampled: sampler.sample(parent, &trace_id),
        trace_state: parent.map(|p| p.trace_state.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_follows_parent_or_ratio() {
        let parent = SpanContext::new([1; 16], [1; 8], false);
        let s = Sampler::new("parentbased_always_on", None);
        assert!(!s.sample(Some(&parent), &parent.trace_id));
        assert!(s.sample(None, &[0xff; 16]));
        assert!(Sampler::new("always_on", None).sample(Some(&parent), &[0xff; 16]));
        assert!(!Sampler::new("traceidratio", Some(0.0)).sample(None, &[0x01; 16]));
    }

    #[test]
    fn ratio_sampler_uses_the_low_bits_of_the_trace_id() {
        let s = Sampler::new("traceidratio", Some(0.5));
        let mut low = [0u8; 16];
        low[8] = 0x10;
        let mut high = [0u8; 16];
        high[8] = 0xf0;
        assert!(s.sample(None, &low));
        assert!(!s.sample(None, &high));
        assert!(Sampler::new("traceidratio", Some(1.0)).sample(None, &[0xff; 16]));
    }

    #[test]
    fn always_off_ignores_the_parent_and_unknown_samplers_follow_it() {
        let parent = SpanContext::new([7; 16], [9; 8], true);
        assert!(!Sampler::new("always_off", None).sample(Some(&parent), &[7; 16]));
        assert!(Sampler::new("jaeger_remote", None).sample(Some(&parent), &[7; 16]));
        let unsampled = SpanContext {
            sampled: false,
            ..parent
        };
        assert!(!Sampler::new("xray", None).sample(Some(&unsampled), &[7; 16]));
    }
}
