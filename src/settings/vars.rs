//! The one list of every setting otel-run reads.
//!
//! Each entry is named by its environment variable; the command-line flag, the
//! `opentelemetry-instrument` alias and the `otel-run.toml` key are derived from
//! that name (see [`Var::flag`], [`Var::alias`], [`Var::key`]), so the four
//! spellings never drift apart. The reference documentation in
//! `docs/reference/configuration.md` is generated from this list.

use std::sync::LazyLock;

/// What values a setting takes, and so how it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// `true` or `false`, case-insensitive.
    Bool,
    /// A non-negative integer.
    Count,
    /// A TCP port, 1 to 65535.
    Port,
    /// A non-negative integer of milliseconds, at most [`super::parse::MAX_DURATION`].
    Millis,
    /// One of a closed set of names, case-insensitive.
    Choice(&'static [&'static str]),
    /// A comma-separated list of names from a closed set.
    ChoiceList(&'static [&'static str]),
    /// A comma-separated list of names; unknown names are passed on to the child.
    OpenList(&'static [&'static str]),
    /// `key=value,key2=value2`, values percent-decoded.
    KeyValues,
    /// Key-values whose keys are HTTP header names and whose values are visible ASCII.
    Headers,
    /// An absolute `http://` or `https://` URL (`host:port` alone is accepted too).
    Url,
    /// A file path.
    Path,
}

/// Where a setting belongs in help output and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    General,
    Exporters,
    Otlp,
    Sampling,
    Batching,
    Limits,
    Runtimes,
    Launcher,
    Proxy,
}

impl Group {
    pub fn heading(self) -> &'static str {
        match self {
            Group::General => "Service and resource",
            Group::Exporters => "Exporters",
            Group::Otlp => "OTLP exporter",
            Group::Sampling => "Sampling and propagation",
            Group::Batching => "Batching",
            Group::Limits => "Limits",
            Group::Runtimes => "Runtimes",
            Group::Launcher => "otel-run",
            Group::Proxy => "HTTP proxy",
        }
    }
}

/// One setting.
#[derive(Debug)]
pub struct Var {
    /// The environment variable, e.g. `OTEL_SERVICE_NAME`.
    pub name: &'static str,
    pub kind: Kind,
    /// The built-in default, as its text form; `None` when unset by default.
    pub default: Option<&'static str>,
    pub group: Group,
    /// One sentence for `--help` and the docs.
    pub doc: &'static str,
    /// Shown redacted in otel-run's own output.
    pub secret: bool,
}

impl Var {
    /// The name without its prefix, lower-case: `service_name`. The config-file key
    /// and, for OTEL_* variables, the `opentelemetry-instrument` flag spelling.
    pub fn key(&self) -> String {
        self.name
            .strip_prefix("OTEL_RUN_")
            .or_else(|| self.name.strip_prefix("OTEL_"))
            .unwrap_or(self.name)
            .to_ascii_lowercase()
    }

    /// The long flag without dashes: `service-name`.
    pub fn flag(&self) -> String {
        self.key().replace('_', "-")
    }

    /// The `opentelemetry-instrument` spelling of the flag (`service_name`), for
    /// the specification's variables only.
    pub fn alias(&self) -> Option<String> {
        let key = self.key();
        (self.is_otel_standard() && key.contains('_')).then_some(key)
    }

    /// True for the OpenTelemetry specification's variables, false for otel-run's own.
    pub fn is_otel_standard(&self) -> bool {
        !self.name.starts_with("OTEL_RUN_")
    }

    /// The valid names of a choice, for error messages.
    pub fn choices(&self) -> Option<&'static [&'static str]> {
        match self.kind {
            Kind::Choice(c) | Kind::ChoiceList(c) | Kind::OpenList(c) => Some(c),
            _ => None,
        }
    }
}

pub const PROTOCOLS: &[&str] = &["grpc", "http/protobuf", "http/json"];
const COMPRESSIONS: &[&str] = &["gzip", "none"];
pub const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "parentbased_jaeger_remote",
    "jaeger_remote",
    "xray",
];
/// Propagators otel-run itself understands; others are the child's business.
pub const KNOWN_PROPAGATORS: &[&str] = &[
    "tracecontext",
    "baggage",
    "b3",
    "b3multi",
    "jaeger",
    "xray",
    "ottrace",
    "none",
];
const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warn", "warning", "error", "off", "none",
];
const EXEMPLAR_FILTERS: &[&str] = &["trace_based", "always_on", "always_off"];
const TEMPORALITIES: &[&str] = &["cumulative", "delta", "lowmemory"];
const HISTOGRAM_AGGREGATIONS: &[&str] = &[
    "explicit_bucket_histogram",
    "base2_exponential_bucket_histogram",
];

