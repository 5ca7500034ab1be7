//! What the running system must offer before probes are loaded, each missing
//! piece named in its own message rather than as a verifier or `EPERM` error.

use super::ProbeError;

/// Kernel release the probes need: BPF cookies on uprobes (5.15) and ring buffers (5.8).
pub const MIN_KERNEL: (u32, u32) = (5, 15);

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks the running system.
pub fn system() -> Result<(), ProbeError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    check(&status, release.trim(), btf)
}

/// The checks, on what was read: `/proc/self/status`, the kernel release, and
/// whether the kernel's BTF exists.
pub fn check(status: &str, release: &str, btf: bool) -> Result<(), ProbeError> {
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(ProbeError::NoPrivilege);
    }
    if let Some(version) = kernel_version(release)
        && version < MIN_KERNEL
    {
        return Err(ProbeError::OldKernel {
            release: release.to_string(),
        });
    }
    if !btf {
        return Err(ProbeError::NoBtf);
    }
    Ok(())
}

/// `(major, minor)` of a release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Name:\tx\nCapEff:\t000001ffffffffff\n";

    #[test]
    fn root_on_a_recent_kernel_with_btf_passes() {
        assert!(check(ROOT, "6.18.0", true).is_ok());
        // CAP_BPF + CAP_PERFMON without CAP_SYS_ADMIN is enough.
        let bpf_perfmon = format!("CapEff:\t{:016x}\n", (1u64 << 38) | (1u64 << 39));
        assert!(check(&bpf_perfmon, "6.1.0-18-amd64", true).is_ok());
    }

    #[test]
    fn each_missing_piece_has_its_error() {
        assert!(matches!(
            check("CapEff:\t0000000000000000\n", "6.18.0", true),
            Err(ProbeError::NoPrivilege)
        ));
        assert!(matches!(
            check(ROOT, "5.4.0-150-generic", true),
            Err(ProbeError::OldKernel { .. })
        ));
        assert!(matches!(
            check(ROOT, "6.18.0", false),
            Err(ProbeError::NoBtf)
        ));
    }
}
