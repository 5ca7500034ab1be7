//! Runtime detection and injection for .NET, and the switches that override it.
//! These .NET tests use a fake automatic-instrumentation home and a stand-in
//! `dotnet` script that records the environment it was given, which is the whole
//! of the `instrument.sh` contract; tests/it/dotnet.rs runs a real CLR.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::{assert_success, otel_run};

/// An executable script that writes its environment to `$RECORD` and exits 0.
fn recorder(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "#!/bin/sh\nenv > \"$RECORD\"\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn recorded(file: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The layout of the .NET automatic instrumentation, empty files only.
fn dotnet_home(dir: &Path, rid: &str) -> PathBuf {
    layout(&dir.join("otel-dotnet-auto"), rid)
}

/// That layout at `home` itself.
fn layout(home: &Path, rid: &str) -> PathBuf {
    let home = home.to_path_buf();
    for file in [
        format!("{rid}/OpenTelemetry.AutoInstrumentation.Native.so"),
        "net/OpenTelemetry.AutoInstrumentation.StartupHook.dll".into(),
    ] {
        let path = home.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    home
}

fn run_recorded(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, BTreeMap<String, String>) {
    let record = program.with_file_name("recorded.env");
    let out = otel_run()
        .args(args)
        .arg("--")
        .arg(program)
        .env("RECORD", &record)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let env = if record.exists() {
        recorded(&record)
    } else {
        BTreeMap::new()
    };
    (out, env)
}

#[test]
fn dotnet_gets_the_profiler_and_keeps_existing_startup_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let home = dotnet_home(dir.path(), "linux-x64");
    let dotnet = dir.path().join("bin/dotnet");
    recorder(&dotnet);
    let (out, env) = run_recorded(
        &dotnet,
        &[
            "--dotnet-auto-home",
            home.to_str().unwrap(),
            "--traces-exporter",
            "console",
            "--console-output",
            "/dev/null",
        ],
        &[("DOTNET_STARTUP_HOOKS", "/app/hooks/Existing.dll")],
    );
    assert_success(&out);
    assert_eq!(env["CORECLR_ENABLE_PROFILING"], "1");
    assert_eq!(
        env["CORECLR_PROFILER"],
        "{918728DD-259F-4A6A-AC2B-B85E1B658318}"
    );
    assert_eq!(
        env["CORECLR_PROFILER_PATH"],
        home.join("linux-x64/OpenTelemetry.AutoInstrumentation.Native.so")
            .display()
            .to_string()
    );
    assert_eq!(
        env["DOTNET_STARTUP_HOOKS"],
        format!(
            "{}:/app/hooks/Existing.dll",
            home.join("net/OpenTelemetry.AutoInstrumentation.StartupHook.dll")
                .display()
        )
    );
    assert_eq!(env["OTEL_DOTNET_AUTO_HOME"], home.display().to_string());
    assert!(env["OTEL_EXPORTER_OTLP_ENDPOINT"].starts_with("http://127.0.0.1:"));
}

#[test]
fn a_dotnet_apphost_is_detected_by_its_dll_and_runtimeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let home = dotnet_home(dir.path(), "linux-x64");
    let app = dir.path().join("publish/Shop.Api");
    recorder(&app);
    std::fs::write(dir.path().join("publish/Shop.Api.dll"), "").unwrap();
    std::fs::write(dir.path().join("publish/Shop.Api.runtimeconfig.json"), "{}").unwrap();
    let (out, env) = run_recorded(
        &app,
        &[],
        &[("OTEL_DOTNET_AUTO_HOME", home.to_str().unwrap())],
    );
    assert_success(&out);
    assert_eq!(
        env.get("CORECLR_ENABLE_PROFILING").map(String::as_str),
        Some("1")
    );
}

