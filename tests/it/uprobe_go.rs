//! `--uprobe` on Go programs: `examples/uprobe-go`, built by `.ci/run`
//! (`.ci/go/uprobe-example.sh`). Each test also runs the program bare and
//! checks that probing it changed neither its output nor its exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::uprobe::{millis, named, run};
use crate::util::{assert_success, otel_run, peer, root, tool};

fn go_example() -> Option<PathBuf> {
    root()?;
    tool("clang")?;
    listed_example()
}

/// Listing reads the file: no root needed.
fn listed_example() -> Option<PathBuf> {
    peer("OTEL_RUN_TEST_UPROBE_GO", "the examples/uprobe-go program")
}

/// Runs the example under otel-run with `flags` and bare; asserts the same
/// output and exit, and returns otel-run's stderr and the spans.
fn run_both(example: &Path, flags: &[&str], args: &[&str]) -> (String, Vec<Value>) {
    let bare = std::process::Command::new(example)
        .args(args)
        .output()
        .unwrap();
    assert_success(&bare);
    let (out, spans) = run(flags, example, args);
    assert_eq!(out.status.code(), bare.status.code());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&bare.stdout)
    );
    (String::from_utf8_lossy(&out.stderr).into_owned(), spans)
}

fn time(span: &Value, key: &str) -> SystemTime {
    humantime::parse_rfc3339(span[key].as_str().unwrap()).unwrap()
}

fn id(span: &Value) -> &Value {
    &span["context"]["span_id"]
}

/// Each of `children` has a parent among `parents` in the same trace, and
/// lies within it; returns how many children each parent has.
fn children_of<'a>(children: &[&'a Value], parents: &[&'a Value]) -> HashMap<String, usize> {
    let by_id: HashMap<&Value, &Value> = parents.iter().map(|p| (id(p), *p)).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for child in children {
        let parent = by_id
            .get(&child["parent_id"])
            .unwrap_or_else(|| panic!("no parent for {child:#}"));
        assert_eq!(parent["context"]["trace_id"], child["context"]["trace_id"]);
        assert!(time(child, "start_time") >= time(parent, "start_time"));
        assert!(time(child, "end_time") <= time(parent, "end_time"));
        *counts.entry(id(parent).to_string()).or_default() += 1;
    }
    counts
}

fn roots<'a>(spans: &[&'a Value]) -> Vec<&'a Value> {
    spans
        .iter()
        .copied()
        .filter(|s| s["parent_id"].is_null())
        .collect()
}

const HANDLE: &str = "main.(*Server).handle";

#[test]
fn go_calls_become_nested_spans_named_by_their_go_names() {
    let Some(example) = go_example() else { return };
    let (err, spans) = run_both(
        &example,
        &["--uprobe", ":main.(*Server).*", "--uprobe", ":main.parse"],
        &["nested", "5", "10"],
    );
    let (handles, parses) = (named(&spans, HANDLE), named(&spans, "main.parse"));
    assert_eq!(handles.len(), 5, "{err}\n{spans:#?}");
    assert_eq!(parses.len(), 5);
    assert_eq!(roots(&handles).len(), 5);
    let counts = children_of(&parses, &handles);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    for handle in &handles {
        assert_eq!(handle["attributes"]["code.function.name"], HANDLE);
        assert!(
            millis(handle) >= 10.0,
            "a 10 ms call lasted {} ms",
            millis(handle)
        );
    }
    assert!(!err.contains("did not return"), "{err}");
}