macro_rules! var {
    ($ident:ident, $name:expr, $kind:expr, $default:expr, $group:ident, $doc:expr) => {
        var!($ident, $name, $kind, $default, $group, $doc, false);
    };
    ($ident:ident, $name:expr, $kind:expr, $default:expr, $group:ident, $doc:expr, $secret:expr) => {
        pub static $ident: Var = Var {
            name: $name,
            kind: $kind,
            default: $default,
            group: Group::$group,
            doc: $doc,
            secret: $secret,
        };
    };
}

// Service and resource.
var!(
    SDK_DISABLED,
    "OTEL_SDK_DISABLED",
    Kind::Bool,
    Some("false"),
    General,
    "Disable OpenTelemetry: the command runs untouched and nothing is exported."
);
var!(
    SERVICE_NAME,
    "OTEL_SERVICE_NAME",
    Kind::Text,
    None,
    General,
    "The `service.name` resource attribute; wins over one in OTEL_RESOURCE_ATTRIBUTES."
);
var!(
    RESOURCE_ATTRIBUTES,
    "OTEL_RESOURCE_ATTRIBUTES",
    Kind::KeyValues,
    None,
    General,
    "Resource attributes as `key=value,...`, values percent-decoded."
);
var!(
    LOG_LEVEL,
    "OTEL_LOG_LEVEL",
    Kind::Choice(LOG_LEVELS),
    Some("warn"),
    General,
    "Log level of otel-run's own diagnostics (and of the child's SDK)."
);

// Exporters.
var!(
    TRACES_EXPORTER,
    "OTEL_TRACES_EXPORTER",
    Kind::ChoiceList(super::otlp::ExporterKind::TRACES),
    Some("otlp"),
    Exporters,
    "Where spans go: `otlp`, `zipkin` (see `--exporter-zipkin-endpoint`), `jaeger` (OTLP to Jaeger, which takes it natively), `console` (JSON on stdout, see `--console-output`), `none`; a comma-separated list for several."
);
var!(
    METRICS_EXPORTER,
    "OTEL_METRICS_EXPORTER",
    Kind::ChoiceList(super::otlp::ExporterKind::METRICS),
    Some("otlp"),
    Exporters,
    "Where the child's metrics go: `otlp`, `prometheus` (a scrape endpoint while the command runs, see `--exporter-prometheus-port`), `console`, `none`."
);
var!(
    LOGS_EXPORTER,
    "OTEL_LOGS_EXPORTER",
    Kind::ChoiceList(super::otlp::ExporterKind::LOGS),
    Some("otlp"),
    Exporters,
    "Where the child's logs go: `otlp`, `console`, `none`."
);
var!(
    METRIC_EXPORT_INTERVAL,
    "OTEL_METRIC_EXPORT_INTERVAL",
    Kind::Millis,
    Some("60000"),
    Exporters,
    "Milliseconds between two metric exports of the child's SDK."
);
var!(
    METRIC_EXPORT_TIMEOUT,
    "OTEL_METRIC_EXPORT_TIMEOUT",
    Kind::Millis,
    Some("30000"),
    Exporters,
    "Milliseconds the child's SDK may spend on one metric export."
);
var!(
    METRICS_EXEMPLAR_FILTER,
    "OTEL_METRICS_EXEMPLAR_FILTER",
    Kind::Choice(EXEMPLAR_FILTERS),
    Some("trace_based"),
    Exporters,
    "Which measurements the child's SDK keeps as exemplars."
);

// Zipkin and Prometheus exporters.
var!(
    ZIPKIN_ENDPOINT,
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
    Kind::Url,
    Some("http://localhost:9411/api/v2/spans"),
    Exporters,
    "Where the `zipkin` exporter posts spans (Zipkin's v2 JSON API)."
);
var!(
    ZIPKIN_TIMEOUT,
    "OTEL_EXPORTER_ZIPKIN_TIMEOUT",
    Kind::Millis,
    Some("10000"),
    Exporters,
    "Milliseconds the `zipkin` exporter waits for one export."
);
var!(
    PROMETHEUS_HOST,
    "OTEL_EXPORTER_PROMETHEUS_HOST",
    Kind::Text,
    Some("localhost"),
    Exporters,
    "Address the `prometheus` exporter's scrape endpoint listens on while the command runs."
);
var!(
    PROMETHEUS_PORT,
    "OTEL_EXPORTER_PROMETHEUS_PORT",
    Kind::Port,
    Some("9464"),
    Exporters,
    "Port of the `prometheus` exporter's scrape endpoint (`/metrics`)."
);

