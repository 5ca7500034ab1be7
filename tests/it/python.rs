//! Python zero-code instrumentation, with real frameworks and instrumentations
//! from PyPI, compared with `opentelemetry-instrument` in the same environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    ConsoleFile, Server, apps_python, console_spans, console_spans_in, fixture, free_port,
    http_get, otel_run, wait_for,
};

fn apps_dir() -> PathBuf {
    fixture("python")
}

fn bin(python: &Path, name: &str) -> String {
    python.with_file_name(name).display().to_string()
}

/// How a test launches the app: through otel-run, or through the anchor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Launcher {
    OtelRun,
    OpentelemetryInstrument,
}

/// Where the launcher's spans end up.
struct Launched {
    server: Server,
    spans_file: PathBuf,
    launcher: Launcher,
    _dir: tempfile::TempDir,
}

impl Launched {
    fn spans(&self) -> Vec<Value> {
        match self.launcher {
            Launcher::OtelRun => console_spans(&self.spans_file),
            Launcher::OpentelemetryInstrument => {
                console_spans_in(&std::fs::read_to_string(&self.server.stdout).unwrap_or_default())
            }
        }
    }

    /// Waits until at least `n` spans arrived and no more come for a moment.
    fn settled_spans(&self, n: usize) -> Vec<Value> {
        let mut last = 0;
        let spans = wait_for(Duration::from_secs(20), || {
            let spans = self.spans();
            let settled = spans.len() >= n && spans.len() == last;
            last = spans.len();
            std::thread::sleep(Duration::from_millis(300));
            settled.then_some(spans)
        });
        spans.unwrap_or_else(|| {
            panic!(
                "expected {n} spans, got {:#?}\nstderr: {}",
                self.spans(),
                self.server.stderr_text()
            )
        })
    }
}

/// Starts `argv` (run in the fixtures directory) on `port` under `launcher`.
fn launch(
    launcher: Launcher,
    python: &Path,
    argv: &[String],
    port: u16,
    env: &[(&str, String)],
) -> Launched {
    let dir = tempfile::tempdir().unwrap();
    let spans_file = dir.path().join("spans.json");
    let mut command = match launcher {
        Launcher::OtelRun => {
            let mut c = otel_run();
            c.args([
                "--traces-exporter",
                "console",
                "--console-output",
                spans_file.to_str().unwrap(),
            ]);
            c.arg("--");
            c
        }
        Launcher::OpentelemetryInstrument => {
            let mut c = otel_run();
            // The same clean environment, without otel-run itself in the way.
            c.env("OTEL_TRACES_EXPORTER", "console");
            let program = bin(python, "opentelemetry-instrument");
            let mut anchor = Command::new(program);
            for (k, v) in c.get_envs() {
                match v {
                    Some(v) => anchor.env(k, v),
                    None => anchor.env_remove(k),
                };
            }
            anchor
        }
    };
    command
        .args(argv)
        .current_dir(apps_dir())
        .env("OTEL_SERVICE_NAME", "python-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let server = Server::start(command, port, dir.path());
    Launched {
        server,
        spans_file,
        launcher,
        _dir: dir,
    }
}

/// A span reduced to what must be equal between two runs: name, kind, its
/// parent's name, its attribute keys and the values that do not vary.
fn shape(span: &Value, all: &[Value]) -> String {
    let parent = all
        .iter()
        .find(|p| {
            Some(p["context"]["span_id"].as_str()) == Some(span["parent_id"].as_str())
                && !span["parent_id"].is_null()
        })
        .map_or("-".to_string(), |p| p["name"].as_str().unwrap().to_string());
    let attributes = span["attributes"].as_object().unwrap();
    let stable = [
        "http.route",
        "http.request.method",
        "http.method",
        "http.response.status_code",
        "http.status_code",
        "db.system",
        "db.system.name",
    ];
    let described: Vec<String> = attributes
        .iter()
        .map(|(k, v)| {
            if stable.contains(&k.as_str()) {
                format!("{k}={v}")
            } else {
                k.clone()
            }
        })
        .collect();
    format!(
        "{} [{}] <- {} {{{}}}",
        span["name"].as_str().unwrap(),
        span["kind"].as_str().unwrap(),
        parent,
        described.join(", ")
    )
}

fn shapes(spans: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for span in spans
        .iter()
        .filter(|s| s["resource"]["attributes"]["telemetry.sdk.name"] != "otel-run")
    {
        *out.entry(shape(span, spans)).or_insert(0) += 1;
    }
    out
}

/// An app and the requests a comparison sends it.
struct Scenario {
    /// argv for a port.
    argv: Box<dyn Fn(u16) -> Vec<String>>,
    env: Vec<(&'static str, String)>,
    routes: &'static [(&'static str, u16)],
    /// Spans the requests produce, to wait for.
    spans: usize,
}

