//! The `console` exporter: where it writes, what a closed stdout does to a run, and
//! the shapes it prints, compared with what Python's own console exporters print
//! for the same telemetry.

use std::process::Command;

use crate::util::{assert_success, fixture, otel_run, python, tool};

/// The pretty JSON records of a console output: each a `{` line to a `}` line at
/// column 0, as text.
fn records(text: &str) -> Vec<String> {
    let mut records = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line) {
            (None, "{") => current = Some("{\n".into()),
            (Some(record), "}") => {
                record.push_str("}\n");
                records.push(current.take().expect("a record is open"));
            }
            (Some(record), _) => {
                record.push_str(line);
                record.push('\n');
            }
            (None, _) => {}
        }
    }
    records
}

/// A record with the values that differ between two prints of the same telemetry
/// (times, ids) replaced by their format: `"<time>"`, `"<id 32>"`, `<int>`. What
/// each format is stays compared, and so does every other key, value and line.
fn masked(record: &str) -> String {
    const VOLATILE: &[&str] = &[
        "start_time",
        "end_time",
        "timestamp",
        "observed_timestamp",
        "start_time_unix_nano",
        "time_unix_nano",
        "trace_id",
        "span_id",
        "parent_id",
    ];
    record
        .lines()
        .map(|line| {
            let Some((key, value)) = line.trim_start().split_once(": ") else {
                return line.to_string();
            };
            if !VOLATILE.contains(&key.trim_matches('"')) {
                return line.to_string();
            }
            let (value, comma) = match value.strip_suffix(',') {
                Some(v) => (v, ","),
                None => (value, ""),
            };
            let quoted = value.trim_matches('"');
            let format = if value == "null" {
                "null".to_string()
            } else if value.bytes().all(|b| b.is_ascii_digit()) {
                "<int>".to_string()
            } else if let Some(hex) = quoted.strip_prefix("0x")
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
            {
                if hex.bytes().all(|b| b == b'0') {
                    value.to_string()
                } else {
                    format!("\"<id {}>\"", hex.len())
                }
            } else if quoted.len() == 27
                && quoted.ends_with('Z')
                && quoted.as_bytes()[10] == b'T'
                && quoted.as_bytes()[19] == b'.'
            {
                "\"<time>\"".to_string()
            } else {
                value.to_string()
            };
            let indent = &line[..line.len() - line.trim_start().len()];
            format!("{indent}{key}: {format}{comma}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which signal a record is: by its first key.
fn kind(record: &str) -> &'static str {
    match record.lines().nth(1).map(str::trim_start) {
        Some(l) if l.starts_with("\"resource_metrics\"") => "metrics",
        Some(l) if l.starts_with("\"body\"") => "log",
        _ => "span",
    }
}

#[test]
fn metrics_logs_and_spans_print_as_pythons_console_exporters_print_them() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.json"), dir.path().join("theirs.json"));
    // The program sends over OTLP to the agent (`--no-inject`: its own SDK setup,
    // nothing of otel-run's shim) and prints the same data with Python's exporters.
    let out = otel_run()
        .args(["--no-inject"])
        .args(["--traces-exporter", "console"])
        .args(["--metrics-exporter", "console"])
        .args(["--logs-exporter", "console"])
        .args(["--console-output", ours.to_str().unwrap()])
        .arg(&python)
        .arg(fixture("console_shapes.py"))
        .arg(&theirs)
        .output()
        .unwrap();
    assert_success(&out);
    let read = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap();
        records(&text)
            .into_iter()
            .filter(|r| r.contains("\"service.name\": \"shapes\""))
            .collect::<Vec<_>>()
    };
    let (ours, theirs) = (read(&ours), read(&theirs));
    for signal in ["span", "log", "metrics"] {
        let of = |records: &[String]| -> Vec<String> {
            records
                .iter()
                .filter(|r| kind(r) == signal)
                .map(|r| masked(r))
                .collect()
        };
        let (ours, theirs) = (of(&ours), of(&theirs));
        assert!(!theirs.is_empty(), "Python printed no {signal}");
        assert_eq!(ours.len(), theirs.len(), "{signal} records");
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(ours, theirs, "a {signal} record differs");
        }
    }
}

