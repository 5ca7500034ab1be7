//! The local receiver, fed by a real OpenTelemetry SDK (Python) and by raw
//! OTLP requests, as seen in otel-run's console output.

mod hostile;

use std::path::Path;

use crate::util::{assert_success, attr, fixture, otel_run, python, resource_attr, tool};

/// Runs `otel-run` with the console exporter writing to a file; returns its spans.
fn run_console(
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, Vec<serde_json::Value>) {
    let console = crate::util::ConsoleFile::new();
    let out = otel_run()
        .envs(env.iter().copied())
        .args(console.flags())
        .args(args)
        .output()
        .unwrap();
    (out, console.spans())
}

fn process_span(spans: &[serde_json::Value]) -> &serde_json::Value {
    spans
        .iter()
        .find(|s| resource_attr(s, "telemetry.sdk.name") == "otel-run")
        .expect("otel-run's process span")
}

fn check_python_child(exporter: &str) {
    let Some(python) = python() else { return };
    let app = fixture("sdk_app.py");
    let (out, spans) = run_console(
        &[
            "--service-name",
            "py-child",
            python.to_str().unwrap(),
            app.to_str().unwrap(),
            exporter,
        ],
        &[],
    );
    assert_success(&out);
    // The SDK venv has no instrumentation package, which otel-run says once;
    // nothing else is printed.
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("no OpenTelemetry instrumentation package is installed"),
        "{err}"
    );
    assert_eq!(spans.len(), 3, "process span + 2 child spans: {spans:#?}");
    let process = process_span(&spans);
    let work = spans
        .iter()
        .find(|s| s["name"] == "work")
        .expect("work span");
    let step = spans
        .iter()
        .find(|s| s["name"] == "step")
        .expect("step span");
    // The child's spans keep the child's resource and join the process span's trace.
    assert_eq!(resource_attr(work, "telemetry.sdk.language"), "python");
    assert_eq!(resource_attr(work, "service.name"), "py-child");
    assert_eq!(resource_attr(process, "service.name"), "py-child");
    assert_eq!(work["context"]["trace_id"], process["context"]["trace_id"]);
    assert_eq!(work["parent_id"], process["context"]["span_id"]);
    assert_eq!(step["parent_id"], work["context"]["span_id"]);
    assert_eq!(attr(work, "exporter"), exporter);
    assert_eq!(attr(process, "process.exit.code"), 0);
}

#[test]
fn python_sdk_exports_through_the_agent_over_http_protobuf() {
    check_python_child("http");
}

#[test]
fn python_sdk_exports_through_the_agent_over_grpc() {
    check_python_child("grpc");
}

#[test]
fn nested_otel_run_calls_form_one_trace() {
    let script = format!(
        "{bin} --span-name level-2 sh -c '{bin} --span-name level-3 true'",
        bin = crate::util::BIN
    );
    let (out, spans) = run_console(&["--span-name", "level-1", "sh", "-c", &script], &[]);
    assert_success(&out);
    let by_name = |name: &str| crate::util::span_named(&spans, name);
    let (l1, l2, l3) = (by_name("level-1"), by_name("level-2"), by_name("level-3"));
    assert_eq!(l1["parent_id"], serde_json::Value::Null);
    assert_eq!(l2["parent_id"], l1["context"]["span_id"]);
    assert_eq!(l3["parent_id"], l2["context"]["span_id"]);
    assert_eq!(l3["context"]["trace_id"], l1["context"]["trace_id"]);
    assert_eq!(spans.len(), 3);
}

#[test]
fn traceparent_in_the_environment_is_the_parent() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (out, spans) = run_console(
        &["sh", "-c", "echo $TRACEPARENT"],
        &[
            ("TRACEPARENT", parent),
            ("TRACESTATE", "rojo=00f067aa0ba902b7"),
        ],
    );
    let span = &spans[0];
    assert_eq!(
        span["context"]["trace_id"],
        "0x4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span["parent_id"], "0x00f067aa0ba902b7");
    assert_eq!(
        span["context"]["trace_state"],
        "['{key=rojo, value=00f067aa0ba902b7}']"
    );
    let child_sees = String::from_utf8(out.stdout).unwrap();
    let span_id = span["context"]["span_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    assert_eq!(
        child_sees,
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span_id}-01\n")
    );
}

