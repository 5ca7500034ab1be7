//! The users' documented flows (the tutorials otel-run was designed from), run as
//! their documents write them, with `otel-run` in place of
//! `opentelemetry-instrument`, side by side with the anchor in the same venv:
//! seed 004 here, seed 001 in `cars.rs`, seed 002 in `django.rs`. Seed 001's
//! flow ends in Jaeger's UI: `cars.rs` also runs it with `otel-run agent --ui`
//! where the document starts `jaeger-all-in-one`.

mod cars;
mod django;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    BIN, Collector, Server, apps_python, console_spans_in, default_signals, fixture, free_port,
    tool, wait_for,
};

/// What one run of seed 004's flow left: `output.log` as `tee` wrote it, what
/// `grep http.host output.log` printed, and the terminal's stderr.
struct Flow {
    output: String,
    grep: String,
    stderr: String,
    port: u16,
}

impl Flow {
    /// The spans of the program (not otel-run's own) in `output.log`.
    fn spans(&self) -> Vec<Value> {
        console_spans_in(&self.output)
            .into_iter()
            .filter(|s| s.get("context").is_some())
            .filter(|s| s["resource"]["attributes"]["telemetry.sdk.name"] != "otel-run")
            .collect()
    }

    /// The log records in `output.log`.
    fn logs(&self) -> Vec<Value> {
        console_spans_in(&self.output)
            .into_iter()
            .filter(|s| s.get("body").is_some())
            .collect()
    }

    /// What `grep http.host output.log` printed, the port masked.
    fn grep_lines(&self) -> Vec<String> {
        self.grep
            .lines()
            .map(|l| l.replace(&self.port.to_string(), "PORT"))
            .collect()
    }

    /// Each span name with the attribute keys of its spans.
    fn span_keys(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for span in self.spans() {
            let name = span["name"].as_str().unwrap().to_string();
            let attributes = span["attributes"].as_object().unwrap().keys().cloned();
            keys.entry(name).or_default().extend(attributes);
        }
        keys
    }
}

/// Seed 004, in the to-do app's directory, with `flask` from `venv` on PATH:
///
/// ```text
/// export OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true
/// LAUNCHER --traces_exporter console --metrics_exporter console --logs_exporter console \
///   --service_name todo flask run -p PORT | tee output.log
/// ```
///
/// then a task added in the browser (GET /, POST /add and its redirect), Ctrl-C
/// once the spans are on screen, and `cat output.log | grep http.host`.
///
/// The document's alternative sets the same with variables instead of flags
/// ([`ENV_VARIANT`]), its typo (`OTEL_LOG_EXPORTER`) and scheme-less endpoint included.
fn seed_004(launcher: &str, venv_bin: &Path, curl: &Path) -> Flow {
    seed_004_as(
        &format!(
            "{launcher} --traces_exporter console --metrics_exporter console --logs_exporter console \
             --service_name todo"
        ),
        venv_bin,
        curl,
    )
}

/// Seed 004's variables, word for word.
const ENV_VARIANT: &str = "OTEL_SERVICE_NAME=todo \
    OTEL_TRACES_EXPORTER=console \
    OTEL_METRICS_EXPORTER=console \
    OTEL_LOG_EXPORTER=console \
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=0.0.0.0:4317 \
    ELASTIC_APM_SERVER_ENDPOINT=0.0.0.0:4317 \
    ELASTIC_APM_SECRET_TOKEN=secret \
    OTEL_EXPORTER_OTLP_INSECURE=true";

