//! Export to a real OpenTelemetry Collector, over each OTLP protocol, and the
//! forwarding of a child's traces, metrics and logs through the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Collector, assert_success, fixture, otel_run, python, tool, wait_for};

/// Runs `otel-run` exporting traces over OTLP to the collector.
fn export_to(
    collector: &Collector,
    protocol: &str,
    extra: &[&str],
    command: &[&str],
) -> std::process::Output {
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", collector.grpc),
        _ => format!("http://127.0.0.1:{}", collector.http),
    };
    otel_run()
        .args([
            "--traces-exporter",
            "otlp",
            "--exporter-otlp-protocol",
            protocol,
        ])
        .args(["--exporter-otlp-endpoint", &endpoint])
        .args(extra)
        .args(command)
        .output()
        .unwrap()
}

fn check_process_span(protocol: &str, extra: &[&str]) {
    let Some(collector) = Collector::start() else {
        return;
    };
    let span_name = format!("over-{}", protocol.replace('/', "-"));
    let mut args = vec![
        "--service-name",
        "collector-test",
        "--span-name",
        span_name.as_str(),
    ];
    args.extend_from_slice(extra);
    let out = export_to(&collector, protocol, &args, &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = collector.wait_spans(1);
    let span = &spans[0];
    assert_eq!(span["name"], span_name.as_str());
    assert_eq!(span["resource"]["service.name"], "collector-test");
    assert_eq!(span["resource"]["telemetry.sdk.name"], "otel-run");
    assert_eq!(span["attributes"]["process.exit.code"], 3);
    assert_eq!(
        span["attributes"]["process.command_args"],
        serde_json::json!(["sh", "-c", "exit 3"])
    );
    assert_eq!(span["status"]["code"], 2, "status ERROR");
    assert_eq!(span["scope"], "otel-run");
}

#[test]
fn process_span_reaches_the_collector_over_grpc() {
    check_process_span("grpc", &[]);
}

#[test]
fn process_span_reaches_the_collector_over_grpc_with_gzip_and_headers() {
    check_process_span(
        "grpc",
        &[
            "--exporter-otlp-compression",
            "gzip",
            "--exporter-otlp-headers",
            "x-tenant=acme",
        ],
    );
}

#[test]
fn process_span_reaches_the_collector_over_http_protobuf() {
    check_process_span("http/protobuf", &[]);
}

#[test]
fn process_span_reaches_the_collector_over_http_json_with_gzip() {
    check_process_span("http/json", &["--exporter-otlp-compression", "gzip"]);
}

#[test]
fn child_spans_are_forwarded_with_their_own_resource() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let app = fixture("sdk_app.py");
    let out = export_to(
        &collector,
        "grpc",
        &["--service-name", "forwarded"],
        &[python.to_str().unwrap(), app.to_str().unwrap(), "http"],
    );
    assert_success(&out);
    let spans = collector.wait_spans(3);
    let find = |name: &str| crate::util::span_named(&spans, name);
    let (process, work, step) = (find("python"), find("work"), find("step"));
    assert_eq!(work["resource"]["telemetry.sdk.language"], "python");
    assert_eq!(work["resource"]["service.name"], "forwarded");
    assert_eq!(process["resource"]["telemetry.sdk.language"], "rust");
    assert_eq!(work["traceId"], process["traceId"]);
    assert_eq!(work["parentSpanId"], process["spanId"]);
    assert_eq!(step["parentSpanId"], work["spanId"]);
    assert_eq!(work["scope"], "sdk-app");
}

