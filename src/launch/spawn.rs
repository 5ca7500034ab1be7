//! Starting the command without copying otel-run: `clone(CLONE_VM | CLONE_VFORK)`,
//! as glibc's `posix_spawn` does, with the few steps `posix_spawn` cannot take
//! (the parent-death signal, the check that otel-run is still there).
//!
//! A `fork` marks every page otel-run has written copy-on-write: the child takes
//! a fault for each page it touches before it execs, and otel-run one for each
//! page it writes afterwards. On a virtual machine each fault is a trip to the
//! hypervisor (`bench/launch` measures it). Here the child runs in otel-run's
//! memory, on a stack of its own, while the thread that spawned it waits until
//! it has exec'd, so nothing is copied or marked.
//!
//! Running in otel-run's memory sets the rules for the child's side
//! ([`child`]): it allocates nothing and takes no lock (otel-run's other threads
//! keep running and may hold them), everything it needs is built beforehand,
//! and no signal handler of otel-run's may run in it: signals stay blocked
//! until its handlers are reset to the default.
//!
//! The child tells a failed `execve` through the memory it shares. Under
//! valgrind, which turns such a clone into a fork, that is lost as it is for
//! glibc's `posix_spawn`: the command then just exits 127.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// What the child does between `clone` and `execve`, all prepared in the parent.
pub struct Spawn {
    program: CString,
    /// The `argv` and `envp` arrays: pointers into `strings`, each ending in null.
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The same argv for `/bin/sh` (`sh PROGRAM ARGS...`): an executable file
    /// that is not one to the kernel (ENOEXEC, a script without `#!`) runs
    /// through the shell, as `execvp` and shells run it.
    script: Vec<*const libc::c_char>,
    _strings: Vec<CString>,
    /// Take the terminal on this descriptor for the new process group.
    pub foreground: Option<libc::c_int>,
    /// otel-run's pid: the child kills itself if its parent is no longer this
    /// one by the time the parent-death signal is set.
    parent: libc::pid_t,
    /// The standard descriptors otel-run found closed, to close again in the child.
    close: [bool; 3],
    /// The child's `errno` when its `execve` failed (0 while it has not).
    error: AtomicI32,
}

/// How the child ended.
pub enum Status {
    Code(i32),
    Signal(i32),
}

/// Room for the child's few frames: [`child`] calls only libc.
const STACK: usize = 64 * 1024;

