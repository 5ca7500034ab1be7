//! The command line itself: usage errors, and the completions and man page
//! generated from its definition, loaded by the real shells.

use std::process::Command;

use crate::util::{BIN, assert_success, otel_run, tool};

#[test]
fn a_misspelled_option_before_the_command_is_a_usage_error_naming_the_closest() {
    let out = otel_run()
        .args(["--servce-name", "x", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "otel-run: error: unknown option `--servce-name`\n\
         hint: did you mean `--service-name`? (a command whose name starts with `-` goes after `--`)\n"
    );
    // The same word after `--` is the command's to run.
    let out = otel_run().args(["--", "--servce-name"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
}

/// A directory holding the completion script for `shell`, and an `otel-run`
/// on PATH that records being run: loading a completion must run nothing.
fn completion(shell: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = otel_run().args(["completions", shell]).output().unwrap();
    assert_success(&out);
    let script = dir.path().join(format!("otel-run.{shell}"));
    std::fs::write(&script, &out.stdout).unwrap();
    let spy = dir.path().join("otel-run");
    std::fs::write(&spy, "#!/bin/sh\ntouch \"$0.ran\"\n").unwrap();
    std::fs::set_permissions(&spy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, script)
}

fn shell_output(mut command: Command, dir: &std::path::Path) -> String {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = command.env("PATH", path).output().unwrap();
    assert_success(&out);
    assert!(
        !dir.join("otel-run.ran").exists(),
        "loading the completion ran otel-run"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_an_option_and_a_subcommand() {
    let (dir, script) = completion("bash");
    let mut bash = Command::new("bash");
    bash.args(["--norc", "--noprofile", "-c"]).arg(format!(
        r#"source '{}'
complete_line() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
    _otel__run otel-run "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    printf '%s\n' "${{COMPREPLY[@]}}"
}}
complete_line otel-run --service-n
complete_line otel-run doc
complete_line otel-run agent --lis
complete_line otel-run probes li"#,
        script.display()
    ));
    let lines = shell_output(bash, dir.path());
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines, ["--service-name", "doctor", "--listen", "list"]);
}

#[test]
fn fish_completes_an_option_with_its_help_and_a_subcommand() {
    let Some(_) = tool("fish") else { return };
    let (dir, script) = completion("fish");
    let mut fish = Command::new("fish");
    fish.args(["--no-config", "-c"]).arg(format!(
        "source '{}'; complete -C 'otel-run --service-n'; complete -C 'otel-run doc'; complete -C 'otel-run agent --lis'",
        script.display()
    ));
    let text = shell_output(fish, dir.path());
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("--service-name\tThe `service.name` resource attribute"),
        "{text}"
    );
    // (Files and programs whose names start with `doc` may follow: a command's place.)
    assert!(lines.iter().any(|l| l.starts_with("doctor\t")), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("--listen\t")), "{text}");
}

#[test]
fn the_man_page_lists_the_options_and_subcommands() {
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert_success(&out);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH otel-run 1"), "{page}");
    assert!(page.contains("\\-\\-service\\-name"), "{page}");
    assert!(page.contains("otel\\-run\\-bootstrap(1)"), "{page}");
    assert!(page.contains("otel\\-run\\-agent(1)"), "{page}");
}

#[test]
fn debug_diagnostics_are_shown_by_vv_and_by_otel_log_level_and_only_otel_runs() {
    let run = |verbose: Option<&str>, level: Option<&str>| {
        let mut command = otel_run();
        command.env("OTEL_LOGS_EXPORTER", "otlp");
        if let Some(level) = level {
            command.env("OTEL_LOG_LEVEL", level);
        }
        command.args(verbose).arg("true");
        let out = command.output().unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for err in [run(Some("-vv"), None), run(None, Some("debug"))] {
        assert!(
            err.contains("otel-run: debug: receiving OTLP on http://127.0.0.1:"),
            "{err}"
        );
        assert!(err.lines().all(|l| l.starts_with("otel-run: ")), "{err}");
    }
    assert_eq!(
        run(Some("-v"), None),
        "otel-run: exporting logs to http://localhost:4317/ over grpc\n"
    );
    assert_eq!(run(None, None), "");
}