#[test]
fn child_metrics_and_logs_are_forwarded() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let app = fixture("sdk_signals.py");
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    let out = otel_run()
        .args([
            "--traces-exporter",
            "none",
            "--metrics-exporter",
            "otlp",
            "--logs-exporter",
            "otlp",
        ])
        .args([
            "--exporter-otlp-endpoint",
            &endpoint,
            "--service-name",
            "signals",
        ])
        .args([python.to_str().unwrap(), app.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let received = wait_for(Duration::from_secs(15), || {
        let lines = collector.lines();
        let has = |key: &str| lines.iter().any(|l| l.get(key).is_some());
        (has("resourceMetrics") && has("resourceLogs")).then_some(lines)
    })
    .unwrap_or_else(|| panic!("metrics and logs not received: {:#?}", collector.lines()));
    let text = serde_json::to_string(&received).unwrap();
    assert!(
        text.contains("\"orders.placed\""),
        "the counter arrived: {text}"
    );
    assert!(
        text.contains("order 42 placed"),
        "the log record arrived: {text}"
    );
    assert!(
        text.contains("\"signals\""),
        "with the child's service name: {text}"
    );
}

#[test]
fn an_absent_collector_is_reported_once_and_does_not_change_the_exit() {
    let port = crate::util::free_port();
    let mut child = otel_run()
        .args([
            "--traces-exporter",
            "otlp",
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--bsp-export-timeout", "2000", "sh", "-c", "exit 4"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, not a benchmark: the flush is bounded by the export timeout.
    let status =
        wait_for(Duration::from_secs(30), || child.try_wait().unwrap()).expect("otel-run hung");
    assert_eq!(status.code(), Some(4));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err.matches("no OTLP collector").count(), 1, "{err}");
    assert!(
        err.contains("hint:") && err.contains("--traces-exporter console"),
        "{err}"
    );
    assert!(err.contains("1 dropped"), "{err}");
}

impl Collector {
    /// Every line the collector wrote, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.raw_output()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// What the receiver gets was batched by the child's SDK already: it reaches the
/// backend at once, not after the agent's own schedule on top of the SDK's.
#[test]
fn a_received_span_is_forwarded_without_waiting_for_the_agents_schedule() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    // The agent's schedule is ten minutes; the child's SDK exports after 100 ms.
    let mut child = otel_run()
        .args(["--no-inject", "--traces-exporter", "otlp"])
        .args(["--exporter-otlp-endpoint", &endpoint])
        .args(["--bsp-schedule-delay", "600000", "--"])
        .args(["env", "OTEL_BSP_SCHEDULE_DELAY=100"])
        .arg(&python)
        .arg(fixture("sdk_waits.py"))
        .arg(&done)
        .spawn()
        .unwrap();
    let arrived = wait_for(Duration::from_secs(30), || {
        let spans = collector.spans();
        spans.iter().any(|s| s["name"] == "early").then_some(())
    });
    let running = child.try_wait().unwrap().is_none();
    std::fs::write(&done, "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        arrived.is_some() && running,
        "the span arrived only when the command exited: {:#?}",
        collector.spans()
    );
}

/// A CA, and a certificate for `localhost` it signed with its key: `(ca, cert, key)`.
/// (webpki refuses a self-signed CA certificate as a server's own.)
fn localhost_certificate(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = tool("openssl")?;
    let file = |name: &str| dir.join(name);
    let steps: [Vec<std::ffi::OsString>; 3] = [
        args("req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=otel-run-test-ca")
            .chain([
                "-keyout".into(),
                file("ca.key").into(),
                "-out".into(),
                file("ca.pem").into(),
            ])
            .collect(),
        args("req -newkey rsa:2048 -nodes -subj /CN=localhost")
            .chain([
                "-keyout".into(),
                file("key.pem").into(),
                "-out".into(),
                file("cert.csr").into(),
            ])
            .collect(),
        args("x509 -req -days 1 -CAcreateserial")
            .chain(["-in".into(), file("cert.csr").into()])
            .chain([
                "-CA".into(),
                file("ca.pem").into(),
                "-CAkey".into(),
                file("ca.key").into(),
            ])
            .chain([
                "-extfile".into(),
                file("ext.cnf").into(),
                "-out".into(),
                file("cert.pem").into(),
            ])
            .collect(),
    ];
    std::fs::write(
        file("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for step in steps {
        let made = std::process::Command::new(&openssl)
            .args(step)
            .output()
            .unwrap();
        assert_success(&made);
    }
    Some((file("ca.pem"), file("cert.pem"), file("key.pem")))
}

fn args(line: &str) -> impl Iterator<Item = std::ffi::OsString> + '_ {
    line.split(' ').map(Into::into)
}

/// The roots are read for `https://` only, at the first export: they must still
/// be there then, with the CA the settings name, for both transports.
#[test]
fn spans_reach_a_collector_over_https_with_its_ca_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = localhost_certificate(dir.path()) else {
        return;
    };
    let Some(collector) = Collector::start_tls(&cert, &key) else {
        return;
    };
    let run = |protocol: &str, port: u16, name: &str, ca: Option<&Path>| {
        let mut command = otel_run();
        command
            .args([
                "--traces-exporter",
                "otlp",
                "--exporter-otlp-protocol",
                protocol,
            ])
            .args([
                "--exporter-otlp-endpoint",
                &format!("https://localhost:{port}"),
            ])
            .args(["--exporter-otlp-timeout", "3000", "--span-name", name]);
        if let Some(ca) = ca {
            command.arg("--exporter-otlp-certificate").arg(ca);
        }
        command.arg("true").output().unwrap()
    };
    let out = run("grpc", collector.grpc, "over-grpc-tls", Some(&ca));
    assert_success(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("http/protobuf", collector.http, "over-http-tls", Some(&ca));
    assert_success(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = collector.wait_spans(2);
    let mut names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["over-grpc-tls", "over-http-tls"]);
    // The system's roots do not hold a self-signed certificate: refused, and said.
    let out = run("http/protobuf", collector.http, "untrusted", None);
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 dropped"), "{err}");
}
