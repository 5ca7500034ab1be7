//! otel-run's own span for the command it runs.
//!
//! The span starts before the child is spawned and ends when it exits. Its parent
//! is the TRACEPARENT otel-run was given (the environment carrier); the child gets
//! a TRACEPARENT for this span, so whatever the child does on its own, and nested
//! `otel-run` calls, join the same trace.

use std::time::SystemTime;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};

use super::command_args;
use crate::launch::Exit;
use crate::telemetry::cicd::{self, Ci};
use crate::telemetry::context::{SpanContext, SpanId};
use crate::telemetry::ids::random_id;
use crate::telemetry::{Telemetry, command_name, kv, nanos, strings};

/// What the settings say of the process span.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// OTEL_SDK_DISABLED: no span at all.
    pub disabled: bool,
    /// `--span-name`.
    pub span_name: Option<String>,
    /// `--redact-command-args`.
    pub redact_args: bool,
    /// `--span-attributes`.
    pub attributes: Vec<(String, String)>,
}

pub struct ProcessSpan {
    /// This span's own context; what the child's TRACEPARENT points at.
    pub context: SpanContext,
    parent: Option<SpanId>,
    name: String,
    in_ci: bool,
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
        telemetry: &Telemetry,
        config: &Config,
        parent: Option<&SpanContext>,
        command: &CommandInfo,
    ) -> ProcessSpan {
        let trace_id = parent.map_or_else(random_id, |p| p.trace_id);
        let sampled = telemetry.sampler.sample(parent, &trace_id);
        let name = config
            .span_name
            .as_deref()
            .or(command.default_name)
            .map(str::to_string)
            .unwrap_or_else(|| command_name(command.executable));
        let args = if config.redact_args {
            command_args::redact(command.argv)
        } else {
            command.argv.to_vec()
        };
        let mut attributes = vec![
            kv(
                "process.command",
                Value::StringValue(command.argv[0].clone()),
            ),
            kv("process.command_args", strings(args)),
            kv(
                "process.executable.path",
                Value::StringValue(command.executable.display().to_string()),
            ),
            kv(
                "process.executable.name",
                Value::StringValue(command_name(command.executable)),
            ),
        ];
        let ci_attributes = command.ci.iter().flat_map(|ci| {
            ci.attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
        });
        let extra = ci_attributes.chain(config.attributes.iter().cloned());
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
            start: SystemTime::now(),
            attributes,
        }
    }

    /// Ends the span with the child's outcome; `None` when it is not sampled.
    pub fn finish(mut self, telemetry: &Telemetry, pid: u32, exit: &Exit) -> Option<ResourceSpans> {
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
            attributes: telemetry.limits.apply(self.attributes),
            status: Some(status),
            ..Default::default()
        };
        Some(ResourceSpans {
            resource: Some(telemetry.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(Telemetry::scope("otel-run")),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Inputs, Settings};

    /// The telemetry core and the span's settings for a run of `make`.
    fn core(env: &[(&str, &str)]) -> (Telemetry, Config) {
        let settings = Settings::resolve(&Inputs::of(env, &[])).unwrap();
        let ready = settings.ready().unwrap();
        let program = std::path::Path::new("/usr/bin/make");
        (Telemetry::new(&ready.telemetry, program), ready.process)
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
    fn span_continues_the_parent_and_records_the_exit() {
        let (core, config) = core(&[("OTEL_SERVICE_NAME", "ci")]);
        let argv = vec!["make".to_string(), "test".to_string()];
        let info = CommandInfo {
            argv: &argv,
            executable: std::path::Path::new("/usr/bin/make"),
            ci: None,
            default_name: None,
        };
        let span = ProcessSpan::start(&core, &config, Some(&parent(true)), &info);
        assert_eq!(span.context.trace_id, [7; 16]);
        assert_eq!(span.context.trace_state, "k=v");
        let rs = span
            .finish(
                &core,
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
        let (core, config) = core(&[]);
        let argv = vec!["true".to_string()];
        let info = CommandInfo {
            argv: &argv,
            executable: std::path::Path::new("/bin/true"),
            ci: None,
            default_name: None,
        };
        let span = ProcessSpan::start(&core, &config, Some(&parent(false)), &info);
        assert!(!span.context.sampled);
        assert!(
            span.finish(
                &core,
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
}
