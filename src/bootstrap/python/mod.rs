//! Python: find the interpreter the command will run, read its environment,
//! choose one release line, and install what is missing in one resolver call.

mod index;
mod install;
mod line;
pub mod site;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{Outcome, Progress};
use crate::settings::otlp::Protocol;
pub use index::PYPI;
use line::{Choice, Needs, Requirement, Skipped};
pub use table::Match;
use table::{Table, TableSource};

/// The script the target interpreter runs to describe itself.
const INSPECT: &str = include_str!("inspect.py");

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("no Python interpreter to bootstrap; tried: {}", .0.join("; "))]
    NoInterpreter(Vec<String>),
    #[error("cannot read the environment of {interpreter}: {reason}")]
    Inspect { interpreter: String, reason: String },
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(
        "no release line of the OpenTelemetry Python packages is complete on {index} for this environment:\n{}",
        lines(.skipped)
    )]
    NoLine {
        index: String,
        skipped: Vec<Skipped>,
    },
    #[error("{interpreter} has no pip, and uv is not on PATH")]
    NoInstaller { interpreter: String },
    #[error("{installer} failed (exit {code}); {state}{output}")]
    Install {
        installer: String,
        code: String,
        state: String,
        output: String,
    },
}

impl crate::diag::Hint for PythonError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PythonError::NoInterpreter(_) => {
                "name it with `--python PATH`, activate its virtual environment, or give the command: `otel-run bootstrap -- flask run`".into()
            }
            PythonError::Index(_) => {
                "check the network, or name a reachable index with `--index-url URL` (or PIP_INDEX_URL)".into()
            }
            PythonError::NoLine { .. } => {
                "try again later, or name another index with `--index-url URL`".into()
            }
            PythonError::NoInstaller { .. } => {
                "install uv (`pip install uv`), or add pip to the environment: `python -m ensurepip`".into()
            }
            _ => return None,
        })
    }
}

