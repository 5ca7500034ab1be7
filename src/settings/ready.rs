//! The settings as the stages take them: resolved once into typed values
//! (durations, lists, enums, parsed proxy mappings), so no stage reads the
//! string map. Defaults come from the settings list ([`super::vars`]) only: a
//! value is always there for a setting that has a default.

use std::path::PathBuf;
use std::time::Duration;

use super::Settings;
use super::otlp::{ExporterKind, Signal, Target};
use super::vars::{self, Var};
use crate::agent::pipeline::{BatchConfig, MAX_QUEUE_BYTES};
use crate::agent::probes::{self, ProbeError, Uprobe};
use crate::agent::proxy::{self, ConfigError, Mapping, route::Routes};
use crate::agent::{self, process_span};
use crate::bootstrap;
use crate::runtime::{self, Runtime};
use crate::telemetry::{self, Limits, Propagators, Sampler};

/// Everything the main job needs of the settings.
#[derive(Debug)]
pub struct Ready {
    pub runtime: runtime::Config,
    pub telemetry: telemetry::Config,
    pub process: process_span::Config,
    pub agent: agent::Config,
    /// `None` when no proxy is asked for.
    pub proxy: Option<proxy::Config>,
    /// `Ok(None)` when no probe is asked for; an error is a warning: the
    /// command runs without probes.
    pub probes: Result<Option<probes::Config>, ProbeError>,
    /// `--trace-processes`.
    pub trace_processes: bool,
}

impl Settings {
    /// The typed settings of the main job. A bad `--proxy` or `--route` is an
    /// error: the proxy is the command's network path.
    pub fn ready(&self) -> Result<Ready, ConfigError> {
        Ok(Ready {
            runtime: self.runtime(),
            telemetry: self.telemetry(),
            process: self.process(),
            agent: agent::Config {
                viewer: self.viewer()?,
                ..self.agent()
            },
            proxy: self.proxy()?,
            probes: self.probes(),
            trace_processes: self.flag(&vars::TRACE_PROCESSES),
        })
    }

    /// The child's environment: what is passed on, and which runtime's agent.
    pub fn runtime(&self) -> runtime::Config {
        runtime::Config {
            explicit: self
                .explicit()
                .filter(|(var, _)| var.is_otel_standard())
                .map(|(var, resolved)| (var.name, resolved.value.clone()))
                .collect(),
            disabled: self.disabled(),
            runtime: self.text(&vars::RUNTIME).and_then(Runtime::by_key),
            inject: self.flag(&vars::INJECT),
            dotnet_auto_home: self.text(&vars::DOTNET_AUTO_HOME).map(PathBuf::from),
            java_agent: self.text(&vars::JAVA_AGENT).map(PathBuf::from),
            cache_dir: self.text(&vars::CACHE_DIR).map(PathBuf::from),
            child_traces_exporter: {
                let names = self.list(&vars::TRACES_EXPORTER);
                names.iter().any(|n| n == "jaeger").then(|| {
                    let mut child: Vec<&str> = Vec::new();
                    for name in &names {
                        let name = if name == "jaeger" { "otlp" } else { name };
                        if !child.contains(&name) {
                            child.push(name);
                        }
                    }
                    child.join(",")
                })
            },
            resource_attributes: self.child_resource_attributes(),
        }
    }

    /// `otel-run bootstrap`: where runtimes' agents are, which exporter Python gets.
    pub fn bootstrap(&self) -> bootstrap::Config {
        bootstrap::Config {
            runtime: self.runtime(),
            protocol: Target::of(self, Signal::Traces).protocol,
        }
    }

    /// otel-run's span for the command.
    pub fn process(&self) -> process_span::Config {
        process_span::Config {
            disabled: self.disabled(),
            span_name: self.text(&vars::SPAN_NAME).map(str::to_string),
            redact_args: self.flag(&vars::REDACT_COMMAND_ARGS),
            attributes: self.key_values(&vars::SPAN_ATTRIBUTES),
        }
    }

