//! `--trace-processes`: every process a command starts becomes a span, in one
//! tree under the process span, exported to a real collector. Loading the
//! tracepoints needs root and an otel-run built with clang.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{BIN, Collector, otel_run, root, tool, wait_for};

/// `otel-run --trace-processes FLAGS -- bash SCRIPT` exporting to `collector`,
/// run in `dir`.
fn run(collector: &Collector, dir: &Path, flags: &[&str], script: &str) -> Output {
    otel_run()
        .current_dir(dir)
        .args(["--traces-exporter", "otlp", "--exporter-otlp-endpoint"])
        .arg(format!("http://127.0.0.1:{}", collector.grpc))
        .args(["--service-name", "build"])
        .arg("--trace-processes")
        .args(flags)
        .args(["--", "bash", "-c", script])
        .output()
        .unwrap()
}

/// The spans once the process span of `bash` (otel-run's own) has arrived: it
/// is recorded after every process span.
fn spans_with_root(collector: &Collector) -> (Vec<Value>, Value) {
    let found = wait_for(Duration::from_secs(15), || {
        let spans = collector.spans();
        let root = spans
            .iter()
            .find(|s| s["scope"] == "otel-run" && s["name"] == "bash")?
            .clone();
        Some((spans, root))
    });
    found.unwrap_or_else(|| panic!("no process span: {:#?}", collector.spans()))
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one `{name}` span in {spans:#?}");
    found[0]
}

fn is_child_of(child: &Value, parent: &Value) -> bool {
    child["parentSpanId"] == parent["spanId"] && child["traceId"] == parent["traceId"]
}

fn ready() -> Option<Collector> {
    root()?;
    tool("clang")?;
    tool("make")?;
    tool("cc")?;
    Collector::start()
}

const MAKEFILE: &str = "\
all: a.o b.o broken.o

%.o: %.c
\tcc -c $< -o $@
";

#[test]
fn a_make_with_a_failing_step_a_pipe_and_a_background_job_is_one_tree() {
    let Some(collector) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Makefile"), MAKEFILE).unwrap();
    std::fs::write(dir.path().join("a.c"), "int a(void) { return 1; }\n").unwrap();
    std::fs::write(dir.path().join("b.c"), "int b(void) { return 2; }\n").unwrap();
    std::fs::write(dir.path().join("broken.c"), "int broken(void) { return }\n").unwrap();
    let script =
        "sleep 0.3 & make -k 2>&1 | tee build.log; status=${PIPESTATUS[0]}; wait; exit $status";
    let out = run(&collector, dir.path(), &[], script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "make's status: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Error 1"));
    let (spans, root) = spans_with_root(&collector);

    // One tree: every span but the root hangs under another span of the run.
    for span in &spans {
        if span["spanId"] == root["spanId"] {
            continue;
        }
        assert!(
            spans.iter().any(|p| is_child_of(span, p)),
            "{span:#} has no parent among the run's spans"
        );
        assert_eq!(span["scope"], "otel-run/processes");
        assert_eq!(span["resource"]["service.name"], "build");
    }
    let make = one(&spans, "make");
    let (tee, sleep) = (one(&spans, "tee"), one(&spans, "sleep"));
    for child in [make, tee, sleep] {
        assert!(is_child_of(child, &root), "{child:#} hangs under bash");
        assert_eq!(
            child["attributes"]["process.parent_pid"],
            root["attributes"]["process.pid"]
        );
    }
    assert_eq!(make["attributes"]["process.exit.code"], 2);
    assert_eq!(make["status"]["code"], 2, "make failed: status ERROR");
    assert_eq!(
        make["attributes"]["process.command_args"],
        json!(["make", "-k"])
    );
    assert_eq!(tee["attributes"]["process.exit.code"], 0);
    assert_eq!(
        sleep["attributes"]["process.command_args"],
        json!(["sleep", "0.3"])
    );
    assert!(
        make["attributes"]["process.executable.path"]
            .as_str()
            .unwrap()
            .ends_with("/make")
    );

    let compiles = named(&spans, "cc");
    assert_eq!(compiles.len(), 3, "{spans:#?}");
    for cc in &compiles {
        assert!(is_child_of(cc, make), "{cc:#} hangs under make");
        let args = &cc["attributes"]["process.command_args"];
        let source = args[2].as_str().unwrap();
        assert_eq!(
            *args,
            json!(["cc", "-c", source, "-o", source.replace(".c", ".o")])
        );
        let (code, status) = if source == "broken.c" { (1, 2) } else { (0, 0) };
        assert_eq!(cc["attributes"]["process.exit.code"], code, "{cc:#}");
        assert_eq!(
            cc["status"].get("code").map_or(0, |c| c.as_i64().unwrap()),
            status
        );
        // The compiler's own programs hang under their `cc`.
        assert!(
            spans.iter().any(|s| is_child_of(s, cc)),
            "cc runs cc1 and as under it: {spans:#?}"
        );
    }
}

