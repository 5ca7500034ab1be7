//! HTTP/1.x on the wire, for the reverse proxy's direct path: request and
//! response heads read with `httparse` and rewritten for the next hop, and the
//! framing of the bodies that are relayed as they are (RFC 9112).
//!
//! Nothing here does I/O: [`super::reverse`] reads and writes the sockets.

use std::borrow::Cow;

use bytes::Bytes;
use http::{Method, Version};

use crate::telemetry::Propagators;

/// Header lines a head may have; more is answered 431.
pub const MAX_HEADERS: usize = 128;

/// What starts an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
/// `transfer-encoding` is not among them: bodies are relayed in their framing.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// How a body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// A response that ends when the upstream closes.
    UntilClose,
}

/// A request head the proxy can forward, and what it knows of it.
pub struct Request {
    /// The head's length in the read buffer.
    pub len: usize,
    pub method: Method,
    pub version: Version,
    pub framing: Framing,
    /// The client asked for the connection to end after this exchange.
    pub close: bool,
    pub upgrade: bool,
    /// What the span keeps of the head.
    pub kept: Kept,
}

/// Parts of the head the span needs, sharing one copy of the head.
pub struct Kept {
    pub target: Bytes,
    pub host: Option<Bytes>,
    pub user_agent: Option<Bytes>,
}

/// Why a request head cannot be forwarded: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    HeadersTooLarge,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::HeadersTooLarge => 431,
        }
    }
}

/// The request line of a head that was refused, for the span: method and target.
pub fn request_line(buf: &[u8]) -> Option<(Method, Bytes)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let mut parts = buf[..end].split(|&b| b == b' ');
    let method = Method::from_bytes(parts.next()?).ok()?;
    let target = parts.next()?;
    let version = parts.next()?;
    (version.starts_with(b"HTTP/1.") && parts.next().is_none() && target.starts_with(b"/"))
        .then(|| (method, Bytes::copy_from_slice(target)))
}

/// Whether `value`, a comma-separated list, holds `token` (any case).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `Connection` names the header `name` as one to drop. The headers
/// that frame the body, and Host, are kept whatever it says: dropping them
/// would let the upstream read the message differently than the proxy relays it.
fn is_named_by(connection: &[&[u8]], name: &str) -> bool {
    const KEPT: &[&str] = &["content-length", "transfer-encoding", "host"];
    !KEPT.iter().any(|k| name.eq_ignore_ascii_case(k))
        && connection.iter().any(|v| has_token(v, name))
}

/// What a head's headers say of its framing and of which headers are
/// hop-by-hop, read alike for requests and responses.
struct Framed<'h> {
    /// The `Connection` headers' values (a few at most).
    connection: [&'h [u8]; 4],
    connections: usize,
    length: Option<u64>,
    /// A Transfer-Encoding is present; `chunked` when it ends in chunked.
    encoded: bool,
    chunked: bool,
    /// More than one Transfer-Encoding line: hops that read the first, the last,
    /// or the lines joined would frame the body differently.
    encodings_repeated: bool,
}

impl<'h> Framed<'h> {
    /// Reads `headers`; `other` sees every other header and may refuse it.
    /// `None` when the head is refused: a bad or conflicting Content-Length,
    /// more `Connection` headers than kept, or `other`'s refusal.
    fn read(
        headers: &[httparse::Header<'h>],
        mut other: impl FnMut(&httparse::Header<'h>) -> bool,
    ) -> Option<Framed<'h>> {
        let mut framed = Framed {
            connection: [b""; 4],
            connections: 0,
            length: None,
            encoded: false,
            chunked: false,
            encodings_repeated: false,
        };
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                *framed.connection.get_mut(framed.connections)? = h.value;
                framed.connections += 1;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_length(h.value.trim_ascii())?;
                if framed.length.is_some_and(|l| l != n) {
                    return None;
                }
                framed.length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                framed.encodings_repeated |= framed.encoded;
                framed.encoded = true;
                framed.chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if !other(h) {
                return None;
            }
        }
        Some(framed)
    }

    fn connection(&self) -> &[&'h [u8]] {
        &self.connection[..self.connections]
    }