    /// otel-run's own spans: resource, sampler, propagators, limits.
    pub fn telemetry(&self) -> telemetry::Config {
        let limit = |specific, general| {
            self.count(specific)
                .or_else(|| self.count(general))
                .map(|n| n as usize)
        };
        telemetry::Config {
            service_name: self.service_name(),
            resource_attributes: self.resource_attributes(),
            sampler: Sampler::new(
                &self.value(&vars::TRACES_SAMPLER, |s| Some(s.to_string())),
                self.text(&vars::TRACES_SAMPLER_ARG)
                    .and_then(|r| r.parse().ok()),
            ),
            propagators: Propagators::new(&self.list(&vars::PROPAGATORS)),
            limits: Limits::new(
                limit(
                    &vars::SPAN_ATTRIBUTE_COUNT_LIMIT,
                    &vars::ATTRIBUTE_COUNT_LIMIT,
                ),
                limit(
                    &vars::SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
                    &vars::ATTRIBUTE_VALUE_LENGTH_LIMIT,
                ),
            ),
        }
    }

    /// The agent: its pipelines and exporters, one set per signal. With
    /// `--ui`, a signal goes only to exporters named explicitly: the viewer
    /// keeps it (the viewer itself is [`Settings::viewer`]).
    pub fn agent(&self) -> agent::Config {
        let ui = self.flag(&vars::UI);
        let signal = |signal: Signal| agent::SignalConfig {
            exporters: if self.exports(signal) && (!ui || self.destination_named(signal)) {
                self.exporters(signal)
            } else {
                Vec::new()
            },
            target: Target::of(self, signal),
            batch: self.batch(signal),
        };
        agent::Config {
            receive: self.flag(&vars::AGENT),
            signals: Signal::ALL.map(signal),
            console_output: self.value(&vars::CONSOLE_OUTPUT, |s| Some(s.to_string())),
            fail_on_export_error: self.flag(&vars::FAIL_ON_EXPORT_ERROR),
            zipkin: self.zipkin(),
            prometheus: agent::export::prometheus::Config {
                host: self.value(&vars::PROMETHEUS_HOST, |h| Some(h.to_string())),
                port: self.value(&vars::PROMETHEUS_PORT, |p| p.parse().ok()),
            },
            console_tree: self.text(&vars::CONSOLE_FORMAT) == Some("tree"),
            viewer: None,
        }
    }

    /// Whether the user named where a signal goes (its exporter or an OTLP
    /// endpoint), rather than leaving the defaults.
    fn destination_named(&self, signal: Signal) -> bool {
        let set = |var: &Var| {
            self.get(var)
                .is_some_and(|r| r.source != super::Source::Default)
        };
        set(signal.exporter_var()) || set(&vars::OTLP.endpoint) || set(&signal.otlp().endpoint)
    }

    /// The viewer (`--ui`), validated before anything starts; `None` without `--ui`.
    pub fn viewer(&self) -> Result<Option<agent::viewer::Config>, ConfigError> {
        if !self.flag(&vars::UI) || self.disabled() {
            return Ok(None);
        }
        let text = self
            .text(&vars::UI_LISTEN)
            .unwrap_or(agent::viewer::DEFAULT_LISTEN);
        let listen = agent::standalone::parse_listen(text).map_err(|why| {
            let place = self.get(&vars::UI_LISTEN).map_or_else(
                || vars::UI_LISTEN.name.to_string(),
                |r| r.source.describe(&vars::UI_LISTEN),
            );
            ConfigError::new(place, text.to_string(), why)
        })?;
        Ok(Some(agent::viewer::Config {
            listen,
            max_spans: self.number(&vars::MAX_SPANS) as usize,
            max_bytes: agent::viewer::MAX_BYTES,
            store: self.text(&vars::STORE).map(PathBuf::from),
        }))
    }

    /// `otel-run agent`'s agent. A signal whose exporter is the default `otlp`
    /// with no endpoint set would send to localhost:4317, the agent's own
    /// address: nothing names a destination, so it is printed (`console`)
    /// instead. Returns the config and the signals so defaulted.
    pub fn standalone_agent(&self) -> (agent::Config, Vec<Signal>) {
        let mut config = self.agent();
        let mut printed = Vec::new();
        for (signal, of_signal) in Signal::ALL.into_iter().zip(config.signals.iter_mut()) {
            if !self.destination_named(signal) && !of_signal.exporters.is_empty() {
                of_signal.exporters = vec![ExporterKind::Console];
                printed.push(signal);
            }
        }
        (config, printed)
    }

