//! What the child's environment gets: the plan of the injection.
//!
//! The plan is an overlay (variables to set and to remove) applied to the child
//! only; otel-run's own environment is never changed. Every runtime gets the
//! standard OTEL_* settings; a runtime otel-run recognizes (Python) also gets its
//! zero-code instrumentation. When that cannot be set up, otel-run says why once
//! and the program runs uninstrumented.

pub mod print;
pub mod python;
pub mod shims;

use std::path::Path;

use crate::settings::otlp::{GENERAL, Signal};
use crate::settings::{Settings, vars};

/// The child's environment changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl Plan {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove.retain(|n| n != name);
        self.set.retain(|(n, _)| n != name);
        self.set.push((name.to_string(), value.into()));
    }

    fn remove(&mut self, name: &str) {
        self.set.retain(|(n, _)| n != name);
        if !self.remove.iter().any(|n| n == name) {
            self.remove.push(name.to_string());
        }
    }

    /// The value the child will see for `name`, if the plan sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where the child's telemetry goes.
pub enum Destination<'a> {
    /// otel-run's local receiver at this base URL; `exported` tells which signals
    /// it forwards (the others are `none` for the child).
    Agent {
        endpoint: &'a str,
        exported: &'a dyn Fn(Signal) -> bool,
    },
    /// The child exports on its own, with the resolved settings.
    Direct,
}

/// The command the plan is for: its resolved program and argv.
pub struct Target<'a> {
    pub program: &'a Path,
    pub argv: &'a [String],
}

/// Plans the child's environment. `traceparent` is the process span's context.
pub fn plan(
    settings: &Settings,
    target: Option<Target>,
    destination: Destination,
    traceparent: Option<String>,
) -> Plan {
    let mut plan = Plan::default();
    // Settings from flags and the config file are not in the environment yet.
    for (var, resolved) in settings.explicit() {
        if var.is_otel_standard() {
            plan.set(var.name, resolved.value.clone());
        }
    }
    // The span name is for this otel-run's span only, not for nested ones.
    plan.remove(vars::SPAN_NAME.name);
    if settings.disabled() {
        return plan;
    }
    if let Destination::Agent { endpoint, exported } = destination {
        // Every OTLP setting of the real backend (endpoints, headers with their
        // secrets, TLS files, timeouts) is replaced by the local receiver's plain
        // endpoint: the agent does the real export.
        let otlp_vars = GENERAL
            .into_iter()
            .chain(Signal::ALL.into_iter().flat_map(Signal::otlp_vars));
        for var in otlp_vars {
            plan.remove(var.name);
        }
        plan.set(vars::OTLP_ENDPOINT.name, endpoint);
        plan.set(vars::OTLP_PROTOCOL.name, "http/protobuf");
        plan.set(vars::AGENT_ENDPOINT, endpoint);
        for signal in Signal::ALL {
            let exporter = if exported(signal) { "otlp" } else { "none" };
            plan.set(signal.exporter_var().name, exporter);
        }
    }
    if let Some(traceparent) = traceparent {
        plan.set("TRACEPARENT", traceparent);
    }
    if let Some(python) = target.and_then(|t| python::detect(t.program, t.argv)) {
        inject_python(&mut plan, &python);
    }
    plan
}

/// Python: the shim first on PYTHONPATH, and the instrumentors handed over when
/// otel-run could read the interpreter's site-packages.
fn inject_python(plan: &mut Plan, python: &python::Python) {
    if let (Some(interpreter), Some(site_packages)) = (&python.interpreter, &python.site_packages) {
        let installed = python::installed(site_packages);
        if !installed.sdk {
            tracing::warn!(
                "the OpenTelemetry SDK is not installed for `{}`; the program runs uninstrumented\nhint: `otel-run bootstrap` installs it",
                interpreter.display()
            );
            return;
        }
        plan.set(
            vars::PYTHON_INSTRUMENTORS,
            python::handover(&installed.instrumentors),
        );
    }
    let shim = match shims::PYTHON.materialize() {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!("cannot write the Python shim ({e}); the program runs uninstrumented");
            return;
        }
    };
    let existing = std::env::var("PYTHONPATH").unwrap_or_default();
    let path = if existing.is_empty() {
        shim.display().to_string()
    } else {
        format!("{}:{existing}", shim.display())
    };
    plan.set("PYTHONPATH", path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Inputs;

    fn settings(env: &[(&str, &str)], flags: &[(&'static str, &str)]) -> Settings {
        Settings::resolve(&Inputs {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: flags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn flags_reach_the_child_as_variables() {
        let s = settings(
            &[],
            &[
                ("OTEL_SERVICE_NAME", "shop"),
                ("OTEL_PROPAGATORS", "tracecontext,kontur"),
            ],
        );
        let p = plan(&s, None, Destination::Direct, None);
        assert_eq!(p.get("OTEL_SERVICE_NAME"), Some("shop"));
        assert_eq!(p.get("OTEL_PROPAGATORS"), Some("tracecontext,kontur"));
        assert_eq!(p.get("OTEL_EXPORTER_OTLP_ENDPOINT"), None);
    }

    #[test]
    fn with_the_agent_the_child_exports_locally_and_loses_backend_secrets() {
        let s = settings(
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://vendor"),
            ],
            &[
                ("OTEL_TRACES_EXPORTER", "console"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ],
        );
        let exported = |signal: Signal| signal != Signal::Metrics;
        let p = plan(
            &s,
            None,
            Destination::Agent {
                endpoint: "http://127.0.0.1:9999",
                exported: &exported,
            },
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        assert_eq!(
            p.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:9999")
        );
        assert_eq!(p.get("OTEL_EXPORTER_OTLP_PROTOCOL"), Some("http/protobuf"));
        assert_eq!(p.get("OTEL_TRACES_EXPORTER"), Some("otlp"));
        assert_eq!(p.get("OTEL_METRICS_EXPORTER"), Some("none"));
        assert!(p.remove.contains(&"OTEL_EXPORTER_OTLP_HEADERS".to_string()));
        assert!(
            p.remove
                .contains(&"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_string())
        );
        assert!(
            !p.remove
                .contains(&"OTEL_EXPORTER_OTLP_ENDPOINT".to_string())
        );
        assert!(p.get("TRACEPARENT").unwrap().starts_with("00-0af7"));
    }

    #[test]
    fn disabled_sdk_injects_nothing_but_the_switch() {
        let s = settings(&[], &[("OTEL_SDK_DISABLED", "true")]);
        let p = plan(&s, None, Destination::Direct, Some("00-x".into()));
        assert_eq!(
            p.set,
            vec![("OTEL_SDK_DISABLED".to_string(), "true".to_string())]
        );
    }
}
