//! Which signals reach the command, and how: the policy, and why.
//!
//! The command runs in a process group of its own, as a shell runs a foreground
//! job (see [`super::terminal`]): when otel-run's group owns the terminal, the
//! command's group is given it, so the terminal's signals (Ctrl-C's SIGINT,
//! Ctrl-\'s SIGQUIT, Ctrl-Z's SIGTSTP, a resize's SIGWINCH) go to the command's
//! group alone and never pass through otel-run. What otel-run receives was sent
//! to otel-run: by `kill <pid>`, or to otel-run's group by a supervisor (GNU
//! `timeout`, an IDE's stop button, `kill -- -<pgid>`), which no longer contains
//! the command. So every signal otel-run receives is forwarded, to the command's
//! whole group as the supervisor's group signal would have reached it, and none
//! can arrive twice by two routes.
//!
//! One sender can still send one signal twice: GNU `timeout` signals the process
//! it runs and then its group, and otel-run is in both. The same signal from the
//! same process within [`SAME_DELIVERY`] is taken as one delivery and forwarded
//! once.
//!
//! A signal is never escalated: a command that ignores SIGTERM keeps running, as
//! it would without otel-run. Its supervisor's SIGKILL of otel-run reaches it
//! through the parent-death signal set in the child ([`super::spawn`]).
//!
//! A signal otel-run inherited as ignored (`nohup`, `cmd &` in a script) stays
//! ignored, and the command inherits that as it would without otel-run.
//!
//! A command killed by a signal makes otel-run die of the same signal once the
//! telemetry is flushed ([`die_of`]), so a shell loop stops on Ctrl-C and a
//! parent sees the signal, not an exit code. A Ctrl-C that only the command's
//! group saw (it held the terminal) is then passed to otel-run's whole group, as
//! the terminal would have delivered it: a `sh` script running otel-run stops.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};

const FORWARDED: &[libc::c_int] = &[SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH];

/// How close together one sender's two sends of a signal are one delivery.
const SAME_DELIVERY: Duration = Duration::from_millis(100);

/// Signal handlers installed before the command is spawned, so none is missed.
pub struct Signals {
    info: SignalsInfo<WithOrigin>,
    handled: Vec<libc::c_int>,
}

/// The thread that forwards signals while the command runs.
pub struct Forwarder {
    handle: Handle,
    thread: JoinHandle<()>,
    handled: Vec<libc::c_int>,
    forwarded: Arc<AtomicU64>,
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

    /// Forwards to the process group `pid` leads (to `pid` itself once the
    /// group is gone, should the command have left it).
    pub fn forward_to(self, pid: u32) -> io::Result<Forwarder> {
        let mut signals = self.info;
        let handle = signals.handle();
        let forwarded = Arc::new(AtomicU64::new(0));
        let record = forwarded.clone();
        let thread = std::thread::Builder::new()
            .name("otel-run-signals".into())
            .spawn(move || {
                let pid = pid as libc::pid_t;
                let mut deliveries = Deliveries::default();
                for origin in signals.forever() {
                    let sender = origin.process.map(|p| p.pid);
                    if deliveries.is_new(origin.signal, sender, Instant::now()) {
                        record.fetch_or(1 << origin.signal, Ordering::Relaxed);
                        send(pid, origin.signal);
                    }
                }
            })?;
        Ok(Forwarder {
            handle,
            thread,
            handled: self.handled,
            forwarded,
        })
    }
}

