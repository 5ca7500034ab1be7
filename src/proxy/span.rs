//! What the proxies record of one exchange, the context they propagate, and how
//! a record becomes an OTLP span following the stable HTTP semantic conventions.
//!
//! A request only copies cheap handles (method, URI, header values) into an
//! [`Exchange`]; the span itself is built off the request path, by the sink.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

use crate::agent::process_span::nanos;
use crate::agent::spans::{SpanBatch, SpanHead};
use crate::context::{SpanContext, SpanId, TraceId, hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The reverse proxy: a request to the command.
    Server,
    /// The forward proxy: a request the command makes.
    Client,
}

/// One request through a proxy, as recorded when its response has ended.
pub struct Exchange {
    pub kind: Kind,
    pub context: SpanContext,
    pub parent: Option<SpanId>,
    pub method: Method,
    /// Origin-form for the reverse proxy, absolute (or authority for CONNECT) for the forward one.
    pub uri: Uri,
    pub version: Version,
    /// The Host header (or HTTP/2 authority) the client sent.
    pub host: Option<HeaderValue>,
    /// The proxy's own address, when the request names no host.
    pub local: SocketAddr,
    pub client: SocketAddr,
    pub user_agent: Option<HeaderValue>,
    pub status: Option<u16>,
    /// Why the exchange failed, for `error.type` and the span status.
    pub error: Option<(&'static str, String)>,
    pub request_size: Option<u64>,
    pub response_size: Option<u64>,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// What a request says of itself that its exchange records.
pub struct Requested {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The Host header (or HTTP/2 authority).
    pub host: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

impl Requested {
    /// Of a request hyper parsed; `host` as the proxy reads it.
    pub fn of<B>(request: &http::Request<B>, host: Option<HeaderValue>) -> Requested {
        Requested {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            host,
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
        }
    }
}

impl Exchange {
    /// An exchange for a request, which arrived at `start`, before the upstream
    /// answered.
    pub fn begin(
        kind: Kind,
        (context, parent): (SpanContext, Option<SpanId>),
        requested: Requested,
        (local, client): (SocketAddr, SocketAddr),
        start: SystemTime,
    ) -> Exchange {
        let Requested {
            method,
            uri,
            version,
            host,
            user_agent,
        } = requested;
        Exchange {
            kind,
            context,
            parent,
            method,
            uri,
            version,
            host,
            local,
            client,
            user_agent,
            status: None,
            error: None,
            request_size: None,
            response_size: None,
            start,
            end: start,
        }
    }

    pub fn duration_secs(&self) -> f64 {
        self.end
            .duration_since(self.start)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// The method as the conventions record it: known methods as sent, others `_OTHER`.
    pub fn method_name(&self) -> &'static str {
        let method = self.method.as_str();
        KNOWN_METHODS
            .iter()
            .find(|known| **known == method)
            .unwrap_or(&"_OTHER")
    }

    /// `error.type`: the transport failure, else a 5xx status (4xx too for a client).
    pub fn error_type(&self) -> Option<String> {
        if let Some((kind, _)) = &self.error {
            return Some((*kind).to_string());
        }
        let status = self.status?;
        let failed = status >= 500 || (self.kind == Kind::Client && status >= 400);
        failed.then(|| status.to_string())
    }

    /// `server.address` and `server.port`.
    pub fn server(&self) -> (Cow<'_, str>, u16) {
        let default_port = if self.uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let authority = match self.kind {
            Kind::Client => self.uri.authority().map(|a| a.as_str()),
            Kind::Server => None,
        };
        let authority = authority.or_else(|| self.host.as_ref().and_then(|h| h.to_str().ok()));
        match authority.and_then(split_authority) {
            Some((host, port)) => (Cow::Borrowed(host), port.unwrap_or(default_port)),
            None => (Cow::Owned(self.local.ip().to_string()), self.local.port()),
        }
    }

    /// Writes the exchange's span into `batch`; `route` is the matched template, if any.
    pub fn write(&self, route: Option<&str>, redact_all: bool, batch: &mut SpanBatch) {
        let method = self.method_name();
        let name = match (self.kind, route) {
            _ if self.method == Method::CONNECT => Cow::Borrowed("CONNECT"),
            (_, _) if method == "_OTHER" => Cow::Borrowed("HTTP"),
            (Kind::Server, Some(route)) => Cow::Owned(format!("{method} {route}")),
            _ => Cow::Borrowed(method),
        };
        let mut span = batch.span(SpanHead {
            trace_id: self.context.trace_id,
            span_id: self.context.span_id,
            trace_state: &self.context.trace_state,
            parent: self.parent,
            flags: 0x100
                | u32::from(self.context.sampled)
                | (u32::from(self.parent.is_some()) << 9),
            name: &name,
            kind: match self.kind {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
            } as i32,
            start: nanos(self.start),
            end: nanos(self.end),
        });
        span.str("http.request.method", method);
        if method == "_OTHER" {
            span.str("http.request.method_original", self.method.as_str());
        }
        match self.kind {
            Kind::Server => {
                span.str("url.path", self.uri.path());
                if let Some(query) = self.uri.query() {
                    span.str("url.query", &redact_query(query, redact_all));
                }
                span.str("url.scheme", "http");
                if let Some(route) = route {
                    span.str("http.route", route);
                }
                let mut ip = IpText::default();
                // (`network.peer.*` would repeat it: no forwarding headers are read.)
                span.str("client.address", ip.of(self.client.ip()));
            }
            Kind::Client => {
                if self.method != Method::CONNECT {
                    span.str("url.full", &redact_url(&self.uri, redact_all));
                }
            }
        }
        let (address, port) = self.server();
        span.str("server.address", &address);
        span.int("server.port", port.into());
        span.str("network.protocol.version", protocol_version(self.version));
        if let Some(agent) = self.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            span.str("user_agent.original", agent);
        }
        if let Some(status) = self.status {
            span.int("http.response.status_code", status.into());
        }
        if let Some(size) = self.request_size {
            span.int("http.request.body.size", size as i64);
        }
        if let Some(size) = self.response_size {
            span.int("http.response.body.size", size as i64);
        }
        let error = self.error_type();
        if let Some(error) = &error {
            span.str("error.type", error);
        }
        match (&self.error, &error) {
            (Some((_, message)), _) => span.end(StatusCode::Error as i32, message),
            (None, Some(_)) => span.end(StatusCode::Error as i32, ""),
            _ => span.end(StatusCode::Unset as i32, ""),
        }
    }
}

/// `host[:port]` or `[v6][:port]`: the host without brackets, and the port if any.
fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// An IP address's text without an allocation.
struct IpText {
    buf: [u8; 48],
}

impl Default for IpText {
    fn default() -> IpText {
        IpText { buf: [0; 48] }
    }
}

impl IpText {
    fn of(&mut self, ip: IpAddr) -> &str {
        let len = match ip {
            // Every request's client address: written by hand, as the
            // formatting machinery costs more than the rest of the span's text.
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.buf[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let first = match octet {
                        100.. => 0,
                        10.. => 1,
                        _ => 2,
                    };
                    for digit in &digits[first..] {
                        self.buf[len] = b'0' + digit;
                        len += 1;
                    }
                }
                len
            }
            IpAddr::V6(_) => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
                let _ = write!(cursor, "{ip}");
                cursor.position() as usize
            }
        };
        std::str::from_utf8(&self.buf[..len]).unwrap_or_default()
    }
}

