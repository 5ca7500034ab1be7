//! otel-run's own span for the command it runs, and the resource it carries.
//!
//! The span starts before the child is spawned and ends when it exits. Its parent
//! is the TRACEPARENT otel-run was given (the environment carrier); the child gets
//! a TRACEPARENT for this span, so whatever the child does on its own, and nested
//! `otel-run` calls, join the same trace.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};

use super::command_args;
use crate::cicd::{self, Ci};
use crate::context::{SpanContext, SpanId, random_id};
use crate::launch::Exit;
use crate::settings::{Settings, vars};

pub struct ProcessSpan {
    /// This span's own context; what the child's TRACEPARENT points at.
    pub context: SpanContext,
    parent: Option<SpanId>,
    name: String,
    in_ci: bool,
    /// The executable's base name, for an unnamed service.
    command_name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

/// What the process span records of the command.
pub struct CommandInfo<'a> {
    pub argv: &'a [String],
    pub executable: &'a std::path::Path,
    /// The CI job it runs in, if any.
    pub ci: Option<&'a Ci>,
    /// The span's name unless `--span-name` gives one; else the executable's name.
    pub default_name: Option<&'a str>,
}

impl ProcessSpan {
    pub fn start(
        settings: &Settings,
        parent: Option<&SpanContext>,
        command: &CommandInfo,
    ) -> ProcessSpan {
        let trace_id = parent.map_or_else(random_id, |p| p.trace_id);
        let sampled = sample(settings, parent, &trace_id);
        let name = settings
            .text(&vars::SPAN_NAME)
            .or(command.default_name)
            .map(str::to_string)
            .unwrap_or_else(|| base_name(command.executable));
        let args = if settings.flag(&vars::REDACT_COMMAND_ARGS) {
            command_args::redact(command.argv)
        } else {
            command.argv.to_vec()
        };
        let mut attributes = vec![
            kv(
                "process.command",
                Value::StringValue(command.argv[0].clone()),
            ),
            kv(
                "process.command_args",
                Value::ArrayValue(ArrayValue {
                    values: args
                        .into_iter()
                        .map(|a| AnyValue {
                            value: Some(Value::StringValue(a)),
                        })
                        .collect(),
                }),
            ),
            kv(
                "process.executable.path",
                Value::StringValue(command.executable.display().to_string()),
            ),
            kv(
                "process.executable.name",
                Value::StringValue(base_name(command.executable)),
            ),
        ];
        let ci_attributes = command.ci.iter().flat_map(|ci| {
            ci.attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
        });
        let extra = ci_attributes.chain(settings.key_values(&vars::SPAN_ATTRIBUTES));
        attributes.extend(extra.map(|(k, v)| kv(&k, Value::StringValue(v))));
        ProcessSpan {
            context: SpanContext {
                trace_id,
                span_id: random_id(),
                sampled,
                trace_state: parent.map(|p| p.trace_state.clone()).unwrap_or_default(),
            },
            parent: parent.map(|p| p.span_id),
            name,
            in_ci: command.ci.is_some(),
            command_name: base_name(command.executable),
            start: SystemTime::now(),
            attributes,
        }
    }

