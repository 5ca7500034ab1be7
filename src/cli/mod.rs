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

use std::collections::HashMap;
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
        let mut flags: HashMap<&'static str, String> = HashMap::new();
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
        }
        Sub::Man => clap_mangen::Man::new(command())
            .render(&mut out)
            .expect("writing to memory"),
        _ => return None,
    }
    Some(String::from_utf8_lossy(&out).into_owned())
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
        Kind::Millis => "MS",
        Kind::Choice(_) => "NAME",
        Kind::ChoiceList(_) | Kind::OpenList(_) => "NAMES",
        Kind::KeyValues | Kind::Headers => "K=V,...",
        Kind::Url => "URL",
        Kind::Path => "PATH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("otel-run")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parse_str(args: &[&str]) -> Parsed {
        parse(argv(args)).unwrap()
    }

    fn unknown(args: &[&str]) -> UnknownOption {
        match parse(argv(args)) {
            Err(Error::Unknown(e)) => e,
            Err(Error::Clap(e)) => panic!("{args:?}: clap: {e}"),
            Ok(p) => panic!("{args:?}: parsed, command {:?}", p.cli.command),
        }
    }

    /// Lines the lexer reads itself, each as clap reads it; and lines it hands to clap.
    #[test]
    fn the_lexer_reads_a_launch_as_clap_does() {
        let mut lines: Vec<Vec<String>> = [
            &["true"][..],
            &[],
            &["--", "config", "--format", "json"],
            &["-v", "python", "-v", "--service-name", "b"],
            &[
                "-vv",
                "--verbose",
                "--no-agent",
                "--no-inject",
                "--",
                "make",
                "--",
                "x",
            ],
            &[
                "--config=x.toml",
                "--attr",
                "a=1",
                "--attr=b=c=2",
                "--span-attributes",
                "z=0",
                "-",
            ],
            &[
                "--uprobe",
                ":a",
                "--uprobe=:b",
                "--proxy",
                "1=2",
                "--route",
                "/x",
                "--proxy-routes=/y",
                "s",
            ],
            &["--fail-on-export-error", "make"],
            &[
                "--fail-on-export-error=false",
                "--egress-proxy",
                "--",
                "make",
            ],
            &[
                "--exporter_otlp_endpoint",
                "http://h:4317",
                "--traces_exporter=none",
                "flask",
                "run",
            ],
            &["--agent", "false", "--no-agent", "true"],
        ]
        .iter()
        .map(|line| line.iter().map(|s| s.to_string()).collect())
        .collect();
        for var in vars::ALL {
            let value = if var.kind == Kind::Bool { "true" } else { "v" };
            let mut spellings = vec![var.flag()];
            spellings.extend(var.alias());
            for flag in spellings {
                lines.push(vec![
                    format!("--{flag}={value}"),
                    "cmd".into(),
                    "--x".into(),
                ]);
                if lex::is_switch(var) {
                    lines.push(vec![format!("--{flag}"), "cmd".into()]);
                } else {
                    lines.push(vec![
                        format!("--{flag}"),
                        value.into(),
                        "--".into(),
                        "cmd".into(),
                    ]);
                }
            }
        }
        for line in &lines {
            let args = argv(&line.iter().map(String::as_str).collect::<Vec<_>>());
            let Lexed::Run(cli, given) = lex::lex(&args) else {
                panic!("{line:?} was not read by the lexer");
            };
            let ours = Parsed::new(cli, given);
            let clap = parse_with_clap(args).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                format!("{:?}", ours.cli),
                format!("{:?}", clap.cli),
                "{line:?}"
            );
            assert_eq!(ours.flags, clap.flags, "{line:?}");
        }
        for line in [
            &["config"][..],
            &["--config", "x", "doctor", "--", "true"],
            &["--help"],
            &["-h"],
            &["-V"],
            &["-vh"],
            &["--service-name"],
            &["--service-name", "-x", "true"],
            &["--service-name", "a", "--service-name", "b", "true"],
            &["--service-name=", "true"],
            &["--no-agent=true", "true"],
            &["--config", "a", "--config", "b", "true"],
        ] {
            assert!(
                matches!(lex::lex(&argv(line)), Lexed::Clap),
                "{line:?} not handed to clap"
            );
        }
        assert!(matches!(
            parse(argv(&[
                "--service-name",
                "a",
                "--service-name",
                "b",
                "true"
            ])),
            Err(Error::Clap(_))
        ));
    }

    #[test]
    fn an_unknown_option_before_the_command_is_a_usage_error_with_the_closest() {
        use crate::diag::Hint as _;
        let e = unknown(&["--servce-name", "x", "--", "true"]);
        assert_eq!(e.to_string(), "unknown option `--servce-name`");
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.hint()
                .unwrap()
                .starts_with("did you mean `--service-name`?"),
            "{:?}",
            e.hint()
        );
        let e = unknown(&["-v", "--traces_exportr=none", "true"]);
        assert_eq!(e.closest.as_deref(), Some("--traces_exporter"));
        let e = unknown(&["--no-agnet", "true"]);
        assert_eq!(e.closest.as_deref(), Some("--no-agent"));
        let e = unknown(&["-x", "true"]);
        assert_eq!(e.closest, None);
        assert!(e.hint().unwrap().contains("`--`"));
        // clap, which reads the help's and the subcommands' lines, agrees.
        assert!(parse_with_clap(argv(&["--servce-name", "x", "--", "true"])).is_err());
        // After the command, or after `--`, such arguments are the command's.
        assert_eq!(
            parse_str(&["true", "--servce-name"]).cli.command,
            ["true", "--servce-name"]
        );
        assert_eq!(parse_str(&["--", "-x"]).cli.command, ["-x"]);
    }

    #[test]
    fn uprobe_repeats_into_one_list() {
        let parsed = parse_str(&[
            "--uprobe",
            ":app::*",
            "--uprobe",
            "libc.so.6:malloc",
            "--",
            "app",
        ]);
        assert_eq!(parsed.flags[vars::UPROBE.name], ":app::*,libc.so.6:malloc");
        let parsed = parse_str(&["probes", "list", "./app", "app::*"]);
        assert!(matches!(
            parsed.cli.subcommand,
            Some(Sub::Probes {
                action: ProbesAction::List { ref target, pattern: Some(ref p) },
            }) if target == "./app" && p == "app::*"
        ));
    }

    #[test]
    fn command_and_its_flags_are_the_childs() {
        let p = parse_str(&["--service-name", "a", "python", "-v", "--service-name", "b"]);
        assert_eq!(p.flags["OTEL_SERVICE_NAME"], "a");
        assert_eq!(p.cli.command, ["python", "-v", "--service-name", "b"]);
        assert_eq!(p.cli.verbose, 0);
    }

    #[test]
    fn upstream_underscore_spellings_are_aliases() {
        let p = parse_str(&[
            "--traces_exporter",
            "console",
            "--metrics_exporter",
            "none",
            "--service_name",
            "todo",
            "--exporter_otlp_endpoint",
            "http://localhost:4317",
            "flask",
            "run",
        ]);
        assert_eq!(p.flags["OTEL_TRACES_EXPORTER"], "console");
        assert_eq!(p.flags["OTEL_METRICS_EXPORTER"], "none");
        assert_eq!(p.flags["OTEL_SERVICE_NAME"], "todo");
        assert_eq!(
            p.flags["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://localhost:4317"
        );
        assert_eq!(p.cli.command, ["flask", "run"]);
    }

    #[test]
    fn subcommand_names_run_as_commands_after_double_dash() {
        let p = parse_str(&["config", "--format", "json"]);
        assert!(matches!(
            p.cli.subcommand,
            Some(Sub::Config {
                format: Format::Json
            })
        ));
        let p = parse_str(&["--", "config", "--format", "json"]);
        assert!(p.cli.subcommand.is_none());
        assert_eq!(p.cli.command, ["config", "--format", "json"]);
    }

    #[test]
    fn options_may_precede_a_subcommand() {
        let p = parse_str(&["--config", "x.toml", "config"]);
        assert!(matches!(p.cli.subcommand, Some(Sub::Config { .. })));
        assert!(p.cli.command.is_empty());
    }

    #[test]
    fn bootstrap_help_lists_its_own_options_and_still_takes_the_global_ones() {
        let help = command()
            .find_subcommand_mut("bootstrap")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--dry-run"), "{help}");
        for global in [
            "--exporter-otlp-endpoint",
            "--service-name",
            "--no-agent",
            "--config",
        ] {
            assert!(!help.contains(global), "{global} in {help}");
        }
        let p = parse_str(&[
            "bootstrap",
            "-v",
            "--config",
            "x.toml",
            "--exporter-otlp-protocol",
            "http/protobuf",
            "--dry-run",
        ]);
        assert_eq!(p.cli.verbose, 1);
        assert_eq!(p.cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!(p.flags["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
        assert!(matches!(
            p.cli.subcommand,
            Some(Sub::Bootstrap { ref options, .. }) if options.dry_run
        ));
    }

    #[test]
    fn settings_flags_work_after_a_subcommand() {
        let p = parse_str(&["config", "--service-name", "x"]);
        assert_eq!(p.flags["OTEL_SERVICE_NAME"], "x");
    }

    #[test]
    fn attr_adds_to_span_attributes() {
        let p = parse_str(&[
            "--span-attributes",
            "a=1",
            "--attr",
            "b=2",
            "--attr",
            "c=3",
            "true",
        ]);
        assert_eq!(p.flags["OTEL_RUN_SPAN_ATTRIBUTES"], "a=1,b=2,c=3");
    }

    #[test]
    fn own_booleans_are_switches() {
        let p = parse_str(&["--fail-on-export-error", "make"]);
        assert_eq!(p.flags["OTEL_RUN_FAIL_ON_EXPORT_ERROR"], "true");
        assert_eq!(p.cli.command, ["make"]);
        let p = parse_str(&["--fail-on-export-error=false", "make"]);
        assert_eq!(p.flags["OTEL_RUN_FAIL_ON_EXPORT_ERROR"], "false");
        let p = parse_str(&["--exporter-otlp-insecure", "true", "make"]);
        assert_eq!(p.flags["OTEL_EXPORTER_OTLP_INSECURE"], "true");
    }

    #[test]
    fn env_takes_a_format_and_a_command() {
        let p = parse_str(&["env", "--format", "github", "--", "make", "test"]);
        match p.cli.subcommand {
            Some(Sub::Env {
                format,
                command,
                traceparent,
            }) => {
                assert_eq!(format, crate::runtime::print::EnvFormat::Github);
                assert_eq!(command, ["make", "test"]);
                assert!(!traceparent);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proxy_and_route_are_repeatable() {
        let p = parse_str(&[
            "--proxy",
            "8080=5000",
            "--proxy",
            "8081=5001",
            "--route",
            "/users/{id}",
            "--route",
            "/orders/{id}",
            "--egress-proxy",
            "./server",
        ]);
        assert_eq!(p.flags["OTEL_RUN_PROXY"], "8080=5000,8081=5001");
        assert_eq!(p.flags["OTEL_RUN_PROXY_ROUTES"], "/users/{id},/orders/{id}");
        assert_eq!(p.flags["OTEL_RUN_EGRESS_PROXY"], "true");
        assert_eq!(p.cli.command, ["./server"]);
    }

    #[test]
    fn no_agent_is_the_agent_setting() {
        let p = parse_str(&["--no-agent", "true"]);
        assert_eq!(p.flags["OTEL_RUN_AGENT"], "false");
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }
}
