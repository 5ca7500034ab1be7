//! Seed 001: a Flask app reading its cars with SQLAlchemy, in a venv where the
//! user ran the document's `pip install opentelemetry-distro
//! opentelemetry-exporter-otlp` and nothing else, bootstrapped, then run with the
//! document's flags and with its variables.

mod viewer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{Seen, both, ctrl_c, metric_names, show, users_shell};
use crate::util::{
    Collector, Server, assert_success, fixture, free_port, http_get, tool, wait_for,
};

/// The app's libraries, as the user pinned them.
const APP_LIBRARIES: [&str; 2] = ["flask==3.1.3", "sqlalchemy==2.0.58"];

/// The document's run with flags, `LAUNCHER` and the collector's port put in.
const FLAGS: &str = "LAUNCHER \\
    --traces_exporter otlp \\
    --metrics_exporter none \\
    --service_name server_automatic \\
    --exporter_otlp_endpoint http://localhost:PORT \\
    python server_automatic.py";

/// The document's run with variables, word for word: its fourth line has no
/// `\`, so its variables are set in the shell only, never exported, and the
/// launcher runs with every default (the endpoint localhost:4317 among them).
const VARIABLES: &str = "OTEL_SERVICE_NAME=server_automatic \\
OTEL_TRACES_EXPORTER=otlp \\
OTEL_METRICS_EXPORTER=none \\
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://localhost:4317
LAUNCHER \\
    python server_automatic.py";

/// The user's project: the app in a directory with a venv of its own.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// The app and a venv with its libraries and the document's two packages.
    fn new() -> Option<Project> {
        let python3 = tool("python3")?;
        let dir = tempfile::tempdir().unwrap();
        copy_app(dir.path());
        let venv = Command::new(python3)
            .args(["-m", "venv", "venv"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_success(&venv);
        let project = Project { dir };
        let quiet = "--quiet --disable-pip-version-check";
        assert_success(&project.shell(&format!("pip install {quiet} {}", APP_LIBRARIES.join(" "))));
        assert_success(&project.shell(&format!(
            "pip install {quiet} opentelemetry-distro opentelemetry-exporter-otlp"
        )));
        Some(project)
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("venv/bin")
    }

    fn command(&self, script: &str) -> Command {
        users_shell(script, self.dir.path(), &self.bin())
    }

    fn shell(&self, script: &str) -> Output {
        self.command(script).output().unwrap()
    }

    /// `otel-run doctor` for the document's command: its problems section.
    fn doctor(&self) -> String {
        let out = self.shell("otel-run doctor -- python server_automatic.py");
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text[text.find("problems:").expect("a problems section")..].to_string()
    }

    /// `script` serving the app on a free port while `/cars` is asked for once,
    /// stopped with Ctrl-C once the backend whose spans `received` reads has
    /// the request's SERVER span and the query's span under it: its stderr, and
    /// the program's spans.
    fn serve(&self, script: &str, received: &dyn Fn() -> Vec<Seen>) -> (String, Vec<Seen>) {
        self.serve_then(script, received, true)
    }

    /// [`Self::serve`], stopped at once after the request unless `traced`. Each
    /// run has a copy of the app of its own, and so its own new cars.db.
    fn serve_then(
        &self,
        script: &str,
        received: &dyn Fn() -> Vec<Seen>,
        traced: bool,
    ) -> (String, Vec<Seen>) {
        let app = tempfile::tempdir().unwrap();
        copy_app(app.path());
        let port = free_port();
        let mut command = users_shell(script, app.path(), &self.bin());
        command.env("PORT", port.to_string());
        let logs = tempfile::tempdir().unwrap();
        let mut server = Server::start(command, port, logs.path());
        assert_eq!(http_get(port, "/cars"), 200, "{}", server.stderr_text());
        let delivered = traced.then(|| {
            wait_for(Duration::from_secs(30), || {
                received()
                    .iter()
                    .any(|s| is_query(s) && s.parent.as_deref() == Some("GET /cars"))
                    .then_some(())
            })
        });
        ctrl_c(&mut server, script);
        let stderr = server.stderr_text();
        assert!(
            delivered != Some(None),
            "{script}: {:#?}\n{stderr}",
            received()
        );
        (stderr, settled(received))
    }
}

fn copy_app(to: &Path) {
    for file in ["server_automatic.py", "db.py"] {
        std::fs::copy(fixture("seeds/cars").join(file), to.join(file)).unwrap();
    }
}

/// The program's spans once the backend holds all it received: the same
/// spans twice in a row.
fn settled(received: &dyn Fn() -> Vec<Seen>) -> Vec<Seen> {
    let mut last = None;
    wait_for(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(500));
        let spans = received();
        let same = last.as_ref() == Some(&spans);
        last = Some(spans);
        same.then_some(())
    });
    received()
}

/// SQLAlchemy's span of a query.
fn is_query(span: &Seen) -> bool {
    span.scope == "opentelemetry.instrumentation.sqlalchemy" && span.name.starts_with("SELECT")
}

/// What both delivered for the request, as the document's trace shows it: the
/// SERVER span, and the query's span under it.
fn assert_the_request(what: &str, spans: &[Seen], service: &str) {
    let servers: Vec<&Seen> = spans.iter().filter(|s| s.kind == "SERVER").collect();
    assert_eq!(servers.len(), 1, "{what}: {spans:#?}");
    assert_eq!(servers[0].name, "GET /cars", "{what}");
    assert_eq!(servers[0].service, service, "{what}");
    let queries: Vec<&Seen> = spans
        .iter()
        .filter(|s| is_query(s) && s.parent.as_deref() == Some("GET /cars"))
        .collect();
    assert_eq!(queries.len(), 1, "{what}: {spans:#?}");
}

