//! Child-process fidelity: exit codes, signals, stdin/stdout and the terminal.

use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
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
fn a_command_killed_by_a_signal_kills_otel_run_with_it() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    for (signal, n) in [("KILL", 9), ("TERM", 15), ("SEGV", 11), ("INT", 2)] {
        // Captured output: no terminal, whose Ctrl-C otel-run would pass on.
        let status = otel_run()
            .args(["sh", "-c", &format!("kill -{signal} $$")])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status;
        // What `subprocess.run` reports as -N, and what stops a shell loop.
        assert_eq!(status.signal(), Some(n), "SIG{signal}: {status:?}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a re-raised SIGSEGV leaves no core file of otel-run's"
    );
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
fn a_child_ignoring_sigterm_keeps_running_until_otel_run_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let (mut child, _stdout) = start_ready(&format!(
        "trap '' TERM; echo $$ > {}; echo ready; while :; do sleep 0.05; done",
        pid_file.display()
    ));
    let command: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..2 {
        kill(child.id(), "TERM");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "two SIGTERMs are forwarded, never turned into a SIGKILL"
    );
    kill(child.id(), "KILL");
    child.wait().unwrap();
    let gone = wait_for(Duration::from_secs(5), || {
        (!Path::new(&format!("/proc/{command}")).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the command outlived otel-run's SIGKILL, outside its process group"
    );
}

/// The signal counter (tests/fixtures/signal_counter.c), built once.
fn signal_counter() -> Option<PathBuf> {
    tool("gcc")?;
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    Some(
        BUILT
            .get_or_init(|| {
                let out = std::env::temp_dir()
                    .join(format!("otel-run-signal-counter-{}", std::process::id()));
                let status = std::process::Command::new("gcc")
                    .args(["-O2", "-o"])
                    .arg(&out)
                    .arg(crate::util::fixture("signal_counter.c"))
                    .status()
                    .unwrap();
                assert!(status.success());
                out
            })
            .clone(),
    )
}

/// Reads the counter's `ready` line, then its counts after the signals.
fn counts_after(child: &mut std::process::Child, deliver: impl FnOnce(u32)) -> String {
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    deliver(child.id());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    child.wait().unwrap();
    line.trim().to_string()
}

/// Each way a signal can be sent reaches the command exactly once: to otel-run
/// alone, and to otel-run's whole process group (an IDE's stop button, a
/// supervisor's `kill -- -PGID`).
#[test]
fn each_signal_reaches_the_command_exactly_once() {
    let Some(counter) = signal_counter() else {
        return;
    };
    let cases: [(&str, bool, &str); 5] = [
        ("TERM", false, "TERM=1 INT=0 HUP=0 USR1=0"),
        ("TERM", true, "TERM=1 INT=0 HUP=0 USR1=0"),
        ("INT", false, "TERM=0 INT=1 HUP=0 USR1=0"),
        ("INT", true, "TERM=0 INT=1 HUP=0 USR1=0"),
        ("HUP", true, "TERM=0 INT=0 HUP=1 USR1=0"),
    ];
    for (signal, to_group, expected) in cases {
        let mut child = otel_run()
            .arg(&counter)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let counts = counts_after(&mut child, |pid| {
            let target = if to_group {
                format!("-{pid}")
            } else {
                pid.to_string()
            };
            let status = std::process::Command::new("kill")
                .args([&format!("-{signal}"), "--", &target])
                .status()
                .unwrap();
            assert!(status.success());
        });
        assert_eq!(counts, expected, "SIG{signal}, to the group: {to_group}");
    }
}

/// GNU `timeout` signals the process it runs and then its own group, which
/// otel-run is in: the command still gets one SIGTERM, and is never killed.
#[test]
fn under_gnu_timeout_the_command_gets_one_sigterm() {
    let Some(counter) = signal_counter() else {
        return;
    };
    for run in 0..5 {
        let mut child = std::process::Command::new("timeout")
            .args(["-s", "TERM", "1"])
            .arg(crate::util::BIN)
            .arg(&counter)
            .env("OTEL_TRACES_EXPORTER", "none")
            .env("OTEL_METRICS_EXPORTER", "none")
            .env("OTEL_LOGS_EXPORTER", "none")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let counts = counts_after(&mut child, |_| {});
        assert_eq!(counts, "TERM=1 INT=0 HUP=0 USR1=0", "run {run}");
    }
}

/// As a container's entrypoint (PID 1 of a PID namespace), otel-run reaps the
/// orphans that are reparented to it, and still forwards and exits.
#[test]
fn as_pid_1_otel_run_reaps_orphans() {
    if crate::util::root().is_none() || tool("unshare").is_none() {
        return;
    }
    // The subshell's `sleep` is orphaned at once and exits after 0.2 s; then the
    // command lists the states of every process in the namespace.
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", crate::util::BIN, "--"])
        .args([
            "sh",
            "-c",
            "(sleep 0.2 &); sleep 1.5; echo pid $$; cat /proc/[0-9]*/stat",
        ])
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .output()
        .unwrap();
    crate::util::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pid 2\n"), "otel-run is PID 1: {text}");
    let zombies: Vec<&str> = text.lines().filter(|l| l.contains(") Z ")).collect();
    assert!(zombies.is_empty(), "unreaped orphans: {zombies:?}");
}

/// A stream otel-run was started without is not handed to the command as
/// `/dev/null`: `otel-run -- yes >&-` ends as `yes >&-` does.
#[test]
fn closed_streams_stay_closed() {
    let mut yes = otel_run()
        .args(["sh", "-c", "exec \"$0\" -- yes >&-", crate::util::BIN])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ended = wait_for(Duration::from_secs(10), || yes.try_wait().unwrap());
    if ended.is_none() {
        yes.kill().unwrap();
    }
    assert!(
        ended.is_some_and(|status| !status.success()),
        "`yes` kept writing to a stdout it was not given"
    );
    let out = otel_run()
        .args([
            "sh",
            "-c",
            "exec \"$0\" -- sh -c 'if [ -e /proc/self/fd/1 ]; then echo open >&2; else echo closed >&2; fi' >&-",
            crate::util::BIN,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "closed\n");
}

/// Runs `otel-run ARGS` under a pseudo-terminal (util-linux `script`), feeding
/// `input` a line at a time.
fn under_tty(otel_run_args: &str, input: &[u8]) -> String {
    let command = format!("{} {otel_run_args}", crate::util::BIN);
    let mut child = terminal(&command);
    let mut stdin = child.stdin.take().unwrap();
    for chunk in input.split_inclusive(|b| *b == b'\n') {
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(chunk).unwrap();
        stdin.flush().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).replace('\r', "")
}

/// A shell command line running under a pseudo-terminal, with otel-run on PATH
/// as `otel-run`.
fn terminal(command: &str) -> std::process::Child {
    let bin_dir = Path::new(crate::util::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    std::process::Command::new("script")
        .env_clear()
        .env("PATH", path)
        .env("TERM", "dumb")
        .env("PS1", "prompt> ")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .args(["-qfec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `command` under a terminal; each time its output shows the next
/// `(text, keys)` step's text, types the keys. Returns all it printed.
fn typing(command: &str, steps: &[(&str, &[u8])]) -> String {
    let steps: Vec<(&str, Step)> = steps.iter().map(|&(t, k)| (t, Step::Keys(k))).collect();
    in_terminal(command, &steps)
}

/// What to do once a terminal shows a text.
enum Step<'a> {
    Keys(&'a [u8]),
    Run(&'a dyn Fn()),
}

fn in_terminal(command: &str, steps: &[(&str, Step)]) -> String {
    let mut child = terminal(command);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            }
        })
    };
    let mut from = 0;
    for (text, step) in steps {
        let at = wait_for(Duration::from_secs(20), || {
            let seen = seen.lock().unwrap();
            seen[from..].find(text).map(|i| from + i + text.len())
        });
        let Some(at) = at else {
            let _ = child.kill();
            panic!("never printed {text:?}: {}", seen.lock().unwrap());
        };
        from = at;
        match step {
            Step::Keys(keys) => {
                stdin.write_all(keys).unwrap();
                stdin.flush().unwrap();
            }
            Step::Run(action) => action(),
        }
    }
    drop(stdin);
    let ended = wait_for(Duration::from_secs(20), || child.try_wait().unwrap());
    if ended.is_none() {
        let _ = child.kill();
    }
    reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    assert!(ended.is_some(), "did not end: {out}");
    out
}

/// Ctrl-C during `otel-run` in a shell loop stops the loop, as it does without
/// otel-run: in an interactive shell (each command its own job) and in a script
/// (otel-run shares the script's process group).
#[test]
fn ctrl_c_stops_a_shell_loop() {
    if tool("script").is_none() || tool("bash").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("loop.sh");
    std::fs::write(
        &script,
        "for i in 1 2 3; do otel-run sh -c 'echo started-$0; exec sleep 5' $i; echo next-$i; done; echo loop-done\n",
    )
    .unwrap();
    for shell in ["bash --norc --noprofile -i", "sh", "bash"] {
        let out = typing(
            &format!("{shell} {}", script.display()),
            &[("started-1", b"\x03")],
        );
        assert!(
            !out.contains("next-1") && !out.contains("loop-done"),
            "{shell}: the loop went on after Ctrl-C: {out}"
        );
    }
}

/// A SIGINT sent to otel-run (not typed) is the command's alone: the script that
/// runs otel-run goes on, as it would had the signal been sent to the command.
#[test]
fn a_sigint_sent_to_otel_run_does_not_stop_its_script() {
    if tool("script").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("otel-run.pid");
    let script = dir.path().join("steps.sh");
    std::fs::write(
        &script,
        format!(
            "otel-run sh -c 'echo $PPID > {}; echo start''ed; exec sleep 5'; echo after-$?\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let interrupt = || {
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        kill(pid.trim().parse().unwrap(), "INT");
    };
    let out = in_terminal(
        &format!("sh {}", script.display()),
        &[("started", Step::Run(&interrupt))],
    );
    assert!(out.contains("after-130"), "{out}");
}

/// Ctrl-Z stops the job otel-run is part of, and `fg` continues the command with
/// the terminal.
#[test]
fn ctrl_z_stops_the_job_and_fg_continues_it() {
    if tool("script").is_none() || tool("bash").is_none() {
        return;
    }
    let out = typing(
        "bash --norc --noprofile -i",
        &[
            // Quoted apart, so that the echo of the typed line does not match.
            (
                "prompt> ",
                b"otel-run sh -c 'echo wait''ing; sleep 2; echo res''umed; read line; echo got-$line'\n",
            ),
            ("waiting", b"\x1a"),
            ("Stopped", b"fg\n"),
            ("resumed", b"hello\n"),
            ("got-hello", b"exit\n"),
        ],
    );
    assert!(out.contains("got-hello"), "{out}");
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
    let out = typing(
        &format!("otel-run python3 {}", path.display()),
        &[("ready", b"\x03"), ("", b"\n")],
    );
    assert!(out.contains("interrupts 1"), "{out}");
}

/// After the command, otel-run exits within the OTLP export timeout, whatever the
/// backend does: here one that accepts connections and never answers.
#[test]
fn exit_is_bounded_by_the_otlp_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        // Hold every connection open without a word.
        let mut open = Vec::new();
        for conn in silent.incoming().take(4) {
            open.push(conn);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    for protocol in ["http/protobuf", "grpc"] {
        let started = std::time::Instant::now();
        let out = otel_run()
            .env("OTEL_TRACES_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
            .args(["sh", "-c", "exit 3"])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(3));
        // OTEL_BSP_EXPORT_TIMEOUT is 30 s: only the 1 s OTLP timeout explains this.
        assert!(
            took < Duration::from_secs(10),
            "{protocol}: exited {took:?} after a 1 s command timeout"
        );
    }
    drop(held);
}

/// A backend whose host name does not resolve is given up at once, like a
/// refused connection, and said once.
#[test]
fn an_unresolvable_backend_is_said_once_and_not_waited_for() {
    let started = std::time::Instant::now();
    let out = otel_run()
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector.invalid:4318",
        )
        .args(["sh", "-c", "exit 0"])
        .output()
        .unwrap();
    let took = started.elapsed();
    crate::util::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("does not resolve").count(),
        1,
        "said once: {stderr}"
    );
    // The OTLP timeout is 10 s; a resolution failure does not wait for it.
    assert!(took < Duration::from_secs(8), "exited after {took:?}");
}