/// The spans of `scenario` run under `launcher`.
fn scenario_spans(launcher: Launcher, python: &Path, scenario: &Scenario) -> Vec<Value> {
    let port = free_port();
    let db = tempfile::tempdir().unwrap();
    let mut env = scenario.env.clone();
    env.push(("DOWNSTREAM_URL", format!("http://127.0.0.1:{port}/")));
    // Each run starts from an empty database, so both make the same queries.
    env.push((
        "DJANGO_DB_PATH",
        db.path().join("db.sqlite3").display().to_string(),
    ));
    let mut app = launch(launcher, python, &(scenario.argv)(port), port, &env);
    for (path, status) in scenario.routes {
        assert_eq!(http_get(port, path), *status, "{path}");
    }
    let spans = app.settled_spans(scenario.spans);
    app.server.stop();
    spans
}

/// Runs `scenario` under otel-run and under opentelemetry-instrument in the same
/// venv, and asserts the spans have the same shapes; returns otel-run's.
fn same_spans_as_opentelemetry_instrument(python: &Path, scenario: &Scenario) -> Vec<Value> {
    let ours = scenario_spans(Launcher::OtelRun, python, scenario);
    let theirs = scenario_spans(Launcher::OpentelemetryInstrument, python, scenario);
    assert_eq!(shapes(&ours), shapes(&theirs));
    ours
}

