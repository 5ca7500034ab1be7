//! `otel-run agent`: the agent alone, receiving from programs and devices that
//! otel-run does not run, forwarding to a real collector, flushing at SIGTERM.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Collector, Server, fixture, free_port, otel_run, python, wait_for};

/// `otel-run agent` listening on `listen`, with the machine's OTEL_* removed
/// and the exporters left to the test's flags.
fn agent(listen: &[&str]) -> Command {
    let mut cmd = otel_run();
    for var in [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("agent");
    for addr in listen {
        cmd.args(["--listen", addr]);
    }
    cmd
}

/// An agent forwarding to `collector` over gRPC, on two loopback ports.
fn forwarding_to(collector: &Collector, dir: &Path) -> (Server, u16, u16) {
    let (grpc, http) = (free_port(), free_port());
    let mut cmd = agent(&[&format!("127.0.0.1:{grpc}"), &format!("127.0.0.1:{http}")]);
    cmd.args(["-v", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc));
    (Server::start(cmd, grpc, dir), grpc, http)
}

/// A program run without otel-run, exporting to `port` as its OTEL_* say.
fn program(python: &Path, port: u16, args: &[&str]) -> Output {
    let mut cmd = Command::new(python);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(args)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("OTEL_SERVICE_NAME", "outside-app")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops the agent with SIGTERM; its stderr once it has exited cleanly.
fn terminate(server: &mut Server) -> String {
    let status = server.terminate(false).expect("the agent exits at SIGTERM");
    let err = server.stderr_text();
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn receives_a_python_sdk_program_over_grpc_and_http_and_forwards_to_the_collector() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut server, grpc, http) = forwarding_to(&collector, dir.path());
    let app = fixture("sdk_app.py");
    let app = app.to_str().unwrap();
    program(&python, grpc, &[app, "grpc"]);
    program(&python, http, &[app, "http"]);
    // Each program sends its `work` span and a child `step`.
    let spans = collector.wait_spans(4);
    let mut exporters: Vec<&str> = spans
        .iter()
        .filter(|s| s["name"] == "work")
        .map(|s| s["attributes"]["exporter"].as_str().unwrap())
        .collect();
    exporters.sort();
    assert_eq!(exporters, ["grpc", "http"], "{spans:#?}");
    for span in &spans {
        assert_eq!(span["resource"]["service.name"], "outside-app", "{span:#}");
    }
    let err = terminate(&mut server);
    assert!(
        err.contains("4 spans exported"),
        "the summary at stop: {err}"
    );
    assert!(!err.contains("from the network"), "loopback only: {err}");
}

/// Seed 000's ESP32 posts hand-written OTLP/JSON with protobuf's field names
/// to `:4318/v1/metrics`: the standalone agent takes it as a run's receiver
/// does, and rejects the metric without data with a partial success.
#[test]
fn the_seeds_device_json_reaches_the_collector_through_the_standalone_agent() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _, http) = forwarding_to(&collector, dir.path());
    let out = program(
        &python,
        http,
        &[fixture("device_json.py").to_str().unwrap()],
    );
    let responses: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [as_written, fixed] = &responses[..] else {
        panic!("two responses: {responses:#?}");
    };
    assert_eq!(as_written["status"], 200, "{as_written}");
    let rejected = as_written["body"]["partialSuccess"]["rejectedDataPoints"].to_string();
    assert_eq!(rejected.trim_matches('"'), "1", "{as_written}");
    assert_eq!(fixed["status"], 200, "{fixed}");
    assert!(
        fixed["body"]["partialSuccess"].is_null(),
        "nothing rejected: {fixed}"
    );
    let received = wait_for(Duration::from_secs(15), || {
        let text = collector.raw_output();
        text.contains("sensor.humidity").then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the device's metric did not arrive: {}",
            server.stderr_text()
        )
    });
    assert!(received.contains("\"esp32-iot\""), "{received}");
    assert!(!received.contains("sensor.temperature"), "{received}");
    let err = terminate(&mut server);
    assert!(
        err.contains("1 data points exported, 1 dropped")
            && err.contains("1 received without data"),
        "{err}"
    );
}

/// What the agent still holds when SIGTERM comes is exported before it exits:
/// the collector is paused, so the span is still queued (its export waiting)
/// when the signal arrives, and it is resumed only once the agent says it is
/// flushing.
#[test]
fn sigterm_flushes_what_was_received() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _, http) = forwarding_to(&collector, dir.path());
    collector.pause();
    program(
        &python,
        http,
        &[fixture("sdk_app.py").to_str().unwrap(), "http"],
    );
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let flushing = wait_for(Duration::from_secs(10), || {
        server.stderr_text().contains("flushing").then_some(())
    });
    assert!(flushing.is_some(), "{}", server.stderr_text());
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the agent waits for its export: {}",
        server.stderr_text()
    );
    assert!(
        collector.spans().is_empty(),
        "nothing exported before the flush"
    );
    collector.resume();
    let status = wait_for(Duration::from_secs(20), || server.child.try_wait().unwrap())
        .expect("the agent exits once flushed");
    let err = server.stderr_text();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(collector.wait_spans(2).len(), 2, "`work` and `step`");
    assert!(err.contains("2 spans exported"), "{err}");
}

#[test]
fn with_no_destination_it_prints_what_it_receives() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(agent(&[&format!("127.0.0.1:{port}")]), port, dir.path());
    program(
        &python,
        port,
        &[fixture("sdk_app.py").to_str().unwrap(), "http"],
    );
    let printed = wait_for(Duration::from_secs(10), || {
        let out = server.stdout_text();
        out.contains("\"name\": \"work\"").then_some(out)
    });
    assert!(printed.is_some(), "stdout: {}", server.stdout_text());
    let err = terminate(&mut server);
    assert_eq!(
        err.matches("no destination is set").count(),
        1,
        "said once: {err}"
    );
}

#[test]
fn a_port_in_use_is_one_error_naming_the_address_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = agent(&[&addr])
        .args(["--traces-exporter", "console"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: cannot listen on {addr}: Address already in use"
        )),
        "{err}"
    );
    assert!(err.contains("hint:") && err.contains("--listen"), "{err}");
    assert_eq!(err.matches("otel-run: error").count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_exporter_pointing_back_at_the_agent_is_refused() {
    let port = free_port();
    let out = agent(&[&format!("127.0.0.1:{port}")])
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://localhost:{port}"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("this agent's own address 127.0.0.1:{port}")),
        "{err}"
    );
    // The exporter named with the default endpoint: localhost:4317 is the
    // default listen's. Refused before anything is bound.
    let out = agent(&[])
        .args(["--traces-exporter", "otlp"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sends to http://localhost:4317/")
            && err.contains("own address 127.0.0.1:4317")
            && err.contains("--exporter-otlp-endpoint"),
        "{err}"
    );
}

#[test]
fn listening_beyond_loopback_says_it_accepts_from_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = agent(&[&format!("0.0.0.0:{port}")]);
    cmd.args(["--traces-exporter", "console"]);
    let mut server = Server::start(cmd, port, dir.path());
    let err = terminate(&mut server);
    assert_eq!(
        err.matches(&format!("0.0.0.0:{port} accepts OTLP from the network"))
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("nothing was received"), "{err}");
}
