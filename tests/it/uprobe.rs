//! `--uprobe`: calls of functions of unmodified native programs become spans.
//!
//! The programs are `examples/uprobe-c` (`work` calls `leaf`) and
//! `examples/uprobe-rust` (`handlers::handle` calls `handlers::parse`), built by
//! `.ci/run`; Go programs are in `uprobe_go.rs`. Loading probes needs root and an otel-run built with clang.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::{ConsoleFile, assert_success, attr, otel_run, peer, root, tool};

/// The C example, when probes can be loaded here.
fn c_example() -> Option<PathBuf> {
    root()?;
    tool("clang")?;
    peer("OTEL_RUN_TEST_UPROBE_C", "the examples/uprobe-c program")
}

fn rust_example() -> Option<PathBuf> {
    root()?;
    tool("clang")?;
    peer(
        "OTEL_RUN_TEST_UPROBE_RUST",
        "the examples/uprobe-rust program",
    )
}

pub(crate) fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

pub(crate) fn int(span: &Value, key: &str) -> i64 {
    attr(span, key)
        .as_i64()
        .unwrap_or_else(|| panic!("{key} in {span:#}"))
}

pub(crate) fn millis(span: &Value) -> f64 {
    let time = |key: &str| {
        humantime::parse_rfc3339(span[key].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    (time("end_time") - time("start_time")) * 1000.0
}

/// Every child span is parented to a span of `parents` in the same trace.
fn assert_nested(children: &[&Value], parents: &[&Value]) {
    for child in children {
        let parent = parents
            .iter()
            .find(|p| p["context"]["span_id"] == child["parent_id"])
            .unwrap_or_else(|| panic!("no parent for {child:#}"));
        assert_eq!(parent["context"]["trace_id"], child["context"]["trace_id"]);
        assert_eq!(attr(parent, "thread.id"), attr(child, "thread.id"));
    }
}

/// Runs `otel-run FLAGS -- PROGRAM ARGS` with the console exporter; returns its
/// output and the spans.
pub(crate) fn run(
    flags: &[&str],
    program: &Path,
    args: &[&str],
) -> (std::process::Output, Vec<Value>) {
    let console = ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .args(flags)
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    let spans = console.spans();
    (out, spans)
}

#[test]
fn c_calls_become_exactly_n_nested_spans_that_last_as_long_as_the_call() {
    let Some(work) = c_example() else { return };
    let (out, spans) = run(
        &["--uprobe", ":work", "--uprobe", ":leaf"],
        &work,
        &["7", "10"],
    );
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "work: 7 calls, sum 49\n"
    );
    let (works, leaves) = (named(&spans, "work"), named(&spans, "leaf"));
    // `work` is also the process span's name: it is the one with process.command.
    let (process, calls): (Vec<&Value>, Vec<&Value>) = works
        .into_iter()
        .partition(|s| s["attributes"].get("process.command").is_some());
    assert_eq!(process.len(), 1);
    assert_eq!(calls.len(), 7, "{spans:#?}");
    assert_eq!(leaves.len(), 7);
    let pid = int(process[0], "process.pid");
    for span in calls.iter().chain(&leaves) {
        assert_eq!(span["kind"], "SpanKind.INTERNAL");
        assert_eq!(int(span, "process.pid"), pid);
        assert!(int(span, "thread.id") > 0);
        assert_eq!(attr(span, "code.function.name"), &span["name"]);
        assert_eq!(
            span["resource"]["attributes"]["service.name"],
            "unknown_service:work"
        );
    }
    for call in &calls {
        assert!(call["parent_id"].is_null(), "top-level calls are roots");
        assert!(
            millis(call) >= 10.0,
            "a 10 ms call lasted {} ms",
            millis(call)
        );
    }
    assert_nested(&leaves, &calls);
    let traces: std::collections::HashSet<_> =
        calls.iter().map(|c| &c["context"]["trace_id"]).collect();
    assert_eq!(traces.len(), 7, "each top-level call is its own trace");
}

#[test]
fn rust_functions_are_named_by_their_demangled_path() {
    let Some(example) = rust_example() else {
        return;
    };
    let (out, spans) = run(
        &["--uprobe", ":uprobe_rust_example::handlers::*"],
        &example,
        &["5", "10"],
    );
    assert_success(&out);
    let handles = named(&spans, "uprobe_rust_example::handlers::handle");
    let parses = named(&spans, "uprobe_rust_example::handlers::parse");
    assert_eq!(handles.len(), 5, "{spans:#?}");
    assert_eq!(parses.len(), 5);
    assert_nested(&parses, &handles);
    for handle in &handles {
        assert!(millis(handle) >= 10.0, "{} ms", millis(handle));
    }
}

#[test]
fn uprobe_parent_process_hangs_calls_under_the_process_span() {
    let Some(work) = c_example() else { return };
    let (out, spans) = run(
        &["--uprobe", ":work", "--uprobe-parent", "process"],
        &work,
        &["3"],
    );
    assert_success(&out);
    let process = spans
        .iter()
        .find(|s| s["attributes"].get("process.command").is_some())
        .unwrap();
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s["attributes"].get("code.function.name").is_some())
        .collect();
    assert_eq!(calls.len(), 3);
    for call in calls {
        assert_eq!(call["parent_id"], process["context"]["span_id"]);
        assert_eq!(call["context"]["trace_id"], process["context"]["trace_id"]);
    }
}

