//! The examples in `examples/` run as written.

use std::path::Path;

use crate::util::{assert_success, console_spans, otel_run};

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

#[test]
fn quickstart_prints_one_trace_of_four_spans() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("spans.json");
    let bin_dir = Path::new(crate::util::BIN).parent().unwrap();
    let out = otel_run()
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .current_dir(examples().parent().unwrap())
        .args([
            "--traces-exporter",
            "console",
            "--console-output",
            output.to_str().unwrap(),
        ])
        .args(["--", "sh", "examples/quickstart.sh"])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3 tests passed\n");
    let spans = console_spans(&output);
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let root = spans.iter().find(|s| s["name"] == "sh").unwrap();
    for step in ["compile", "test", "package"] {
        let span = spans
            .iter()
            .find(|s| s["name"] == step)
            .unwrap_or_else(|| panic!("{step}: {names:?}"));
        assert_eq!(span["parent_id"], root["context"]["span_id"], "{step}");
        assert_eq!(
            span["context"]["trace_id"], root["context"]["trace_id"],
            "{step}"
        );
    }
}

#[test]
fn example_config_file_is_valid() {
    // The file's exporter, not the one the test harness sets in the environment.
    let out = otel_run()
        .env_remove("OTEL_TRACES_EXPORTER")
        .args([
            "--config",
            examples().join("otel-run.toml").to_str().unwrap(),
            "config",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let service = text
        .lines()
        .find(|l| l.starts_with("OTEL_SERVICE_NAME "))
        .unwrap();
    assert!(
        service.contains(" checkout ") && service.ends_with("otel-run.toml)"),
        "{service}"
    );
    assert!(
        text.contains("otlp grpc http://localhost:4317/, gzip"),
        "{text}"
    );
}
