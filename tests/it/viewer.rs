//! The built-in viewer (`--ui`): its query API answers as a real Jaeger's does
//! for the same spans, its store is bounded and evicts whole traces (and says
//! so), keeps them across a restart with `--store`, and a run with `--ui` ends
//! with its command when no one is at a terminal.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::jaeger::Jaeger;
use crate::util::{
    Server, assert_success, fixture, free_port, http_get, http_get_body, otel_run, python, wait_for,
};

/// `otel-run agent --ui` receiving on `grpc`, serving the viewer on `ui`.
fn viewer_agent(grpc: u16, ui: u16) -> Command {
    let mut cmd = otel_run();
    cmd.args(["agent", "--ui"])
        .args(["--listen", &format!("127.0.0.1:{grpc}")])
        .args(["--ui-listen", &format!("127.0.0.1:{ui}")]);
    cmd
}

fn get_json(port: u16, path: &str) -> Value {
    let body = http_get_body(port, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// POSTs an OTLP/JSON request to the agent's receiver; the response's status.
fn post_json(port: u16, path: &str, body: &Value) -> u16 {
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One trace of `spans` spans (ids 1..=spans, each the child of the one before).
fn trace_request(trace: u8, spans: u8) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Value> = (1..=spans)
        .map(|i| {
            let mut span = json!({
                "traceId": format!("{trace:032x}"),
                "spanId": format!("{i:016x}"),
                "name": format!("op{i}"),
                "kind": 2,
                "startTimeUnixNano": (now + u64::from(i) * 1000).to_string(),
                "endTimeUnixNano": (now + 5_000_000).to_string(),
            });
            if i > 1 {
                span["parentSpanId"] = json!(format!("{:016x}", i - 1));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fixed"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
}

fn summary(ui: u16) -> Value {
    get_json(ui, "/api/otel-run/summary")
}

/// Waits until the store holds `spans` spans.
fn wait_spans(server: &Server, ui: u16, spans: u64) -> Value {
    wait_for(Duration::from_secs(20), || {
        let s = summary(ui);
        (s["spans"].as_u64() == Some(spans)).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "never {spans} spans: {} {}",
            summary(ui),
            server.stderr_text()
        )
    })
}

/// A Jaeger answer with what may differ between two correct servers made the
/// same: spans, references and processes in order, processes by content.
fn normalized(answer: &Value) -> Value {
    let mut answer = answer.clone();
    let Some(traces) = answer["data"].as_array_mut() else {
        return answer;
    };
    for trace in traces.iter_mut().filter(|t| t.get("spans").is_some()) {
        let processes = trace["processes"].clone();
        let spans = trace["spans"].as_array_mut().unwrap();
        for span in spans.iter_mut() {
            let id = span["processID"].as_str().unwrap().to_string();
            span["processID"] = processes[&id].clone();
            let refs = span["references"].as_array_mut().unwrap();
            refs.sort_by_key(|r| r.to_string());
        }
        spans.sort_by_key(|s| s["spanID"].as_str().unwrap().to_string());
        let mut distinct: Vec<String> = processes
            .as_object()
            .unwrap()
            .values()
            .map(Value::to_string)
            .collect();
        distinct.sort();
        trace["processes"] = json!(distinct);
    }
    traces.sort_by_key(|t| t["traceID"].to_string());
    answer
}

/// The Python SDK's spans and otel-run's process span, sent through
/// `otel-run agent --ui` on to a real Jaeger: every query path answers the
/// same JSON from both (modulo order and processID names), errors included.
#[test]
fn the_query_api_answers_as_jaeger_does_for_the_same_spans() {
    let (Some(python), Some(jaeger)) = (python(), Jaeger::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ui) = (free_port(), free_port());
    let mut agent = viewer_agent(grpc, ui);
    agent.env_remove("OTEL_TRACES_EXPORTER").args([
        "--exporter-otlp-endpoint",
        &format!("http://127.0.0.1:{}", jaeger.grpc),
    ]);
    let server = Server::start(agent, ui, dir.path());
    let out = otel_run()
        .env_remove("OTEL_TRACES_EXPORTER")
        .args(["--service-name", "viewer-same"])
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{grpc}"),
        ])
        .arg(&python)
        .arg(fixture("sdk_app.py"))
        .arg("grpc")
        .output()
        .unwrap();
    assert_success(&out);
    let traces = jaeger.wait_traces("viewer-same", 3);
    let trace_id = traces[0]["traceID"].as_str().unwrap().to_string();
    wait_spans(&server, ui, 3);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let window = format!("start={}&end={}", now - 3_600_000_000, now + 3_600_000_000);
    let paths = [
        "/api/services".to_string(),
        "/api/services/viewer-same/operations".to_string(),
        "/api/operations?service=viewer-same".to_string(),
        format!("/api/traces?service=viewer-same&{window}&limit=20"),
        format!("/api/traces?service=viewer-same&operation=work&{window}"),
        format!("/api/traces?service=viewer-same&operation=nothing&{window}"),
        format!("/api/traces?service=viewer-same&tags=%7B%22exporter%22%3A%22grpc%22%7D&{window}"),
        format!("/api/traces?service=viewer-same&minDuration=1h&{window}"),
        format!("/api/traces/{trace_id}"),
        "/api/traces/0123456789abcdef0123456789abcdef".to_string(),
        "/api/traces?limit=1".to_string(),
    ];
    for path in &paths {
        let theirs = get_json(jaeger.query, path);
        let ours = get_json(ui, path);
        let operations = path.contains("operations");
        let (mut theirs, mut ours) = (normalized(&theirs), normalized(&ours));
        if operations {
            // Jaeger lists operations in no documented order.
            for v in [&mut theirs, &mut ours] {
                if let Some(list) = v["data"].as_array_mut() {
                    list.sort_by_key(Value::to_string);
                }
            }
        }
        assert_eq!(ours, theirs, "{path}");
        assert_eq!(
            http_get(ui, path),
            http_get(jaeger.query, path),
            "{path}: status"
        );
    }
    // Something was compared: the trace holds the process span and the program's two.
    let trace = get_json(ui, &format!("/api/traces/{trace_id}"));
    assert_eq!(trace["data"][0]["spans"].as_array().unwrap().len(), 3);
}

/// `--max-spans 5`: a third trace of two spans evicts the oldest whole, and
/// the summary counts it; the API no longer finds it.
#[test]
fn a_full_store_evicts_the_oldest_whole_trace_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ui) = (free_port(), free_port());
    let mut cmd = viewer_agent(grpc, ui);
    cmd.args(["--max-spans", "5"]);
    let server = Server::start(cmd, ui, dir.path());
    for (trace, spans) in [(1u8, 2u8), (2, 2), (3, 2)] {
        assert_eq!(post_json(grpc, "/v1/traces", &trace_request(trace, 2)), 200);
        let held = if trace == 3 {
            4
        } else {
            u64::from(trace * spans)
        };
        wait_spans(&server, ui, held);
    }
    let s = summary(ui);
    assert_eq!(
        (s["traces"].as_u64(), s["evicted_traces"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(s["evicted_spans"], 2, "{s}");
    assert_eq!(s["received_spans"], 6, "{s}");
    assert_eq!(s["max_spans"], 5, "{s}");
    assert_eq!(http_get(ui, &format!("/api/traces/{:032x}", 1)), 404);
    assert_eq!(http_get(ui, &format!("/api/traces/{:032x}", 3)), 200);
}

/// `--store PATH`: a trace received before a restart is answered after it.
#[test]
fn a_restart_with_a_store_file_keeps_the_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("traces.otel-run");
    let start = |dir: &Path| {
        let (grpc, ui) = (free_port(), free_port());
        let mut cmd = viewer_agent(grpc, ui);
        cmd.arg("--store").arg(&store);
        (Server::start(cmd, ui, dir), grpc, ui)
    };
    let first = tempfile::tempdir().unwrap();
    let (mut server, grpc, ui) = start(first.path());
    assert_eq!(post_json(grpc, "/v1/traces", &trace_request(9, 3)), 200);
    wait_spans(&server, ui, 3);
    let before = get_json(ui, &format!("/api/traces/{:032x}", 9));
    let status = server.terminate(false).expect("the agent exits at SIGTERM");
    assert!(status.success(), "{}", server.stderr_text());

    let second = tempfile::tempdir().unwrap();
    let (server, _, ui) = start(second.path());
    let after = get_json(ui, &format!("/api/traces/{:032x}", 9));
    assert_eq!(
        normalized(&after),
        normalized(&before),
        "{}",
        server.stderr_text()
    );
    assert_eq!(summary(ui)["spans"], 3);
}

/// `otel-run --ui -- COMMAND` with stdout not a terminal: the address is said
/// once, and otel-run ends with the command, with its exit code.
#[test]
fn a_run_with_the_ui_ends_with_its_command_when_stdout_is_no_terminal() {
    let ui = free_port();
    let out = otel_run()
        .args(["--ui", "--ui-listen", &format!("127.0.0.1:{ui}")])
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let said = format!("the trace viewer is on http://127.0.0.1:{ui}");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    assert!(!err.contains("until Ctrl-C"), "{err}");
}

/// `--ui` with an explicit OTLP exporter that points at the agent's own
/// address is still refused: the viewer does not make a loop acceptable.
#[test]
fn the_ui_still_refuses_an_exporter_that_loops_back() {
    let (grpc, ui) = (free_port(), free_port());
    let out = viewer_agent(grpc, ui)
        .env_remove("OTEL_TRACES_EXPORTER")
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{grpc}"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("this agent's own address"), "{err}");
}

/// `--console-format tree`: the run's trace printed once as a tree, the
/// program's spans under the process span, each with its duration.
#[test]
fn the_tree_console_format_prints_a_trace_as_an_indented_tree() {
    let Some(python) = python() else {
        return;
    };
    let out = otel_run()
        .args(["--traces-exporter", "console", "--console-format", "tree"])
        .args(["--service-name", "tree-app"])
        .arg(&python)
        .arg(fixture("sdk_app.py"))
        .arg("http")
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("trace ") && l.contains("(3 spans, "))
        .unwrap_or_else(|| panic!("no tree of 3 spans: {text}"));
    let tree: BTreeMap<usize, &str> = lines[at + 1..at + 4].iter().copied().enumerate().collect();
    let shape = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(tree[&0].starts_with("└─ python "), "{text}");
    assert!(tree[&0].contains("[tree-app]"), "{text}");
    assert_eq!(shape(tree[&1].trim_start()), "└─ work", "{text}");
    assert!(tree[&2].starts_with("      └─ step "), "{text}");
    for line in tree.values() {
        let last = line.split_whitespace().filter(|w| w.ends_with('s')).count();
        assert!(last > 0, "a duration on each line: {line}");
    }
    assert_eq!(text.matches("└─ python").count(), 1, "printed once: {text}");
}

/// A fixed request with what SDKs rarely send together: every attribute type,
/// an error status, an event, a link, a trace state, two resources. Sent to
/// Jaeger and to the viewer, each path answers the same.
#[test]
fn every_span_field_reads_as_jaeger_writes_it() {
    let Some(jaeger) = Jaeger::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ui) = (free_port(), free_port());
    let server = Server::start(viewer_agent(grpc, ui), ui, dir.path());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let at = |offset_ms: u64| (now + offset_ms * 1_000_000).to_string();
    let trace = "0102030405060708090a0b0c0d0e0f10";
    let request = json!({"resourceSpans": [
        {"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "rich-a"}},
            {"key": "host.name", "value": {"stringValue": "h1"}},
            {"key": "n", "value": {"intValue": "3"}}]},
         "scopeSpans": [{"scope": {"name": "lib", "version": "1.0"}, "spans": [
            {"traceId": trace, "spanId": "1111111111111111", "name": "root", "kind": 2,
             "startTimeUnixNano": at(0), "endTimeUnixNano": at(1000), "traceState": "a=b",
             "attributes": [
                {"key": "s", "value": {"stringValue": "x"}},
                {"key": "i", "value": {"intValue": "42"}},
                {"key": "d", "value": {"doubleValue": 1.5}},
                {"key": "b", "value": {"boolValue": true}},
                {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}}},
                {"key": "by", "value": {"bytesValue": "AQI="}}],
             "status": {"code": 2, "message": "boom"},
             "events": [{"timeUnixNano": at(500), "name": "ev",
                         "attributes": [{"key": "k", "value": {"stringValue": "v"}}]}]},
            {"traceId": trace, "spanId": "2222222222222222", "parentSpanId": "1111111111111111",
             "name": "child", "kind": 1, "startTimeUnixNano": at(100), "endTimeUnixNano": at(200),
             "status": {"code": 1},
             "links": [{"traceId": "0102030405060708090a0b0c0d0e0f11", "spanId": "3333333333333333"}]}]}]},
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rich-b"}}]},
         "scopeSpans": [{"scope": {"name": "other"}, "spans": [
            {"traceId": trace, "spanId": "4444444444444444", "parentSpanId": "2222222222222222",
             "name": "leaf", "kind": 3, "startTimeUnixNano": at(120), "endTimeUnixNano": at(150)}]}]}]});
    assert_eq!(post_json(jaeger.http, "/v1/traces", &request), 200);
    assert_eq!(post_json(grpc, "/v1/traces", &request), 200);
    jaeger.wait_traces("rich-a", 3);
    wait_spans(&server, ui, 3);
    let micros = now / 1000;
    let window = format!("start={}&end={}", micros - 60_000_000, micros + 60_000_000);
    for path in [
        format!("/api/traces/{trace}"),
        format!("/api/traces?service=rich-b&{window}"),
        format!("/api/traces?service=rich-a&tags=%7B%22error%22%3A%22true%22%7D&{window}"),
        format!("/api/traces?service=rich-a&tags=%7B%22host.name%22%3A%22h1%22%7D&{window}"),
        format!("/api/traces?service=rich-a&minDuration=500ms&maxDuration=2s&{window}"),
        format!("/api/traces?service=rich-a&operation=child&minDuration=500ms&{window}"),
    ] {
        let (ours, theirs) = (get_json(ui, &path), get_json(jaeger.query, &path));
        assert_eq!(normalized(&ours), normalized(&theirs), "{path}");
    }
}