const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
];

pub fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Query parameters that carry credentials in their value, matched in any case:
/// those the conventions list, then the common names of tokens, passwords and
/// keys (OAuth's, AWS's presigned URLs', API keys).
const SENSITIVE_PARAMS: &[&str] = &[
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "auth",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
];

fn is_sensitive(key: &str) -> bool {
    SENSITIVE_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// The query with sensitive values (or all of them) replaced by `REDACTED`.
pub fn redact_query(query: &str, all: bool) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if all || is_sensitive(key) => format!("{key}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `url.full` without credentials: user info and sensitive query values redacted.
fn redact_url(uri: &Uri, all: bool) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("REDACTED:REDACTED@{host}"),
        None => authority.to_string(),
    };
    let mut url = format!("{scheme}://{authority}{}", uri.path());
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(&redact_query(query, all));
    }
    url
}

/// The sampler of the proxies' spans, decided once from OTEL_TRACES_SAMPLER.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Follow a remote parent's decision.
    parent_based: bool,
    /// The share of root traces kept, 0.0 to 1.0.
    ratio: f64,
}

impl Sampler {
    pub fn new(sampler: &str, arg: Option<&str>) -> Sampler {
        let parent_based = sampler.starts_with("parentbased_")
            || !matches!(sampler, "always_on" | "always_off" | "traceidratio");
        let ratio = match sampler.trim_start_matches("parentbased_") {
            "always_off" => 0.0,
            "traceidratio" => arg.and_then(|a| a.parse().ok()).unwrap_or(1.0),
            _ => 1.0,
        };
        Sampler {
            parent_based,
            ratio,
        }
    }

