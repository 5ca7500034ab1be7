//! The Kubernetes example's pod, as the kubelet starts it: the downward API's
//! variables of `examples/kubernetes/app.yaml` give the `k8s.*` resource
//! attributes of otel-run's process span and of the child's own spans, unless
//! the user's OTEL_RESOURCE_ATTRIBUTES names them.

use std::path::Path;

use serde_json::Value;

use crate::util::{Collector, assert_success, fixture, otel_run, python, span_named};

const POD: &str = "shop-7d9f8-x2x4q";
const UID: &str = "0b8e3c2a-5f1d-4c6e-9a7b-2d4f6e8a0c1e";

/// The variables the example's app container sets from `fieldRef`s, with the
/// values a kubelet would give them in pod `POD` of namespace `shop` on `node-1`.
fn example_pod_env() -> Vec<(String, String)> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/app.yaml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut env = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("- name: ") else {
            continue;
        };
        let Some(field) = lines[i + 1..]
            .iter()
            .take(3)
            .find_map(|l| l.strip_prefix("fieldPath: "))
        else {
            continue;
        };
        let value = match field {
            "metadata.name" => POD,
            "metadata.uid" => UID,
            "metadata.namespace" => "shop",
            "spec.nodeName" => "node-1",
            "status.hostIP" => "127.0.0.1",
            f if f.starts_with("metadata.labels[") => "shop",
            other => panic!("app.yaml sets {name} from {other}, which this test does not give"),
        };
        env.push((name.to_string(), value.to_string()));
    }
    assert!(
        env.len() >= 3,
        "no downward API variables in app.yaml: {env:?}"
    );
    env
}

/// Runs the SDK app under otel-run in the example's pod, exporting to the collector.
fn run_in_pod(collector: &Collector, python: &Path, extra_env: &[(&str, &str)]) -> Vec<Value> {
    let app = fixture("sdk_app.py");
    let out = otel_run()
        .envs(example_pod_env())
        .envs(extra_env.iter().copied())
        .args([
            "--traces-exporter",
            "otlp",
            "--exporter-otlp-protocol",
            "grpc",
        ])
        .args([
            "--exporter-otlp-endpoint",
            &format!("http://127.0.0.1:{}", collector.grpc),
        ])
        .args([python.to_str().unwrap(), app.to_str().unwrap(), "http"])
        .output()
        .unwrap();
    assert_success(&out);
    collector.wait_spans(3)
}

#[test]
fn the_example_pods_variables_give_both_spans_the_k8s_attributes() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let spans = run_in_pod(&collector, &python, &[]);
    let (process, work) = (span_named(&spans, "python"), span_named(&spans, "work"));
    assert_eq!(process["resource"]["telemetry.sdk.language"], "rust");
    assert_eq!(work["resource"]["telemetry.sdk.language"], "python");
    for span in [process, work] {
        let resource = &span["resource"];
        assert_eq!(resource["k8s.pod.name"], POD, "{resource}");
        assert_eq!(resource["k8s.pod.uid"], UID, "{resource}");
        assert_eq!(resource["k8s.namespace.name"], "shop", "{resource}");
        assert_eq!(resource["k8s.node.name"], "node-1", "{resource}");
        assert_eq!(resource["service.name"], "shop", "{resource}");
    }
}

#[test]
fn the_users_resource_attribute_wins_over_the_pods() {
    let (Some(python), Some(collector)) = (python(), Collector::start()) else {
        return;
    };
    let spans = run_in_pod(
        &collector,
        &python,
        &[("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=x")],
    );
    for name in ["python", "work"] {
        let resource = &span_named(&spans, name)["resource"];
        assert_eq!(resource["k8s.pod.name"], "x", "{name}: {resource}");
        assert_eq!(resource["k8s.node.name"], "node-1", "{name}: {resource}");
    }
}
