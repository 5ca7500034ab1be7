//! Across hosts, for real: network namespaces joined by veth pairs to one
//! bridge stand for machines on a LAN. Three services, each a Flask app under
//! otel-run (its reverse proxy listening on the host's address), each with a
//! collector agent on its host; the agents send to a gateway whose
//! `loadbalancing` exporter routes by trace ID to two backend collectors on two
//! more hosts. A request crossing the three services must arrive whole at
//! exactly one backend; with one backend's link cut, the services keep serving,
//! and once it is back, its traces arrive again.
//!
//! The addresses are 10.77.0.0/24, inside namespaces this test creates and
//! deletes: nothing is reachable from or changed on the machine's own network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{BIN, apps_python, fixture, flatten_attributes, peer, root, tool, wait_for};

/// The hosts: name and address.
const SERVICES: [(&str, &str); 3] = [("a", "10.77.0.1"), ("b", "10.77.0.2"), ("c", "10.77.0.3")];
const GATEWAY: (&str, &str) = ("gw", "10.77.0.10");
const BACKENDS: [(&str, &str); 2] = [("b1", "10.77.0.21"), ("b2", "10.77.0.22")];
/// One request's trace: on each host the proxy's SERVER span and Flask's, and on
/// a and b the `requests` CLIENT span to the next host.
const TRACE_SPANS: usize = 8;

/// Namespaces named `PREFIX-HOST`, each with `eth0` on the bridge of `PREFIX-lan`.
struct Lan {
    prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lan {
    fn new(hosts: &[(&str, &str)]) -> Lan {
        let prefix = format!("otr{}", std::process::id());
        let mut lan = Lan {
            prefix: prefix.clone(),
            hosts: Vec::new(),
        };
        let switch = format!("{prefix}-lan");
        ip(&["netns", "add", &switch]);
        lan.hosts.push("lan".into());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (host, address) in hosts {
            let ns = lan.ns(host);
            ip(&["netns", "add", &ns]);
            lan.hosts.push(host.to_string());
            let port = format!("v-{host}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `program` run on `host`.
    fn on(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host)]).arg(program);
        command
    }

    /// Takes `host`'s link to the bridge down or up, as pulling its cable would.
    fn link(&self, host: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.ns("lan"),
            "link",
            "set",
            &format!("v-{host}"),
            state,
        ]);
    }

    /// Whether `address:port` accepts a TCP connection from `host`.
    fn reachable(&self, host: &str, address: &str, port: u16) -> bool {
        self.on(host, "timeout")
            .args(["1", "bash", "-c", &format!("</dev/tcp/{address}/{port}")])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `curl` from `host`: the HTTP status, 0 when there was no answer.
    fn get(&self, host: &str, url: &str, headers: &[String]) -> u16 {
        let mut curl = self.on(host, "curl");
        curl.args(["-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code}"]);
        for header in headers {
            curl.args(["-H", header]);
        }
        let out = curl.arg(url).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .status();
        }
    }
}

/// Processes killed when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Processes {
    fn start(&mut self, mut command: Command, log: &Path) {
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.0.push(child);
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        for child in &mut self.0 {
            if wait_for(Duration::from_secs(10), || child.try_wait().unwrap()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The collector configs: an agent per service host, the gateway, a backend.
fn agent_config() -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:4318\n\
         processors:\n  batch:\n    timeout: 200ms\n\
         exporters:\n  otlp:\n    endpoint: {}:4317\n    tls:\n      insecure: true\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
        GATEWAY.1
    )
}

fn gateway_config() -> String {
    let backends: Vec<String> = BACKENDS.iter().map(|(_, a)| format!("{a}:4317")).collect();
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: {}:4317\n\
         exporters:\n  loadbalancing:\n    routing_key: traceID\n    protocol:\n      otlp:\n        tls:\n          insecure: true\n        timeout: 2s\n\
         \x20       retry_on_failure:\n          initial_interval: 200ms\n          max_interval: 2s\n          max_elapsed_time: 120s\n\
         \x20   resolver:\n      static:\n        hostnames: [{}]\n\
         service:\n  telemetry:\n    metrics:\n      level: normal\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: 8888\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
        GATEWAY.1,
        backends.join(", ")
    )
}

fn backend_config(address: &str, output: &Path) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: {address}:4317\n\
         exporters:\n  file:\n    path: {}\n    flush_interval: 50ms\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
        output.display()
    )
}

/// The spans a backend wrote, each with its resource attributes under `resource`.
fn spans_in(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut spans = Vec::new();
    for line in text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
    {
        let data: Value = serde_json::from_str(line).unwrap();
        for rs in data["resourceSpans"].as_array().into_iter().flatten() {
            let resource = flatten_attributes(&rs["resource"]["attributes"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let mut span = span.clone();
                    span["resource"] = resource.clone();
                    spans.push(span);
                }
            }
        }
    }
    spans
}

