//! .NET: the contract of the OpenTelemetry .NET automatic instrumentation's
//! `instrument.sh`. Given its home directory, the CLR loads the native profiler
//! and the managed startup hook from there.

use std::path::{Path, PathBuf};

use super::{Note, Plan};

/// The CLR profiler the automatic instrumentation registers.
const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";
const NATIVE: &str = "OpenTelemetry.AutoInstrumentation.Native.so";
const STARTUP_HOOK: &str = "net/OpenTelemetry.AutoInstrumentation.StartupHook.dll";
/// The automatic instrumentation's list of executable names it leaves alone.
const EXCLUDE_PROCESSES: &str = "OTEL_DOTNET_AUTO_EXCLUDE_PROCESSES";
/// The names the SDK's own processes run under: the CLI, MSBuild and its nodes,
/// the compiler server all run in the `dotnet` host.
const SDK_PROCESSES: [&str; 2] = ["dotnet", "dotnet.exe"];
/// The `dotnet` host's options that take a value (`dotnet --fx-version 8.0.1 app.dll`).
const HOST_OPTIONS_WITH_VALUE: [&str; 6] = [
    "--additionalprobingpath",
    "--additional-deps",
    "--depsfile",
    "--runtimeconfig",
    "--fx-version",
    "--roll-forward",
];

/// The automatic instrumentation's home directory, and where it was found.
#[derive(Debug, Clone)]
pub struct Home {
    pub path: PathBuf,
    pub source: &'static str,
}

/// The home otel-run uses: `--dotnet-auto-home`/OTEL_DOTNET_AUTO_HOME, else
/// `dotnet/` in otel-run's data directory, else `~/.otel-dotnet-auto`, where the
/// upstream installer (`otel-dotnet-auto-install.sh`) unpacks it. A directory is
/// taken only when it exists; a given one is taken as given, to be checked.
pub fn home(config: &super::Config) -> Option<Home> {
    if let Some(given) = &config.dotnet_auto_home {
        return Some(Home {
            path: given.clone(),
            source: "from --dotnet-auto-home or OTEL_DOTNET_AUTO_HOME",
        });
    }
    let data = super::data_dir().map(|d| (d.join("dotnet"), "in otel-run's data directory"));
    let installer = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| {
        (
            PathBuf::from(h).join(".otel-dotnet-auto"),
            "where otel-dotnet-auto-install.sh puts it",
        )
    });
    data.into_iter()
        .chain(installer)
        .find(|(path, _)| path.is_dir())
        .map(|(path, source)| Home { path, source })
}

/// Whether `program` is .NET: the `dotnet` host, or an apphost next to its
/// `.dll` and `.runtimeconfig.json`.
pub fn is_dotnet(program: &Path) -> bool {
    let Some(name) = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return false;
    };
    name == "dotnet"
        || (program.with_file_name(format!("{name}.dll")).is_file()
            && program
                .with_file_name(format!("{name}.runtimeconfig.json"))
                .is_file())
}

/// Whether `argv` runs the .NET SDK (`dotnet build`, `dotnet run`, `dotnet test`,
/// `dotnet --info`) rather than an application (`dotnet app.dll`,
/// `dotnet exec app.dll`): the host takes its first argument that is not an
/// option as the application when it is `exec` or a `.dll`, else as an SDK command.
pub fn runs_sdk(argv: &[String]) -> bool {
    let Some(program) = argv.first() else {
        return false;
    };
    if Path::new(program).file_name().and_then(|n| n.to_str()) != Some("dotnet") {
        return false;
    }
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        if HOST_OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return !(arg == "exec" || arg.ends_with(".dll"));
        }
    }
    true
}

/// This machine's C library and architecture, as the release names them.
struct Machine {
    musl: bool,
    arm64: bool,
}

fn machine() -> Machine {
    let musl = std::fs::read_dir("/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))
        })
        .unwrap_or(false);
    Machine {
        musl,
        arm64: std::env::consts::ARCH == "aarch64",
    }
}

/// The runtime identifier of this machine's native profiler build: the
/// directory of the home that holds it.
pub fn runtime_id() -> &'static str {
    runtime_id_of(&machine())
}

fn runtime_id_of(machine: &Machine) -> &'static str {
    match (machine.arm64, machine.musl) {
        (true, false) => "linux-arm64",
        (true, true) => "linux-musl-arm64",
        (false, true) => "linux-musl-x64",
        (false, false) => "linux-x64",
    }
}

/// The release archive for this machine (the release names the C library even
/// for glibc, where the home's directory does not).
pub fn release_asset() -> String {
    release_asset_of(&machine())
}

fn release_asset_of(machine: &Machine) -> String {
    let libc = if machine.musl { "musl" } else { "glibc" };
    let arch = if machine.arm64 { "arm64" } else { "x64" };
    format!("opentelemetry-dotnet-instrumentation-linux-{libc}-{arch}.zip")
}