// OTLP exporter: the general settings, then one set per signal. `$what` names the
// signals a set is for and goes into every description; `$endpoint_note` says how
// the endpoint's URL is used, and belongs to the endpoint's description only.
macro_rules! otlp_vars {
    ($ident:ident, $prefix:literal, $what:literal, $endpoint_note:literal) => {
        pub static $ident: Otlp = Otlp {
            endpoint: Var {
                name: concat!($prefix, "ENDPOINT"),
                kind: Kind::Url,
                default: None,
                group: Group::Otlp,
                doc: concat!("OTLP endpoint for ", $what, " (", $endpoint_note, ")."),
                secret: false,
            },
            headers: Var {
                name: concat!($prefix, "HEADERS"),
                kind: Kind::Headers,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "Headers sent with every OTLP export of ",
                    $what,
                    ", `key=value,...` (shown redacted)."
                ),
                secret: true,
            },
            protocol: Var {
                name: concat!($prefix, "PROTOCOL"),
                kind: Kind::Choice(PROTOCOLS),
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "OTLP transport for ",
                    $what,
                    ": `grpc`, `http/protobuf` or `http/json`."
                ),
                secret: false,
            },
            compression: Var {
                name: concat!($prefix, "COMPRESSION"),
                kind: Kind::Choice(COMPRESSIONS),
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "Compression of OTLP exports of ",
                    $what,
                    ": `gzip` or `none`."
                ),
                secret: false,
            },
            timeout: Var {
                name: concat!($prefix, "TIMEOUT"),
                kind: Kind::Millis,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "Milliseconds one OTLP export attempt of ",
                    $what,
                    " may take."
                ),
                secret: false,
            },
            insecure: Var {
                name: concat!($prefix, "INSECURE"),
                kind: Kind::Bool,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "Use plain text for a gRPC endpoint of ",
                    $what,
                    " given without a scheme."
                ),
                secret: false,
            },
            certificate: Var {
                name: concat!($prefix, "CERTIFICATE"),
                kind: Kind::Path,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "PEM file of the CA that signed the server certificate, for ",
                    $what,
                    "."
                ),
                secret: false,
            },
            client_key: Var {
                name: concat!($prefix, "CLIENT_KEY"),
                kind: Kind::Path,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "PEM file of the client's private key (mTLS), for ",
                    $what,
                    "."
                ),
                secret: false,
            },
            client_certificate: Var {
                name: concat!($prefix, "CLIENT_CERTIFICATE"),
                kind: Kind::Path,
                default: None,
                group: Group::Otlp,
                doc: concat!(
                    "PEM file of the client's certificate chain (mTLS), for ",
                    $what,
                    "."
                ),
                secret: false,
            },
        };
    };
}

/// The nine OTLP exporter settings of one scope: every signal ([`OTLP`]) or one
/// signal ([`OTLP_TRACES`], …). A signal's setting wins over the general one.
#[derive(Debug)]
pub struct Otlp {
    pub endpoint: Var,
    pub headers: Var,
    pub protocol: Var,
    pub compression: Var,
    pub timeout: Var,
    pub insecure: Var,
    pub certificate: Var,
    pub client_key: Var,
    pub client_certificate: Var,
}

impl Otlp {
    /// The nine settings, in documentation order.
    pub fn all(&'static self) -> [&'static Var; 9] {
        [
            &self.endpoint,
            &self.headers,
            &self.protocol,
            &self.compression,
            &self.timeout,
            &self.insecure,
            &self.certificate,
            &self.client_key,
            &self.client_certificate,
        ]
    }
}

otlp_vars!(
    OTLP,
    "OTEL_EXPORTER_OTLP_",
    "all signals",
    "`/v1/traces` etc. are appended for HTTP"
);
otlp_vars!(
    OTLP_TRACES,
    "OTEL_EXPORTER_OTLP_TRACES_",
    "traces",
    "used as given"
);
otlp_vars!(
    OTLP_METRICS,
    "OTEL_EXPORTER_OTLP_METRICS_",
    "metrics",
    "used as given"
);
otlp_vars!(
    OTLP_LOGS,
    "OTEL_EXPORTER_OTLP_LOGS_",
    "logs",
    "used as given"
);
var!(
    OTLP_METRICS_TEMPORALITY,
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    Kind::Choice(TEMPORALITIES),
    None,
    Otlp,
    "Aggregation temporality of OTLP metrics: the child's SDK's, and the proxy's duration histograms (delta under `delta` and `lowmemory`)."
);
var!(
    OTLP_METRICS_HISTOGRAM,
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    Kind::Choice(HISTOGRAM_AGGREGATIONS),
    None,
    Otlp,
    "Default histogram aggregation the child's SDK uses for OTLP metrics."
);

// Sampling and propagation.
var!(
    TRACES_SAMPLER,
    "OTEL_TRACES_SAMPLER",
    Kind::Choice(SAMPLERS),
    Some("parentbased_always_on"),
    Sampling,
    "Sampler for new spans."
);
var!(
    TRACES_SAMPLER_ARG,
    "OTEL_TRACES_SAMPLER_ARG",
    Kind::Text,
    None,
    Sampling,
    "Sampler argument; for the `traceidratio` samplers a ratio between 0 and 1."
);
var!(
    PROPAGATORS,
    "OTEL_PROPAGATORS",
    Kind::OpenList(KNOWN_PROPAGATORS),
    Some("tracecontext,baggage"),
    Sampling,
    "Context propagators, comma-separated; names otel-run does not know are passed to the child."
);

