//! eBPF uprobes: calls of chosen functions of the child become spans.
//!
//! `--uprobe TARGET:PATTERN` names functions of the command (or of a library it
//! loads) by demangled name. Before the child is spawned, otel-run loads the
//! probes of `probes/uprobe.bpf.c`, attaches a uprobe and a uretprobe to each
//! matching function of the file, and marks itself as the launcher: the kernel
//! adds the process otel-run forks next to the set of traced processes at fork
//! time, so the child is traced from its first instruction, with no race and no
//! gate in the launcher. Its descendants are added as they fork. Other processes
//! running the same file hit the probes but are filtered out in the kernel.
//!
//! Each call is one ring-buffer record at return ([`events::Call`]); a reader
//! thread drains the buffer in batches, on a timer or when it is a quarter full
//! (the probes wake it only then), and hands spans to the agent's bounded traces
//! pipeline, which drops and counts rather than waits: a slow exporter never
//! stalls the traced program. Records that find the buffer full are counted in
//! the kernel and reported once at the end.

pub(crate) mod checks;
pub(crate) mod clock;
pub mod events;
#[cfg(otel_run_probes)]
pub(crate) mod loader;
pub mod pattern;
pub mod symbols;

use std::path::{Path, PathBuf};

use crate::runtime::elf::{self, Toolchain};
use crate::telemetry::Telemetry;
use crate::telemetry::context::SpanContext;
pub use pattern::Uprobe;
use symbols::Binary;

/// Most functions one run probes: each costs two perf events and a trap per call.
pub const MAX_FUNCTIONS: usize = 512;

/// Where the spans go: the agent's traces pipeline.
pub type Sink = crate::agent::SpanSink;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "`--uprobe` is unavailable: this otel-run was built without clang, so it has no eBPF probes"
    )]
    NotBuilt,
    #[error("eBPF probes need root or the CAP_BPF and CAP_PERFMON capabilities")]
    NoPrivilege,
    #[error("the kernel has no BTF type information (`/sys/kernel/btf/vmlinux` is missing)")]
    NoBtf,
    #[error(
        "kernel {release} is too old for otel-run's probes ({}.{} or newer is needed)",
        checks::MIN_KERNEL.0,
        checks::MIN_KERNEL.1
    )]
    OldKernel { release: String },
    #[error("invalid `--uprobe` (OTEL_RUN_UPROBE): {0}")]
    Spec(String),
    #[error("invalid `--uprobe-buffer-size` {0}: it must be a power of two of at least 4096 bytes")]
    BufferSize(u64),
    #[error("`--uprobe` needs a TARGET: there is no command to default to")]
    NoTarget,
    #[error("`--uprobe` target `{target}` not found")]
    TargetNotFound { target: String },
    #[error("cannot read `{}`: {source}", target.display())]
    Read {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not an ELF binary or shared library", target.display())]
    NotElf { target: PathBuf },
    #[error("`{}` is a Go program: Go moves goroutine stacks, which uretprobes would corrupt", target.display())]
    Go { target: PathBuf },
    #[error("no function of `{}` matches `{pattern}`", target.display())]
    NotFound { target: PathBuf, pattern: String },
    #[error("`{}` is stripped (it has no symbol table) and none of its exported functions matches `{pattern}`", target.display())]
    Stripped { target: PathBuf, pattern: String },
    #[error(
        "the `--uprobe` patterns match {count} functions; at most {MAX_FUNCTIONS} can be probed"
    )]
    TooMany { count: usize },
    #[error("cannot load the eBPF probes: {0}")]
    Load(String),
    #[error("cannot attach a probe to `{function}`: {message}")]
    Attach { function: String, message: String },
}

impl crate::diag::Hint for ProbeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ProbeError::NotBuilt => "install clang and libbpf-dev (`apt-get install clang libbpf-dev`) and rebuild otel-run".into(),
            ProbeError::NoPrivilege => "run otel-run as root, or grant it the capabilities: `sudo setcap cap_bpf,cap_perfmon+ep \"$(command -v otel-run)\"`".into(),
            ProbeError::NoBtf => "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2021)".into(),
            ProbeError::OldKernel { .. } => "run on a newer kernel".into(),
            ProbeError::Spec(_) => "write `--uprobe 'TARGET:PATTERN'`, e.g. `--uprobe ':app::handlers::*'` for the command's own functions".into(),
            ProbeError::TargetNotFound { .. } | ProbeError::NoTarget => "give a path (`./app:main`) or a library name (`libc.so.6:malloc`)".into(),
            ProbeError::Go { .. } => "trace Go programs with a Go-aware instrumentation such as OpenTelemetry Go auto-instrumentation".into(),
            ProbeError::NotFound { target, .. } => format!("`otel-run probes list {}` lists the functions that can be probed", target.display()),
            ProbeError::Stripped { target, .. } => format!("probe a build that keeps its symbols (not `strip`ped, no `-s`); `otel-run probes list {}` shows what is exported", target.display()),
            ProbeError::TooMany { .. } => "narrow the patterns; `otel-run probes list TARGET PATTERN` shows what they match".into(),
            _ => return None,
        })
    }
}

/// One function to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub path: PathBuf,
    pub offset: u64,
    pub name: String,
}

