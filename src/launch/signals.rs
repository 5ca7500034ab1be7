//! Which signals otel-run passes on to the child, and why.
//!
//! otel-run stays in the child's process group (it never calls `setpgid`), so the
//! child keeps the terminal: a REPL reads its keys, job control works, and a
//! terminal's signals (Ctrl-C's SIGINT, Ctrl-\'s SIGQUIT, a resize's SIGWINCH, a
//! hang-up's SIGHUP) are delivered by the kernel to the whole foreground group,
//! the child included. Forwarding those again would deliver them twice, so a
//! signal that came from the kernel (`si_code == SI_KERNEL`) is not forwarded
//! while the child is still in otel-run's group. The same signals sent to
//! otel-run alone, with `kill`, are forwarded: nothing else would reach the child.
//!
//! SIGTERM is always forwarded: it is how service managers and container runtimes
//! stop a process, and otel-run may be PID 1 in a container. SIGUSR1 and SIGUSR2
//! never come from a terminal and are always forwarded.
//!
//! A child may ignore SIGTERM. A second SIGTERM, or a SIGINT after a SIGTERM, then
//! kills it with SIGKILL, so otel-run never hangs on a child that will not stop.
//! A terminal's Ctrl-C alone never escalates: `otel-run python` keeps a REPL that
//! survives any number of them.
//!
//! A signal otel-run inherited as ignored (`nohup`, `cmd &` in a script) stays
//! ignored, and the child inherits that as it would without otel-run.

use std::io;
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use signal_hook::low_level::siginfo::Cause;

const FORWARDED: &[libc::c_int] = &[SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH];

/// Signal handlers installed before the child is spawned, so none is missed.
pub struct Signals {
    info: SignalsInfo<WithOrigin>,
    handled: Vec<libc::c_int>,
}

/// The thread that forwards signals while the child runs.
pub struct Forwarder {
    handle: Handle,
    thread: JoinHandle<()>,
    handled: Vec<libc::c_int>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let handled: Vec<libc::c_int> = FORWARDED
            .iter()
            .copied()
            .filter(|&s| !is_ignored(s))
            .collect();
        let info = SignalsInfo::<WithOrigin>::new(&handled)?;
        Ok(Signals { info, handled })
    }

    pub fn forward_to(self, pid: u32) -> Forwarder {
        let mut signals = self.info;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("otel-run-signals".into())
            .spawn(move || {
                let pid = pid as libc::pid_t;
                let mut terminating = false;
                for origin in signals.forever() {
                    let signal = origin.signal;
                    let from_kernel = matches!(origin.cause, Cause::Kernel);
                    let action = decide(signal, from_kernel, same_group(pid), terminating);
                    terminating |= signal == SIGTERM;
                    match action {
                        Action::Forward => send(pid, signal),
                        Action::Kill => {
                            tracing::warn!("the command did not stop on SIGTERM; killing it");
                            send(pid, SIGKILL);
                        }
                        Action::AlreadyDelivered => {}
                    }
                }
            })
            .expect("spawning the signal thread");
        Forwarder {
            handle,
            thread,
            handled: self.handled,
        }
    }
}

impl Forwarder {
    /// Stops forwarding once the child has exited. The signals get their default
    /// action back, so Ctrl-C or SIGTERM during the flush at exit stops otel-run
    /// instead of being swallowed.
    pub fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
        for signal in self.handled {
            // SAFETY: restoring a default disposition; nothing registers them again.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Forward,
    /// The terminal already delivered it to the child's group.
    AlreadyDelivered,
    Kill,
}

fn decide(signal: libc::c_int, from_kernel: bool, same_group: bool, terminating: bool) -> Action {
    if terminating && (signal == SIGTERM || signal == SIGINT) {
        return Action::Kill;
    }
    let from_terminal = matches!(signal, SIGINT | SIGQUIT | SIGHUP | SIGWINCH) && from_kernel;
    if from_terminal && same_group {
        Action::AlreadyDelivered
    } else {
        Action::Forward
    }
}

fn same_group(pid: libc::pid_t) -> bool {
    // SAFETY: plain syscalls without pointers.
    unsafe { libc::getpgid(pid) == libc::getpgrp() }
}

fn send(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: plain syscall; the child is not reaped until forwarding stops.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_signals_are_not_delivered_twice() {
        assert_eq!(decide(SIGINT, true, true, false), Action::AlreadyDelivered);
        assert_eq!(
            decide(SIGWINCH, true, true, false),
            Action::AlreadyDelivered
        );
        assert_eq!(
            decide(SIGINT, false, true, false),
            Action::Forward,
            "kill -INT <otel-run>"
        );
        assert_eq!(
            decide(SIGINT, true, false, false),
            Action::Forward,
            "child left the group"
        );
    }

    #[test]
    fn term_and_user_signals_are_always_forwarded() {
        assert_eq!(decide(SIGTERM, true, true, false), Action::Forward);
        assert_eq!(decide(SIGUSR1, false, true, false), Action::Forward);
    }

    #[test]
    fn a_second_term_or_an_int_after_term_kills() {
        assert_eq!(decide(SIGTERM, false, true, true), Action::Kill);
        assert_eq!(decide(SIGINT, true, true, true), Action::Kill);
        assert_eq!(decide(SIGUSR1, false, true, true), Action::Forward);
    }
}