    /// Batching per signal: spans follow OTEL_BSP_*, logs OTEL_BLRP_*. Metrics
    /// arrive already aggregated by the child's reader, so they are forwarded
    /// within a second.
    fn batch(&self, signal: Signal) -> BatchConfig {
        let n = |var: &Var| self.number(var).max(1) as usize;
        // A batch processor's four settings: delay, queue, batch, timeout.
        let processor = |[delay, queue, batch, timeout]: [&Var; 4]| BatchConfig {
            schedule_delay: self.duration(delay),
            max_queue: n(queue),
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch: n(batch),
            export_timeout: self.duration(timeout),
        };
        match signal {
            Signal::Traces => processor([
                &vars::BSP_SCHEDULE_DELAY,
                &vars::BSP_MAX_QUEUE_SIZE,
                &vars::BSP_MAX_EXPORT_BATCH_SIZE,
                &vars::BSP_EXPORT_TIMEOUT,
            ]),
            Signal::Logs => processor([
                &vars::BLRP_SCHEDULE_DELAY,
                &vars::BLRP_MAX_QUEUE_SIZE,
                &vars::BLRP_MAX_EXPORT_BATCH_SIZE,
                &vars::BLRP_EXPORT_TIMEOUT,
            ]),
            Signal::Metrics => BatchConfig {
                schedule_delay: Duration::from_secs(1),
                max_queue: 65536,
                max_queue_bytes: MAX_QUEUE_BYTES,
                max_batch: 8192,
                export_timeout: self.duration(&vars::METRIC_EXPORT_TIMEOUT),
            },
        }
    }

