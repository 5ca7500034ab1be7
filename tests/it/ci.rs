//! CI pipelines: CI/CD attributes, nested steps as one trace, `otel-run env`.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::util::{BIN, Collector, assert_success, console_spans, otel_run, tool};

/// The variables GitHub Actions sets for a job.
const GITHUB: &[(&str, &str)] = &[
    ("CI", "true"),
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_WORKFLOW", "CI"),
    ("GITHUB_RUN_ID", "9001"),
    ("GITHUB_RUN_ATTEMPT", "1"),
    ("GITHUB_JOB", "test"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_REPOSITORY", "acme/shop"),
    ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ("GITHUB_REF_NAME", "main"),
];

#[test]
fn nested_steps_under_github_actions_form_one_tree_with_cicd_attributes() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
    // make → a script → a test step that fails; each level is an otel-run call.
    let level3 = format!("{BIN} --span-name unit-tests -- sh -c 'exit 1'");
    let level2 = format!("{BIN} --span-name run-tests -- sh -c \"{level3} || true\"");
    let out = otel_run()
        .envs(GITHUB.iter().copied())
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .args([
            "--service-name",
            "shop-ci",
            "--span-name",
            "build",
            "--attr",
            "team=payments",
        ])
        .args(["--", "sh", "-c", &level2])
        .output()
        .unwrap();
    assert_success(&out);
    let spans = collector.wait_spans(3);
    let find = |name: &str| crate::util::span_named(&spans, name);
    let (build, run, unit) = (find("build"), find("run-tests"), find("unit-tests"));
    assert_eq!(
        build["parentSpanId"],
        Value::Null,
        "the job's top step is the root"
    );
    assert_eq!(run["parentSpanId"], build["spanId"]);
    assert_eq!(unit["parentSpanId"], run["spanId"]);
    for span in [build, run, unit] {
        assert_eq!(span["traceId"], build["traceId"]);
        let a = &span["attributes"];
        assert_eq!(a["cicd.pipeline.name"], "CI");
        assert_eq!(a["cicd.pipeline.run.id"], "9001");
        assert_eq!(
            a["cicd.pipeline.run.url.full"],
            "https://github.com/acme/shop/actions/runs/9001/attempts/1"
        );
        assert_eq!(a["cicd.pipeline.task.name"], "test");
        assert_eq!(
            a["vcs.ref.head.revision"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(span["resource"]["service.name"], "shop-ci");
    }
    assert_eq!(
        unit["attributes"]["cicd.pipeline.task.run.result"],
        "failure"
    );
    assert_eq!(
        build["attributes"]["cicd.pipeline.task.run.result"],
        "success"
    );
    assert_eq!(build["attributes"]["team"], "payments");
}

#[test]
fn without_ci_there_are_no_cicd_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("spans.json");
    let out = otel_run()
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env_remove("JENKINS_URL")
        .env_remove("BUILDKITE")
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            output.to_str().unwrap(),
            "true",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let spans = console_spans(&output);
    let keys: Vec<&String> = spans[0]["attributes"].as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| !k.starts_with("cicd.")), "{keys:?}");
}

