//! The command line as both readers take it.

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
    for var in vars::ALL.iter() {
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
fn agent_is_a_subcommand_whose_listen_repeats_and_takes_the_settings() {
    let parsed = parse_str(&[
        "--traces_exporter",
        "console",
        "agent",
        "--listen",
        "0.0.0.0:4317",
        "--listen",
        "localhost:4318",
        "--exporter-otlp-endpoint",
        "http://backend:4317",
    ]);
    let Some(Sub::Agent { listen }) = parsed.cli.subcommand else {
        panic!("{:?}", parsed.cli.subcommand);
    };
    let listen: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(listen, ["0.0.0.0:4317", "127.0.0.1:4318"]);
    assert_eq!(parsed.flags["OTEL_TRACES_EXPORTER"], "console");
    assert_eq!(
        parsed.flags["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "http://backend:4317"
    );
    // A program named `agent` still runs after `--`.
    assert_eq!(parse_str(&["--", "agent"]).cli.command, ["agent"]);
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
