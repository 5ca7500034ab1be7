//! The configuration reference, generated from the settings list. A test keeps
//! `docs/reference/configuration.md` equal to [`markdown`].

use std::fmt::Write as _;

use super::file::FILE_NAME;
use super::vars::{self, Group, Var};

/// The reference page.
pub fn markdown() -> String {
    let mut out = String::new();
    out += "# Configuration reference\n\n";
    out += "<!-- Generated from src/settings/vars.rs: `OTEL_RUN_UPDATE_DOCS=1 cargo test docs_reference`. -->\n\n";
    let _ = writeln!(
        out,
        "Every setting can be given three ways, and a higher one wins: the `{FILE_NAME}` key \
         (in the working directory, or `--config PATH`), the environment variable, and the flag. \
         Flags of the OpenTelemetry variables also accept the `opentelemetry-instrument` spelling \
         (`--service_name`). An empty value counts as unset. An invalid flag or file value is an error \
         (exit code 2); an invalid environment value is a warning, and the next layer's value is used.\n"
    );
    let mut groups: Vec<Group> = vars::ALL.iter().map(|v| v.group).collect();
    groups.dedup();
    for group in groups {
        let _ = writeln!(out, "## {}\n", group.heading());
        out += "| Variable | Flag | `otel-run.toml` key | Default | Description |\n";
        out += "|---|---|---|---|---|\n";
        for var in vars::ALL.iter().filter(|v| v.group == group) {
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | {} | {} |",
                var.name,
                flags(var),
                var.key(),
                var.default.map_or("—".to_string(), |d| format!("`{d}`")),
                var.doc
            );
        }
        out += "\n";
    }
    out += "## Context from the environment\n\n";
    out += "| Variable | Use |\n|---|---|\n";
    for (name, doc) in vars::CONTEXT_CARRIER {
        let _ = writeln!(out, "| `{name}` | {doc} |");
    }
    out += "\n## What the child gets\n\n";
    out += "Settings given as flags or in the config file are set in the child's environment under their \
            variable names. With the local agent (the default), the other OTLP settings of the backend \
            (per-signal endpoints, headers, TLS files, timeouts) are removed from the child: the agent does \
            the real export. otel-run also sets:\n\n";
    out += "| Variable | Value |\n|---|---|\n";
    for (name, doc) in vars::INJECTED {
        let _ = writeln!(out, "| `{name}` | {doc} |");
    }
    out
}

fn flags(var: &Var) -> String {
    match var.alias() {
        Some(alias) => format!("`--{}` (`--{alias}`)", var.flag()),
        None => format!("`--{}`", var.flag()),
    }
}
