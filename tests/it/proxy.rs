//! The HTTP sidecar proxy: real clients (curl, raw sockets, Python requests)
//! through `otel-run --proxy` / `--egress-proxy` to a real upstream (Python's
//! http.server), asserting the spans, what the upstream saw, and the metric.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    Collector, ConsoleFile, Server, apps_python, assert_success, attr, fixture, free_port,
    otel_run, span_named, tool,
};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The upstream fixture as a command.
fn upstream(python: &Path, port: u16) -> Command {
    let mut command = Command::new(python);
    command
        .arg(fixture("proxy_upstream.py"))
        .arg(port.to_string());
    command
}

/// `otel-run ARGS -- python3 proxy_upstream.py PORT`, up and listening; the
/// proxy listens on the returned port.
struct Proxied {
    server: Server,
    proxy: u16,
    _dir: tempfile::TempDir,
}

fn proxied(python: &Path, args: &[&str]) -> Proxied {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, up) = (free_port(), free_port());
    let mut command = otel_run();
    command
        .args(["--proxy", &format!("{proxy}={up}")])
        .args(args)
        .arg("--")
        .arg(python)
        .arg(fixture("proxy_upstream.py"))
        .arg(up.to_string());
    let server = Server::start(command, up, dir.path());
    Proxied {
        server,
        proxy,
        _dir: dir,
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

fn python3() -> Option<PathBuf> {
    tool("python3")
}

/// The SERVER spans the proxy wrote.
fn server_spans(console: &ConsoleFile) -> Vec<Value> {
    console
        .spans()
        .into_iter()
        .filter(|s| s["kind"] == "SpanKind.SERVER")
        .collect()
}

#[test]
fn reverse_proxy_records_a_server_span_per_request_and_propagates_context() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let mut flags = console.flags().to_vec();
    flags.extend(["--route", "/users/{id}", "--route", "/users/{id}/orders"]);
    let mut run = proxied(&python, &flags);
    let base = format!("http://127.0.0.1:{}", run.proxy);

    // Keep-alive: the second request reuses the first one's connection.
    let seen = curl(&[
        "-H",
        &format!("traceparent: {PARENT}"),
        "-H",
        "baggage: tenant=acme",
        "-A",
        "proxy-test/1.0",
        "-w",
        "\n%{num_connects}\n",
        &format!("{base}/users/42?sig=secret&page=2"),
        "-w",
        "\n%{num_connects}\n",
        &format!("{base}/plain"),
    ]);
    let mut lines = seen.lines();
    let first: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(lines.next(), Some("1"));
    let second: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(lines.next(), Some("0"), "the connection was not kept alive");

    // A chunked upload streams through; so does a chunked response.
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), vec![b'x'; 1 << 20]).unwrap();
    let posted: Value = serde_json::from_str(&curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", upload.path().display()),
        &format!("{base}/upload"),
    ]))
    .unwrap();
    assert_eq!(posted["body_bytes"], 1 << 20);
    assert_eq!(curl(&[&format!("{base}/stream")]), "one,two,three");
    run.server.stop();

    let spans = server_spans(&console);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let users = span_named(&spans, "GET /users/{id}");
    assert_eq!(
        users["context"]["trace_id"],
        "0x4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(users["parent_id"], "0x00f067aa0ba902b7");
    for (key, value) in [
        ("http.request.method", Value::from("GET")),
        ("url.path", "/users/42".into()),
        ("url.query", "sig=REDACTED&page=2".into()),
        ("url.scheme", "http".into()),
        ("http.route", "/users/{id}".into()),
        ("http.response.status_code", 200.into()),
        ("server.address", "127.0.0.1".into()),
        ("server.port", run.proxy.into()),
        ("client.address", "127.0.0.1".into()),
        ("network.protocol.version", "1.1".into()),
        ("user_agent.original", "proxy-test/1.0".into()),
    ] {
        assert_eq!(attr(users, key), &value, "{key}: {users:#?}");
    }
    assert_eq!(users["status"]["status_code"], "UNSET");
    // The upstream continues the proxy's span, and baggage passes through.
    let span_id = users["context"]["span_id"].as_str().unwrap();
    assert_eq!(
        first["headers"]["traceparent"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", &span_id[2..])
    );
    assert_eq!(first["headers"]["baggage"], "tenant=acme");
    // No route matches: the name is the method alone, never the raw path.
    let plain = span_named(&spans, "GET");
    assert_eq!(attr(plain, "url.path"), "/plain");
    assert!(attr(plain, "http.route").is_null());
    assert_eq!(second["headers"]["baggage"], "tenant=acme");
    // Without a traceparent a request starts its own trace, not the process span's.
    let process = console
        .spans()
        .into_iter()
        .find(|s| s["kind"] == "SpanKind.INTERNAL")
        .expect("the process span");
    let upload = span_named(&spans, "POST");
    assert!(upload["parent_id"].is_null(), "{upload:#?}");
    assert_ne!(
        upload["context"]["trace_id"],
        process["context"]["trace_id"]
    );
    let upload_trace = upload["context"]["trace_id"].as_str().unwrap();
    assert!(
        posted["headers"]["traceparent"]
            .as_str()
            .unwrap()
            .contains(&upload_trace[2..])
    );
    assert_eq!(attr(upload, "http.request.body.size"), 1 << 20);
    let streamed = spans
        .iter()
        .find(|s| attr(s, "url.path") == "/stream")
        .unwrap();
    assert_eq!(attr(streamed, "http.response.body.size"), 13);
}

#[test]
fn b3_propagation_continues_and_injects_b3() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let mut flags = console.flags().to_vec();
    flags.extend(["--propagators", "b3"]);
    let mut run = proxied(&python, &flags);
    let seen: Value = serde_json::from_str(&curl(&[
        "-H",
        "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        &format!("http://127.0.0.1:{}/b3", run.proxy),
    ]))
    .unwrap();
    run.server.stop();
    let spans = server_spans(&console);
    let span = span_named(&spans, "GET");
    assert_eq!(
        span["context"]["trace_id"],
        "0x80f198ee56343ba864fe8b2a57d3eff7"
    );
    assert_eq!(span["parent_id"], "0xe457b5a2e4d86bd1");
    let span_id = &span["context"]["span_id"].as_str().unwrap()[2..];
    assert_eq!(
        seen["headers"]["b3"],
        format!("80f198ee56343ba864fe8b2a57d3eff7-{span_id}-1")
    );
    assert!(seen["headers"].get("traceparent").is_none());
}

