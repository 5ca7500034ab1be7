//! What the child's environment gets: the plan of the injection.
//!
//! The plan is an overlay (variables to set and to remove) applied to the child
//! only; otel-run's own environment is never changed. Every runtime gets the
//! standard OTEL_* settings; a runtime otel-run recognizes (Python, .NET,
//! Node.js, Java) also gets its zero-code agent, one file per runtime. When that
//! cannot be set up, the plan says why (shown once) and the program runs
//! uninstrumented.

pub mod doctor;
pub mod dotnet;
pub mod elf;
pub mod java;
pub mod node;
pub mod print;
pub mod python;
pub mod python_doctor;
pub mod shims;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::settings::otlp::{ExporterKind, Signal};
use crate::settings::vars;

/// Something that keeps the injection from working, and its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub message: String,
    pub hint: String,
}

impl Note {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Note {
        Note {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::diag::hinted(&self.message, Some(&self.hint)))
    }
}

/// The runtime a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Python,
    Dotnet,
    Node,
    Java,
    Go,
    Rust,
    Native,
    /// `--runtime none`: only the standard variables.
    None,
}

impl Runtime {
    /// The runtimes `--runtime` can choose, by [`Runtime::key`].
    const CHOOSABLE: [Runtime; 6] = [
        Runtime::Python,
        Runtime::Dotnet,
        Runtime::Node,
        Runtime::Java,
        Runtime::Native,
        Runtime::None,
    ];

    /// The values of `--runtime`: `auto` (detect), then each choosable runtime's key.
    pub const CHOICES: [&'static str; 7] = {
        let mut choices = ["auto"; 7];
        let mut i = 0;
        while i < Runtime::CHOOSABLE.len() {
            choices[i + 1] = Runtime::CHOOSABLE[i].key();
            i += 1;
        }
        choices
    };

    /// The runtime's value of `--runtime`; Go and Rust programs are native there.
    pub const fn key(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Dotnet => "dotnet",
            Runtime::Node => "node",
            Runtime::Java => "java",
            Runtime::Go | Runtime::Rust | Runtime::Native => "native",
            Runtime::None => "none",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Python => "Python",
            Runtime::Dotnet => ".NET",
            Runtime::Node => "Node.js",
            Runtime::Java => "Java",
            Runtime::Go => "Go",
            Runtime::Rust => "Rust",
            Runtime::Native => "native",
            Runtime::None => "none",
        }
    }
}

/// What the command is, from its program and argv (see each runtime's file).
pub fn detect(program: &Path, argv: &[String]) -> Runtime {
    if python::detect(program, argv).is_some() {
        return Runtime::Python;
    }
    if dotnet::is_dotnet(program) {
        return Runtime::Dotnet;
    }
    if node::is_node(program, python::first_line(program).as_deref()) {
        return Runtime::Node;
    }
    if java::is_java(program) {
        return Runtime::Java;
    }
    match elf::toolchain(program) {
        Some(elf::Toolchain::Go) => Runtime::Go,
        Some(elf::Toolchain::Rust) => Runtime::Rust,
        _ => Runtime::Native,
    }
}

/// What the settings say of the child's environment, resolved once.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Settings given in a flag or the config file, which the child does not
    /// see in its environment unless otel-run sets them: (variable, value).
    pub explicit: Vec<(&'static str, String)>,
    /// OTEL_SDK_DISABLED.
    pub disabled: bool,
    /// `--runtime`; `None` is `auto`: detected.
    pub runtime: Option<Runtime>,
    /// `--inject`: the runtime's zero-code agent.
    pub inject: bool,
    /// OTEL_DOTNET_AUTO_HOME.
    pub dotnet_auto_home: Option<PathBuf>,
    /// `--java-agent`.
    pub java_agent: Option<PathBuf>,
    /// OTEL_RUN_CACHE_DIR: where the shims are written.
    pub cache_dir: Option<PathBuf>,
    /// OTEL_RESOURCE_ATTRIBUTES with the downward API's `k8s.*` attributes
    /// added, when there are any to add.
    pub resource_attributes: Option<String>,
    /// OTEL_TRACES_EXPORTER as the child's SDK knows it, when it differs from
    /// the setting: `jaeger` is OTLP, which Jaeger takes (SDKs no longer ship a
    /// Jaeger exporter).
    pub child_traces_exporter: Option<String>,
}

impl Runtime {
    /// The runtime `--runtime KEY` chooses; `auto` (or any other) chooses none.
    pub fn by_key(key: &str) -> Option<Runtime> {
        Runtime::CHOOSABLE.into_iter().find(|r| r.key() == key)
    }
}

/// The runtime chosen by `--runtime`, or detected.
fn chosen(config: &Config, program: &Path, argv: &[String]) -> Runtime {
    config.runtime.unwrap_or_else(|| detect(program, argv))
}

/// otel-run's data directory (what `otel-run bootstrap` downloads):
/// `$XDG_DATA_HOME/otel-run`, else `~/.local/share/otel-run`.
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("otel-run"))
}

