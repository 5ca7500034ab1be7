//! Seed 002: a Django project whose `manage.py` sets DJANGO_SETTINGS_MODULE,
//! in a venv with the document's packages (Django, httpx, their
//! instrumentations, the SDK and only the gRPC exporter), the company's two
//! propagators installed with pip, the document's settings (OTEL_PROPAGATORS
//! `tracecontext,kontur,vostok`, gzip, a service name), and a view that calls
//! another service with httpx.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Seen, both, ctrl_c, show, users_shell};
use crate::util::{
    Collector, Server, assert_success, fixture, free_port, http_get, peer, wait_for,
};

/// The document's settings; the endpoint is the test's (through [`GzipWatch`]).
const SETTINGS: [(&str, &str); 3] = [
    ("OTEL_PROPAGATORS", "tracecontext,kontur,vostok"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ("OTEL_SERVICE_NAME", "django-auto"),
];

/// A loopback TCP relay to the collector's gRPC port that notes whether what
/// the exporter sent held a gzip stream (its magic `1f 8b 08`): gRPC frames a
/// compressed message as it is, where an uncompressed protobuf export of spans
/// does not hold those bytes.
struct GzipWatch {
    port: u16,
    seen: Arc<AtomicBool>,
}

impl GzipWatch {
    fn start(upstream: u16) -> GzipWatch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicBool::new(false));
        let flag = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut back_from, mut back_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut back_from, &mut back_to));
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut window: Vec<u8> = Vec::new();
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        // The bytes may straddle two reads: keep the last two.
                        window.extend_from_slice(&buf[..n]);
                        if window.windows(3).any(|w| w == [0x1f, 0x8b, 0x08]) {
                            flag.store(true, Ordering::SeqCst);
                        }
                        window.drain(..window.len().saturating_sub(2));
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        GzipWatch { port, seen }
    }
}

/// A request's headers, names lowercased.
type Headers = Vec<(String, String)>;

/// The service the view calls: it answers every request, and keeps the
/// headers of each.
struct Upstream {
    port: u16,
    requests: Arc<Mutex<Vec<Headers>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let headers = String::from_utf8_lossy(&head)
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                kept.lock().unwrap().push(headers);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ncars",
                );
            }
        });
        Upstream { port, requests }
    }

    /// The headers of the one request it had.
    fn headers(&self) -> Headers {
        let requests = self.requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "{requests:?}");
        requests[0].clone()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What one launcher's run delivered.
struct Run {
    spans: Vec<Seen>,
    /// The headers of the view's httpx call.
    headers: Headers,
    gzip: bool,
    stderr: String,
    /// The trace and span id of the httpx CLIENT span.
    client: Option<(String, String)>,
}

/// `LAUNCHER python manage.py runserver` in a copy of the project, with the
/// document's settings, asked for `/cars` once, stopped with Ctrl-C once the
/// call's CLIENT span reached the collector.
fn seed_002(launcher: &str, venv_bin: &Path, propagators: &Path) -> Run {
    let collector = Collector::start().expect("a collector");
    let watch = GzipWatch::start(collector.grpc);
    let upstream = Upstream::start();
    let project = tempfile::tempdir().unwrap();
    copy_tree(&fixture("seeds/auto"), project.path());
    let port = free_port();
    let mut command = users_shell(
        &format!("{launcher} python manage.py runserver 127.0.0.1:{port}"),
        project.path(),
        venv_bin,
    );
    command
        .envs(SETTINGS)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", watch.port),
        )
        .env("PYTHONPATH", propagators)
        .env(
            "UPSTREAM",
            format!("http://127.0.0.1:{}/cars", upstream.port),
        );
    if launcher != "otel-run" {
        // The anchor configures Django's settings itself when it starts, before
        // manage.py names them: Django then runs with its defaults and refuses
        // to serve (see `the_anchor_alone`). Its users name the settings for it.
        command.env("DJANGO_SETTINGS_MODULE", "auto.settings");
    }
    let logs = tempfile::tempdir().unwrap();
    let mut server = Server::start(command, port, logs.path());
    assert_eq!(http_get(port, "/cars"), 200, "{}", server.stderr_text());
    wait_for(Duration::from_secs(30), || {
        Seen::all(&collector)
            .iter()
            .any(|s| s.kind == "CLIENT")
            .then_some(())
    });
    ctrl_c(&mut server, launcher);
    let client = collector
        .spans()
        .into_iter()
        .find(|s| s["kind"] == 3)
        .map(|s| {
            let id = |key: &str| s[key].as_str().unwrap_or_default().to_string();
            (id("traceId"), id("spanId"))
        });
    Run {
        spans: Seen::all(&collector),
        headers: upstream.headers(),
        gzip: watch.seen.load(Ordering::SeqCst),
        stderr: server.stderr_text(),
        client,
    }
}

