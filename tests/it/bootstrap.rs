//! `otel-run bootstrap` against the real indexes (PyPI, npm, Maven Central) in
//! throwaway environments, and against a local package index built from real
//! PyPI wheels where the newest release line is incomplete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    ConsoleFile, Server, assert_success, fixture, free_port, http_get, otel_run, python_tools,
    tool, wait_for,
};

/// The libraries of the user's app, as they pinned them.
const APP_LIBRARIES: [&str; 3] = ["flask==3.1.3", "requests==2.32.5", "sqlalchemy==2.0.44"];

enum Installer {
    Pip,
    /// A uv venv: no pip in it, uv on PATH.
    Uv(PathBuf),
}

struct Venv {
    dir: tempfile::TempDir,
    installer: Installer,
}

impl Venv {
    fn python(&self) -> PathBuf {
        self.dir.path().join("bin/python")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.path().join("bin").join(name)
    }

    /// PATH for otel-run: uv's directory only for a uv venv, so the pip venv
    /// is bootstrapped with its own pip.
    fn path_env(&self) -> String {
        let base = "/usr/local/bin:/usr/bin:/bin";
        let node = tool("node")
            .and_then(|n| n.parent().map(|p| p.display().to_string()))
            .unwrap_or_default();
        match &self.installer {
            Installer::Pip => format!("{node}:{base}"),
            Installer::Uv(uv) => format!("{}:{node}:{base}", uv.parent().unwrap().display()),
        }
    }