#[test]
fn flask_app_gets_the_spans_opentelemetry_instrument_gives_it() {
    let Some(python) = apps_python() else { return };
    let interpreter = bin(&python, "python");
    let scenario = Scenario {
        argv: Box::new(move |port| {
            vec![interpreter.clone(), "flask_app.py".into(), port.to_string()]
        }),
        env: Vec::new(),
        routes: &[
            ("/", 200),
            ("/users/7", 200),
            ("/outbound", 200),
            ("/db", 200),
            ("/fail", 500),
        ],
        // 5 server spans, a client span and the downstream server span, SQL spans.
        spans: 9,
    };
    let ours = same_spans_as_opentelemetry_instrument(&python, &scenario);
    let names: Vec<&str> = ours.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for expected in [
        "GET /users/<int:user_id>",
        "GET /outbound",
        "GET",
        "GET /db",
        "GET /fail",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(
        ours.iter()
            .any(|s| s["attributes"]["db.system"] == "sqlite"),
        "SQL spans: {names:?}"
    );
}

#[test]
fn fastapi_app_gets_the_spans_opentelemetry_instrument_gives_it() {
    let Some(python) = apps_python() else { return };
    let uvicorn = bin(&python, "uvicorn");
    let scenario = Scenario {
        argv: Box::new(move |port| {
            vec![
                uvicorn.clone(),
                "fastapi_app:app".into(),
                "--port".into(),
                port.to_string(),
            ]
        }),
        env: Vec::new(),
        routes: &[("/", 200), ("/items/5?q=x", 200)],
        // Each request: a SERVER span and two `http send` spans.
        spans: 6,
    };
    let ours = same_spans_as_opentelemetry_instrument(&python, &scenario);
    assert!(
        ours.iter()
            .any(|s| s["name"] == "GET /items/{item_id}" && s["kind"] == "SpanKind.SERVER")
    );
}

#[test]
fn django_app_gets_the_spans_opentelemetry_instrument_gives_it() {
    let Some(python) = apps_python() else { return };
    let interpreter = bin(&python, "python");
    let scenario = Scenario {
        argv: Box::new(move |port| {
            let address = format!("127.0.0.1:{port}");
            vec![
                interpreter.clone(),
                "django_site/manage.py".into(),
                "runserver".into(),
                address,
                "--noreload".into(),
            ]
        }),
        // opentelemetry-instrument needs the settings module before start-up.
        env: vec![
            ("DJANGO_SETTINGS_MODULE", "mysite.settings".into()),
            (
                "PYTHONPATH",
                apps_dir().join("django_site").display().to_string(),
            ),
        ],
        routes: &[("/", 200), ("/articles/3/", 200)],
        // A start-up query, two server spans, the article's three queries.
        spans: 6,
    };
    let ours = same_spans_as_opentelemetry_instrument(&python, &scenario);
    assert!(
        ours.iter().any(|s| s["name"] == "GET articles/<int:pk>/"),
        "{ours:#?}"
    );
}

/// Serves the Flask app with `argv`, sends `requests` requests, returns the spans.
fn serve_flask(python: &Path, argv: &[String], port: u16, requests: usize) -> Vec<Value> {
    let mut app = launch(Launcher::OtelRun, python, argv, port, &[]);
    for i in 0..requests {
        assert_eq!(http_get(port, &format!("/users/{i}")), 200);
    }
    let spans = app.settled_spans(requests);
    app.server.stop();
    spans
        .into_iter()
        .filter(|s| s["kind"] == "SpanKind.SERVER")
        .collect()
}

#[test]
fn flask_run_is_instrumented() {
    let Some(python) = apps_python() else { return };
    let port = free_port();
    let argv = [
        bin(&python, "flask"),
        "--app".into(),
        "flask_app".into(),
        "run".into(),
        "-p".into(),
        port.to_string(),
    ];
    let spans = serve_flask(&python, &argv, port, 3);
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0]["attributes"]["http.route"], "/users/<int:user_id>");
    assert_eq!(
        spans[0]["parent_id"],
        Value::Null,
        "a request without traceparent starts its own trace"
    );
}

#[test]
fn gunicorn_workers_each_export_their_spans() {
    let Some(python) = apps_python() else { return };
    for preload in [false, true] {
        let port = free_port();
        let mut argv = vec![
            bin(&python, "gunicorn"),
            "-w".into(),
            "2".into(),
            "-b".into(),
            format!("127.0.0.1:{port}"),
            // gunicorn 27 shares one control socket path between all instances.
            "--no-control-socket".into(),
        ];
        if preload {
            argv.push("--preload".into());
        }
        argv.push("flask_app:app".into());
        let spans = serve_flask(&python, &argv, port, 12);
        assert_eq!(
            spans.len(),
            12,
            "preload={preload}: one span per request, none lost or doubled"
        );
    }
}

#[test]
fn uvicorn_workers_are_instrumented() {
    let Some(python) = apps_python() else { return };
    let port = free_port();
    let argv = [
        bin(&python, "uvicorn"),
        "fastapi_app:app".into(),
        "--port".into(),
        port.to_string(),
        "--workers".into(),
        "2".into(),
    ];
    let mut app = launch(Launcher::OtelRun, &python, &argv, port, &[]);
    for i in 0..6 {
        assert_eq!(http_get(port, &format!("/items/{i}")), 200);
    }
    let spans = app.settled_spans(6);
    app.server.stop();
    let servers: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SpanKind.SERVER")
        .collect();
    assert_eq!(servers.len(), 6, "{spans:#?}");
    assert_eq!(servers[0]["name"], "GET /items/{item_id}");
}

