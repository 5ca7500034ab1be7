//! The receiver against clients that would exhaust otel-run: requests that
//! decode to far more than they weigh, bodies that never end, connections that
//! never send, more connections than it may hold, and senders faster than the
//! backend. Each is answered as OTLP says, and otel-run's peak memory stays low.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use prost::Message as _;

use crate::util::{Collector, ConsoleFile, fixture, free_port, otel_run, python, wait_for};

/// otel-run running `sleep`; its receiver's port, and what its command saw.
struct Running {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_with(otel_run(), args)
    }

    fn start_with(mut command: Command, args: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "ulimit -Sn > {d}/limits; ulimit -Hn >> {d}/limits; echo $OTEL_EXPORTER_OTLP_ENDPOINT > {d}/endpoint; exec sleep 60",
            d = dir.path().display()
        );
        let child = command
            .args(args)
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let endpoint = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(dir.path().join("endpoint"))
                .ok()
                .filter(|e| e.ends_with('\n'))
        })
        .expect("the command wrote its endpoint");
        let port = endpoint.trim().rsplit(':').next().unwrap().parse().unwrap();
        Running { child, port, dir }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// otel-run's own peak resident memory (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib / 1024
    }

    /// Stops the command as `kill` would, and returns otel-run's stderr.
    fn stop(mut self) -> String {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let exited = wait_for(Duration::from_secs(30), || self.child.try_wait().unwrap());
        assert!(exited.is_some(), "otel-run did not exit");
        self.file("stderr")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 answer: status, headers (names in lower case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The google.rpc.Status of an error answer.
    fn rpc_status(&self) -> RpcStatus {
        RpcStatus::decode(self.body.as_slice()).expect("a google.rpc.Status body")
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// POSTs a body to `path`, with extra header lines.
fn post(port: u16, path: &str, headers: &str, body: &[u8]) -> Answer {
    let mut stream = connect(port);
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer before reading it all.
    let _ = stream.write_all(body);
    read_answer(&mut stream)
}

const PROTOBUF: &str = "Content-Type: application/x-protobuf\r\n";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An ExportTraceServiceRequest of one resource holding one scope of `spans`.
fn request_of(spans: &[u8]) -> Vec<u8> {
    let mut resource = Vec::new();
    prost::encoding::bytes::encode(2, &spans.to_vec(), &mut resource);
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &resource, &mut request);
    request
}

/// `n` empty spans: two bytes each, a few hundred once decoded.
fn empty_spans(n: usize) -> Vec<u8> {
    request_of(&b"\x12\x00".repeat(n))
}

/// One span named `name`, holding an attribute of `bytes` bytes.
fn span_request(name: &str, bytes: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        attributes: vec![KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("x".repeat(bytes))),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// A gRPC answer's status and headers (trailers included).
struct GrpcAnswer {
    status: String,
    metadata: http::HeaderMap,
}

/// Calls the traces service's Export with `message` (compressed with gzip).
fn grpc_export(port: u16, message: &[u8], gzip: bool) -> GrpcAnswer {
    use http_body_util::{BodyExt as _, Full};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<Full<bytes::Bytes>>();
        let mut framed = vec![u8::from(gzip)];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        let mut request = http::Request::post(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
        if gzip {
            request = request.header("grpc-encoding", "gzip");
        }
        let response = client
            .request(request.body(Full::new(framed.into())).unwrap())
            .await
            .unwrap();
        let mut metadata = response.headers().clone();
        let body = response.into_body().collect().await.unwrap();
        metadata.extend(body.trailers().cloned().unwrap_or_default());
        let status = metadata["grpc-status"].to_str().unwrap().to_string();
        GrpcAnswer { status, metadata }
    })
}

#[test]
fn requests_that_would_decode_to_gigabytes_are_refused_before_they_are_decoded() {
    let console = ConsoleFile::new();
    let running = Running::start(&console.flags());
    // 15 MiB of empty spans, 15 KB once compressed: 2 GB of structs.
    let n = 15 << 19;
    let bomb = gzip(&empty_spans(n));
    assert!(bomb.len() < 32 << 10, "{} bytes", bomb.len());
    let answer = post(
        running.port,
        "/v1/traces",
        &format!("{PROTOBUF}Content-Encoding: gzip\r\n"),
        &bomb,
    );
    assert_eq!(answer.status, 413);
    let status = answer.rpc_status();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status
            .message
            .starts_with(&format!("a request of {n} spans is larger")),
        "{}",
        status.message
    );
    // 8 MiB sent as they are.
    let plain = empty_spans(4 << 20);
    assert_eq!(
        post(running.port, "/v1/traces", PROTOBUF, &plain).status,
        413
    );
    // The same in JSON: `{}` is an empty span.
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        vec!["{}"; 4 << 20].join(",")
    );
    let answer = post(
        running.port,
        "/v1/traces",
        "Content-Type: application/json\r\n",
        json.as_bytes(),
    );
    assert_eq!(answer.status, 413);
    // gRPC requests go through the same bounds.
    let grpc = grpc_export(running.port, &bomb, true);
    assert_eq!(grpc.status, "3", "INVALID_ARGUMENT: {:?}", grpc.metadata);
    // A resource that fits is taken, and the partial success says what was not.
    let mut mixed = span_request("fits", 10);
    mixed.extend(empty_spans(1 << 20));
    let answer = post(running.port, "/v1/traces", PROTOBUF, &mixed);
    assert_eq!(answer.status, 200);
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let response = ExportTraceServiceResponse::decode(answer.body.as_slice()).unwrap();
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1 << 20);
    assert!(partial.error_message.contains("rejected"), "{partial:?}");

    let peak = running.peak_rss_mib();
    assert!(peak < 150, "otel-run's peak RSS is {peak} MiB");
    let stderr = running.stop();
    let dropped = 2 * n + (4 << 20) + (4 << 20) + (1 << 20);
    assert!(
        stderr.contains(&format!("{dropped} in requests too large")),
        "{stderr}"
    );
    crate::util::span_named(&console.spans(), "fits");
}