    /// Installs `packages` the way the user would (not through otel-run).
    fn install(&self, packages: &[&str]) {
        let out = match &self.installer {
            Installer::Pip => Command::new(self.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(packages)
                .output(),
            Installer::Uv(uv) => Command::new(uv)
                .args(["pip", "install", "--quiet", "--python"])
                .arg(self.python())
                .args(packages)
                .output(),
        }
        .unwrap();
        assert_success(&out);
    }

    /// Every distribution and its version, read by the venv's own Python.
    fn distributions(&self) -> BTreeMap<String, String> {
        let out = Command::new(self.python())
            .args([
                "-c",
                "import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version for d in m.distributions()}))",
            ])
            .output()
            .unwrap();
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `pip check`, or `uv pip check` where there is no pip.
    fn check(&self) {
        let out = match &self.installer {
            Installer::Pip => Command::new(self.python())
                .args(["-m", "pip", "check"])
                .output(),
            Installer::Uv(uv) => Command::new(uv)
                .args(["pip", "check", "--python"])
                .arg(self.python())
                .output(),
        }
        .unwrap();
        assert_success(&out);
    }

    fn bootstrap(&self, args: &[&str]) -> Output {
        otel_run()
            .arg("bootstrap")
            .args(args)
            .env("PATH", self.path_env())
            .env_remove("VIRTUAL_ENV")
            .env_remove("PIP_INDEX_URL")
            .env_remove("UV_INDEX_URL")
            .output()
            .unwrap()
    }
}

/// A new venv made by pip's `venv` module or by uv, or a skip.
fn venv(uv: bool) -> Option<Venv> {
    let python3 = tool("python3")?;
    let dir = tempfile::tempdir().unwrap();
    let installer = if uv {
        let uv = python_tools()?.with_file_name("uv");
        let out = Command::new(&uv)
            .args(["venv", "--quiet", "--python"])
            .arg(&python3)
            .arg(dir.path())
            .output()
            .unwrap();
        assert_success(&out);
        Installer::Uv(uv)
    } else {
        let out = Command::new(&python3)
            .args(["-m", "venv"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_success(&out);
        Installer::Pip
    };
    Some(Venv { dir, installer })
}

/// Serves the Flask fixture with `flask run` under otel-run, calls a route that
/// uses requests and one that uses SQLAlchemy, and returns the spans.
fn flask_spans(venv: &Venv) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let console = ConsoleFile::new();
    let port = free_port();
    let mut command = otel_run();
    command
        .args(console.flags())
        .args(["--bsp-schedule-delay", "100", "--"])
        .arg(venv.bin("flask"))
        .args(["--app", "flask_app", "run", "-p", &port.to_string()])
        .current_dir(fixture("python"));
    let mut server = Server::start(command, port, dir.path());
    assert_eq!(http_get(port, "/outbound"), 200);
    assert_eq!(http_get(port, "/db"), 200);
    let spans = wait_for(Duration::from_secs(20), || {
        let spans = console.spans();
        let servers = spans.iter().filter(|s| s["kind"] == "SpanKind.SERVER");
        (servers.count() >= 3).then_some(spans)
    });
    server.stop();
    spans.unwrap_or_else(|| {
        panic!(
            "spans: {:#?}\nstderr: {}",
            console.spans(),
            server.stderr_text()
        )
    })
}

fn bootstrap_flask_requests_sqlalchemy(uv: bool) {
    let Some(venv) = venv(uv) else { return };
    venv.install(&APP_LIBRARIES);
    let before = venv.distributions();

    let out = venv.bootstrap(&["--", venv.bin("flask").to_str().unwrap()]);
    assert_success(&out);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("installed"), "{report}");

    venv.check();
    let after = venv.distributions();
    for (name, version) in &before {
        assert_eq!(after.get(name), Some(version), "{name} moved: {report}");
    }
    for instrumentation in ["flask", "requests", "sqlalchemy", "wsgi", "urllib3"] {
        let name = format!("opentelemetry-instrumentation-{instrumentation}");
        assert!(after.contains_key(&name), "{name} missing: {report}");
    }
    // One line for all of them.
    let line = &after["opentelemetry-instrumentation"];
    for (name, version) in &after {
        if name.starts_with("opentelemetry-instrumentation-") && !name.ends_with("-v2") {
            assert_eq!(version, line, "{name}");
        }
    }

    let spans = flask_spans(&venv);
    let server = spans
        .iter()
        .find(|s| s["name"] == "GET /outbound")
        .unwrap_or_else(|| panic!("no Flask span: {spans:#?}"));
    assert_eq!(server["attributes"]["http.route"], "/outbound");
    let client = spans
        .iter()
        .find(|s| {
            s["kind"] == "SpanKind.CLIENT"
                && s["context"]["trace_id"] == server["context"]["trace_id"]
        })
        .unwrap_or_else(|| panic!("no requests span in the Flask span's trace: {spans:#?}"));
    // The instrumentations' default (old) HTTP conventions, or the stable ones.
    let method = &client["attributes"];
    assert!(
        method["http.method"] == "GET" || method["http.request.method"] == "GET",
        "{client:#}"
    );
    let url = method["http.url"].as_str().or(method["url.full"].as_str());
    assert!(
        url.is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "the requests span names the URL it fetched: {client:#}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s["attributes"]["db.system"] == "sqlite"
                || s["attributes"]["db.system.name"] == "sqlite"),
        "no SQLAlchemy span: {spans:#?}"
    );
}

#[test]
fn a_pip_venv_gets_flask_requests_and_sqlalchemy_instrumented_in_one_resolve() {
    bootstrap_flask_requests_sqlalchemy(false);
}

#[test]
fn a_uv_venv_without_pip_is_bootstrapped_with_uv() {
    bootstrap_flask_requests_sqlalchemy(true);
}

/// A package index on loopback: a directory per project with real wheels from
/// PyPI, served by Python's http.server (whose listings are simple-API pages).
struct LocalIndex {
    dir: tempfile::TempDir,
    server: std::process::Child,
    port: u16,
}

impl LocalIndex {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Downloads `requirements` (with their dependencies unless `no_deps`).
    fn add(&self, python: &Path, requirements: &[&str], no_deps: bool) {
        let download = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "--dest"])
        .arg(download.path())
        .args(requirements);
        if no_deps {
            cmd.arg("--no-deps");
        }
        assert_success(&cmd.output().unwrap());
        for file in std::fs::read_dir(download.path()).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let project = name.split('-').next().unwrap().replace(['_', '.'], "-");
            let project_dir = self.dir.path().join(project.to_lowercase());
            std::fs::create_dir_all(&project_dir).unwrap();
            std::fs::copy(&file, project_dir.join(&name)).unwrap();
        }
    }
}