#[test]
fn an_incomplete_dotnet_home_is_reported_once_and_nothing_is_injected() {
    let dir = tempfile::tempdir().unwrap();
    let home = dotnet_home(dir.path(), "linux-musl-arm64");
    let dotnet = dir.path().join("bin/dotnet");
    recorder(&dotnet);
    let (out, env) = run_recorded(
        &dotnet,
        &["--dotnet-auto-home", home.to_str().unwrap()],
        &[],
    );
    assert_success(&out);
    assert!(!env.contains_key("CORECLR_ENABLE_PROFILING"), "{env:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("is incomplete (missing"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn no_inject_and_runtime_none_keep_only_the_standard_variables() {
    let dir = tempfile::tempdir().unwrap();
    let home = dotnet_home(dir.path(), "linux-x64");
    let dotnet = dir.path().join("bin/dotnet");
    recorder(&dotnet);
    for switch in [["--no-inject", ""], ["--runtime", "none"]] {
        let args: Vec<&str> = switch.iter().copied().filter(|a| !a.is_empty()).collect();
        let mut all = vec!["--dotnet-auto-home", home.to_str().unwrap()];
        all.extend(args);
        let (out, env) = run_recorded(&dotnet, &all, &[]);
        assert_success(&out);
        assert!(!env.contains_key("CORECLR_ENABLE_PROFILING"), "{switch:?}");
        assert!(env.contains_key("TRACEPARENT"), "{switch:?}");
    }
}

#[test]
fn runtime_overrides_detection() {
    let dir = tempfile::tempdir().unwrap();
    let home = dotnet_home(dir.path(), "linux-x64");
    let tool = dir.path().join("bin/launcher");
    recorder(&tool);
    let (_, env) = run_recorded(
        &tool,
        &[
            "--runtime",
            "dotnet",
            "--dotnet-auto-home",
            home.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        env.get("CORECLR_ENABLE_PROFILING").map(String::as_str),
        Some("1")
    );
}

#[test]
fn doctor_shows_the_runtime_the_injection_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let dotnet = dir.path().join("bin/dotnet");
    recorder(&dotnet);
    let out = otel_run()
        .env("HOME", dir.path())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret")
        .args(["--no-agent", "doctor", "--"])
        .arg(&dotnet)
        .arg("run")
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("runtime:  .NET (detected)"), "{text}");
    assert!(
        text.contains("no OpenTelemetry .NET automatic instrumentation is set up"),
        "{text}"
    );
    assert!(
        text.contains("hint: get it from the opentelemetry-dotnet-instrumentation releases"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    let home = dotnet_home(dir.path(), "linux-x64");
    let out = otel_run()
        .args(["doctor", "--dotnet-auto-home", home.to_str().unwrap(), "--"])
        .arg(&dotnet)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CORECLR_ENABLE_PROFILING=1"), "{text}");
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<agent port>"),
        "{text}"
    );
    assert!(text.contains("problems: none"), "{text}");
}

/// Without a given home, otel-run's data directory comes first, then
/// `~/.otel-dotnet-auto` (the upstream installer's); doctor says which it took.
#[test]
fn the_upstream_installers_home_is_found_after_the_data_directory_and_doctor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let installed = layout(&dir.path().join(".otel-dotnet-auto"), "linux-x64");
    let data = dir.path().join("data");
    let dotnet = dir.path().join("bin/dotnet");
    recorder(&dotnet);
    let home_env = [
        ("HOME", dir.path().to_str().unwrap()),
        ("XDG_DATA_HOME", data.to_str().unwrap()),
    ];
    let (out, env) = run_recorded(&dotnet, &[], &home_env);
    assert_success(&out);
    assert_eq!(
        env["OTEL_DOTNET_AUTO_HOME"],
        installed.display().to_string()
    );
    let doctor = |expected: &Path, source: &str| {
        let out = otel_run()
            .envs(home_env)
            .args(["doctor", "--"])
            .arg(&dotnet)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = format!(
            "automatic instrumentation {} ({source})",
            expected.display()
        );
        assert!(text.contains(&line), "{line}\n{text}");
    };
    doctor(&installed, "where otel-dotnet-auto-install.sh puts it");
    let own = layout(&data.join("otel-run/dotnet"), "linux-x64");
    let (_, env) = run_recorded(&dotnet, &[], &home_env);
    assert_eq!(env["OTEL_DOTNET_AUTO_HOME"], own.display().to_string());
    doctor(&own, "in otel-run's data directory");
}

/// The example program built with opentelemetry-rust (`examples/rust-otlp`).
fn rust_example() -> Option<PathBuf> {
    crate::util::peer(
        "OTEL_RUN_TEST_RUST_EXAMPLE",
        "the Rust example program (`.ci/run` builds examples/rust-otlp)",
    )
}

#[test]
fn a_rust_program_reads_the_standard_environment_and_joins_the_process_span() {
    let Some(program) = rust_example() else {
        return;
    };
    let console = crate::util::ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .args(["--service-name", "rust-test", "--"])
        .arg(&program)
        .output()
        .unwrap();
    assert_success(&out);
    let spans = console.spans();
    let find = |name: &str| crate::util::span_named(&spans, name);
    let (process, work, step) = (find("rust-otlp-example"), find("work"), find("step"));
    assert_eq!(work["parent_id"], process["context"]["span_id"]);
    assert_eq!(work["context"]["trace_id"], process["context"]["trace_id"]);
    assert_eq!(step["parent_id"], work["context"]["span_id"]);
    assert_eq!(
        work["resource"]["attributes"]["telemetry.sdk.language"],
        "rust"
    );
    assert_eq!(work["resource"]["attributes"]["service.name"], "rust-test");

    let doctor = otel_run()
        .args(["doctor", "--"])
        .arg(&program)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("runtime:  Rust (detected)"));
}