#[test]
fn a_full_queue_answers_retry_later_and_holds_a_bounded_number_of_bytes() {
    // Nothing listens at the backend: the queue fills and stays full.
    let backend = format!("http://127.0.0.1:{}", free_port());
    let running = Running::start(&[
        "--traces-exporter",
        "otlp",
        "--exporter-otlp-endpoint",
        &backend,
    ]);
    let request = span_request("big", 8 << 20);
    let statuses: Vec<u16> = (0..30)
        .map(|_| {
            let answer = post(running.port, "/v1/traces", PROTOBUF, &request);
            if answer.status == 429 {
                assert_eq!(answer.header("retry-after"), Some("1"));
                assert_eq!(answer.rpc_status().code, 8, "RESOURCE_EXHAUSTED");
            }
            answer.status
        })
        .collect();
    let accepted = statuses.iter().take_while(|s| **s == 200).count();
    assert!(
        (1..10).contains(&accepted) && statuses[accepted..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    let grpc = grpc_export(running.port, &request, false);
    assert_eq!(grpc.status, "8", "RESOURCE_EXHAUSTED: {:?}", grpc.metadata);
    assert!(grpc.metadata.contains_key("grpc-status-details-bin"));
    assert!(grpc.metadata.contains_key("google.rpc.retryinfo-bin"));

    let peak = running.peak_rss_mib();
    assert!(peak < 180, "otel-run's peak RSS is {peak} MiB");
    let stderr = running.stop();
    assert!(
        stderr.contains("the traces queue is full; the program is asked to retry later"),
        "{stderr}"
    );
}

fn check_python_retries(exporter: &str) {
    let Some(python) = python() else { return };
    let Some(collector) = Collector::start() else {
        return;
    };
    // A backend that does not answer keeps otel-run's queue of two spans full.
    collector.pause();
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let run = otel_run()
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "2")
        .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
        // The program exports by hand with the SDK's exporter, which is what is
        // under test: no shim adds its own processor to the program's provider.
        .args([
            "--runtime",
            "none",
            "--service-name",
            "retried",
            "--traces-exporter",
            "otlp",
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{}", collector.grpc),
        ])
        .arg(&python)
        .arg(fixture("sdk_retry.py"))
        .arg(exporter)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // The exporter says it was told to retry; then the backend comes back.
    let told = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        text.contains("Transient error").then_some(())
    });
    collector.resume();
    let out = run.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    assert!(told.is_some(), "{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SUCCESS\n".repeat(6),
        "{stderr}"
    );
    let spans = collector.wait_spans(7);
    for i in 0..6 {
        crate::util::span_named(&spans, &format!("retried-{i}"));
    }
}