    /// The proxies, validated before anything starts; `None` when none is asked for.
    fn proxy(&self) -> Result<Option<proxy::Config>, ConfigError> {
        let place = |var: &Var| {
            self.get(var)
                .map_or_else(|| var.name.to_string(), |r| r.source.describe(var))
        };
        let reverse = self
            .list(&vars::PROXY)
            .into_iter()
            .map(|item| {
                Mapping::parse(&item)
                    .map_err(|why| ConfigError::new(place(&vars::PROXY), item, why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let routes = self.list(&vars::PROXY_ROUTES);
        let routes = Routes::parse(routes.iter().map(String::as_str)).map_err(|why| {
            let value = self.text(&vars::PROXY_ROUTES).unwrap_or_default();
            ConfigError::new(place(&vars::PROXY_ROUTES), value.into(), why)
        })?;
        let egress = self.flag(&vars::EGRESS_PROXY);
        if reverse.is_empty() && !egress {
            return Ok(None);
        }
        Ok(Some(proxy::Config {
            reverse,
            egress,
            routes,
            bounds: proxy::Bounds {
                timeout: self.duration(&vars::PROXY_TIMEOUT),
                header_timeout: self.duration(&vars::PROXY_HEADER_TIMEOUT),
                // hyper's smallest read buffer.
                max_header_bytes: self.number(&vars::PROXY_MAX_HEADER_BYTES).max(8192) as usize,
            },
            redact_query: self.flag(&vars::PROXY_REDACT_QUERY),
            temporality: self
                .text(&vars::OTLP_METRICS_TEMPORALITY)
                .map(str::to_string),
            metric_interval: self
                .duration(&vars::METRIC_EXPORT_INTERVAL)
                .max(Duration::from_millis(100)),
        }))
    }

    /// `--uprobe` and its options.
    fn probes(&self) -> Result<Option<probes::Config>, ProbeError> {
        let Some(list) = self.text(&vars::UPROBE) else {
            return Ok(None);
        };
        let specs = Uprobe::parse_list(list).map_err(ProbeError::Spec)?;
        if specs.is_empty() {
            return Ok(None);
        }
        let ring_bytes = self.number(&vars::UPROBE_BUFFER_SIZE);
        let ring_bytes = u32::try_from(ring_bytes)
            .ok()
            .filter(|b| b.is_power_of_two() && *b >= 4096)
            .ok_or(ProbeError::BufferSize(ring_bytes))?;
        Ok(Some(probes::Config {
            specs,
            under_process: self
                .text(&vars::UPROBE_PARENT)
                .is_some_and(|p| p.eq_ignore_ascii_case("process")),
            ring_bytes,
        }))
    }

    /// A setting that has a default, read by `read`: the value, else the default.
    fn value<T>(&self, var: &Var, read: impl Fn(&str) -> Option<T>) -> T {
        self.text(var)
            .and_then(&read)
            .or_else(|| var.default.and_then(&read))
            .unwrap_or_else(|| panic!("{} has a valid default", var.name))
    }

    fn zipkin(&self) -> agent::export::zipkin::Config {
        agent::export::zipkin::Config {
            endpoint: self.value(&vars::ZIPKIN_ENDPOINT, |u| {
                super::parse::url_of(u, false).ok()
            }),
            timeout: self.duration(&vars::ZIPKIN_TIMEOUT),
        }
    }

    fn duration(&self, var: &Var) -> Duration {
        self.value(var, |v| v.parse().ok().map(Duration::from_millis))
    }

    fn number(&self, var: &Var) -> u64 {
        self.value(var, |v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Inputs;

    fn ready(env: &[(&str, &str)]) -> Ready {
        let inputs = Inputs::of(env, &[]);
        Settings::resolve(&inputs).unwrap().ready().unwrap()
    }

    #[test]
    fn every_setting_read_with_a_default_has_one_that_parses() {
        let s = Settings::resolve(&Inputs::default()).unwrap();
        for var in vars::ALL.iter().filter(|v| v.default.is_some()) {
            if matches!(var.kind, vars::Kind::Millis | vars::Kind::Count) {
                s.number(var);
            }
        }
        let r = ready(&[]);
        let traces = r.agent.signal(Signal::Traces);
        assert_eq!(traces.batch.schedule_delay, Duration::from_secs(5));
        assert_eq!(traces.batch.max_queue, 2048);
        let logs = r.agent.signal(Signal::Logs);
        assert_eq!(logs.batch.schedule_delay, Duration::from_secs(1));
        assert_eq!(logs.batch.max_batch, 512);
        assert_eq!(r.agent.console_output, "stdout");
        assert!(r.proxy.is_none());
        assert!(matches!(r.probes, Ok(None)));
        assert!(!r.trace_processes);
    }

    #[test]
    fn values_are_typed_once() {
        let r = ready(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_RUN_EGRESS_PROXY", "true"),
            ("OTEL_RUN_PROXY_TIMEOUT", "1500"),
            ("OTEL_RUN_PROXY_MAX_HEADER_BYTES", "10"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_RUN_SPAN_ATTRIBUTES", "a=1"),
            ("OTEL_RUN_TRACE_PROCESSES", "true"),
        ]);
        let traces = r.agent.signal(Signal::Traces);
        assert_eq!(traces.batch.schedule_delay, Duration::from_millis(250));
        assert!(r.agent.signal(Signal::Logs).exporters.is_empty());
        let proxy = r.proxy.unwrap();
        assert_eq!(proxy.bounds.timeout, Duration::from_millis(1500));
        assert_eq!(proxy.bounds.header_timeout, Duration::from_secs(10));
        assert_eq!(
            proxy.bounds.max_header_bytes, 8192,
            "at least hyper's buffer"
        );
        assert_eq!(r.process.attributes, [("a".into(), "1".into())]);
        assert!(r.trace_processes);
    }

    #[test]
    fn the_standalone_agent_prints_what_no_destination_is_named_for() {
        let agent = |env: &[(&str, &str)]| {
            let inputs = Inputs::of(env, &[]);
            Settings::resolve(&inputs).unwrap().standalone_agent()
        };
        let (config, printed) = agent(&[]);
        assert_eq!(printed, Signal::ALL);
        assert_eq!(
            config.signal(Signal::Traces).exporters,
            [ExporterKind::Console]
        );
        // An endpoint for one signal, an exporter named for another, `none` for the last.
        let (config, printed) = agent(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://backend:4317"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]);
        assert!(printed.is_empty(), "{printed:?}");
        assert_eq!(
            config.signal(Signal::Traces).exporters,
            [ExporterKind::Otlp]
        );
        assert_eq!(
            config.signal(Signal::Metrics).exporters,
            [ExporterKind::Otlp]
        );
        assert!(config.signal(Signal::Logs).exporters.is_empty());
        let (_, printed) = agent(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://backend:4317")]);
        assert!(
            printed.is_empty(),
            "the general endpoint names every signal's"
        );
    }

    #[test]
    fn a_bad_probe_buffer_is_a_probe_error() {
        let r = ready(&[
            ("OTEL_RUN_UPROBE", ":main"),
            ("OTEL_RUN_UPROBE_BUFFER_SIZE", "5000"),
        ]);
        assert!(matches!(r.probes, Err(ProbeError::BufferSize(5000))));
    }

    #[test]
    fn disabled_exports_nothing() {
        let r = ready(&[("OTEL_SDK_DISABLED", "true")]);
        assert!(r.agent.signals.iter().all(|s| s.exporters.is_empty()));
        assert!(r.process.disabled);
    }
}
