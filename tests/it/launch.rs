//! Child-process fidelity: exit codes, signals, stdin/stdout and the terminal.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::util::{otel_run, tool, wait_for};

#[test]
fn exit_codes_are_the_childs() {
    for code in [0, 1, 3, 42, 255] {
        let status = otel_run()
            .args(["sh", "-c", &format!("exit {code}")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "exit {code}");
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    for (signal, n) in [("KILL", 9), ("TERM", 15), ("SEGV", 11)] {
        let status = otel_run()
            .args(["sh", "-c", &format!("kill -{signal} $$")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(128 + n), "SIG{signal}");
    }
}

#[test]
fn binary_output_passes_through_byte_identical() {
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut child = otel_run()
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        out == data,
        "output differs from input ({} vs {} bytes)",
        out.len(),
        data.len()
    );
}

#[test]
fn stderr_is_the_childs_and_otel_run_is_quiet() {
    let out = otel_run()
        .args(["sh", "-c", "echo out; echo err >&2"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

/// Starts `otel-run sh -c SCRIPT`, waits for the child to print `ready`, and
/// returns the process with its stdout.
fn start_ready(script: &str) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = otel_run()
        .args(["sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    (child, stdout)
}

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_is_forwarded() {
    let (mut child, mut stdout) =
        start_ready("trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done");
    kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(42));
}

#[test]
fn signals_sent_to_otel_run_alone_are_forwarded() {
    for signal in ["INT", "HUP", "USR1", "USR2", "QUIT"] {
        let (mut child, mut stdout) = start_ready(&format!(
            "trap 'echo got {signal}; exit 7' {signal}; echo ready; while :; do sleep 0.05; done"
        ));
        kill(child.id(), signal);
        let status = child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, format!("got {signal}\n"));
        assert_eq!(status.code(), Some(7), "SIG{signal}");
    }
}

#[test]
fn a_child_ignoring_sigterm_is_killed_by_the_second() {
    let (mut child, _stdout) =
        start_ready("trap '' TERM; echo ready; while :; do sleep 0.05; done");
    kill(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGTERM was ignored by the child"
    );
    kill(child.id(), "TERM");
    let status = wait_for(Duration::from_secs(5), || child.try_wait().unwrap())
        .expect("otel-run did not exit");
    assert_eq!(status.code(), Some(128 + 9));
}

/// Runs `otel-run ARGS` under a pseudo-terminal (util-linux `script`), feeding `input`.
fn under_tty(otel_run_args: &str, input: &[u8]) -> String {
    let command = format!("{} {otel_run_args}", crate::util::BIN);
    let mut child = std::process::Command::new("script")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("TERM", "dumb")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for chunk in input.split_inclusive(|b| *b == b'\n') {
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(chunk).unwrap();
        stdin.flush().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).replace('\r', "")
}

#[test]
fn the_terminal_is_the_childs() {
    if tool("script").is_none() {
        return;
    }
    let out = under_tty(
        "sh -c 'test -t 0 && test -t 1 && test -t 2 && echo all-tty'",
        b"",
    );
    assert!(out.contains("all-tty"), "{out}");
}

#[test]
fn python_repl_works_interactively() {
    if tool("script").is_none() || tool("python3").is_none() {
        return;
    }
    let out = under_tty("python3 -q -i", b"print(6 * 7)\nexit()\n");
    assert!(out.contains("\n42\n") || out.contains(">>> 42"), "{out}");
}

#[test]
fn ctrl_c_from_the_terminal_reaches_the_child_once() {
    if tool("script").is_none() || tool("python3").is_none() {
        return;
    }
    let program = "import signal,time,sys\n\
        n=0\n\
        def h(*a):\n global n; n+=1\n\
        signal.signal(signal.SIGINT,h)\n\
        print('ready',flush=True)\n\
        sys.stdin.readline()\n\
        time.sleep(0.5)\n\
        print('interrupts',n,flush=True)\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.py");
    std::fs::write(&path, program).unwrap();
    // ^C is turned into SIGINT for the foreground process group by the terminal.
    let out = under_tty(&format!("python3 {}", path.display()), b"\x03\n");
    assert!(out.contains("interrupts 1"), "{out}");
}