/// `otel-run env` with values that need quoting, as the given format.
fn env_output(format: &str, service_name: &str) -> String {
    let out = otel_run()
        .env_remove("OTEL_TRACES_EXPORTER")
        .env(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .args(["env", "--format", format])
        .args(["--service-name", service_name])
        .args(["--exporter-otlp-headers", "api-key=s3cr%20et,x-team=a"])
        .args(["--resource-attributes", "deployment.environment=prod"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The variables `otel-run env` sets, from its JSON output.
fn expected(service_name: &str) -> BTreeMap<String, String> {
    let json: Value = serde_json::from_str(&env_output("json", service_name)).unwrap();
    let vars: BTreeMap<String, String> = json
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(vars["OTEL_SERVICE_NAME"], service_name);
    assert_eq!(
        vars["OTEL_EXPORTER_OTLP_HEADERS"], "api-key=s3cr%20et,x-team=a",
        "secrets where they must be"
    );
    assert_eq!(
        vars["TRACEPARENT"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    vars
}

/// What a shell's environment holds after running `script`: `env -0`, parsed.
fn environment_after(shell: &str, args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(shell)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_success(&out);
    out.stdout
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            (k.starts_with("OTEL_") || k == "TRACEPARENT").then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

const TRICKY: &str = "it's \"$HOME\" `id` \\ back\nslash";

#[test]
fn sh_output_sourced_in_real_shells_sets_exactly_the_variables() {
    let expected = expected(TRICKY);
    let script = env_output("sh", TRICKY);
    for shell in ["sh", "bash"] {
        let got = environment_after(shell, &["-c", &format!("{script}\nenv -0")]);
        assert_eq!(got, expected, "{shell}");
    }
}

#[test]
fn fish_output_sourced_in_fish_sets_exactly_the_variables() {
    if tool("fish").is_none() {
        return;
    }
    let expected = expected(TRICKY);
    let script = env_output("fish", TRICKY);
    let got = environment_after("fish", &["--no-config", "-c", &format!("{script}\nenv -0")]);
    assert_eq!(got, expected);
}

#[test]
fn dotenv_output_read_by_a_shell_sets_exactly_the_variables() {
    let expected = expected(TRICKY);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("otel.env");
    std::fs::write(&file, env_output("dotenv", TRICKY)).unwrap();
    let got = environment_after(
        "sh",
        &["-c", &format!("set -a; . '{}'; env -0", file.display())],
    );
    assert_eq!(got, expected);
}

/// Reads `$GITHUB_ENV` lines as GitHub's runner documents them: `K=V`, or
/// `K<<DELIMITER` followed by lines up to the delimiter.
fn parse_github_env(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            vars.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            vars.insert(name.to_string(), value.to_string());
        }
    }
    vars
}

#[test]
fn github_output_holds_multi_line_values() {
    assert_eq!(
        parse_github_env(&env_output("github", TRICKY)),
        expected(TRICKY)
    );
}

#[test]
fn gitlab_output_is_a_dotenv_report_and_refuses_multi_line_values() {
    let single = "shop api";
    let text = env_output("gitlab", single);
    let parsed: BTreeMap<String, String> = text
        .lines()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unwrap()
        })
        .collect();
    assert_eq!(parsed, expected(single));
    let out = otel_run()
        .args(["env", "--format", "gitlab", "--service-name", "a\nb"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`OTEL_SERVICE_NAME` has a multi-line value")
    );
}

#[test]
fn env_never_shows_secrets_in_diagnostics() {
    let out = otel_run()
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret")
        .env("OTEL_BSP_SCHEDULE_DELAY", "soon")
        .args(["-v", "env"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
}

/// A proxy is for the commands run later, each under its own otel-run: the job's
/// span does not depend on the proxy's settings.
#[test]
fn env_starts_the_jobs_trace_whatever_the_proxy_settings() {
    let mut otel_run = otel_run();
    otel_run.env("OTEL_RUN_PROXY", "not-a-mapping");
    assert_env_starts_a_trace(otel_run);
}

/// `otel-run env --traceparent` succeeds and prints a TRACEPARENT.
fn assert_env_starts_a_trace(mut otel_run: Command) {
    let out = otel_run.args(["env", "--traceparent"]).output().unwrap();
    assert_success(&out);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("00-"));
}

#[test]
fn env_starts_the_jobs_trace_whatever_bytes_its_arguments_hold() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.toml"));
    std::fs::write(&config, "service_name = \"job\"\n").unwrap();
    let mut otel_run = otel_run();
    otel_run.arg("--config").arg(&config);
    assert_env_starts_a_trace(otel_run);
}

#[test]
fn env_starts_the_jobs_trace_with_a_root_span_that_steps_hang_under() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("spans.json");
    let console = [
        "--traces-exporter",
        "console",
        "--console-output",
        output.to_str().unwrap(),
    ];
    let out = otel_run()
        .envs(GITHUB.iter().copied())
        .args(["env", "--traceparent"])
        .args(console)
        .output()
        .unwrap();
    assert_success(&out);
    let traceparent = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A later step of the job, with the job's environment.
    let out = otel_run()
        .envs(GITHUB.iter().copied())
        .env("TRACEPARENT", &traceparent)
        .args(console)
        .args(["--span-name", "step", "true"])
        .output()
        .unwrap();
    assert_success(&out);
    let spans = console_spans(&output);
    let root = spans
        .iter()
        .find(|s| s["name"] == "test")
        .expect("the job's root span, named after the job");
    let step = spans
        .iter()
        .find(|s| s["name"] == "step")
        .expect("the step");
    assert_eq!(root["parent_id"], Value::Null);
    assert_eq!(step["parent_id"], root["context"]["span_id"]);
    let root_id = root["context"]["span_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    assert!(traceparent.contains(root_id), "{traceparent}");
}

#[test]
fn env_traceparent_inside_a_step_is_the_steps_own() {
    let out = otel_run()
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            "/dev/null",
        ])
        .args([
            "sh",
            "-c",
            &format!("echo $TRACEPARENT; {BIN} env --traceparent"),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1]);
}

#[test]
fn fail_on_export_error_turns_lost_telemetry_into_a_failure() {
    let endpoint = format!("http://127.0.0.1:{}", crate::util::free_port());
    let run = |extra: &[&str], script: &str| {
        otel_run()
            .args([
                "--traces-exporter",
                "otlp",
                "--exporter-otlp-endpoint",
                &endpoint,
            ])
            .args(extra)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    };
    assert_eq!(
        run(&[], "exit 0").status.code(),
        Some(0),
        "by default the step's own status"
    );
    let out = run(&["--fail-on-export-error"], "exit 0");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be exported"));
    assert_eq!(
        run(&["--fail-on-export-error"], "exit 3").status.code(),
        Some(3),
        "a failing step keeps its code"
    );
}