impl Drop for LocalIndex {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn local_index(python3: &Path) -> LocalIndex {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Command::new(python3)
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("http.server listens");
    LocalIndex { dir, server, port }
}

#[test]
fn an_incomplete_newest_line_on_the_index_gives_a_whole_older_one() {
    let Some(venv) = venv(false) else { return };
    let python3 = tool("python3").unwrap();
    venv.install(&["requests==2.32.5"]);
    let before = venv.distributions();

    // The index has release line 0.66b1 whole (with every dependency), and a
    // newer 0.66b2 whose urllib3 instrumentation was never published.
    let index = local_index(&python3);
    let line = |suffix: &str, instrumentations: &[&str], sdk: &str| -> Vec<String> {
        let mut r: Vec<String> = instrumentations
            .iter()
            .map(|i| format!("opentelemetry-instrumentation-{i}=={suffix}"))
            .collect();
        r.push(format!("opentelemetry-instrumentation=={suffix}"));
        r.push(format!("opentelemetry-semantic-conventions=={suffix}"));
        r.push(format!("opentelemetry-util-http=={suffix}"));
        r.push(format!("opentelemetry-sdk=={sdk}"));
        r.push(format!("opentelemetry-api=={sdk}"));
        r.push(format!("opentelemetry-exporter-otlp-proto-http=={sdk}"));
        r.push(format!("opentelemetry-exporter-otlp-proto-common=={sdk}"));
        r.push(format!("opentelemetry-proto=={sdk}"));
        r
    };
    let all = [
        "asyncio",
        "dbapi",
        "exceptions",
        "logging",
        "sqlite3",
        "threading",
        "urllib",
        "wsgi",
        "requests",
        "urllib3",
    ];
    let whole = line("0.66b1", &all, "1.45.1");
    let whole: Vec<&str> = whole.iter().map(String::as_str).collect();
    index.add(&python3, &whole, false);
    index.add(&python3, &APP_LIBRARIES[1..2], false);
    let newer = line(
        "0.66b2",
        &["wsgi", "requests", "dbapi", "logging"],
        "1.45.2",
    );
    let newer: Vec<&str> = newer.iter().map(String::as_str).collect();
    index.add(&python3, &newer, true);

    let url = index.url();
    let python = venv.python();
    let args = [
        "--python",
        python.to_str().unwrap(),
        "--index-url",
        &url,
        "--exporter-otlp-protocol",
        "http/protobuf",
    ];
    let dry = venv.bootstrap(&[&args[..], &["--dry-run", "--format", "json"]].concat());
    assert_success(&dry);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["python"]["line"], "0.66b1", "{plan:#}");
    assert_eq!(plan["python"]["skipped_lines"][0]["line"], "0.66b2");
    let reasons = plan["python"]["skipped_lines"][0]["reasons"].to_string();
    assert!(
        reasons.contains("opentelemetry-instrumentation-urllib3==0.66b2"),
        "{reasons}"
    );
    assert_eq!(venv.distributions(), before, "a dry run changes nothing");

    let out = venv.bootstrap(&args);
    assert_success(&out);
    venv.check();
    let after = venv.distributions();
    assert_eq!(after["opentelemetry-instrumentation-urllib3"], "0.66b1");
    assert_eq!(after["opentelemetry-instrumentation-requests"], "0.66b1");
    assert_eq!(after["opentelemetry-sdk"], "1.45.1");
    for (name, version) in &before {
        assert_eq!(after.get(name), Some(version), "{name} moved");
    }
}

/// Whether an installed distribution is one of OpenTelemetry's packages that
/// follow the release line (not one versioned on its own, like `-openai-v2`).
fn of_a_line(name: &str, version: &str) -> bool {
    name.starts_with("opentelemetry-")
        && (version.starts_with("0.")
            || name == "opentelemetry-api"
            || name == "opentelemetry-sdk"
            || name.starts_with("opentelemetry-exporter-otlp")
            || name == "opentelemetry-proto")
}