/// The Java agent, and `tests/fixtures/java/Server.java` compiled: the agent
/// stays off in JDK tools, the source launcher included.
fn java_agent_and_server() -> Option<(PathBuf, tempfile::TempDir)> {
    let agent = crate::util::peer(
        "OTEL_RUN_TEST_JAVA_AGENT",
        "the OpenTelemetry Java agent (`.ci/java/agent.sh`)",
    )?;
    let classes = tempfile::tempdir().unwrap();
    let javac = std::process::Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(crate::util::fixture("java/Server.java"))
        .output()
        .unwrap();
    assert_success(&javac);
    Some((agent, classes))
}

#[test]
fn a_java_server_is_instrumented_by_the_agent_from_maven_central() {
    let Some((agent, classes)) = java_agent_and_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.json");
    let port = crate::util::free_port();
    let mut command = otel_run();
    command
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            file.to_str().unwrap(),
        ])
        .args([
            "--service-name",
            "java-test",
            "--bsp-schedule-delay",
            "200",
            "--java-agent",
        ])
        .arg(&agent)
        .args(["--", "java", "-cp"])
        .arg(classes.path())
        .args(["Server", &port.to_string()])
        // Options the user had are kept.
        .env("JAVA_TOOL_OPTIONS", "-Dexample.kept=yes");
    let mut server = crate::util::Server::start(command, port, dir.path());
    assert_eq!(crate::util::http_get(port, "/outbound"), 200);
    // SIGTERM: the JVM's shutdown hooks let the agent flush.
    let spans = crate::util::wait_for(std::time::Duration::from_secs(30), || {
        let spans = crate::util::console_spans(&file);
        (spans
            .iter()
            .filter(|s| s["kind"] == "SpanKind.SERVER")
            .count()
            >= 2)
            .then_some(spans)
    })
    .unwrap_or_else(|| panic!("no spans: {}", server.stderr_text()));
    server.stop();
    let outbound = spans
        .iter()
        .find(|s| s["name"] == "GET /outbound")
        .expect("the SERVER span");
    assert_eq!(outbound["attributes"]["http.route"], "/outbound");
    assert_eq!(
        outbound["resource"]["attributes"]["telemetry.sdk.language"],
        "java"
    );
    assert_eq!(
        outbound["resource"]["attributes"]["service.name"],
        "java-test"
    );
    let client = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.CLIENT")
        .expect("the HttpClient span");
    assert_eq!(client["parent_id"], outbound["context"]["span_id"]);
    let stderr = server.stderr_text();
    assert!(
        stderr.contains("Picked up JAVA_TOOL_OPTIONS: -Dexample.kept=yes -javaagent:"),
        "{stderr}"
    );
}

#[test]
fn a_java_server_stops_on_one_sigterm_and_the_agent_flushes_its_spans() {
    let Some((agent, classes)) = java_agent_and_server() else {
        return;
    };
    let Some(collector) = crate::util::Collector::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = crate::util::free_port();
    let mut command = otel_run();
    command
        .args(["--traces-exporter", "otlp", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc))
        // Held in the agent's batch until its shutdown hook flushes it.
        .args([
            "--service-name",
            "java-test",
            "--bsp-schedule-delay",
            "60000",
        ])
        .arg("--java-agent")
        .arg(&agent)
        .args(["--", "java", "-cp"])
        .arg(classes.path())
        .args(["Server", &port.to_string()]);
    let mut server = crate::util::Server::start(command, port, dir.path());
    // A SERVER span ends after its response is sent, maybe after the SIGTERM that
    // follows at once; the CLIENT span of /outbound ends before /outbound answers.
    assert_eq!(crate::util::http_get(port, "/outbound"), 200);
    let status = server
        .terminate(false)
        .unwrap_or_else(|| panic!("still running after one SIGTERM: {}", server.stderr_text()));
    // The JVM runs its shutdown hooks, the agent's flush among them, and exits 143.
    assert!(
        crate::util::died_of_sigterm(&status),
        "{status:?}: {}",
        server.stderr_text()
    );
    let spans = collector.wait_spans(2);
    let client = spans
        .iter()
        .find(|s| s["resource"]["telemetry.sdk.language"] == "java" && s["kind"] == 3)
        .unwrap_or_else(|| panic!("no CLIENT span from the JVM: {spans:#?}"));
    assert_eq!(client["resource"]["service.name"], "java-test");
}

