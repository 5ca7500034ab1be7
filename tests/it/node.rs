//! Node.js: real Express apps with the OpenTelemetry packages from npm
//! (`tests/fixtures/node`, installed by `.ci/node/install.sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    Collector, Server, died_of_sigterm, fixture, free_port, http_get, otel_run, tool, wait_for,
};

/// A fixture app with its node_modules installed, or a skip.
fn node_app(name: &str) -> Option<PathBuf> {
    tool("node")?;
    let dir = fixture("node").join(name);
    if dir.join("node_modules").is_dir() {
        return Some(dir);
    }
    let message = format!(
        "skipped: missing node_modules in {} (`.ci/node/install.sh` installs them)",
        dir.display()
    );
    if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{message}");
    }
    eprintln!("{message}");
    None
}

/// Serves `server.js` of `app` under otel-run from `cwd`, requests `/users/42`,
/// stops it, and returns the spans and otel-run's stderr.
pub(crate) fn serve(app: &Path, cwd: &Path) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let console = crate::util::ConsoleFile::new();
    let port = free_port();
    let mut command = otel_run();
    command
        .args(console.flags())
        .args([
            "--service-name",
            "node-test",
            "--bsp-schedule-delay",
            "200",
            "--",
            "node",
        ])
        .arg(app.join("server.js"))
        .arg(port.to_string())
        .current_dir(cwd);
    let mut server = Server::start(command, port, dir.path());
    assert_eq!(http_get(port, "/users/42"), 200);
    let spans = wait_for(Duration::from_secs(20), || {
        let spans = console.spans();
        spans
            .iter()
            .any(|s| s["kind"] == "SpanKind.SERVER")
            .then_some(spans)
    })
    .unwrap_or_default();
    server.stop();
    (spans, server.stderr_text())
}

pub(crate) fn check_server_span(spans: &[Value]) {
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.SERVER")
        .unwrap_or_else(|| panic!("no SERVER span: {spans:#?}"));
    assert_eq!(server["name"], "GET /users/:id");
    assert_eq!(server["attributes"]["http.route"], "/users/:id");
    assert_eq!(
        server["resource"]["attributes"]["telemetry.sdk.language"],
        "nodejs"
    );
    assert_eq!(
        server["resource"]["attributes"]["service.name"],
        "node-test"
    );
}

#[test]
fn an_express_app_is_instrumented_through_the_agent() {
    let Some(app) = node_app("express-cjs") else {
        return;
    };
    let (spans, stderr) = serve(&app, &app);
    check_server_span(&spans);
    assert!(
        !stderr.contains("Warning"),
        "no resource detector noise: {stderr}"
    );
}

#[test]
fn an_express_app_started_from_elsewhere_is_instrumented() {
    let Some(app) = node_app("express-cjs") else {
        return;
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let (spans, _) = serve(&app, elsewhere.path());
    check_server_span(&spans);
}

#[test]
fn an_es_module_express_app_gets_routes_through_the_import_hook() {
    let Some(app) = node_app("express-esm") else {
        return;
    };
    let (spans, _) = serve(&app, &app);
    check_server_span(&spans);
}

#[test]
fn an_app_without_the_packages_runs_and_otel_run_says_why() {
    let Some(app) = node_app("no-otel") else {
        return;
    };
    let (spans, stderr) = serve(&app, &app);
    assert!(
        spans.iter().all(|s| s["kind"] != "SpanKind.SERVER"),
        "{spans:#?}"
    );
    assert_eq!(stderr.matches("warning").count(), 1, "{stderr}");
    assert!(
        stderr.contains("`@opentelemetry/auto-instrumentations-node` is not installed for the app"),
        "{stderr}"
    );
}

/// `plain.js` of the CommonJS fixture under otel-run exporting to `collector`,
/// with batches held in the SDK: only a flush at exit sends them.
fn serve_plain(collector: &Collector, extra: &[&str], dir: &Path) -> Option<Server> {
    let app = node_app("express-cjs")?;
    let port = free_port();
    let mut command = otel_run();
    command
        .args(["--traces-exporter", "otlp", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc))
        .args([
            "--service-name",
            "node-test",
            "--bsp-schedule-delay",
            "60000",
        ])
        .args(["--", "node"])
        .arg(app.join("plain.js"))
        .arg(port.to_string())
        .args(extra);
    let server = Server::start(command, port, dir);
    assert_eq!(http_get(port, "/"), 200);
    Some(server)
}

#[test]
fn a_node_server_stops_on_one_sigterm_and_its_spans_are_flushed() {
    for group in [false, true] {
        let Some(collector) = Collector::start() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let Some(mut server) = serve_plain(&collector, &[], dir.path()) else {
            return;
        };
        let status = server.terminate(group).unwrap_or_else(|| {
            panic!(
                "still running after one SIGTERM (group: {group}): {}",
                server.stderr_text()
            )
        });
        assert!(died_of_sigterm(&status), "{status:?} (group: {group})");
        let spans = collector.wait_spans(2);
        let request = spans
            .iter()
            .find(|s| s["resource"]["telemetry.sdk.language"] == "nodejs")
            .unwrap_or_else(|| panic!("no span from node (group: {group}): {spans:#?}"));
        assert_eq!(request["name"], "GET");
        assert_eq!(request["resource"]["service.name"], "node-test");
    }
}

#[test]
fn a_node_servers_own_sigterm_handler_keeps_deciding() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = serve_plain(&collector, &["--own-handler"], dir.path()) else {
        return;
    };
    let status = server
        .terminate(false)
        .unwrap_or_else(|| panic!("still running: {}", server.stderr_text()));
    assert_eq!(status.code(), Some(0), "{}", server.stderr_text());
    assert!(
        server.stdout_text().contains("own handler: SIGTERM"),
        "{}",
        server.stdout_text()
    );
    // The program ended by itself, and the SDK flushed then.
    let spans = collector.wait_spans(2);
    assert!(
        spans
            .iter()
            .any(|s| s["resource"]["telemetry.sdk.language"] == "nodejs"),
        "{spans:#?}"
    );
}