#[test]
fn failing_command_marks_the_process_span_as_error() {
    let (out, spans) = run_console(&["sh", "-c", "exit 5"], &[]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(spans[0]["status"]["status_code"], "ERROR");
    assert_eq!(spans[0]["status"]["description"], "exit code 5");
    assert_eq!(attr(&spans[0], "process.exit.code"), 5);
    assert_eq!(
        attr(&spans[0], "process.command_args"),
        &serde_json::json!(["sh", "-c", "exit 5"])
    );
}

/// A child that posts raw OTLP requests with curl and prints the HTTP statuses.
fn curl_script(dir: &Path) -> String {
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl-svc"}}]},
            "scopeSpans":[{"scope":{"name":"raw"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"from-json","kind":2,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":"1544712661000000000","attributes":[{"key":"n","value":{"intValue":"7"}}]}]}]}]}"#,
    )
    .unwrap();
    let post = |path: &str, ctype: &str, data: &str| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST -H 'Content-Type: {ctype}' --data-binary {data} \"$OTEL_EXPORTER_OTLP_ENDPOINT{path}\""
        )
    };
    [
        post(
            "/v1/traces",
            "application/json",
            &format!("@{}", good.display()),
        ),
        post("/v1/traces", "application/json", "'{not json'"),
        post("/v1/traces", "application/x-protobuf", "'garbage-bytes'"),
        post("/v1/traces", "text/plain", "'x'"),
        // otel-run's compact span encoding as marshal data: cut short, and
        // a value that is not a batch.
        post(
            "/v1/traces",
            "application/x-otel-run-spans+marshal",
            "'(garbage'",
        ),
        post("/v1/traces", "application/x-otel-run-spans+marshal", "'N'"),
        post("/v1/metrics", "application/json", "'{}'"),
        post("/v1/logs", "application/json", "'{}'"),
        post("/v1/unknown", "application/json", "'{}'"),
    ]
    .join("; ")
}

#[test]
fn raw_otlp_json_is_accepted_and_malformed_requests_get_clear_statuses() {
    if tool("curl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, spans) = run_console(&["sh", "-c", &curl_script(dir.path())], &[]);
    assert_success(&out);
    let statuses: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(
        statuses,
        [
            "200", "400", "400", "415", "400", "400", "200", "200", "404"
        ]
    );
    let json_span = spans
        .iter()
        .find(|s| s["name"] == "from-json")
        .expect("span posted as JSON");
    assert_eq!(
        json_span["context"]["trace_id"],
        "0x5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(json_span["kind"], "SpanKind.SERVER");
    assert_eq!(attr(json_span, "n"), 7);
    assert_eq!(resource_attr(json_span, "service.name"), "curl-svc");
}

#[test]
fn without_the_agent_the_child_exports_directly() {
    let (out, _) = run_console(
        &[
            "--no-agent",
            "--exporter-otlp-endpoint",
            "http://collector.example:4317",
            "sh",
            "-c",
            "echo $OTEL_EXPORTER_OTLP_ENDPOINT $OTEL_TRACES_EXPORTER",
        ],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "http://collector.example:4317 console\n"
    );
}

/// Seed 000's ESP32 posts hand-written OTLP/JSON with protobuf's field names:
/// the collector takes those names, so does the receiver. Its snippet as written
/// puts the points under `data`, which OTLP does not have: that metric is
/// rejected and said so, to the device and to the user, never "exported".
#[test]
fn device_json_with_field_names_reaches_the_collector_and_empty_metrics_are_rejected() {
    let (Some(python), Some(collector)) = (python(), crate::util::Collector::start()) else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    let out = otel_run()
        .args(["--no-inject", "-v", "--metrics-exporter", "otlp"])
        .args(["--traces-exporter", "none", "--logs-exporter", "none"])
        .args(["--exporter-otlp-endpoint", &endpoint])
        .arg(python)
        .arg(fixture("device_json.py"))
        .output()
        .unwrap();
    assert_success(&out);
    let responses: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [as_written, fixed] = &responses[..] else {
        panic!("two responses: {responses:#?}");
    };
    assert_eq!(as_written["status"], 200, "{as_written}");
    let partial = &as_written["body"]["partialSuccess"];
    // protobuf's JSON writes an int64 as a string, serde as a number: either.
    let rejected = partial["rejectedDataPoints"].to_string();
    assert_eq!(rejected.trim_matches('"'), "1", "{as_written}");
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("`sensor.temperature`") && message.contains("`gauge`"),
        "{message}"
    );
    assert_eq!(fixed["status"], 200, "{fixed}");
    assert!(
        fixed["body"]["partialSuccess"]["rejectedDataPoints"].is_null(),
        "{fixed}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("without data rejected").count(), 1, "{err}");
    assert!(
        err.contains("1 data points exported, 1 dropped")
            && err.contains("1 received without data"),
        "the exit summary counts it: {err}"
    );
    let received = crate::util::wait_for(std::time::Duration::from_secs(15), || {
        let text = collector.raw_output();
        text.contains("sensor.humidity").then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the device's metric did not arrive: {}",
            collector.raw_output()
        )
    });
    assert!(received.contains("\"esp32-iot\""), "{received}");
    assert!(received.contains("\"asDouble\":23.5"), "{received}");
    assert!(!received.contains("sensor.temperature"), "{received}");
}

/// A command that sends its last spans and exits without waiting for the
/// answer (a fire-and-forget exporter, a process killed just after): what it
/// sent is in the socket when it exits, and reaches the export even when that
/// connection is the one that starts the agent, at the very end.
#[test]
fn spans_sent_just_before_the_command_exits_are_exported() {
    let Some(python) = python() else { return };
    let send_and_exit = r#"
import os, socket, urllib.parse
url = urllib.parse.urlparse(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "sent-and-gone", "kind": 1,
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000"}
import json
body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
head = ("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n").encode()
s = socket.create_connection((url.hostname, url.port))
s.sendall(head + body)
os._exit(0)
"#;
    for round in 0..5 {
        let (out, spans) = run_console(&["--", python.to_str().unwrap(), "-c", send_and_exit], &[]);
        assert_success(&out);
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        assert!(
            names.contains(&"sent-and-gone"),
            "round {round}: {names:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
