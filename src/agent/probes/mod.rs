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
//! A Go function gets no uretprobe, which would crash the program when the Go
//! runtime walks or moves the goroutine's stack: it gets a uprobe on its entry
//! and one on each `ret` instruction, found by disassembling it ([`go`]), and
//! its calls in progress are kept per goroutine rather than per thread.
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
pub mod go;
#[cfg(otel_run_probes)]
pub(crate) mod loader;
pub mod pattern;
#[cfg(otel_run_probes)]
pub(crate) mod reader;
pub mod symbols;

use std::path::{Path, PathBuf};

use crate::telemetry::Telemetry;
use crate::telemetry::context::SpanContext;
use go::GoBinary;
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
    #[error("cannot probe the Go program `{}`: {why}", target.display())]
    Go { target: PathBuf, why: String },
    #[error("`{pattern}` matches only functions of `{}` that the compiler inlined ({names}): they have no code of their own to probe", target.display())]
    Inlined {
        target: PathBuf,
        pattern: String,
        names: String,
    },
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
            ProbeError::Go { .. } => "rebuild the program with a recent Go, or trace it with the OpenTelemetry Go SDK".into(),
            ProbeError::Inlined { .. } => "probe the functions that call them, or build with `go build -gcflags=all=-l` (no inlining)".into(),
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
    pub returns: Returns,
}

/// How a probed call's return is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returns {
    /// A uretprobe: the kernel swaps the return address for a trampoline.
    Uretprobe,
    /// A Go function: a uprobe on each `ret` instruction, at these file offsets
    /// (Go walks and moves its stacks, and would find the trampoline's address).
    Go(Vec<u64>),
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
        let binary = Binary::read(&path)?;
        if let Some(why) = binary.go.as_ref().and_then(GoBinary::unsupported) {
            return Err(ProbeError::Go { target: path, why });
        }
        let matched: Vec<&symbols::Function> = binary.matching(&spec.pattern).collect();
        if matched.is_empty() {
            return Err(unmatched(&binary, &spec.pattern));
        }
        for function in matched {
            let returns = if binary.go.is_some() {
                let at = go::returns(&binary.code(function)?);
                if at.is_empty() {
                    tracing::warn!(
                        "`{}` has no `ret` instruction (it ends by jumping to another function): its calls cannot be timed, so it is not probed",
                        function.name
                    );
                    continue;
                }
                if binary.also_inlined(&function.name) {
                    tracing::info!(
                        "`{}` is also inlined into some of its callers: those calls are not seen",
                        function.name
                    );
                }
                Returns::Go(at.into_iter().map(|r| function.offset + r).collect())
            } else {
                Returns::Uretprobe
            };
            let probe = Probe {
                path: path.clone(),
                offset: function.offset,
                name: function.name.clone(),
                returns,
            };
            if !probes
                .iter()
                .any(|p| p.path == probe.path && p.offset == probe.offset)
            {
                probes.push(probe);
            }
        }
    }
    if probes.len() > MAX_FUNCTIONS {
        return Err(ProbeError::TooMany {
            count: probes.len(),
        });
    }
    Ok(probes)
}

/// Why `pattern` matches no function of `binary` that can be probed.
fn unmatched(binary: &Binary, pattern: &str) -> ProbeError {
    let (target, pattern) = (binary.path.clone(), pattern.to_string());
    let inlined: Vec<&str> = binary
        .inlined_only()
        .filter(|name| pattern::matches(&pattern, name))
        .collect();
    if !inlined.is_empty() {
        const SHOWN: usize = 5;
        let mut names = inlined[..inlined.len().min(SHOWN)]
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if inlined.len() > SHOWN {
            names.push_str(&format!(" and {} more", inlined.len() - SHOWN));
        }
        return ProbeError::Inlined {
            target,
            pattern,
            names,
        };
    }
    if binary.stripped {
        ProbeError::Stripped { target, pattern }
    } else {
        ProbeError::NotFound { target, pattern }
    }
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
/// one name a line; in a Go program, functions the compiler inlined everywhere
/// are listed too, marked as such.
pub fn list(target: &str, pattern: Option<&str>, cwd: &Path) -> Result<String, ProbeError> {
    let path = symbols::resolve_target(target, None, cwd)?;
    let binary = Binary::read(&path)?;
    let pattern = pattern.unwrap_or("*");
    let mut lines: Vec<String> = binary
        .matching(pattern)
        .map(|f| {
            if binary.also_inlined(&f.name) {
                format!("{} (also inlined: calls made inline are not seen)", f.name)
            } else {
                f.name.clone()
            }
        })
        .collect();
    if lines.is_empty() {
        return Err(unmatched(&binary, pattern));
    }
    lines.extend(
        binary
            .inlined_only()
            .filter(|name| pattern::matches(pattern, name))
            .map(|name| format!("{name} (inlined: cannot be probed)")),
    );
    lines.sort_unstable();
    lines.dedup();
    if binary.stripped {
        tracing::warn!(
            "`{}` is stripped: only its exported functions are listed",
            path.display()
        );
    }
    if let Some(why) = binary.go.as_ref().and_then(GoBinary::unsupported) {
        tracing::warn!("{}", ProbeError::Go { target: path, why });
    } else if binary.go.as_ref().is_some_and(|g| g.inlined.is_none()) {
        tracing::warn!(
            "`{}` has no DWARF (built with `-ldflags=-w`): functions the compiler inlined cannot be told apart",
            path.display()
        );
    }
    let mut out = String::new();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}
