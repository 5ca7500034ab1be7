//! The viewer's web UI in a real browser: Debian's chromium driven by
//! playwright-core (`tests/browser/viewer.mjs`, prepared by
//! `.ci/browser/install.sh`, found through `OTEL_RUN_TEST_CHROMIUM`), on a
//! trace that otel-run sends; the UI's model in node; and the committed
//! bundle is what `ui/build.sh` builds from its sources.
//!
//! The pages come from `otel-run agent --ui`, or from the browser script's
//! stand-in server in front of a real Jaeger (the UI without otel-run's own
//! endpoints).

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::jaeger::Jaeger;
use crate::util::{Server, assert_success, fixture, free_port, otel_run, peer, python, tool};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> Option<PathBuf> {
    peer("OTEL_RUN_TEST_CHROMIUM", "chromium and playwright-core")
}

/// The pages as `otel-run agent --ui` serves them: a trace `otel-run --
/// python` sends to the agent after the page loaded appears in the list
/// without a reload, with its root, and the status and duration filters hide
/// it; opening it draws `work` under the process span and `step` under
/// `work`; clicking `work` opens its attributes and resource; the metrics
/// page answers; the page asks nothing of another origin. The screenshots of
/// each page are left in target/tmp/viewer-browser-agent/.
#[test]
fn the_agents_viewer_lists_draws_and_opens_a_trace_from_otel_run_in_chromium() {
    let (Some(chromium), Some(python)) = (chromium(), python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ui, grpc, http) = (free_port(), free_port(), free_port());
    let mut agent = otel_run();
    for var in [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ] {
        agent.env_remove(var);
    }
    agent
        .args(["agent", "--ui", "--ui-listen", &format!("127.0.0.1:{ui}")])
        .args(["--listen", &format!("127.0.0.1:{grpc}")])
        .args(["--listen", &format!("127.0.0.1:{http}")]);
    let agent = Server::start(agent, ui, dir.path());
    let page = ["--url".into(), format!("http://127.0.0.1:{ui}").into()];
    browse(
        "viewer-browser-agent",
        &chromium,
        &page,
        grpc,
        &python,
        || agent.stderr_text(),
    );
}

/// The same on the browser script's stand-in server: the files of
/// `ui/dist/` with the API passed to a real Jaeger, whose query API the
/// viewer's shares; otel-run's own endpoints are then absent, which the UI
/// must bear. Screenshots in target/tmp/viewer-browser-jaeger/.
#[test]
fn a_trace_from_otel_run_is_listed_drawn_nested_and_opened_in_chromium() {
    let (Some(chromium), Some(python), Some(jaeger)) = (chromium(), python(), Jaeger::start())
    else {
        return;
    };
    let page = [
        "--serve".into(),
        root().join("ui/dist").into_os_string(),
        "--api".into(),
        format!("http://127.0.0.1:{}", jaeger.query).into(),
    ];
    browse(
        "viewer-browser-jaeger",
        &chromium,
        &page,
        jaeger.grpc,
        &python,
        || jaeger.log(),
    );
}

/// Runs `tests/browser/viewer.mjs` on the pages `page` names, sends
/// sdk_app.py's trace through otel-run to the OTLP/gRPC `port` once the list
/// is up, and checks the script passed and left a screenshot of each page in
/// target/tmp/`name`/; `log` is the server's log, for a failure.
fn browse(
    name: &str,
    chromium: &Path,
    page: &[OsString],
    port: u16,
    python: &Path,
    log: impl Fn() -> String,
) {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut script = Command::new("node")
        .current_dir(root().join("tests/browser"))
        .arg("viewer.mjs")
        .args(page)
        .args(["--service", "viewer-browser"])
        .args(["--chain", "python>work>step"])
        .args(["--attribute", "work:exporter=grpc"])
        .arg("--out")
        .arg(&out_dir)
        .arg("--chromium")
        .arg(chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs tests/browser/viewer.mjs");
    let mut stdout = BufReader::new(script.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.trim() != "ready" {
        let out = script.wait_with_output().unwrap();
        panic!(
            "the browser script never showed the list: {line}{}\nserver: {}",
            String::from_utf8_lossy(&out.stderr),
            log()
        );
    }

    let out = otel_run()
        .env_remove("OTEL_TRACES_EXPORTER")
        .args(["--service-name", "viewer-browser"])
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg(python)
        .arg(fixture("sdk_app.py"))
        .arg("grpc")
        .output()
        .unwrap();
    assert_success(&out);

    let out = script.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    for page in ["list", "trace", "span", "metrics"] {
        let shot = out_dir.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 0, "no screenshot {}", shot.display());
    }
}

/// The UI's computations, in node without a browser
/// (`tests/browser/model.test.mjs`): the waterfall's order and nesting with
/// missing parents, reference cycles and deep chains; the filters' durations.
#[test]
fn the_ui_model_nests_spans_whatever_their_references_hold() {
    if tool("node").is_none() {
        return;
    }
    let out = Command::new("node")
        .current_dir(root().join("tests/browser"))
        .args(["--test", "model.test.mjs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ui/dist/`, which the binary embeds, is exactly what `ui/build.sh` builds
/// from `ui/src/` and `ui/static/` with the pinned compiler: an edit of the
/// sources without a rebuild (or a hand edit of the bundle) fails here.
#[test]
fn the_committed_ui_bundle_is_what_its_sources_build() {
    if tool("node").is_none() || tool("npm").is_none() {
        return;
    }
    let built = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root().join("ui/build.sh"))
        .arg("--out")
        .arg(built.path())
        .output()
        .unwrap();
    assert_success(&out);
    let files = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let committed = root().join("ui/dist");
    assert_eq!(
        files(built.path()),
        files(&committed),
        "the files of ui/dist"
    );
    for name in files(&committed) {
        assert!(
            std::fs::read(built.path().join(&name)).unwrap()
                == std::fs::read(committed.join(&name)).unwrap(),
            "ui/dist/{name} is not what ui/build.sh builds: run `bash ui/build.sh` and commit"
        );
    }
}
