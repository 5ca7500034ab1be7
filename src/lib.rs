//! otel-run: run any program observed with OpenTelemetry, without code changes.
//!
//! One run is a pipeline, and the modules are its stages:
//! [`cli`] → [`settings`] → [`runtime`] (plan the child's environment) →
//! [`agent`] (start) → [`launch`] (spawn, wait) → [`agent`] (flush) → exit code.

pub mod agent;
pub mod bootstrap;
pub mod cicd;
pub mod cli;
pub mod context;
pub mod diag;
pub mod launch;
pub mod probes;
pub mod proxy;
pub mod runtime;
pub mod settings;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;

use agent::process_span::{CommandInfo, ProcessSpan};
use agent::{Agent, Finished};
use cicd::Ci;
use context::SpanContext;
use diag::{Failure, USAGE};
use settings::{Inputs, Settings, vars};

/// Runs otel-run with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let ending = match cli::parse(std::env::args_os()) {
        Ok(parsed) => run(parsed),
        Err(cli::Error::Clap(e)) => e.exit(),
        Err(cli::Error::Unknown(e)) => Err(e.into()),
    };
    match ending {
        Ok(Ending::Exit(code)) => ExitCode::from(code),
        Ok(Ending::Signal { signal, group }) => {
            launch::die_of(signal, group);
            ExitCode::from((128 + signal).clamp(0, 255) as u8)
        }
        // The one place an error that ends otel-run is printed.
        Err(failure) => ExitCode::from(failure.report()),
    }
}

/// How otel-run ends: with an exit code, or by the signal that killed the command.
enum Ending {
    Exit(u8),
    /// Die of `signal`; with `group`, otel-run's whole process group does.
    Signal {
        signal: i32,
        group: bool,
    },
}

impl From<u8> for Ending {
    fn from(code: u8) -> Ending {
        Ending::Exit(code)
    }
}

fn run(parsed: cli::Parsed) -> Result<Ending, Failure> {
    let cli::Parsed { cli, flags } = parsed;
    // Before any setting is read: a bad one must not keep them from being printed.
    if let Some(text) = cli.subcommand.as_ref().and_then(cli::generated) {
        diag::stdout(&text)?;
        return Ok(0.into());
    }
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let mut inputs = Inputs {
        file: settings::file::load(cli.config.as_deref(), &cwd)?,
        flags,
        ..Default::default()
    };
    inputs.read_env(std::env::vars_os());
    let settings = Settings::resolve(&inputs)?;
    let level = diag::level(cli.verbose, settings.text(&vars::LOG_LEVEL));
    diag::init(level);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match cli.subcommand {
        Some(cli::Sub::Config { format }) => {
            diag::stdout(&settings::report::render(&settings, format))?;
            Ok(0.into())
        }
        Some(cli::Sub::Env {
            format,
            traceparent,
            command,
        }) => run_env(&settings, format, traceparent, command, &cwd).map(Ending::from),
        Some(cli::Sub::Doctor { command }) => {
            let command = resolve_optional(command, &cwd)?;
            let target = command.as_ref().map(|(c, argv)| c.target(argv, &cwd));
            diag::stdout(&runtime::doctor::report(&settings, target))?;
            Ok(0.into())
        }
        Some(cli::Sub::Bootstrap { options, command }) => {
            let command = resolve_optional(command, &cwd)?;
            let target = command.as_ref().map(|(c, argv)| c.target(argv, &cwd));
            Ok(bootstrap::run(&settings, &options, target, &cwd)?.into())
        }
        Some(cli::Sub::Probes {
            action: cli::ProbesAction::List { target, pattern },
        }) => {
            diag::stdout(&probes::list(&target, pattern.as_deref(), &cwd)?)?;
            Ok(0.into())
        }
        None if cli.command.is_empty() => {
            cli::command().print_help()?;
            Ok(USAGE.into())
        }
        Some(cli::Sub::Completions { .. } | cli::Sub::Man) => unreachable!("printed above"),
        None => run_command(&settings, level, cli.command, &cwd),
    }
}