/// Seed 004's flow with `command` (the launcher and its settings) before
/// `flask run -p PORT | tee output.log`.
fn seed_004_as(command: &str, venv_bin: &Path, curl: &Path) -> Flow {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("seeds/todo/app.py"), dir.path().join("app.py")).unwrap();
    let port = free_port();
    let mut shell = users_shell(
        &format!("{command} flask run -p {port} | tee output.log"),
        dir.path(),
        venv_bin,
    );
    shell.env("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true");
    let mut server = Server::start(shell, port, dir.path());
    let browse = |args: &[&str]| {
        let out = Command::new(curl)
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(browse(&[&format!("{base}/")]), "200");
    // The form's POST, and the browser following its redirect.
    assert_eq!(
        browse(&["-L", "-d", "task=milk", &format!("{base}/add")]),
        "200"
    );
    let output_log = dir.path().join("output.log");
    let read = || std::fs::read_to_string(&output_log).unwrap_or_default();
    let seen = wait_for(Duration::from_secs(30), || {
        let flow = Flow {
            output: read(),
            grep: String::new(),
            stderr: String::new(),
            port,
        };
        let names: Vec<String> = flow
            .spans()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        (names.iter().filter(|n| *n == "GET /").count() == 2 && names.contains(&"POST /add".into()))
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "{command}: the spans did not reach output.log:\n{}\nstderr:\n{}",
        read(),
        server.stderr_text()
    );
    ctrl_c(&mut server, command);
    let grep = Command::new("sh")
        .args(["-c", "cat output.log | grep http.host"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    Flow {
        output: read(),
        grep: String::from_utf8(grep.stdout).unwrap(),
        stderr: server.stderr_text(),
        port,
    }
}

/// Runs a flow under otel-run and under the anchor at once, `run` given the
/// launcher's command name: `(ours, anchor)`.
fn both<T: Send>(run: &(dyn Fn(&str) -> T + Sync)) -> (T, T) {
    std::thread::scope(|scope| {
        let ours = scope.spawn(|| run("otel-run"));
        let anchor = scope.spawn(|| run("opentelemetry-instrument"));
        (ours.join().unwrap(), anchor.join().unwrap())
    })
}

/// A span of the program's, as a side-by-side comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    name: String,
    /// SERVER, CLIENT, INTERNAL, ...
    kind: &'static str,
    /// Its parent's name, when the parent is one of the program's spans (under
    /// otel-run a root span's parent is otel-run's process span).
    parent: Option<String>,
    scope: String,
    service: String,
}

impl Seen {
    /// The program's spans (not otel-run's own) that reached `collector`.
    fn all(collector: &Collector) -> Vec<Seen> {
        let spans: Vec<Value> = collector
            .spans()
            .into_iter()
            .filter(|s| s["resource"]["telemetry.sdk.name"] != "otel-run")
            .collect();
        let name_of = |id: &Value| {
            spans
                .iter()
                .find(|s| !id.as_str().unwrap_or_default().is_empty() && s["spanId"] == *id)
                .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        };
        let mut seen: Vec<Seen> = spans
            .iter()
            .map(|s| Seen {
                name: s["name"].as_str().unwrap_or_default().to_string(),
                kind: match s["kind"].as_i64() {
                    Some(2) => "SERVER",
                    Some(3) => "CLIENT",
                    Some(4) => "PRODUCER",
                    Some(5) => "CONSUMER",
                    _ => "INTERNAL",
                },
                parent: name_of(&s["parentSpanId"]),
                scope: s["scope"].as_str().unwrap_or_default().to_string(),
                service: s["resource"]["service.name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        seen.sort();
        seen
    }

    /// The program's spans (not otel-run's own) in a Jaeger `/api/traces`
    /// answer, as Jaeger's UI shows them: its spans with their CHILD_OF
    /// reference, kind and scope tags, and their process's service.
    fn in_jaeger(answer: &Value) -> Vec<Seen> {
        let tag = |tags: &Value, key: &str| -> Option<String> {
            tags.as_array()?
                .iter()
                .find(|t| t["key"] == key)
                .and_then(|t| t["value"].as_str())
                .map(str::to_string)
        };
        let mut spans: Vec<(&Value, &Value)> = Vec::new();
        for trace in answer["data"].as_array().into_iter().flatten() {
            for span in trace["spans"].as_array().into_iter().flatten() {
                let process = &trace["processes"][span["processID"].as_str().unwrap_or_default()];
                if tag(&process["tags"], "telemetry.sdk.name").as_deref() != Some("otel-run") {
                    spans.push((span, process));
                }
            }
        }
        let name_of = |span: &Value| {
            let parent = span["references"]
                .as_array()?
                .iter()
                .find(|r| r["refType"] == "CHILD_OF")?;
            spans
                .iter()
                .find(|(s, _)| s["spanID"] == parent["spanID"])
                .map(|(s, _)| s["operationName"].as_str().unwrap_or_default().to_string())
        };
        let mut seen: Vec<Seen> = spans
            .iter()
            .map(|(span, process)| Seen {
                name: span["operationName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                kind: match tag(&span["tags"], "span.kind").as_deref() {
                    Some("server") => "SERVER",
                    Some("client") => "CLIENT",
                    Some("producer") => "PRODUCER",
                    Some("consumer") => "CONSUMER",
                    _ => "INTERNAL",
                },
                parent: name_of(span),
                scope: tag(&span["tags"], "otel.scope.name").unwrap_or_default(),
                service: process["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        seen.sort();
        seen
    }

    /// `spans` as the lines of a table: `name (kind) <- parent [scope] service`,
    /// with how many times each was seen.
    fn table(spans: &[Seen]) -> Vec<String> {
        let mut lines: BTreeMap<String, usize> = BTreeMap::new();
        for s in spans {
            let line = format!(
                "{} ({}) <- {} [{}] {}",
                s.name,
                s.kind,
                s.parent.as_deref().unwrap_or("-"),
                s.scope,
                s.service
            );
            *lines.entry(line).or_default() += 1;
        }
        lines
            .into_iter()
            .map(|(l, n)| format!("{n} x {l}"))
            .collect()
    }
}

/// The names of the program's metrics (not the SDK's about itself, nor
/// otel-run's own) that reached `collector`.
fn metric_names(collector: &Collector) -> BTreeSet<String> {
    let text = collector.raw_output();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.ends_with('}')) {
        let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
        for rm in data["resourceMetrics"].as_array().into_iter().flatten() {
            let resource = crate::util::flatten_attributes(&rm["resource"]["attributes"]);
            if resource["telemetry.sdk.name"] == "otel-run" {
                continue;
            }
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for metric in sm["metrics"].as_array().into_iter().flatten() {
                    let name = metric["name"].as_str().unwrap_or_default();
                    if !name.starts_with("otel.sdk.") {
                        names.insert(name.to_string());
                    }
                }
            }
        }
    }
    names
}

/// Prints what both launchers delivered, one table each (`--nocapture` shows
/// it: the figures of the issue's closing note).
fn show(flow: &str, ours: &[Seen], anchor: &[Seen]) {
    eprintln!("{flow}\n  otel-run:");
    for line in Seen::table(ours) {
        eprintln!("    {line}");
    }
    eprintln!("  opentelemetry-instrument:");
    for line in Seen::table(anchor) {
        eprintln!("    {line}");
    }
}

/// Seed 004's flow under both launchers: both print the document's one
/// `http.host` line per request, the same.
fn side_by_side(run: &(dyn Fn(&str) -> Flow + Sync)) -> (Flow, Flow) {
    let (ours, anchor) = both(run);
    assert_eq!(
        anchor.grep_lines().len(),
        3,
        "the anchor's grep: {}",
        anchor.grep
    );
    assert_eq!(
        ours.grep_lines(),
        anchor.grep_lines(),
        "grep http.host output.log\nstderr: {}",
        ours.stderr
    );
    (ours, anchor)
}

/// `script` run by `sh` in `dir` as the user's terminal runs it: the venv
/// activated (its `bin` first on PATH, then otel-run's), and no OTEL_* setting
/// but those the document sets.
fn users_shell(script: &str, dir: &Path, venv_bin: &Path) -> Command {
    let path = std::env::join_paths(
        [
            venv_bin.to_path_buf(),
            PathBuf::from(BIN).parent().unwrap().to_path_buf(),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv_bin.parent().unwrap());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("OTEL_") || matches!(&*name, "TRACEPARENT" | "TRACESTATE" | "BAGGAGE") {
            shell.env_remove(&key);
        }
    }
    default_signals(&mut shell);
    shell
}

/// Ctrl-C: SIGINT to the terminal's foreground job (the server's whole process
/// group), and the wait until every process of it has ended.
fn ctrl_c(server: &mut Server, what: &str) {
    let group = server.child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let gone = wait_for(Duration::from_secs(30), || {
        (!group_alive(group)).then_some(())
    });
    assert!(
        gone.is_some(),
        "{what}: still running after Ctrl-C: {}",
        server.stderr_text()
    );
    let _ = server.child.wait();
}

/// Whether any process is still in process group `group`.
fn group_alive(group: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so after the last
        // ')'. A zombie (the shell, until it is waited for) has ended.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<libc::pid_t>() == Ok(group)
    })
}

#[test]
fn seed_004_flask_todo_console_exporters_teed_and_grepped() {
    let (Some(python), Some(curl)) = (apps_python(), tool("curl")) else {
        return;
    };
    let venv_bin = python.parent().unwrap().to_path_buf();
    let (ours, anchor) = side_by_side(&|launcher| seed_004(launcher, &venv_bin, &curl));
    // The same spans, with the same attributes.
    assert_eq!(ours.span_keys(), anchor.span_keys());
    // The requests' log records are printed too, in the same shape.
    let request_logs = |flow: &Flow| -> Vec<BTreeSet<String>> {
        flow.logs()
            .iter()
            .filter(|l| l["body"].as_str().is_some_and(|b| b.contains(" HTTP/1.1")))
            .map(|l| l.as_object().unwrap().keys().cloned().collect())
            .collect()
    };
    assert_eq!(request_logs(&anchor).len(), 3, "{}", anchor.output);
    assert_eq!(request_logs(&ours), request_logs(&anchor));
    assert!(!ours.stderr.contains("panicked"), "{}", ours.stderr);
}

/// Seed 004's variables variant: the same spans and `grep http.host` lines as the
/// anchor, and the document's typo named with its fix.
#[test]
fn seed_004_with_the_documents_variables() {
    let (Some(python), Some(curl)) = (apps_python(), tool("curl")) else {
        return;
    };
    let venv_bin = python.parent().unwrap().to_path_buf();
    let (ours, anchor) = side_by_side(&|launcher| {
        seed_004_as(&format!("{ENV_VARIANT} {launcher}"), &venv_bin, &curl)
    });
    assert_eq!(ours.span_keys(), anchor.span_keys());
    assert!(
        ours.stderr.contains("OTEL_LOG_EXPORTER") && ours.stderr.contains("OTEL_LOGS_EXPORTER"),
        "the typo is named with its fix: {}",
        ours.stderr
    );
    assert!(!ours.stderr.contains("panicked"), "{}", ours.stderr);
}
