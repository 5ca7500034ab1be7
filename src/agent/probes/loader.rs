//! Loading `probes/uprobe.bpf.c` with aya, attaching it (a native function's
//! uprobe and uretprobe, or a Go function's uprobes on entry and on each `ret`),
//! and reading its ring buffer.

use aya::EbpfLoader;
use aya::maps::{MapData, RingBuf};
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};

use super::events::{Call, Spans};
use super::reader::{Reader, Wait, attach_tracepoints, set_launcher};
use super::{Probe, ProbeError, Returns, Sink};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uprobe.bpf.o"));

/// Spans per item handed to the traces pipeline.
const BATCH: usize = 512;

/// Slots of the `lost` counters, as in `probes/event.h`.
const LOST_RINGBUF: u32 = 0;
const LOST_DEPTH: u32 = 1;
const LOST_UNWOUND: u32 = 2;
const LOST_GOROUTINES: u32 = 3;

pub struct Session {
    reader: Reader,
}

/// The error in one line; the verifier's log, when there is one, only at `-vv`.
pub(crate) fn load_error(e: impl Into<anyhow::Error>) -> ProbeError {
    let text = format!("{:#}", e.into());
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        tracing::debug!("probes: {text}");
    }
    ProbeError::Load(first)
}

impl Session {
    /// `ring_bytes` is the ring buffer's size (`--uprobe-buffer-size`): the
    /// default 4 MiB holds 65536 calls, about half a second of a function called
    /// 100 000 times a second between two reads. The probes wake the reader only
    /// once a quarter of it is unread.
    pub fn start(
        probes: &[Probe],
        spans: Spans,
        sink: Sink,
        ring_bytes: u32,
    ) -> Result<Session, ProbeError> {
        let wakeup = u64::from(ring_bytes) / 4;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("calls", ring_bytes)
            .override_global("wakeup_bytes", &wakeup, true)
            // The per-thread `stacks` are task storage, which aya creates
            // but has no user-space type for; only the probes use them.
            .allow_unsupported_maps()
            .load(OBJECT)
            .map_err(load_error)?;
        // Armed before any probe fires: what otel-run forks from now on is traced.
        set_launcher(&mut ebpf, std::process::id()).map_err(load_error)?;
        attach_tracepoints(
            &mut ebpf,
            &[
                ("follow_fork", "sched_process_fork"),
                ("forget_exec", "sched_process_exec"),
                ("forget_exit", "sched_process_exit"),
            ],
        )
        .map_err(load_error)?;
        // What each program is attached to: (program, cookie, file offset);
        // `None` for a uretprobe, which the kernel places at the return.
        let mut points: Vec<(&str, usize, &Probe, Option<u64>)> = Vec::new();
        for (cookie, probe) in probes.iter().enumerate() {
            match &probe.returns {
                Returns::Uretprobe => {
                    points.push(("call_enter", cookie, probe, Some(probe.offset)));
                    points.push(("call_return", cookie, probe, None));
                }
                Returns::Go(returns) => {
                    points.push(("go_enter", cookie, probe, Some(probe.offset)));
                    points.extend(
                        returns
                            .iter()
                            .map(|&r| ("go_return", cookie, probe, Some(r))),
                    );
                }
            }
        }
        for name in ["call_enter", "call_return", "go_enter", "go_return"] {
            if !points.iter().any(|p| p.0 == name) {
                continue;
            }
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| missing(name))?
                .try_into()
                .map_err(load_error)?;
            program.load().map_err(load_error)?;
            for &(_, cookie, probe, at) in points.iter().filter(|p| p.0 == name) {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(at.unwrap_or(probe.offset)),
                    cookie: Some(cookie as u64),
                };
                program
                    .attach(point, &probe.path, UProbeScope::AllProcesses)
                    .map_err(|e| ProbeError::Attach {
                        function: probe.name.clone(),
                        message: format!("{:#}", anyhow::Error::from(e)),
                    })?;
            }
        }
        let ring = RingBuf::try_from(ebpf.take_map("calls").ok_or_else(|| missing("calls"))?)
            .map_err(load_error)?;
        let reader = Reader::spawn(ebpf, "otel-run-probes", move |wait| {
            read(ring, &wait, &spans, &sink)
        })
        .map_err(load_error)?;
        Ok(Session { reader })
    }

    /// The child was forked (and added to `traced` by the fork hook): disarm the
    /// launcher, so nothing else otel-run forks is traced.
    pub fn spawned(&mut self, pid: u32) {
        self.reader.spawned(pid);
    }

    pub fn finish(self) {
        let (calls, mut lost) = self.reader.finish();
        let mut lost = |slot| lost.get(slot);
        let (full, deep) = (lost(LOST_RINGBUF), lost(LOST_DEPTH));
        let (unwound, goroutines) = (lost(LOST_UNWOUND), lost(LOST_GOROUTINES));
        tracing::info!("{calls} probed calls recorded");
        if full > 0 {
            tracing::warn!(
                "{full} probed calls were not recorded: the probes' ring buffer was full\nhint: raise `--uprobe-buffer-size`, or probe fewer or less frequently called functions"
            );
        }
        if deep > 0 {
            tracing::warn!(
                "{deep} probed calls were not recorded: they were nested more than 32 deep on one thread"
            );
        }
        if unwound > 0 {
            tracing::warn!(
                "{unwound} probed Go calls did not return: a panic unwound them, or the program ended during them, so they have no spans"
            );
        }
        if goroutines > 0 {
            tracing::warn!(
                "{goroutines} probed Go calls were not recorded: more than 4096 goroutines were in probed calls at once"
            );
        }
    }
}

pub(crate) fn missing(name: &str) -> ProbeError {
    ProbeError::Load(format!("the probes object has no `{name}`"))
}

/// The reader thread: waits for the probes' wakeup, the timer or the end, drains
/// the ring buffer, and hands spans to the sink in batches. Returns the number of
/// calls read.
fn read(mut ring: RingBuf<MapData>, wait: &Wait, spans: &Spans, sink: &Sink) -> u64 {
    let mut total = 0u64;
    let mut batch: Vec<Call> = Vec::with_capacity(BATCH);
    loop {
        let stopping = wait.next(&ring);
        while let Some(item) = ring.next() {
            if let Some(call) = Call::from_bytes(&item) {
                batch.push(call);
            }
            drop(item);
            if batch.len() == BATCH {
                total += batch.len() as u64;
                sink.push_with(batch.len(), || spans.batch(&batch));
                batch.clear();
            }
        }
        if !batch.is_empty() {
            total += batch.len() as u64;
            sink.push_with(batch.len(), || spans.batch(&batch));
            batch.clear();
        }
        if stopping {
            return total;
        }
    }
}
