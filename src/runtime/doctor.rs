//! `otel-run doctor`: what otel-run detects for a command, what the command would
//! get, and what is missing, with the fix.

mod endpoint;

use std::fmt::Write as _;

use super::{Destination, Plan, Start, Target};
use crate::settings::otlp::Signal;
use crate::settings::report::{export_lines, redact};
use crate::settings::{Settings, vars};

/// The report for `target` (or for the settings alone).
pub fn report(settings: &Settings, target: Option<Target>) -> String {
    let mut out = String::new();
    if let Some(target) = &target {
        // As the process span would record it: a report is pasted into issues.
        let argv = if settings.flag(&vars::REDACT_COMMAND_ARGS) {
            crate::agent::command_args::redact(target.argv)
        } else {
            target.argv.to_vec()
        };
        let _ = writeln!(
            out,
            "command:  {} ({})",
            argv.join(" "),
            target.program.display()
        );
    }
    let exported = |signal| settings.exports(signal);
    let destination = if settings.flag(&vars::AGENT) {
        Destination::Agent {
            endpoint: "http://127.0.0.1:<agent port>".into(),
            exported: Signal::ALL.into_iter().filter(|s| exported(*s)).collect(),
        }
    } else {
        Destination::Direct
    };
    let python = target
        .as_ref()
        .and_then(|t| super::python::detect(t.program, t.argv));
    let mut plan = super::plan(&settings.runtime(), target);
    plan.finish(Start {
        destination,
        traceparent: Some("<otel-run's process span>".into()),
        env: Vec::new(),
    });
    if plan.runtime == Some(super::Runtime::Python)
        && let Some(python) = &python
    {
        let agent = settings.flag(&vars::AGENT);
        let problems = super::python_doctor::problems(settings, &plan, python, agent);
        plan.notes.extend(problems);
    }
    plan.notes.extend(endpoint::problems(settings, &exported));
    if let Some(runtime) = plan.runtime {
        let how = match settings.text(&vars::RUNTIME) {
            Some("auto") | None => "detected",
            _ => "from --runtime",
        };
        let _ = writeln!(out, "runtime:  {} ({how})", runtime.name());
    }
    for found in &plan.found {
        let _ = writeln!(out, "          {found}");
    }
    out += "export:\n";
    for (signal, line) in export_lines(settings) {
        let _ = writeln!(out, "  {:8} {line}", signal.name());
    }
    out += &environment(&plan);
    if plan.notes.is_empty() {
        out += "problems: none\n";
    } else {
        out += "problems:\n";
        for note in &plan.notes {
            let _ = writeln!(out, "  - {}\n    hint: {}", note.message, note.hint);
        }
    }
    out
}

/// The command's environment changes, secrets redacted.
fn environment(plan: &Plan) -> String {
    let mut out = String::from("the command gets:\n");
    for (name, value) in &plan.set {
        let shown = vars::find(name)
            .filter(|v| v.name == name)
            .map_or_else(|| value.clone(), |v| redact(v, value));
        let _ = writeln!(out, "  {name}={shown}");
    }
    for name in plan.remove.iter().filter(|n| std::env::var_os(n).is_some()) {
        let _ = writeln!(out, "  {name} removed (otel-run's agent exports instead)");
    }
    out
}