// Batching.
var!(
    BSP_SCHEDULE_DELAY,
    "OTEL_BSP_SCHEDULE_DELAY",
    Kind::Millis,
    Some("5000"),
    Batching,
    "Milliseconds between two span exports."
);
var!(
    BSP_EXPORT_TIMEOUT,
    "OTEL_BSP_EXPORT_TIMEOUT",
    Kind::Millis,
    Some("30000"),
    Batching,
    "Milliseconds a span export may take with its retries; also bounds the flush at exit."
);
var!(
    BSP_MAX_QUEUE_SIZE,
    "OTEL_BSP_MAX_QUEUE_SIZE",
    Kind::Count,
    Some("2048"),
    Batching,
    "Spans held waiting for export. When full, a program exporting to otel-run is told to retry later; otel-run's own spans are dropped and counted."
);
var!(
    BSP_MAX_EXPORT_BATCH_SIZE,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    Kind::Count,
    Some("512"),
    Batching,
    "Spans in one export."
);
var!(
    BLRP_SCHEDULE_DELAY,
    "OTEL_BLRP_SCHEDULE_DELAY",
    Kind::Millis,
    Some("1000"),
    Batching,
    "Milliseconds between two log record exports."
);
var!(
    BLRP_EXPORT_TIMEOUT,
    "OTEL_BLRP_EXPORT_TIMEOUT",
    Kind::Millis,
    Some("30000"),
    Batching,
    "Milliseconds a log export may take with its retries."
);
var!(
    BLRP_MAX_QUEUE_SIZE,
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    Kind::Count,
    Some("2048"),
    Batching,
    "Log records held waiting for export. When full, a program exporting to otel-run is told to retry later."
);
var!(
    BLRP_MAX_EXPORT_BATCH_SIZE,
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    Kind::Count,
    Some("512"),
    Batching,
    "Log records in one export."
);

// Limits.
var!(
    ATTRIBUTE_VALUE_LENGTH_LIMIT,
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    Kind::Count,
    None,
    Limits,
    "Longest attribute value kept (characters); unset means no limit."
);
var!(
    ATTRIBUTE_COUNT_LIMIT,
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    Kind::Count,
    Some("128"),
    Limits,
    "Most attributes kept per span, event, link or log record."
);
var!(
    SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    Kind::Count,
    None,
    Limits,
    "Longest span attribute value kept; falls back to OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT."
);
var!(
    SPAN_ATTRIBUTE_COUNT_LIMIT,
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    Kind::Count,
    None,
    Limits,
    "Most attributes per span; falls back to OTEL_ATTRIBUTE_COUNT_LIMIT."
);
var!(
    SPAN_EVENT_COUNT_LIMIT,
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    Kind::Count,
    Some("128"),
    Limits,
    "Most events per span."
);
var!(
    SPAN_LINK_COUNT_LIMIT,
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    Kind::Count,
    Some("128"),
    Limits,
    "Most links per span."
);
var!(
    EVENT_ATTRIBUTE_COUNT_LIMIT,
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    Kind::Count,
    Some("128"),
    Limits,
    "Most attributes per span event."
);
var!(
    LINK_ATTRIBUTE_COUNT_LIMIT,
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    Kind::Count,
    Some("128"),
    Limits,
    "Most attributes per span link."
);
var!(
    LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    Kind::Count,
    None,
    Limits,
    "Longest log record attribute value kept."
);
var!(
    LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    Kind::Count,
    None,
    Limits,
    "Most attributes per log record."
);

// Runtimes.
var!(
    RUNTIME,
    "OTEL_RUN_RUNTIME",
    Kind::Choice(&crate::runtime::Runtime::CHOICES),
    Some("auto"),
    Runtimes,
    "The command's runtime, which decides the agent injected; `auto` detects it, `none` injects only the standard variables."
);
var!(
    INJECT,
    "OTEL_RUN_INJECT",
    Kind::Bool,
    Some("true"),
    Runtimes,
    "Inject the runtime's zero-code agent; `--no-inject` keeps only the standard variables."
);
var!(
    DOTNET_AUTO_HOME,
    "OTEL_DOTNET_AUTO_HOME",
    Kind::Path,
    None,
    Runtimes,
    "Directory of the OpenTelemetry .NET automatic instrumentation; by default `dotnet/` in otel-run's data directory, else `~/.otel-dotnet-auto` (the upstream installer's), when it exists."
);
var!(
    JAVA_AGENT,
    "OTEL_RUN_JAVA_AGENT",
    Kind::Path,
    None,
    Runtimes,
    "The OpenTelemetry Java agent jar; the one `otel-run bootstrap` downloaded by default."
);

