//! otel-run in a container: a read-only root filesystem, where the shims must
//! still be written somewhere, and otel-run as the entrypoint of a fresh root
//! holding only what `examples/container/Dockerfile` copies into its image.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{BIN, Collector, python, root, tool};

/// A Python command that starts a span through the API only (the shim provides
/// the SDK) and prints where its `sitecustomize` came from.
const PYTHON_WORK: &str = "import sitecustomize, opentelemetry.trace as t\n\
    print(sitecustomize.__file__)\n\
    t.get_tracer('container').start_span('work').end()";

/// Runs `script` with `sh` in a new mount namespace, where `/dev/shm` is a
/// fresh tmpfs and each of `read_only` is remounted read-only; `$OTEL_RUN`
/// is the binary under test. The environment is only what is given.
fn in_mount_namespace(read_only: &[&Path], env: &[(&str, &str)], script: &str) -> Output {
    let mut setup = String::from("set -e; mount -t tmpfs -o mode=1777 tmpfs /dev/shm; ");
    for dir in read_only {
        let dir = dir.display();
        setup += &format!("mount --bind '{dir}' '{dir}'; mount -o remount,bind,ro '{dir}'; ");
    }
    Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!("{setup}set +e; {script}"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_RUN", BIN)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// With the home and the temp dir read-only, as on a read-only root
/// filesystem, the Python shim is written to `/dev/shm`, which is said once:
/// the child is still instrumented and its spans reach the collector.
#[test]
fn on_a_read_only_root_filesystem_the_shim_is_written_to_tmpfs() {
    if root().is_none() || tool("unshare").is_none() {
        return;
    }
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", collector.http);
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("TMPDIR", tmp.path().to_str().unwrap()),
        ("PYTHON", python.to_str().unwrap()),
        ("WORK", PYTHON_WORK),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ];
    // Twice: the second run finds the shim written and says nothing.
    let out = in_mount_namespace(
        &[home.path(), tmp.path()],
        &env,
        r#"for run in 1 2; do "$OTEL_RUN" --service-name "ro-$run" -- "$PYTHON" -c "$WORK" 2>&1; echo "exit $?"; done"#,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let runs: Vec<&str> = text.split_inclusive("exit 0\n").collect();
    assert_eq!(runs.len(), 2, "both runs succeed: {text}");
    // SAFETY: getuid has no failure mode.
    let uid = unsafe { libc::getuid() };
    let shim_dir = format!("/dev/shm/otel-run-{uid}/shims/python-");
    for run in &runs {
        assert!(
            run.lines()
                .any(|l| l.starts_with(&shim_dir) && l.ends_with("/sitecustomize.py")),
            "the shim is loaded from {shim_dir}…: {run}"
        );
    }
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("shim is written to"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {text}");
    assert!(
        runs[0].contains(said[0])
            && said[0].contains(&shim_dir)
            && said[0].contains("OTEL_RUN_CACHE_DIR"),
        "{text}"
    );
    let spans = collector.wait_spans(4);
    for run in ["ro-1", "ro-2"] {
        let work = spans
            .iter()
            .find(|s| s["name"] == "work" && s["resource"]["service.name"] == run);
        assert!(work.is_some(), "{run}'s span arrived: {spans:#?}");
    }
}

/// OTEL_RUN_CACHE_DIR chooses where the shims go, without a word; one that
/// cannot be written falls back like the default does, and says so.
#[test]
fn otel_run_cache_dir_chooses_where_the_shims_go() {
    if root().is_none() || tool("unshare").is_none() {
        return;
    }
    let Some(python) = python() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let chosen = tempfile::tempdir().unwrap();
    let read_only = tempfile::tempdir().unwrap();
    let env = |cache: &Path| {
        vec![
            ("HOME", home.path().to_str().unwrap().to_string()),
            ("OTEL_RUN_CACHE_DIR", cache.to_str().unwrap().to_string()),
            ("PYTHON", python.to_str().unwrap().to_string()),
            ("OTEL_TRACES_EXPORTER", "none".into()),
            ("OTEL_METRICS_EXPORTER", "none".into()),
            ("OTEL_LOGS_EXPORTER", "none".into()),
        ]
    };
    let script =
        r#""$OTEL_RUN" -- "$PYTHON" -c 'import sitecustomize; print(sitecustomize.__file__)' 2>&1"#;
    for (cache, expected, warned) in [
        (chosen.path(), chosen.path().join("shims/python-"), false),
        (
            read_only.path(),
            home.path().join(".cache/otel-run/shims/python-"),
            true,
        ),
    ] {
        let env = env(cache);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = in_mount_namespace(&[read_only.path()], &env, script);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with(expected.to_str().unwrap())),
            "the shim is under {}: {text}",
            expected.display()
        );
        assert_eq!(text.contains("cannot be written"), warned, "{text}");
    }
}

/// What the Dockerfile's final stage takes from otel-run's build stage (each
/// `COPY --from=build SRC DST`), and its entrypoint.
fn dockerfile() -> (Vec<(String, String)>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap();
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let copies = last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY --from=build "))
        .map(|rest| {
            let (src, dst) = rest.split_once(' ').unwrap();
            (src.to_string(), dst.to_string())
        })
        .collect();
    let entrypoint = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .map(|json| serde_json::from_str(json).unwrap())
        .expect("the final stage has an ENTRYPOINT");
    (copies, entrypoint)
}

/// Copies `binary` to `to` in `root`, and the shared libraries `ldd` lists for
/// it to their own paths there.
fn install(root: &Path, binary: &Path, to: &str) {
    let place = |from: &Path, to: &Path| {
        let dest = root.join(to.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap();
    };
    place(binary, Path::new(to));
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = line.split("=>").last().unwrap().split_whitespace().next();
        if let Some(lib) = path.filter(|p| p.starts_with('/')) {
            place(Path::new(lib), Path::new(lib));
        }
    }
}

/// The Dockerfile's image, rebuilt from its own lines: otel-run where the final
/// stage copies it, with only the libraries `ldd` lists (what the base image
/// provides), and a shell for the command. Its entrypoint runs as PID 1 of a
/// PID namespace there, as `docker run` runs it: it reaps an orphan, forwards
/// SIGTERM to the command, and exits with the command's code.
#[test]
fn the_dockerfile_entrypoint_runs_as_pid_1_in_a_root_with_only_the_binary() {
    if root().is_none() || tool("unshare").is_none() || tool("ldd").is_none() {
        return;
    }
    let (Some(sh), Some(sleep)) = (tool("sh"), tool("sleep")) else {
        return;
    };
    let (copies, entrypoint) = dockerfile();
    assert_eq!(
        copies,
        [(
            "/otel-run".to_string(),
            "/usr/local/bin/otel-run".to_string()
        )],
        "the image takes exactly the binary from the build stage"
    );
    assert_eq!(entrypoint, ["otel-run", "--"]);
    let image = tempfile::tempdir().unwrap();
    install(image.path(), Path::new(BIN), &copies[0].1);
    install(image.path(), &sh, "/bin/sh");
    install(image.path(), &sleep, "/bin/sleep");
    std::fs::create_dir(image.path().join("proc")).unwrap();
    // The subshell's `sleep` is orphaned at once and exits after 0.2 s; the
    // command then counts the zombies in the namespace and waits for SIGTERM.
    let script = r#"(sleep 0.2 &); sleep 1
z=0; for f in /proc/[0-9]*/stat; do read -r l < "$f"; case "$l" in *") Z "*) z=$((z+1));; esac; done
trap 'echo "got TERM"; exit 7' TERM
echo "pid $$ zombies $z"
while :; do sleep 0.1; done"#;
    let mut container = Command::new("unshare")
        .arg(format!("--root={}", image.path().display()))
        .args(["--pid", "--fork", "--mount-proc"])
        .args(&entrypoint)
        .args(["sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(container.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(
        first, "pid 2 zombies 0\n",
        "otel-run is PID 1 and reaped the orphan"
    );
    // otel-run is unshare's child; the signal comes from outside, as `docker stop`'s does.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", container.id())).unwrap();
    let otel_run: libc::pid_t = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(otel_run, libc::SIGTERM) };
    let out = container.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(
        rest,
        "got TERM\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7), "the command's exit code");
}
