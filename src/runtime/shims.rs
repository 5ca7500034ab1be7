//! Files injected into children (`shims/` in the source tree), embedded in the
//! binary so one installed file is complete, and written to a cache directory the
//! first time a version of them is used.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A shim: its directory name and files.
pub struct Shim {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

pub const NODE: Shim = Shim {
    name: "node",
    files: &[
        ("sdk.cjs", include_str!("../../shims/node/sdk.cjs")),
        (
            "register.mjs",
            include_str!("../../shims/node/register.mjs"),
        ),
    ],
};

pub const PYTHON: Shim = Shim {
    name: "python",
    files: &[
        (
            "sitecustomize.py",
            include_str!("../../shims/python/sitecustomize.py"),
        ),
        (
            "otel_run_api.py",
            include_str!("../../shims/python/otel_run_api.py"),
        ),
        (
            "otel_run_sdk.py",
            include_str!("../../shims/python/otel_run_sdk.py"),
        ),
        (
            "otel_run_wire.py",
            include_str!("../../shims/python/otel_run_wire.py"),
        ),
        (
            "otel_run_traces.py",
            include_str!("../../shims/python/otel_run_traces.py"),
        ),
        (
            "otel_run_metrics.py",
            include_str!("../../shims/python/otel_run_metrics.py"),
        ),
        (
            "otel_run_logs.py",
            include_str!("../../shims/python/otel_run_logs.py"),
        ),
    ],
};

impl Shim {
    /// The shim's directory, written if this version is not there yet.
    pub fn materialize(&self) -> io::Result<PathBuf> {
        let mut errors = Vec::new();
        for base in cache_dirs() {
            let dir = base.join(format!("{}-{:016x}", self.name, self.fingerprint()));
            match self.write_into(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) => errors.push(format!("{}: {e}", dir.display())),
            }
        }
        Err(io::Error::other(errors.join("; ")))
    }

    /// Content hash (FNV-1a): a changed shim gets a new directory.
    fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf29ce484222325;
        for (name, text) in self.files {
            for byte in name.bytes().chain(text.bytes()) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
            }
        }
        hash
    }

    fn write_into(&self, dir: &Path) -> io::Result<()> {
        let complete = self
            .files
            .iter()
            .all(|(name, text)| fs::read_to_string(dir.join(name)).is_ok_and(|t| t == *text));
        if complete {
            return Ok(());
        }
        fs::create_dir_all(dir)?;
        for (name, text) in self.files {
            // Written aside and renamed, so a concurrent run never reads half a file.
            let partial = dir.join(format!(".{name}.{}", std::process::id()));
            fs::write(&partial, text)?;
            fs::rename(&partial, dir.join(name))?;
        }
        Ok(())
    }
}

/// `$XDG_CACHE_HOME/otel-run/shims`, `~/.cache/otel-run/shims`, then the temp dir.
fn cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(xdg).join("otel-run/shims"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(home).join(".cache/otel-run/shims"));
    }
    // SAFETY: getuid has no failure mode.
    let uid = unsafe { libc::getuid() };
    dirs.push(std::env::temp_dir().join(format!("otel-run-{uid}/shims")));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_rewrites_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("python-x");
        PYTHON.write_into(&target).unwrap();
        let file = target.join("sitecustomize.py");
        assert_eq!(fs::read_to_string(&file).unwrap(), PYTHON.files[0].1);
        fs::write(&file, "broken").unwrap();
        PYTHON.write_into(&target).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), PYTHON.files[0].1);
    }
}