impl Spawn {
    /// The command `program` with `argv` (argv[0] included) and the environment
    /// `env`. A NUL byte in any of them is an `InvalidInput` error, as
    /// `std::process::Command` gives.
    pub fn new<'a>(
        program: &Path,
        argv: &[OsString],
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> io::Result<Spawn> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in the command or its environment",
                )
            })
        };
        let program = c(program.as_os_str().as_bytes())?;
        let mut strings = Vec::with_capacity(argv.len() + 1);
        strings.push(c(b"/bin/sh")?);
        for arg in argv {
            strings.push(c(arg.as_bytes())?);
        }
        let args = strings.len();
        let mut script = vec![strings[0].as_ptr(), program.as_ptr()];
        script.extend(strings[2.min(args)..args].iter().map(|s| s.as_ptr()));
        script.push(std::ptr::null());
        for (name, value) in env {
            let mut pair = Vec::with_capacity(name.len() + value.len() + 1);
            pair.extend_from_slice(name.as_bytes());
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(c(&pair)?);
        }
        let pointers = |strings: &[CString]| {
            let mut out: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
            out.push(std::ptr::null());
            out
        };
        Ok(Spawn {
            program,
            argv: pointers(&strings[1..args]),
            script,
            envp: pointers(&strings[args..]),
            _strings: strings,
            foreground: None,
            // SAFETY: plain syscall.
            parent: unsafe { libc::getpid() },
            close: [false; 3],
            error: AtomicI32::new(0),
        })
    }

    /// Closes these standard descriptors in the child (they were closed when
    /// otel-run started and were opened since, on `/dev/null`).
    pub fn close_stdio(&mut self, fds: impl IntoIterator<Item = libc::c_int>) {
        for fd in fds {
            if let Some(slot) = self.close.get_mut(fd as usize) {
                *slot = true;
            }
        }
    }

    /// Starts the command in a process group of its own and returns its pid once
    /// it has exec'd, or the error its `execve` failed with (the child is reaped).
    pub fn start(&self) -> io::Result<libc::pid_t> {
        let mut stack = vec![0u8; STACK];
        // The stack grows down from its end, aligned as the ABI asks.
        let top = ((stack.as_mut_ptr() as usize + STACK) & !15) as *mut libc::c_void;
        // SAFETY: every signal is blocked on this thread across the clone, so
        // that none of otel-run's handlers runs in the child; the mask is put
        // back before returning. `child` gets a pointer to `self`, which
        // outlives it: CLONE_VFORK holds this thread until the child has exec'd
        // or exited, and the stack lives until then too.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const Spawn as *mut libc::c_void,
            );
            let clone_error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(clone_error);
            }
            pid
        };
        drop(stack);
        match self.error.load(Ordering::Acquire) {
            0 => Ok(pid),
            errno => {
                // It exited at once with 127: reap it.
                let _ = wait(pid);
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

/// The child, in otel-run's memory until it execs. Only async-signal-safe libc
/// calls, no allocation, nothing that locks.
extern "C" fn child(spawn: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `start` passes a live `Spawn` and waits for us (CLONE_VFORK).
    let spawn = unsafe { &*(spawn as *const Spawn) };
    // SAFETY: sigaction, setpgid, tcsetpgrp, prctl, close, execve and _exit are
    // async-signal-safe syscalls on memory we own or that `spawn` holds.
    unsafe {
        // otel-run's handlers must not run here (they write to otel-run's
        // descriptors); an ignored signal stays ignored, as across a fork and
        // exec, but SIGPIPE, which Rust's runtime ignores, is reset as
        // std::process::Command resets it.
        for signal in 1..=libc::SIGRTMAX() {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) != 0 {
                continue;
            }
            let ignored = action.sa_sigaction == libc::SIG_IGN && signal != libc::SIGPIPE;
            if action.sa_sigaction != libc::SIG_DFL && !ignored {
                action.sa_sigaction = libc::SIG_DFL;
                action.sa_flags = 0;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
        // Its own process group, as a shell's job (see `signals`), with the
        // terminal if otel-run's group had it. The parent does the same, so
        // neither order of the two can let the command run without them.
        libc::setpgid(0, 0);
        if let Some(fd) = spawn.foreground {
            super::terminal::give(fd, libc::getpid());
        }
        // Outside otel-run's group, the command no longer gets a SIGKILL sent to
        // the group (`timeout -k`, an IDE's force stop): otel-run's death passes
        // it on.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != spawn.parent {
            libc::raise(libc::SIGKILL);
        }
        for (fd, close) in spawn.close.iter().enumerate() {
            if *close {
                libc::close(fd as libc::c_int);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(
            spawn.program.as_ptr(),
            spawn.argv.as_ptr(),
            spawn.envp.as_ptr(),
        );
        let mut errno = *libc::__errno_location();
        if errno == libc::ENOEXEC {
            libc::execve(spawn.script[0], spawn.script.as_ptr(), spawn.envp.as_ptr());
            errno = *libc::__errno_location();
        }
        spawn.error.store(errno, Ordering::Release);
        libc::_exit(127)
    }
}

/// Reaps `pid` and says how it ended.
pub fn wait(pid: libc::pid_t) -> io::Result<Status> {
    loop {
        let mut status = 0;
        // SAFETY: plain syscall into a local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(if libc::WIFSIGNALED(status) {
                Status::Signal(libc::WTERMSIG(status))
            } else {
                Status::Code(libc::WEXITSTATUS(status))
            });
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(program: &str, argv: &[&str], env: &[(&str, &str)]) -> io::Result<Spawn> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        Spawn::new(
            Path::new(program),
            &argv,
            env.iter().map(|(k, v)| (OsStr::new(*k), OsStr::new(*v))),
        )
    }

    #[test]
    fn the_command_gets_its_argv_and_exactly_the_environment_given() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "printf '%s|' \"$0\" \"$1\" \"$ONE\" \"${{HOME-unset}}\" > {}",
            out.display()
        );
        let spawned = spawn(
            "/bin/sh",
            &["sh", "-c", &script, "zero", "one"],
            &[("ONE", "1 2")],
        )
        .unwrap();
        let pid = spawned.start().unwrap();
        assert!(matches!(wait(pid).unwrap(), Status::Code(0)));
        assert_eq!(std::fs::read_to_string(out).unwrap(), "zero|one|1 2|unset|");
    }

    #[test]
    fn an_exec_that_fails_is_an_error_with_its_errno() {
        let spawned = spawn("/nonexistent/program", &["program"], &[]).unwrap();
        let error = spawned.start().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn an_executable_file_without_an_interpreter_line_runs_through_the_shell() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        let out = dir.path().join("out");
        std::fs::write(
            &script,
            format!("printf '%s|' \"$0\" \"$1\" > {}\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = [OsString::from("typed-name"), OsString::from("one")];
        let pid = Spawn::new(&script, &argv, std::iter::empty())
            .unwrap()
            .start()
            .unwrap();
        assert!(matches!(wait(pid).unwrap(), Status::Code(0)));
        let expected = format!("{}|one|", script.display());
        assert_eq!(std::fs::read_to_string(out).unwrap(), expected);
    }

    #[test]
    fn a_nul_byte_is_invalid_input_before_anything_runs() {
        let error = spawn("/bin/true", &["tr\0ue"], &[]).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn exit_codes_and_signals_are_told_apart() {
        let pid = spawn("/bin/sh", &["sh", "-c", "exit 3"], &[])
            .unwrap()
            .start()
            .unwrap();
        assert!(matches!(wait(pid).unwrap(), Status::Code(3)));
        let pid = spawn("/bin/sh", &["sh", "-c", "kill -TERM $$"], &[])
            .unwrap()
            .start()
            .unwrap();
        assert!(matches!(wait(pid).unwrap(), Status::Signal(libc::SIGTERM)));
    }

    #[test]
    fn the_child_leads_a_process_group_of_its_own_and_has_no_signal_blocked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("status");
        let script = format!(
            "grep -E '^SigBlk' /proc/self/status > {}; cut -d' ' -f5 /proc/$$/stat >> {0}",
            out.display()
        );
        let pid = spawn(
            "/bin/sh",
            &["sh", "-c", &script],
            &[("PATH", "/usr/bin:/bin")],
        )
        .unwrap()
        .start()
        .unwrap();
        assert!(matches!(wait(pid).unwrap(), Status::Code(0)));
        let text = std::fs::read_to_string(out).unwrap();
        assert!(text.starts_with("SigBlk:\t0000000000000000\n"), "{text}");
        assert_eq!(
            text.lines().nth(1).unwrap().trim(),
            pid.to_string(),
            "{text}"
        );
    }
}
