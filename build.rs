//! Compiles the eBPF probes in `probes/` with clang when it is available, and
//! links the binary with packed relative relocations when the linker can.
//!
//! Without clang (or without libbpf's headers) the crate still builds: the
//! `otel_run_probes` cfg stays unset and `--uprobe` explains how to get probe
//! support. Set `OTEL_RUN_CLANG` to use another clang.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every eBPF source, compiled to `$OUT_DIR/<name>.o`.
const PROBES: &[&str] = &["uprobe", "process"];
/// Headers the sources include.
const HEADERS: &[&str] = &["probes/event.h", "probes/process.h"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(otel_run_probes)");
    println!("cargo::rerun-if-env-changed=OTEL_RUN_CLANG");
    // The symbol order `cargo build-installed` links by: a new one relinks.
    println!("cargo::rerun-if-changed=.cargo/launch.order");
    for header in HEADERS {
        println!("cargo::rerun-if-changed={header}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    pack_relative_relocations(&out);
    let clang = std::env::var("OTEL_RUN_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => {
            println!(
                "cargo::warning=eBPF probes are not built for {other}; `--uprobe` is unavailable"
            );
            return;
        }
        Err(_) => return,
    };
    let multiarch = match arch {
        "x86" => "/usr/include/x86_64-linux-gnu",
        _ => "/usr/include/aarch64-linux-gnu",
    };
    for probe in PROBES {
        let source = format!("probes/{probe}.bpf.c");
        println!("cargo::rerun-if-changed={source}");
        let object = out.join(format!("{probe}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg(format!("-I{multiarch}"))
            .args(["-Iprobes", "-c", &source, "-o"])
            .arg(&object)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(_) => {
                println!(
                    "cargo::warning=clang could not compile {source} (are libbpf's headers installed? `apt-get install libbpf-dev`); `--uprobe` is unavailable"
                );
                return;
            }
            Err(_) => {
                println!(
                    "cargo::warning=no clang: eBPF probes are not built and `--uprobe` is unavailable (`apt-get install clang libbpf-dev`, then rebuild)"
                );
                return;
            }
        }
    }
    println!("cargo::rustc-cfg=otel_run_probes");
}

/// otel-run's binary has some 18,000 relative relocations (the settings list,
/// vtables): applied from `.rela.dyn` at every start they cost the dynamic
/// loader more instructions, and more pages, than the rest of a launch. Packed
/// (`DT_RELR`, glibc 2.36 and binutils 2.38 or later) they take a few KiB. The
/// flag is used only when a test program links with it without a warning: an
/// older linker or C library keeps the usual form.
fn pack_relative_relocations(out: &Path) {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != std::env::var("HOST").unwrap_or_default() || !target.ends_with("-linux-gnu") {
        return;
    }
    println!("cargo::rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let source = out.join("relr.c");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return;
    }
    let linked = Command::new(cc)
        .arg(&source)
        .arg("-o")
        .arg(out.join("relr"))
        .args([
            "-pie",
            "-Wl,-z,pack-relative-relocs",
            "-Wl,--fatal-warnings",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if linked {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