    pub fn sample(&self, parent: Option<&SpanContext>, trace_id: &TraceId) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.sampled,
            _ => {
                let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
                self.ratio >= 1.0 || (low as f64) < self.ratio * (u64::MAX as f64)
            }
        }
    }
}

/// The propagators of OTEL_PROPAGATORS the proxies speak. Baggage needs no work:
/// the header passes through the proxy unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Propagators {
    pub tracecontext: bool,
    pub b3: bool,
    pub b3multi: bool,
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const B3: &str = "b3";
const B3_TRACE: &str = "x-b3-traceid";
const B3_SPAN: &str = "x-b3-spanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_PARENT: &str = "x-b3-parentspanid";

impl Propagators {
    pub fn new(names: &[String]) -> Propagators {
        let has = |n: &str| names.iter().any(|x| x == n);
        Propagators {
            tracecontext: has("tracecontext"),
            b3: has("b3"),
            b3multi: has("b3multi"),
        }
    }

    /// The remote parent a request carries, in the configured formats' order of precedence.
    pub fn extract(&self, headers: &HeaderMap) -> Option<SpanContext> {
        self.extract_with(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }

    /// [`Propagators::extract`] from any headers: `get` gives a header's value by
    /// its lowercase name.
    pub fn extract_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
        if self.tracecontext
            && let Some(ctx) = SpanContext::from_env(get(TRACEPARENT), get(TRACESTATE))
        {
            return Some(ctx);
        }
        if self.b3
            && let Some(ctx) = get(B3).and_then(parse_b3)
        {
            return Some(ctx);
        }
        if self.b3multi {
            let trace_id = unhex_trace(get(B3_TRACE)?)?;
            let span_id = unhex::<8>(get(B3_SPAN)?)?;
            let sampled = !matches!(get(B3_SAMPLED), Some("0" | "false"));
            return Some(SpanContext {
                trace_id,
                span_id,
                sampled,
                trace_state: String::new(),
            });
        }
        None
    }

    /// Whether the header `name` (any case) is one the propagators write, so an
    /// incoming value is replaced rather than passed on.
    pub fn replaces(&self, name: &[u8]) -> bool {
        let any = |names: &[&str]| {
            names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        };
        (self.tracecontext && any(&[TRACEPARENT, TRACESTATE]))
            || (self.b3 && any(&[B3]))
            || (self.b3multi && any(&[B3_TRACE, B3_SPAN, B3_SAMPLED, B3_PARENT]))
    }

    /// Writes `context` into the request for the next hop, replacing what was there.
    pub fn inject(&self, headers: &mut HeaderMap, context: &SpanContext) {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.replaces(n.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
        self.inject_with(context, |name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static(name), value);
            }
        });
    }

    /// The headers that carry `context` to the next hop, one `put(name, value)`
    /// each; those [`Propagators::replaces`] are to be left out of the request.
    pub fn inject_with(&self, context: &SpanContext, mut put: impl FnMut(&'static str, &[u8])) {
        if self.tracecontext {
            put(TRACEPARENT, &traceparent(context));
            if !context.trace_state.is_empty() {
                put(TRACESTATE, context.trace_state.as_bytes());
            }
        }
        if !(self.b3 || self.b3multi) {
            return;
        }
        let (trace, span) = (hex(&context.trace_id), hex(&context.span_id));
        let sampled = if context.sampled { "1" } else { "0" };
        if self.b3 {
            put(B3, format!("{trace}-{span}-{sampled}").as_bytes());
        }
        if self.b3multi {
            put(B3_TRACE, trace.as_bytes());
            put(B3_SPAN, span.as_bytes());
            put(B3_SAMPLED, sampled.as_bytes());
        }
    }
}

