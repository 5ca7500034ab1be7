//! The binary `install.sh` installs (statically linked, see `.cargo/config.toml`),
//! which the rest of the suite, running the debug build, never starts: the
//! README's quick start under it, and its exports to a real collector by the
//! name `localhost`, which a static C library resolves without its shared
//! name-service modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Collector, assert_success, console_spans_in, otel_run, peer};

fn installed() -> Option<PathBuf> {
    peer(
        "OTEL_RUN_TEST_INSTALLED",
        "otel-run as install.sh installs it (`PREFIX=DIR ./install.sh`)",
    )
}

/// `otel-run` as the suite's helper makes it (a clean environment, exporters
/// off), but the installed binary.
fn command(binary: &Path) -> Command {
    let template = otel_run();
    let mut command = Command::new(binary);
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

#[test]
fn the_installed_binary_is_statically_linked_and_runs_the_quick_start() {
    let Some(binary) = installed() else { return };
    let bytes = std::fs::read(&binary).unwrap();
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(&*bytes).unwrap();
    use object::read::elf::ProgramHeader as _;
    let endian = elf.endian();
    let interpreter = elf
        .elf_program_headers()
        .iter()
        .any(|h| h.p_type(endian) == object::elf::PT_INTERP);
    assert!(
        !interpreter,
        "{} asks for a dynamic loader",
        binary.display()
    );

    let dir = binary.parent().unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = command(&binary)
        .env("PATH", path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--traces-exporter",
            "console",
            "--",
            "sh",
            "examples/quickstart.sh",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 tests passed"), "{stdout}");
    let spans = console_spans_in(&stdout);
    let mut names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["compile", "package", "sh", "test"], "{stdout}");
    let traces: std::collections::HashSet<&str> = spans
        .iter()
        .map(|s| s["context"]["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), 1, "one trace: {stdout}");
}

#[test]
fn the_installed_binary_exports_to_localhost_over_both_protocols() {
    let Some(binary) = installed() else { return };
    let Some(collector) = Collector::start() else {
        return;
    };
    for (protocol, port) in [("grpc", collector.grpc), ("http/protobuf", collector.http)] {
        let out = command(&binary)
            .args([
                "--traces-exporter",
                "otlp",
                "--exporter-otlp-protocol",
                protocol,
            ])
            .args([
                "--exporter-otlp-endpoint",
                &format!("http://localhost:{port}"),
            ])
            .args(["--span-name", protocol, "--", "true"])
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{protocol}");
    }
    let spans = collector.wait_spans(2);
    let mut names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["grpc", "http/protobuf"]);
}

/// The functions a launch runs (`.cargo/launch.order`, written by
/// `bench/launch/order.sh`) are linked side by side, so a launch maps a few
/// 64 KiB windows of code instead of most of them. Fails when the build
/// ignored the order, or when the list has gone stale: too many of its
/// functions were renamed or moved (run the script again).
#[test]
fn the_installed_binary_has_the_launchs_code_side_by_side() {
    use object::{Object as _, ObjectSymbol as _};
    let Some(binary) = installed() else { return };
    let order =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".cargo/launch.order"))
            .unwrap();
    let listed: std::collections::HashSet<&str> = order.lines().collect();
    let bytes = std::fs::read(&binary).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    let mut found = std::collections::HashSet::new();
    let mut windows = std::collections::BTreeSet::new();
    let mut hot_bytes = 0;
    for symbol in elf.symbols() {
        let Ok(name) = symbol.name() else { continue };
        if symbol.size() == 0 || !listed.contains(name) || !found.insert(name) {
            continue;
        }
        hot_bytes += symbol.size();
        let (start, end) = (symbol.address(), symbol.address() + symbol.size());
        windows.extend(start >> 16..=(end - 1) >> 16);
    }
    assert!(
        found.len() * 5 >= listed.len() * 4,
        "only {} of the {} functions in .cargo/launch.order are in {}: run bench/launch/order.sh",
        found.len(),
        listed.len(),
        binary.display()
    );
    // Packed, they fill their size in windows and a few more at the edges of
    // the C library's objects; spread, they touched about 120.
    let packed = hot_bytes.div_ceil(1 << 16) as usize;
    assert!(
        windows.len() <= packed * 3 / 2 + 4,
        "the launch's {} KiB of code spans {} windows of 64 KiB ({} when packed)",
        hot_bytes >> 10,
        windows.len(),
        packed
    );
}
