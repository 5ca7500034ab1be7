//! The launch's command line, read without clap:
//! `otel-run [OPTIONS] [--] COMMAND [ARGS...]`.
//!
//! Building clap's definition of every setting's flag costs more than the rest
//! of a launch, so the common line is read here, against the settings list
//! directly. Everything else (a subcommand, `--help`, `--version`, or a form
//! this reader does not take: a missing value, a value that starts with `-`, a
//! flag given twice) goes to clap, which parses the whole line. So the lexer
//! only accepts lines that clap parses the same way (a test compares the two),
//! and clap still says what is wrong with the others.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;

use super::{Cli, REPEATABLE, SUBCOMMANDS, UnknownOption};
use crate::settings::vars::{self, Kind, Var};

/// What reading the line found.
pub enum Lexed {
    /// A launch (or no command at all, which prints the help).
    Run(Cli, Vec<(&'static Var, String)>),
    /// A line for clap to parse.
    Clap,
    /// An argument before the command that looks like an option and is none.
    Unknown(UnknownOption),
}

/// The options clap's definition has besides the settings (see [`Cli`]).
#[derive(Clone, Copy)]
enum Opt {
    Setting(&'static Var),
    Config,
    NoAgent,
    NoInject,
    Attr,
    Verbose,
    /// `--help`, `--version`: clap prints them.
    Clap,
}

impl PartialEq for Opt {
    fn eq(&self, other: &Opt) -> bool {
        match (self, other) {
            (Opt::Setting(a), Opt::Setting(b)) => a.name == b.name,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// The long options that are not settings, as the derive in [`Cli`] spells them.
const FIXED: &[(&str, Opt)] = &[
    ("config", Opt::Config),
    ("no-agent", Opt::NoAgent),
    ("no-inject", Opt::NoInject),
    ("attr", Opt::Attr),
    ("verbose", Opt::Verbose),
    ("help", Opt::Clap),
    ("version", Opt::Clap),
];

fn long(name: &str) -> Option<Opt> {
    if let Some((_, opt)) = FIXED.iter().find(|(n, _)| *n == name) {
        return Some(*opt);
    }
    if let Some((var, _)) = REPEATABLE.iter().find(|(_, short)| *short == Some(name)) {
        return Some(Opt::Setting(var));
    }
    vars::ALL
        .iter()
        .copied()
        .find(|var| spells(var, name))
        .map(Opt::Setting)
}

/// Whether `name` is `var`'s flag (`service-name`) or, for the specification's
/// variables, its `opentelemetry-instrument` spelling (`service_name`); as
/// [`Var::flag`] and [`Var::alias`] derive them, without building either.
fn spells(var: &Var, name: &str) -> bool {
    let key = var
        .name
        .strip_prefix("OTEL_RUN_")
        .or_else(|| var.name.strip_prefix("OTEL_"))
        .unwrap_or(var.name);
    let same = |separator: u8| {
        name.len() == key.len()
            && name.bytes().zip(key.bytes()).all(|(n, k)| match k {
                b'_' => n == separator,
                k => n == k.to_ascii_lowercase(),
            })
    };
    same(b'-') || (var.is_otel_standard() && same(b'_'))
}

/// otel-run's own booleans are switches (`--fail-on-export-error`), as
/// `super::setting_arg` defines them.
pub(super) fn is_switch(var: &Var) -> bool {
    var.kind == Kind::Bool && !var.is_otel_standard()
}

/// Reads `args` (with `argv[0]`).
pub fn lex(args: &[OsString]) -> Lexed {
    let mut cli = Cli {
        subcommand: None,
        config: None,
        no_agent: false,
        no_inject: false,
        attr: Vec::new(),
        verbose: 0,
        command: Vec::new(),
    };
    let mut given: Vec<(&'static Var, String)> = Vec::new();
    let mut seen: Vec<Opt> = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            cli.command = rest.cloned().collect();
            break;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            if SUBCOMMANDS.iter().any(|s| s.as_bytes() == bytes) {
                return Lexed::Clap;
            }
            // The command: it and every argument after it are the child's.
            cli.command = std::iter::once(arg).chain(rest).cloned().collect();
            break;
        }
        let Some(text) = arg.to_str() else {
            return Lexed::Clap;
        };
        let Some(body) = text.strip_prefix("--") else {
            // Short options: only `-v`, repeated as `-vv`; `-h` and `-V` are clap's.
            let shorts = &text[1..];
            if shorts.bytes().all(|b| b == b'v') {
                cli.verbose = cli.verbose.saturating_add(shorts.len() as u8);
                continue;
            }
            if shorts.starts_with(['v', 'h', 'V']) {
                return Lexed::Clap;
            }
            return Lexed::Unknown(UnknownOption::new(text));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(opt) = long(name) else {
            return Lexed::Unknown(UnknownOption::new(text));
        };
        let repeatable = match opt {
            Opt::Setting(var) => REPEATABLE.iter().any(|(v, _)| v.name == var.name),
            Opt::Attr | Opt::Verbose => true,
            _ => false,
        };
        if opt == Opt::Clap || inline == Some("") || (!repeatable && seen.contains(&opt)) {
            return Lexed::Clap;
        }
        seen.push(opt);
        let takes_value = match opt {
            Opt::Setting(var) => !is_switch(var),
            Opt::Config | Opt::Attr => true,
            _ => false,
        };
        let value = match (takes_value, inline) {
            (false, None) => "true".to_string(),
            (true, Some(value)) => value.to_string(),
            // A switch takes only `--switch=VALUE`, and only a setting's does.
            (false, Some(value)) if matches!(opt, Opt::Setting(_)) => value.to_string(),
            (false, Some(_)) => return Lexed::Clap,
            (true, None) => match rest.next().and_then(|v| v.to_str()) {
                Some(value) if !value.starts_with('-') => value.to_string(),
                _ => return Lexed::Clap,
            },
        };
        match opt {
            Opt::Setting(var) => given.push((var, value)),
            Opt::Config => cli.config = Some(value.into()),
            Opt::NoAgent => cli.no_agent = true,
            Opt::NoInject => cli.no_inject = true,
            Opt::Attr => cli.attr.push(value),
            Opt::Verbose => cli.verbose = cli.verbose.saturating_add(1),
            Opt::Clap => unreachable!("handed to clap above"),
        }
    }
    Lexed::Run(cli, given)
}

/// Every long option's spelling, for suggestions.
pub fn spellings() -> Vec<String> {
    let mut names: Vec<String> = FIXED.iter().map(|(n, _)| n.to_string()).collect();
    names.extend(REPEATABLE.iter().filter_map(|(_, s)| s.map(str::to_string)));
    for var in vars::ALL.iter() {
        names.push(var.flag());
        names.extend(var.alias());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_long_option_of_the_clap_definition_is_read_here_and_no_other() {
        let command = super::super::command();
        let mut clap_names = Vec::new();
        for arg in command.get_arguments() {
            clap_names.extend(arg.get_long().map(str::to_string));
            clap_names.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
        clap_names.extend(["help".to_string(), "version".to_string()]);
        for name in &clap_names {
            assert!(long(name).is_some(), "--{name} is not read by the lexer");
        }
        let mut ours = spellings();
        ours.sort();
        clap_names.sort();
        clap_names.dedup();
        assert_eq!(ours, clap_names);
    }

    #[test]
    fn spellings_are_exact() {
        assert!(spells(&vars::SERVICE_NAME, "service-name"));
        assert!(spells(&vars::SERVICE_NAME, "service_name"));
        assert!(!spells(&vars::SERVICE_NAME, "service-name_"));
        assert!(!spells(&vars::SERVICE_NAME, "Service-Name"));
        assert!(!spells(&vars::SERVICE_NAME, "service_name-"));
        assert!(spells(&vars::FAIL_ON_EXPORT_ERROR, "fail-on-export-error"));
        assert!(!spells(&vars::FAIL_ON_EXPORT_ERROR, "fail_on_export_error"));
    }
}
