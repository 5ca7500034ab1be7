//! Span attribute limits, applied to every span otel-run makes.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};

/// The span attribute limits (OTEL_SPAN_ATTRIBUTE_*, else OTEL_ATTRIBUTE_*).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    count: Option<usize>,
    length: Option<usize>,
}

impl Limits {
    pub fn new(count: Option<usize>, length: Option<usize>) -> Limits {
        Limits { count, length }
    }

    /// Whether a span that has `n` attributes may have one more.
    pub fn keeps(&self, n: usize) -> bool {
        self.count.is_none_or(|count| n < count)
    }

    /// `value` within the length limit, cut at a character boundary.
    pub fn cut<'a>(&self, value: &'a str) -> &'a str {
        match self.length.and_then(|l| value.char_indices().nth(l)) {
            Some((i, _)) => &value[..i],
            None => value,
        }
    }

    /// `attributes` within the count limit, their text values within the length limit.
    pub fn apply(&self, mut attributes: Vec<KeyValue>) -> Vec<KeyValue> {
        if let Some(count) = self.count {
            attributes.truncate(count);
        }
        let Some(length) = self.length else {
            return attributes;
        };
        let cut = |s: &mut String| {
            if let Some((i, _)) = s.char_indices().nth(length) {
                s.truncate(i);
            }
        };
        for attr in &mut attributes {
            match attr.value.as_mut().and_then(|v| v.value.as_mut()) {
                Some(Value::StringValue(s)) => cut(s),
                Some(Value::ArrayValue(a)) => {
                    for v in &mut a.values {
                        if let Some(Value::StringValue(s)) = v.value.as_mut() {
                            cut(s);
                        }
                    }
                }
                _ => {}
            }
        }
        attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::kv;

    #[test]
    fn limits_cut_long_values() {
        let out = Limits::new(Some(1), Some(3)).apply(vec![
            kv("a", Value::StringValue("abcdef".into())),
            kv("b", Value::IntValue(1)),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("abc".into()))
        );
    }
}
