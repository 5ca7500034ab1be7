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
            "otel_run_meters.py",
            include_str!("../../shims/python/otel_run_meters.py"),
        ),
        (
            "otel_run_spans.py",
            include_str!("../../shims/python/otel_run_spans.py"),
        ),
        (
            "otel_run_logs.py",
            include_str!("../../shims/python/otel_run_logs.py"),
        ),
    ],
};

impl Shim {
    /// The shim's directory, written if this version is not there yet: under
    /// `chosen` (OTEL_RUN_CACHE_DIR) or the user's cache, else, when that cannot be
    /// written (a read-only root filesystem), under a runtime or temporary
    /// directory, which is said the time the shim is written there.
    pub fn materialize(&self, chosen: Option<&Path>) -> io::Result<PathBuf> {
        self.materialize_in(cache_dirs(chosen))
    }

    fn materialize_in(&self, bases: Vec<Base>) -> io::Result<PathBuf> {
        let mut errors = Vec::new();
        for base in bases {
            let dir = base
                .path
                .join(format!("{}-{:016x}", self.name, self.fingerprint()));
            match base.check().and_then(|()| self.write_into(&dir)) {
                Ok(wrote) => {
                    if wrote && !errors.is_empty() {
                        tracing::warn!(
                            "the shim is written to {} because {}; set OTEL_RUN_CACHE_DIR to choose where",
                            dir.display(),
                            errors.join("; ")
                        );
                    }
                    return Ok(dir);
                }
                Err(e) => errors.push(format!("{} cannot be written ({e})", base.path.display())),
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

    /// Writes the files unless they are all there already; true if it wrote.
    fn write_into(&self, dir: &Path) -> io::Result<bool> {
        let complete = self
            .files
            .iter()
            .all(|(name, text)| fs::read_to_string(dir.join(name)).is_ok_and(|t| t == *text));
        if complete {
            return Ok(false);
        }
        fs::create_dir_all(dir)?;
        for (name, text) in self.files {
            // Written aside and renamed, so a concurrent run never reads half a file.
            let partial = dir.join(format!(".{name}.{}", std::process::id()));
            fs::write(&partial, text)?;
            fs::rename(&partial, dir.join(name))?;
        }
        Ok(true)
    }
}

/// A directory shims may be written under.
struct Base {
    path: PathBuf,
    /// `otel-run-UID` in a directory every user can write to: it must be this
    /// user's own, or another user could plant code the child runs.
    private: Option<PathBuf>,
}

impl Base {
    fn check(&self) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let Some(private) = &self.private else {
            return Ok(());
        };
        match fs::DirBuilder::new().mode(0o700).create(private) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let meta = fs::symlink_metadata(private)?;
        if !meta.is_dir() || meta.uid() != uid() || meta.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "{} is not a directory of this user's that only it can write",
                private.display()
            )));
        }
        Ok(())
    }
}

/// Where shims go, in order: `chosen` (OTEL_RUN_CACHE_DIR), `$XDG_CACHE_HOME`,
/// `~/.cache`, then the places still writable on a read-only root filesystem:
/// `$XDG_RUNTIME_DIR`, the temp dir and `/dev/shm` (tmpfs in containers).
fn cache_dirs(chosen: Option<&Path>) -> Vec<Base> {
    let mut dirs = Vec::new();
    let own = |path: PathBuf| Base {
        path,
        private: None,
    };
    if let Some(chosen) = chosen.filter(|p| !p.as_os_str().is_empty()) {
        dirs.push(own(chosen.join("shims")));
    }
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        dirs.push(own(xdg.join("otel-run/shims")));
    }
    if let Some(home) = var("HOME") {
        dirs.push(own(home.join(".cache/otel-run/shims")));
    }
    if let Some(runtime) = var("XDG_RUNTIME_DIR") {
        dirs.push(own(runtime.join("otel-run/shims")));
    }
    for shared in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        let private = shared.join(format!("otel-run-{}", uid()));
        dirs.push(Base {
            path: private.join("shims"),
            private: Some(private),
        });
    }
    dirs
}

fn uid() -> u32 {
    // SAFETY: getuid has no failure mode.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn own(path: PathBuf) -> Base {
        Base {
            path,
            private: None,
        }
    }

    #[test]
    fn an_unwritable_cache_falls_back_to_the_next_directory() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: not writable, even by root.
        let blocked = dir.path().join("read-only");
        fs::write(&blocked, "").unwrap();
        let fallback = dir.path().join("tmpfs");
        let written = PYTHON
            .materialize_in(vec![own(blocked.join("shims")), own(fallback.clone())])
            .unwrap();
        assert!(written.starts_with(&fallback), "{}", written.display());
        assert!(written.join("sitecustomize.py").is_file());
    }

    #[test]
    fn a_shared_directory_is_used_only_through_this_users_own_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("otel-run-x");
        let shared = |private: &Path| Base {
            path: private.join("shims"),
            private: Some(private.to_path_buf()),
        };
        let written = PYTHON.materialize_in(vec![shared(&private)]).unwrap();
        assert!(written.starts_with(&private));
        let mode = fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // One another user could write to is refused, and nothing is written in it.
        let planted = dir.path().join("otel-run-y");
        fs::create_dir(&planted).unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o777)).unwrap();
        let err = PYTHON.materialize_in(vec![shared(&planted)]).unwrap_err();
        assert!(err.to_string().contains("only it can write"), "{err}");
        assert!(!planted.join("shims").exists());
    }

    #[test]
    fn writes_once_and_rewrites_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("python-x");
        assert!(PYTHON.write_into(&target).unwrap());
        assert!(
            !PYTHON.write_into(&target).unwrap(),
            "a complete copy is kept"
        );
        let file = target.join("sitecustomize.py");
        assert_eq!(fs::read_to_string(&file).unwrap(), PYTHON.files[0].1);
        fs::write(&file, "broken").unwrap();
        PYTHON.write_into(&target).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), PYTHON.files[0].1);
    }
}