#[test]
fn a_python_exporter_told_to_retry_over_http_gets_its_spans_through() {
    check_python_retries("http");
}

#[test]
fn a_python_exporter_told_to_retry_over_grpc_gets_its_spans_through() {
    check_python_retries("grpc");
}

/// Whether the server closed the connection (the read ends, or fails as reset).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn slow_clients_are_cut_off() {
    let running = Running::start(&ConsoleFile::new().flags());
    let port = running.port;
    let silent = std::thread::spawn(move || closed(&mut connect(port)));
    let slow_head = std::thread::spawn(move || {
        let mut stream = connect(port);
        stream
            .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        closed(&mut stream)
    });
    let short_body = std::thread::spawn(move || {
        let mut stream = connect(port);
        write!(
            stream,
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\n{PROTOBUF}Content-Length: 1000\r\n\r\n0123456789"
        )
        .unwrap();
        read_answer(&mut stream).status
    });
    // Bodies read at once take at most 64 MiB: beyond, the sender is told to retry.
    let large_bodies: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = connect(port);
                write!(
                    stream,
                    "POST /v1/traces HTTP/1.1\r\nHost: x\r\n{PROTOBUF}Content-Length: 15000000\r\n\r\n"
                )
                .unwrap();
                // The server may answer before reading it all.
                let _ = stream.write_all(&vec![0; 14_000_000]);
                let answer = read_answer(&mut stream);
                (answer.status, answer.header("retry-after").map(str::to_string))
            })
        })
        .collect();
    // A body larger than a request may be is refused before it is read.
    let mut huge = connect(port);
    write!(
        huge,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\n{PROTOBUF}Content-Length: 30000000\r\n\r\n0123456789"
    )
    .unwrap();
    assert_eq!(read_answer(&mut huge).status, 413);
    assert!(
        silent.join().unwrap(),
        "a connection that sends nothing is closed"
    );
    assert!(
        slow_head.join().unwrap(),
        "a head that never ends is cut off"
    );
    assert_eq!(short_body.join().unwrap(), 408);
    let answers: Vec<_> = large_bodies
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let busy = answers.iter().filter(|(status, _)| *status == 503).count();
    assert!(busy >= 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| *a == (503, Some("1".into())) || a.0 == 408),
        "{answers:?}"
    );
    let peak = running.peak_rss_mib();
    assert!(peak < 120, "otel-run's peak RSS is {peak} MiB");
    running.stop();
}

#[test]
fn connections_beyond_the_limit_are_refused_and_the_command_keeps_its_open_files_limit() {
    let mut command = otel_run();
    // SAFETY: between fork and exec, only the async-signal-safe setrlimit.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 128,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let running = Running::start_with(command, &ConsoleFile::new().flags());
    assert_eq!(running.file("limits"), "64\n128\n", "the command's limits");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", running.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["128", "128"],
        "otel-run raised its own soft limit"
    );
    // At most half of 128 connections are served; the others are closed at once.
    let mut streams: Vec<TcpStream> = (0..100).map(|_| connect(running.port)).collect();
    for stream in &streams {
        stream.set_nonblocking(true).unwrap();
    }
    let refused = wait_for(Duration::from_secs(10), || {
        let refused = streams.iter_mut().map(closed).filter(|c| *c).count();
        (refused >= 36).then_some(refused)
    })
    .expect("connections beyond the limit are closed");
    drop(streams);
    let stderr = running.stop();
    assert!(
        stderr.contains("refuses connections: 64 connections are open already"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("refused {refused} connections")),
        "{stderr}"
    );
}
