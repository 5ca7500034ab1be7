//! The Python flows of the users' tutorials, step by step, each under otel-run and
//! under `opentelemetry-instrument` in the same venv, each delivering to a real
//! collector: otel-run delivers at least what the anchor delivers (the same span
//! names, metric names and log bodies), and works where the anchor does not.
//!
//! The programs are in `tests/fixtures/python/flows/`: a Flask app that configures
//! logging itself, programs with providers of their own, metrics-only and logs-only
//! programs, a Django project with propagators from a package of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    Collector, Server, apps_python, fixture, flatten_attributes, free_port, http_get, otel_run,
    peer, wait_for,
};

/// A venv with only the gRPC OTLP exporter (`.ci/python/venv.sh grpc`).
fn grpc_python() -> Option<PathBuf> {
    peer(
        "OTEL_RUN_TEST_PYTHON_GRPC",
        "a Python with Django, httpx and only the gRPC OTLP exporter",
    )
}

fn flows() -> PathBuf {
    fixture("python/flows")
}

fn bin(python: &Path, name: &str) -> String {
    python.with_file_name(name).display().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Launcher {
    OtelRun,
    Anchor,
}

/// `argv` under `launcher`, every signal exported to `collector`, in the flows
/// directory. The anchor gets the same clean environment as otel-run.
/// `flags` are otel-run's own.
fn command(
    launcher: Launcher,
    python: &Path,
    collector: &Collector,
    flags: &[&str],
    argv: &[String],
) -> Command {
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    let mut command = match launcher {
        Launcher::OtelRun => {
            let mut c = otel_run();
            c.args(flags)
                .args(["--traces-exporter", "otlp", "--metrics-exporter", "otlp"])
                .args(["--logs-exporter", "otlp", "--exporter-otlp-endpoint"])
                .arg(&endpoint)
                .arg("--");
            c
        }
        Launcher::Anchor => {
            let clean = otel_run();
            let mut c = Command::new(bin(python, "opentelemetry-instrument"));
            for (k, v) in clean.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            for signal in ["TRACES", "METRICS", "LOGS"] {
                c.env(format!("OTEL_{signal}_EXPORTER"), "otlp");
            }
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
            c
        }
    };
    command
        .args(argv)
        .current_dir(flows())
        .env("OTEL_SERVICE_NAME", "flow")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("PYTHONUNBUFFERED", "1");
    command
}

/// A short program run to its end under `launcher`.
fn run(
    launcher: Launcher,
    python: &Path,
    argv: &[&str],
    env: &[(&str, &str)],
) -> (Output, Delivered) {
    let collector = Collector::start().expect("a collector");
    let mut argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    argv[0] = bin(python, &argv[0]);
    let out = command(launcher, python, &collector, &[], &argv)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{launcher:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, Delivered::settled(&collector))
}

/// What a collector received, reduced to what a comparison looks at.
#[derive(Debug, Default)]
struct Delivered {
    /// (span name, kind, service.name), one per span received.
    spans: Vec<(String, i64, String)>,
    /// (metric name, the sum of its points' values), one per metric received.
    metrics: Vec<(String, f64)>,
    /// (scope, severity, body), one per log record received.
    logs: Vec<(String, String, String)>,
    raw: String,
}

impl Delivered {
    fn read(collector: &Collector) -> Delivered {
        let raw = collector.raw_output();
        let mut delivered = Delivered::default();
        let complete = raw.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        for line in complete.filter(|l| !l.trim().is_empty()) {
            let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
            delivered.add(&data);
        }
        delivered.raw = raw;
        delivered
    }

    fn add(&mut self, data: &Value) {
        let each = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
        for rs in each(data, "resourceSpans") {
            let service = flatten_attributes(&rs["resource"]["attributes"])["service.name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for span in each(&rs, "scopeSpans")
                .iter()
                .flat_map(|s| each(s, "spans"))
            {
                let name = span["name"].as_str().unwrap_or_default().to_string();
                let kind = span["kind"].as_i64().unwrap_or_default();
                self.spans.push((name, kind, service.clone()));
            }
        }
        for rm in each(data, "resourceMetrics") {
            for metric in each(&rm, "scopeMetrics")
                .iter()
                .flat_map(|s| each(s, "metrics"))
            {
                let points = ["sum", "gauge", "histogram"]
                    .iter()
                    .flat_map(|kind| each(&metric[*kind], "dataPoints"))
                    .map(|p| {
                        let value = p.get("asDouble").and_then(Value::as_f64);
                        let int = p.get("asInt").and_then(|v| match v {
                            Value::String(s) => s.parse::<f64>().ok(),
                            other => other.as_f64(),
                        });
                        value.or(int).unwrap_or_default()
                    })
                    .sum();
                let name = metric["name"].as_str().unwrap_or_default().to_string();
                self.metrics.push((name, points));
            }
        }
        for rl in each(data, "resourceLogs") {
            for scope in each(&rl, "scopeLogs") {
                let name = scope["scope"]["name"].as_str().unwrap_or_default();
                for record in each(&scope, "logRecords") {
                    self.logs.push((
                        name.to_string(),
                        record["severityText"].as_str().unwrap_or_default().into(),
                        record["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                    ));
                }
            }
        }
    }

    /// What arrived once the collector has written everything: the programs
    /// have exited (and flushed) before this is called, so waiting for the
    /// collector's file to stop growing is enough.
    fn settled(collector: &Collector) -> Delivered {
        let mut last = usize::MAX;
        wait_for(Duration::from_secs(20), || {
            std::thread::sleep(Duration::from_millis(500));
            let size = collector.raw_output().len();
            let settled = size > 0 && size == last;
            last = size;
            settled.then_some(())
        });
        Delivered::read(collector)
    }

    fn span_names(&self) -> BTreeSet<&str> {
        self.spans
            .iter()
            .filter(|(name, ..)| name != "python" && !name.ends_with("otel-run"))
            .map(|(name, ..)| name.as_str())
            .collect()
    }

    fn spans_named(&self, name: &str) -> Vec<&(String, i64, String)> {
        self.spans.iter().filter(|(n, ..)| n == name).collect()
    }

    fn metric_names(&self) -> BTreeSet<&str> {
        // The SDK's own metrics about itself are not the program's.
        self.metrics
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !name.starts_with("otel.sdk."))
            .collect()
    }

    fn metrics_named(&self, name: &str) -> Vec<f64> {
        let values = self.metrics.iter().filter(|(n, _)| n == name);
        values.map(|(_, v)| *v).collect()
    }

    /// The bodies of the program's own records (not OpenTelemetry's notices),
    /// with numbers (ports, werkzeug's timestamps) as `N`: they differ per run.
    fn log_bodies(&self) -> BTreeSet<String> {
        self.logs
            .iter()
            .filter(|(scope, ..)| !scope.starts_with("opentelemetry"))
            .map(|(_, _, body)| {
                let mut out = String::new();
                for c in body.chars() {
                    match (c.is_ascii_digit(), out.ends_with('N')) {
                        (true, true) => {}
                        (true, false) => out.push('N'),
                        (false, _) => out.push(c),
                    }
                }
                out
            })
            .collect()
    }

    /// Asserts that this run (otel-run's) delivered at least what `anchor` did.
    fn covers(&self, anchor: &Delivered) {
        for (what, ours, theirs) in [
            ("span names", self.span_names(), anchor.span_names()),
            ("metric names", self.metric_names(), anchor.metric_names()),
        ] {
            let missing: Vec<_> = theirs.difference(&ours).collect();
            assert!(
                missing.is_empty(),
                "otel-run delivered no {what} {missing:?} that the anchor did\n{}",
                self.raw
            );
        }
        let (ours, theirs) = (self.log_bodies(), anchor.log_bodies());
        let missing: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            missing.is_empty(),
            "otel-run delivered no log records {missing:?} that the anchor did\n{}",
            self.raw
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server started with `command` on `port`, sent `paths`, stopped as Ctrl-C
/// stops it: its stderr, and what reached the collector.
fn serve(
    command: Command,
    port: u16,
    paths: &[&str],
    collector: &Collector,
) -> (String, Delivered) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(command, port, dir.path());
    for path in paths {
        assert_eq!(http_get(port, path), 200, "{path}");
    }
    server.stop();
    (server.stderr_text(), Delivered::settled(collector))
}

// --- logging.basicConfig() and the terminal ---------------------------------------

const LOGS_ON: (&str, &str) = ("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true");

/// The to-do app under `flask run` with logging auto-instrumentation on.
fn todo_app(launcher: Launcher, python: &Path) -> (String, Delivered) {
    let collector = Collector::start().expect("a collector");
    let port = free_port();
    let argv = [bin(python, "flask"), "--app".into(), "todo_app".into()]
        .into_iter()
        .chain(["run".into(), "-p".into(), port.to_string()])
        .collect::<Vec<_>>();
    let mut command = command(launcher, python, &collector, &[], &argv);
    command.env(LOGS_ON.0, LOGS_ON.1);
    serve(command, port, &["/", "/"], &collector)
}

#[test]
fn the_programs_basic_config_takes_effect_and_its_records_are_exported() {
    let Some(python) = apps_python() else { return };
    let (stderr, ours) = todo_app(Launcher::OtelRun, &python);
    // basicConfig's format and level: the app's INFO line, and werkzeug's.
    assert!(
        stderr.contains("TODO INFO todo: listing 1 tasks"),
        "{stderr}"
    );
    assert!(stderr.contains("TODO INFO werkzeug:"), "{stderr}");
    let listed: Vec<_> = ours
        .logs
        .iter()
        .filter(|(scope, ..)| scope == "todo")
        .collect();
    assert_eq!(listed.len(), 2, "one record per request: {listed:?}");
    assert!(
        listed
            .iter()
            .all(|(_, severity, body)| severity == "INFO" && body == "listing 1 tasks"),
        "{listed:?}"
    );
    let (anchor_stderr, theirs) = todo_app(Launcher::Anchor, &python);
    assert!(
        anchor_stderr.contains("TODO INFO todo: listing 1 tasks"),
        "{anchor_stderr}"
    );
    ours.covers(&theirs);
}

/// The fixtures' Flask app (no logging configuration) under `launcher`, or bare:
/// its stderr, and what was delivered.
fn plain_flask(
    launcher: Option<Launcher>,
    python: &Path,
    env: &[(&str, &str)],
) -> (String, Delivered) {
    let collector = Collector::start().expect("a collector");
    let port = free_port();
    let argv = [bin(python, "flask"), "--app".into(), "flask_app".into()]
        .into_iter()
        .chain(["run".into(), "-p".into(), port.to_string()])
        .collect::<Vec<_>>();
    let mut command = match launcher {
        Some(launcher) => command(launcher, python, &collector, &[], &argv),
        None => {
            let mut bare = Command::new(&argv[0]);
            bare.args(&argv[1..]);
            bare
        }
    };
    command
        .current_dir(fixture("python"))
        .envs(env.iter().copied());
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(command, port, dir.path());
    assert_eq!(http_get(port, "/"), 200);
    server.stop();
    let delivered = match launcher {
        Some(_) => Delivered::settled(&collector),
        None => Delivered::default(),
    };
    (server.stderr_text(), delivered)
}

#[test]
fn werkzeug_prints_what_it_prints_without_otel_run_while_records_are_exported() {
    let Some(python) = apps_python() else { return };
    let (bare, _) = plain_flask(None, &python, &[]);
    let lines = ["Running on http://127.0.0.1:", "\"GET / HTTP/1.0\" 200"];
    for line in lines {
        assert!(bare.contains(line), "{bare}");
    }
    // opentelemetry-instrumentation-logging's handler (its default), as the
    // anchor has it; and the SDK's (the variable).
    let (_, theirs) = plain_flask(Some(Launcher::Anchor), &python, &[]);
    for env in [&[][..], &[LOGS_ON]] {
        let (stderr, ours) = plain_flask(Some(Launcher::OtelRun), &python, env);
        for line in lines {
            assert!(stderr.contains(line), "{env:?}: {stderr}");
        }
        let werkzeug = ours.logs.iter().filter(|(scope, ..)| scope == "werkzeug");
        assert!(
            werkzeug
                .clone()
                .any(|(_, _, body)| body.contains("Running on")),
            "{env:?}: {:?}",
            ours.logs
        );
        ours.covers(&theirs);
    }
}

// --- Programs with providers of their own -----------------------------------------

#[test]
fn a_programs_own_tracer_provider_prints_and_exports_through_otel_run() {
    let Some(python) = apps_python() else { return };
    let argv = ["python", "own_provider.py"];
    let (out, ours) = run(Launcher::OtelRun, &python, &argv, &[]);
    // The program's own console processor still sees its span.
    assert!(text(&out.stdout).contains("\"name\": \"traitement\""));
    assert_eq!(ours.spans_named("traitement").len(), 1, "{:?}", ours.spans);
    let (out, theirs) = run(Launcher::Anchor, &python, &argv, &[]);
    assert!(text(&out.stdout).contains("\"name\": \"traitement\""));
    ours.covers(&theirs);
}

#[test]
fn a_programs_own_meter_provider_exports_through_otel_run_once() {
    let Some(python) = apps_python() else { return };
    // A provider the program never sets as the global one.
    let argv = ["python", "own_meter.py"];
    let (out, ours) = run(Launcher::OtelRun, &python, &argv, &[]);
    assert!(text(&out.stdout).contains("taches_total"), "its own reader");
    assert_eq!(
        ours.metrics_named("taches_total"),
        [1.0],
        "{:?}",
        ours.metrics
    );
    let (_, theirs) = run(Launcher::Anchor, &python, &argv, &[]);
    ours.covers(&theirs);
    // One that is: its reader exports to the agent itself, so otel-run adds none.
    let Some(grpc) = grpc_python() else { return };
    let argv = ["python", "meter_loop.py"];
    let (out, ours) = run(Launcher::OtelRun, &grpc, &argv, &[]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("Overriding"), "{stderr}");
    let readings = ours.metrics_named("sensor.temperature");
    assert_eq!(readings.len(), 1, "exported once: {:?}", ours.metrics);
    let (_, theirs) = run(Launcher::Anchor, &grpc, &argv, &[]);
    ours.covers(&theirs);
}

#[test]
fn a_program_exporting_to_the_agent_itself_is_not_exported_twice() {
    let Some(python) = grpc_python() else { return };
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let argv = ["python", "iot_app.py", &url];
    let (out, ours) = run(Launcher::OtelRun, &python, &argv, &[]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("Attempting to instrument"), "{stderr}");
    assert!(!stderr.contains("Overriding"), "{stderr}");
    let sensor = ours.spans_named("read_sensor");
    assert_eq!(sensor.len(), 1, "{:?}", ours.spans);
    // The program's own provider, resource and all, is the one that exported.
    assert_eq!(sensor[0].2, "python-iot-app");
    assert_eq!(ours.spans_named("GET").len(), 1, "{:?}", ours.spans);
    let (_, theirs) = run(Launcher::Anchor, &python, &argv, &[]);
    ours.covers(&theirs);
}

/// A plain HTTP server to call.
fn target_server() -> Server {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap().keep();
    let mut command = Command::new("python3");
    let port_text = port.to_string();
    command
        .args(["-m", "http.server", &port_text, "--bind", "127.0.0.1"])
        .current_dir(&dir);
    Server::start(command, port, &dir)
}

// --- Metrics-only and logs-only programs, without an exporter package ---------------

#[test]
fn metrics_only_and_logs_only_programs_export_without_an_exporter_package() {
    let Some(python) = grpc_python() else { return };
    let http_exporter = Command::new(&python)
        .args(["-c", "import opentelemetry.exporter.otlp.proto.http"])
        .output()
        .unwrap();
    assert!(
        !http_exporter.status.success(),
        "the venv has no HTTP exporter"
    );

    let argv = ["python", "meter_only.py"];
    let (out, ours) = run(Launcher::OtelRun, &python, &argv, &[]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("not installed"), "{stderr}");
    assert_eq!(
        ours.metrics_named("sensor.readings"),
        [3.0],
        "{:?}",
        ours.metrics
    );
    let (_, theirs) = run(Launcher::Anchor, &python, &argv, &[]);
    ours.covers(&theirs);

    let argv = ["python", "logs_only.py"];
    let (out, ours) = run(Launcher::OtelRun, &python, &argv, &[LOGS_ON]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("not installed"), "{stderr}");
    assert!(stderr.contains("INFO:sensor:sensor started"), "{stderr}");
    let sensor: Vec<_> = ours.logs.iter().filter(|(s, ..)| s == "sensor").collect();
    let expected = [("INFO", "sensor started"), ("WARN", "sensor too hot")];
    assert_eq!(sensor.len(), expected.len(), "{sensor:?}");
    for ((_, severity, body), (want_severity, want_body)) in sensor.iter().zip(expected) {
        assert_eq!(
            (severity.as_str(), body.as_str()),
            (want_severity, want_body)
        );
    }
    let (_, theirs) = run(Launcher::Anchor, &python, &argv, &[LOGS_ON]);
    ours.covers(&theirs);
}

// --- Propagators, and what the shim says ----------------------------------------------

/// The relay project under `launcher` with `propagators`; what `/relay` answered
/// (the headers of its own outgoing call), otel-run's stderr, what was delivered.
fn relay(
    launcher: Launcher,
    python: &Path,
    propagators: &str,
    flags: &[&str],
) -> (Value, String, Delivered) {
    let collector = Collector::start().expect("a collector");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let argv = [bin(python, "python"), "django_relay.py".into()]
        .into_iter()
        .chain(["runserver".into(), address, "--noreload".into()])
        .collect::<Vec<_>>();
    let mut command = command(launcher, python, &collector, flags, &argv);
    if launcher == Launcher::Anchor {
        // The anchor instruments Django at start-up: it needs the settings first.
        command.env("DJANGO_SETTINGS_MODULE", "django_relay");
    }
    command
        .env("OTEL_PROPAGATORS", propagators)
        .env("PYTHONPATH", flows().join("propagators"));
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(command, port, dir.path());
    let body = crate::util::http_get_body(port, "/relay");
    server.stop();
    let headers = serde_json::from_str(&body).unwrap_or_else(|_| {
        panic!(
            "{launcher:?}: /relay answered {body:?}\n{}",
            server.stderr_text()
        )
    });
    (
        headers,
        server.stderr_text(),
        Delivered::settled(&collector),
    )
}

#[test]
fn a_missing_propagator_is_said_once_and_the_others_still_propagate() {
    let Some(python) = grpc_python() else { return };
    let (headers, stderr, ours) = relay(
        Launcher::OtelRun,
        &python,
        "tracecontext,kontur,vostok",
        &["-v"],
    );
    // The venv's other libraries without their instrumentation are a warning of
    // their own.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning:") && l.contains("OTEL_PROPAGATORS"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("`vostok`"), "{stderr}");
    assert!(stderr.contains("hint: install the package"), "{stderr}");
    // `-v` shows what the shim did.
    assert!(
        stderr.contains("otel-run: python: instrumented django"),
        "{stderr}"
    );
    // Django's SERVER spans are there, and the call carried both propagators'
    // headers, for the same trace.
    assert_eq!(ours.spans_named("GET relay").len(), 1, "{:?}", ours.spans);
    assert_eq!(ours.spans_named("GET headers").len(), 1, "{:?}", ours.spans);
    let traceparent = headers["Traceparent"].as_str().expect("a traceparent");
    let trace_id = traceparent.split('-').nth(1).unwrap();
    assert_eq!(headers["X-Kontur-Trace-Id"], trace_id, "{headers}");
    // The anchor, where it works: without the propagator that is not installed.
    let (theirs_headers, _, theirs) = relay(Launcher::Anchor, &python, "tracecontext,kontur", &[]);
    assert!(theirs_headers.get("X-Kontur-Trace-Id").is_some());
    ours.covers(&theirs);
}

#[test]
fn the_shims_messages_follow_otel_runs_verbosity() {
    let Some(python) = grpc_python() else { return };
    let shim = |flags: &[&str]| {
        let out = otel_run()
            .args([
                "--traces-exporter",
                "console",
                "--console-output",
                "/dev/null",
            ])
            .args(flags)
            .args(["--", &bin(&python, "python"), "-c", "import requests"])
            .output()
            .unwrap();
        text(&out.stderr)
    };
    assert!(!shim(&[]).contains("python:"), "quiet by default");
    assert!(shim(&["-v"]).contains("otel-run: python: instrumented requests"));
    assert!(shim(&["-vv"]).contains("otel-run: debug: python:"));
}

// --- otel-run's meter provider against the SDK's -------------------------------------

/// Each metric the program made (not the SDK's own `otel.sdk.*`), by name: its
/// kind, unit, description, temporality, monotonicity and points, every point with
/// its attributes (type tags kept: 1, 1.0 and true are different series) and its
/// exemplars' values and whether they carry a trace. Timestamps are left out.
fn metric_shapes(raw: &str) -> std::collections::BTreeMap<String, Value> {
    let mut shapes = std::collections::BTreeMap::new();
    let each = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
        for rm in each(&data, "resourceMetrics") {
            for metric in each(&rm, "scopeMetrics")
                .iter()
                .flat_map(|s| each(s, "metrics"))
            {
                let name = metric["name"].as_str().unwrap_or_default().to_string();
                if name.starts_with("otel.sdk.") {
                    continue;
                }
                let kind = ["sum", "gauge", "histogram"]
                    .into_iter()
                    .find(|k| metric.get(*k).is_some())
                    .unwrap_or("other");
                let data = &metric[kind];
                let mut points: Vec<Value> = each(data, "dataPoints")
                    .iter()
                    .map(|p| {
                        let mut attributes: Vec<(String, String)> = each(p, "attributes")
                            .iter()
                            .map(|kv| {
                                let key = kv["key"].as_str().unwrap_or_default().to_string();
                                (key, kv["value"].to_string())
                            })
                            .collect();
                        attributes.sort();
                        let exemplars: Vec<Value> = each(p, "exemplars")
                            .iter()
                            .map(|e| {
                                let value = e.get("asInt").or(e.get("asDouble"));
                                let traced = e["traceId"].as_str().is_some_and(|t| !t.is_empty());
                                serde_json::json!([value, traced])
                            })
                            .collect();
                        let mut point = serde_json::json!({
                            "attributes": attributes,
                            "exemplars": exemplars,
                        });
                        for field in [
                            "asInt",
                            "asDouble",
                            "count",
                            "sum",
                            "min",
                            "max",
                            "bucketCounts",
                            "explicitBounds",
                        ] {
                            if let Some(v) = p.get(field) {
                                point[field] = v.clone();
                            }
                        }
                        point
                    })
                    .collect();
                points.sort_by_key(|p| p.to_string());
                let shape = serde_json::json!({
                    "kind": kind,
                    "unit": metric["unit"],
                    "description": metric["description"],
                    "temporality": data["aggregationTemporality"],
                    "monotonic": data["isMonotonic"],
                    "points": points,
                });
                let previous = shapes.insert(name.clone(), shape);
                assert!(previous.is_none(), "{name} delivered twice:\n{raw}");
            }
        }
    }
    shapes
}

#[test]
fn otel_runs_meter_provider_delivers_what_the_sdks_does() {
    let Some(python) = apps_python() else { return };
    let argv = ["python", "meter_shapes.py"];
    for preference in ["cumulative", "delta"] {
        let env = [(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            preference,
        )];
        let (out, ours) = run(Launcher::OtelRun, &python, &argv, &env);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert!(stdout.contains("shapes measured"), "{stdout}\n{stderr}");
        assert!(stdout.contains("instruments step aside True"), "{stdout}");
        // The negative add and the failing callback are each said once.
        assert_eq!(
            stderr.matches("must be non-negative on Counter").count(),
            1,
            "{stderr}"
        );
        assert_eq!(
            stderr.matches("this callback always fails").count(),
            1,
            "{stderr}"
        );
        let (_, theirs) = run(Launcher::Anchor, &python, &argv, &env);
        let (ours_shapes, theirs_shapes) = (metric_shapes(&ours.raw), metric_shapes(&theirs.raw));
        assert!(ours_shapes.contains_key("shapes.histogram"), "{}", ours.raw);
        for (name, theirs_shape) in &theirs_shapes {
            assert_eq!(
                ours_shapes.get(name),
                Some(theirs_shape),
                "{preference}: {name} differs from the SDK's\nours:\n{}\ntheirs:\n{}",
                ours.raw,
                theirs.raw
            );
        }
        assert_eq!(
            ours_shapes.keys().collect::<Vec<_>>(),
            theirs_shapes.keys().collect::<Vec<_>>()
        );
        // The exemplar is the span's.
        let trace = stdout
            .lines()
            .find_map(|l| l.strip_prefix("trace "))
            .expect("the script prints its trace id");
        assert!(
            ours.raw.contains(&format!("\"traceId\":\"{trace}\"")),
            "{}",
            ours.raw
        );
    }
}

/// Each span a collector received, by name: its kind, attributes (type tags
/// kept, sorted), dropped counts, events, links, status and parent's name.
/// Identifiers and timestamps are left out; otel-run's own spans too.
fn span_shapes(raw: &str) -> std::collections::BTreeMap<String, Value> {
    let each = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let sorted = |attributes: Vec<Value>| {
        let mut pairs: Vec<(String, String)> = attributes
            .iter()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap_or_default().to_string(),
                    kv["value"].to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    let mut spans = Vec::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
        for rs in each(&data, "resourceSpans") {
            for ss in each(&rs, "scopeSpans") {
                if ss["scope"]["name"] == "otel-run" {
                    continue;
                }
                spans.extend(each(&ss, "spans"));
            }
        }
    }
    let name_of = |id: &Value| {
        spans
            .iter()
            .find(|s| &s["spanId"] == id)
            .map(|s| s["name"].clone())
            .unwrap_or(Value::Null)
    };
    let mut shapes = std::collections::BTreeMap::new();
    for span in &spans {
        let events: Vec<Value> = each(span, "events")
            .iter()
            .map(|e| {
                let attributes: Vec<(String, String)> = sorted(each(e, "attributes"))
                    .into_iter()
                    .map(|(k, v)| {
                        if k == "exception.stacktrace" {
                            (k, "…".into())
                        } else {
                            (k, v)
                        }
                    })
                    .collect();
                serde_json::json!([e["name"], attributes, e.get("droppedAttributesCount")])
            })
            .collect();
        let links: Vec<Value> = each(span, "links")
            .iter()
            .map(|l| serde_json::json!([name_of(&l["spanId"]), sorted(each(l, "attributes"))]))
            .collect();
        let shape = serde_json::json!({
            "kind": span["kind"],
            "attributes": sorted(each(span, "attributes")),
            "droppedAttributesCount": span.get("droppedAttributesCount"),
            "events": events,
            "droppedEventsCount": span.get("droppedEventsCount"),
            "links": links,
            "droppedLinksCount": span.get("droppedLinksCount"),
            "status": span["status"],
            "parent": name_of(&span["parentSpanId"]),
        });
        let name = span["name"].as_str().unwrap_or_default().to_string();
        assert!(
            shapes.insert(name.clone(), shape).is_none(),
            "two spans named {name}"
        );
    }
    shapes
}

#[test]
fn otel_runs_spans_deliver_what_the_sdks_do() {
    let Some(python) = apps_python() else { return };
    let env = [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10"),
    ];
    let (out, theirs) = run(
        Launcher::Anchor,
        &python,
        &["python", "span_shapes.py"],
        &env,
    );
    assert!(text(&out.stdout).contains("span type opentelemetry.sdk.trace"));
    let theirs_shapes = span_shapes(&theirs.raw);
    // Each form the shim sends spans in: marshal data wherever the interpreter
    // writes it as the agent reads it (the odd values' batch too), JSON else.
    // In marshal form an ended span is queued as its record, in JSON as itself.
    let forms = [
        (
            &["python", "span_shapes.py"][..],
            "['application/x-otel-run-spans+marshal']",
            "queued as tuple",
        ),
        (
            &["python", "span_shapes.py", "json"][..],
            "['application/x-otel-run-spans+json']",
            "queued as Span",
        ),
    ];
    for (argv, sent, queued) in forms {
        let (out, ours) = run(Launcher::OtelRun, &python, argv, &env);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("spans made"),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        // The spans compared are otel-run's own, not the SDK's, made without
        // the class's call and without lists of their own until they need them;
        // a class the program names instead makes its spans.
        assert!(stdout.contains("span type otel_run_spans"), "{stdout}");
        assert!(stdout.contains("made directly True"), "{stdout}");
        assert!(stdout.contains("no lists of its own True"), "{stdout}");
        assert!(
            stdout.contains("replaced span made by Replaced"),
            "{stdout}"
        );
        assert!(stdout.contains("shared lists still empty True"), "{stdout}");
        assert!(stdout.contains("tracer steps aside True"), "{stdout}");
        assert!(stdout.contains("use_span from otel_run_api"), "{stdout}");
        assert!(stdout.contains(&format!("sent as {sent}")), "{stdout}");
        assert!(stdout.contains(queued), "{stdout}");
        assert!(stdout.contains("sampler ParentBasedAlwaysOn"), "{stdout}");
        compare_shapes(
            &span_shapes(&ours.raw),
            &theirs_shapes,
            &ours.raw,
            &theirs.raw,
        );
    }
    // A sampler other than the default is the program's to keep.
    let env = [env[0], env[1], ("OTEL_TRACES_SAMPLER", "always_on")];
    let (out, ours) = run(
        Launcher::OtelRun,
        &python,
        &["python", "span_shapes.py"],
        &env,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sampler StaticSampler"), "{stdout}");
    compare_shapes(
        &span_shapes(&ours.raw),
        &theirs_shapes,
        &ours.raw,
        &theirs.raw,
    );
}

#[test]
fn spans_of_more_scopes_than_the_exporter_tables_all_arrive_under_their_own() {
    let Some(python) = apps_python() else { return };
    let (out, ours) = run(
        Launcher::OtelRun,
        &python,
        &["python", "many_scopes.py"],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("spans made"), "{stdout}");
    // The table stops at its bound; the spans past it were queued as spans.
    assert!(stdout.contains("scopes in the table 1024"), "{stdout}");
    let mut under: BTreeSet<(String, String)> = BTreeSet::new();
    for line in ours.raw.lines().filter(|l| !l.trim().is_empty()) {
        let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
        for rs in data["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                let scope = ss["scope"]["name"].as_str().unwrap_or_default();
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let name = span["name"].as_str().unwrap_or_default();
                    if let Some(n) = name.strip_prefix("span-") {
                        under.insert((n.to_string(), scope.to_string()));
                    }
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = (0..1100)
        .map(|n| (n.to_string(), format!("scope-{n}")))
        .collect();
    let missing: Vec<_> = expected.difference(&under).take(5).collect();
    let odd: Vec<_> = under.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && odd.is_empty(),
        "{} of 1100 spans missing under their scope (such as {missing:?}); unexpected: {odd:?}\n{}",
        expected.difference(&under).count(),
        text(&out.stderr)
    );
}

fn compare_shapes(
    ours_shapes: &std::collections::BTreeMap<String, Value>,
    theirs_shapes: &std::collections::BTreeMap<String, Value>,
    ours_raw: &str,
    theirs_raw: &str,
) {
    assert!(theirs_shapes.contains_key("child renamed"), "{theirs_raw}");
    for (name, theirs_shape) in theirs_shapes {
        assert_eq!(
            ours_shapes.get(name),
            Some(theirs_shape),
            "{name} differs from the SDK's\nours:\n{ours_raw}\ntheirs:\n{theirs_raw}"
        );
    }
    assert_eq!(
        ours_shapes.keys().collect::<Vec<_>>(),
        theirs_shapes.keys().collect::<Vec<_>>()
    );
}

#[test]
fn settings_read_on_every_request_follow_the_programs_environment() {
    let Some(python) = apps_python() else { return };
    let argv = ["python", "environ_reads.py"];
    let (out, _) = run(Launcher::OtelRun, &python, &argv, &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("environ view EnvironReads"), "{stdout}");
    assert!(
        stdout.contains("environ reads follow os.environ"),
        "{stdout}"
    );
    let (out, _) = run(Launcher::Anchor, &python, &argv, &[]);
    assert!(
        text(&out.stdout).contains("environ reads follow os.environ"),
        "the fixture holds for the SDK's own reads too"
    );
}

#[test]
fn an_sdk_without_what_the_lighter_spans_use_keeps_its_own_and_exports_them() {
    let Some(python) = apps_python() else { return };
    let argv = ["python", "other_sdk_spans.py"];
    let (out, delivered) = run(Launcher::OtelRun, &python, &argv, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("span type opentelemetry.sdk.trace"),
        "{stdout}\n{stderr}"
    );
    assert!(
        delivered
            .spans
            .iter()
            .any(|(name, _, _)| name == "made by the sdk"),
        "{stderr}\n{}",
        delivered.raw
    );
    assert!(!stderr.contains("failed in"), "{stderr}");
}