#[test]
fn a_second_copy_outside_otel_run_produces_no_spans() {
    let Some(work) = c_example() else { return };
    // The bare copy calls `work` every 5 ms before, during and after the observed
    // run, until it is killed.
    let mut bare = Command::new(&work)
        .args(["100000", "5"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (out, spans) = run(&["--uprobe", ":work"], &work, &["10", "5"]);
    let bare_still_running = bare.try_wait().unwrap().is_none();
    bare.kill().ok();
    bare.wait().unwrap();
    assert_success(&out);
    assert!(bare_still_running, "the bare copy ended early");
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s["attributes"].get("code.function.name").is_some())
        .collect();
    assert_eq!(calls.len(), 10, "{calls:#?}");
    let bare_pid = i64::from(bare.id());
    assert!(calls.iter().all(|c| int(c, "process.pid") != bare_pid));
}

#[test]
fn descendants_are_followed_across_fork_and_exec() {
    let Some(work) = c_example() else { return };
    let Some(sh) = tool("sh") else { return };
    let script = format!("{w} 2; {w} 3", w = work.display());
    let target = format!("{}:work", work.display());
    let (out, spans) = run(&["--uprobe", &target], &sh, &["-c", &script]);
    assert_success(&out);
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s["attributes"].get("code.function.name").is_some())
        .collect();
    assert_eq!(calls.len(), 5, "{calls:#?}");
    let pids: std::collections::HashSet<i64> =
        calls.iter().map(|c| int(c, "process.pid")).collect();
    assert_eq!(pids.len(), 2, "two grandchildren: {pids:?}");
}

#[test]
fn a_missing_symbol_is_named_and_the_command_still_runs() {
    let Some(work) = c_example() else { return };
    let (out, spans) = run(&["--uprobe", ":no_such_function"], &work, &["2"]);
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "work: 2 calls, sum 4\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no function of") && stderr.contains("matches `no_such_function`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: `otel-run probes list"), "{stderr}");
    assert_eq!(stderr.matches("otel-run: warning").count(), 1, "{stderr}");
    assert_eq!(spans.len(), 1, "only the process span");
}