// otel-run's own settings.
var!(
    SPAN_NAME,
    "OTEL_RUN_SPAN_NAME",
    Kind::Text,
    None,
    Launcher,
    "Name of the process span; the command's base name by default."
);
var!(
    SPAN_ATTRIBUTES,
    "OTEL_RUN_SPAN_ATTRIBUTES",
    Kind::KeyValues,
    None,
    Launcher,
    "Attributes added to the process span, `key=value,...` (`--attr key=value` adds one)."
);
var!(
    FAIL_ON_EXPORT_ERROR,
    "OTEL_RUN_FAIL_ON_EXPORT_ERROR",
    Kind::Bool,
    Some("false"),
    Launcher,
    "Exit with an error (1, or the command's own non-zero code) when telemetry could not be exported."
);
var!(
    REDACT_COMMAND_ARGS,
    "OTEL_RUN_REDACT_COMMAND_ARGS",
    Kind::Bool,
    Some("true"),
    Launcher,
    "Record the values of options whose names look like secrets (`--token X`, `--db-password=X`, `--header X`; the rule is in the guide) and the passwords of URLs as `REDACTED` in `process.command_args`; `false` records the command line as given."
);
var!(
    AGENT,
    "OTEL_RUN_AGENT",
    Kind::Bool,
    Some("true"),
    Launcher,
    "Run the local agent the child exports to; `--agent=false` (or `--no-agent`) points the child at the real endpoint."
);
var!(
    CACHE_DIR,
    "OTEL_RUN_CACHE_DIR",
    Kind::Path,
    None,
    Launcher,
    "Directory the Python and Node.js shims are written to (under `shims/`); by default `$XDG_CACHE_HOME/otel-run` or `~/.cache/otel-run`, and when that cannot be written (a read-only root filesystem) `$XDG_RUNTIME_DIR/otel-run`, then `otel-run-UID` in the temp dir or `/dev/shm`, said when first written there."
);
var!(
    CONSOLE_OUTPUT,
    "OTEL_RUN_CONSOLE_OUTPUT",
    Kind::Text,
    Some("stdout"),
    Launcher,
    "Where the `console` exporter writes: `stdout` (as Python's console exporters do), `stderr`, or a file path (appended to)."
);

var!(
    CONSOLE_FORMAT,
    "OTEL_RUN_CONSOLE_FORMAT",
    Kind::Choice(CONSOLE_FORMATS),
    Some("json"),
    Launcher,
    "How the `console` exporter prints spans: `json`, one object per span as Python's console exporter does, or `tree`, each finished trace as an indented tree with durations."
);
const CONSOLE_FORMATS: &[&str] = &["json", "tree"];

// The built-in viewer.
var!(
    UI,
    "OTEL_RUN_UI",
    Kind::Bool,
    Some("false"),
    Launcher,
    "Keep the telemetry received in a bounded store and serve a trace viewer (and Jaeger's query API) on `--ui-listen`; telemetry is then forwarded only to exporters set explicitly."
);
var!(
    UI_LISTEN,
    "OTEL_RUN_UI_LISTEN",
    Kind::Text,
    Some("127.0.0.1:16686"),
    Launcher,
    "Address the viewer (`--ui`) serves on, `IP:PORT` or `localhost:PORT`; Jaeger's UI port by default."
);
// An HTTP server span (8 attributes) takes about 550 bytes in the store
// (`bench/viewer`): 200 000 are about 110 MiB, room on a laptop for hours of a
// development server's requests; the 512 MiB bound holds for far larger spans.
var!(
    MAX_SPANS,
    "OTEL_RUN_MAX_SPANS",
    Kind::Count,
    Some("200000"),
    Launcher,
    "Spans the viewer's store keeps (`--ui`); the oldest whole traces are evicted beyond it, or beyond 512 MiB, and counted."
);
var!(
    STORE,
    "OTEL_RUN_STORE",
    Kind::Path,
    None,
    Launcher,
    "A file the viewer's store (`--ui`) is kept in, so a restart keeps the traces; in memory only when unset."
);

// eBPF uprobes.
const UPROBE_PARENTS: &[&str] = &["root", "process"];
var!(
    UPROBE,
    "OTEL_RUN_UPROBE",
    Kind::Text,
    None,
    Launcher,
    "Functions whose calls become spans: `TARGET:PATTERN` (a binary or library, empty for the command; a glob over demangled names), comma-separated; `--uprobe` is repeatable. Needs root or CAP_BPF+CAP_PERFMON."
);
var!(
    UPROBE_PARENT,
    "OTEL_RUN_UPROBE_PARENT",
    Kind::Choice(UPROBE_PARENTS),
    Some("root"),
    Launcher,
    "Where a top-level probed call hangs: `root` starts a trace per call, `process` puts it under the process span."
);
var!(
    UPROBE_BUFFER_SIZE,
    "OTEL_RUN_UPROBE_BUFFER_SIZE",
    Kind::Count,
    Some("4194304"),
    Launcher,
    "Bytes of the ring buffer probed calls reach otel-run through (a power of two, at least 4096; 64 bytes a call). Calls that find it full are counted and reported."
);