/// Trace ID (hex) -> backend index -> spans, for the traces the test started.
type Arrived = BTreeMap<String, BTreeMap<usize, Vec<Value>>>;

fn arrived(outputs: &[PathBuf], traces: &BTreeSet<String>) -> Arrived {
    let mut by_trace = Arrived::new();
    for (backend, output) in outputs.iter().enumerate() {
        for span in spans_in(output) {
            let id = span["traceId"].as_str().unwrap_or_default().to_string();
            if !traces.contains(&id) {
                continue;
            }
            // Delivery is at least once: a batch whose answer was lost is sent
            // again, so a span may be written twice.
            let spans = by_trace.entry(id).or_default().entry(backend).or_default();
            if !spans.iter().any(|s| s["spanId"] == span["spanId"]) {
                spans.push(span);
            }
        }
    }
    by_trace
}

/// The trace of one request through a, b and c: at one backend only, with
/// spans from the three services, every parent among them or the client's.
fn check_whole(id: &str, at: &BTreeMap<usize, Vec<Value>>, client_span: &str, size: usize) {
    assert_eq!(at.len(), 1, "trace {id} is split across backends: {at:#?}");
    let spans = at.values().next().unwrap();
    let summary: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} <- {}",
                s["resource"]["service.name"], s["name"], s["spanId"], s["parentSpanId"]
            )
        })
        .collect();
    assert_eq!(spans.len(), size, "trace {id}: {summary:#?}");
    let ids: BTreeSet<&str> = spans.iter().filter_map(|s| s["spanId"].as_str()).collect();
    for span in spans {
        let parent = span["parentSpanId"].as_str().unwrap_or_default();
        assert!(
            parent == client_span || ids.contains(parent),
            "trace {id}: {} has a parent {parent} that is not in the trace",
            span["name"]
        );
    }
    let services: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s["resource"]["service.name"].as_str())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from(["svc-a", "svc-b", "svc-c"]),
        "trace {id}"
    );
}