#[test]
fn duration_metric_and_spans_arrive_at_the_collector() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let Some(collector) = Collector::start() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    let mut run = proxied(
        &python,
        &[
            "--traces-exporter",
            "otlp",
            "--metrics-exporter",
            "otlp",
            "--exporter-otlp-endpoint",
            &endpoint,
            "--metric-export-interval",
            "500",
            "--service-name",
            "proxied-api",
            "--route",
            "/items/{id}",
        ],
    );
    let base = format!("http://127.0.0.1:{}", run.proxy);
    for path in ["/items/1", "/items/2", "/items/3", "/fail"] {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", &format!("{base}{path}")])
            .status()
            .unwrap();
    }
    // Exported periodically, while the command still runs.
    let histogram = crate::util::wait_for(Duration::from_secs(15), || {
        histogram_points(&collector.raw_output()).filter(|points| {
            points
                .iter()
                .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
                == 4
        })
    })
    .expect("no http.server.request.duration at the collector");
    run.server.stop();
    let ok = histogram
        .iter()
        .find(|p| point_attr(p, "http.route").as_deref() == Some("/items/{id}"))
        .expect("a point for the route");
    assert_eq!(ok["count"], "3");
    assert_eq!(
        point_attr(ok, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        point_attr(ok, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(ok["explicitBounds"].as_array().unwrap().len(), 14);
    assert_eq!(ok["explicitBounds"][0], 0.005);
    let failed = histogram
        .iter()
        .find(|p| point_attr(p, "http.response.status_code").as_deref() == Some("500"))
        .expect("a point for the 500");
    assert_eq!(point_attr(failed, "error.type").as_deref(), Some("500"));

    let spans = collector.wait_spans(5);
    let server: Vec<_> = spans.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(server.len(), 4, "{spans:#?}");
    let item = server
        .iter()
        .find(|s| s["name"] == "GET /items/{id}")
        .unwrap();
    assert_eq!(item["resource"]["service.name"], "proxied-api");
    assert_eq!(item["scope"], "otel-run/proxy");
    let fail = server
        .iter()
        .find(|s| s["attributes"]["url.path"] == "/fail")
        .unwrap();
    assert_eq!(fail["status"]["code"], 2, "5xx is an error: {fail:#?}");
}

/// The data points of `http.server.request.duration` in the collector's output.
/// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta: each export of the
/// duration histogram counts only the requests since the previous one.
#[test]
fn a_delta_preference_makes_the_duration_histogram_count_since_the_last_export() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let Some(collector) = Collector::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, up) = (free_port(), free_port());
    let mut command = otel_run();
    command
        .env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
        .args(["--proxy", &format!("{proxy}={up}")])
        .args(["--traces-exporter", "none", "--metrics-exporter", "otlp"])
        .args(["--metric-export-interval", "300"])
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{}", collector.grpc),
        ])
        .arg("--")
        .arg(&python)
        .arg(fixture("proxy_upstream.py"))
        .arg(up.to_string());
    let mut server = Server::start(command, up, dir.path());
    let url = format!("http://127.0.0.1:{proxy}/items/1");
    // (temporality, requests counted) of each export.
    let histograms = |output: &str| -> Vec<(i64, u64)> {
        duration_histograms(output)
            .iter()
            .map(|h| {
                let points = h["dataPoints"].as_array().into_iter().flatten();
                let count = points
                    .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
                    .sum();
                (h["aggregationTemporality"].as_i64().unwrap(), count)
            })
            .collect()
    };
    for _ in 0..3 {
        curl(&["-o", "/dev/null", &url]);
    }
    crate::util::wait_for(Duration::from_secs(15), || {
        (!histograms(&collector.raw_output()).is_empty()).then_some(())
    })
    .expect("no http.server.request.duration at the collector");
    curl(&["-o", "/dev/null", &url]);
    let exports = crate::util::wait_for(Duration::from_secs(15), || {
        let exports = histograms(&collector.raw_output());
        (exports.iter().map(|(_, n)| n).sum::<u64>() == 4).then_some(exports)
    })
    .unwrap_or_else(|| panic!("{:?}", histograms(&collector.raw_output())));
    server.stop();
    // 1 is AGGREGATION_TEMPORALITY_DELTA; cumulative exports would sum to 3 + 4.
    assert!(exports.iter().all(|(t, _)| *t == 1), "{exports:?}");
    assert!(exports.len() >= 2, "{exports:?}");
}

