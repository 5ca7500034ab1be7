//! `--trace-processes`: every process the command starts becomes a span.
//!
//! Before the child is spawned, otel-run loads `probes/process.bpf.c` on the
//! `sched_process_fork`, `sched_process_exec` and `sched_process_exit`
//! tracepoints and marks itself as the launcher, as the uprobes do
//! ([`crate::agent::probes`]): the process otel-run forks next is followed from
//! its fork, and so is every process it forks in turn, at any depth, with no
//! race. Each fork, exec and exit of a followed process is one ring-buffer
//! record; a reader thread pairs them into spans in a process tree
//! ([`tree::Tree`]) whose root is otel-run's process span, and hands them to
//! the agent's bounded traces pipeline, which drops and counts rather than
//! waits. Records that find the buffer full, and processes that find the set of
//! followed processes full, are counted in the kernel and reported once.
//!
//! A nested otel-run records its own subtree: the kernel side stops following
//! a process when it execs otel-run (the same executable, or any file named
//! `otel-run`), before it runs, so none of its descendants is recorded twice.

pub mod events;
#[cfg(otel_run_probes)]
mod loader;
pub mod tree;

use crate::agent::probes::{self, ProbeError};
use crate::telemetry::Telemetry;
use crate::telemetry::context::SpanContext;

/// Where the spans go: the agent's traces pipeline.
pub type Sink = crate::agent::SpanSink;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "`--trace-processes` is unavailable: this otel-run was built without clang, so it has no eBPF probes"
    )]
    NotBuilt,
    #[error("`--trace-processes`: {0}")]
    System(ProbeError),
    #[error("`--trace-processes`: cannot load the eBPF probes: {0}")]
    Load(String),
}

impl crate::diag::Hint for ProcessError {
    fn hint(&self) -> Option<String> {
        match self {
            ProcessError::NotBuilt => Some(
                "install clang and libbpf-dev (`apt-get install clang libbpf-dev`) and rebuild otel-run"
                    .into(),
            ),
            ProcessError::System(e) => e.hint(),
            ProcessError::Load(_) => None,
        }
    }
}

/// Process spans of one run, being recorded.
pub struct Session {
    #[cfg(otel_run_probes)]
    inner: loader::Session,
}

/// Loads the process probes; `process` is otel-run's process span, the root of
/// the tree. `None` when that span is not recorded (not sampled, or disabled):
/// its children would have no parent.
pub fn start(
    telemetry: &Telemetry,
    process: Option<&SpanContext>,
    redact_args: bool,
    sink: Sink,
) -> Result<Option<Session>, ProcessError> {
    let Some(process) = process.filter(|p| p.sampled) else {
        tracing::debug!("the process span is not recorded: no process spans");
        return Ok(None);
    };
    if !cfg!(otel_run_probes) {
        return Err(ProcessError::NotBuilt);
    }
    probes::checks::system().map_err(ProcessError::System)?;
    let context = tree::Context {
        process: process.clone(),
        launcher: std::process::id(),
        clock: probes::clock::Clock::now(),
        redact_args,
        limits: telemetry.limits,
        resource: telemetry.resource.clone(),
    };
    start_loaded(context, sink)
}

#[cfg(otel_run_probes)]
fn start_loaded(context: tree::Context, sink: Sink) -> Result<Option<Session>, ProcessError> {
    let inner = loader::Session::start(context, sink)?;
    Ok(Some(Session { inner }))
}

#[cfg(not(otel_run_probes))]
fn start_loaded(_: tree::Context, _: Sink) -> Result<Option<Session>, ProcessError> {
    Err(ProcessError::NotBuilt)
}

impl Session {
    /// The child is running (followed since its fork): stop following what
    /// otel-run forks.
    pub fn spawned(&mut self, pid: u32) {
        #[cfg(otel_run_probes)]
        self.inner.spawned(pid);
        #[cfg(not(otel_run_probes))]
        let _ = pid;
    }

    /// After the child exited: reads what is left, ends the spans of processes
    /// still running, detaches, and reports what could not be recorded.
    pub fn finish(self) {
        #[cfg(otel_run_probes)]
        self.inner.finish();
    }
}