impl Forwarder {
    /// Stops forwarding once the command has exited, and tells which signals
    /// were forwarded. The signals get their default action back, so Ctrl-C or
    /// SIGTERM during the flush at exit stops otel-run instead of being swallowed.
    pub fn stop(self) -> Forwarded {
        self.handle.close();
        let _ = self.thread.join();
        for signal in self.handled {
            // SAFETY: restoring a default disposition; nothing registers them again.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        Forwarded(self.forwarded.load(Ordering::Relaxed))
    }
}

/// What stops a process that runs until it is told to (`otel-run agent`): a
/// supervisor's SIGTERM, the terminal's Ctrl-C (SIGINT) or hang-up (SIGHUP).
/// One inherited as ignored stays ignored, as the command's would (above).
const STOPPING: &[libc::c_int] = &[SIGTERM, SIGINT, SIGHUP];

/// Handlers for the stopping signals, installed before otel-run starts to
/// serve, so a stop that comes early is not missed (nor kills it unflushed).
pub struct Stop {
    signals: signal_hook::iterator::Signals,
    handled: Vec<libc::c_int>,
}

impl Stop {
    pub fn install() -> io::Result<Stop> {
        let handled: Vec<libc::c_int> = STOPPING
            .iter()
            .copied()
            .filter(|&s| !is_ignored(s))
            .collect();
        let signals = signal_hook::iterator::Signals::new(&handled)?;
        Ok(Stop { signals, handled })
    }

    /// Waits for a stopping signal and returns it. The signals then get their
    /// default action back: a second Ctrl-C during the flush stops otel-run
    /// at once, as it does after a run.
    pub fn wait(mut self) -> libc::c_int {
        let signal = self.signals.forever().next().unwrap_or(SIGTERM);
        self.signals.handle().close();
        for signal in self.handled {
            // SAFETY: restoring a default disposition; nothing registers them again.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        signal
    }
}

/// The signals otel-run passed on to the command.
pub struct Forwarded(u64);

impl Forwarded {
    pub fn contains(&self, signal: libc::c_int) -> bool {
        (0..64).contains(&signal) && self.0 & (1 << signal) != 0
    }
}

/// The signals forwarded lately, to tell a sender's repeat from a new signal.
#[derive(Default)]
struct Deliveries {
    last: Vec<(libc::c_int, Option<libc::pid_t>, Instant)>,
}

impl Deliveries {
    fn is_new(&mut self, signal: libc::c_int, sender: Option<libc::pid_t>, now: Instant) -> bool {
        let repeat = self.last.iter().any(|&(s, from, at)| {
            s == signal
                && from.is_some()
                && from == sender
                && now.saturating_duration_since(at) < SAME_DELIVERY
        });
        if !repeat {
            self.last.retain(|&(s, _, _)| s != signal);
            self.last.push((signal, sender, now));
        }
        !repeat
    }
}

fn send(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: plain syscalls; the command is not reaped until forwarding stops,
    // so its pid (and the group it leads) cannot be another's.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
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

/// Dies of `signal`, as the command did. Returns only where the signal cannot
/// kill otel-run (as PID 1, the kernel ignores it); the caller then exits with
/// 128+N. A core-dumping signal leaves no second core file.
///
/// With `group`, the signal is the terminal's Ctrl-C or Ctrl-\ that only the
/// command's group got, since it held the terminal: it goes to otel-run's whole
/// group, as the terminal would have sent it, so the shell script that ran
/// otel-run stops as it would have without it.
pub fn die_of(signal: libc::c_int, group: bool) {
    // SAFETY: plain syscalls on otel-run's own process, which is about to end.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if group {
            libc::kill(0, signal);
        }
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_senders_repeat_is_one_delivery() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        assert!(d.is_new(SIGTERM, Some(10), t));
        // `timeout` signals its child, then its group.
        assert!(!d.is_new(SIGTERM, Some(10), t + Duration::from_millis(1)));
        assert!(
            d.is_new(SIGTERM, Some(10), t + Duration::from_secs(1)),
            "a deliberate second SIGTERM"
        );
    }

    #[test]
    fn other_senders_and_other_signals_are_new() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        assert!(d.is_new(SIGINT, Some(10), t));
        assert!(d.is_new(SIGINT, Some(11), t), "another sender");
        assert!(d.is_new(SIGUSR1, Some(11), t), "another signal");
        assert!(d.is_new(SIGHUP, None, t));
        assert!(
            d.is_new(SIGHUP, None, t),
            "an unknown sender is never a repeat"
        );
    }
}