    /// Whether the header `name` stays on this hop; `upgrading` keeps `Upgrade`.
    fn hop_by_hop(&self, name: &str, upgrading: bool) -> bool {
        let hop = HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
            || is_named_by(self.connection(), name);
        hop && !(upgrading && name.eq_ignore_ascii_case("upgrade"))
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) || value.len() > 19 {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Reads a complete request head and writes the upstream's into `out`: the
/// request line in origin form, the client's headers less the hop-by-hop ones
/// and those the propagators replace, `host` when the client sent none, and the
/// propagation headers of `inject`.
pub fn forward_request(
    head: &httparse::Request<'_, '_>,
    len: usize,
    buf: &[u8],
    upstream_host: &str,
    propagators: &Propagators,
    context: &crate::telemetry::context::SpanContext,
    out: &mut Vec<u8>,
) -> Result<Request, Refusal> {
    let method = Method::from_bytes(head.method.unwrap_or("").as_bytes())
        .map_err(|_| Refusal::BadRequest)?;
    let version = match head.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let target = head.path.unwrap_or("");
    // An absolute-form target (`GET http://host/path`) goes on as its path.
    let (path, authority) = if target.starts_with('/') || target == "*" {
        (Cow::Borrowed(target), None)
    } else {
        let (scheme, rest) = target.split_once("://").ok_or(Refusal::BadRequest)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Refusal::BadRequest);
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.parse::<http::uri::Authority>().is_err() {
            return Err(Refusal::BadRequest);
        }
        let path = match path.starts_with('/') {
            true => Cow::Borrowed(path),
            false => Cow::Owned(format!("/{path}")),
        };
        (path, Some(authority))
    };

    let (mut host, mut user_agent) = (None, None);
    let mut upgrade_header = false;
    let framed = Framed::read(head.headers, |h| {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return false;
            }
            host = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_header = true;
        }
        true
    })
    .ok_or(Refusal::BadRequest)?;
    let connection = framed.connection();
    // A body framed two ways is how requests are smuggled (RFC 9112 §6.1).
    let framing = match (framed.encoded, framed.length) {
        (true, Some(_)) => return Err(Refusal::BadRequest),
        (true, None) if framed.encodings_repeated => return Err(Refusal::BadRequest),
        (true, None) if framed.chunked && version == Version::HTTP_11 => Framing::Chunked,
        (true, None) => return Err(Refusal::BadRequest),
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    let upgrade = upgrade_header && is_named_by(connection, "upgrade");
    let close = match version {
        Version::HTTP_10 => true,
        _ => is_named_by(connection, "close"),
    };

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    // An HTTP/1.0 client reads its response to the end of the connection: the
    // upstream is asked in HTTP/1.0 too, so it frames the body that way.
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in head.headers.iter() {
        let name = h.name;
        if framed.hop_by_hop(name, upgrade) || propagators.replaces(name.as_bytes()) {
            continue;
        }
        header_line(out, name.as_bytes(), h.value);
    }
    if host.is_none() {
        header_line(out, b"host", authority.unwrap_or(upstream_host).as_bytes());
    }
    if upgrade {
        header_line(out, b"connection", b"upgrade");
    }
    propagators.inject_with(context, |name, value| {
        header_line(out, name.as_bytes(), value);
    });
    out.extend_from_slice(b"\r\n");

    // One copy of the head holds what the span keeps.
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let slice = |s: &[u8]| {
        let at = s.as_ptr() as usize - buf.as_ptr() as usize;
        copy.slice(at..at + s.len())
    };
    let kept = Kept {
        target: match &path {
            Cow::Borrowed(path) if authority.is_none() => slice(path.as_bytes()),
            path => Bytes::copy_from_slice(path.as_bytes()),
        },
        host: host
            .map(slice)
            .or_else(|| authority.map(|a| Bytes::copy_from_slice(a.as_bytes()))),
        user_agent: user_agent.map(slice),
    };
    Ok(Request {
        len,
        method,
        version,
        framing,
        close,
        upgrade,
        kept,
    })
}

fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response head from the upstream, as the client gets it.
pub struct Response {
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection cannot carry another request.
    pub upstream_done: bool,
}

