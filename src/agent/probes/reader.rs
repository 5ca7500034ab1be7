//! What the eBPF producers share once their object is loaded (the uprobes of
//! [`super::loader`] and `--trace-processes` in `agent::processes`): the
//! tracepoints that follow the command's processes, the `launcher` map armed
//! before the command is forked and disarmed after, the thread that reads the
//! ring buffer, and the loss counters read at the end.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow};
use aya::Ebpf;
use aya::maps::{Array, PerCpuArray};
use aya::programs::RawTracePoint;

/// The reader's timer: how stale a span can be when events are few.
const POLL_MS: i32 = 200;

/// Loads and attaches each `(program, tracepoint)` of `ebpf` as a raw tracepoint.
pub(crate) fn attach_tracepoints(ebpf: &mut Ebpf, programs: &[(&str, &str)]) -> anyhow::Result<()> {
    for &(name, tracepoint) in programs {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| missing(name))?
            .try_into()?;
        program.load()?;
        program.attach(tracepoint)?;
    }
    Ok(())
}

/// Sets the `launcher` map: the pid whose next fork is followed (0: none).
pub(crate) fn set_launcher(ebpf: &mut Ebpf, pid: u32) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut("launcher")
        .ok_or_else(|| missing("launcher"))?;
    let mut launcher: Array<_, u32> = Array::try_from(map)?;
    launcher.set(0, pid, 0)?;
    Ok(())
}

fn missing(name: &str) -> anyhow::Error {
    anyhow!("the probes object has no `{name}`")
}

/// A loaded object and the thread that reads its ring buffer.
pub(crate) struct Reader {
    ebpf: Ebpf,
    stop: Arc<AtomicBool>,
    /// Written to end the reader's wait at once.
    wake: Arc<OwnedFd>,
    thread: JoinHandle<u64>,
}

/// What the reading thread waits with.
pub(crate) struct Wait {
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
}

impl Wait {
    /// Waits for `ring`'s wakeup, the timer or the end. True at the end: the
    /// ring is then drained once more, and the thread returns.
    pub fn next(&self, ring: &impl AsRawFd) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        let mut fds = [ring.as_raw_fd(), self.wake.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: polling two descriptors we own, in an array we own.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) };
        false
    }
}

impl Reader {
    /// Runs `read` on a thread named `name`; it returns how many records it made.
    pub fn spawn(
        ebpf: Ebpf,
        name: &str,
        read: impl FnOnce(Wait) -> u64 + Send + 'static,
    ) -> anyhow::Result<Reader> {
        // SAFETY: eventfd returns a new descriptor we own, or -1.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        // SAFETY: `wake` is a fresh descriptor owned by nothing else.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let stop = Arc::new(AtomicBool::new(false));
        let wait = Wait {
            stop: stop.clone(),
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || read(wait))?;
        Ok(Reader {
            ebpf,
            stop,
            wake,
            thread,
        })
    }

    /// The command was forked (and followed by the fork hook): disarm the
    /// launcher, so nothing else otel-run forks is followed.
    pub fn spawned(&mut self, pid: u32) {
        if let Err(e) = set_launcher(&mut self.ebpf, 0) {
            tracing::debug!("eBPF: cannot disarm the launcher after spawning {pid}: {e:#}");
        }
    }

    /// Ends the thread once it has drained the ring buffer: how many records
    /// it made, and the object, to read its loss counters.
    pub fn finish(self) -> (u64, Lost) {
        self.stop.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        let made = self.thread.join().unwrap_or(0);
        (made, Lost(self.ebpf))
    }
}

/// The object's `lost` counters, per CPU.
pub(crate) struct Lost(Ebpf);

impl Lost {
    /// The total of counter `slot` over every CPU.
    pub fn get(&mut self, slot: u32) -> u64 {
        self.0
            .map_mut("lost")
            .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
            .and_then(|a| a.get(&slot, 0).ok())
            .map_or(0, |values| values.iter().sum())
    }
}