/// Injects the automatic instrumentation from `home`, after checking its layout.
/// For an SDK command the SDK's own processes are excluded, so that only the
/// application it builds, runs or tests is instrumented.
pub fn inject(plan: &mut Plan, home: Option<Home>, rid: &str, argv: &[String]) {
    let fix = "get it from the opentelemetry-dotnet-instrumentation releases, unpack it, and give its \
               directory with `--dotnet-auto-home DIR` (or OTEL_DOTNET_AUTO_HOME); `otel-run bootstrap --dotnet` checks it";
    let Some(Home { path: home, source }) = home else {
        plan.notes.push(Note::new("no OpenTelemetry .NET automatic instrumentation is set up; the program runs uninstrumented", fix));
        return;
    };
    plan.found.push(format!(
        "automatic instrumentation {} ({source})",
        home.display()
    ));
    let native = home.join(rid).join(NATIVE);
    let hook = home.join(STARTUP_HOOK);
    let missing: Vec<String> = [&native, &hook]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| format!("`{}`", p.display()))
        .collect();
    if !missing.is_empty() {
        plan.notes.push(Note::new(
            format!(
                "the .NET automatic instrumentation in `{}` is incomplete (missing {}); the program runs uninstrumented",
                home.display(),
                missing.join(", ")
            ),
            fix,
        ));
        return;
    }
    plan.set("CORECLR_ENABLE_PROFILING", "1");
    plan.set("CORECLR_PROFILER", PROFILER_ID);
    plan.set("CORECLR_PROFILER_PATH", native.display().to_string());
    plan.set("OTEL_DOTNET_AUTO_HOME", home.display().to_string());
    plan.prepend_path("DOTNET_STARTUP_HOOKS", &hook);
    plan.prepend_path("DOTNET_ADDITIONAL_DEPS", &home.join("AdditionalDeps"));
    plan.prepend_path("DOTNET_SHARED_STORE", &home.join("store"));
    if runs_sdk(argv) {
        plan.extend(EXCLUDE_PROCESSES, |existing| {
            let mut names: Vec<&str> = existing.split(',').filter(|n| !n.is_empty()).collect();
            for name in SDK_PROCESSES {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    names.push(name);
                }
            }
            names.join(",")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rid: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        for file in [format!("{rid}/{NATIVE}"), STARTUP_HOOK.to_string()] {
            let path = home.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        home
    }

    fn given(home: &tempfile::TempDir) -> Option<Home> {
        Some(Home {
            path: home.path().to_path_buf(),
            source: "given",
        })
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_complete_home_sets_the_profiler_and_the_startup_hook() {
        let home = layout("linux-x64");
        let mut plan = Plan::default();
        inject(
            &mut plan,
            given(&home),
            "linux-x64",
            &argv(&["dotnet", "app.dll"]),
        );
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        assert_eq!(plan.get("CORECLR_ENABLE_PROFILING"), Some("1"));
        assert_eq!(plan.get("CORECLR_PROFILER"), Some(PROFILER_ID));
        let native = home.path().join("linux-x64").join(NATIVE);
        assert_eq!(
            plan.get("CORECLR_PROFILER_PATH"),
            Some(native.to_str().unwrap())
        );
    }

    #[test]
    fn an_incomplete_home_injects_nothing_and_says_what_is_missing() {
        let home = layout("linux-musl-x64");
        let mut plan = Plan::default();
        inject(&mut plan, given(&home), "linux-x64", &[]);
        assert!(plan.set.is_empty());
        assert_eq!(plan.notes.len(), 1);
        assert!(
            plan.notes[0].message.contains("linux-x64"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn sdk_commands_are_told_from_applications() {
        for sdk in [
            &["dotnet", "run"][..],
            &["/usr/bin/dotnet", "build", "-c", "Release"],
            &["dotnet", "test", "tests/App.Tests.csproj"],
            &["dotnet", "--info"],
            &["dotnet"],
            &["dotnet", "--roll-forward", "Major", "watch"],
        ] {
            assert!(runs_sdk(&argv(sdk)), "{sdk:?}");
        }
        for app in [
            &["dotnet", "app.dll"][..],
            &["dotnet", "exec", "app.dll"],
            &["dotnet", "--fx-version", "8.0.1", "bin/app.dll", "run"],
            &["/srv/Shop.Api", "build"],
        ] {
            assert!(!runs_sdk(&argv(app)), "{app:?}");
        }
    }

    #[test]
    fn an_sdk_command_excludes_the_sdk_processes_and_an_application_does_not() {
        let home = layout("linux-x64");
        let mut plan = Plan::default();
        inject(
            &mut plan,
            given(&home),
            "linux-x64",
            &argv(&["dotnet", "run"]),
        );
        assert_eq!(plan.get(EXCLUDE_PROCESSES), Some("dotnet,dotnet.exe"));
        let mut plan = Plan::default();
        plan.set(EXCLUDE_PROCESSES, "Worker,DOTNET");
        inject(
            &mut plan,
            given(&home),
            "linux-x64",
            &argv(&["dotnet", "build"]),
        );
        assert_eq!(
            plan.get(EXCLUDE_PROCESSES),
            Some("Worker,DOTNET,dotnet.exe")
        );
        let mut plan = Plan::default();
        inject(
            &mut plan,
            given(&home),
            "linux-x64",
            &argv(&["dotnet", "app.dll"]),
        );
        assert_eq!(plan.get(EXCLUDE_PROCESSES), None);
    }

    #[test]
    fn the_release_asset_names_the_c_library_and_the_architecture() {
        let asset = |musl, arm64| release_asset_of(&Machine { musl, arm64 });
        let prefix = "opentelemetry-dotnet-instrumentation-linux-";
        assert_eq!(asset(false, false), format!("{prefix}glibc-x64.zip"));
        assert_eq!(asset(true, false), format!("{prefix}musl-x64.zip"));
        assert_eq!(asset(false, true), format!("{prefix}glibc-arm64.zip"));
        assert_eq!(asset(true, true), format!("{prefix}musl-arm64.zip"));
        let rid = |musl, arm64| runtime_id_of(&Machine { musl, arm64 });
        assert_eq!(
            [
                rid(false, false),
                rid(true, false),
                rid(false, true),
                rid(true, true)
            ],
            [
                "linux-x64",
                "linux-musl-x64",
                "linux-arm64",
                "linux-musl-arm64"
            ]
        );
    }
}