#[test]
fn the_tutorials_distro_venv_moves_to_one_whole_line_and_a_second_bootstrap_installs_nothing() {
    // The tutorial: `pip install opentelemetry-distro` (0.66b2, a line PyPI has
    // only in part) and the app's flask, then bootstrap in the active venv.
    let Some(venv) = venv(false) else { return };
    venv.install(&["opentelemetry-distro==0.66b2", "flask==3.1.3"]);
    let before = venv.distributions();
    let active = |args: &[&str]| {
        otel_run()
            .arg("bootstrap")
            .args(args)
            .env("VIRTUAL_ENV", venv.dir.path())
            .env(
                "PATH",
                format!("{}:{}", venv.bin("").display(), venv.path_env()),
            )
            .env_remove("PIP_INDEX_URL")
            .env_remove("UV_INDEX_URL")
            .output()
            .unwrap()
    };

    // What a run would warn about, doctor says first; with a collector that answers.
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "http://127.0.0.1:{}",
        collector.local_addr().unwrap().port()
    );
    let doctor = || {
        let mut doctor = otel_run();
        for signal in ["TRACES", "METRICS", "LOGS"] {
            doctor.env(format!("OTEL_{signal}_EXPORTER"), "otlp");
        }
        let out = doctor
            .args(["--exporter-otlp-endpoint", &endpoint, "doctor", "--"])
            .arg(venv.python())
            .arg("app.py")
            .output()
            .unwrap();
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text[text.find("problems:").expect("a problems section")..].to_string()
    };
    let problems = doctor();
    assert!(
        problems.contains("flask 3.1.3 (opentelemetry-instrumentation-flask)"),
        "{problems}"
    );
    // The shim sends every signal to the agent itself: no exporter package is
    // a problem for a run through it.
    assert!(!problems.contains("is not installed"), "{problems}");

    let dry = active(&["--dry-run", "--format", "json"]);
    assert_success(&dry);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let line = plan["python"]["line"].as_str().unwrap().to_string();
    let sdk = plan["python"]["install"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "opentelemetry-sdk")
        .map(|r| {
            r["spec"]
                .as_str()
                .unwrap()
                .trim_start_matches("==")
                .to_string()
        })
        .unwrap_or_else(|| before["opentelemetry-sdk"].clone());
    // Each installed OpenTelemetry package off the chosen line is said to move.
    for (name, version) in before.iter().filter(|(n, v)| of_a_line(n, v)) {
        let target = if version.starts_with("0.") {
            &line
        } else {
            &sdk
        };
        if version != target {
            let moved = plan["python"]["install"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} {version} does not move: {plan:#}"));
            assert_eq!(moved["moved_from"], version.as_str(), "{plan:#}");
            assert_eq!(moved["spec"], format!("=={target}"), "{plan:#}");
        }
    }
    assert_eq!(venv.distributions(), before, "--dry-run changed nothing");

    let out = active(&[]);
    assert_success(&out);
    venv.check();
    let after = venv.distributions();
    assert_eq!(after["flask"], "3.1.3", "the user's flask stays");
    for (name, version) in before
        .iter()
        .filter(|(n, _)| !n.starts_with("opentelemetry-"))
    {
        assert_eq!(after.get(name), Some(version), "{name} moved");
    }
    assert!(
        after.contains_key("opentelemetry-instrumentation-flask"),
        "{after:?}"
    );
    for (name, version) in after.iter().filter(|(n, v)| of_a_line(n, v)) {
        let target = if version.starts_with("0.") {
            &line
        } else {
            &sdk
        };
        assert_eq!(version, target, "{name} is off the line {line}: {after:?}");
    }

    let again = active(&["--", "flask", "--version"]);
    assert_success(&again);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("nothing to install"), "{text}");
    assert_eq!(venv.distributions(), after);
    assert_eq!(
        doctor(),
        "problems: none\n",
        "after bootstrap a run has nothing to warn about"
    );
}