/// The `traceparent` value, written without the formatting machinery: it is
/// made for every request.
fn traceparent(context: &SpanContext) -> [u8; 55] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    let mut at = 3;
    for byte in &context.trace_id {
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out[at] = b'-';
    at += 1;
    for byte in &context.span_id {
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out[at..].copy_from_slice(if context.sampled { b"-01" } else { b"-00" });
    out
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parent}]]`; a lone `0`/`d` carries no parent.
fn parse_b3(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let trace_id = unhex_trace(parts.next()?)?;
    let span_id = unhex::<8>(parts.next()?)?;
    let sampled = !matches!(parts.next(), Some("0"));
    Some(SpanContext {
        trace_id,
        span_id,
        sampled,
        trace_state: String::new(),
    })
}

/// A B3 trace id: 32 hex digits, or 16 (left-padded with zeros).
fn unhex_trace(s: &str) -> Option<TraceId> {
    let s = s.to_ascii_lowercase();
    let padded = if s.len() == 16 {
        format!("{:0>32}", s)
    } else {
        s
    };
    let id = unhex::<16>(&padded)?;
    (id != [0; 16]).then_some(id)
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    (out != [0; N]).then_some(out)
}

/// Fast ids for per-request spans: unique, not secret, so a per-thread generator
/// seeded from the OS (wyrand) rather than a system call per request.
pub fn fast_id<const N: usize>() -> [u8; N] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_ne_bytes(crate::context::random_id()));
    }
    let mut out = [0u8; N];
    while out == [0u8; N] {
        for chunk in out.chunks_mut(8) {
            let n = STATE.with(|s| {
                let v = s.get().wrapping_add(0xa076_1d64_78bd_642f);
                s.set(v);
                let t = u128::from(v) * u128::from(v ^ 0xe703_7ed1_a0b4_28db);
                ((t >> 64) as u64) ^ (t as u64)
            });
            chunk.copy_from_slice(&n.to_ne_bytes()[..chunk.len()]);
        }
    }
    out
}

/// The context of a new span under `parent` (or a new trace).
pub fn child_context(sampler: &Sampler, parent: Option<&SpanContext>) -> SpanContext {
    let trace_id = parent.map_or_else(fast_id, |p| p.trace_id);
    SpanContext {
        trace_id,
        span_id: fast_id(),
        sampled: sampler.sample(parent, &trace_id),
        trace_state: parent.map(|p| p.trace_state.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::process_span::Limits;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn query_redaction() {
        assert_eq!(redact_query("a=1&sig=abc&b", false), "a=1&sig=REDACTED&b");
        assert_eq!(redact_query("a=1&b=2", true), "a=REDACTED&b=REDACTED");
        assert_eq!(
            redact_query(
                "Access_Token=t&id_token=i&API_KEY=k&X-Amz-Credential=c&x-amz-security-token=s&q=1",
                false
            ),
            "Access_Token=REDACTED&id_token=REDACTED&API_KEY=REDACTED&X-Amz-Credential=REDACTED&x-amz-security-token=REDACTED&q=1"
        );
        assert_eq!(
            redact_query(
                "token=a&password=b&client_secret=c&key=d&auth=e&keyword=f",
                false
            ),
            "token=REDACTED&password=REDACTED&client_secret=REDACTED&key=REDACTED&auth=REDACTED&keyword=f"
        );
        let uri: Uri = "http://user:pw@example.com:8080/p?Signature=x&q=1"
            .parse()
            .unwrap();
        assert_eq!(
            redact_url(&uri, false),
            "http://REDACTED:REDACTED@example.com:8080/p?Signature=REDACTED&q=1"
        );
    }

    #[test]
    fn traceparent_header_matches_the_formatter() {
        let ctx = child_context(&Sampler::new("always_on", None), None);
        assert_eq!(&traceparent(&ctx)[..], ctx.traceparent().as_bytes());
    }

    #[test]
    fn b3_round_trip_and_precedence() {
        let all = Propagators::new(&["tracecontext".into(), "b3".into(), "b3multi".into()]);
        let ctx = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
            trace_state: "k=v".into(),
        };
        let mut headers = HeaderMap::new();
        all.inject(&mut headers, &ctx);
        assert_eq!(headers["tracestate"], "k=v");
        assert_eq!(
            headers["b3"],
            "07070707070707070707070707070707-0909090909090909-1"
        );
        assert_eq!(headers["x-b3-sampled"], "1");
        assert_eq!(all.extract(&headers), Some(ctx.clone()));
        let b3_only = Propagators::new(&["b3".into()]);
        headers.remove("traceparent");
        let got = b3_only.extract(&headers).unwrap();
        assert_eq!((got.trace_id, got.span_id), (ctx.trace_id, ctx.span_id));
        let mut short = HeaderMap::new();
        short.insert(
            "b3",
            HeaderValue::from_static("a3ce929d0e0e4736-00f067aa0ba902b7-0"),
        );
        let got = b3_only.extract(&short).unwrap();
        assert!(!got.sampled);
        assert_eq!(hex(&got.trace_id), "0000000000000000a3ce929d0e0e4736");
    }

    #[test]
    fn no_propagator_extracts_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(Propagators::new(&[]).extract(&headers).is_none());
        assert!(
            Propagators::new(&["tracecontext".into()])
                .extract(&headers)
                .is_some()
        );
    }

    #[test]
    fn sampler_follows_parent_or_ratio() {
        let parent = SpanContext {
            trace_id: [1; 16],
            span_id: [1; 8],
            sampled: false,
            trace_state: String::new(),
        };
        let s = Sampler::new("parentbased_always_on", None);
        assert!(!s.sample(Some(&parent), &parent.trace_id));
        assert!(s.sample(None, &[0xff; 16]));
        assert!(Sampler::new("always_on", None).sample(Some(&parent), &[0xff; 16]));
        assert!(!Sampler::new("traceidratio", Some("0")).sample(None, &[0x01; 16]));
    }

    #[test]
    fn unknown_methods_are_other() {
        let e = Exchange {
            kind: Kind::Server,
            context: child_context(&Sampler::new("always_on", None), None),
            parent: None,
            method: Method::from_bytes(b"BREW").unwrap(),
            uri: "/pot?x=1".parse().unwrap(),
            version: Version::HTTP_11,
            host: Some(HeaderValue::from_static("example.com:8080")),
            local: "127.0.0.1:1".parse().unwrap(),
            client: "127.0.0.1:2".parse().unwrap(),
            user_agent: None,
            status: Some(503),
            error: None,
            request_size: None,
            response_size: Some(3),
            start: SystemTime::now(),
            end: SystemTime::now(),
        };
        let mut batch = SpanBatch::new(&Default::default(), &Default::default(), Limits::default());
        e.write(Some("/pot"), false, &mut batch);
        let item = batch.take();
        let span = &item.message().scope_spans[0].spans[0];
        assert_eq!(span.name, "HTTP");
        let method = span
            .attributes
            .iter()
            .find(|a| a.key == "http.request.method_original");
        assert_eq!(
            method.and_then(|a| a.value.clone()?.value),
            Some(Value::StringValue("BREW".into()))
        );
        assert_eq!(e.server(), (Cow::Borrowed("example.com"), 8080));
        assert_eq!(e.error_type().as_deref(), Some("503"));
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("example.com:8080"),
            Some(("example.com", Some(8080)))
        );
        assert_eq!(split_authority("example.com"), Some(("example.com", None)));
        assert_eq!(split_authority("[::1]:80"), Some(("::1", Some(80))));
        assert_eq!(split_authority("[::1]"), Some(("::1", None)));
        assert_eq!(split_authority("example.com:http"), None);
        assert_eq!(split_authority(":80"), None);
        let mut ip = IpText::default();
        assert_eq!(ip.of("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }

    #[test]
    fn ipv4_text_matches_the_standard_formatting() {
        let mut ip = IpText::default();
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [9, 10, 99, 100],
            [255, 200, 101, 7],
        ] {
            let addr = IpAddr::from(octets);
            assert_eq!(ip.of(addr), addr.to_string());
        }
    }
}
