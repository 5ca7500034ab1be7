//! otel-run: run any program observed with OpenTelemetry, without code changes.
//!
//! One run is a pipeline, and the modules are its stages:
//! [`cli`] → [`settings`] → [`runtime`] (plan the child's environment) →
//! [`agent`] (start) → [`launch`] (spawn, wait) → [`agent`] (flush) → exit code.
//! Every producer of otel-run's own spans shares one [`telemetry`] core.
//! `docs/architecture.md` says who may call whom.

pub mod agent;
pub mod bootstrap;
pub mod cli;
pub mod diag;
pub mod launch;
pub mod runtime;
pub mod settings;
pub mod telemetry;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;

use agent::process_span::{CommandInfo, ProcessSpan};
use agent::session::{Session, parent_from_env};
use agent::{Agent, open_files};
use diag::{Failure, USAGE};
use settings::{Inputs, Settings, vars};
use telemetry::Telemetry;
use telemetry::cicd::Ci;

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

impl Ending {
    /// A command killed by a signal: otel-run dies of it too, unless lost
    /// telemetry was made to fail the step (`code` is not the command's).
    fn of(exit: &launch::Exit, code: u8) -> Ending {
        match exit.signal {
            Some(signal) if code == exit.code as u8 => Ending::Signal {
                signal,
                group: exit.from_terminal,
            },
            _ => Ending::Exit(code),
        }
    }
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
            Ok(bootstrap::run(&settings.bootstrap(), &options, target, &cwd)?.into())
        }
        Some(cli::Sub::Agent { listen }) => run_agent(&settings, &listen).map(Ending::from),
        Some(cli::Sub::Probes {
            action: cli::ProbesAction::List { target, pattern },
        }) => {
            diag::stdout(&agent::probes::list(&target, pattern.as_deref(), &cwd)?)?;
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

/// The main job: observe one command, in the pipeline's order.
fn run_command(
    settings: &Settings,
    level: Option<tracing::Level>,
    argv: Vec<OsString>,
    cwd: &std::path::Path,
) -> Result<Ending, Failure> {
    let command = launch::resolve(argv, cwd)?;
    let ready = settings.ready()?;
    let argv = command.argv_lossy();
    let mut plan = runtime::plan(&ready.runtime, Some(command.target(&argv, cwd)));
    // The shims speak at otel-run's own level: `-v` shows what they did too.
    plan.set(vars::SHIM_LOG_LEVEL, diag::level_name(level));
    let mut session = Session::start(&ready, &command, &argv, cwd);
    plan.finish(session.child());
    plan.warn();
    let exit = match launch::run(&command, &plan, |pid| session.spawned(pid)) {
        Ok(exit) => exit,
        Err(e) => {
            session.abandon();
            return Err(e.into());
        }
    };
    let code = session.finish(&exit);
    Ok(Ending::of(&exit, code))
}

/// `otel-run agent`: the agent alone, receiving from other processes until a
/// stopping signal, then flushed as a run's agent is after its command. The
/// exit code is 0 once it has flushed: stopping it is how it is meant to end
/// (unless lost telemetry was made to fail it, as in a run).
fn run_agent(settings: &Settings, listen: &[std::net::SocketAddr]) -> Result<u8, Failure> {
    let listen = if listen.is_empty() {
        &agent::standalone::DEFAULT_LISTEN[..]
    } else {
        listen
    };
    let (mut config, printed) = settings.standalone_agent();
    config.viewer = settings.viewer()?;
    let stop = launch::Stop::install().context("cannot handle the stopping signals")?;
    // No command keeps the limits otel-run was started with: raised before
    // the receiver sizes its connection budget by them.
    open_files::raise();
    let agent = agent::standalone::start(&config, listen, &printed)?;
    let signal = stop.wait();
    tracing::info!("stopping on signal {signal}: flushing");
    let finished = agent.finish();
    Ok(agent::session::export_outcome(
        config.fail_on_export_error,
        &finished,
        0,
    ))
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
    let mut plan = runtime::plan(&settings.runtime(), target);
    plan.finish(runtime::Start {
        destination: runtime::Destination::Direct,
        traceparent,
        env: Vec::new(),
    });
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
    // Only what the job's span needs: the proxies and probes are the commands'.
    let telemetry = Telemetry::new(&settings.telemetry(), &executable);
    let span = ProcessSpan::start(&telemetry, &settings.process(), None, &info);
    let traceparent = span.context.traceparent();
    let agent = Agent::start(&settings.agent(), agent::Listen::Nowhere).unwrap_or_else(|e| {
        tracing::warn!("cannot start the exporter ({e}); the job's root span is not recorded");
        None
    });
    let exit = launch::Exit {
        code: 0,
        signal: None,
        from_terminal: false,
    };
    let spans = span.finish(&telemetry, std::process::id(), &exit);
    if let (Some(agent), Some(spans)) = (agent, spans) {
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