#[test]
fn console_output_goes_to_stdout_unless_told_otherwise() {
    let run = |extra: &[&str]| {
        let out = otel_run()
            .args(["--traces-exporter", "console"])
            .args(extra)
            .args(["sh", "-c", "echo from-the-command"])
            .output()
            .unwrap();
        assert_success(&out);
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = run(&[]);
    assert!(stdout.starts_with("from-the-command\n"), "{stdout}");
    let spans = records(&stdout);
    assert_eq!(spans.len(), 1, "the process span, on stdout: {stdout}");
    assert!(spans[0].contains("\"name\": \"sh\""), "{stdout}");
    assert_eq!(stderr, "");

    let (stdout, stderr) = run(&["--console-output", "stderr"]);
    assert_eq!(stdout, "from-the-command\n");
    assert_eq!(records(&stderr).len(), 1, "{stderr}");
}

#[test]
fn a_closed_stdout_harms_neither_the_command_nor_otel_run() {
    let (Some(python), Some(sh)) = (python(), tool("sh")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    // The reader closes its end and says so; only then does the command make
    // telemetry of every signal, which otel-run prints to the closed pipe.
    let command = format!(
        "while [ ! -e '{gone}' ]; do sleep 0.05; done; '{python}' '{app}' /dev/null; exit 3",
        gone = gone.display(),
        python = python.display(),
        app = fixture("console_shapes.py").display(),
    );
    let script = format!(
        "{{ '{bin}' --no-inject --traces-exporter console --metrics-exporter console \
         --logs-exporter console -- sh -c \"$COMMAND\" 2>'{err}'; echo $? >'{rc}'; }} \
         | {{ exec <&-; touch '{gone}'; }}",
        bin = crate::util::BIN,
        err = dir.path().join("err").display(),
        rc = dir.path().join("rc").display(),
        gone = gone.display(),
    );
    let mut shell = Command::new(sh);
    shell.args(["-c", &script]).env("COMMAND", &command);
    // The clean environment of otel_run(), for the otel-run inside the shell.
    for (key, value) in otel_run().get_envs() {
        match value {
            Some(v) => shell.env(key, v),
            None => shell.env_remove(key),
        };
    }
    let out = shell.output().unwrap();
    assert_success(&out);
    let rc = std::fs::read_to_string(dir.path().join("rc")).unwrap();
    assert_eq!(rc.trim(), "3", "otel-run exits with the command's code");
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert_eq!(
        err.matches("broken pipe").count(),
        1,
        "said once, whatever the signal: {err}"
    );
    for unit in ["spans", "data points", "log records"] {
        assert!(
            err.contains(&format!("0 {unit} exported")),
            "{unit} counted as dropped: {err}"
        );
    }
}

/// Started without a stdout (`>&-`), otel-run says once that the console output
/// it would print there is dropped, instead of writing it to Rust's `/dev/null`.
#[test]
fn a_stdout_closed_at_start_is_said_once() {
    let out = otel_run()
        .args([
            "sh",
            "-c",
            "exec \"$0\" --traces-exporter console -- sh -c 'exit 4' >&-",
        ])
        .arg(crate::util::BIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("otel-run was started with it closed")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("1 dropped"), "{stderr}");
}

/// A signal whose only exporter cannot be made is not exported: the command
/// is told so (`none`), and does not send what would be thrown away.
#[test]
fn a_console_output_that_cannot_be_opened_leaves_the_signal_unexported() {
    let out = otel_run()
        .args(["--traces-exporter", "console"])
        .args(["--console-output", "/nonexistent/dir/spans.json"])
        .args(["--", "sh", "-c", "echo \"traces=$OTEL_TRACES_EXPORTER\""])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "traces=none\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("traces are not exported: cannot open console output"),
        "{stderr}"
    );
}
