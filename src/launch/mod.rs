//! Launching the command: resolve it on PATH, spawn it with the planned
//! environment, forward signals, wait, and turn its end into an exit code.
//!
//! otel-run spawns rather than execs: it must outlive the child to flush what the
//! child sent. stdin, stdout, stderr and the terminal are inherited untouched.

mod signals;
mod spawn;
mod stdio;
mod terminal;
mod wait;

pub use signals::{Stop, die_of};
pub use stdio::{closed as closed_stdio, note_closed as note_closed_stdio};

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::runtime::Plan;
use terminal::Terminal;

/// A command resolved to an executable.
#[derive(Debug)]
pub struct Command {
    /// The executable that will run.
    pub program: PathBuf,
    /// argv as the user gave it (argv[0] is kept as typed).
    pub argv: Vec<OsString>,
}

impl Command {
    /// argv as text, for span attributes.
    pub fn argv_lossy(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// What the runtime stage plans the injection for (`argv` from [`Self::argv_lossy`]).
    pub fn target<'a>(&'a self, argv: &'a [String], cwd: &'a Path) -> crate::runtime::Target<'a> {
        crate::runtime::Target {
            program: &self.program,
            argv,
            cwd,
        }
    }
}

/// How the child ended, as otel-run's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The child's exit status, or 128+N after death by signal N.
    pub code: i32,
    pub signal: Option<i32>,
    /// The command died of SIGINT or SIGQUIT, not forwarded by otel-run, while it
    /// held the terminal: the terminal's signal, which the rest of otel-run's
    /// group never saw.
    pub from_terminal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("command `{command}` not found")]
    NotFound {
        command: String,
        hint: Option<String>,
    },
    #[error("permission denied: `{}` is not executable", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot run `{}`: {source}", path.display())]
    Spawn { path: PathBuf, source: io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("lost track of the child process: {0}")]
    Wait(io::Error),
}

impl crate::diag::Hint for LaunchError {
    /// The shell's exit codes: 127 for not found, 126 for not executable.
    fn exit_code(&self) -> u8 {
        match self {
            LaunchError::NotFound { .. } => 127,
            LaunchError::PermissionDenied { .. } => 126,
            _ => 1,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            LaunchError::NotFound { hint, .. } => hint.clone(),
            LaunchError::PermissionDenied { path } => Some(format!(
                "make it executable with `chmod +x {}`",
                path.display()
            )),
            _ => None,
        }
    }
}

/// Resolves `argv[0]` as a shell would: a name with a slash is a path, a bare name
/// is looked up on PATH.
pub fn resolve(argv: Vec<OsString>, cwd: &Path) -> Result<Command, LaunchError> {
    let name = argv[0].to_string_lossy().into_owned();
    let program = if name.contains('/') {
        let path = cwd.join(&name);
        if !path.exists() {
            return Err(LaunchError::NotFound {
                command: name.clone(),
                hint: file_hint(&name),
            });
        }
        path
    } else {
        which::which_in(&name, std::env::var_os("PATH"), cwd).map_err(|_| {
            LaunchError::NotFound {
                command: name.clone(),
                hint: file_hint(&name).or_else(|| {
                    cwd.join(&name)
                        .is_file()
                        .then(|| format!("to run the file in this directory, use `./{name}`"))
                }),
            }
        })?
    };
    let meta = std::fs::metadata(&program).map_err(|source| LaunchError::Spawn {
        path: program.clone(),
        source,
    })?;
    if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
        return Err(LaunchError::PermissionDenied { path: program });
    }
    Ok(Command { program, argv })
}

/// Scripts are usually run through their interpreter.
fn file_hint(name: &str) -> Option<String> {
    let interpreter = match Path::new(name).extension()?.to_str()? {
        "py" => "python",
        "js" | "mjs" | "cjs" => "node",
        "sh" => "sh",
        "jar" => return Some(format!("run a jar with `otel-run java -jar {name}`")),
        _ => return None,
    };
    Some(format!(
        "run a script through its interpreter: `otel-run {interpreter} {name}`"
    ))
}

/// Spawns the command with the planned environment, forwards signals while it
/// runs, and waits for it. `spawned` is told the child's pid.
pub fn run(command: &Command, plan: &Plan, spawned: impl FnOnce(u32)) -> Result<Exit, LaunchError> {
    let signals = signals::Signals::install().map_err(LaunchError::Signals)?;
    let terminal = terminal::Terminal::find();
    let foreground = terminal.as_ref().filter(|t| t.ours()).map(Terminal::fd);
    let mut env: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for name in &plan.remove {
        env.remove(std::ffi::OsStr::new(name));
    }
    env.extend(
        plan.set
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let spawn_error = |source: io::Error| match source.kind() {
        io::ErrorKind::PermissionDenied => LaunchError::PermissionDenied {
            path: command.program.clone(),
        },
        _ => LaunchError::Spawn {
            path: command.program.clone(),
            source,
        },
    };
    let mut child = spawn::Spawn::new(
        &command.program,
        &command.argv,
        env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())),
    )
    .map_err(spawn_error)?;
    child.foreground = foreground;
    child.close_stdio(stdio::closed());
    let pid = child.start().map_err(spawn_error)?;
    // SAFETY: plain syscall; fails harmlessly once the child has exec'd.
    unsafe {
        libc::setpgid(pid, pid);
    }
    if let Some(terminal) = terminal.as_ref().filter(|_| foreground.is_some()) {
        terminal.give(pid);
    }
    spawned(pid as u32);
    let forwarder = signals
        .forward_to(pid as u32)
        .map_err(LaunchError::Signals)?;
    let waited = loop {
        match wait::next(pid) {
            Ok(wait::Event::Exited) => break Ok(()),
            Ok(wait::Event::Stopped(signal)) => {
                if let Some(terminal) = &terminal {
                    terminal.stopped(pid, signal);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let forwarded = forwarder.stop();
    let held_terminal = terminal.as_ref().is_some_and(|t| t.held_by(pid));
    if held_terminal && let Some(terminal) = &terminal {
        terminal.take_back();
    }
    waited.map_err(LaunchError::Wait)?;
    let status = spawn::wait(pid).map_err(LaunchError::Wait)?;
    Ok(match status {
        spawn::Status::Code(code) => Exit {
            code,
            signal: None,
            from_terminal: false,
        },
        spawn::Status::Signal(signal) => Exit {
            code: 128 + signal,
            signal: Some(signal),
            from_terminal: held_terminal
                && matches!(signal, libc::SIGINT | libc::SIGQUIT)
                && !forwarded.contains(signal),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Hint as _;

    fn argv(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn resolves_on_path_and_keeps_argv0() {
        let cmd = resolve(argv(&["sh", "-c", "true"]), Path::new("/")).unwrap();
        assert!(cmd.program.is_absolute());
        assert_eq!(cmd.argv[0], "sh");
    }

    #[test]
    fn missing_script_hints_at_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(argv(&["app.py"]), dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), 127);
        assert_eq!(
            err.hint().unwrap(),
            "run a script through its interpreter: `otel-run python app.py`"
        );
    }

    #[test]
    fn file_in_cwd_hints_at_dot_slash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = resolve(argv(&["tool"]), dir.path()).unwrap_err();
        assert!(err.hint().unwrap().contains("`./tool`"));
    }

    #[test]
    fn not_executable_is_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), "x").unwrap();
        let err = resolve(argv(&["./data"]), dir.path()).unwrap_err();
        assert!(matches!(err, LaunchError::PermissionDenied { .. }));
        assert_eq!(err.exit_code(), 126);
    }
}