/// Logs are found by their trace, a sum's points make its latest value and
/// history, and every path outside `/api/` is the UI's page.
#[test]
fn logs_metrics_and_the_ui_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ui) = (free_port(), free_port());
    let server = Server::start(viewer_agent(grpc, ui), ui, dir.path());
    let trace = format!("{:032x}", 5);
    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "logger"}}]},
        "scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
            {"timeUnixNano": "1000000", "severityText": "WARN", "severityNumber": 13,
             "body": {"stringValue": "disk almost full"}, "traceId": trace, "spanId": format!("{:016x}", 1),
             "attributes": [{"key": "disk", "value": {"stringValue": "/dev/sda"}}]},
            {"timeUnixNano": "2000000", "body": {"stringValue": "no trace"}}]}]}]});
    assert_eq!(post_json(grpc, "/v1/logs", &logs), 200);
    for value in [1u32, 4] {
        let sum = json!({"resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "counter"}}]},
            "scopeMetrics": [{"scope": {"name": "app"}, "metrics": [{"name": "requests", "unit": "1",
                "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                    {"timeUnixNano": (u64::from(value) * 1_000_000).to_string(), "asInt": value.to_string()}]}}]}]}]});
        assert_eq!(post_json(grpc, "/v1/metrics", &sum), 200);
    }
    let found = wait_for(Duration::from_secs(20), || {
        let logs = get_json(ui, &format!("/api/otel-run/logs?traceID={trace}"));
        let metrics = get_json(ui, "/api/otel-run/metrics");
        let history = metrics["data"][0]["series"][0]["history"]
            .as_array()
            .map_or(0, Vec::len);
        (logs["data"].as_array().is_some_and(|l| !l.is_empty()) && history == 2)
            .then_some((logs, metrics))
    });
    let (logs, metrics) =
        found.unwrap_or_else(|| panic!("nothing stored: {}", server.stderr_text()));
    let [log] = &logs["data"].as_array().unwrap()[..] else {
        panic!("the trace's one log: {logs:#}");
    };
    assert_eq!(log["body"], "disk almost full");
    assert_eq!(log["severityText"], "WARN");
    assert_eq!(log["serviceName"], "logger");
    assert_eq!(log["attributes"]["disk"], "/dev/sda");
    let untraced = get_json(ui, "/api/otel-run/logs");
    assert_eq!(untraced["data"][0]["body"], "no trace", "{untraced:#}");
    let metric = &metrics["data"][0];
    assert_eq!(
        (&metric["name"], &metric["type"], &metric["service"]),
        (&json!("requests"), &json!("sum"), &json!("counter"))
    );
    assert_eq!(metric["series"][0]["value"], 4.0);
    assert_eq!(
        metric["series"][0]["history"],
        json!([[1000, 1.0], [4000, 4.0]])
    );

    let page = http_get_body(ui, "/");
    assert!(
        page.to_ascii_lowercase().starts_with("<!doctype html"),
        "{page}"
    );
    assert_eq!(
        http_get_body(ui, "/trace/abc"),
        page,
        "a UI route is its page"
    );
    assert_eq!(http_get(ui, "/api/nothing"), 404);
}

/// `otel-run --ui -- COMMAND` at a terminal: after the command exits the
/// viewer stays, said once, until Ctrl-C; then the exit code is the command's.
#[test]
fn at_a_terminal_the_viewer_stays_after_the_command_until_ctrl_c() {
    if crate::util::tool("script").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("otel-run.pid");
    let ui = free_port();
    let line = format!(
        "{} --ui --ui-listen 127.0.0.1:{ui} -- sh -c 'echo $PPID > {}; exit 4'; echo after-$?",
        crate::util::BIN,
        pid_file.display()
    );
    let mut child = Command::new("script")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .args(["-qfec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                printed
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let text = || printed.lock().unwrap().clone();
    let stays = wait_for(Duration::from_secs(30), || {
        text().contains("until Ctrl-C").then_some(())
    });
    assert!(stays.is_some(), "{}", text());
    assert_eq!(http_get(ui, "/api/otel-run/summary"), 200, "still served");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let ended = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
    reader.join().unwrap();
    let out = text().replace('\r', "");
    assert!(ended.is_some(), "{out}");
    assert!(out.contains("after-4"), "{out}");
    assert_eq!(out.matches("the trace viewer is on").count(), 1, "{out}");
}