#[test]
fn a_trace_across_three_hosts_arrives_whole_at_one_backend_and_survives_a_lost_backend() {
    if root().is_none() || tool("ip").is_none() || tool("curl").is_none() {
        return;
    }
    let Some(collector) = peer("OTEL_RUN_TEST_OTELCOL", "an OpenTelemetry Collector") else {
        return;
    };
    let Some(python) = apps_python() else {
        return;
    };
    let hosts: Vec<(&str, &str)> = SERVICES
        .iter()
        .chain([&GATEWAY])
        .chain(&BACKENDS)
        .copied()
        .collect();
    let lan = Lan::new(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let mut running = Processes(Vec::new());
    let collector_on = |running: &mut Processes, host: &str, config: String| {
        let path = dir.path().join(format!("{host}.yaml"));
        std::fs::write(&path, config).unwrap();
        let mut command = lan.on(host, &collector);
        command.arg("--config").arg(&path);
        running.start(command, &dir.path().join(format!("{host}-collector.log")));
    };
    let outputs: Vec<PathBuf> = BACKENDS
        .iter()
        .map(|(host, _)| dir.path().join(format!("{host}.jsonl")))
        .collect();
    for ((host, address), output) in BACKENDS.iter().zip(&outputs) {
        collector_on(&mut running, host, backend_config(address, output));
    }
    collector_on(&mut running, GATEWAY.0, gateway_config());
    // a -> b -> c: each app's /outbound calls the next host's proxy.
    let app = fixture("python/flask_app.py");
    for (i, (host, address)) in SERVICES.iter().enumerate() {
        collector_on(&mut running, host, agent_config());
        let mut command = lan.on(host, BIN);
        command
            .args(["--service-name", &format!("svc-{host}")])
            .args(["--proxy", &format!("{address}:8080=127.0.0.1:5000")])
            .args([
                "--",
                python.to_str().unwrap(),
                app.to_str().unwrap(),
                "5000",
            ])
            .env("OTEL_TRACES_EXPORTER", "otlp")
            .env("OTEL_METRICS_EXPORTER", "none")
            .env("OTEL_LOGS_EXPORTER", "none")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200");
        match i {
            0 => command.env(
                "DOWNSTREAM_URL",
                format!("http://{}:8080/outbound", SERVICES[1].1),
            ),
            1 => command.env("DOWNSTREAM_URL", format!("http://{}:8080/", SERVICES[2].1)),
            _ => &mut command,
        };
        running.start(command, &dir.path().join(format!("{host}-otel-run.log")));
    }
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    for (host, address) in SERVICES {
        let up = wait_for(Duration::from_secs(60), || {
            (lan.get(host, &format!("http://{address}:8080/"), &[]) == 200).then_some(())
        });
        assert!(
            up.is_some(),
            "{host} serves: {}",
            log(&format!("{host}-otel-run.log"))
        );
    }
    for (host, address) in BACKENDS.iter().chain([&GATEWAY]) {
        let up = wait_for(Duration::from_secs(30), || {
            lan.reachable(host, address, 4317).then_some(())
        });
        assert!(
            up.is_some(),
            "{host}'s collector listens: {}",
            log(&format!("{host}-collector.log"))
        );
    }

    // Requests from a client on host a, each with its own trace ID.
    let entry = format!("http://{}:8080/outbound", SERVICES[0].1);
    let mut sent = 0u32;
    let mut request = |lan: &Lan| {
        sent += 1;
        let trace = format!(
            "{:016x}{:016x}",
            0x7e57_0000_0000_0000u64 + u64::from(sent),
            rand_part(sent)
        );
        let parent = format!("{:016x}", 0xc11e_0000_0000_0000u64 + u64::from(sent));
        let status = lan.get(
            SERVICES[0].0,
            &entry,
            &[format!("traceparent: 00-{trace}-{parent}-01")],
        );
        (trace, parent, status)
    };
    let mut before = BTreeMap::new();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let (trace, parent, status) = request(&lan);
        assert_eq!(status, 200);
        before.insert(trace, parent);
    }
    let ids: BTreeSet<String> = before.keys().cloned().collect();
    let all_whole = |ids: &BTreeSet<String>, size: usize| {
        let got = arrived(&outputs, ids);
        (got.len() == ids.len()
            && got
                .values()
                .all(|at| at.values().map(Vec::len).sum::<usize>() >= size))
        .then_some(got)
    };
    let got = wait_for(Duration::from_secs(30), || all_whole(&ids, TRACE_SPANS))
        .unwrap_or_else(|| panic!("traces missing; gateway: {}", log("gw-collector.log")));
    let mut per_backend = [0usize; 2];
    for (id, at) in &got {
        check_whole(id, at, &before[id], TRACE_SPANS);
        per_backend[*at.keys().next().unwrap()] += 1;
    }
    assert!(
        per_backend.iter().all(|n| *n > 0),
        "both backends get traces: {per_backend:?}"
    );
    eprintln!(
        "{} traces of {TRACE_SPANS} spans each: {per_backend:?} per backend",
        got.len()
    );

    // Backend b2 loses its link: the services keep answering.
    lan.link(BACKENDS[1].0, false);
    let serving = started.elapsed();
    let mut during = BTreeMap::new();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let (trace, parent, status) = request(&lan);
        assert_eq!(status, 200, "the services keep serving with a backend gone");
        during.insert(trace, parent);
    }
    eprintln!(
        "40 requests took {serving:?} with both backends, {:?} with one cut off",
        started.elapsed()
    );
    let during_ids: BTreeSet<String> = during.keys().cloned().collect();
    std::thread::sleep(Duration::from_secs(3));
    let held = arrived(&outputs, &during_ids);
    let mut early = [0usize; 2];
    for at in held.values() {
        for backend in at.keys() {
            early[*backend] += 1;
        }
    }
    let at_b1 = held.len();
    lan.link(BACKENDS[1].0, true);
    let back = std::time::Instant::now();
    // Back again: what the gateway held for b2 is retried and arrives, whole.
    let got = wait_for(Duration::from_secs(90), || {
        all_whole(&during_ids, TRACE_SPANS)
    });
    eprintln!(
        "the held traces arrived {:?} after the link came back",
        back.elapsed()
    );
    let metrics = lan
        .on(GATEWAY.0, "curl")
        .args(["-s", "http://127.0.0.1:8888/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("otelcol_exporter_") && (l.contains("failed") || l.contains("sent_spans"))
        })
        .collect();
    eprintln!(
        "during the outage: {at_b1} of {} traces arrived at once ({early:?} per backend); gateway counters: {counted:#?}",
        during.len()
    );
    let got = got.unwrap_or_else(|| {
        panic!(
            "after the backend returned, {} of {} traces arrived; gateway counters: {counted:#?}",
            arrived(&outputs, &during_ids).len(),
            during.len()
        )
    });
    for (id, at) in &got {
        check_whole(id, at, &during[id], TRACE_SPANS);
    }
    let written = outputs
        .iter()
        .flat_map(|o| spans_in(o))
        .filter(|s| during_ids.contains(s["traceId"].as_str().unwrap_or_default()))
        .count();
    eprintln!(
        "after the outage: nothing lost; {} spans written twice (a retried batch)",
        written - during.len() * TRACE_SPANS
    );
}

/// A varied low half for test trace IDs (the ring hashes the whole ID).
fn rand_part(n: u32) -> u64 {
    let mut x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}