#[test]
fn doctor_shows_what_it_read_of_a_python_environment() {
    let Some(python) = crate::util::apps_python() else {
        return;
    };
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "http://127.0.0.1:{}",
        collector.local_addr().unwrap().port()
    );
    let out = otel_run()
        .args(EXPORT_ALL)
        .args(["--exporter-otlp-endpoint", &endpoint, "doctor", "--"])
        .arg(&python)
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("runtime:  Python (detected)"), "{text}");
    assert!(text.contains("OpenTelemetry SDK installed"), "{text}");
    let instrumentations = text
        .lines()
        .find(|l| l.trim_start().starts_with("instrumentations:"))
        .unwrap_or_default();
    for name in ["flask", "requests", "sqlalchemy"] {
        assert!(instrumentations.contains(name), "{instrumentations}");
    }
    // The venv has click (Flask's) but not its instrumentation: that is the
    // one problem; the endpoint answers and the propagators are installed.
    let problems = &text[text.find("problems:").expect("a problems section")..];
    assert!(
        problems.contains("installed without their instrumentation, so not traced: click "),
        "{problems}"
    );
    assert!(
        problems.contains("(opentelemetry-instrumentation-click)"),
        "{problems}"
    );
    assert!(!problems.contains("flask 3"), "{problems}");
    assert_eq!(problems.matches("\n  - ").count(), 1, "{problems}");
}

/// Every signal exported over OTLP (the tests' default is none).
const EXPORT_ALL: [&str; 6] = [
    "--traces-exporter",
    "otlp",
    "--metrics-exporter",
    "otlp",
    "--logs-exporter",
    "otlp",
];

/// `otel-run doctor` for the apps venv with these flags (every signal exported
/// over OTLP unless they say otherwise): its problems section.
fn doctor_problems(python: &Path, flags: &[&str]) -> String {
    let mut doctor = otel_run();
    for signal in ["TRACES", "METRICS", "LOGS"] {
        doctor.env(format!("OTEL_{signal}_EXPORTER"), "otlp");
    }
    let out = doctor
        .args(flags)
        .args(["doctor", "--"])
        .arg(python)
        .arg("app.py")
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text[text.find("problems:").expect("a problems section")..].to_string()
}

#[test]
fn doctor_finds_a_missing_propagator_and_an_endpoint_that_does_not_answer() {
    let Some(python) = crate::util::apps_python() else {
        return;
    };
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");

    let problems = doctor_problems(
        &python,
        &[
            "--exporter-otlp-endpoint",
            &endpoint,
            "--propagators",
            "tracecontext,baggage,vostok",
        ],
    );
    assert!(
        problems.contains("the propagator `vostok` of OTEL_PROPAGATORS is not installed"),
        "{problems}"
    );
    assert!(!problems.contains("`tracecontext`"), "{problems}");
    assert!(!problems.contains("no OTLP collector"), "{problems}");

    drop(collector);
    let problems = doctor_problems(&python, &["--exporter-otlp-endpoint", &endpoint]);
    let expected = format!(
        "no OTLP collector at {endpoint}/ (connection refused); traces, metrics, logs are dropped"
    );
    assert!(problems.contains(&expected), "{problems}");
    // A run says the same of that endpoint.
    let run = otel_run()
        .args(EXPORT_ALL)
        .args(["--exporter-otlp-endpoint", &endpoint, "--"])
        .arg(&python)
        .args([
            "-c",
            "from opentelemetry import trace; trace.get_tracer('t').start_span('s').end()",
        ])
        .output()
        .unwrap();
    assert_success(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("no OTLP collector at {endpoint}/")),
        "{stderr}"
    );

    let problems = doctor_problems(
        &python,
        &[
            "--metrics-exporter",
            "none",
            "--logs-exporter",
            "console",
            "--exporter-otlp-endpoint",
            "http://collector.invalid:4318",
        ],
    );
    assert!(
        problems.contains("no OTLP collector at http://collector.invalid:4318/ (the host name `collector.invalid` does not resolve); traces are dropped"),
        "{problems}"
    );
}
