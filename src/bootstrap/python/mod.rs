//! Python: find the interpreter the command will run, read its environment,
//! choose one release line, and install what is missing in one resolver call.

mod index;
mod install;
mod line;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{Outcome, Progress};
pub use index::PYPI;
use line::{Choice, Needs, Requirement, Skipped};
use table::{Match, Table, TableSource};

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

impl PythonError {
    pub fn hint(&self) -> Option<String> {
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
    pub protocol: &'a str,
}

/// What inspect.py prints.
#[derive(Debug, Clone, Deserialize)]
struct Environment {
    executable: String,
    version: String,
    venv: bool,
    pip: bool,
    distributions: BTreeMap<String, String>,
    table: Option<Table>,
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
    let (table, source) = match &before.table {
        Some(table) => (table.clone(), TableSource::Environment),
        None => (Table::shipped(), TableSource::Shipped),
    };
    let (libraries, instrumentations) = table::matches(&table, &before.distributions);
    let exporter = if options.protocol.starts_with("http") {
        "opentelemetry-exporter-otlp-proto-http"
    } else {
        "opentelemetry-exporter-otlp-proto-grpc"
    };
    let needs = Needs {
        instrumentations: &instrumentations,
        exporter,
    };
    let index = index::Index::new(options.index_url.as_deref().unwrap_or(PYPI));
    progress.say(&format!("reading {} for release lines", index.shown_url()));
    let available = super::block_on(index.versions_of(&needs.projects()))?;
    let choice: Choice =
        line::choose(&needs, &before.distributions, &available).map_err(|skipped| {
            PythonError::NoLine {
                index: index.shown_url(),
                skipped,
            }
        })?;
    let mut report = Report {
        interpreter: before.executable.clone(),
        python_version: before.version.clone(),
        venv: before.venv,
        how_found,
        index: index.shown_url(),
        table: source,
        table_line: table.line.clone(),
        libraries,
        line: choice.line.clone(),
        skipped_lines: choice.skipped.clone(),
        install: choice.install.clone(),
        installer: None,
        outcome: Outcome::Planned,
    };
    if options.dry_run {
        return Ok(report);
    }
    if choice.install.is_empty() {
        report.outcome = Outcome::AlreadyInstalled;
        return Ok(report);
    }
    let installer = install::Installer::find(&interpreter, before.pip).ok_or_else(|| {
        PythonError::NoInstaller {
            interpreter: before.executable.clone(),
        }
    })?;
    report.installer = Some(installer.name().to_string());
    progress.say(&format!(
        "installing {} packages of release line {} with {} (one resolve)",
        choice.install.len(),
        choice.line,
        installer.name()
    ));
    let run = installer.install(
        &choice.install,
        &before.distributions,
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
    let missing: Vec<String> = choice
        .install
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
    if !missing.is_empty() {
        return Err(PythonError::Install {
            installer: installer.name().to_string(),
            code: "0".into(),
            state: format!("these are not installed afterwards: {}", missing.join(", ")),
            output: String::new(),
        });
    }
    report.outcome = Outcome::Installed;
    Ok(report)
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
        out += &format!("{requirement}\n");
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
