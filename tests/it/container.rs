//! otel-run in a container: a read-only root filesystem, where the shims must
//! still be written somewhere, and otel-run as the entrypoint of a fresh root
//! holding only what `examples/container/Dockerfile` copies into its image.

use std::path::Path;
use std::process::{Command, Output};

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