fn lines(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|s| format!("  {}: {}", s.line, s.reasons.join("; ")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub struct Options<'a> {
    pub python: Option<&'a Path>,
    /// The interpreter the command names, if it names one.
    pub command_interpreter: Option<PathBuf>,
    pub index_url: Option<String>,
    /// Where `./.venv` is looked for.
    pub cwd: &'a Path,
    pub dry_run: bool,
    /// The OTLP protocol: which exporter package the SDK gets.
    pub protocol: Protocol,
}

/// What inspect.py prints.
#[derive(Debug, Clone, Deserialize)]
struct Environment {
    executable: String,
    version: String,
    venv: bool,
    pip: bool,
    distributions: BTreeMap<String, String>,
    /// The names of the `opentelemetry_propagator` entry points.
    #[serde(default)]
    propagators: Vec<String>,
    table: Option<Table>,
}

/// What a run of an interpreter finds there, for `otel-run doctor`: read by
/// the same inspection and matched with the same table as `bootstrap`.
pub struct Inspection {
    pub distributions: BTreeMap<String, String>,
    /// The installed libraries the table knows, each with whether its version
    /// is supported.
    pub libraries: Vec<Match>,
    pub propagators: Vec<String>,
}

/// Inspects `interpreter`'s environment.
pub fn inspection(interpreter: &Path) -> Result<Inspection, PythonError> {
    let environment = inspect(interpreter)?;
    let table = environment.table.unwrap_or_else(Table::shipped);
    let (libraries, _) = table::matches(&table, &environment.distributions);
    Ok(Inspection {
        distributions: environment.distributions,
        libraries,
        propagators: environment.propagators,
    })
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub interpreter: String,
    pub python_version: String,
    /// Whether the interpreter runs in a virtual environment.
    pub venv: bool,
    pub how_found: String,
    pub index: String,
    pub table: TableSource,
    pub table_line: String,
    pub libraries: Vec<Match>,
    pub line: String,
    pub skipped_lines: Vec<Skipped>,
    pub install: Vec<Requirement>,
    pub installer: Option<String>,
    pub outcome: Outcome,
}

/// Bootstraps the target environment (or, with `dry_run`, says what it would do).
pub fn bootstrap(options: &Options, progress: &Progress) -> Result<Report, PythonError> {
    let (interpreter, how_found) = target(options)?;
    let before = inspect(&interpreter)?;
    progress.say(&format!(
        "Python {} at {} ({how_found}, {} distributions)",
        before.version,
        before.executable,
        before.distributions.len()
    ));
    // The configured protocol's, for a program's own exporter and runs without
    // the agent; with the agent, the shim sends every signal to it itself.
    let exporter = &[if options.protocol != Protocol::Grpc {
        "opentelemetry-exporter-otlp-proto-http"
    } else {
        "opentelemetry-exporter-otlp-proto-grpc"
    }][..];
    let index = index::Index::new(options.index_url.as_deref().unwrap_or(PYPI));
    progress.say(&format!("reading {} for release lines", index.shown_url()));
    let mut available = BTreeMap::new();
    let plan = plan(&before, exporter, &index, &mut available)?;
    let mut report = Report {
        interpreter: before.executable.clone(),
        python_version: before.version.clone(),
        venv: before.venv,
        how_found,
        index: index.shown_url(),
        table: plan.source,
        table_line: plan.table_line,
        libraries: plan.libraries,
        line: plan.choice.line.clone(),
        skipped_lines: plan.choice.skipped.clone(),
        install: plan.choice.install.clone(),
        installer: None,
        outcome: Outcome::Planned,
    };
    if options.dry_run {
        return Ok(report);
    }
    if report.install.is_empty() {
        report.outcome = Outcome::AlreadyInstalled;
        return Ok(report);
    }
    let installer = install::Installer::find(&interpreter, before.pip).ok_or_else(|| {
        PythonError::NoInstaller {
            interpreter: before.executable.clone(),
        }
    })?;
    report.installer = Some(installer.name().to_string());
    // What was installed brings libraries of its own (the gRPC exporter brings
    // grpcio, which has an instrumentation) and the line's own table: the plan
    // is made again until nothing is left, so a second bootstrap has nothing to do.
    let mut current = before.clone();
    let mut install = plan.choice.install;
    let mut line = plan.choice.line;
    for _ in 0..ROUNDS {
        progress.say(&format!(
            "installing {} packages of release line {line} with {} (one resolve)",
            install.len(),
            installer.name()
        ));
        let run = installer.install(
            &install,
            &current.distributions,
            options.index_url.as_deref(),
            progress,
        );
        let after = inspect(&interpreter)?;
        if let Err(failure) = run {
            let state = install::undo(&installer, &before.distributions, &after.distributions);
            return Err(PythonError::Install {
                installer: installer.name().to_string(),
                code: failure.code,
                state,
                output: failure.output,
            });
        }
        not_installed(&installer, &install, &after)?;
        current = after;
        let next = self::plan(&current, exporter, &index, &mut available)?;
        report.libraries = next.libraries;
        report.table = next.source;
        report.table_line = next.table_line;
        if next.choice.install.is_empty() {
            report.outcome = Outcome::Installed;
            return Ok(report);
        }
        install = next.choice.install;
        line = next.choice.line;
        for requirement in &install {
            report.install.retain(|r| r.name != requirement.name);
            report.install.push(requirement.clone());
        }
    }
    Err(PythonError::Install {
        installer: installer.name().to_string(),
        code: "0".into(),
        state: format!(
            "after {ROUNDS} rounds these are still to install: {}",
            install
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        output: String::new(),
    })
}

/// How many times the plan is made again after installing (see `bootstrap`).
const ROUNDS: usize = 3;

struct Planned {
    source: TableSource,
    table_line: String,
    libraries: Vec<Match>,
    choice: Choice,
}

/// What `environment` needs, on the newest whole line; `available` keeps what
/// the index said, so a second plan asks only about new projects.
fn plan(
    environment: &Environment,
    exporters: &[&str],
    index: &index::Index,
    available: &mut BTreeMap<String, std::collections::BTreeSet<pep440_rs::Version>>,
) -> Result<Planned, PythonError> {
    let (table, source) = match &environment.table {
        Some(table) => (table.clone(), TableSource::Environment),
        None => (Table::shipped(), TableSource::Shipped),
    };
    let (libraries, instrumentations) = table::matches(&table, &environment.distributions);
    let needs = Needs {
        instrumentations: &instrumentations,
        exporters,
    };
    let unknown = needs
        .projects(&environment.distributions)
        .into_iter()
        .filter(|p| !available.contains_key(p))
        .collect();
    available.extend(super::block_on(index.versions_of(&unknown))?);
    let choice =
        line::choose(&needs, &environment.distributions, available).map_err(|skipped| {
            PythonError::NoLine {
                index: index.shown_url(),
                skipped,
            }
        })?;
    Ok(Planned {
        source,
        table_line: table.line,
        libraries,
        choice,
    })
}

/// An install that succeeded must have left each requirement in place.
fn not_installed(
    installer: &install::Installer,
    install: &[Requirement],
    after: &Environment,
) -> Result<(), PythonError> {
    let missing: Vec<String> = install
        .iter()
        .filter(|r| {
            let installed = after.distributions.get(&r.name);
            match r.spec.strip_prefix("==") {
                Some(version) => installed.map(String::as_str) != Some(version),
                None => installed.is_none(),
            }
        })
        .map(|r| r.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PythonError::Install {
        installer: installer.name().to_string(),
        code: "0".into(),
        state: format!("these are not installed afterwards: {}", missing.join(", ")),
        output: String::new(),
    })
}

/// The interpreter to bootstrap, and how it was found: `--python`, the
/// command's own, VIRTUAL_ENV's, then `python3` on PATH.
fn target(options: &Options) -> Result<(PathBuf, String), PythonError> {
    let mut tried = Vec::new();
    if let Some(python) = options.python {
        if python.is_file() || which::which(python).is_ok() {
            return Ok((python.to_path_buf(), "--python".into()));
        }
        tried.push(format!("--python {} (not found)", python.display()));
        return Err(PythonError::NoInterpreter(tried));
    }
    if let Some(interpreter) = &options.command_interpreter {
        return Ok((interpreter.clone(), "the command's interpreter".into()));
    }
    match std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        Some(venv) => {
            let python = Path::new(&venv).join("bin/python");
            if python.is_file() {
                return Ok((python, "VIRTUAL_ENV".into()));
            }
            tried.push(format!("VIRTUAL_ENV ({} is missing)", python.display()));
        }
        None => tried.push("VIRTUAL_ENV (not set)".into()),
    }
    let local = options.cwd.join(".venv/bin/python");
    if local.is_file() {
        return Ok((local, "./.venv".into()));
    }
    tried.push("./.venv (none here)".into());
    match which::which("python3") {
        Ok(python) => Ok((python, "python3 on PATH".into())),
        Err(_) => {
            tried.push("python3 on PATH (not found)".into());
            Err(PythonError::NoInterpreter(tried))
        }
    }
}

/// Runs inspect.py with the target interpreter (isolated from PYTHONPATH and
/// the user's site, which the installer does not write to).
fn inspect(interpreter: &Path) -> Result<Environment, PythonError> {
    let failed = |reason: String| PythonError::Inspect {
        interpreter: interpreter.display().to_string(),
        reason,
    };
    let output = Command::new(interpreter)
        .args(["-I", "-c", INSPECT])
        .env_remove("PYTHONPATH")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "{} ({})",
            output.status,
            stderr.trim().lines().last().unwrap_or_default()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| failed(e.to_string()))
}

