//! The references, generated from the code: the settings list gives
//! `docs/reference/configuration.md` ([`markdown`]) and the command line's
//! subcommands `docs/reference/commands.md` ([`commands`]). A test keeps both
//! equal to the committed files.

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
         (exit code 2); an invalid environment value is a warning, and the next layer's value is used. \
         Durations are whole milliseconds, at most {} (a year).\n",
        super::parse::MAX_DURATION.as_millis()
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
    out += "\n## Kubernetes\n\n";
    out += "In a pod, these variables, set from the downward API (`valueFrom.fieldRef`), give the \
            `k8s.*` resource attributes of otel-run's own spans and of the child's SDK (through the \
            OTEL_RESOURCE_ATTRIBUTES the child gets). Each attribute is read from the first of its \
            variables that is set. An attribute given in OTEL_RESOURCE_ATTRIBUTES (or \
            `--resource-attributes`, or the file's `resource_attributes`) keeps that value. \
            `NODE_NAME` is not read: Jenkins names its agents with it.\n\n";
    out += "| Attribute | Pod field | Variables |\n|---|---|---|\n";
    for k in vars::KUBERNETES {
        let names: Vec<String> = k.vars.iter().map(|v| format!("`{v}`")).collect();
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            k.attribute,
            k.field,
            names.join(", ")
        );
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

/// The subcommands and their own options, from the clap definition.
pub fn commands() -> String {
    let mut out = String::new();
    out += "# Command reference\n\n";
    out += "<!-- Generated from src/cli.rs: `OTEL_RUN_UPDATE_DOCS=1 cargo test docs_reference`. -->\n\n";
    out += "Every subcommand also takes the global flags: the settings of the \
            [configuration reference](configuration.md), `--config`, `-v`.\n\n";
    let mut root = crate::cli::command();
    root.build();
    for sub in root.get_subcommands() {
        subcommand(&mut out, sub, "otel-run");
    }
    out
}

fn subcommand(out: &mut String, sub: &clap::Command, parent: &str) {
    let name = format!("{parent} {}", sub.get_name());
    let _ = writeln!(out, "## `{name}`\n");
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        let _ = writeln!(out, "{}\n", about.to_string().replace('\n', " "));
    }
    let options: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
        .collect();
    if !options.is_empty() {
        out.push_str("| Option | Default | Description |\n|---|---|---|\n");
        for arg in options {
            let spelled = match (arg.get_long(), arg.get_value_names()) {
                (Some(long), Some(values))
                    if arg.get_num_args().is_some_and(|n| n.takes_values()) =>
                {
                    format!("`--{long} {}`", values[0])
                }
                (Some(long), _) => format!("`--{long}`"),
                (None, Some(values)) => format!("`-- {}...`", values[0]),
                (None, None) => format!("`{}`", arg.get_id()),
            };
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            let mut help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            if !possible.is_empty() && arg.get_long().is_some() {
                help += &format!(" (one of {})", possible.join(", "));
            }
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect();
            let default =
                if default.is_empty() || arg.get_num_args().is_some_and(|n| !n.takes_values()) {
                    "—".to_string()
                } else {
                    default.join(", ")
                };
            let _ = writeln!(out, "| {spelled} | {default} | {} |", help.trim());
        }
        out.push('\n');
    }
    for nested in sub.get_subcommands() {
        subcommand(out, nested, &name);
    }
}