var!(
    TRACE_PROCESSES,
    "OTEL_RUN_TRACE_PROCESSES",
    Kind::Bool,
    Some("false"),
    Launcher,
    "Record every process the command starts, at any depth, as a span under the process span (from its exec to its exit, with its arguments and exit code), through eBPF tracepoints. Needs root or CAP_BPF+CAP_PERFMON; without, one warning and the command runs unchanged."
);

// The HTTP sidecar proxy.
var!(
    PROXY,
    "OTEL_RUN_PROXY",
    Kind::Text,
    None,
    Proxy,
    "Reverse proxies in front of the command, `LISTEN=UPSTREAM,...` (`--proxy 8080=127.0.0.1:5000`, repeatable): one SERVER span per request. LISTEN is a port on loopback or `ADDRESS:PORT`."
);
var!(
    PROXY_ROUTES,
    "OTEL_RUN_PROXY_ROUTES",
    Kind::Text,
    None,
    Proxy,
    "Route templates for `http.route` and span names, `/users/{id},...` (`--route`, repeatable); `{name}` matches one path segment, a final `{name*}` the rest."
);
var!(
    EGRESS_PROXY,
    "OTEL_RUN_EGRESS_PROXY",
    Kind::Bool,
    Some("false"),
    Proxy,
    "Start a forward proxy on loopback and point the child's HTTP_PROXY/HTTPS_PROXY at it: one CLIENT span per outgoing request or CONNECT tunnel."
);
var!(
    PROXY_TIMEOUT,
    "OTEL_RUN_PROXY_TIMEOUT",
    Kind::Millis,
    Some("30000"),
    Proxy,
    "How long the proxies wait for an upstream's response headers before answering 504 (and, for the reverse proxy, to connect to it before answering 502)."
);
var!(
    PROXY_HEADER_TIMEOUT,
    "OTEL_RUN_PROXY_HEADER_TIMEOUT",
    Kind::Millis,
    Some("10000"),
    Proxy,
    "How long a client may take to send a request's headers (the first request's from connecting, later ones' from their first byte) before it is answered 408 and the connection is closed."
);
var!(
    PROXY_MAX_HEADER_BYTES,
    "OTEL_RUN_PROXY_MAX_HEADER_BYTES",
    Kind::Count,
    Some("65536"),
    Proxy,
    "Largest request head (request line and headers) the proxies accept; larger ones get 431."
);
var!(
    PROXY_REDACT_QUERY,
    "OTEL_RUN_PROXY_REDACT_QUERY",
    Kind::Bool,
    Some("false"),
    Proxy,
    "Record every query value as `REDACTED` in `url.query` and `url.full` (signatures, tokens, passwords and keys such as `sig`, `access_token`, `api_key` always are)."
);

/// Every setting, in documentation order.
pub static ALL: LazyLock<Vec<&'static Var>> = LazyLock::new(|| {
    let parts: &[&[&'static Var]] = &[
        &[
            &SDK_DISABLED,
            &SERVICE_NAME,
            &RESOURCE_ATTRIBUTES,
            &LOG_LEVEL,
            &TRACES_EXPORTER,
            &METRICS_EXPORTER,
            &LOGS_EXPORTER,
            &METRIC_EXPORT_INTERVAL,
            &METRIC_EXPORT_TIMEOUT,
            &METRICS_EXEMPLAR_FILTER,
            &ZIPKIN_ENDPOINT,
            &ZIPKIN_TIMEOUT,
            &PROMETHEUS_HOST,
            &PROMETHEUS_PORT,
        ],
        &OTLP.all(),
        &OTLP_TRACES.all(),
        &OTLP_METRICS.all(),
        &[&OTLP_METRICS_TEMPORALITY, &OTLP_METRICS_HISTOGRAM],
        &OTLP_LOGS.all(),
        &[
            &TRACES_SAMPLER,
            &TRACES_SAMPLER_ARG,
            &PROPAGATORS,
            &BSP_SCHEDULE_DELAY,
            &BSP_EXPORT_TIMEOUT,
            &BSP_MAX_QUEUE_SIZE,
            &BSP_MAX_EXPORT_BATCH_SIZE,
            &BLRP_SCHEDULE_DELAY,
            &BLRP_EXPORT_TIMEOUT,
            &BLRP_MAX_QUEUE_SIZE,
            &BLRP_MAX_EXPORT_BATCH_SIZE,
            &ATTRIBUTE_VALUE_LENGTH_LIMIT,
            &ATTRIBUTE_COUNT_LIMIT,
            &SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
            &SPAN_ATTRIBUTE_COUNT_LIMIT,
            &SPAN_EVENT_COUNT_LIMIT,
            &SPAN_LINK_COUNT_LIMIT,
            &EVENT_ATTRIBUTE_COUNT_LIMIT,
            &LINK_ATTRIBUTE_COUNT_LIMIT,
            &LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT,
            &LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
            &RUNTIME,
            &INJECT,
            &DOTNET_AUTO_HOME,
            &JAVA_AGENT,
            &SPAN_NAME,
            &SPAN_ATTRIBUTES,
            &FAIL_ON_EXPORT_ERROR,
            &REDACT_COMMAND_ARGS,
            &AGENT,
            &CACHE_DIR,
            &CONSOLE_OUTPUT,
            &CONSOLE_FORMAT,
            &UI,
            &UI_LISTEN,
            &MAX_SPANS,
            &STORE,
            &UPROBE,
            &UPROBE_PARENT,
            &UPROBE_BUFFER_SIZE,
            &TRACE_PROCESSES,
            &PROXY,
            &PROXY_ROUTES,
            &EGRESS_PROXY,
            &PROXY_TIMEOUT,
            &PROXY_HEADER_TIMEOUT,
            &PROXY_MAX_HEADER_BYTES,
            &PROXY_REDACT_QUERY,
        ],
    ];
    parts.concat()
});

