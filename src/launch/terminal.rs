//! The terminal, handed to the command as a shell hands it to a foreground job.
//!
//! The command leads a process group of its own. When otel-run's group is the
//! terminal's foreground group, the command's group becomes it: the command reads
//! its keys and gets the terminal's signals, and otel-run gets neither. When the
//! command stops (Ctrl-Z, or reading the terminal from the background), otel-run
//! takes the terminal back and stops its own group with the same signal, so the
//! shell sees the job stopped; when the shell continues the job, otel-run gives
//! the terminal back (if it is in the foreground again) and continues the
//! command. When the command has exited, the terminal is otel-run's group's again,
//! so the script that ran otel-run can go on reading it.

use std::os::fd::RawFd;

/// The controlling terminal on one of otel-run's standard streams.
pub struct Terminal {
    fd: RawFd,
}

impl Terminal {
    /// The terminal on stdin, stdout or stderr, if it is otel-run's controlling one.
    pub fn find() -> Option<Terminal> {
        // SAFETY: plain syscalls on otel-run's standard descriptors.
        (0..=2)
            .find(|&fd| unsafe { libc::isatty(fd) == 1 && libc::tcgetsid(fd) == libc::getsid(0) })
            .map(|fd| Terminal { fd })
    }

    /// Whether otel-run's process group is the terminal's foreground group.
    pub fn ours(&self) -> bool {
        // SAFETY: plain syscalls.
        unsafe { libc::tcgetpgrp(self.fd) == libc::getpgrp() }
    }

    /// Whether `pgid` is the terminal's foreground group.
    pub fn held_by(&self, pgid: libc::pid_t) -> bool {
        // SAFETY: plain syscall.
        unsafe { libc::tcgetpgrp(self.fd) == pgid }
    }

    /// Makes `pgid` the foreground group.
    pub fn give(&self, pgid: libc::pid_t) {
        give(self.fd, pgid);
    }

    /// Makes otel-run's group the foreground group again.
    pub fn take_back(&self) {
        // SAFETY: plain syscall.
        give(self.fd, unsafe { libc::getpgrp() });
    }

    /// The descriptor, for the child to take the terminal itself before it execs.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The command stopped with `signal`: stop otel-run's job the same way, and
    /// once it is continued, continue the command (in the foreground if the job is).
    pub fn stopped(&self, pgid: libc::pid_t, signal: libc::c_int) {
        if self.held_by(pgid) {
            self.take_back();
        }
        // SAFETY: plain syscalls. `kill(0, ..)` stops otel-run's whole group, as
        // the terminal would have; it returns once otel-run is continued.
        unsafe {
            libc::kill(0, signal);
        }
        if self.ours() {
            self.give(pgid);
        }
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, libc::SIGCONT);
        }
    }
}

/// `tcsetpgrp` from a process that may be in a background group: SIGTTOU, which
/// the kernel would send it for that, is blocked for the call. Async-signal-safe,
/// so the child may call it between fork and exec.
pub fn give(fd: RawFd, pgid: libc::pid_t) {
    // SAFETY: signal-mask calls on the calling thread and a plain syscall.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        libc::tcsetpgrp(fd, pgid);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}
