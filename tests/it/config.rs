//! Settings as a user meets them: precedence, `otel-run config`, and errors.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

use crate::util::{ConsoleFile, assert_success, attr, free_port, otel_run};

/// `otel-run config` in a directory with an `otel-run.toml`, with env and flags on top.
fn config_output(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("otel-run.toml"),
        r#"
service_name = "from-file"
traces_exporter = "console"
exporter_otlp_endpoint = "https://user:pw@otlp.example.com:4317?token=abc"
bsp_schedule_delay = 250
[resource_attributes]
"deployment.environment" = "staging"
"#,
    )
    .unwrap();
    let out = otel_run()
        .current_dir(dir.path())
        .env_remove("OTEL_TRACES_EXPORTER")
        .env("OTEL_SERVICE_NAME", "from-env")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret,x-tenant=acme")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "many")
        .args([
            "config",
            "--format",
            format,
            "--propagators",
            "tracecontext,kontur,vostok",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("s3cret") && !text.contains(":pw@") && !text.contains("abc"),
        "secret leaked:\n{text}"
    );
    text
}

#[test]
fn config_shows_values_and_sources() {
    insta::assert_snapshot!(config_output("text"));
}

#[test]
fn config_as_json() {
    let json: serde_json::Value = serde_json::from_str(&config_output("json")).unwrap();
    let setting = |name: &str| {
        json["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(setting("OTEL_SERVICE_NAME")["value"], "from-env");
    assert_eq!(setting("OTEL_SERVICE_NAME")["source"], "env");
    assert_eq!(setting("OTEL_TRACES_EXPORTER")["source"], "otel-run.toml");
    assert_eq!(setting("OTEL_PROPAGATORS")["source"], "flag");
    assert_eq!(setting("OTEL_BSP_MAX_QUEUE_SIZE")["source"], "default");
    assert_eq!(
        setting("OTEL_EXPORTER_OTLP_HEADERS")["value"],
        "api-key=***,x-tenant=***"
    );
    assert_eq!(json["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn invalid_flag_exits_2_naming_the_flag_and_the_valid_values() {
    let out = otel_run()
        .args(["--traces-sampler", "sometimes", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("otel-run: error: invalid value `sometimes` for flag `--traces-sampler`"),
        "{err}"
    );
    assert!(err.contains("`parentbased_traceidratio`"), "{err}");
}

#[test]
fn invalid_config_file_value_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "exporter_otlp_timeout = \"10s\"\n",
    )
    .unwrap();
    let out = otel_run()
        .current_dir(dir.path())
        .args(["--config", "custom.toml", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`exporter_otlp_timeout` in `custom.toml`"),
        "{err}"
    );
    assert!(err.contains("milliseconds"), "{err}");
}

#[test]
fn unknown_config_key_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("otel-run.toml"), "servce_name = \"x\"\n").unwrap();
    let out = otel_run()
        .current_dir(dir.path())
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `servce_name`"), "{err}");
    assert!(err.contains("hint: keys are the variable names"), "{err}");
}

#[test]
fn invalid_environment_value_warns_once_and_runs() {
    let out = otel_run()
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .args(["sh", "-c", "echo ran"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"ran\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("OTEL_TRACES_SAMPLER=`sometimes`"), "{err}");
}

#[test]
fn unknown_propagators_pass_through_to_the_child() {
    let out = otel_run()
        .args([
            "--propagators",
            "tracecontext,kontur,vostok",
            "sh",
            "-c",
            "echo $OTEL_PROPAGATORS",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tracecontext,kontur,vostok\n"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_command_named_like_a_subcommand_runs_after_double_dash() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("config");
    std::fs::write(&script, "#!/bin/sh\necho I am config\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = otel_run()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .args(["--", "config"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "I am config\n");
}

#[test]
fn missing_command_is_127_with_a_hint_for_scripts() {
    let out = otel_run().arg("app.py").output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        "otel-run: error: command `app.py` not found\nhint: run a script through its interpreter: `otel-run python app.py`\n"
    );
}

#[test]
fn non_executable_file_is_126() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "x").unwrap();
    let out = otel_run()
        .current_dir(dir.path())
        .arg("./data.txt")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn environment_values_that_are_not_text_reach_the_child_byte_for_byte() {
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    let out = otel_run()
        .env("FOO", latin1)
        .env("OTEL_SERVICE_NAME", latin1)
        .args(["sh", "-c", "printf '%s|%s' \"$FOO\" \"$OTEL_SERVICE_NAME\""])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, b"caf\xe9|caf\xe9");
    assert_eq!(
        stderr(&out),
        "otel-run: warning: ignoring OTEL_SERVICE_NAME: its value is not UTF-8 text\n"
    );
    // A path list otel-run would extend as text is left as it is, and said so.
    let out = otel_run()
        .env("PYTHONPATH", latin1)
        .args([
            "--runtime",
            "python",
            "sh",
            "-c",
            "printf %s \"$PYTHONPATH\"",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, b"caf\xe9");
    assert!(
        stderr(&out).contains("PYTHONPATH is not UTF-8 text, so otel-run leaves it as it is"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_duration_too_long_for_a_deadline_is_refused_where_it_is_read() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = otel_run()
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "400000000000000")
        .args([
            "--traces-exporter",
            "otlp",
            "--exporter-otlp-endpoint",
            &closed,
        ])
        .arg("true")
        .output()
        .unwrap();
    assert_success(&out);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("ignoring OTEL_EXPORTER_OTLP_TIMEOUT=`400000000000000`: expected a whole number of milliseconds up to 31536000000 (a year)"),
        "{err}"
    );
    let out = otel_run()
        .args(["--proxy-timeout", "400000000000000", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(
            "otel-run: error: invalid value `400000000000000` for flag `--proxy-timeout`"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_header_no_exporter_could_send_is_refused_where_it_is_read() {
    let out = otel_run()
        .args(["--exporter-otlp-headers", "a b=1", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("for flag `--exporter-otlp-headers`: expected `name=value` pairs whose names are HTTP header names"),
        "{}",
        stderr(&out)
    );
    // From the environment: a warning, and the export goes on without the headers.
    let out = otel_run()
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a b=1")
        .args(["--traces-exporter", "otlp", "-v", "true"])
        .output()
        .unwrap();
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("ignoring OTEL_EXPORTER_OTLP_TRACES_HEADERS=`***`"),
        "{err}"
    );
    assert!(err.contains("exporting traces to"), "{err}");
    assert!(!err.contains("are not exported"), "{err}");
}

/// Secrets that do not parse: the colon form of a header, a URL that is not one.
const MALFORMED_SECRETS: [(&str, &str); 3] = [
    (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "Authorization: Basic SECRET==",
    ),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:SECRET@[bad"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "user:SECRET@127.0.0.1:9",
    ),
];

#[test]
fn secrets_that_do_not_parse_are_never_shown() {
    for args in [
        &["config"][..],
        &["config", "--format", "json"],
        &["doctor", "--", "true", "--token", "SECRET"],
        &["--traces-exporter", "otlp", "-vv", "true"],
        &["-v", "env"],
    ] {
        let out = otel_run()
            .envs(MALFORMED_SECRETS)
            .env("OTEL_EXPORTER_OTLP_INSECURE", "true")
            .args(args)
            .output()
            .unwrap();
        assert_success(&out);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            !stdout.contains("SECRET") && !stderr.contains("SECRET"),
            "{args:?}:\n{stdout}\n{stderr}"
        );
    }
    // Given as flags, they are usage errors that do not show them either.
    for (name, value) in MALFORMED_SECRETS {
        let flag = format!(
            "--{}",
            name.trim_start_matches("OTEL_")
                .to_ascii_lowercase()
                .replace('_', "-")
        );
        let out = otel_run().args([&flag, value, "true"]).output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("SECRET"), "{err}");
    }
    // `env` writes for the job's shell, which needs the real values.
    let out = otel_run()
        .args(["env", "--exporter-otlp-headers", "api-key=SECRET"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("OTEL_EXPORTER_OTLP_HEADERS='api-key=SECRET'"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn secret_arguments_are_recorded_redacted_unless_asked_not_to() {
    let args = [
        "true",
        "--token",
        "T0KEN",
        "--db-password=PASSW0RD",
        "postgres://app:URLPW@db/shop",
        "--page",
        "2",
    ];
    let recorded = |extra: &[&str]| {
        let console = ConsoleFile::new();
        let out = otel_run()
            .args(console.flags())
            .args(extra)
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        assert_success(&out);
        attr(&console.spans()[0], "process.command_args").clone()
    };
    assert_eq!(
        recorded(&[]),
        serde_json::json!([
            "true",
            "--token",
            "REDACTED",
            "--db-password=REDACTED",
            "postgres://app:REDACTED@db/shop",
            "--page",
            "2"
        ])
    );
    assert_eq!(
        recorded(&["--redact-command-args=false"]),
        serde_json::json!(args)
    );
    // The CI job span of `otel-run env` records otel-run's own command line.
    let console = ConsoleFile::new();
    let out = otel_run()
        .args(console.flags())
        .args(["env", "--exporter-otlp-headers", "api-key=HEADERSECRET"])
        .output()
        .unwrap();
    assert_success(&out);
    let recorded = attr(&console.spans()[0], "process.command_args").to_string();
    assert!(
        recorded.contains("REDACTED") && !recorded.contains("HEADERSECRET"),
        "{recorded}"
    );
}

#[test]
fn docs_reference_is_generated_from_the_settings_list_and_the_cli() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference");
    for (file, generated) in [
        (
            "configuration.md",
            otel_run::settings::reference::markdown(),
        ),
        ("commands.md", otel_run::settings::reference::commands()),
    ] {
        let path = docs.join(file);
        if std::env::var("OTEL_RUN_UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/reference/{file} is out of date; regenerate it with `OTEL_RUN_UPDATE_DOCS=1 cargo test docs_reference`"
        );
    }
}
