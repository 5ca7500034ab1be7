//! What the proxies record of one exchange, the context they propagate, and how
//! a record becomes an OTLP span following the stable HTTP semantic conventions.
//!
//! A request only copies cheap handles (method, URI, header values) into an
//! [`Exchange`]; the span itself is built off the request path, by the sink.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::header::HeaderValue;
use http::{Method, Uri, Version};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

use crate::telemetry::context::{SpanContext, SpanId};
use crate::telemetry::nanos;
use crate::telemetry::spans::{SpanBatch, SpanHead};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Limits;
    use crate::telemetry::Sampler;
    use crate::telemetry::sampler::child_context;
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