#[test]
fn a_stripped_binary_is_named_as_such() {
    let Some(work) = c_example() else { return };
    let Some(strip) = tool("strip") else { return };
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("work");
    std::fs::copy(&work, &stripped).unwrap();
    assert!(
        Command::new(strip)
            .arg(&stripped)
            .status()
            .unwrap()
            .success()
    );
    let (out, _) = run(&["--uprobe", ":work"], &stripped, &["1"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is stripped"), "{stderr}");
}

#[test]
fn without_privileges_the_command_runs_and_otel_run_says_why() {
    let Some(work) = c_example() else { return };
    let Some(setpriv) = tool("setpriv") else {
        return;
    };
    // Copies `nobody` can run wherever the checkout is (it may be under /root).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (bin, work_copy) = (dir.path().join("otel-run"), dir.path().join("work"));
    std::fs::copy(crate::util::BIN, &bin).unwrap();
    std::fs::copy(&work, &work_copy).unwrap();
    let out = otel_run()
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            "/dev/null",
        ])
        .args(["--uprobe", ":work", "--"])
        .arg(&work_copy)
        .arg("1")
        .output_as_nobody(&setpriv, &bin);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("need root or the CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
    assert!(stderr.contains("setcap"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "work: 1 calls, sum 1\n"
    );
}

/// Runs a prepared `otel-run` command as `nobody`, with no capabilities.
trait AsNobody {
    /// `program` stands for the command's own program.
    fn output_as_nobody(&mut self, setpriv: &Path, program: &Path) -> std::process::Output;
}

impl AsNobody for Command {
    fn output_as_nobody(&mut self, setpriv: &Path, program: &Path) -> std::process::Output {
        let mut wrapped = Command::new(setpriv);
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(program)
            .args(self.get_args());
        for (key, value) in self.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.output().unwrap()
    }
}

#[test]
fn probes_list_shows_what_a_pattern_matches() {
    // Listing reads the file: no root needed.
    let Some(example) = peer(
        "OTEL_RUN_TEST_UPROBE_RUST",
        "the examples/uprobe-rust program",
    ) else {
        return;
    };
    let out = otel_run()
        .args(["probes", "list"])
        .arg(&example)
        .arg("uprobe_rust_example::handlers::*")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "uprobe_rust_example::handlers::handle\nuprobe_rust_example::handlers::parse\n"
    );
    let out = otel_run()
        .args(["probes", "list"])
        .arg(&example)
        .arg("nothing::*")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no function of"), "{stderr}");
}

#[test]
fn probes_can_be_set_in_otel_run_toml() {
    let Some(work) = c_example() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("otel-run.toml"),
        "uprobe = [':work', ':leaf']\nuprobe_parent = 'process'\n",
    )
    .unwrap();
    let console = ConsoleFile::new();
    let out = otel_run()
        .current_dir(dir.path())
        .args(console.flags())
        .arg("--")
        .arg(&work)
        .arg("2")
        .output()
        .unwrap();
    assert_success(&out);
    let spans = console.spans();
    assert_eq!(named(&spans, "leaf").len(), 2, "{spans:#?}");
    let process = spans
        .iter()
        .find(|s| s["attributes"].get("process.command").is_some())
        .unwrap();
    let calls: Vec<_> = named(&spans, "work")
        .into_iter()
        .filter(|s| s["attributes"].get("code.function.name").is_some())
        .collect();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c["parent_id"] == process["context"]["span_id"])
    );
}

/// A ring buffer far too small for a burst of calls: what does not fit is
/// counted and reported once, and every call is either a span or counted.
#[test]
fn calls_that_find_the_ring_buffer_full_are_counted_and_reported() {
    let Some(work) = c_example() else { return };
    let calls = 20_000;
    let out = otel_run()
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            "/dev/null",
        ])
        .args(["--uprobe", ":work", "--uprobe", ":leaf"])
        .args([
            "--uprobe-buffer-size",
            "4096",
            "--bsp-max-queue-size",
            "100000",
        ])
        .args(["-v", "--"])
        .arg(&work)
        .arg(calls.to_string())
        .output()
        .unwrap();
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    // The number that starts otel-run's line ending in `suffix`.
    let number = |suffix: &str| -> u64 {
        err.lines()
            .find_map(|l| l.strip_suffix(suffix)?.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no `{suffix}` line in:\n{err}"))
    };
    let recorded = number(" probed calls recorded");
    let lost = number(" probed calls were not recorded: the probes' ring buffer was full");
    assert!(lost > 0, "{err}");
    assert_eq!(
        recorded + lost,
        2 * calls,
        "every `work` and `leaf` call: {err}"
    );
    assert_eq!(err.matches("ring buffer was full").count(), 1, "{err}");
    assert!(err.contains("hint: raise `--uprobe-buffer-size`"), "{err}");
}

#[test]
fn a_buffer_size_that_is_not_a_power_of_two_is_named() {
    let Some(work) = c_example() else { return };
    let (out, _) = run(
        &["--uprobe", ":work", "--uprobe-buffer-size", "5000"],
        &work,
        &["2"],
    );
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "invalid `--uprobe-buffer-size` 5000: it must be a power of two of at least 4096 bytes"
        ),
        "{err}"
    );
}
