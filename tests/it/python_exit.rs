//! Python at the end of a run: a SIGTERM the program leaves at its default
//! action still lets the SDK send its spans (and still kills the program), the
//! program's own handlers are left alone, and what the SDK dropped is said.

use std::path::Path;

use crate::util::{
    Collector, ConsoleFile, Server, apps_python, died_of_sigterm, fixture, free_port, http_get,
    otel_run, python,
};

/// `argv` (run in the Python fixtures directory) under otel-run exporting to
/// `collector`, with batches held in the SDK: only a flush at exit sends them.
fn serve(collector: &Collector, argv: &[String], port: u16, dir: &Path) -> Server {
    let mut command = otel_run();
    command
        .args(["--traces-exporter", "otlp", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc))
        .args(["--service-name", "py-exit", "--bsp-schedule-delay", "60000"])
        .arg("--")
        .args(argv)
        .current_dir(fixture("python"));
    Server::start(command, port, dir)
}

fn python_spans(collector: &Collector) -> Vec<serde_json::Value> {
    collector
        .wait_spans(2)
        .into_iter()
        .filter(|s| s["resource"]["telemetry.sdk.language"] == "python")
        .collect()
}

#[test]
fn a_flask_server_sends_its_spans_then_dies_of_sigterm() {
    let Some(python) = apps_python() else { return };
    for group in [false, true] {
        let Some(collector) = Collector::start() else {
            return;
        };
        let port = free_port();
        let argv = [
            python.display().to_string(),
            "flask_app.py".into(),
            port.to_string(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut server = serve(&collector, &argv, port, dir.path());
        assert_eq!(http_get(port, "/users/7"), 200);
        let status = server
            .terminate(group)
            .unwrap_or_else(|| panic!("still running (group: {group}): {}", server.stderr_text()));
        assert!(died_of_sigterm(&status), "{status:?} (group: {group})");
        let spans = python_spans(&collector);
        assert!(
            spans
                .iter()
                .any(|s| s["name"] == "GET /users/<int:user_id>"),
            "group: {group}: {spans:#?}"
        );
    }
}

#[test]
fn a_programs_own_sigterm_handler_is_the_one_that_decides() {
    let Some(python) = python() else { return };
    // `chaining` calls the handler it replaced: otel-run's then only flushes.
    for mode in ["own", "chaining"] {
        let Some(collector) = Collector::start() else {
            return;
        };
        let port = free_port();
        let argv = [
            python.display().to_string(),
            "signals_app.py".into(),
            port.to_string(),
            mode.into(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut server = serve(&collector, &argv, port, dir.path());
        assert_eq!(http_get(port, "/"), 200);
        let status = server
            .terminate(false)
            .unwrap_or_else(|| panic!("still running ({mode}): {}", server.stderr_text()));
        assert_eq!(status.code(), Some(0), "{mode}: {}", server.stderr_text());
        assert_eq!(server.stdout_text(), "own handler: SIGTERM\n", "{mode}");
        let spans = python_spans(&collector);
        assert!(
            spans.iter().any(|s| s["name"] == "GET"),
            "{mode}: {spans:#?}"
        );
    }
}

#[test]
fn gunicorn_keeps_its_own_sigterm_handling() {
    let Some(python) = apps_python() else { return };
    let Some(collector) = Collector::start() else {
        return;
    };
    let port = free_port();
    let argv = [
        python.with_file_name("gunicorn").display().to_string(),
        "-w".into(),
        "2".into(),
        "-b".into(),
        format!("127.0.0.1:{port}"),
        // gunicorn 27 shares one control socket path between all instances.
        "--no-control-socket".into(),
        "flask_app:app".into(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&collector, &argv, port, dir.path());
    for i in 0..4 {
        assert_eq!(http_get(port, &format!("/users/{i}")), 200);
    }
    // gunicorn's arbiter stops its workers gracefully and exits 0.
    let status = server
        .terminate(false)
        .unwrap_or_else(|| panic!("still running: {}", server.stderr_text()));
    assert_eq!(status.code(), Some(0), "{}", server.stderr_text());
    let served = crate::util::wait_for(std::time::Duration::from_secs(15), || {
        let spans = python_spans(&collector);
        let n = spans.iter().filter(|s| s["kind"] == 2).count();
        (n == 4).then_some(n)
    });
    assert_eq!(served, Some(4), "{:#?}", collector.spans());
}

/// The number in otel-run's "the command's SDK dropped N spans" line.
fn sdk_dropped(stderr: &str) -> Option<u64> {
    let rest = stderr.split("the command's SDK dropped ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn spans_the_sdk_dropped_are_counted_in_the_summary_across_processes() {
    let Some(python) = python() else { return };
    let console = ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .arg(&python)
        .arg(fixture("python/burst.py"))
        .args(["1000", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dropped = sdk_dropped(&stderr).unwrap_or_else(|| panic!("no SDK drops said: {stderr}"));
    assert!(
        stderr.contains(&format!(
            "the command's SDK dropped {dropped} spans: its queue was full\nhint: raise `OTEL_BSP_MAX_QUEUE_SIZE`"
        )),
        "{stderr}"
    );
    let exported = console
        .spans()
        .iter()
        .filter(|s| s["name"] == "burst")
        .count() as u64;
    assert!(
        dropped > 0 && exported > 0,
        "{dropped} dropped, {exported} exported"
    );
    assert_eq!(dropped + exported, 2000, "every span exported or counted");

    let out = otel_run()
        .args(console.flags())
        .arg("--fail-on-export-error")
        .arg(&python)
        .arg(fixture("python/burst.py"))
        .args(["1000", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("telemetry items could not be exported"),
        "{stderr}"
    );
}
