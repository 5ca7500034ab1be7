//! Shared helpers: the binary under test, the real peers (Python SDK, collector)
//! and readers for the spans they produce.
//!
//! Peers come from the environment: `OTEL_RUN_TEST_PYTHON` (a Python with the
//! OpenTelemetry SDK and OTLP exporters, see `.ci/python/venv.sh sdk`) and
//! `OTEL_RUN_TEST_OTELCOL` (a collector built by `.ci/otelcol/build.sh`). A test
//! whose peer is missing is skipped with a message, unless
//! `OTEL_RUN_TEST_REQUIRE_ALL=1` (set by `.ci/run`), which makes it fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_otel-run");

/// `otel-run` with a clean environment: no OTEL_*, context or Kubernetes
/// downward-API variables from the machine running the tests, exporters off
/// unless a test turns them on.
pub fn otel_run() -> Command {
    let mut cmd = Command::new(BIN);
    let kubernetes = otel_run::settings::vars::KUBERNETES;
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("OTEL_")
            || matches!(&*name, "TRACEPARENT" | "TRACESTATE" | "BAGGAGE")
            || kubernetes.iter().any(|k| k.vars.contains(&&*name))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none");
    default_signals(&mut cmd);
    cmd
}

/// A shell starts a background job with SIGINT and SIGQUIT ignored, `nohup`
/// ignores SIGHUP, and a child keeps an ignored signal ignored (otel-run rightly
/// passes that on): the tests that stop a command with these signals need their
/// default actions, however the suite itself was started.
pub fn default_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec, only async-signal-safe `signal` calls.
    unsafe {
        cmd.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

/// A peer's location, or a skip (a failure under OTEL_RUN_TEST_REQUIRE_ALL).
pub fn peer(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if Path::new(&path).exists() => Some(PathBuf::from(path)),
        _ => {
            let message = format!("skipped: missing {what} (set {var}; `.ci/run` prepares it)");
            if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{message}");
            }
            eprintln!("{message}");
            None
        }
    }
}

pub fn python() -> Option<PathBuf> {
    peer(
        "OTEL_RUN_TEST_PYTHON",
        "a Python with the OpenTelemetry SDK",
    )
}

/// A tool expected on every machine of this kind (sh, script, curl).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let message = format!("skipped: missing `{name}` on PATH");
        if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{message}");
        }
        eprintln!("{message}");
    }
    found
}

/// Asserts a run succeeded, showing its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns something or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The spans of a console output file: a stream of JSON objects.
pub fn console_spans(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.expect("console output is a stream of JSON objects"))
        .collect()
}

/// A console span's attribute or resource attribute, as a string.
pub fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

pub fn resource_attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["resource"]["attributes"][key]
}

/// A real OpenTelemetry Collector writing what it receives to a file.
pub struct Collector {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    pub fn start() -> Option<Collector> {
        Collector::start_with(None)
    }

    /// A collector whose receivers speak TLS with this certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<Collector> {
        Collector::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Option<Collector> {
        let binary = peer("OTEL_RUN_TEST_OTELCOL", "an OpenTelemetry Collector")?;
        // A free port may be taken by a parallel test before the collector binds
        // it: then the collector exits, and it is tried again on other ports.
        let mut last_log = String::new();
        for _ in 0..5 {
            match Collector::try_start(&binary, tls) {
                Ok(collector) => return Some(collector),
                Err(log) => last_log = log,
            }
        }
        panic!("the collector did not start listening: {last_log}");
    }