/// Writes the client's head for the upstream's response `head` into `out`:
/// the status line in HTTP/1.1, the headers less the hop-by-hop ones, and
/// `connection: close` when `close`. `None` when the response's framing is
/// invalid (a 502).
pub fn forward_response(
    head: &httparse::Response<'_, '_>,
    request: &Request,
    close: impl FnOnce(Framing) -> bool,
    out: &mut Vec<u8>,
) -> Option<Response> {
    let status = head.code?;
    let framed = Framed::read(head.headers, |_| true)?;
    let connection = framed.connection();
    let switching = status == 101 && request.upgrade;
    let framing = if request.method == Method::HEAD
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        Framing::None
    } else if framed.encoded {
        if framed.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match framed.length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = match head.version {
        Some(0) => is_named_by(connection, "keep-alive"),
        _ => !is_named_by(connection, "close"),
    };
    let upstream_done = !keep_alive
        || framing == Framing::UntilClose
        || request.version == Version::HTTP_10
        || switching;
    let close = !switching && close(framing);

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(head.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in head.headers.iter() {
        let name = h.name;
        // Content-Length means nothing next to Transfer-Encoding (RFC 9112 §6.3).
        let stale_length = framed.encoded && name.eq_ignore_ascii_case("content-length");
        if framed.hop_by_hop(name, switching) || stale_length {
            continue;
        }
        header_line(out, name.as_bytes(), h.value);
    }
    if switching {
        header_line(out, b"connection", b"upgrade");
    } else if close {
        header_line(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    Some(Response {
        status,
        framing,
        upstream_done,
    })
}

fn itoa3(n: u16) -> [u8; 3] {
    let n = n.min(999);
    [
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// A response the proxy makes itself: `status` and its reason as the body,
/// whose length it returns.
pub fn local_response(status: http::StatusCode, close: bool, out: &mut Vec<u8>) -> u64 {
    let reason = status.canonical_reason().unwrap_or("");
    let body_len = 3 + 1 + reason.len() + 1;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(body_len.to_string().as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    body_len as u64
}

/// Where a relayed body is: how many of the bytes at hand belong to it, and its
/// payload so far (chunk data, without the chunked framing).
#[derive(Debug)]
pub struct Body {
    state: State,
    pub payload: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    /// Reading a chunk-size line; `digits` seen, then [`After`] the size.
    Size {
        size: u64,
        digits: u8,
        after: After,
        line: u16,
    },
    /// The `\n` ending a size line.
    SizeLf(u64),
    Data(u64),
    /// The CRLF after a chunk's data; `1` once the `\r` is seen.
    DataEnd(u8),
    /// Trailer lines after the last chunk; `line` bytes of the current one.
    Trailer {
        line: u16,
        cr: bool,
    },
    Done,
}

/// Where a chunk-size line is after its digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Digits,
    /// Whitespace, which only a `;` may follow (RFC 9112 §7.1.1 BWS).
    Space,
    /// In the extensions, after a `;`.
    Extension,
}

/// A byte no chunk-size or trailer line may hold: a control character other
/// than HTAB, so that a bare LF never ends a line here while it might upstream.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A chunked body's framing was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: u16 = 4096;

impl Body {
    pub fn new(framing: Framing) -> Body {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size {
                size: 0,
                digits: 0,
                after: After::Digits,
                line: 0,
            },
            Framing::UntilClose => State::UntilClose,
        };
        Body { state, payload: 0 }
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Ends at the connection's end (true), else the body was cut short.
    pub fn at_eof(&mut self) -> bool {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                true
            }
            _ => false,
        }
    }

    /// How many bytes of `bytes` belong to the body (all of them until it ends).
    pub fn take(&mut self, bytes: &[u8]) -> Result<usize, Malformed> {
        let mut at = 0;
        while at < bytes.len() {
            match &mut self.state {
                State::Done => break,
                State::UntilClose => {
                    self.payload += (bytes.len() - at) as u64;
                    return Ok(bytes.len());
                }
                State::Length(left) => {
                    let n = (*left).min((bytes.len() - at) as u64);
                    *left -= n;
                    self.payload += n;
                    at += n as usize;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                }
                State::Data(left) => {
                    let n = (*left).min((bytes.len() - at) as u64);
                    *left -= n;
                    self.payload += n;
                    at += n as usize;
                    if *left == 0 {
                        self.state = State::DataEnd(0);
                    }
                }
                State::Size {
                    size,
                    digits,
                    after,
                    line,
                } => {
                    let b = bytes[at];
                    at += 1;
                    *line += 1;
                    if *line > MAX_LINE {
                        return Err(Malformed);
                    }
                    match (b, *after) {
                        (b'\r', _) if *digits > 0 => self.state = State::SizeLf(*size),
                        _ if is_control(b) => return Err(Malformed),
                        (_, After::Extension) => {}
                        (b';', _) if *digits > 0 => *after = After::Extension,
                        (b' ' | b'\t', After::Digits | After::Space) if *digits > 0 => {
                            *after = After::Space;
                        }
                        (_, After::Digits) => {
                            let d = (b as char).to_digit(16).ok_or(Malformed)?;
                            if *digits >= 15 {
                                return Err(Malformed);
                            }
                            *size = *size * 16 + u64::from(d);
                            *digits += 1;
                        }
                        (_, After::Space) => return Err(Malformed),
                    }
                }
                State::SizeLf(size) => {
                    if bytes[at] != b'\n' {
                        return Err(Malformed);
                    }
                    at += 1;
                    self.state = match *size {
                        0 => State::Trailer { line: 0, cr: false },
                        n => State::Data(n),
                    };
                }
                State::DataEnd(seen) => {
                    let want = if *seen == 0 { b'\r' } else { b'\n' };
                    if bytes[at] != want {
                        return Err(Malformed);
                    }
                    at += 1;
                    if *seen == 0 {
                        *seen = 1;
                    } else {
                        self.state = State::Size {
                            size: 0,
                            digits: 0,
                            after: After::Digits,
                            line: 0,
                        };
                    }
                }
                State::Trailer { line, cr } => {
                    let b = bytes[at];
                    at += 1;
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) if *line == 0 => self.state = State::Done,
                        (b'\n', true) => {
                            *line = 0;
                            *cr = false;
                        }
                        (_, true) => return Err(Malformed),
                        _ if is_control(b) => return Err(Malformed),
                        _ => {
                            *line += 1;
                            if *line > MAX_LINE {
                                return Err(Malformed);
                            }
                        }
                    }
                }
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_do() {
        let wire = b"5\r\nhello\r\n7 ;ext=1\r\n, world\r\n0\r\nx-sum: 1\r\n\r\nGET /next";
        // Fed whole and byte by byte, the body is found to end at the same place.
        let mut body = Body::new(Framing::Chunked);
        let end = body.take(wire).unwrap();
        assert_eq!(&wire[end..], b"GET /next");
        assert!(body.done());
        assert_eq!(body.payload, 12);
        let mut body = Body::new(Framing::Chunked);
        let mut taken = 0;
        for i in 0..wire.len() {
            if body.done() {
                break;
            }
            taken += body.take(&wire[i..=i]).unwrap();
        }
        assert_eq!(taken, end);
        assert_eq!(body.payload, 12);
    }

    #[test]
    fn broken_chunked_framing_is_refused() {
        for wire in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"5\rx",
            b"fffffffffffffffff\r\n",
            // A bare LF ends no line here: an upstream that took it for one
            // would read a second request hidden in the body.
            b"0\r\n\nGET /admin HTTP/1.1\r\n\r\n",
            b"5;ext\nhello\r\n",
            b"5 junk\r\n",
        ] {
            assert_eq!(
                Body::new(Framing::Chunked).take(wire),
                Err(Malformed),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn lengths_and_close_delimited_bodies() {
        let mut body = Body::new(Framing::Length(4));
        assert_eq!(body.take(b"abcdef").unwrap(), 4);
        assert!(body.done());
        let mut body = Body::new(Framing::UntilClose);
        assert_eq!(body.take(b"abc").unwrap(), 3);
        assert!(!body.done());
        assert!(body.at_eof());
        assert!(!Body::new(Framing::Length(3)).at_eof());
    }

    fn forward(wire: &[u8], propagators: Propagators) -> (Result<Request, Refusal>, String) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(len) = head.parse(wire).unwrap() else {
            panic!("incomplete");
        };
        let context = crate::telemetry::context::SpanContext::new([1; 16], [2; 8], true);
        let mut out = Vec::new();
        let request = forward_request(
            &head,
            len,
            wire,
            "up:5000",
            &propagators,
            &context,
            &mut out,
        );
        (request, String::from_utf8(out).unwrap())
    }

    /// The client's head for the upstream's response `wire` to `request`.
    fn respond(wire: &[u8], request: &Request) -> (Response, String) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        head.parse(wire).unwrap();
        let mut out = Vec::new();
        let response = forward_response(&head, request, |_| false, &mut out).unwrap();
        (response, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_upstream_head_drops_hop_by_hop_headers_and_carries_the_context() {
        let propagators = Propagators::new(&["tracecontext".into()]);
        let (request, out) = forward(
            b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-private\r\n\
              X-Private: 1\r\nTE: trailers\r\nTraceparent: 00-old\r\nContent-Length: 3\r\n\
              User-Agent: ua\r\n\r\nabc",
            propagators,
        );
        let request = request.unwrap();
        assert_eq!(request.framing, Framing::Length(3));
        assert!(!request.close);
        assert_eq!(&request.kept.target[..], b"/a?b=1");
        assert_eq!(request.kept.host.as_deref(), Some(&b"h"[..]));
        assert_eq!(request.kept.user_agent.as_deref(), Some(&b"ua"[..]));
        assert_eq!(
            out,
            "POST /a?b=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nUser-Agent: ua\r\n\
             traceparent: 00-01010101010101010101010101010101-0202020202020202-01\r\n\r\n"
        );
    }

    #[test]
    fn old_clients_and_absolute_targets_get_a_host() {
        let none = Propagators::default();
        let (request, out) = forward(b"GET /old HTTP/1.0\r\n\r\n", none);
        assert!(request.unwrap().close);
        assert_eq!(out, "GET /old HTTP/1.0\r\nhost: up:5000\r\n\r\n");
        let (request, out) = forward(b"GET http://example.com:81/x HTTP/1.1\r\n\r\n", none);
        let request = request.unwrap();
        assert_eq!(&request.kept.target[..], b"/x");
        assert_eq!(out, "GET /x HTTP/1.1\r\nhost: example.com:81\r\n\r\n");
    }

    #[test]
    fn ambiguous_framing_is_a_bad_request() {
        let none = Propagators::default();
        for wire in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let (request, _) = forward(wire, none);
            assert_eq!(
                request.err(),
                Some(Refusal::BadRequest),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn connection_cannot_drop_the_headers_that_frame_the_body() {
        let (request, out) = forward(
            b"POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length, host, x-a\r\n\
              X-A: 1\r\nContent-Length: 2\r\n\r\nhi",
            Propagators::default(),
        );
        assert_eq!(request.unwrap().framing, Framing::Length(2));
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"
        );
        let (request, _) = forward(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", Propagators::default());
        let wire = b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\n\
                     Transfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        let (response, out) = respond(wire, &request.unwrap());
        assert_eq!(response.framing, Framing::Chunked);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    }

    #[test]
    fn upgrades_keep_their_headers_both_ways() {
        let none = Propagators::default();
        let (request, out) = forward(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            none,
        );
        let request = request.unwrap();
        assert!(request.upgrade);
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let (response, out) = respond(wire, &request);
        assert!(response.upstream_done);
        assert_eq!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_follows_the_method_and_status() {
        let none = Propagators::default();
        let cases: &[(&[u8], &[u8], Framing, bool)] = &[
            (
                b"GET",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                b"HEAD",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::None,
                false,
            ),
            (
                b"GET",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                Framing::None,
                false,
            ),
            (
                b"GET",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
                false,
            ),
            (
                b"GET",
                b"HTTP/1.1 200 OK\r\n\r\n",
                Framing::UntilClose,
                true,
            ),
            (
                b"GET",
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                true,
            ),
            (
                b"GET",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                true,
            ),
        ];
        for (method, wire, framing, upstream_done) in cases {
            let request = [*method, b" / HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
            let (request, _) = forward(&request, none);
            let request = request.unwrap();
            let (response, out) = respond(wire, &request);
            let text = String::from_utf8_lossy(wire);
            assert_eq!(response.framing, *framing, "{text}");
            assert_eq!(response.upstream_done, *upstream_done, "{text}");
            assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
        }
    }

    #[test]
    fn local_responses_say_their_status() {
        let mut out = Vec::new();
        local_response(http::StatusCode::BAD_GATEWAY, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: 16\r\nconnection: close\r\n\r\n502 Bad Gateway\n"
        );
    }

    #[test]
    fn refused_heads_still_name_their_request_line() {
        let (method, target) = request_line(b"GET /users/1 HTTP/1.1\r\nX: y").unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(&target[..], b"/users/1");
        assert!(request_line(b"THIS IS NOT HTTP\r\n").is_none());
    }
}