#[test]
fn django_runserver_with_its_reloader_is_instrumented() {
    let Some(python) = apps_python() else { return };
    let port = free_port();
    let db = tempfile::tempdir().unwrap();
    let argv = [
        bin(&python, "python"),
        "django_site/manage.py".into(),
        "runserver".into(),
        format!("127.0.0.1:{port}"),
    ];
    let env = [(
        "DJANGO_DB_PATH",
        db.path().join("db.sqlite3").display().to_string(),
    )];
    let mut app = launch(Launcher::OtelRun, &python, &argv, port, &env);
    assert_eq!(http_get(port, "/articles/3/"), 200);
    assert_eq!(http_get(port, "/"), 200);
    let spans = app.settled_spans(2);
    app.server.stop();
    let names: Vec<&str> = spans
        .iter()
        .filter(|s| s["kind"] == "SpanKind.SERVER")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{spans:#?}");
    assert!(names.iter().any(|n| n.contains("articles")), "{names:?}");
}

/// Runs a short program under otel-run (console output to a file).
fn run_program(argv: &[String], env: &[(&str, &str)]) -> (std::process::Output, Vec<Value>) {
    let console = ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .arg("--")
        .args(argv)
        .current_dir(apps_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out, console.spans())
}

/// A plain HTTP server to call, not traced.
fn target_server() -> Server {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap().keep();
    let mut command = Command::new("python3");
    command
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&dir);
    Server::start(command, port, &dir)
}

#[test]
fn a_scripts_work_is_parented_to_the_process_span() {
    let Some(python) = apps_python() else { return };
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let (out, spans) = run_program(&[bin(&python, "python"), "script.py".into(), url], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let process = spans
        .iter()
        .find(|s| s["name"] == "python")
        .expect("process span");
    let client = spans
        .iter()
        .find(|s| {
            s["kind"] == "SpanKind.CLIENT"
                && s["attributes"].get("db.system").is_none()
                && s["name"] == "GET"
        })
        .expect("requests span");
    assert_eq!(client["parent_id"], process["context"]["span_id"]);
    assert_eq!(
        client["context"]["trace_id"],
        process["context"]["trace_id"]
    );
    let sql = spans
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("SELECT")))
        .expect("sqlite3 span");
    assert_eq!(sql["parent_id"], process["context"]["span_id"]);
}

#[test]
fn a_python_subprocess_is_instrumented_once() {
    let Some(python) = apps_python() else { return };
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let program = format!(
        "import subprocess, sys; subprocess.run([sys.executable, 'script.py', '{url}'], check=True)"
    );
    let (out, spans) = run_program(&[bin(&python, "python"), "-c".into(), program], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clients: Vec<&Value> = spans.iter().filter(|s| s["name"] == "GET").collect();
    assert_eq!(clients.len(), 1, "one span for one request: {spans:#?}");
}

#[test]
fn disabled_instrumentations_and_excluded_urls_are_honoured() {
    let Some(python) = apps_python() else { return };
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let argv = [bin(&python, "python"), "script.py".into(), url];
    let (_, spans) = run_program(
        &argv,
        &[("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "requests,urllib3")],
    );
    assert!(spans.iter().all(|s| s["name"] != "GET"), "{spans:#?}");
    assert!(
        spans
            .iter()
            .any(|s| s["name"].as_str().is_some_and(|n| n.starts_with("SELECT")))
    );

    let port = free_port();
    let argv = [
        bin(&python, "python"),
        "flask_app.py".into(),
        port.to_string(),
    ];
    let mut app = launch(
        Launcher::OtelRun,
        &python,
        &argv,
        port,
        &[("OTEL_PYTHON_EXCLUDED_URLS", "users/.*".into())],
    );
    assert_eq!(http_get(port, "/users/1"), 200);
    assert_eq!(http_get(port, "/"), 200);
    let spans = app.settled_spans(1);
    app.server.stop();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /"], "the excluded URL has no span");
}

#[test]
fn the_users_own_sitecustomize_still_runs() {
    let Some(python) = apps_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sitecustomize.py"),
        "import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n",
    )
    .unwrap();
    let argv = [bin(&python, "python"), "-c".into(), "import os, sqlite3; print(os.environ.get('USER_SITECUSTOMIZE')); sqlite3.connect(':memory:').cursor().execute('SELECT 1')".into()];
    let (out, spans) = run_program(&argv, &[("PYTHONPATH", dir.path().to_str().unwrap())]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ran\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        spans.iter().any(|s| s["name"] == "SELECT"),
        "still instrumented: {spans:#?}"
    );
}

#[test]
fn without_the_sdk_the_program_runs_and_otel_run_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("bare");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    let python = venv.join("bin/python");
    let program =
        "import subprocess, sys; print('ok'); subprocess.run([sys.executable, '-c', 'print(2)'])";
    let (out, _) = run_program(
        &[python.display().to_string(), "-c".into(), program.into()],
        &[],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n2\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "the OpenTelemetry SDK is not installed for `{}`",
            python.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: `otel-run bootstrap --python {}` installs it",
            python.display()
        )),
        "{err}"
    );
}

