//! `--metrics-exporter prometheus`: the agent serves a scrape endpoint while the
//! command runs, and a real Prometheus (`.ci/prometheus/build.sh`) scrapes it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{fixture, free_port, http_get_body, otel_run, peer, python, wait_for};

/// A running Prometheus scraping `target` every second, its labels honoured.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Option<Prometheus> {
        let binary = peer("OTEL_RUN_TEST_PROMETHEUS", "Prometheus")?;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: otel-run\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let prometheus = Prometheus { child, port, dir };
        wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("Prometheus did not listen: {}", prometheus.log()));
        Some(prometheus)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The samples of an instant query, once it has `n` of them.
    fn query(&self, query: &str, n: usize) -> Vec<Value> {
        let path = format!("/api/v1/query?query={query}");
        wait_for(Duration::from_secs(30), || {
            let answer: Value = serde_json::from_str(&http_get_body(self.port, &path)).ok()?;
            let result = answer["data"]["result"].as_array()?.clone();
            (result.len() >= n).then_some(result)
        })
        .unwrap_or_else(|| panic!("no {query} in Prometheus: {}", self.log()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_childs_metrics_named_as_the_specification_says() {
    let Some(python) = python() else { return };
    let scrape = free_port();
    let Some(prometheus) = Prometheus::start(scrape) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let mut run = otel_run()
        .args(["--metrics-exporter", "prometheus", "--service-name", "shop"])
        .args(["--exporter-prometheus-host", "127.0.0.1"])
        .args(["--exporter-prometheus-port", &scrape.to_string()])
        .args(["--metric-export-interval", "300"])
        .arg(python)
        .arg(fixture("metrics_while_running.py"))
        .arg(&stop)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let orders = prometheus.query("orders_placed_total", 1);
    let count = prometheus.query("checkout_duration_seconds_count", 1);
    let info = prometheus.query("target_info", 1);
    std::fs::write(&stop, "").unwrap();
    let status = run.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    let labels = &orders[0]["metric"];
    assert_eq!(orders[0]["value"][1], "5", "{orders:#?}");
    assert_eq!(labels["job"], "shop", "service.name is the job: {labels}");
    assert_eq!(labels["region"], "eu");
    assert_eq!(labels["otel_scope_name"], "shop");
    assert_eq!(count[0]["value"][1], "3", "{count:#?}");
    assert_eq!(
        info[0]["metric"]["telemetry_sdk_language"], "python",
        "{info:#?}"
    );
    assert_eq!(info[0]["metric"]["job"], "shop");
    let up = prometheus.query("up", 1);
    assert_eq!(up[0]["value"][1], "1", "the scrape succeeded: {up:#?}");
}

/// A port already taken: one warning naming it and the fix; the command runs.
#[test]
fn a_scrape_port_in_use_is_said_and_the_command_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = otel_run()
        .args([
            "--metrics-exporter",
            "prometheus",
            "--exporter-prometheus-host",
            "127.0.0.1",
        ])
        .args([
            "--exporter-prometheus-port",
            &port,
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("cannot serve a Prometheus scrape endpoint")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--exporter-prometheus-port"),
        "{err}"
    );
}

/// The proxy's `http.server.request.duration` is scraped like the children's
/// metrics: a histogram in seconds, per route and status.
#[test]
fn the_proxys_request_duration_is_on_the_scrape_endpoint() {
    let (Some(python), Some(_)) = (crate::util::tool("python3"), crate::util::tool("curl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, upstream, scrape) = (free_port(), free_port(), free_port());
    let mut command = otel_run();
    command
        .args([
            "--proxy",
            &format!("{proxy}={upstream}"),
            "--route",
            "/items/{id}",
        ])
        .args([
            "--metrics-exporter",
            "prometheus",
            "--service-name",
            "proxied",
        ])
        .args(["--exporter-prometheus-host", "127.0.0.1"])
        .args(["--exporter-prometheus-port", &scrape.to_string()])
        .args(["--metric-export-interval", "300", "--"])
        .arg(python)
        .arg(fixture("proxy_upstream.py"))
        .arg(upstream.to_string());
    let mut server = crate::util::Server::start(command, upstream, dir.path());
    for item in 1..=3 {
        let path = format!("/items/{item}");
        assert_eq!(crate::util::http_get(proxy, &path), 200);
    }
    let count = "http_server_request_duration_seconds_count{";
    let text = wait_for(Duration::from_secs(15), || {
        let text = http_get_body(scrape, "/metrics");
        text.lines()
            .any(|l| {
                l.starts_with(count)
                    && l.contains("http_route=\"/items/{id}\"")
                    && l.ends_with(" 3")
            })
            .then_some(text)
    });
    server.stop();
    let text = text.expect("the proxy's duration histogram on the scrape endpoint");
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("job=\"proxied\""), "{text}");
}