/// 50 goroutines call `handle` 20 times each, all at once; each call sleeps,
/// so goroutines park and resume on other threads mid-call. Keyed by thread,
/// one goroutine's call would nest in another's.
#[test]
fn go_calls_on_many_goroutines_at_once_are_kept_apart() {
    let Some(example) = go_example() else { return };
    let (err, spans) = run_both(
        &example,
        &[
            "--uprobe",
            ":main.(*Server).handle",
            "--uprobe",
            ":main.parse",
            "--bsp-max-queue-size",
            "10000",
        ],
        &["goroutines", "50", "20", "1"],
    );
    let (handles, parses) = (named(&spans, HANDLE), named(&spans, "main.parse"));
    assert_eq!(handles.len(), 1000, "{err}");
    assert_eq!(parses.len(), 1000, "{err}");
    assert_eq!(
        roots(&handles).len(),
        1000,
        "a handle call nested in another"
    );
    let counts = children_of(&parses, &handles);
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    for handle in &handles {
        assert!(
            millis(handle) >= 1.0,
            "a 1 ms call lasted {} ms",
            millis(handle)
        );
    }
}

/// `guard` recovers the panics of the `risky` it calls; `catch`, not probed,
/// does the same. Every call that returns is a span; the 2 × 10 calls a
/// panic unwound are counted once, and the stale frames `catch` leaves do not
/// become the parents of later calls.
#[test]
fn a_panic_through_a_probed_go_function_leaves_the_other_calls_exact() {
    let Some(example) = go_example() else { return };
    let (err, spans) = run_both(
        &example,
        &["--uprobe", ":main.guard", "--uprobe", ":main.risky"],
        &["panic", "40"],
    );
    let (guards, riskies) = (named(&spans, "main.guard"), named(&spans, "main.risky"));
    assert_eq!(guards.len(), 40, "{err}");
    assert_eq!(
        roots(&guards).len(),
        40,
        "a guard call hangs under a stale frame"
    );
    assert_eq!(riskies.len(), 60, "{err}");
    let (top, nested): (Vec<&Value>, Vec<&Value>) =
        riskies.iter().partition(|s| s["parent_id"].is_null());
    assert_eq!(top.len(), 30, "risky calls from catch are roots");
    let counts = children_of(&nested, &guards);
    assert_eq!(counts.len(), 30);
    assert_eq!(
        err.matches("20 probed Go calls did not return: a panic unwound them")
            .count(),
        1,
        "{err}"
    );
}

/// `deep` recurses with 4 KiB frames on new goroutines: the runtime grows
/// (copies) their stacks in the middle of probed calls, and restarts the
/// call whose prologue found the stack too small.
#[test]
fn go_stacks_that_move_mid_call_keep_their_calls() {
    let Some(example) = go_example() else { return };
    let (err, spans) = run_both(&example, &["--uprobe", ":main.deep"], &["grow", "20", "10"]);
    let deeps = named(&spans, "main.deep");
    assert_eq!(deeps.len(), 20 * 11, "{err}");
    assert_eq!(roots(&deeps).len(), 20);
    let nested: Vec<&Value> = deeps
        .iter()
        .copied()
        .filter(|s| !s["parent_id"].is_null())
        .collect();
    let counts = children_of(&nested, &deeps);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(!err.contains("did not return"), "{err}");
}

#[test]
fn probes_list_shows_go_names_and_which_functions_were_inlined() {
    let Some(example) = listed_example() else {
        return;
    };
    let out = otel_run()
        .args(["probes", "list"])
        .arg(&example)
        .arg("main.*")
        .output()
        .unwrap();
    assert_success(&out);
    let listed = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines.contains(&HANDLE), "{listed}");
    assert!(lines.contains(&"main.parse"), "{listed}");
    assert!(
        lines.contains(&"main.square (inlined: cannot be probed)"),
        "{listed}"
    );
}

#[test]
fn a_pattern_that_matches_only_inlined_go_functions_gets_one_warning() {
    let Some(example) = go_example() else { return };
    let (err, spans) = run_both(&example, &["--uprobe", ":main.sq*"], &["nested", "2", "0"]);
    assert!(
        err.contains("`main.sq*` matches only functions of")
            && err.contains("that the compiler inlined (`main.square`)"),
        "{err}"
    );
    assert!(
        err.contains("hint: probe the functions that call them"),
        "{err}"
    );
    assert_eq!(err.matches("otel-run: warning").count(), 1, "{err}");
    assert_eq!(spans.len(), 1, "only the process span");
}