/// The child's environment changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// The runtime the injection was planned for.
    pub runtime: Option<Runtime>,
    /// Why the runtime's agent is not injected, if it is not.
    pub notes: Vec<Note>,
    /// What was found of the runtime, for `otel-run doctor`.
    pub found: Vec<String>,
    /// OTEL_SDK_DISABLED: the child gets its settings and nothing else.
    disabled: bool,
}

impl Plan {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
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

    /// Says once why the runtime's agent is not injected, if it is not.
    pub fn warn(&self) {
        for note in &self.notes {
            tracing::warn!("{note}");
        }
    }

    /// The value the child will see for `name`, if the plan sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to what `compose` makes of the value it has before this
    /// plan's entry: planned, else inherited, else empty. An inherited value that
    /// is not UTF-8 cannot be extended as text without being changed: it is left
    /// as it is, with a note, and whatever was to be added to it is not.
    fn extend(&mut self, name: &str, compose: impl FnOnce(&str) -> String) {
        let existing = match self.get(name) {
            Some(planned) => planned.to_string(),
            None => match std::env::var_os(name).map(OsString::into_string) {
                None => String::new(),
                Some(Ok(inherited)) => inherited,
                Some(Err(_)) => {
                    self.notes.push(Note::new(
                        format!(
                            "{name} is not UTF-8 text, so otel-run leaves it as it is and cannot add the runtime's agent to it"
                        ),
                        format!("give {name} a value that is UTF-8 text"),
                    ));
                    return;
                }
            },
        };
        self.set(name, compose(&existing));
    }

    /// Puts `entry` first in a `:`-separated path list, keeping what was there.
    fn prepend_path(&mut self, name: &str, entry: &Path) {
        self.extend(name, |existing| {
            if existing.is_empty() {
                entry.display().to_string()
            } else {
                format!("{}:{existing}", entry.display())
            }
        });
    }
}

/// Where the child's telemetry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// otel-run's local receiver at this base URL; `exported` lists the signals
    /// it forwards (the others are `none` for the child).
    Agent {
        endpoint: String,
        exported: Vec<Signal>,
    },
    /// The child exports on its own, with the resolved settings.
    Direct,
}

/// What the run gives the child once otel-run's agent side has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub destination: Destination,
    /// The process span's context: the child's parent.
    pub traceparent: Option<String>,
    /// The agent's own variables for the child (the SDK report file, the
    /// forward proxy's HTTP_PROXY and friends).
    pub env: Vec<(String, String)>,
}

/// The command the plan is for: its resolved program and argv, and where it runs.
pub struct Target<'a> {
    pub program: &'a Path,
    pub argv: &'a [String],
    pub cwd: &'a Path,
}

/// Plans the child's environment from the settings and the command; the plan
/// is finished with what the run starts ([`Plan::finish`]).
pub fn plan(config: &Config, target: Option<Target>) -> Plan {
    let mut plan = Plan::default();
    // Settings from flags and the config file are not in the environment yet.
    for (name, value) in &config.explicit {
        plan.set(name, value.clone());
    }
    // The span name is for this otel-run's span only, not for nested ones; and a
    // report file is for the otel-run that reads it (a running one sets its own).
    plan.remove(vars::SPAN_NAME.name);
    plan.remove(vars::SDK_REPORT);
    if config.disabled {
        plan.disabled = true;
        return plan;
    }
    if let Some(attributes) = &config.resource_attributes {
        plan.set(vars::RESOURCE_ATTRIBUTES.name, attributes.clone());
    }
    if let Some(exporters) = &config.child_traces_exporter {
        plan.set(vars::TRACES_EXPORTER.name, exporters.clone());
    }
    if let Some(target) = target {
        inject_runtime(&mut plan, config, &target);
    }
    plan
}

impl Plan {
    /// Points the child at where its telemetry goes, under the process span,
    /// with the agent's variables. With OpenTelemetry disabled the child gets
    /// none of it.
    pub fn finish(&mut self, start: Start) {
        if self.disabled {
            return;
        }
        let plan = self;
        if let Destination::Agent { endpoint, exported } = start.destination {
            // Every OTLP setting of the real backend (endpoints, headers with their
            // secrets, TLS files, timeouts) is replaced by the local receiver's plain
            // endpoint: the agent does the real export.
            let otlp_vars = vars::OTLP
                .all()
                .into_iter()
                .chain(Signal::ALL.into_iter().flat_map(|s| s.otlp().all()));
            for var in otlp_vars {
                plan.remove(var.name);
            }
            plan.set(vars::OTLP.endpoint.name, endpoint.clone());
            plan.set(vars::OTLP.protocol.name, "http/protobuf");
            plan.set(vars::AGENT_ENDPOINT, endpoint);
            for signal in Signal::ALL {
                let exporter = if exported.contains(&signal) {
                    ExporterKind::Otlp
                } else {
                    ExporterKind::None
                };
                plan.set(signal.exporter_var().name, exporter.name());
            }
        }
        if let Some(traceparent) = start.traceparent {
            plan.set("TRACEPARENT", traceparent);
        }
        for (name, value) in start.env {
            plan.set(&name, value);
        }
    }
}

