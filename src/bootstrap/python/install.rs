//! One resolver call: `uv pip install --python TARGET` when uv is there (a uv
//! venv has no pip), else `TARGET -m pip install`, always with every installed
//! distribution but those being moved as a constraint, so the user's own
//! libraries never move.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::line::Requirement;
use crate::bootstrap::Progress;

pub enum Installer {
    Uv { uv: PathBuf, python: PathBuf },
    Pip { python: PathBuf },
}

pub struct Failure {
    pub code: String,
    /// The installer's last lines, when they were not shown already.
    pub output: String,
}

impl Installer {
    /// uv on PATH (or beside the interpreter), else the environment's pip.
    pub fn find(python: &Path, has_pip: bool) -> Option<Installer> {
        let beside = python.parent().map(|bin| bin.join("uv"));
        let uv = which::which("uv")
            .ok()
            .or_else(|| beside.filter(|p| p.is_file()));
        match uv {
            Some(uv) => Some(Installer::Uv {
                uv,
                python: python.to_path_buf(),
            }),
            None if has_pip => Some(Installer::Pip {
                python: python.to_path_buf(),
            }),
            None => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Installer::Uv { .. } => "uv pip",
            Installer::Pip { .. } => "pip",
        }
    }

    fn command(&self, verb: &str) -> Command {
        match self {
            Installer::Uv { uv, python } => {
                let mut cmd = Command::new(uv);
                cmd.args(["pip", verb, "--python"]).arg(python);
                cmd
            }
            Installer::Pip { python } => {
                let mut cmd = Command::new(python);
                cmd.args(["-m", "pip", verb, "--disable-pip-version-check"]);
                cmd
            }
        }
    }

    pub fn install(
        &self,
        requirements: &[Requirement],
        installed: &BTreeMap<String, String>,
        index_url: Option<&str>,
        progress: &Progress,
    ) -> Result<(), Failure> {
        let failed = |code: String, output: String| Failure { code, output };
        let mut file = tempfile::Builder::new()
            .prefix("otel-run-constraints-")
            .suffix(".txt")
            .tempfile()
            .map_err(|e| failed("-".into(), e.to_string()))?;
        file.write_all(constraints(installed, requirements).as_bytes())
            .map_err(|e| failed("-".into(), e.to_string()))?;
        let mut cmd = self.command("install");
        cmd.arg("--constraint").arg(file.path());
        if let Some(url) = index_url {
            cmd.args(["--index-url", url]);
        }
        cmd.args(requirements.iter().map(|r| r.to_string()));
        cmd.env_remove("PYTHONPATH").stdin(Stdio::null());
        // On a terminal the installer shows its own progress; otherwise its
        // output is kept for the error message.
        let status = if progress.terminal {
            cmd.status().map(|s| (s, String::new()))
        } else {
            cmd.output().map(|o| {
                let text = String::from_utf8_lossy(&o.stderr).into_owned()
                    + &String::from_utf8_lossy(&o.stdout);
                (o.status, text)
            })
        };
        match status {
            Ok((status, _)) if status.success() => Ok(()),
            Ok((status, output)) => Err(failed(
                status
                    .code()
                    .map_or_else(|| status.to_string(), |c| c.to_string()),
                tail(&output),
            )),
            Err(e) => Err(failed("-".into(), format!("cannot start it: {e}"))),
        }
    }

    fn uninstall(&self, names: &[String]) -> bool {
        let mut cmd = self.command("uninstall");
        if matches!(self, Installer::Pip { .. }) {
            cmd.arg("--yes");
        }
        cmd.args(names)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// After a failed install: removes what it added, and says what state the
/// environment is in.
pub fn undo(
    installer: &Installer,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> String {
    let added = added(before, after);
    let moved: Vec<&String> = before
        .iter()
        .filter(|(n, v)| after.get(*n).is_some_and(|a| a != *v))
        .map(|(n, _)| n)
        .collect();
    if added.is_empty() && moved.is_empty() {
        return "the environment is unchanged".into();
    }
    let mut state = String::new();
    if !added.is_empty() {
        if installer.uninstall(&added) {
            state += &format!("removed what it had added ({})", added.join(", "));
        } else {
            state += &format!("it left {} installed", added.join(", "));
        }
    }
    if !moved.is_empty() {
        if !state.is_empty() {
            state += "; ";
        }
        state += &format!(
            "changed versions of {}",
            moved
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    state
}

/// The last lines of an installer's output, which hold its error.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(15);
    format!("\n{}", lines[start..].join("\n"))
}

/// Every distribution not in `requirements`, for the installer's constraints:
/// nothing installed moves but the OpenTelemetry packages the line moves.
fn constraints(installed: &BTreeMap<String, String>, requirements: &[Requirement]) -> String {
    installed
        .iter()
        .filter(|(n, _)| !requirements.iter().any(|r| &r.name == *n))
        .filter(|(_, v)| <pep440_rs::Version as std::str::FromStr>::from_str(v).is_ok())
        .map(|(n, v)| format!("{n}=={v}\n"))
        .collect()
}

/// Distributions present in `after` but not in `before`.
fn added(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    after
        .keys()
        .filter(|n| !before.contains_key(*n))
        .cloned()
        .collect()
}