/// The functions the specifications name, each once.
pub fn plan(
    specs: &[Uprobe],
    program: Option<&Path>,
    cwd: &Path,
) -> Result<Vec<Probe>, ProbeError> {
    let mut probes: Vec<Probe> = Vec::new();
    for spec in specs {
        let path = symbols::resolve_target(&spec.target, program, cwd)?;
        if elf::toolchain(&path) == Some(Toolchain::Go) {
            return Err(ProbeError::Go { target: path });
        }
        let binary = Binary::read(&path)?;
        for function in binary.matching(&spec.pattern) {
            let probe = Probe {
                path: path.clone(),
                offset: function.offset,
                name: function.name.clone(),
            };
            if !probes
                .iter()
                .any(|p| p.path == probe.path && p.offset == probe.offset)
            {
                probes.push(probe);
            }
        }
        if binary.matching(&spec.pattern).next().is_none() {
            let (target, pattern) = (path, spec.pattern.clone());
            return Err(if binary.stripped {
                ProbeError::Stripped { target, pattern }
            } else {
                ProbeError::NotFound { target, pattern }
            });
        }
    }
    if probes.len() > MAX_FUNCTIONS {
        return Err(ProbeError::TooMany {
            count: probes.len(),
        });
    }
    Ok(probes)
}

/// What `--uprobe` asks for, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub specs: Vec<Uprobe>,
    /// `--uprobe-parent process`: top-level calls hang under the process span.
    pub under_process: bool,
    /// `--uprobe-buffer-size`: a power of two of at least 4096.
    pub ring_bytes: u32,
}

/// The probes of one run, attached and read.
pub struct Session {
    #[cfg(otel_run_probes)]
    inner: loader::Session,
}

/// Loads and attaches the probes `config` asks for.
///
/// `process` is otel-run's process span, the parent of top-level calls with
/// `--uprobe-parent process`.
pub fn start(
    config: &Config,
    telemetry: &Telemetry,
    program: &Path,
    cwd: &Path,
    process: Option<&SpanContext>,
    sink: Sink,
) -> Result<Option<Session>, ProbeError> {
    let parent = match process {
        Some(ctx) if config.under_process => {
            if !ctx.sampled {
                tracing::debug!("the process span is not sampled: no function spans");
                return Ok(None);
            }
            events::Parent::Process(ctx.clone())
        }
        _ => events::Parent::Root,
    };
    if !cfg!(otel_run_probes) {
        return Err(ProbeError::NotBuilt);
    }
    checks::system()?;
    let probes = plan(&config.specs, Some(program), cwd)?;
    let mut trace_salt = [0u8; 8];
    getrandom::fill(&mut trace_salt).map_err(|e| ProbeError::Load(e.to_string()))?;
    let spans = events::Spans {
        names: probes.iter().map(|p| p.name.clone()).collect(),
        clock: clock::Clock::now(),
        parent,
        trace_salt,
        resource: telemetry.resource.clone(),
    };
    tracing::info!(
        "probing {} function{}",
        probes.len(),
        if probes.len() == 1 { "" } else { "s" }
    );
    start_loaded(&probes, spans, sink, config.ring_bytes)
}

#[cfg(otel_run_probes)]
fn start_loaded(
    probes: &[Probe],
    spans: events::Spans,
    sink: Sink,
    ring_bytes: u32,
) -> Result<Option<Session>, ProbeError> {
    let inner = loader::Session::start(probes, spans, sink, ring_bytes)?;
    Ok(Some(Session { inner }))
}

#[cfg(not(otel_run_probes))]
fn start_loaded(
    _: &[Probe],
    _: events::Spans,
    _: Sink,
    _: u32,
) -> Result<Option<Session>, ProbeError> {
    Err(ProbeError::NotBuilt)
}

impl Session {
    /// The child is running: it is traced already (caught at fork); stop
    /// tracing what otel-run forks.
    pub fn spawned(&mut self, pid: u32) {
        #[cfg(otel_run_probes)]
        self.inner.spawned(pid);
        #[cfg(not(otel_run_probes))]
        let _ = pid;
    }

    /// After the child exited: reads what is left, detaches, and reports calls
    /// that could not be recorded.
    pub fn finish(self) {
        #[cfg(otel_run_probes)]
        self.inner.finish();
    }
}

/// `otel-run probes list TARGET [PATTERN]`: the functions a pattern would probe,
/// one demangled name a line.
pub fn list(target: &str, pattern: Option<&str>, cwd: &Path) -> Result<String, ProbeError> {
    let path = symbols::resolve_target(target, None, cwd)?;
    let binary = Binary::read(&path)?;
    let pattern = pattern.unwrap_or("*");
    let mut names: Vec<&str> = binary.matching(pattern).map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(if binary.stripped {
            ProbeError::Stripped {
                target: path,
                pattern: pattern.into(),
            }
        } else {
            ProbeError::NotFound {
                target: path,
                pattern: pattern.into(),
            }
        });
    }
    let mut out = String::new();
    if binary.stripped {
        tracing::warn!(
            "`{}` is stripped: only its exported functions are listed",
            path.display()
        );
    }
    if elf::toolchain(&path) == Some(Toolchain::Go) {
        tracing::warn!(
            "{}",
            ProbeError::Go {
                target: path.clone()
            }
        );
    }
    for name in names {
        out.push_str(name);
        out.push('\n');
    }
    Ok(out)
}