/// Every export of `http.server.request.duration` the collector printed, oldest first.
fn duration_histograms(output: &str) -> Vec<Value> {
    let complete = output.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    let mut found = Vec::new();
    for data in complete.filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        for rm in data["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for metric in sm["metrics"].as_array().into_iter().flatten() {
                    if metric["name"] == "http.server.request.duration" {
                        assert_eq!(metric["unit"], "s");
                        found.push(metric["histogram"].clone());
                    }
                }
            }
        }
    }
    found
}

/// The data points of the latest export.
fn histogram_points(output: &str) -> Option<Vec<Value>> {
    duration_histograms(output).pop()?["dataPoints"]
        .as_array()
        .cloned()
}

/// A data point's attribute as text (int64 values are strings in OTLP/JSON).
fn point_attr(point: &Value, key: &str) -> Option<String> {
    let kv = point["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?;
    let value = &kv["value"];
    value
        .get("stringValue")
        .or(value.get("intValue"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[test]
fn upstream_down_is_502_and_upstream_slow_is_504() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let closed = free_port();
    let down = free_port();
    let mut flags = console.flags().to_vec();
    let mapping = format!("{down}=127.0.0.1:{closed}");
    flags.extend(["--proxy", &mapping, "--proxy-timeout", "300"]);
    let mut run = proxied(&python, &flags);
    let status = |url: String| curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(status(format!("http://127.0.0.1:{down}/")), "502");
    let started = Instant::now();
    assert_eq!(
        status(format!("http://127.0.0.1:{}/slow?ms=3000", run.proxy)),
        "504"
    );
    assert!(started.elapsed() < Duration::from_millis(2900));
    // The proxy is still serving.
    assert_eq!(status(format!("http://127.0.0.1:{}/ok", run.proxy)), "200");
    run.server.stop();
    let spans = server_spans(&console);
    let bad_gateway = spans
        .iter()
        .find(|s| attr(s, "http.response.status_code") == 502)
        .unwrap();
    assert_eq!(bad_gateway["status"]["status_code"], "ERROR");
    assert_eq!(attr(bad_gateway, "error.type"), "502");
    assert!(
        bad_gateway["status"]["description"]
            .as_str()
            .unwrap()
            .contains("upstream unreachable"),
        "{bad_gateway:#?}"
    );
    let timeout = spans
        .iter()
        .find(|s| attr(s, "http.response.status_code") == 504)
        .unwrap();
    assert_eq!(timeout["status"]["status_code"], "ERROR");
    assert_eq!(attr(timeout, "url.path"), "/slow");
}

/// Sends raw bytes to the proxy and returns what came back before it closed
/// (or 5 s passed).
fn raw(port: u16, request: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    (
        String::from_utf8_lossy(&response).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn malformed_oversized_and_slow_requests_are_refused_and_the_proxy_lives_on() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let mut flags = console.flags().to_vec();
    flags.extend([
        "--proxy-header-timeout",
        "300",
        "--proxy-max-header-bytes",
        "16384",
    ]);
    let mut run = proxied(&python, &flags);
    // An HTTP/1.0 request without Host still reaches the HTTP/1.1 upstream.
    let (response, _) = raw(run.proxy, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(response.contains(" 200 OK"), "{response}");
    assert!(response.contains("\"host\": \"127.0.0.1:"), "{response}");
    let (response, _) = raw(run.proxy, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (response, _) = raw(run.proxy, big.as_bytes());
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    // A client that never finishes its headers is cut off.
    let (response, took) = raw(run.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(took < Duration::from_secs(4), "kept {took:?}: {response}");
    // Many half-open connections at once do not stop the others.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", run.proxy)).unwrap())
        .collect();
    let ok = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{}/", run.proxy),
    ]);
    assert_eq!(ok, "200");
    drop(idle);
    run.server.stop();
    // A refused request whose request line could be read still has its span.
    let spans = server_spans(&console);
    let status = |code: i64| {
        spans
            .iter()
            .find(|s| attr(s, "http.response.status_code") == code)
            .unwrap_or_else(|| panic!("no span with status {code}: {spans:#?}"))
    };
    for code in [431, 408] {
        let span = status(code);
        assert_eq!(attr(span, "url.path"), "/");
        assert_eq!(
            span["status"]["status_code"], "UNSET",
            "a 4xx is the client's"
        );
    }
    // No request line, no span: the request that was not HTTP.
    assert!(
        spans
            .iter()
            .all(|s| attr(s, "http.response.status_code") != 400)
    );
}

/// Reads one response with a Content-Length body off a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

#[test]
fn upstream_connections_closed_unannounced_and_pipelined_requests_are_served() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let mut run = proxied(&python, &console.flags());
    let base = format!("http://127.0.0.1:{}", run.proxy);
    // After /bye the upstream closes the connection the proxy keeps for this
    // client: the next requests go on a new one, unnoticed by the client.
    let codes = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}/%{num_connects} ",
        &format!("{base}/bye"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}/%{num_connects} ",
        &format!("{base}/after-bye"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}/%{num_connects} ",
        &format!("{base}/bye"),
    ]);
    // (curl applies the last -w to every URL.)
    assert_eq!(codes.trim_end(), "200/1 200/0 200/0");
    // A POST cannot be sent twice: the closed connection is noticed before it is used.
    let mut stream = TcpStream::connect(("127.0.0.1", run.proxy)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for path in ["/bye", "/after-bye"] {
        let request = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
        stream.write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut stream);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"body_bytes\": 2"), "{response}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Two requests in one write (pipelining) are answered in order.
    let (response, _) = raw(
        run.proxy,
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let first = response.find("\"path\": \"/first\"").expect(&response);
    let second = response.find("\"path\": \"/second\"").expect(&response);
    assert!(first < second);
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    run.server.stop();
    let spans = server_spans(&console);
    assert_eq!(spans.len(), 7, "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| attr(s, "http.response.status_code") == 200)
    );
}

#[test]
fn early_answers_and_broken_request_bodies_end_the_exchange_at_once() {
    let Some(python) = python3() else {
        return;
    };
    let run = proxied(&python, &[]);
    // The upstream answers before it has read the body: the client gets the
    // answer (not a reset) while still sending, and is told the connection ends.
    let mut stream = TcpStream::connect(("127.0.0.1", run.proxy)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n")
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..8 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let response = read_response(&mut stream).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 413"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    // A chunked body that breaks off into garbage is a 400 now, not a 504
    // after the upstream timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", run.proxy)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b"zz\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// How many requests the upstream has been sent, this one included.
fn upstream_requests(proxy: u16) -> u64 {
    let (response, _) = raw(
        proxy,
        b"GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let body = &response[response.find("\r\n\r\n").expect("a response") + 4..];
    let seen: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{response}"));
    seen["requests"].as_u64().unwrap()
}

#[test]
fn a_request_with_two_transfer_encodings_is_refused_before_the_upstream() {
    let Some(python) = python3() else {
        return;
    };
    let run = proxied(&python, &[]);
    let before = upstream_requests(run.proxy);
    // An upstream that reads the first line (`identity`) takes the chunked body
    // for the next request: the way a request is smuggled past the proxy.
    let (response, _) = raw(
        run.proxy,
        b"POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\
          Transfer-Encoding: chunked\r\n\r\n\
          23\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(
        upstream_requests(run.proxy),
        before + 1,
        "only the counting requests reached the upstream"
    );
}

/// A masked client frame (RFC 6455 §5.2) with a short payload.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn websocket_upgrades_pass_through_as_one_span() {
    let Some(python) = python3() else {
        return;
    };
    let console = ConsoleFile::new();
    let mut run = proxied(&python, &console.flags());
    let mut stream = TcpStream::connect(("127.0.0.1", run.proxy)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The handshake of RFC 6455 §1.3, whose accept value is known.
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for message in ["hello", "over the websocket"] {
        stream.write_all(&ws_frame(1, message.as_bytes())).unwrap();
        let mut echoed = vec![0u8; 2 + message.len()];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed[0], 0x81);
        assert_eq!(&echoed[2..], message.as_bytes());
    }
    stream.write_all(&ws_frame(8, b"")).unwrap();
    let mut close = [0u8; 2];
    stream.read_exact(&mut close).unwrap();
    assert_eq!(close[0], 0x88);
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    run.server.stop();
    let spans = server_spans(&console);
    assert_eq!(
        spans.len(),
        1,
        "one span for the whole connection: {spans:#?}"
    );
    assert_eq!(attr(&spans[0], "http.response.status_code"), 101);
    // Both messages and the close frame, as sent by the client.
    assert_eq!(attr(&spans[0], "http.request.body.size"), 6 * 3 + 5 + 18);
}

#[test]
fn http2_clients_are_served_over_h2c() {
    let (Some(python), Some(_)) = (python3(), tool("curl")) else {
        return;
    };
    let console = ConsoleFile::new();
    let mut run = proxied(&python, &console.flags());
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &format!("http://127.0.0.1:{}/h2?x=1", run.proxy),
    ]);
    let (body, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let seen: Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["path"], "/h2?x=1");
    run.server.stop();
    let spans = server_spans(&console);
    assert_eq!(attr(&spans[0], "network.protocol.version"), "2");
    assert_eq!(attr(&spans[0], "url.query"), "x=1");
}

#[test]
fn a_bad_mapping_is_a_usage_error_naming_the_flag() {
    let out = otel_run()
        .args(["--proxy", "8080", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`--proxy`"), "{stderr}");
    assert!(stderr.contains("LISTEN=UPSTREAM"), "{stderr}");
    let out = otel_run()
        .env("OTEL_RUN_PROXY_ROUTES", "users/{id}")
        .args(["--proxy", "8080=5000", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OTEL_RUN_PROXY_ROUTES"));
}

#[test]
fn a_taken_port_is_a_warning_and_the_command_still_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = otel_run()
        .args([
            "--proxy",
            &format!("{port}=5000"),
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("cannot listen").count(), 1, "{stderr}");
}

#[test]
fn egress_proxy_records_client_spans_under_the_process_span() {
    let (Some(python), Some(apps), Some(_)) = (python3(), apps_python(), tool("curl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _upstream = Server::start(upstream(&python, port), port, dir.path());
    let console = ConsoleFile::new();
    let script = format!(
        r#"
import os, json, subprocess, requests
r = requests.get("http://127.0.0.1:{port}/out?sig=s3cret")
print(json.dumps({{"status": r.status_code, "seen": r.json(), "proxy": os.environ["HTTP_PROXY"], "no_proxy": os.environ["NO_PROXY"], "agent": os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]}}))
# CONNECT, as for https: a tunnel the proxy does not look into.
subprocess.run(["curl", "-sS", "-o", "/dev/null", "--proxytunnel", "http://127.0.0.1:{port}/tunnelled"], check=True)
# Not an open reverse proxy: a request without a host is refused.
print(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{{http_code}}", "--noproxy", "*", os.environ["HTTP_PROXY"] + "/"], capture_output=True, text=True).stdout)
"#
    );
    let out = otel_run()
        .args(console.flags())
        // The program has no SDK of its own: the proxy's span is the only one.
        .args(["--egress-proxy", "--no-inject", "--span-name", "job", "--"])
        .arg(&apps)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let report: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(report["status"], 200);
    assert!(
        report["proxy"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(lines.next(), Some("400"));
    // The command's own telemetry goes straight to the agent.
    let agent = report["agent"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://");
    assert!(
        report["no_proxy"].as_str().unwrap().contains(agent),
        "{report:#?}"
    );

    let spans = console.spans();
    let process = span_named(&spans, "job");
    let get = span_named(&spans, "GET");
    assert_eq!(get["kind"], "SpanKind.CLIENT");
    assert_eq!(get["parent_id"], process["context"]["span_id"]);
    assert_eq!(get["context"]["trace_id"], process["context"]["trace_id"]);
    assert_eq!(
        attr(get, "url.full"),
        &Value::from(format!("http://127.0.0.1:{port}/out?sig=REDACTED"))
    );
    assert_eq!(attr(get, "server.address"), "127.0.0.1");
    assert_eq!(attr(get, "server.port"), port);
    assert_eq!(attr(get, "http.response.status_code"), 200);
    let span_id = &get["context"]["span_id"].as_str().unwrap()[2..];
    assert!(
        report["seen"]["headers"]["traceparent"]
            .as_str()
            .unwrap()
            .contains(span_id),
        "{report:#?}"
    );
    let tunnel = span_named(&spans, "CONNECT");
    assert_eq!(tunnel["kind"], "SpanKind.CLIENT");
    assert_eq!(attr(tunnel, "server.port"), port);
    assert!(attr(tunnel, "http.response.body.size").as_i64().unwrap() > 0);
}

#[test]
fn egress_https_goes_through_a_connect_tunnel_untouched() {
    let (Some(python), Some(openssl), Some(_)) = (python3(), tool("openssl"), tool("curl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert_success(&made);
    let port = free_port();
    let server = format!(
        r#"
import http.server, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain({cert:?}, {key:?})
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"secret over tls"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#
    );
    let mut tls = Command::new(&python);
    tls.args(["-c", &server]);
    let _tls = Server::start(tls, port, dir.path());
    let console = ConsoleFile::new();
    // curl checks the server's own certificate: the proxy cannot have looked inside.
    let out = otel_run()
        .args(console.flags())
        .args(["--egress-proxy", "--", "curl", "-sS", "--cacert"])
        .arg(&cert)
        .arg(format!("https://localhost:{port}/private?token=t"))
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret over tls");
    let spans = console.spans();
    let tunnel = span_named(&spans, "CONNECT");
    assert_eq!(tunnel["kind"], "SpanKind.CLIENT");
    assert_eq!(attr(tunnel, "server.address"), "localhost");
    assert_eq!(attr(tunnel, "server.port"), port);
    assert_eq!(attr(tunnel, "http.request.method"), "CONNECT");
    // Nothing of the encrypted request (its path) is known, so none is recorded.
    assert!(attr(tunnel, "url.full").is_null());
    assert_eq!(
        spans
            .iter()
            .filter(|s| s["kind"] == "SpanKind.CLIENT")
            .count(),
        1
    );
}

#[test]
fn proxies_are_configured_in_otel_run_toml_too() {
    let Some(_) = tool("curl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (port, closed) = (free_port(), free_port());
    let config = dir.path().join("otel-run.toml");
    std::fs::write(
        &config,
        format!("proxy = \"{port}=127.0.0.1:{closed}\"\nproxy_timeout = 2000\n"),
    )
    .unwrap();
    // Nothing listens upstream: the proxy from the file answers 502.
    let out = otel_run()
        .arg("--config")
        .arg(&config)
        .args(["--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
}
