//! .NET: the contract of the OpenTelemetry .NET automatic instrumentation's
//! `instrument.sh`. Given its home directory, the CLR loads the native profiler
//! and the managed startup hook from there.

use std::path::{Path, PathBuf};

use super::{Note, Plan};

/// The CLR profiler the automatic instrumentation registers.
const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";
const NATIVE: &str = "OpenTelemetry.AutoInstrumentation.Native.so";
const STARTUP_HOOK: &str = "net/OpenTelemetry.AutoInstrumentation.StartupHook.dll";

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

/// The runtime identifier of this machine's native profiler build.
pub fn runtime_id() -> &'static str {
    let musl = std::fs::read_dir("/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))
        })
        .unwrap_or(false);
    match (std::env::consts::ARCH, musl) {
        ("aarch64", false) => "linux-arm64",
        ("aarch64", true) => "linux-musl-arm64",
        (_, true) => "linux-musl-x64",
        _ => "linux-x64",
    }
}

/// Injects the automatic instrumentation from `home`, after checking its layout.
pub fn inject(plan: &mut Plan, home: Option<PathBuf>, rid: &str) {
    let fix = "get it from the opentelemetry-dotnet-instrumentation releases, unpack it, and give its \
               directory with `--dotnet-auto-home DIR` (or OTEL_DOTNET_AUTO_HOME); `otel-run bootstrap --dotnet` checks it";
    let Some(home) = home else {
        plan.notes.push(Note::new("no OpenTelemetry .NET automatic instrumentation is set up; the program runs uninstrumented", fix));
        return;
    };
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

    #[test]
    fn a_complete_home_sets_the_profiler_and_the_startup_hook() {
        let home = layout("linux-x64");
        let mut plan = Plan::default();
        inject(&mut plan, Some(home.path().to_path_buf()), "linux-x64");
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
        inject(&mut plan, Some(home.path().to_path_buf()), "linux-x64");
        assert!(plan.set.is_empty());
        assert_eq!(plan.notes.len(), 1);
        assert!(
            plan.notes[0].message.contains("linux-x64"),
            "{:?}",
            plan.notes
        );
    }
}