/// The runtime's zero-code agent, unless `--no-inject`.
fn inject_runtime(plan: &mut Plan, config: &Config, target: &Target) {
    let runtime = chosen(config, target.program, target.argv);
    plan.runtime = Some(runtime);
    if !config.inject {
        return;
    }
    let cache_dir = config.cache_dir.as_deref();
    match runtime {
        Runtime::Python => {
            let python = python::detect(target.program, target.argv).unwrap_or(python::Python {
                interpreter: None,
                site_packages: None,
            });
            python::inject(plan, &python, cache_dir);
        }
        Runtime::Dotnet => {
            dotnet::inject(
                plan,
                dotnet::home(config),
                dotnet::runtime_id(),
                target.argv,
            );
        }
        Runtime::Node => node::inject(plan, &node::app_dir(target.argv, target.cwd), cache_dir),
        Runtime::Java => {
            let agent = config
                .java_agent
                .clone()
                .or_else(|| java::downloaded_agent().filter(|p| p.is_file()));
            java::inject(plan, agent);
        }
        // Programs built with opentelemetry-rust, the Go SDK or any other SDK read
        // the standard variables; the proxy and uprobes cover the others.
        Runtime::Go | Runtime::Rust | Runtime::Native | Runtime::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Inputs, Settings};

    fn settings(env: &[(&str, &str)], flags: &[(&'static str, &str)]) -> Config {
        Settings::resolve(&Inputs::of(env, flags))
            .unwrap()
            .runtime()
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
        let p = plan(&s, None);
        assert_eq!(p.get("OTEL_SERVICE_NAME"), Some("shop"));
        assert_eq!(p.get("OTEL_PROPAGATORS"), Some("tracecontext,kontur"));
        assert_eq!(p.get("OTEL_EXPORTER_OTLP_ENDPOINT"), None);
    }

    #[test]
    fn exporting_directly_a_childs_jaeger_exporter_is_otlp() {
        let s = settings(&[("OTEL_TRACES_EXPORTER", "jaeger,console,otlp")], &[]);
        assert_eq!(
            plan(&s, None).get("OTEL_TRACES_EXPORTER"),
            Some("otlp,console")
        );
        let s = settings(&[("OTEL_TRACES_EXPORTER", "zipkin")], &[]);
        assert_eq!(plan(&s, None).get("OTEL_TRACES_EXPORTER"), None);
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
        let mut p = plan(&s, None);
        p.finish(Start {
            destination: Destination::Agent {
                endpoint: "http://127.0.0.1:9999".into(),
                exported: vec![Signal::Traces, Signal::Logs],
            },
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            env: vec![(vars::SDK_REPORT.into(), "/tmp/report".into())],
        });
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
        // The plan removed the report file a parent otel-run gave; the agent's own replaces it.
        assert_eq!(p.get(vars::SDK_REPORT), Some("/tmp/report"));
        assert!(!p.remove.contains(&vars::SDK_REPORT.to_string()));
    }

    #[test]
    fn runtime_choices_name_each_choosable_runtime_once() {
        assert_eq!(
            Runtime::CHOICES,
            ["auto", "python", "dotnet", "node", "java", "native", "none"]
        );
        let program = Path::new("/bin/true");
        for runtime in Runtime::CHOOSABLE {
            let s = settings(&[], &[("OTEL_RUN_RUNTIME", runtime.key())]);
            assert_eq!(chosen(&s, program, &[]), runtime);
        }
    }

    #[test]
    fn the_child_gets_the_downward_api_attributes_after_the_users() {
        let pod = [("K8S_POD_NAME", "pod-1"), ("K8S_NAMESPACE_NAME", "shop")];
        let p = plan(&settings(&pod, &[]), None);
        assert_eq!(
            p.get("OTEL_RESOURCE_ATTRIBUTES"),
            Some("k8s.pod.name=pod-1,k8s.namespace.name=shop")
        );
        let flag = [("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=x")];
        let p = plan(&settings(&pod, &flag), None);
        assert_eq!(
            p.get("OTEL_RESOURCE_ATTRIBUTES"),
            Some("k8s.pod.name=x,k8s.namespace.name=shop")
        );
        let p = plan(&settings(&[], &[]), None);
        assert_eq!(p.get("OTEL_RESOURCE_ATTRIBUTES"), None);
        let mut disabled = pod.to_vec();
        disabled.push(("OTEL_SDK_DISABLED", "true"));
        let p = plan(&settings(&disabled, &[]), None);
        assert_eq!(
            p.get("OTEL_RESOURCE_ATTRIBUTES"),
            None,
            "disabled: untouched"
        );
    }

    #[test]
    fn disabled_sdk_injects_nothing_but_the_switch() {
        let s = settings(&[], &[("OTEL_SDK_DISABLED", "true")]);
        let mut p = plan(&s, None);
        p.finish(Start {
            destination: Destination::Direct,
            traceparent: Some("00-x".into()),
            env: vec![],
        });
        assert_eq!(
            p.set,
            vec![("OTEL_SDK_DISABLED".to_string(), "true".to_string())]
        );
    }
}
