//! Settings as a user meets them: precedence, `otel-run config`, and errors.

use crate::util::{assert_success, otel_run};

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
fn an_environment_that_is_not_utf8_is_read_and_passed_on_untouched() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let out = otel_run()
        .env("SOME_PATH", OsStr::from_bytes(b"/srv/caf\xe9"))
        .env("OTEL_TRACES_SAMPLER", OsStr::from_bytes(b"always\xff"))
        .args(["sh", "-c", "printf %s \"$SOME_PATH\""])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, b"/srv/caf\xe9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains("OTEL_TRACES_SAMPLER=`always\u{fffd}`"),
        "{err}"
    );
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
