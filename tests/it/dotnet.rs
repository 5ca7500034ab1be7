//! .NET with a real CLR: PyPI's dotnetcore2 (.NET Core 3.1) runs programs built
//! by `.ci/dotnet/fixtures.sh`, and the real collector receives what they send.
//! The OpenTelemetry .NET automatic instrumentation itself cannot be obtained
//! here, so its home is a stand-in under the official file names (see
//! tests/fixtures/dotnet): a native "profiler" that records the CLSID the CLR asks
//! it for and the process it was loaded in, and a startup hook that records what
//! it sees and posts one span. `dotnet build/test/run` use a stand-in SDK CLI in
//! the real host. What these tests show, and what not, is in docs/guide/runtimes.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{Collector, assert_success, otel_run, peer};

const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";
const HOOK: &str = "net/OpenTelemetry.AutoInstrumentation.StartupHook.dll";
const HOOK_SPAN: &str = "stand-in startup hook";

/// The directory `.ci/dotnet/fixtures.sh` prints.
fn fixtures() -> Option<PathBuf> {
    peer(
        "OTEL_RUN_TEST_DOTNET",
        "a .NET runtime with the .NET fixtures (`.ci/dotnet/fixtures.sh` prepares them)",
    )
}

/// A test's own copy of the stand-in home (the stand-ins write their records
/// into it) and the file the hooks and Main note their order in.
struct Run {
    dir: tempfile::TempDir,
    home: PathBuf,
    events: PathBuf,
}