#[test]
fn versions_outside_the_supported_range_are_reported_and_a_conflict_changes_nothing() {
    let Some(venv) = venv(false) else { return };
    // SQLAlchemy 2.1 is newer than its instrumentation supports; protobuf 3
    // is older than the OTLP exporter accepts, so the install cannot resolve.
    venv.install(&["sqlalchemy==2.1.0", "protobuf==3.20.3"]);
    let before = venv.distributions();
    let python = venv.python();

    let dry = venv.bootstrap(&[
        "--python",
        python.to_str().unwrap(),
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_success(&dry);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let libraries = plan["python"]["libraries"].as_array().unwrap();
    let sqlalchemy = libraries
        .iter()
        .find(|l| l["library"] == "sqlalchemy")
        .unwrap();
    assert_eq!(sqlalchemy["in_range"], false, "{plan:#}");
    let install = plan["python"]["install"].to_string();
    assert!(!install.contains("sqlalchemy"), "{install}");
    let text = venv.bootstrap(&["--python", python.to_str().unwrap(), "--requirements"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("# not instrumented: sqlalchemy 2.1.0"),
        "{text}"
    );

    let out = venv.bootstrap(&["--python", python.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("otel-run: error: Python: pip failed"), "{err}");
    assert!(err.contains("the environment is unchanged"), "{err}");
    assert_eq!(venv.distributions(), before);
    venv.check();
}

#[test]
fn no_interpreter_and_no_index_are_one_clear_error_each() {
    let out = otel_run()
        .args(["bootstrap", "--python", "/nonexistent/python3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no Python interpreter to bootstrap; tried: --python /nonexistent/python3 (not found)"
        ),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let Some(venv) = venv(false) else { return };
    let before = venv.distributions();
    let out = venv.bootstrap(&[
        "--python",
        venv.python().to_str().unwrap(),
        "--index-url",
        &format!("http://127.0.0.1:{}/simple/", free_port()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the package index http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("--index-url"), "{err}");
    assert_eq!(err.matches("otel-run: error:").count(), 1, "{err}");
    assert_eq!(venv.distributions(), before);
}

#[test]
fn a_node_app_gets_the_sdk_without_touching_package_json() {
    let Some(npm) = tool("npm") else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = fixture("node").join("no-otel");
    for file in ["package.json", "server.js"] {
        std::fs::copy(app.join(file), dir.path().join(file)).unwrap();
    }
    let out = Command::new(&npm)
        .args(["install", "--no-audit", "--no-fund", "--quiet"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    let package_json = std::fs::read(dir.path().join("package.json")).unwrap();

    let out = otel_run()
        .arg("bootstrap")
        .env_remove("VIRTUAL_ENV")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("installed @opentelemetry/auto-instrumentations-node@"),
        "{report}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("package.json")).unwrap(),
        package_json,
        "package.json is the user's"
    );
    let (spans, stderr) = crate::node::serve(dir.path(), dir.path());
    assert!(!stderr.contains("warn"), "{stderr}");
    crate::node::check_server_span(&spans);

    let again = otel_run()
        .args(["bootstrap", "--node"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_success(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already installed"));
}

#[test]
fn the_java_agent_is_downloaded_verified_and_found() {
    let Some(reference) = crate::util::peer(
        "OTEL_RUN_TEST_JAVA_AGENT",
        "the Java agent fetched by Maven",
    ) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let bootstrap = || {
        otel_run()
            .args(["bootstrap", "--java", "--java-agent-version", "2.33.1"])
            .env("XDG_DATA_HOME", data.path())
            .output()
            .unwrap()
    };
    let out = bootstrap();
    assert_success(&out);
    let jar = data
        .path()
        .join("otel-run/java/opentelemetry-javaagent.jar");
    assert!(
        std::fs::read(&jar).unwrap() == std::fs::read(&reference).unwrap(),
        "the jar is the one Maven resolved and checked"
    );
    let again = bootstrap();
    assert_success(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already installed"));

    let env = otel_run()
        .args(["env", "--format", "json", "--", "java", "-version"])
        .env("XDG_DATA_HOME", data.path())
        .output()
        .unwrap();
    assert_success(&env);
    let env: Value = serde_json::from_slice(&env.stdout).unwrap();
    assert_eq!(
        env["JAVA_TOOL_OPTIONS"],
        format!("-javaagent:{}", jar.display())
    );
}

#[test]
fn dotnet_is_checked_and_explained() {
    let empty = tempfile::tempdir().unwrap();
    let out = otel_run()
        .args(["bootstrap", "--dotnet"])
        .env("XDG_DATA_HOME", empty.path())
        .env("HOME", empty.path())
        .env_remove("OTEL_DOTNET_AUTO_HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("is not usable"), "{report}");
    // The release names the C library and the architecture.
    let musl = std::fs::read_dir("/lib").unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("ld-musl-")
    });
    let asset = format!(
        "opentelemetry-dotnet-instrumentation-linux-{}-{}.zip",
        if musl { "musl" } else { "glibc" },
        if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x64"
        }
    );
    assert!(report.contains(&asset), "{asset}\n{report}");
    assert!(report.contains("~/.otel-dotnet-auto"), "{report}");
    assert!(report.contains("OTEL_DOTNET_AUTO_HOME"), "{report}");
}

/// A private repository's credentials never show in what bootstrap prints, even
/// when it cannot reach the repository.
#[test]
fn repository_credentials_are_never_printed() {
    let port = crate::util::free_port();
    let data = tempfile::tempdir().unwrap();
    let java = otel_run()
        .args(["bootstrap", "--java", "--maven-repository"])
        .arg(format!(
            "http://builder:S3CRET-TOKEN@127.0.0.1:{port}/maven2"
        ))
        .env("XDG_DATA_HOME", data.path())
        .output()
        .unwrap();
    assert!(!java.status.success());
    if tool("node").is_none() {
        return;
    }
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("package.json"), r#"{"name":"app"}"#).unwrap();
    let node = otel_run()
        .args(["bootstrap", "--node"])
        .current_dir(app.path())
        .env(
            "npm_config_registry",
            format!("http://ci:S3CRET-TOKEN@127.0.0.1:{port}/"),
        )
        .output()
        .unwrap();
    assert!(!node.status.success());
    for out in [&java, &node] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("127.0.0.1"), "says where: {text}");
        assert!(!text.contains("S3CRET-TOKEN"), "{text}");
    }
}
