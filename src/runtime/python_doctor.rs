//! What a run of a Python command would warn about, found before it runs, for
//! `otel-run doctor`: the environment is read by bootstrap's inspection and
//! matched with bootstrap's table, and each check asks what the shim asks when
//! the program starts (which instrumentors it is handed, which exporter and
//! propagators it loads).

use std::path::Path;

use super::python::Python;
use super::{Note, Plan};
use crate::bootstrap::python::{Inspection, inspection};
use crate::settings::otlp::{ExporterKind, Protocol, Signal, Target};
use crate::settings::{Settings, vars};

/// The problems of the command's environment for a run with these settings
/// and `plan` (the child's environment); `agent` when otel-run's agent receives
/// what the program exports. Nothing when the interpreter is chosen only as
/// the command runs.
pub fn problems(settings: &Settings, plan: &Plan, python: &Python, agent: bool) -> Vec<Note> {
    let (Some(interpreter), Some(_)) = (&python.interpreter, &python.site_packages) else {
        return Vec::new();
    };
    let bootstrap = format!("`otel-run bootstrap --python {}`", interpreter.display());
    let found = match inspection(interpreter) {
        Ok(found) => found,
        Err(e) => {
            return vec![Note::new(
                e.to_string(),
                "check that the interpreter runs: `python -c pass`",
            )];
        }
    };
    // Without the SDK the run says only that (the plan's own note).
    if !found.distributions.contains_key("opentelemetry-sdk") {
        return Vec::new();
    }
    let mut notes = Vec::new();
    // The instrumentation packages that are not installed are the plan's note.
    if settings.exports(Signal::Traces) {
        notes.extend(instrumentation(&found, interpreter));
    }
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        if !settings.exports(signal) || !settings.exporters(signal).contains(&ExporterKind::Otlp) {
            continue;
        }
        // With the agent, the shim sends every signal to it itself; without
        // the agent, the child needs the SDK's exporter.
        if agent {
            continue;
        }
        // The protocol the shim reads from the child's environment.
        let signal_protocol = format!(
            "OTEL_EXPORTER_OTLP_{}_PROTOCOL",
            signal.name().to_uppercase()
        );
        let protocol = plan
            .get(&signal_protocol)
            .or(plan.get(vars::OTLP.protocol.name))
            .unwrap_or(Target::of(settings, signal).protocol.name());
        let package = if protocol == Protocol::Grpc.name() {
            "opentelemetry-exporter-otlp-proto-grpc"
        } else {
            "opentelemetry-exporter-otlp-proto-http"
        };
        if !found.distributions.contains_key(package)
            && !notes.iter().any(|n: &Note| n.message.contains(package))
        {
            notes.push(Note::new(
                format!(
                    "`{}` cannot export {} over OTLP: {package} is not installed",
                    interpreter.display(),
                    signal.name()
                ),
                format!("{bootstrap} installs it"),
            ));
        }
    }
    let propagators = settings.list(&vars::PROPAGATORS);
    let missing: Vec<&String> = propagators
        .iter()
        .filter(|p| *p != "none" && !found.propagators.contains(p))
        .collect();
    if !missing.is_empty() && !settings.disabled() {
        let names: Vec<String> = missing.iter().map(|p| format!("`{p}`")).collect();
        notes.push(Note::new(
            format!(
                "the propagator{} {} of OTEL_PROPAGATORS {} not installed for `{}`",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" },
                interpreter.display()
            ),
            format!(
                "install the package whose `opentelemetry_propagator` entry point is named so, or leave it out of `--{}`",
                vars::PROPAGATORS.flag()
            ),
        ));
    }
    notes
}

/// Libraries whose version their instrumentation does not support: each is
/// left untraced by a run. (Those installed without their instrumentation are
/// the plan's note, the one a run warns with.)
fn instrumentation(found: &Inspection, interpreter: &Path) -> Vec<Note> {
    let mut notes = Vec::new();
    for library in found.libraries.iter().filter(|m| !m.in_range) {
        notes.push(Note::new(
            format!(
                "{} {} is outside what {} supports ({}), so it is not traced",
                library.library, library.version, library.instrumentation, library.supported
            ),
            format!(
                "install a {} in that range in `{}`, or an instrumentation release that supports {}",
                library.library,
                interpreter.display(),
                library.version
            ),
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::python::Match;

    fn library(name: &str, version: &str, supported: &str, in_range: bool) -> Match {
        Match {
            library: name.into(),
            version: version.into(),
            instrumentation: format!("opentelemetry-instrumentation-{name}"),
            supported: supported.into(),
            in_range,
        }
    }

    #[test]
    fn a_library_outside_its_instrumentations_range_is_a_problem() {
        let found = Inspection {
            distributions: [
                ("flask", "3.1.3"),
                ("opentelemetry-instrumentation-flask", "0.66b1"),
                ("sqlalchemy", "2.1.0"),
                ("opentelemetry-instrumentation-sqlalchemy", "0.66b1"),
                ("click", "8.1.0"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .into(),
            libraries: vec![
                library("flask", "3.1.3", ">=1.0", true),
                library("sqlalchemy", "2.1.0", ">=1.0.0,<2.1.0", false),
                library("click", "8.1.0", ">=8.1.3,<9.0.0", false),
                library("jinja2", "3.1.6", ">=2.7,<4.0", true),
            ],
            propagators: Vec::new(),
        };
        let notes = instrumentation(&found, Path::new("/venv/bin/python"));
        let messages: Vec<&str> = notes.iter().map(|n| n.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "sqlalchemy 2.1.0 is outside what opentelemetry-instrumentation-sqlalchemy supports (>=1.0.0,<2.1.0), so it is not traced",
                "click 8.1.0 is outside what opentelemetry-instrumentation-click supports (>=8.1.3,<9.0.0), so it is not traced",
            ]
        );
        let clean = Inspection {
            libraries: vec![library("flask", "3.1.3", ">=1.0", true)],
            ..found
        };
        assert!(instrumentation(&clean, Path::new("/venv/bin/python")).is_empty());
    }
}
