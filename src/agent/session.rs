//! One run's agent side, from before the child is spawned to the flush after it
//! has exited: the process span, the export pipelines and receiver, and the
//! producers that feed them (the proxies, the probes).
//!
//! Telemetry never stops the program: a part that cannot start is a warning,
//! and the command runs without it.

use std::path::Path;

use super::process_span::{CommandInfo, ProcessSpan};
use super::{Agent, Finished, Listen, open_files, probes, processes, proxy};
use crate::diag;
use crate::launch::{Command, Exit};
use crate::runtime::{Destination, Start};
use crate::settings::otlp::Signal;
use crate::settings::ready::Ready;
use crate::settings::vars;
use crate::telemetry::Telemetry;
use crate::telemetry::cicd::Ci;
use crate::telemetry::context::SpanContext;

pub struct Session {
    telemetry: Telemetry,
    span: Option<ProcessSpan>,
    agent: Option<Agent>,
    proxies: Option<proxy::Proxies>,
    probes: Option<probes::Session>,
    processes: Option<processes::Session>,
    fail_on_export_error: bool,
    pid: u32,
}

impl Session {
    /// Starts everything the child's run needs before it is spawned.
    pub fn start(ready: &Ready, command: &Command, argv: &[String], cwd: &Path) -> Session {
        let telemetry = Telemetry::new(&ready.telemetry, &command.program);
        let ci = Ci::detect(|name| std::env::var(name).ok());
        let span = (!ready.process.disabled).then(|| {
            let info = CommandInfo {
                argv,
                executable: &command.program,
                ci: ci.as_ref(),
                default_name: None,
            };
            ProcessSpan::start(
                &telemetry,
                &ready.process,
                parent_from_env().as_ref(),
                &info,
            )
        });
        let agent = Agent::start(&ready.agent, Listen::ephemeral_if(ready.agent.receive))
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot start the local agent ({e}); running the command without it"
                );
                None
            });
        let process = span.as_ref().map(|s| &s.context);
        let proxies = ready.proxy.as_ref().and_then(|config| {
            let run = proxy::Run {
                agent: agent.as_ref(),
                process: process.cloned(),
                telemetry: &telemetry,
            };
            proxy::start(config, run)
                .map_err(|e| {
                    tracing::warn!("cannot start the proxy ({e}); running the command without it")
                })
                .ok()
        });
        let probes = agent.as_ref().and_then(|agent| {
            if !agent.exports(Signal::Traces) {
                return None;
            }
            // Only then the sink: asking for it starts the agent.
            let config = match &ready.probes {
                Ok(config) => config.as_ref()?,
                Err(e) => return without_probes(e),
            };
            let sink = agent.traces_sink()?;
            probes::start(config, &telemetry, &command.program, cwd, process, sink)
                .unwrap_or_else(|e| without_probes(&e))
        });
        let processes = agent
            .as_ref()
            .filter(|_| ready.trace_processes)
            .and_then(|agent| {
                let sink = agent.traces_sink()?;
                processes::start(&telemetry, process, ready.process.redact_args, sink)
                    .unwrap_or_else(|e| {
                        use crate::diag::Hint as _;
                        let message = format!("{e}; running the command without process spans");
                        diag::warn(&message, e.hint().as_deref());
                        None
                    })
            });
        Session {
            telemetry,
            span,
            agent,
            proxies,
            probes,
            processes,
            fail_on_export_error: ready.agent.fail_on_export_error,
            pid: 0,
        }
    }

    /// What the child gets: where its telemetry goes, its parent span, and the
    /// variables of the agent and the proxies.
    pub fn child(&self) -> Start {
        let agent = self.agent.as_ref();
        let destination = match agent.and_then(Agent::endpoint) {
            Some(endpoint) => Destination::Agent {
                endpoint: endpoint.to_string(),
                exported: Signal::ALL
                    .into_iter()
                    .filter(|s| agent.is_some_and(|a| a.exports(*s)))
                    .collect(),
            },
            None => Destination::Direct,
        };
        let mut env = Vec::new();
        if let Some(report) = agent.and_then(Agent::sdk_report) {
            env.push((vars::SDK_REPORT.to_string(), report.display().to_string()));
        }
        if let Some(proxies) = &self.proxies {
            env.extend(proxies.env.iter().cloned());
        }
        Start {
            destination,
            traceparent: self.span.as_ref().map(|s| s.context.traceparent()),
            env,
        }
    }

    /// The child `pid` has been spawned.
    pub fn spawned(&mut self, pid: u32) {
        self.pid = pid;
        // Only now: the command keeps the limits otel-run was started with.
        open_files::raise();
        if let Some(probes) = self.probes.as_mut() {
            probes.spawned(pid);
        }
        if let Some(processes) = self.processes.as_mut() {
            processes.spawned(pid);
        }
    }

    /// The child has exited: the producers stop, the process span ends, and
    /// everything is flushed. Returns the exit code once telemetry is flushed:
    /// the command's, unless the user asked for lost telemetry (by the agent or
    /// the command's own SDK) to fail the step.
    pub fn finish(mut self, exit: &Exit) -> u8 {
        self.stop_producers();
        let code = exit.code.clamp(0, 255) as u8;
        let Some(agent) = self.agent.take() else {
            return code;
        };
        if let Some(spans) = self
            .span
            .take()
            .and_then(|s| s.finish(&self.telemetry, self.pid, exit))
        {
            agent.record_at_exit(spans);
        }
        if let Some(url) = agent.viewer_url() {
            super::viewer::hold_after_exit(url);
        }
        export_outcome(self.fail_on_export_error, &agent.finish(), code)
    }

    /// The child could not be run: the producers stop, nothing is recorded.
    pub fn abandon(mut self) {
        self.stop_producers();
    }

    fn stop_producers(&mut self) {
        if let Some(probes) = self.probes.take() {
            probes.finish();
        }
        if let Some(processes) = self.processes.take() {
            processes.finish();
        }
        if let Some(proxies) = self.proxies.take() {
            proxies.stop();
        }
    }
}

/// `--uprobe` cannot be served: one warning saying why; the command runs anyway.
fn without_probes(e: &probes::ProbeError) -> Option<probes::Session> {
    use crate::diag::Hint as _;
    let message = format!("{e}; running the command without probes");
    diag::warn(&message, e.hint().as_deref());
    None
}

/// The exit code once telemetry is flushed: `code`, unless lost telemetry
/// was made to fail the step (`--fail-on-export-error`).
pub fn export_outcome(fail_on_export_error: bool, finished: &Finished, code: u8) -> u8 {
    let dropped = finished.dropped();
    if dropped == 0 || !fail_on_export_error {
        return code;
    }
    diag::error(
        &format!("{dropped} telemetry items could not be exported"),
        Some(
            "`--fail-on-export-error` makes this an error; without it the exit code is the command's",
        ),
    );
    if code == 0 { 1 } else { code }
}

/// TRACEPARENT / TRACESTATE of otel-run's own environment: the parent.
pub fn parent_from_env() -> Option<SpanContext> {
    SpanContext::from_env(
        std::env::var("TRACEPARENT").ok().as_deref(),
        std::env::var("TRACESTATE").ok().as_deref(),
    )
}
