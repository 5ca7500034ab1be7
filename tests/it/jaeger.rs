//! Jaeger all-in-one, the backend of the users' documents, as the destination
//! of otel-run's defaults: what its query API shows is what a user sees.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{assert_success, fixture, free_port, otel_run, peer, python, wait_for};

/// A running Jaeger v2 (`.ci/jaeger/build.sh`), on ports of its own.
pub struct Jaeger {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    pub zipkin: u16,
    pub query: u16,
    dir: tempfile::TempDir,
}

impl Jaeger {
    pub fn start() -> Option<Jaeger> {
        let binary = peer("OTEL_RUN_TEST_JAEGER", "Jaeger")?;
        let mut log = String::new();
        // A free port may be taken before Jaeger binds it: try other ports.
        for _ in 0..5 {
            match Jaeger::try_start(&binary) {
                Ok(jaeger) => return Some(jaeger),
                Err(text) => log = text,
            }
        }
        panic!("Jaeger did not start listening: {log}");
    }

    fn try_start(binary: &Path) -> Result<Jaeger, String> {
        let dir = tempfile::tempdir().unwrap();
        let ports = [
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        ];
        let [grpc, http, zipkin, query, query_grpc] = ports;
        let config = std::fs::read_to_string(fixture("jaeger.yaml"))
            .unwrap()
            .replace("QUERY_GRPC_PORT", &query_grpc.to_string())
            .replace("QUERY_PORT", &query.to_string())
            .replace("GRPC_PORT", &grpc.to_string())
            .replace("HTTP_PORT", &http.to_string())
            .replace("ZIPKIN_PORT", &zipkin.to_string());
        let config_path = dir.path().join("jaeger.yaml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("jaeger.log")).unwrap())
            .spawn()
            .unwrap();
        let mut jaeger = Jaeger {
            child,
            grpc,
            http,
            zipkin,
            query,
            dir,
        };
        let up = wait_for(Duration::from_secs(30), || {
            if jaeger.child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            let ok = ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            ok.then_some(true)
        });
        match up {
            Some(true) => Ok(jaeger),
            _ => Err(jaeger.log()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jaeger.log")).unwrap_or_default()
    }

    /// The traces of `service` as the query API (and so the UI) shows them,
    /// once one holds at least `spans` spans.
    pub fn wait_traces(&self, service: &str, spans: usize) -> Vec<Value> {
        let path = format!("/api/traces?service={service}");
        wait_for(Duration::from_secs(20), || {
            let body = crate::util::http_get_body(self.query, &path);
            let traces: Value = serde_json::from_str(&body).ok()?;
            let traces = traces["data"].as_array()?.clone();
            let most = traces
                .iter()
                .map(|t| t["spans"].as_array().map_or(0, Vec::len));
            (most.max()? >= spans).then_some(traces)
        })
        .unwrap_or_else(|| panic!("no trace of {spans} spans for {service}: {}", self.log()))
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The span named `name` of a Jaeger trace.
fn span<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == name)
        .unwrap_or_else(|| panic!("no span {name}: {trace:#}"))
}

/// The span ID of a Jaeger span's CHILD_OF parent, if any.
fn parent(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
}

/// otel-run's defaults (OTLP over gRPC) to Jaeger: the process span and the
/// Python program's nested spans are one trace, each under its parent, with
/// each resource's service.
#[test]
fn a_nested_trace_reaches_jaeger_with_its_parents() {
    check_nested_trace(None);
}

/// The same over OTLP/HTTP, Jaeger's port 4318.
#[test]
fn a_nested_trace_reaches_jaeger_over_http_protobuf() {
    check_nested_trace(Some("http/protobuf"));
}

fn check_nested_trace(protocol: Option<&str>) {
    let (Some(python), Some(jaeger)) = (python(), Jaeger::start()) else {
        return;
    };
    let port = match protocol {
        None => jaeger.grpc,
        Some(_) => jaeger.http,
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut otel_run = otel_run();
    if let Some(protocol) = protocol {
        otel_run.args(["--exporter-otlp-protocol", protocol]);
    }
    let out = otel_run
        .env_remove("OTEL_TRACES_EXPORTER")
        .args(["--service-name", "jaeger-nested"])
        .args(["--exporter-otlp-endpoint", &endpoint])
        .arg(python)
        .arg(fixture("sdk_app.py"))
        .arg("grpc")
        .output()
        .unwrap();
    assert_success(&out);
    nested_trace(&jaeger, "jaeger-nested");
}

/// sdk_app.py's trace in Jaeger: the process span at the root, `work` under
/// it, `step` under `work`, all of `service`; returns the trace.
fn nested_trace(jaeger: &Jaeger, service: &str) -> Value {
    let traces = jaeger.wait_traces(service, 3);
    let [trace] = &traces[..] else {
        panic!("one trace: {traces:#?}");
    };
    let (process, work, step) = (
        span(trace, "python"),
        span(trace, "work"),
        span(trace, "step"),
    );
    assert_eq!(parent(process), None, "the process span is the root");
    assert_eq!(parent(work), process["spanID"].as_str());
    assert_eq!(parent(step), work["spanID"].as_str());
    let of =
        |s: &Value| trace["processes"][s["processID"].as_str().unwrap()]["serviceName"].clone();
    assert_eq!(of(process), service);
    assert_eq!(of(work), service);
    trace.clone()
}

/// `--traces_exporter zipkin` (the spelling of the users' documents) to Jaeger's
/// Zipkin port: the same nested trace, each span under its parent, each
/// resource with its own service, and the kinds and status mapped.
#[test]
fn zipkin_spans_reach_jaegers_zipkin_port_as_one_trace() {
    let (Some(python), Some(jaeger)) = (python(), Jaeger::start()) else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}/api/v2/spans", jaeger.zipkin);
    let out = otel_run()
        .args([
            "--traces_exporter",
            "zipkin",
            "--service_name",
            "zipkin-nested",
        ])
        .env("OTEL_EXPORTER_ZIPKIN_ENDPOINT", &endpoint)
        .arg(python)
        .arg(fixture("sdk_app.py"))
        .arg("http")
        .output()
        .unwrap();
    assert_success(&out);
    let trace = nested_trace(&jaeger, "zipkin-nested");
    let (process, work) = (span(&trace, "python"), span(&trace, "work"));
    let tag = |s: &Value, key: &str| {
        s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["value"].clone())
    };
    // INTERNAL spans carry no kind in Zipkin; attributes and scope are tags.
    assert_eq!(tag(process, "span.kind"), None, "{process:#}");
    assert_eq!(tag(process, "otel.scope.name"), Some("otel-run".into()));
    assert_eq!(
        tag(process, "process.exit.code"),
        Some("0".into()),
        "{process:#}"
    );
    assert_eq!(
        tag(work, "otel.scope.name"),
        Some("sdk-app".into()),
        "{work:#}"
    );
}

/// `--traces-exporter jaeger`: Jaeger takes OTLP, so spans go as OTLP, and
/// otel-run says why once.
#[test]
fn the_jaeger_exporter_name_sends_otlp_and_says_why_once() {
    let Some(jaeger) = Jaeger::start() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", jaeger.grpc);
    let out = otel_run()
        .args([
            "--traces-exporter",
            "jaeger,otlp",
            "--service-name",
            "jaeger-name",
        ])
        .args(["--exporter-otlp-endpoint", &endpoint, "--", "true"])
        .output()
        .unwrap();
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("Jaeger takes OTLP natively").count(),
        1,
        "{err}"
    );
    let traces = jaeger.wait_traces("jaeger-name", 1);
    assert_eq!(traces.len(), 1, "sent once, not once per name: {traces:#?}");
    assert_eq!(traces[0]["spans"].as_array().unwrap().len(), 1);
}

/// Jaeger takes no metrics or logs: each signal is said once, in one line that
/// names it, counted as dropped, and not sent there again.
#[test]
fn a_backend_without_metrics_and_logs_is_said_once_per_signal() {
    let (Some(python), Some(jaeger)) = (python(), Jaeger::start()) else {
        return;
    };
    for (protocol, port) in [("grpc", jaeger.grpc), ("http/protobuf", jaeger.http)] {
        let endpoint = format!("http://127.0.0.1:{port}");
        let out = otel_run()
            .args(["--metrics-exporter", "otlp", "--logs-exporter", "otlp"])
            .args(["--exporter-otlp-protocol", protocol])
            .args(["--exporter-otlp-endpoint", &endpoint])
            .arg(&python)
            .arg(fixture("sdk_signals.py"))
            .output()
            .unwrap();
        assert_success(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        for signal in ["metrics", "logs"] {
            let said: Vec<&str> = err
                .lines()
                .filter(|l| l.contains(&format!("does not take {signal} (")))
                .collect();
            assert_eq!(said.len(), 1, "{protocol}: {err}");
            assert!(
                said[0].contains(&format!("{signal} are not sent there again")),
                "{said:?}"
            );
        }
        assert!(
            err.contains("0 data points exported, 1 dropped"),
            "{protocol}: {err}"
        );
    }
}

/// A Flask app under `flask run`, as the users' documents run it, with
/// otel-run's defaults pointed at Jaeger: its SERVER spans are in Jaeger, under
/// the app's service, with the route.
#[test]
fn a_flask_apps_server_spans_are_in_jaeger() {
    let (Some(python), Some(jaeger)) = (crate::util::apps_python(), Jaeger::start()) else {
        return;
    };
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{}", jaeger.grpc);
    let dir = tempfile::tempdir().unwrap();
    let mut command = otel_run();
    command
        .env_remove("OTEL_TRACES_EXPORTER")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .args(["--service-name", "flask-jaeger"])
        .args(["--exporter-otlp-endpoint", &endpoint, "--"])
        .arg(python.with_file_name("flask"))
        .args(["--app", "flask_app", "run", "-p", &port.to_string()])
        .current_dir(fixture("python"));
    let mut server = crate::util::Server::start(command, port, dir.path());
    for user in [1, 2] {
        assert_eq!(crate::util::http_get(port, &format!("/users/{user}")), 200);
    }
    let traces = jaeger.wait_traces("flask-jaeger", 1);
    server.stop();
    let server_spans: Vec<&Value> = traces
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "span.kind" && t["value"] == "server")
        })
        .collect();
    assert!(!server_spans.is_empty(), "{traces:#?}");
    let route = server_spans[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "http.route")
        .map(|t| t["value"].clone());
    assert_eq!(route, Some("/users/<int:user_id>".into()), "{traces:#?}");
}
