//! otel-run's own telemetry: what it needs to make spans of its own, built once
//! per run ([`Telemetry`]) and shared by every producer (the process span, the
//! proxy, the probes), which take it and a recorder, never the settings.
//!
//! - [`context`]: the W3C trace context and the environment carrier.
//! - [`propagation`]: the context in HTTP headers (tracecontext, b3).
//! - [`sampler`], [`ids`]: which spans are recorded, and their ids.
//! - [`limits`]: the attribute limits every span is cut to.
//! - [`spans`]: the traces pipeline's item, and the batch encoder producers
//!   write their spans with.
//! - [`cicd`]: the CI/CD job a run belongs to, as span attributes.
//! - [`hex`]: the one codec of ids as text.

pub mod cicd;
pub mod context;
pub mod hex;
pub mod ids;
pub mod limits;
pub mod propagation;
pub mod sampler;
pub mod spans;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use limits::Limits;
pub use propagation::Propagators;
pub use sampler::Sampler;

/// What the settings say of otel-run's own spans, resolved once.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// OTEL_SERVICE_NAME, else `service.name` of OTEL_RESOURCE_ATTRIBUTES.
    pub service_name: Option<String>,
    /// OTEL_RESOURCE_ATTRIBUTES, then the `k8s.*` attributes of the downward
    /// API that it does not name.
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
    pub propagators: Propagators,
    pub limits: Limits,
}

/// The core every producer of otel-run's own spans shares, built once per run.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The resource of every span otel-run makes: the child's service.
    pub resource: Resource,
    pub sampler: Sampler,
    pub propagators: Propagators,
    pub limits: Limits,
}

impl Telemetry {
    /// The core for a run of `program` (its name names an unnamed service).
    pub fn new(config: &Config, program: &Path) -> Telemetry {
        Telemetry {
            resource: resource(config, &command_name(program)),
            sampler: config.sampler,
            propagators: config.propagators,
            limits: config.limits,
        }
    }

    /// The instrumentation scope of one producer's spans (`otel-run`,
    /// `otel-run/proxy`, …).
    pub fn scope(name: &str) -> InstrumentationScope {
        InstrumentationScope {
            name: name.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }
}

/// otel-run's resource for the spans it makes itself: the child's service (from
/// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES), else `unknown_service:<command>`
/// as the specification names an unnamed service.
fn resource(config: &Config, command_name: &str) -> Resource {
    let service = config
        .service_name
        .clone()
        .unwrap_or_else(|| format!("unknown_service:{command_name}"));
    let mut attributes = vec![kv("service.name", Value::StringValue(service))];
    attributes.extend(
        config
            .resource_attributes
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| kv(k, Value::StringValue(v.clone()))),
    );
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

/// The base name of a program, as `process.executable.name` and an unnamed
/// service's name give it.
pub fn command_name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// One attribute.
pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A list of strings, as an attribute's value (`process.command_args`).
pub fn strings(values: impl IntoIterator<Item = String>) -> Value {
    Value::ArrayValue(ArrayValue {
        values: values
            .into_iter()
            .map(|v| AnyValue {
                value: Some(Value::StringValue(v)),
            })
            .collect(),
    })
}

/// A time as OTLP's nanoseconds since the epoch.
pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(telemetry: &Telemetry) -> Option<Value> {
        telemetry.resource.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.clone())
    }

    #[test]
    fn an_unnamed_service_is_named_after_the_command() {
        let config = Config {
            resource_attributes: vec![("team".into(), "a".into())],
            ..Default::default()
        };
        let t = Telemetry::new(&config, Path::new("/usr/bin/make"));
        assert_eq!(
            service(&t),
            Some(Value::StringValue("unknown_service:make".into()))
        );
        assert_eq!(t.resource.attributes[1].key, "team");
        let named = Config {
            service_name: Some("ci".into()),
            resource_attributes: vec![("service.name".into(), "other".into())],
            ..Default::default()
        };
        let t = Telemetry::new(&named, Path::new("make"));
        assert_eq!(service(&t), Some(Value::StringValue("ci".into())));
        assert_eq!(t.resource.attributes[1].key, "telemetry.sdk.name");
    }
}