/// PEP 503 normalized project name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The report as a requirements file: what would be installed, with the
/// choices explained in comments.
pub fn requirements(report: &Report) -> String {
    let mut out = format!(
        "# otel-run bootstrap for {} (Python {})\n# release line {} from {}\n",
        report.interpreter, report.python_version, report.line, report.index
    );
    for skipped in &report.skipped_lines {
        out += &format!(
            "# passed over {}: {}\n",
            skipped.line,
            skipped.reasons.join("; ")
        );
    }
    for library in report.libraries.iter().filter(|l| !l.in_range) {
        out += &format!(
            "# not instrumented: {} {} (its instrumentation supports {})\n",
            library.library, library.version, library.supported
        );
    }
    for requirement in &report.install {
        match &requirement.moved_from {
            Some(from) => out += &format!("{requirement}  # moves it from {from}\n"),
            None => out += &format!("{requirement}\n"),
        }
    }
    out
}

/// The human summary.
pub fn summary(report: &Report) -> String {
    let mut out = format!(
        "Python {} ({}{}), release line {}\n",
        report.interpreter,
        report.how_found,
        if report.venv {
            ""
        } else {
            ", not a virtual environment"
        },
        report.line
    );
    for library in &report.libraries {
        if library.in_range {
            out += &format!(
                "  {} {} -> {}\n",
                library.library, library.version, library.instrumentation
            );
        } else {
            out += &format!(
                "  {} {}: not instrumented, {} supports {}\n",
                library.library, library.version, library.instrumentation, library.supported
            );
        }
    }
    for requirement in &report.install {
        if let Some(from) = &requirement.moved_from {
            out += &format!(
                "  {} {from} -> {}\n",
                requirement.name,
                requirement.spec.trim_start_matches("==")
            );
        }
    }
    for skipped in &report.skipped_lines {
        out += &format!(
            "  passed over {}: {}\n",
            skipped.line,
            skipped.reasons.join("; ")
        );
    }
    out += &match report.outcome {
        Outcome::Installed => format!(
            "  installed {} packages with {}\n",
            report.install.len(),
            report.installer.as_deref().unwrap_or("?")
        ),
        Outcome::AlreadyInstalled => "  nothing to install: everything is there\n".into(),
        _ => format!("  would install {} packages\n", report.install.len()),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("Flask"), "flask");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("typing__Extensions"), "typing-extensions");
    }
}