/// The main job: observe one command.
fn run_command(
    settings: &Settings,
    level: Option<tracing::Level>,
    argv: Vec<OsString>,
    cwd: &std::path::Path,
) -> Result<Ending, Failure> {
    let command = launch::resolve(argv, cwd)?;
    let proxy_config = proxy::Config::from_settings(settings)?;
    let argv = command.argv_lossy();
    let ci = Ci::detect(|name| std::env::var(name).ok());
    let span = (!settings.disabled()).then(|| {
        let info = CommandInfo {
            argv: &argv,
            executable: &command.program,
            ci: ci.as_ref(),
            default_name: None,
        };
        ProcessSpan::start(settings, parent_from_env().as_ref(), &info)
    });
    let receive = settings.flag(&vars::AGENT);
    // Telemetry must never stop the program: without an agent it runs uninstrumented.
    let agent = Agent::start(settings, receive).unwrap_or_else(|e| {
        tracing::warn!("cannot start the local agent ({e}); running the command without it");
        None
    });
    let exported = |signal| agent.as_ref().is_some_and(|a| a.exports(signal));
    let destination = match agent.as_ref().and_then(Agent::endpoint) {
        Some(endpoint) => runtime::Destination::Agent {
            endpoint,
            exported: &exported,
        },
        None => runtime::Destination::Direct,
    };
    let target = command.target(&argv, cwd);
    let traceparent = span.as_ref().map(|s| s.context.traceparent());
    let mut plan = runtime::plan(settings, Some(target), destination, traceparent);
    if let Some(report) = agent.as_ref().and_then(Agent::sdk_report) {
        plan.set(vars::SDK_REPORT, report.display().to_string());
    }
    // The shims speak at otel-run's own level: `-v` shows what they did too.
    plan.set(vars::SHIM_LOG_LEVEL, diag::level_name(level));
    for note in &plan.notes {
        tracing::warn!("{note}");
    }
    let command_name = command.program.file_name().map_or_else(
        || command.program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let proxies = proxy_config.and_then(|config| {
        let run = proxy::Run {
            agent: agent.as_ref(),
            process: span.as_ref().map(|s| s.context.clone()),
            command_name: &command_name,
        };
        proxy::start(&config, settings, run)
            .map_err(|e| {
                tracing::warn!("cannot start the proxy ({e}); running the command without it")
            })
            .ok()
    });
    if let Some(proxies) = &proxies {
        plan.set.extend(proxies.env.iter().cloned());
    }
    let mut probes = agent
        .as_ref()
        .and_then(|agent| start_probes(settings, agent, &command.program, cwd, span.as_ref()));
    let mut pid = 0;
    let launched = launch::run(&command, &plan, |p| {
        pid = p;
        // Only now: the command keeps the limits otel-run was started with.
        agent::open_files::raise();
        if let Some(probes) = probes.as_mut() {
            probes.spawned(p);
        }
    });
    if let Some(probes) = probes {
        probes.finish();
    }
    if let Some(proxies) = proxies {
        proxies.stop();
    }
    let exit = launched?;
    let code = exit.code.clamp(0, 255) as u8;
    let code = match agent {
        Some(agent) => {
            if let Some(spans) = span.and_then(|s| s.finish(settings, pid, &exit)) {
                agent.record(spans);
            }
            export_outcome(settings, &agent.finish(), code)
        }
        None => code,
    };
    // A command killed by a signal: otel-run dies of it too, unless lost
    // telemetry was made to fail the step.
    Ok(match exit.signal {
        Some(signal) if code == exit.code as u8 => Ending::Signal {
            signal,
            group: exit.from_terminal,
        },
        _ => Ending::Exit(code),
    })
}

/// `--uprobe`: probes attached before the child is spawned, or `None` with one
/// warning saying why not (the command runs anyway).
fn start_probes(
    settings: &Settings,
    agent: &Agent,
    program: &std::path::Path,
    cwd: &std::path::Path,
    span: Option<&ProcessSpan>,
) -> Option<probes::Session> {
    let sink = agent.traces_sink()?;
    probes::start(settings, program, cwd, span.map(|s| &s.context), sink).unwrap_or_else(|e| {
        use diag::Hint as _;
        let message = format!("{e}; running the command without probes");
        diag::warn(&message, e.hint().as_deref());
        None
    })
}

/// The exit code once telemetry is flushed: the command's, unless the user asked
/// for lost telemetry (by the agent or the command's own SDK) to fail the step.
fn export_outcome(settings: &Settings, finished: &Finished, code: u8) -> u8 {
    let dropped = finished.dropped();
    if dropped == 0 || !settings.flag(&vars::FAIL_ON_EXPORT_ERROR) {
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
fn parent_from_env() -> Option<SpanContext> {
    SpanContext::from_env(
        std::env::var("TRACEPARENT").ok().as_deref(),
        std::env::var("TRACESTATE").ok().as_deref(),
    )
}

/// `otel-run env`: the environment for a whole CI job, printed for its shell.
///
/// It continues a TRACEPARENT it was given. Otherwise it starts the job's trace by
/// recording a short root span (named after the CI job), so every step run later
/// with `otel-run` hangs under a span that exists. A command that has exited
/// cannot see the job end: to have a root span that lasts the whole job, run the
/// job's script under `otel-run` instead.
fn run_env(
    settings: &Settings,
    format: runtime::print::EnvFormat,
    traceparent_only: bool,
    command: Vec<OsString>,
    cwd: &std::path::Path,
) -> Result<u8, Failure> {
    let command = resolve_optional(command, cwd)?;
    let traceparent = match parent_from_env() {
        Some(parent) => Some(parent.traceparent()),
        None if settings.disabled() => None,
        None => Some(record_job_span(settings)),
    };
    if traceparent_only {
        let Some(traceparent) = traceparent else {
            return Err(anyhow::anyhow!(
                "no TRACEPARENT: OpenTelemetry is disabled (OTEL_SDK_DISABLED)"
            )
            .into());
        };
        diag::stdout(&format!("{traceparent}\n"))?;
        return Ok(0);
    }
    let target = command.as_ref().map(|(c, argv)| c.target(argv, cwd));
    let plan = runtime::plan(settings, target, runtime::Destination::Direct, traceparent);
    diag::stdout(&runtime::print::render(&plan.set, format)?)?;
    Ok(0)
}

/// Records the root span of a CI job and returns its TRACEPARENT.
fn record_job_span(settings: &Settings) -> String {
    let ci = Ci::detect(|name| std::env::var(name).ok());
    let default_name = ci
        .as_ref()
        .and_then(|ci| {
            ci.get("cicd.pipeline.task.name")
                .or(ci.get("cicd.pipeline.name"))
        })
        .unwrap_or("otel-run env");
    let executable = std::env::current_exe().unwrap_or_else(|_| "otel-run".into());
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let info = CommandInfo {
        argv: &argv,
        executable: &executable,
        ci: ci.as_ref(),
        default_name: Some(default_name),
    };
    let span = ProcessSpan::start(settings, None, &info);
    let traceparent = span.context.traceparent();
    let agent = Agent::start(settings, false).unwrap_or_else(|e| {
        tracing::warn!("cannot start the exporter ({e}); the job's root span is not recorded");
        None
    });
    let exit = launch::Exit {
        code: 0,
        signal: None,
        from_terminal: false,
    };
    if let (Some(agent), Some(spans)) = (agent, span.finish(settings, std::process::id(), &exit)) {
        agent.record(spans);
        agent.finish();
    }
    traceparent
}

/// A subcommand's optional `-- COMMAND`, resolved, with its argv as text.
fn resolve_optional(
    command: Vec<OsString>,
    cwd: &std::path::Path,
) -> Result<Option<(launch::Command, Vec<String>)>, launch::LaunchError> {
    if command.is_empty() {
        return Ok(None);
    }
    let command = launch::resolve(command, cwd)?;
    let argv = command.argv_lossy();
    Ok(Some((command, argv)))
}
