//! Loading `probes/process.bpf.c` with aya, attaching it, and reading its ring
//! buffer into the process tree.

use std::os::unix::fs::MetadataExt;

use aya::EbpfLoader;
use aya::maps::{MapData, RingBuf};

use super::events::Event;
use super::tree::{Context, Tree};
use super::{ProcessError, Sink};
use crate::agent::probes::clock::monotonic_ns;
use crate::agent::probes::loader::{load_error, missing};
use crate::agent::probes::reader::{Reader, Wait, attach_tracepoints, set_launcher};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));

/// Spans per item handed to the traces pipeline.
const BATCH: usize = 512;
/// The ring buffer's size, as in `probes/process.bpf.c`: some 3 500 execs (the
/// largest record) between two reads. The probes wake the reader once a
/// quarter of it is unread.
const RING_BYTES: u64 = 1 << 23;

/// Slots of the `lost` counters, as in `probes/process.h`.
const LOST_RINGBUF: u32 = 0;
const LOST_MAP: u32 = 1;

pub struct Session {
    reader: Reader,
}

fn failed(e: impl Into<anyhow::Error>) -> ProcessError {
    match load_error(e) {
        crate::agent::probes::ProbeError::Load(message) => ProcessError::Load(message),
        other => ProcessError::Load(other.to_string()),
    }
}

/// The kernel's number of the device a user-space `st_dev` names (glibc's
/// encoding to the kernel's `MKDEV`: 12 bits of major, 20 of minor).
fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

impl Session {
    pub fn start(context: Context, sink: Sink) -> Result<Session, ProcessError> {
        let wakeup = RING_BYTES / 4;
        let (dev, ino) = std::fs::metadata("/proc/self/exe")
            .map(|m| (kernel_dev(m.dev()), m.ino()))
            .unwrap_or((0, 0));
        let mut ebpf = EbpfLoader::new()
            .override_global("wakeup_bytes", &wakeup, true)
            .override_global("self_dev", &dev, true)
            .override_global("self_ino", &ino, true)
            .load(OBJECT)
            .map_err(failed)?;
        // Armed before the hooks run: what otel-run forks from now on is followed.
        set_launcher(&mut ebpf, context.launcher).map_err(failed)?;
        attach_tracepoints(
            &mut ebpf,
            &[
                ("process_exit", "sched_process_exit"),
                ("process_exec", "sched_process_exec"),
                ("process_fork", "sched_process_fork"),
            ],
        )
        .map_err(failed)?;
        let ring = RingBuf::try_from(
            ebpf.take_map("events")
                .ok_or_else(|| failed(missing("events")))?,
        )
        .map_err(failed)?;
        let reader = Reader::spawn(ebpf, "otel-run-processes", move |wait| {
            read(ring, &wait, Tree::new(context), &sink)
        })
        .map_err(failed)?;
        Ok(Session { reader })
    }

    /// The child was forked (and followed by the fork hook): disarm the
    /// launcher, so nothing else otel-run forks is followed.
    pub fn spawned(&mut self, pid: u32) {
        self.reader.spawned(pid);
    }

    pub fn finish(self) {
        let (spans, mut lost) = self.reader.finish();
        let mut lost = |slot| lost.get(slot);
        let (full, untracked) = (lost(LOST_RINGBUF), lost(LOST_MAP));
        tracing::info!("{spans} process spans recorded");
        if full > 0 {
            tracing::warn!(
                "{full} process events (fork, exec or exit) were not recorded: the ring buffer was full; the processes they belong to have incomplete spans or none"
            );
        }
        if untracked > 0 {
            tracing::warn!(
                "{untracked} processes were not followed: more than 32768 traced processes ran at once"
            );
        }
    }
}

/// The reader thread: waits for the probes' wakeup, the timer or the end,
/// drains the ring buffer into the tree, and hands finished spans to the sink
/// in batches. At the end, the processes still running are closed. Returns the
/// number of spans made.
fn read(mut ring: RingBuf<MapData>, wait: &Wait, mut tree: Tree, sink: &Sink) -> u64 {
    let mut total = 0u64;
    let mut flush = |tree: &mut Tree| {
        let spans = tree.take();
        if !spans.is_empty() {
            total += spans.len() as u64;
            let n = spans.len();
            sink.push_with(n, || tree.batch(spans));
        }
    };
    loop {
        let stopping = wait.next(&ring);
        while let Some(item) = ring.next() {
            if let Some(event) = Event::from_bytes(&item) {
                tree.apply(event);
            }
            drop(item);
            if tree.pending() >= BATCH {
                flush(&mut tree);
            }
        }
        if stopping {
            tree.close_all(monotonic_ns());
        }
        flush(&mut tree);
        if stopping {
            return total;
        }
    }
}