/// The spans of the request, without the ones of the app's start (db.py fills
/// the table on import).
fn of_the_request(spans: &[Seen]) -> Vec<Seen> {
    spans
        .iter()
        .filter(|s| s.parent.is_some() || s.kind == "SERVER")
        .cloned()
        .collect()
}

fn with_launcher(script: &str, launcher: &str, port: u16) -> String {
    script
        .replace("LAUNCHER", launcher)
        .replace("PORT", &port.to_string())
}

/// The warning a run gives, and doctor's problem, for the libraries installed
/// without their instrumentation: the message line.
fn untraced_line(text: &str) -> Option<&str> {
    text.lines().find(|l| l.contains("not traced: "))
}

#[test]
fn seed_001_flask_and_sqlalchemy_bootstrapped_then_run_with_the_documents_flags() {
    let Some(project) = Project::new() else {
        return;
    };
    let Some(collector) = Collector::start() else {
        return;
    };

    // Before bootstrap: the run says, once, which libraries are not traced and
    // the fix; doctor says the same.
    let script = with_launcher(FLAGS, "otel-run", collector.grpc);
    let (stderr, _) = project.serve_then(&script, &|| Seen::all(&collector), false);
    // One warning: the shim does not add its own for no instrumentation at all.
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("not traced: ").count(), 1, "{stderr}");
    let warning = untraced_line(&stderr).unwrap();
    for library in ["flask 3.1.3", "sqlalchemy 2.0.58"] {
        assert!(warning.contains(library), "{warning}");
    }
    assert!(
        stderr.contains("hint: `otel-run bootstrap --python"),
        "{stderr}"
    );
    let doctor = project.doctor();
    let problem = untraced_line(&doctor).unwrap_or_else(|| panic!("{doctor}"));
    let message = |line: &str| line.split_once("not traced").unwrap().1.to_string();
    assert_eq!(message(problem), message(warning));
    // A library left out on purpose is not named.
    let disabled = project.shell(
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=flask otel-run --traces-exporter console \
         --console-output /dev/null python -c pass",
    );
    let disabled = String::from_utf8_lossy(&disabled.stderr);
    let line = untraced_line(&disabled).unwrap_or_else(|| panic!("{disabled}"));
    assert!(!line.contains("flask 3"), "{line}");
    assert!(line.contains("sqlalchemy 2.0.58"), "{line}");
    drop(collector);

    let bootstrap = project.shell("otel-run bootstrap");
    assert_success(&bootstrap);
    let doctor = project.doctor();
    assert!(untraced_line(&doctor).is_none(), "{doctor}");

    let (ours, anchor) = both(&|launcher| {
        let collector = Collector::start().expect("a collector");
        let script = with_launcher(FLAGS, launcher, collector.grpc);
        let served = project.serve(&script, &|| Seen::all(&collector));
        (served, metric_names(&collector))
    });
    let (((stderr, ours), our_metrics), ((_, anchor), anchor_metrics)) = (ours, anchor);
    show("seed 001, the document's flags", &ours, &anchor);
    // `--metrics_exporter none`: no metric from either.
    assert!(our_metrics.is_empty(), "{our_metrics:?}");
    assert!(anchor_metrics.is_empty(), "{anchor_metrics:?}");
    assert!(untraced_line(&stderr).is_none(), "{stderr}");
    assert_the_request("otel-run", &ours, "server_automatic");
    assert_the_request("the anchor", &anchor, "server_automatic");
    assert_eq!(of_the_request(&ours), of_the_request(&anchor));
}

#[test]
fn seed_001_with_the_documents_variables() {
    let Some(project) = Project::new() else {
        return;
    };
    assert_success(&project.shell("otel-run bootstrap"));
    // The variables are not exported: both launchers export to the default
    // endpoint, localhost:4317, under the SDK's default service name.
    let mut runs = Vec::new();
    for launcher in ["otel-run", "opentelemetry-instrument"] {
        let Some(collector) = Collector::start_on(4317) else {
            return;
        };
        let script = with_launcher(VARIABLES, launcher, 4317);
        let (_, spans) = project.serve(&script, &|| Seen::all(&collector));
        runs.push((spans, metric_names(&collector)));
    }
    let ((ours, our_metrics), (anchor, anchor_metrics)) = (&runs[0], &runs[1]);
    show("seed 001, the document's variables", ours, anchor);
    eprintln!("  metrics: otel-run {our_metrics:?}\n  the anchor {anchor_metrics:?}");
    // OTEL_METRICS_EXPORTER=none is not exported either: both export the
    // instrumentations' metrics by default.
    assert!(!anchor_metrics.is_empty());
    assert!(
        our_metrics.is_superset(anchor_metrics),
        "{our_metrics:?} {anchor_metrics:?}"
    );
    assert_the_request("the anchor", anchor, "unknown_service:python");
    assert_the_request("otel-run", ours, "unknown_service:python");
    let unnamed = |spans: &[Seen]| -> Vec<Seen> {
        of_the_request(spans)
            .into_iter()
            .map(|s| Seen {
                service: String::new(),
                ..s
            })
            .collect()
    };
    assert_eq!(unnamed(ours), unnamed(anchor));
}
