//! The agent as a forwarder: spans a program sends in OTLP/protobuf reach the
//! backend as they were sent (the agent passes them on without decoding them),
//! what is not valid OTLP is refused rather than passed on, and what the agent
//! answered 200 to is never dropped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;

use crate::util::{Collector, Server, free_port, otel_run, wait_for};

/// `otel-run agent` forwarding to `collector` over gRPC; its receiver's port.
fn agent(collector: &Collector, dir: &Path, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = otel_run();
    cmd.envs(env.iter().copied())
        .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--traces-exporter", "otlp", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc));
    Server::start(cmd, port, dir)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// `n` spans of `service` named `{prefix}-{i}`, with attributes as an HTTP
/// server's; the `i`th has span id `i`.
fn request(service: &str, prefix: &str, n: usize) -> ExportTraceServiceRequest {
    let span = |i: usize| Span {
        trace_id: [7; 16].to_vec(),
        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
        name: format!("{prefix}-{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        end_time_unix_nano: 1_700_000_000_001_000_000 + i as u64,
        attributes: vec![
            kv("http.request.method", Value::StringValue("GET".into())),
            kv(
                "url.path",
                Value::StringValue(format!("/users/{i}/ünïcode")),
            ),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("server.port", Value::IntValue(8080)),
        ],
        status: Some(Status {
            message: String::new(),
            code: 1,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POSTs an OTLP/protobuf body to `/v1/traces`: the status and Retry-After.
fn post(port: u16, body: &[u8]) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let retry_after = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(str::to_string)
        })
        .map(|v| v.trim().to_string());
    (status, retry_after)
}

#[test]
fn spans_reach_the_collector_as_sent_and_a_request_that_is_not_utf8_is_refused() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = agent(&collector, dir.path(), &[]);
    let before = request("svc-a", "before", 3).encode_to_vec();
    let after = request("svc-b", "after", 2).encode_to_vec();
    // A span name whose first byte is not UTF-8, in a request otherwise valid.
    let mut bad = request("svc-c", "bad", 2).encode_to_vec();
    let at = bad.windows(5).position(|w| w == b"bad-1").unwrap();
    bad[at] = 0xff;
    assert_eq!(post(server.port, &before).0, 200);
    assert_eq!(post(server.port, &bad).0, 400, "refused, not forwarded");
    assert_eq!(post(server.port, &after).0, 200);

    let spans = collector.wait_spans(5);
    let mut names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["after-0", "after-1", "before-0", "before-1", "before-2"]
    );
    for span in &spans {
        let name = span["name"].as_str().unwrap();
        let (prefix, i) = name.split_once('-').unwrap();
        let service = if prefix == "before" { "svc-a" } else { "svc-b" };
        assert_eq!(span["resource"]["service.name"], service, "{span:#}");
        assert_eq!(span["traceId"], "07".repeat(16), "{span:#}");
        let id: u64 = i.parse::<u64>().unwrap() + 1;
        assert_eq!(span["spanId"], format!("{id:016x}"), "{span:#}");
        assert_eq!(
            span["attributes"],
            serde_json::json!({
                "http.request.method": "GET",
                "url.path": format!("/users/{i}/ünïcode"),
                "http.response.status_code": 200,
                "server.port": 8080,
            }),
            "{span:#}"
        );
        assert_eq!(span["kind"], 2, "{span:#}");
        assert_eq!(span["status"]["code"], 1, "{span:#}");
    }
    server.terminate(false).expect("the agent exits at SIGTERM");
    let stderr = server.stderr_text();
    assert!(stderr.contains("5 spans exported"), "{stderr}");
}

#[test]
fn what_the_agent_answered_200_to_reaches_the_collector_when_its_queue_fills() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A queue of two requests; the backend stops answering, so it fills.
    let mut server = agent(
        &collector,
        dir.path(),
        &[("OTEL_BSP_MAX_QUEUE_SIZE", "1024")],
    );
    collector.pause();
    let requests: Vec<Vec<u8>> = (0..8)
        .map(|r| request("svc", &format!("r{r}"), 512).encode_to_vec())
        .collect();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (r, body) in requests.iter().enumerate() {
        match post(server.port, body) {
            (200, _) => accepted.push(r),
            (429, retry_after) => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused.push(r);
            }
            other => panic!("request {r}: {other:?}"),
        }
    }
    assert!(
        !accepted.is_empty() && !refused.is_empty(),
        "accepted {accepted:?}, refused {refused:?}"
    );
    // The backend is back: what was accepted arrives, and what was refused is
    // sent again, as an SDK told to retry does.
    collector.resume();
    for r in &refused {
        let sent = wait_for(Duration::from_secs(30), || {
            (post(server.port, &requests[*r]).0 == 200).then_some(())
        });
        assert!(sent.is_some(), "request {r} was refused for 30 s");
    }
    let spans = collector.wait_spans(8 * 512);
    assert_eq!(spans.len(), 8 * 512, "each span once");
    for r in 0..8 {
        let name = format!("r{r}-511");
        assert!(spans.iter().any(|s| s["name"] == name), "{name}");
    }
    server.terminate(false).expect("the agent exits at SIGTERM");
    let stderr = server.stderr_text();
    assert!(stderr.contains("4096 spans exported"), "{stderr}");
    assert!(!stderr.contains("dropped"), "{stderr}");
}