    /// A collector whose gRPC receiver is on `grpc` (a documented default such
    /// as 4317), or a skip when that port is taken or there is no collector (a
    /// failure under OTEL_RUN_TEST_REQUIRE_ALL).
    pub fn start_on(grpc: u16) -> Option<Collector> {
        let binary = peer("OTEL_RUN_TEST_OTELCOL", "an OpenTelemetry Collector")?;
        // Another test may hold it for a moment (a default is everyone's).
        let free = wait_for(Duration::from_secs(60), || {
            std::net::TcpListener::bind(("127.0.0.1", grpc)).ok()
        })
        .is_some();
        if !free {
            let holder = Command::new("ss")
                .args(["-ltnp", &format!("sport = :{grpc}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let message = format!(
                "skipped: port {grpc} is taken, and the flow needs its collector there:\n{holder}"
            );
            if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{message}");
            }
            eprintln!("{message}");
            return None;
        }
        Some(
            Collector::try_start_on(&binary, grpc, None)
                .unwrap_or_else(|log| panic!("the collector did not start listening: {log}")),
        )
    }

    fn try_start(binary: &Path, tls: Option<(&Path, &Path)>) -> Result<Collector, String> {
        Collector::try_start_on(binary, free_port(), tls)
    }

    fn try_start_on(
        binary: &Path,
        grpc: u16,
        tls: Option<(&Path, &Path)>,
    ) -> Result<Collector, String> {
        let dir = tempfile::tempdir().unwrap();
        let http = free_port();
        let output = dir.path().join("received.jsonl");
        let mut config = std::fs::read_to_string(fixture("otelcol.yaml")).unwrap();
        if let Some((cert, key)) = tls {
            for port in ["GRPC_PORT", "HTTP_PORT"] {
                config = config.replace(
                    &format!("127.0.0.1:{port}\n"),
                    &format!(
                        "127.0.0.1:{port}\n        tls:\n          cert_file: {}\n          key_file: {}\n",
                        cert.display(),
                        key.display()
                    ),
                );
            }
        }
        let config = config
            .replace("GRPC_PORT", &grpc.to_string())
            .replace("HTTP_PORT", &http.to_string())
            .replace("OUTPUT_PATH", output.to_str().unwrap());
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("collector.log")).unwrap())
            .spawn()
            .unwrap();
        let mut collector = Collector {
            child,
            grpc,
            http,
            output,
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(20), || {
            if collector.child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            let ok = [grpc, http]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            ok.then_some(true)
        });
        match up {
            Some(true) => Ok(collector),
            _ => Err(collector.log()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("collector.log")).unwrap_or_default()
    }

    /// Stops the collector (SIGSTOP): connections to it are still accepted by
    /// the kernel, and wait for an answer until [`Self::resume`].
    pub fn pause(&self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
    }