/// The anchor run as the document has it, without DJANGO_SETTINGS_MODULE in the
/// environment: what it printed (for the side-by-side record).
fn the_anchor_alone(venv_bin: &Path, propagators: &Path) -> String {
    let project = tempfile::tempdir().unwrap();
    copy_tree(&fixture("seeds/auto"), project.path());
    let script = format!(
        "timeout 20 opentelemetry-instrument python manage.py runserver 127.0.0.1:{}",
        free_port()
    );
    let out = users_shell(&script, project.path(), venv_bin)
        .envs(SETTINGS)
        .env("PYTHONPATH", propagators)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The company's propagator package, installed with pip (beside the venv: the
/// venv is shared with tests where `vostok` is missing).
fn install_propagators(python: &Path, into: &Path) {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&fixture("seeds/kontur_opentelemetry"), source.path());
    let out = std::process::Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--target"])
        .arg(into)
        .arg(source.path())
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn seed_002_django_with_two_company_propagators_gzip_and_an_httpx_call() {
    let Some(python) = peer(
        "OTEL_RUN_TEST_PYTHON_GRPC",
        "a Python with Django, httpx and only the gRPC OTLP exporter",
    ) else {
        return;
    };
    let venv_bin: PathBuf = python.parent().unwrap().to_path_buf();
    let propagators = tempfile::tempdir().unwrap();
    install_propagators(&python, propagators.path());
    let (ours, anchor) = both(&|launcher| seed_002(launcher, &venv_bin, propagators.path()));
    let alone = the_anchor_alone(&venv_bin, propagators.path());
    eprintln!(
        "seed 002, the anchor as the document runs it: {}",
        alone.trim()
    );
    show(
        "seed 002 (the anchor given DJANGO_SETTINGS_MODULE)",
        &ours.spans,
        &anchor.spans,
    );
    eprintln!("  otel-run's call carried: {:?}", ours.headers);
    eprintln!("  the anchor's call carried: {:?}", anchor.headers);
    eprintln!(
        "  gzip on the wire: otel-run {}, anchor {}",
        ours.gzip, anchor.gzip
    );

    // The request's SERVER span, the httpx call's CLIENT span under it.
    let server: Vec<&Seen> = ours.spans.iter().filter(|s| s.kind == "SERVER").collect();
    assert_eq!(server.len(), 1, "{:#?}\n{}", ours.spans, ours.stderr);
    assert_eq!(server[0].name, "GET cars");
    assert_eq!(server[0].service, "django-auto");
    let client: Vec<&Seen> = ours.spans.iter().filter(|s| s.kind == "CLIENT").collect();
    assert_eq!(client.len(), 1, "{:#?}", ours.spans);
    assert_eq!(client[0].parent.as_deref(), Some("GET cars"));
    assert_eq!(client[0].scope, "opentelemetry.instrumentation.httpx");

    // Every propagator's headers on the call, for the CLIENT span.
    let (trace_id, span_id) = ours.client.clone().expect("the CLIENT span's ids");
    let headers = &ours.headers;
    let traceparent = header(headers, "traceparent").unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-{span_id}-")),
        "{headers:?}"
    );
    assert_eq!(
        header(headers, "x-kontur-trace-id"),
        Some(trace_id.as_str())
    );
    assert_eq!(
        header(headers, "x-vostok-trace-id"),
        Some(trace_id.as_str())
    );
    assert_eq!(header(headers, "x-vostok-span-id"), Some(span_id.as_str()));
    assert!(!ours.stderr.contains("OTEL_PROPAGATORS"), "{}", ours.stderr);

    // The export reached the collector compressed.
    assert!(ours.gzip, "otel-run's export was not gzip");

    // The anchor, where it works: its call carries the same propagators' headers
    // and its export is gzip too.
    for name in ["traceparent", "x-kontur-trace-id", "x-vostok-span-id"] {
        assert!(
            header(&anchor.headers, name).is_some(),
            "{:?}",
            anchor.headers
        );
    }
    assert!(anchor.gzip, "the anchor's export was not gzip");
    let anchor_client = anchor.spans.iter().find(|s| s.kind == "CLIENT");
    assert!(anchor_client.is_some(), "{:#?}", anchor.spans);
}