impl Run {
    fn new(fixtures: &Path) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("otel-dotnet-auto");
        copy_tree(&fixtures.join("home"), &home);
        let events = dir.path().join("events");
        Run { dir, home, events }
    }

    /// `otel-run --dotnet-auto-home HOME … -- argv`, exporting to `collector`, in `cwd`.
    fn command(&self, collector: &Collector, argv: &[&Path], cwd: &Path) -> Command {
        let mut cmd = otel_run();
        cmd.current_dir(cwd)
            .env("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
            .env("STAND_IN_EVENTS", &self.events)
            .env_remove("DOTNET_STARTUP_HOOKS")
            .args(["--service-name", "dotnet-test", "--traces-exporter", "otlp"])
            .arg("--exporter-otlp-endpoint")
            .arg(format!("http://127.0.0.1:{}", collector.grpc))
            .arg("--dotnet-auto-home")
            .arg(&self.home)
            .arg("--")
            .args(argv);
        cmd
    }

    fn output(&self, collector: &Collector, argv: &[&Path], cwd: &Path) -> Output {
        self.command(collector, argv, cwd).output().unwrap()
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The stand-in profiler's lines: `clsid=… process=… pid=… excluded=…`.
    fn profiler_loads(&self) -> Vec<String> {
        std::fs::read_to_string(self.home.join("stand-in-profiler.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// What the stand-in hook recorded, one map per process it initialised in.
    fn hook_records(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        std::fs::read_dir(&self.home)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("stand-in-hook-")
            })
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The hook's span, checked to be the child of otel-run's process span.
fn assert_hook_span_under_process_span(collector: &Collector) {
    let spans = collector.wait_spans(2);
    let hook = crate::util::span_named(&spans, HOOK_SPAN);
    let process = spans
        .iter()
        .find(|s| s["spanId"] == hook["parentSpanId"])
        .unwrap_or_else(|| panic!("no parent span for the hook's span: {spans:#?}"));
    assert_eq!(process["traceId"], hook["traceId"]);
    assert_eq!(process["scope"], Value::from("otel-run"), "{process:#?}");
    assert_eq!(hook["resource"]["service.name"], "dotnet-test");
}

#[test]
fn the_clr_loads_the_profiler_by_its_clsid_and_the_hook_runs_before_main_under_the_process_span() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let app = fixtures.join("app");
    let dotnet = fixtures.join("dotnet");
    let dll = app.join("app.dll");
    let apphost = app.join("app");
    for (argv, process) in [(vec![&*dotnet, &*dll], "dotnet"), (vec![&*apphost], "app")] {
        let Some(collector) = Collector::start() else {
            return;
        };
        let run = Run::new(&fixtures);
        let out = run.output(&collector, &argv, run.dir.path());
        assert_success(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello from the .NET test application")
        );
        let loads = run.profiler_loads();
        assert_eq!(loads.len(), 1, "{loads:?}");
        assert!(
            loads[0].starts_with(&format!("clsid={PROFILER_ID} process={process} ")),
            "{loads:?}"
        );
        assert!(loads[0].ends_with("excluded=no"), "{loads:?}");
        assert_eq!(run.events(), ["otel-hook", "main"], "{process}");
        let records = run.hook_records();
        assert_eq!(records.len(), 1, "{records:?}");
        let seen = &records[0];
        assert_eq!(seen["STAND_IN_PROCESS"], process);
        assert_eq!(seen["OTEL_SERVICE_NAME"], "dotnet-test");
        assert!(
            seen["OTEL_EXPORTER_OTLP_ENDPOINT"].starts_with("http://127.0.0.1:"),
            "{seen:?}"
        );
        assert_eq!(
            seen["OTEL_DOTNET_AUTO_HOME"],
            run.home.display().to_string()
        );
        assert_eq!(seen["STAND_IN_EXPORT_STATUS"], "200", "{seen:?}");
        assert!(
            !seen.contains_key("OTEL_DOTNET_AUTO_EXCLUDE_PROCESSES"),
            "{seen:?}"
        );
        assert_hook_span_under_process_span(&collector);
    }
}

#[test]
fn the_users_own_startup_hook_still_runs_after_otel_runs() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let Some(collector) = Collector::start() else {
        return;
    };
    let run = Run::new(&fixtures);
    let argv = [&*fixtures.join("dotnet"), &*fixtures.join("app/app.dll")];
    let out = run
        .command(&collector, &argv, run.dir.path())
        .env("DOTNET_STARTUP_HOOKS", fixtures.join("app/UserHook.dll"))
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(run.events(), ["otel-hook", "user-hook", "main"]);
    let seen = &run.hook_records()[0];
    assert_eq!(
        seen["DOTNET_STARTUP_HOOKS"],
        format!(
            "{}:{}",
            run.home.join(HOOK).display(),
            fixtures.join("app/UserHook.dll").display()
        )
    );
}

/// The CLR aborts a process whose DOTNET_STARTUP_HOOKS names a missing file
/// (exit 134): otel-run must not inject from such a home.
#[test]
fn a_home_without_the_startup_hook_is_not_injected_and_the_application_runs() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let Some(collector) = Collector::start() else {
        return;
    };
    let run = Run::new(&fixtures);
    std::fs::remove_file(run.home.join(HOOK)).unwrap();
    let argv = [&*fixtures.join("dotnet"), &*fixtures.join("app/app.dll")];
    let out = run.output(&collector, &argv, run.dir.path());
    assert_success(&out);
    assert_eq!(run.events(), ["main"]);
    assert!(
        run.profiler_loads().is_empty(),
        "{:?}",
        run.profiler_loads()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("otel-run:").count(), 1, "{err}");
    assert!(err.contains("is incomplete (missing"), "{err}");
    assert!(
        err.contains("OpenTelemetry.AutoInstrumentation.StartupHook.dll"),
        "{err}"
    );
}

/// `dotnet build`, `dotnet test`, `dotnet run` through the real host with a
/// stand-in SDK CLI: the SDK's processes (the CLI and its MSBuild node, all
/// named `dotnet`) get the profiler excluded and no hook; the application that
/// `run` starts through its apphost gets both, and its span arrives.
#[test]
fn sdk_commands_instrument_only_the_application() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let sdk_dotnet = fixtures.join("sdk-root/dotnet");
    for command in ["build", "test", "run"] {
        let Some(collector) = Collector::start() else {
            return;
        };
        let run = Run::new(&fixtures);
        let project = run.dir.path().join("project");
        copy_tree(&fixtures.join("app"), &project.join("bin"));
        let argv = [&*sdk_dotnet, Path::new(command)];
        let out = run.output(&collector, &argv, &project);
        assert_success(&out);
        let loads = run.profiler_loads();
        let (sdk, app): (Vec<&String>, Vec<&String>) =
            loads.iter().partition(|l| l.contains(" process=dotnet "));
        // The CLI and the node it starts.
        assert_eq!(sdk.len(), 2, "{command}: {loads:?}");
        assert!(
            sdk.iter().all(|l| l.ends_with("excluded=yes")),
            "{command}: {loads:?}"
        );
        let records = run.hook_records();
        if command == "run" {
            assert_eq!(app.len(), 1, "{loads:?}");
            assert!(app[0].contains(" process=app ") && app[0].ends_with("excluded=no"));
            assert_eq!(records.len(), 1, "{records:?}");
            assert_eq!(records[0]["STAND_IN_PROCESS"], "app");
            assert_eq!(run.events(), ["otel-hook", "main"]);
            assert_hook_span_under_process_span(&collector);
        } else {
            assert!(app.is_empty(), "{command}: {loads:?}");
            assert!(records.is_empty(), "{command}: {records:?}");
        }
    }
}