#[test]
fn without_instrumentations_otel_run_says_so_once() {
    // The SDK venv has the SDK and exporters, and no instrumentation package.
    let Some(python) = crate::util::python() else {
        return;
    };
    let program =
        "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import logging'])";
    let (out, _) = run_program(
        &[python.display().to_string(), "-c".into(), program.into()],
        &[],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains("no OpenTelemetry instrumentation package is installed"),
        "{err}"
    );
}

#[test]
fn semantic_convention_opt_in_reaches_the_instrumentations() {
    let Some(python) = apps_python() else { return };
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let argv = [bin(&python, "python"), "script.py".into(), url];
    let (_, spans) = run_program(&argv, &[("OTEL_SEMCONV_STABILITY_OPT_IN", "http")]);
    let client = spans
        .iter()
        .find(|s| s["name"] == "GET")
        .expect("requests span");
    assert_eq!(client["attributes"]["http.request.method"], "GET");
    assert!(
        client["attributes"].get("http.method").is_none(),
        "{client:#?}"
    );
}

#[test]
fn log_records_are_exported_when_logging_instrumentation_is_on() {
    let Some(python) = apps_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs.jsonl");
    let program = "import logging; logging.getLogger('shop').warning('order %s failed', 42)";
    let out = otel_run()
        .args([
            "--logs-exporter",
            "console",
            "--console-output",
            logs.to_str().unwrap(),
        ])
        .args(["--", &bin(&python, "python"), "-c", program])
        .env("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Printed as Python's ConsoleLogRecordExporter prints a record; the
    // instrumentation's own notices are exported too, as the anchor does.
    let records = console_spans(&logs);
    let log = records
        .iter()
        .find(|r| r["body"] == "order 42 failed")
        .unwrap_or_else(|| panic!("no record of the warning: {records:#?}"));
    assert_eq!(log["severity_text"], "WARN");
    assert_eq!(log["severity_number"], 13);
}

/// The script's spans under a runner: parented to the runner's process span.
fn check_runner(argv: &[String], cwd: &Path, env: &[(&str, String)]) {
    let target = target_server();
    let url = format!("http://127.0.0.1:{}/", target.port);
    let console = ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .arg("--")
        .args(argv)
        .arg(apps_dir().join("script.py"))
        .arg(&url)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no warning about the runner's own Python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = console.spans();
    let process = spans
        .iter()
        .find(|s| s["parent_id"].is_null())
        .expect("the runner's process span");
    for name in ["GET", "SELECT"] {
        let span = spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {spans:#?}"));
        assert_eq!(span["parent_id"], process["context"]["span_id"], "{name}");
    }
}

#[test]
fn uv_run_is_instrumented() {
    let (Some(tools), Some(python)) = (crate::util::python_tools(), apps_python()) else {
        return;
    };
    let argv = [
        bin(&tools, "uv"),
        "run".into(),
        "--no-project".into(),
        "--python".into(),
        bin(&python, "python"),
    ];
    check_runner(&argv, &apps_dir(), &[("UV_OFFLINE", "1".into())]);
}

#[test]
fn poetry_run_is_instrumented() {
    let (Some(tools), Some(python)) = (crate::util::python_tools(), apps_python()) else {
        return;
    };
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        "[project]\nname = \"demo\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\n[tool.poetry]\npackage-mode = false\n",
    )
    .unwrap();
    let venv = python.parent().unwrap().parent().unwrap();
    let env = [
        ("VIRTUAL_ENV", venv.display().to_string()),
        (
            "PATH",
            format!(
                "{}:{}",
                python.parent().unwrap().display(),
                std::env::var("PATH").unwrap()
            ),
        ),
        ("POETRY_VIRTUALENVS_CREATE", "false".into()),
        (
            "POETRY_CACHE_DIR",
            project.path().join("cache").display().to_string(),
        ),
    ];
    check_runner(
        &[bin(&tools, "poetry"), "run".into(), "python".into()],
        project.path(),
        &env,
    );
}

#[test]
fn psycopg_queries_get_the_spans_opentelemetry_instrument_gives_them() {
    let (Some(python), Some(postgres)) = (apps_python(), crate::util::Postgres::start()) else {
        return;
    };
    let argv = [bin(&python, "python"), "pg_script.py".into()];
    let env = [("PG_DSN", postgres.dsn())];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (out, ours) = run_program(&argv, &env_refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same program under the anchor, which prints its spans on stdout.
    let anchor = otel_run()
        .get_envs()
        .fold(
            Command::new(bin(&python, "opentelemetry-instrument")),
            |mut c, (k, v)| {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
                c
            },
        )
        .env("OTEL_TRACES_EXPORTER", "console")
        .args(&argv)
        .current_dir(apps_dir())
        .envs(env_refs.iter().copied())
        .output()
        .unwrap();
    assert!(
        anchor.status.success(),
        "{}",
        String::from_utf8_lossy(&anchor.stderr)
    );
    let theirs = console_spans_in(&String::from_utf8_lossy(&anchor.stdout));
    // The process span is otel-run's; the queries hang under it, as roots do for the anchor.
    let strip_parent = |spans: &[Value]| -> Vec<Value> {
        spans
            .iter()
            .filter(|s| s["resource"]["attributes"]["telemetry.sdk.name"] != "otel-run")
            .map(|s| {
                let mut s = s.clone();
                s["parent_id"] = Value::Null;
                s
            })
            .collect()
    };
    assert_eq!(shapes(&strip_parent(&ours)), shapes(&strip_parent(&theirs)));
    let queries: Vec<&Value> = ours
        .iter()
        .filter(|s| s["attributes"]["db.system"] == "postgresql")
        .collect();
    assert_eq!(queries.len(), 3, "{ours:#?}");
}

/// Every field of a span the program makes reaches otel-run's exporters as the
/// SDK holds it, through the shim's compact encoding as marshal data (a value
/// marshal refuses, an IntEnum, as its int) or as JSON, and a batch JSON cannot
/// carry (a bytes value) still arrives, as OTLP/JSON, its NaN as text.
#[test]
fn a_programs_spans_arrive_whole_in_either_encoding() {
    let Some(python) = apps_python() else { return };
    let program = r#"
import sys
from opentelemetry import trace
t = trace.get_tracer("demo", "1.2")
with t.start_as_current_span("outer", attributes={"s": "x\u00e9", "i": 3, "f": 1.0, "b": True, "l": ("a", "b"), "n": [1, 2]}) as outer:
    outer.add_event("ev", {"k": 1})
    with t.start_as_current_span("inner", links=[trace.Link(outer.get_span_context(), {"why": "test"})]) as inner:
        inner.set_status(trace.Status(trace.StatusCode.ERROR, "bad"))
trace.get_tracer_provider().force_flush()
if sys.argv[1:] == ["odd"]:
    import enum
    class Level(enum.IntEnum):
        HIGH = 3
    with t.start_as_current_span("odd", attributes={"raw": b"\x00\x01", "level": Level.HIGH, "i": 4}):
        pass
if sys.argv[1:] == ["json"]:
    # As under an interpreter whose marshal otel-run's probe finds different.
    sys.modules["otel_run_traces"]._MARSHAL_WRITES_AS_READ = False
    with t.start_as_current_span("odd", attributes={"raw": b"\x00\x01", "nan": float("nan"), "i": 4}):
        pass
"#;
    for argv in [vec![], vec!["odd".to_owned()], vec!["json".to_owned()]] {
        let mut args = vec![bin(&python, "python"), "-c".into(), program.into()];
        args.extend(argv.iter().cloned());
        let (out, spans) = run_program(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let span = |name: &str| {
            spans
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
        };
        let outer = span("outer");
        let a = &outer["attributes"];
        assert_eq!(a["s"], "xé");
        assert_eq!(a["i"], 3);
        assert!(a["f"].is_f64() && a["f"] == 1.0, "{a}");
        assert_eq!(a["b"], true);
        assert_eq!(a["l"], serde_json::json!(["a", "b"]));
        assert_eq!(a["n"], serde_json::json!([1, 2]));
        assert_eq!(outer["events"][0]["name"], "ev");
        assert_eq!(outer["events"][0]["attributes"]["k"], 1);
        assert_eq!(
            outer["resource"]["attributes"]["telemetry.sdk.language"],
            "python"
        );
        let inner = span("inner");
        assert_eq!(inner["parent_id"], outer["context"]["span_id"]);
        assert_eq!(inner["context"]["trace_id"], outer["context"]["trace_id"]);
        assert_eq!(inner["status"]["status_code"], "ERROR");
        assert_eq!(inner["status"]["description"], "bad");
        assert_eq!(
            inner["links"][0]["context"]["span_id"],
            outer["context"]["span_id"]
        );
        assert_eq!(inner["links"][0]["attributes"]["why"], "test");
        if !argv.is_empty() {
            let odd = span("odd");
            assert_eq!(odd["attributes"]["i"], 4, "{odd:#}");
            assert!(!odd["attributes"]["raw"].is_null(), "{odd:#}");
            if argv[0] == "odd" {
                assert_eq!(odd["attributes"]["level"], 3, "{odd:#}");
            } else {
                assert_eq!(odd["attributes"]["nan"], "nan", "{odd:#}");
            }
        }
    }
}

/// A tracer an instrumentor took before any provider was set is the API's
/// proxy: its first span starts otel-run's provider, and from then on its
/// spans (and the proxies' measurements) pass through none of otel-run's
/// proxy code: the proxy has the real tracer's methods, and the proxies'
/// start-on-use wrappers are gone.
#[test]
fn once_started_the_api_proxies_no_longer_pass_through_otel_run() {
    let Some(python) = apps_python() else { return };
    let program = r#"
import sys
from opentelemetry import trace
from opentelemetry.metrics._internal import instrument
proxy = trace.ProxyTracer("taken-early")
with proxy.start_as_current_span("first"):
    pass
instrument._ProxyCounter("made-early").add(1)
seen = set()
def profile(frame, event, arg):
    if event == "call":
        seen.add((frame.f_globals.get("__name__"), frame.f_code.co_name))
sys.setprofile(profile)
with proxy.start_as_current_span("second"):
    pass
instrument._ProxyCounter("made-early").add(1)
sys.setprofile(None)
# otel_run_api's use_span is the API's own, replaced: not the proxies' code.
passed = {name for module, name in seen if module == "otel_run_api"}
print("proxy code:", sorted(passed - {"use_span", "__init__", "__enter__", "__exit__"}))
print("tracer bound:", type(vars(proxy)["start_as_current_span"].__self__).__module__)
print("counter:", instrument._ProxyCounter.add.__module__)
"#;
    let args = [bin(&python, "python"), "-c".into(), program.into()];
    let (out, spans) = run_program(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(
        names.contains(&"first") && names.contains(&"second"),
        "{names:?}"
    );
    assert!(stdout.contains("proxy code: []\n"), "{stdout}");
    assert!(
        stdout.contains("tracer bound: opentelemetry.sdk.trace\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("counter: opentelemetry.metrics._internal.instrument\n"),
        "{stdout}"
    );
}
