//! The command line, parsed without I/O.
//!
//! clap's definition is the fixed part, a derive, plus one flag per entry of the
//! settings list ([`crate::settings::vars::ALL`]), with the
//! `opentelemetry-instrument` underscore spelling as an alias, so the seeds'
//! commands work after renaming `opentelemetry-instrument` to `otel-run`. It is
//! built only for what needs all of it: help, errors, subcommands, completions
//! and the man page. A launch's line is read by [`lex`], which costs a fraction
//! of building the definition, on every run.

mod lex;

use rustc_hash::FxHashMap as HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::settings::report::Format;
use crate::settings::vars::{self, Kind, Var};
use lex::Lexed;

#[derive(Debug, Parser)]
#[command(
    name = "otel-run",
    version,
    about = "Run a command observed with OpenTelemetry, without code changes",
    after_help = "Every flag also reads its OTEL_* variable and its `otel-run.toml` key.\nPrecedence: defaults < otel-run.toml < environment < flags.",
    subcommand_value_name = "COMMAND",
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Sub>,

    /// Read settings from this file instead of `./otel-run.toml`
    #[arg(long, global = true, value_name = "PATH", help_heading = "otel-run")]
    pub config: Option<PathBuf>,

    /// Don't run the local agent: the child exports directly (same as `--agent false`)
    #[arg(long, global = true, help_heading = "otel-run")]
    pub no_agent: bool,

    /// Inject only the standard OTEL_* variables, no runtime agent (same as `--inject=false`)
    #[arg(long, global = true, help_heading = "Runtimes")]
    pub no_inject: bool,

    /// Add an attribute to the process span (repeatable)
    #[arg(
        long,
        global = true,
        value_name = "KEY=VALUE",
        help_heading = "otel-run"
    )]
    pub attr: Vec<String>,

    /// More diagnostics on stderr (-v info, -vv debug)
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "otel-run")]
    pub verbose: u8,

    /// The command to run and its arguments (`--` first if it looks like a subcommand)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Show the resolved settings and where each value came from (secrets redacted)
    Config {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the environment otel-run would give a command, for a whole CI job:
    /// `eval "$(otel-run env)"`
    Env {
        /// Output format: a shell's syntax, a dotenv file, JSON, or a CI system's own
        #[arg(long, value_enum, default_value = "sh")]
        format: crate::runtime::print::EnvFormat,
        /// Print only the TRACEPARENT value
        #[arg(long)]
        traceparent: bool,
        /// The command the environment is for
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Install what the command's environment needs to be instrumented: Python
    /// instrumentations (one resolve), the Node.js SDK, the Java agent
    Bootstrap {
        #[command(flatten)]
        options: crate::bootstrap::Options,
        /// The command whose environment to bootstrap
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Show what otel-run detects and would inject for a command, and what is missing
    Doctor {
        /// The command to look at
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Run the agent alone: receive OTLP from other processes and devices and
    /// forward it to the configured exporters until stopped (Ctrl-C, SIGTERM)
    Agent {
        /// An address to receive OTLP on, gRPC and HTTP alike (repeatable);
        /// beyond loopback only when named, e.g. `0.0.0.0:4318`
        /// [default: 127.0.0.1:4317, 127.0.0.1:4318]
        #[arg(
            long,
            value_name = "ADDR",
            value_parser = crate::agent::standalone::parse_listen
        )]
        listen: Vec<std::net::SocketAddr>,
    },
    /// The functions `--uprobe` can turn into spans
    Probes {
        #[command(subcommand)]
        action: ProbesAction,
    },
    /// Print the shell completion script: `otel-run completions bash > /etc/bash_completion.d/otel-run`
    Completions {
        /// The shell to complete in
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `otel-run man | man -l -`
    Man,
}

/// The subcommands' names: a first argument spelled so is one (`--` first runs
/// a command of that name).
const SUBCOMMANDS: &[&str] = &[
    "config",
    "env",
    "bootstrap",
    "doctor",
    "agent",
    "probes",
    "completions",
    "man",
];

#[derive(Debug, Subcommand)]
pub enum ProbesAction {
    /// List the functions of a binary or shared library that PATTERN matches
    List {
        /// A binary or library: a path, a program on PATH, or a library name (`libc.so.6`)
        target: String,
        /// A glob over demangled names, e.g. `app::handlers::*`; every function by default
        pattern: Option<String>,
    },
}

/// The parsed command line: the fixed options and the settings given as flags.
pub struct Parsed {
    pub cli: Cli,
    pub flags: HashMap<&'static str, String>,
}

/// Why the command line was not parsed.
#[derive(Debug)]
pub enum Error {
    /// Help, version, or a usage error, as clap prints them.
    Clap(clap::Error),
    Unknown(UnknownOption),
}

/// An argument before the command that starts with `-` and is no option: a
/// misspelled flag, not a command to run.
#[derive(Debug, thiserror::Error)]
#[error("unknown option `{given}`")]
pub struct UnknownOption {
    given: String,
    closest: Option<String>,
}

impl UnknownOption {
    fn new(given: &str) -> UnknownOption {
        let name = given.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(name, _)| name);
        let closest = lex::spellings()
            .into_iter()
            .map(|candidate| (strsim::damerau_levenshtein(name, &candidate), candidate))
            .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
            .min()
            .map(|(_, candidate)| format!("--{candidate}"));
        UnknownOption {
            given: given.to_string(),
            closest,
        }
    }
}

impl crate::diag::Hint for UnknownOption {
    fn hint(&self) -> Option<String> {
        let command = "a command whose name starts with `-` goes after `--`";
        Some(match &self.closest {
            Some(closest) => format!("did you mean `{closest}`? ({command})"),
            None => format!("`otel-run --help` lists the options; {command}"),
        })
    }

    fn exit_code(&self) -> u8 {
        crate::diag::USAGE
    }
}

/// Parses argv. A launch's line is read by [`lex`]; any other goes to clap,
/// which also prints help, version and its usage errors.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Error> {
    let args: Vec<OsString> = args.into_iter().collect();
    match lex::lex(&args) {
        Lexed::Run(cli, given) => Ok(Parsed::new(cli, given)),
        Lexed::Unknown(unknown) => Err(Error::Unknown(unknown)),
        Lexed::Clap => parse_with_clap(args).map_err(Error::Clap),
    }
}

