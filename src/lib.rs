//! otel-run: run any program observed with OpenTelemetry, without code changes.
//!
//! One run is a pipeline, and the modules are its stages:
//! [`cli`] → [`settings`] → [`runtime`] (plan the child's environment) →
//! [`agent`] (start) → [`launch`] (spawn, wait) → [`agent`] (flush) → exit code.

pub mod agent;
pub mod cli;
pub mod context;
pub mod diag;
pub mod launch;
pub mod runtime;
pub mod settings;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;

use agent::Agent;
use agent::process_span::{CommandInfo, ProcessSpan};
use context::SpanContext;
use settings::{Inputs, Settings, vars};

/// Exit code for bad usage or configuration, as clap uses.
const USAGE: u8 = 2;

/// Runs otel-run with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    match run(parsed) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let (code, hint) = classify(&err);
            diag::error(&format!("{err:#}"), hint.as_deref());
            ExitCode::from(code)
        }
    }
}

fn run(parsed: cli::Parsed) -> anyhow::Result<u8> {
    let cli::Parsed { cli, flags } = parsed;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let settings = Settings::resolve(&Inputs {
        file: settings::file::load(cli.config.as_deref(), &cwd)?,
        env: Inputs::from_process_env(),
        flags,
    })?;
    diag::init(diag::level(cli.verbose, settings.text(&vars::LOG_LEVEL)));
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match cli.subcommand {
        Some(cli::Sub::Config { format }) => {
            print!("{}", settings::report::render(&settings, format));
            Ok(0)
        }
        Some(sub) => anyhow::bail!(Unavailable(sub.name())),
        None if cli.command.is_empty() => {
            cli::command().print_help()?;
            Ok(USAGE)
        }
        None => run_command(&settings, cli.command, &cwd),
    }
}

/// The main job: observe one command.
fn run_command(
    settings: &Settings,
    argv: Vec<OsString>,
    cwd: &std::path::Path,
) -> anyhow::Result<u8> {
    let command = launch::resolve(argv, cwd)?;
    let parent = SpanContext::from_env(
        std::env::var("TRACEPARENT").ok().as_deref(),
        std::env::var("TRACESTATE").ok().as_deref(),
    );
    let argv = command.argv_lossy();
    let span = (!settings.disabled()).then(|| {
        ProcessSpan::start(
            settings,
            parent.as_ref(),
            &CommandInfo {
                argv: &argv,
                executable: &command.program,
            },
        )
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
    let plan = runtime::plan(
        settings,
        destination,
        span.as_ref().map(|s| s.context.traceparent()),
    );
    let mut pid = 0;
    let exit = launch::run(&command, &plan, |p| pid = p)?;
    if let (Some(agent), Some(span)) = (agent.as_ref(), span)
        && let Some(spans) = span.finish(settings, pid, &exit)
    {
        agent.record(spans);
    }
    if let Some(agent) = agent {
        agent.finish();
    }
    Ok(exit.code.clamp(0, 255) as u8)
}

/// A reserved subcommand that a later version fills in.
#[derive(Debug, thiserror::Error)]
#[error("`otel-run {0}` is not available in this version")]
struct Unavailable(&'static str);

/// The exit code and hint for an error.
fn classify(err: &anyhow::Error) -> (u8, Option<String>) {
    if let Some(e) = err.downcast_ref::<launch::LaunchError>() {
        return (e.exit_code(), e.hint());
    }
    if let Some(e) = err.downcast_ref::<settings::file::FileError>() {
        let hint = matches!(e, settings::file::FileError::UnknownKey { .. }).then(|| {
            "keys are the variable names without `OTEL_`, lower-case, e.g. `service_name`; `otel-run --help` lists them".to_string()
        });
        return (USAGE, hint);
    }
    if err.downcast_ref::<settings::SettingsError>().is_some() {
        return (USAGE, None);
    }
    if let Some(e) = err.downcast_ref::<Unavailable>() {
        return (
            USAGE,
            Some(format!(
                "to run a program named `{}`, use `otel-run -- {}`",
                e.0, e.0
            )),
        );
    }
    (1, None)
}