    /// Every span received so far, each with its resource's attributes under
    /// `resource` (OTLP/JSON as the file exporter writes it).
    pub fn raw_output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    pub fn spans(&self) -> Vec<Value> {
        let text = self.raw_output();
        let mut spans = Vec::new();
        // A line without its newline is still being written: read it next time.
        let complete = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        for line in complete.filter(|l| !l.trim().is_empty()) {
            let data: Value = serde_json::from_str(line).expect("collector output is JSON lines");
            for rs in data["resourceSpans"].as_array().into_iter().flatten() {
                let resource = flatten_attributes(&rs["resource"]["attributes"]);
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        let mut span = span.clone();
                        span["attributes"] = flatten_attributes(&span["attributes"]);
                        span["resource"] = resource.clone();
                        span["scope"] = ss["scope"]["name"].clone();
                        spans.push(span);
                    }
                }
            }
        }
        spans
    }

    /// Waits until at least `n` spans arrived.
    pub fn wait_spans(&self, n: usize) -> Vec<Value> {
        wait_for(Duration::from_secs(15), || {
            let spans = self.spans();
            (spans.len() >= n).then_some(spans)
        })
        .unwrap_or_else(|| {
            panic!(
                "expected {n} spans, got {:#?}\ncollector log:\n{}",
                self.spans(),
                self.log()
            )
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OTLP/JSON attributes (`[{key, value: {stringValue}}]`) as a plain object.
pub fn flatten_attributes(attributes: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for kv in attributes.as_array().into_iter().flatten() {
        let value = &kv["value"];
        let plain = if let Some(s) = value.get("stringValue") {
            s.clone()
        } else if let Some(i) = value.get("intValue") {
            // int64 is a string in OTLP/JSON.
            i.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(i.clone(), Value::from)
        } else if let Some(b) = value.get("boolValue") {
            b.clone()
        } else if let Some(d) = value.get("doubleValue") {
            d.clone()
        } else if let Some(a) = value.get("arrayValue") {
            Value::Array(
                a["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.get("stringValue").cloned().unwrap_or(Value::Null))
                    .collect(),
            )
        } else {
            value.clone()
        };
        out.insert(kv["key"].as_str().unwrap().to_string(), plain);
    }
    Value::Object(out)
}

/// A Python with web frameworks, their instrumentations and opentelemetry-distro
/// (`.ci/python/venv.sh apps`).
pub fn apps_python() -> Option<PathBuf> {
    peer(
        "OTEL_RUN_TEST_PYTHON_APPS",
        "a Python with web frameworks and instrumentations",
    )
}

/// Spans printed by Python's ConsoleSpanExporter (or otel-run's console exporter)
/// among other output: each is a `{` line to a `}` line at column 0.
pub fn console_spans_in(text: &str) -> Vec<Value> {
    let mut spans = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line) {
            (None, "{") => current = Some("{\n".into()),
            (Some(buf), "}") => {
                buf.push('}');
                spans.push(serde_json::from_str(buf).expect("a console span is JSON"));
                current = None;
            }
            (Some(buf), _) => {
                buf.push_str(line);
                buf.push('\n');
            }
            (None, _) => {}
        }
    }
    spans
}

/// A minimal HTTP/1.0 GET on loopback: the status code.
pub fn http_get(port: u16, path: &str) -> u16 {
    http_get_response(port, path)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A minimal HTTP/1.0 GET on loopback: the body.
pub fn http_get_body(port: u16, path: &str) -> String {
    http_get_response(port, path)
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The whole response (the server closes the connection after it).
fn http_get_response(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: otel-run-tests\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// A server process, stopped (SIGINT, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    /// Starts `command` (stdout and stderr to files in `dir`) in a process group
    /// of its own, and waits for `port`.
    pub fn start(mut command: Command, port: u16, dir: &Path) -> Server {
        use std::os::unix::process::CommandExt;
        let (stdout, stderr) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            port,
            stdout,
            stderr,
        };
        // A bound, not a timing: a JVM loading the Java agent on two busy
        // cores has taken more than 30 s to listen.
        let up = wait_for(Duration::from_secs(120), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "the server did not listen on {port}: {}",
            server.stderr_text()
        );
        server
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Sends one SIGTERM to the server, or to its whole process group (as
    /// `timeout` and IDE stop buttons do), and waits for it to exit; `None` if it
    /// still runs after 20 s.
    pub fn terminate(&mut self, group: bool) -> Option<std::process::ExitStatus> {
        let pid = self.child.id() as libc::pid_t;
        let target = if group { -pid } else { pid };
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(target, libc::SIGTERM) }, 0);
        wait_for(Duration::from_secs(20), || self.child.try_wait().unwrap())
    }

    /// Stops the server as Ctrl-C would, so it exits cleanly and flushes.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        if wait_for(Duration::from_secs(20), || self.child.try_wait().unwrap()).is_none() {
            self.kill();
        }
    }

    /// SIGKILL to the server's whole process group, not only the process the
    /// test started (a `sh -c` or otel-run): nothing it started outlives the test.
    fn kill(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// Whether a run ended with its command killed by SIGTERM, as otel-run reports
/// it: exit code 128 + 15, or otel-run raising the same signal.
pub fn died_of_sigterm(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.code() == Some(128 + libc::SIGTERM) || status.signal() == Some(libc::SIGTERM)
}

/// A venv with the Python runners uv and poetry (`.ci/python/venv.sh tools`).
pub fn python_tools() -> Option<PathBuf> {
    peer("OTEL_RUN_TEST_PYTHON_TOOLS", "a Python with uv and poetry")
}

/// A throwaway PostgreSQL server on loopback (Debian's postgresql package), run as
/// the `postgres` user with trust authentication.
pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok())
                    .map(|v| v.path().join("bin"))
                    .find(|b| b.join("postgres").is_file())
            });
        let Some(bin) = bin else {
            let message = "skipped: missing a PostgreSQL server (Debian's postgresql package; `.ci/run` installs it)";
            if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{message}");
            }
            eprintln!("{message}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let data = dir.path().join("data");
        let as_postgres = |program: &Path| {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid",
                    "postgres",
                    "--regid",
                    "postgres",
                    "--init-groups",
                ])
                .arg(program);
            command
        };
        let init = as_postgres(&bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-k",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).unwrap())
            .spawn()
            .unwrap();
        let postgres = Postgres {
            child,
            port,
            _dir: dir,
        };
        // A bound, not a timing: a JVM loading the Java agent on two busy
        // cores has taken more than 30 s to listen.
        let up = wait_for(Duration::from_secs(120), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "PostgreSQL did not start");
        Some(postgres)
    }

    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        if wait_for(Duration::from_secs(10), || self.child.try_wait().unwrap()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The console exporter writing to a file of its own: the flags that set it up,
/// and the spans written so far.
pub struct ConsoleFile {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConsoleFile {
    pub fn new() -> ConsoleFile {
        let dir = tempfile::tempdir().unwrap();
        ConsoleFile {
            path: dir.path().join("spans.json"),
            _dir: dir,
        }
    }

    pub fn flags(&self) -> [&str; 4] {
        [
            "--traces-exporter",
            "console",
            "--console-output",
            self.path.to_str().unwrap(),
        ]
    }

    pub fn spans(&self) -> Vec<Value> {
        console_spans(&self.path)
    }
}

/// The span called `name`, or a failure that lists the spans there are.
pub fn span_named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
}

/// Running as root, for tests that load eBPF probes (a skip otherwise, a failure
/// under OTEL_RUN_TEST_REQUIRE_ALL).
pub fn root() -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Some(());
    }
    let message = "skipped: missing root (eBPF probes need it)";
    if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{message}");
    }
    eprintln!("{message}");
    None
}