    /// Ends the span with the child's outcome; `None` when it is not sampled.
    pub fn finish(mut self, settings: &Settings, pid: u32, exit: &Exit) -> Option<ResourceSpans> {
        if !self.context.sampled {
            return None;
        }
        self.attributes
            .push(kv("process.pid", Value::IntValue(i64::from(pid))));
        self.attributes.push(kv(
            "process.exit.code",
            Value::IntValue(i64::from(exit.code)),
        ));
        if self.in_ci {
            self.attributes.push(kv(
                "cicd.pipeline.task.run.result",
                Value::StringValue(cicd::result(exit).into()),
            ));
        }
        let status = match exit.signal {
            Some(signal) => Status {
                code: StatusCode::Error as i32,
                message: format!("killed by signal {signal}"),
            },
            None if exit.code != 0 => Status {
                code: StatusCode::Error as i32,
                message: format!("exit code {}", exit.code),
            },
            None => Status::default(),
        };
        let span = Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            trace_state: self.context.trace_state.clone(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x100 | u32::from(self.context.sampled),
            name: self.name,
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: nanos(self.start),
            end_time_unix_nano: nanos(SystemTime::now()),
            attributes: limit(settings, self.attributes),
            status: Some(status),
            ..Default::default()
        };
        Some(ResourceSpans {
            resource: Some(resource(settings, &self.command_name)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "otel-run".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
    }
}

/// otel-run's resource for the spans it makes itself: the child's service (from
/// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES), else `unknown_service:<command>`
/// as the specification names an unnamed service.
pub fn resource(settings: &Settings, command_name: &str) -> Resource {
    let mut attributes: Vec<KeyValue> = settings
        .key_values(&vars::RESOURCE_ATTRIBUTES)
        .into_iter()
        .filter(|(k, _)| k != "service.name")
        .map(|(k, v)| kv(&k, Value::StringValue(v)))
        .collect();
    let service = settings
        .service_name()
        .unwrap_or_else(|| format!("unknown_service:{command_name}"));
    attributes.insert(0, kv("service.name", Value::StringValue(service)));
    attributes.extend([
        kv("telemetry.sdk.name", Value::StringValue("otel-run".into())),
        kv("telemetry.sdk.language", Value::StringValue("rust".into())),
        kv(
            "telemetry.sdk.version",
            Value::StringValue(env!("CARGO_PKG_VERSION").into()),
        ),
    ]);
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The sampler's decision for the process span. Samplers otel-run cannot run
/// itself (jaeger_remote, xray) behave as `parentbased_always_on` here; the child
/// still gets the configured sampler.
fn sample(settings: &Settings, parent: Option<&SpanContext>, trace_id: &[u8; 16]) -> bool {
    let sampler = settings
        .text(&vars::TRACES_SAMPLER)
        .unwrap_or("parentbased_always_on");
    let ratio = || {
        let ratio: f64 = settings
            .text(&vars::TRACES_SAMPLER_ARG)
            .and_then(|r| r.parse().ok())
            .unwrap_or(1.0);
        // As the SDKs do: the trace id's low 64 bits against the ratio's share of 2^64.
        let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
        (low as f64) < ratio * (u64::MAX as f64)
    };
    let root = || match sampler.trim_start_matches("parentbased_") {
        "always_off" => false,
        "traceidratio" => ratio(),
        _ => true,
    };
    match (
        sampler.starts_with("parentbased_")
            || !matches!(sampler, "always_on" | "always_off" | "traceidratio"),
        parent,
    ) {
        (true, Some(parent)) => parent.sampled,
        _ => root(),
    }
}

/// Applies the attribute count and value length limits to otel-run's own span.
fn limit(settings: &Settings, attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    Limits::of(settings).apply(attributes)
}

/// The span attribute limits, read once for spans made in numbers (the proxy's).
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

    pub fn of(settings: &Settings) -> Limits {
        let count = settings
            .count(&vars::SPAN_ATTRIBUTE_COUNT_LIMIT)
            .or_else(|| settings.count(&vars::ATTRIBUTE_COUNT_LIMIT));
        let length = settings
            .count(&vars::SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT)
            .or_else(|| settings.count(&vars::ATTRIBUTE_VALUE_LENGTH_LIMIT));
        Limits {
            count: count.map(|c| c as usize),
            length: length.map(|l| l as usize),
        }
    }

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

pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn base_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Inputs;

    fn settings(env: &[(&str, &str)]) -> Settings {
        Settings::resolve(&Inputs {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn parent(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled,
            trace_state: "k=v".into(),
        }
    }

    #[test]
    fn parent_based_samplers_follow_the_parent() {
        let s = settings(&[]);
        assert!(sample(&s, Some(&parent(true)), &[7; 16]));
        assert!(!sample(&s, Some(&parent(false)), &[7; 16]));
        assert!(sample(&s, None, &[7; 16]));
        let off = settings(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert!(!sample(&off, Some(&parent(true)), &[7; 16]));
    }

    #[test]
    fn ratio_sampler_uses_the_low_bits_of_the_trace_id() {
        let s = settings(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        let mut low = [0u8; 16];
        low[8] = 0x10;
        let mut high = [0u8; 16];
        high[8] = 0xf0;
        assert!(sample(&s, None, &low));
        assert!(!sample(&s, None, &high));
    }

    #[test]
    fn span_continues_the_parent_and_records_the_exit() {
        let s = settings(&[("OTEL_SERVICE_NAME", "ci")]);
        let argv = vec!["make".to_string(), "test".to_string()];
        let info = CommandInfo {
            argv: &argv,
            executable: std::path::Path::new("/usr/bin/make"),
            ci: None,
            default_name: None,
        };
        let span = ProcessSpan::start(&s, Some(&parent(true)), &info);
        assert_eq!(span.context.trace_id, [7; 16]);
        assert_eq!(span.context.trace_state, "k=v");
        let rs = span
            .finish(
                &s,
                42,
                &Exit {
                    code: 2,
                    signal: None,
                    from_terminal: false,
                },
            )
            .unwrap();
        let out = &rs.scope_spans[0].spans[0];
        assert_eq!(out.name, "make");
        assert_eq!(out.parent_span_id, vec![9; 8]);
        assert_eq!(out.status.as_ref().unwrap().code, StatusCode::Error as i32);
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        assert_eq!(
            service.value.as_ref().unwrap().value,
            Some(Value::StringValue("ci".into()))
        );
        let exit = out
            .attributes
            .iter()
            .find(|kv| kv.key == "process.exit.code")
            .unwrap();
        assert_eq!(exit.value.as_ref().unwrap().value, Some(Value::IntValue(2)));
    }

    #[test]
    fn unsampled_span_is_not_exported() {
        let s = settings(&[]);
        let argv = vec!["true".to_string()];
        let info = CommandInfo {
            argv: &argv,
            executable: std::path::Path::new("/bin/true"),
            ci: None,
            default_name: None,
        };
        let span = ProcessSpan::start(&s, Some(&parent(false)), &info);
        assert!(!span.context.sampled);
        assert!(
            span.finish(
                &s,
                1,
                &Exit {
                    code: 0,
                    signal: None,
                    from_terminal: false,
                }
            )
            .is_none()
        );
    }

    #[test]
    fn limits_cut_long_values() {
        let s = settings(&[
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "1"),
        ]);
        let out = limit(
            &s,
            vec![
                kv("a", Value::StringValue("abcdef".into())),
                kv("b", Value::IntValue(1)),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("abc".into()))
        );
    }
}
