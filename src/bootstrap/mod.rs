//! `otel-run bootstrap`: install what the target needs to be instrumented.
//!
//! The target is the environment the command will run in, not otel-run's own:
//! Python's interpreter (the command's, VIRTUAL_ENV's, `./.venv`'s or
//! `python3`), the Node.js app in the working directory, the Java agent in
//! otel-run's data directory, and a check of the .NET automatic
//! instrumentation's home (no index for it is reachable to install from).

mod dotnet;
mod java;
mod node;
pub mod python;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diag::Hint as _;
use crate::runtime::{self, Runtime, Target};
use crate::settings::otlp::Protocol;

/// What `bootstrap` did for one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `--dry-run`: nothing was changed.
    Planned,
    Installed,
    AlreadyInstalled,
    /// A check found the runtime's instrumentation missing (.NET).
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `otel-run bootstrap`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The Python interpreter to bootstrap (default: the command's, else
    /// VIRTUAL_ENV's, ./.venv's, or python3 on PATH)
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Bootstrap the Node.js app in the working directory (default when it has a package.json)
    #[arg(long)]
    pub node: bool,
    /// Download the Java agent (default for a java, mvn or gradle command, or a pom.xml / build.gradle here)
    #[arg(long)]
    pub java: bool,
    /// Check the .NET automatic instrumentation's home
    #[arg(long)]
    pub dotnet: bool,
    /// Print what would be installed (a requirements file for Python) and change
    /// nothing; also `--requirements`
    #[arg(long, visible_alias = "requirements")]
    pub dry_run: bool,
    /// `text` for people, `json` (the whole report) for scripts
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Python package index (default: PIP_INDEX_URL, UV_INDEX_URL, or PyPI)
    #[arg(long, value_name = "URL")]
    pub index_url: Option<String>,
    /// Node.js: also add the packages to package.json
    #[arg(long)]
    pub save: bool,
    /// The Java agent's version (default: the newest release)
    #[arg(long, value_name = "VERSION")]
    pub java_agent_version: Option<String>,
    /// The Maven repository the Java agent comes from
    #[arg(long, value_name = "URL", default_value = java::CENTRAL)]
    pub maven_repository: String,
}

/// Prints progress on stderr, unless the output is JSON for a machine.
pub struct Progress {
    pub terminal: bool,
    quiet: bool,
}

impl Progress {
    pub fn say(&self, message: &str) {
        if !self.quiet {
            eprintln!("otel-run: bootstrap: {message}");
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    python: Option<python::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<node::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    java: Option<java::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dotnet: Option<dotnet::Report>,
    errors: Vec<String>,
}

/// Which runtimes to bootstrap: those named by flags, else the command's,
/// else Python plus whatever the working directory shows.
fn runtimes(options: &Options, target: Option<&Target>, cwd: &Path) -> Vec<Runtime> {
    let named: Vec<Runtime> = [
        (options.python.is_some(), Runtime::Python),
        (options.node, Runtime::Node),
        (options.java, Runtime::Java),
        (options.dotnet, Runtime::Dotnet),
    ]
    .into_iter()
    .filter_map(|(on, runtime)| on.then_some(runtime))
    .collect();
    if !named.is_empty() {
        return named;
    }
    if let Some(target) = target {
        return vec![runtime::detect(target.program, target.argv)];
    }
    // A Python environment in use or here; a Node.js app; a Java build. With
    // none of them, the python3 on PATH.
    let python = std::env::var_os("VIRTUAL_ENV").is_some_and(|v| !v.is_empty())
        || cwd.join(".venv/bin/python").is_file();
    let node = cwd.join("package.json").is_file();
    let java = [
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
        "gradlew",
        "mvnw",
    ]
    .iter()
    .any(|f| cwd.join(f).is_file());
    let found: Vec<Runtime> = [
        (python, Runtime::Python),
        (node, Runtime::Node),
        (java, Runtime::Java),
    ]
    .into_iter()
    .filter_map(|(here, runtime)| here.then_some(runtime))
    .collect();
    if found.is_empty() {
        vec![Runtime::Python]
    } else {
        found
    }
}

/// What the settings say of the instrumentations to install.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the .NET automatic instrumentation is looked for.
    pub runtime: runtime::Config,
    /// The traces' OTLP protocol: which exporter package Python gets.
    pub protocol: Protocol,
}

/// Runs `otel-run bootstrap`; the exit code is 1 when a runtime failed.
pub fn run(
    config: &Config,
    options: &Options,
    target: Option<Target>,
    cwd: &Path,
) -> anyhow::Result<u8> {
    let progress = Progress {
        terminal: std::io::stderr().is_terminal(),
        quiet: options.format == Format::Json,
    };
    let mut report = Report::default();
    let failed = |report: &mut Report, message: String, hint: Option<String>| {
        if options.format == Format::Text {
            crate::diag::error(&message, hint.as_deref());
        }
        report.errors.push(message);
    };
    for runtime in runtimes(options, target.as_ref(), cwd) {
        match runtime {
            Runtime::Python => {
                let python_options = python::Options {
                    python: options.python.as_deref(),
                    command_interpreter: target.as_ref().and_then(|t| {
                        runtime::python::detect(t.program, t.argv).and_then(|p| p.interpreter)
                    }),
                    index_url: options.index_url.clone().or_else(index_from_env),
                    cwd,
                    dry_run: options.dry_run,
                    protocol: config.protocol,
                };
                match python::bootstrap(&python_options, &progress) {
                    Ok(r) => report.python = Some(r),
                    Err(e) => failed(&mut report, format!("Python: {e}"), e.hint()),
                }
            }
            Runtime::Node => match node::bootstrap(options, cwd, &progress) {
                Ok(r) => report.node = Some(r),
                Err(e) => failed(&mut report, format!("Node.js: {e:#}"), None),
            },
            Runtime::Java => match java::bootstrap(options, &progress) {
                Ok(r) => report.java = Some(r),
                Err(e) => failed(&mut report, format!("Java: {e:#}"), None),
            },
            Runtime::Dotnet => {
                let r = dotnet::check(&config.runtime);
                if r.outcome == Outcome::Missing {
                    report.errors.push(".NET: the automatic instrumentation is missing".into());
                }
                report.dotnet = Some(r);
            }
            other => failed(
                &mut report,
                format!(
                    "nothing to bootstrap for a {} program: it reads the standard OTEL_* variables",
                    other.name()
                ),
                Some("programs built with an OpenTelemetry SDK need no agent; for others use `--proxy` or `--uprobe`".into()),
            ),
        }
    }
    match options.format {
        Format::Json => crate::diag::stdout(&(serde_json::to_string_pretty(&report)? + "\n"))?,
        Format::Text => crate::diag::stdout(&text(&report, options.dry_run))?,
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// The index pip or uv would use, from their own variables.
fn index_from_env() -> Option<String> {
    ["PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
}

fn text(report: &Report, dry_run: bool) -> String {
    let mut out = String::new();
    if let Some(python) = &report.python {
        out += &if dry_run {
            python::requirements(python)
        } else {
            python::summary(python)
        };
    }
    if let Some(node) = &report.node {
        out += &node::summary(node);
    }
    if let Some(java) = &report.java {
        out += &java::summary(java);
    }
    if let Some(dotnet) = &report.dotnet {
        out += &dotnet::summary(dotnet);
    }
    out
}

/// Downloads shared by the Node.js and Java steps.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("otel-run/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("a client with static settings")
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts")
        .block_on(future)
}