#[test]
fn a_thousand_short_processes_are_exactly_a_thousand_spans() {
    let Some(collector) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &collector,
        dir.path(),
        &[],
        "for i in $(seq 1000); do /bin/true; done",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (spans, root) = spans_with_root(&collector);
    let trues = named(&spans, "true");
    assert_eq!(trues.len(), 1000);
    for t in &trues {
        assert!(is_child_of(t, &root));
        assert_eq!(t["attributes"]["process.exit.code"], 0);
    }
    let pids: std::collections::HashSet<_> = trues
        .iter()
        .map(|t| t["attributes"]["process.pid"].as_i64().unwrap())
        .collect();
    assert!(
        pids.len() > 900,
        "distinct processes, not one span repeated"
    );
}

#[test]
fn a_nested_otel_run_records_its_own_subtree_once() {
    let Some(collector) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script =
        format!("{BIN} --trace-processes -- sh -c '/bin/true nested; exit 0'; /bin/true outer");
    let out = run(&collector, dir.path(), &[], &script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (spans, root) = spans_with_root(&collector);
    // The nested otel-run's process span, under the outer bash it runs in (the
    // TRACEPARENT it was given).
    let nested = one(&spans, "sh");
    assert_eq!(nested["scope"], "otel-run");
    assert!(is_child_of(nested, &root));
    let trues = named(&spans, "true");
    assert_eq!(trues.len(), 2, "each `true` once: {spans:#?}");
    let inner = trues
        .iter()
        .find(|t| t["attributes"]["process.command_args"] == json!(["/bin/true", "nested"]))
        .unwrap();
    assert!(
        is_child_of(inner, nested),
        "recorded by the nested otel-run"
    );
    let outer = trues.iter().find(|t| *t != inner).unwrap();
    assert!(is_child_of(outer, &root));
}

#[test]
fn without_privilege_one_warning_and_the_command_runs_unchanged() {
    let Some(setpriv) = tool("setpriv") else {
        return;
    };
    if root().is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .current_dir(home.path())
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            "/dev/null",
        ])
        .args([
            "--trace-processes",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("otel-run:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("`--trace-processes`"), "{stderr}");
    assert!(warnings[0].contains("CAP_BPF"), "{stderr}");
    assert!(stderr.contains("hint: run otel-run as root"), "{stderr}");
    assert!(stderr.lines().any(|l| l == "err"), "{stderr}");
}

/// Threads that outlive the main one, and a thread that ends the process.
const THREADS_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *work(void *last) {
    usleep(last ? 50000 : 20000);
    if (last)
        exit(5);
    return NULL;
}

int main(void) {
    pthread_t t;
    for (int i = 0; i < 4; i++)
        pthread_create(&t, NULL, work, i == 3 ? &t : NULL);
    pthread_exit(NULL);
}
"#;

#[test]
fn threads_are_not_processes_and_the_last_one_gives_the_exit_code() {
    let Some(collector) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("threads.c"), THREADS_C).unwrap();
    let built = Command::new("cc")
        .current_dir(dir.path())
        .args(["-pthread", "-o", "threads", "threads.c"])
        .status()
        .unwrap();
    assert!(built.success());
    let out = run(&collector, dir.path(), &[], "./threads; echo $?");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    let (spans, root) = spans_with_root(&collector);
    let threads = one(&spans, "threads");
    assert!(is_child_of(threads, &root));
    assert_eq!(threads["attributes"]["process.exit.code"], 5);
    assert_eq!(threads["status"]["code"], 2);
    assert_eq!(spans.len(), 2, "bash and threads only: {spans:#?}");
}