/// Variables otel-run reads but never sets through a flag: the specification's
/// environment carrier for context. They are passed on to the child (TRACEPARENT
/// rewritten to point at the process span).
pub static CONTEXT_CARRIER: &[(&str, &str)] = &[
    (
        "TRACEPARENT",
        "W3C trace context of the parent; the process span becomes its child, and the child gets a TRACEPARENT for the process span.",
    ),
    (
        "TRACESTATE",
        "W3C trace state, kept on the process span and passed on to the child.",
    ),
    ("BAGGAGE", "W3C baggage, passed on to the child unchanged."),
];

/// One `k8s.*` resource attribute and the variables it is read from, for a
/// container given them by the Kubernetes downward API.
#[derive(Debug)]
pub struct DownwardApi {
    pub attribute: &'static str,
    /// The pod field a `fieldRef` gives the variables, for the docs.
    pub field: &'static str,
    /// In order of preference: the OpenTelemetry Operator's name (or one of its
    /// pattern), the attribute's own name as a variable, the name common in charts.
    pub vars: &'static [&'static str],
}

/// Variables otel-run reads for the `k8s.*` resource attributes of its own spans
/// and of the child's SDK (through the OTEL_RESOURCE_ATTRIBUTES the child gets).
/// An attribute the user gives in OTEL_RESOURCE_ATTRIBUTES keeps the user's value.
/// `NODE_NAME` is not read: Jenkins names its agent with it.
pub static KUBERNETES: &[DownwardApi] = &[
    DownwardApi {
        attribute: "k8s.pod.name",
        field: "metadata.name",
        vars: &[
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "K8S_POD_NAME",
            "POD_NAME",
        ],
    },
    DownwardApi {
        attribute: "k8s.pod.uid",
        field: "metadata.uid",
        vars: &["OTEL_RESOURCE_ATTRIBUTES_POD_UID", "K8S_POD_UID", "POD_UID"],
    },
    DownwardApi {
        attribute: "k8s.namespace.name",
        field: "metadata.namespace",
        vars: &[
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAMESPACE",
            "K8S_NAMESPACE_NAME",
            "POD_NAMESPACE",
        ],
    },
    DownwardApi {
        attribute: "k8s.node.name",
        field: "spec.nodeName",
        vars: &["OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "K8S_NODE_NAME"],
    },
];

/// Tells shims where otel-run's agent listens.
pub const AGENT_ENDPOINT: &str = "OTEL_RUN_AGENT_ENDPOINT";
/// The instrumentors otel-run found for a Python command.
pub const PYTHON_INSTRUMENTORS: &str = "OTEL_RUN_PYTHON_INSTRUMENTORS";
/// Where the command's SDKs report what they dropped (see `agent::sdk_report`).
pub const SDK_REPORT: &str = "OTEL_RUN_SDK_REPORT";
/// otel-run's own log level, from `-v` or OTEL_LOG_LEVEL, for the shims' messages.
pub const SHIM_LOG_LEVEL: &str = "OTEL_RUN_LOG_LEVEL";
/// The app's `@opentelemetry/auto-instrumentations-node`, for the Node.js shim.
pub const NODE_PACKAGE: &str = "OTEL_RUN_NODE_PACKAGE";
/// The import-in-the-middle hook the Node.js shim registers for ES modules.
pub const NODE_HOOK: &str = "OTEL_RUN_NODE_HOOK";

/// Variables otel-run sets in the child's environment besides the settings.
pub static INJECTED: &[(&str, &str)] = &[
    (
        "TRACEPARENT",
        "otel-run's process span, so the child's own work joins its trace.",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "When a Kubernetes variable above gives a `k8s.*` attribute that OTEL_RESOURCE_ATTRIBUTES does not: the user's value with that attribute added.",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "With the agent: the local receiver, `http://127.0.0.1:PORT`.",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "With the agent: `http/protobuf`.",
    ),
    (
        "OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_LOGS_EXPORTER",
        "With the agent: `otlp` for the signals otel-run exports, `none` for the others.",
    ),
    (
        AGENT_ENDPOINT,
        "With the agent: the receiver's URL, for otel-run's shims.",
    ),
    (
        SHIM_LOG_LEVEL,
        "otel-run's own level (`off`, `error`, `warn`, `info`, `debug`, `trace`) from `-v` or `OTEL_LOG_LEVEL`: the Python shim's messages follow it.",
    ),
    (
        SDK_REPORT,
        "A file each Python process of the command appends one line to at exit, with the spans its SDK dropped (queue full, export failed, unsent), for otel-run's summary; removed afterwards.",
    ),
    (
        "PYTHONPATH",
        "Python: otel-run's shim directory first, then the existing value.",
    ),
    (
        PYTHON_INSTRUMENTORS,
        "Python: the instrumentors otel-run found in the interpreter's site-packages (`name=module:Class,...`), so the shim need not scan entry points.",
    ),
    (
        NODE_PACKAGE,
        "Node.js: the directory of the app's `@opentelemetry/auto-instrumentations-node`, from which otel-run's shim starts the SDK.",
    ),
    (
        NODE_HOOK,
        "Node.js, ES module apps: the import-in-the-middle hook otel-run's shim registers before anything is imported.",
    ),
    (
        "OTEL_RUN_PYTHON_SAID",
        "Python: the warnings already given, so subprocesses do not repeat them.",
    ),
];

/// Looks a setting up by variable name, flag, alias or config key.
pub fn find(name: &str) -> Option<&'static Var> {
    let normalized = name
        .trim_start_matches('-')
        .replace('-', "_")
        .to_ascii_lowercase();
    ALL.iter()
        .copied()
        .find(|v| v.key() == normalized || v.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spellings_derive_from_the_variable_name() {
        assert_eq!(SERVICE_NAME.flag(), "service-name");
        assert_eq!(SERVICE_NAME.alias().as_deref(), Some("service_name"));
        assert_eq!(SERVICE_NAME.key(), "service_name");
        assert_eq!(
            OTLP.endpoint.alias().as_deref(),
            Some("exporter_otlp_endpoint")
        );
        assert_eq!(SPAN_NAME.flag(), "span-name");
        assert_eq!(
            SPAN_NAME.alias(),
            None,
            "otel-run's own settings have no upstream alias"
        );
    }

    #[test]
    fn every_setting_is_listed_once_and_spellings_are_unique() {
        let names: HashSet<_> = ALL.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), ALL.len());
        let flags: HashSet<_> = ALL.iter().map(|v| v.flag()).collect();
        assert_eq!(flags.len(), ALL.len());
    }

    /// `--help` and the reference show these texts: each option says what it does,
    /// not what another one does.
    #[test]
    fn every_setting_has_its_own_description() {
        let docs: HashSet<_> = ALL.iter().map(|v| v.doc).collect();
        assert_eq!(docs.len(), ALL.len(), "two settings share a description");
        // A per-signal OTLP setting reads as its general form with the signal
        // named; only the endpoint differs, since its URL is used differently.
        for var in ALL.iter() {
            let Some((signal, general)) = ["TRACES", "METRICS", "LOGS"].iter().find_map(|s| {
                let general = var
                    .name
                    .replace(&format!("OTEL_EXPORTER_OTLP_{s}_"), "OTEL_EXPORTER_OTLP_");
                (general != var.name).then_some((s.to_ascii_lowercase(), general))
            }) else {
                continue;
            };
            let Some(general) = ALL.iter().find(|v| v.name == general) else {
                continue;
            };
            if std::ptr::eq(*general, &OTLP.endpoint) {
                continue;
            }
            assert_eq!(
                var.doc,
                general.doc.replace("all signals", &signal),
                "{} and {} describe different things",
                var.name,
                general.name
            );
        }
    }

    #[test]
    fn defaults_of_choices_are_valid_choices() {
        for var in ALL.iter() {
            if let (Some(choices), Some(default)) = (var.choices(), var.default) {
                for item in default.split(',') {
                    assert!(choices.contains(&item), "{}: default {item}", var.name);
                }
            }
        }
    }

    #[test]
    fn find_accepts_every_spelling() {
        for spelling in [
            "OTEL_SERVICE_NAME",
            "service-name",
            "--service_name",
            "service_name",
        ] {
            assert_eq!(
                find(spelling).map(|v| v.name),
                Some("OTEL_SERVICE_NAME"),
                "{spelling}"
            );
        }
        assert!(find("no-such-thing").is_none());
    }
}