fn parse_with_clap(args: Vec<OsString>) -> Result<Parsed, clap::Error> {
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let given = vars::ALL
        .iter()
        .copied()
        .flat_map(|var| {
            flag_values(&matches, var)
                .into_iter()
                .map(move |v| (var, v))
        })
        .collect();
    Ok(Parsed::new(cli, given))
}

impl Parsed {
    /// From the settings given as flags, in the order given.
    fn new(cli: Cli, given: Vec<(&'static Var, String)>) -> Parsed {
        let mut flags: HashMap<&'static str, String> = HashMap::default();
        for (var, value) in given {
            // A repeated flag (`--uprobe`) gives its values as one comma-separated list.
            flags
                .entry(var.name)
                .and_modify(|list| {
                    list.push(',');
                    list.push_str(&value);
                })
                .or_insert(value);
        }
        if cli.no_agent {
            flags.insert(vars::AGENT.name, "false".into());
        }
        if cli.no_inject {
            flags.insert(vars::INJECT.name, "false".into());
        }
        // `--attr` adds to `--span-attributes`, as one `k=v,...` list.
        if !cli.attr.is_empty() {
            let mut items: Vec<String> = flags
                .remove(vars::SPAN_ATTRIBUTES.name)
                .into_iter()
                .collect();
            items.extend(cli.attr.iter().cloned());
            flags.insert(vars::SPAN_ATTRIBUTES.name, items.join(","));
        }
        Parsed { cli, flags }
    }
}

/// `completions` and `man`: generated from the same definition as `--help`.
pub fn generated(sub: &Sub) -> Option<String> {
    let mut out = Vec::new();
    match sub {
        Sub::Completions { shell } => {
            clap_complete::generate(*shell, &mut command(), "otel-run", &mut out);
            if *shell == clap_complete::Shell::Bash {
                return Some(bash_arms_fixed(&String::from_utf8_lossy(&out)));
            }
        }
        Sub::Man => clap_mangen::Man::new(command())
            .render(&mut out)
            .expect("writing to memory"),
        _ => return None,
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// clap_complete's bash script spells a hyphenated name two ways: the loop
/// that walks the words says `otel__run__subcmd__agent`, the arms that list
/// each subcommand's options `otel__subcmd__run__subcmd__agent`, so no
/// subcommand's option ever completed (clap-rs/clap#6421). The arms are
/// spelled as the loop spells them.
fn bash_arms_fixed(script: &str) -> String {
    script.replace("otel__subcmd__run", "otel__run")
}

/// Settings whose flag may be given more than once; the values join into one list.
/// `--route` is the short spelling of `--proxy-routes`.
const REPEATABLE: &[(&Var, Option<&str>)] = &[
    (&vars::PROXY, None),
    (&vars::PROXY_ROUTES, Some("route")),
    (&vars::UPROBE, None),
];

/// A global flag's values, wherever on the command line (or subcommand) it was given.
fn flag_values(matches: &ArgMatches, var: &Var) -> Vec<String> {
    let values = |m: &ArgMatches| {
        m.get_many::<String>(var.name)
            .map(|values| values.cloned().collect::<Vec<_>>())
    };
    values(matches)
        .or_else(|| matches.subcommand().and_then(|(_, sub)| values(sub)))
        .unwrap_or_default()
}

/// The full clap command: the derive plus one flag per setting.
pub fn command() -> clap::Command {
    let cmd = vars::ALL
        .iter()
        .fold(Cli::command(), |cmd, var| cmd.arg(setting_arg(var)));
    // `bootstrap --help` lists bootstrap's own options. The global ones are
    // still taken there (the OTLP protocol picks the exporter package), as
    // hidden copies: clap does not propagate a global flag to a subcommand
    // that has its own of that name.
    let globals: Vec<Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    // (`mut_subcommands` keeps the subcommands' order, which `--help` shows.)
    cmd.mut_subcommands(|sub| {
        if sub.get_name() == "bootstrap" {
            sub.args(globals.clone())
        } else {
            sub
        }
    })
}

fn setting_arg(var: &'static Var) -> Arg {
    let mut help = var.doc.to_string();
    if let Some(default) = var.default {
        help += &format!(" [default: {default}]");
    }
    help += &format!(" [env: {}]", var.name);
    let mut arg = Arg::new(var.name)
        .long(var.flag())
        .value_name(value_name(var))
        .help(help)
        .help_heading(var.group.heading())
        .num_args(1)
        .global(true);
    if let Some(alias) = var.alias() {
        arg = arg.alias(alias);
    }
    if let Some((_, short)) = REPEATABLE.iter().find(|(v, _)| v.name == var.name) {
        arg = arg.action(ArgAction::Append);
        if std::ptr::eq(var, &vars::UPROBE) {
            arg = arg.value_name("TARGET:PATTERN");
        }
        if let Some(short) = short {
            arg = arg.visible_alias(*short);
        }
    }
    // otel-run's own booleans are switches (`--fail-on-export-error`); the
    // specification's keep `--flag VALUE`, as `opentelemetry-instrument` takes them.
    if var.kind == Kind::Bool && !var.is_otel_standard() {
        arg = arg
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true");
    }
    arg
}

fn value_name(var: &Var) -> &'static str {
    match var.kind {
        Kind::Text => "TEXT",
        Kind::Bool => "BOOL",
        Kind::Count => "N",
        Kind::Port => "PORT",
        Kind::Millis => "MS",
        Kind::Choice(_) => "NAME",
        Kind::ChoiceList(_) | Kind::OpenList(_) => "NAMES",
        Kind::KeyValues | Kind::Headers => "K=V,...",
        Kind::Url => "URL",
        Kind::Path => "PATH",
    }
}

#[cfg(test)]
mod tests;
