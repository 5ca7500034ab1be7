//! The reverse proxy's HTTP/1 framing (`otel_run::agent::proxy::h1`) on arbitrary bytes.
//!
//! Input: a control byte, a byte that seeds how the body is cut into reads,
//! then the wire. Bit 0 of the control byte: 0 reads the wire as a client's
//! request, 1 as the upstream's response to one of four requests (bits 1-2:
//! GET, HEAD, HTTP/1.0 GET, websocket upgrade). Bits 3-5 turn on the
//! tracecontext, b3 and b3multi propagators; bit 6 asks for the client
//! connection to close after the response.
//!
//! What must hold besides "no panic": a head's length is within the input; a
//! forwarded head parses again, to the same method, target, framing and
//! upgrade, with no hop-by-hop header and each propagation header once; a
//! body takes no more than it is given, counts no more payload than it took,
//! and ends at the same byte (or fails) however its bytes are cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otel_run::agent::proxy::h1::{self, Body, Framing, Request};
use otel_run::telemetry::sampler::child_context;
use otel_run::telemetry::{Propagators, Sampler};

/// Room for a forwarded head: the client's headers and the ones the proxy adds.
const REPARSE_HEADERS: usize = h1::MAX_HEADERS * 2;

/// Headers of one connection (RFC 9110 §7.6.1), which must not be forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The requests a response is read for, chosen by bits 1-2 of the control byte.
const REQUESTS: [&[u8]; 4] = [
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let [control, cuts, wire @ ..] = data else {
        return;
    };
    let propagators = Propagators {
        tracecontext: control & 0b1000 != 0,
        b3: control & 0b1_0000 != 0,
        b3multi: control & 0b10_0000 != 0,
    };
    check_request_line(wire);
    let body = if control & 1 == 0 {
        request(wire, &propagators).map(|(request, len)| (request.framing, len))
    } else {
        let asked = REQUESTS[usize::from(control >> 1 & 0b11)];
        let (request, _) = request(asked, &propagators).expect("a valid request is forwarded");
        response(wire, &request, control & 0b100_0000 != 0)
    };
    if let Some((framing, len)) = body {
        check_body(framing, &wire[len..], *cuts);
    }
});

/// The request line of a refused head names what the wire's first line does.
fn check_request_line(wire: &[u8]) {
    let Some((method, target)) = h1::request_line(wire) else {
        return;
    };
    let method = method.as_str().as_bytes();
    assert!(wire.starts_with(method));
    assert_eq!(wire[method.len()], b' ');
    assert!(wire[method.len() + 1..].starts_with(&target));
    assert!(target.starts_with(b"/"));
}

/// Reads a client's head and forwards it, as the proxy does; the request and
/// its head's length.
fn request(wire: &[u8], propagators: &Propagators) -> Option<(Request, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = head.parse(wire) else {
        return None;
    };
    assert!(len <= wire.len());
    let (request, out) = forward(&head, len, wire, propagators)?;
    assert_eq!(request.len, len);

    let mut headers = [httparse::EMPTY_HEADER; REPARSE_HEADERS];
    let mut again = httparse::Request::new(&mut headers);
    let parsed = again.parse(&out);
    assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(out.len())),
        "the forwarded head does not parse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.method, Some(request.method.as_str()));
    assert_eq!(
        again.path.map(str::as_bytes),
        Some(&request.kept.target[..])
    );
    check_forwarded_headers(again.headers, request.upgrade, propagators);
    let (twice, _) =
        forward(&again, out.len(), &out, propagators).expect("a forwarded head is forwarded again");
    assert_eq!(twice.method, request.method);
    assert_eq!(twice.version, request.version);
    assert_eq!(twice.framing, request.framing);
    assert_eq!(twice.upgrade, request.upgrade);
    assert_eq!(twice.kept.target, request.kept.target);
    if request.kept.host.is_some() {
        assert_eq!(twice.kept.host, request.kept.host);
    }
    Some((request, len))
}

fn forward(
    head: &httparse::Request<'_, '_>,
    len: usize,
    wire: &[u8],
    propagators: &Propagators,
) -> Option<(Request, Vec<u8>)> {
    let parent = propagators.extract_with(|name| {
        head.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    });
    let context = child_context(
        &Sampler::new("parentbased_always_on", None),
        parent.as_ref(),
    );
    let mut out = Vec::new();
    let request = h1::forward_request(head, len, wire, "up:5000", propagators, &context, &mut out);
    request.ok().map(|request| (request, out))
}

/// No hop-by-hop header goes on but the upgrade's own; each header the
/// propagators write is there once.
fn check_forwarded_headers(headers: &[httparse::Header<'_>], upgrade: bool, p: &Propagators) {
    for h in headers {
        let hop = HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n));
        let upgrading = upgrade
            && (h.name.eq_ignore_ascii_case("upgrade")
                || (h.name.eq_ignore_ascii_case("connection") && h.value == b"upgrade"));
        assert!(!hop || upgrading, "hop-by-hop header {} forwarded", h.name);
    }
    let count = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    let written = [
        (p.tracecontext, "traceparent"),
        (p.b3, "b3"),
        (p.b3multi, "x-b3-traceid"),
        (p.b3multi, "x-b3-spanid"),
        (p.b3multi, "x-b3-sampled"),
    ];
    for (on, name) in written {
        if on {
            assert_eq!(count(name), 1, "{name}");
        }
    }
    if p.tracecontext {
        assert!(count("tracestate") <= 1);
    }
}

/// Reads an upstream's response head to `request` and forwards it; its framing
/// and its head's length.
fn response(wire: &[u8], request: &Request, close: bool) -> Option<(Framing, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = head.parse(wire) else {
        return None;
    };
    assert!(len <= wire.len());
    let closing = |framing| close || framing == Framing::UntilClose;
    let mut out = Vec::new();
    let response = h1::forward_response(&head, request, closing, &mut out)?;
    assert_eq!(Some(response.status), head.code);

    let mut headers = [httparse::EMPTY_HEADER; REPARSE_HEADERS];
    let mut again = httparse::Response::new(&mut headers);
    assert_eq!(
        again.parse(&out),
        Ok(httparse::Status::Complete(out.len())),
        "the forwarded head does not parse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.code, head.code);
    assert_eq!(again.version, Some(1));
    let switching = response.status == 101 && request.upgrade;
    let connection: Vec<&[u8]> = again
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| h.value)
        .collect();
    let expected: &[&[u8]] = match (switching, closing(response.framing)) {
        (true, _) => &[b"upgrade"],
        (false, true) => &[b"close"],
        (false, false) => &[],
    };
    assert_eq!(connection, expected);
    let twice = h1::forward_response(&again, request, closing, &mut Vec::new())
        .expect("a forwarded head is forwarded again");
    assert_eq!(twice.status, response.status);
    assert_eq!(twice.framing, response.framing);
    Some((response.framing, len))
}

/// Feeds `bytes` to a body whole, then in reads of sizes drawn from `seed`
/// (0: one byte at a time): both must end at the same byte, or both fail.
fn check_body(framing: Framing, bytes: &[u8], seed: u8) {
    let mut whole = Body::new(framing);
    let taken = whole.take(bytes);
    if let Ok(n) = taken {
        assert!(n <= bytes.len());
        assert!(whole.payload <= n as u64);
        assert!(n == bytes.len() || whole.done(), "stopped early at {n}");
        if let Framing::Length(length) = framing {
            assert_eq!(n as u64, length.min(bytes.len() as u64));
            assert_eq!(whole.payload, n as u64);
        }
        if whole.done() {
            assert_eq!(
                whole.take(b"0\r\n\r\n"),
                Ok(0),
                "a body took more after its end"
            );
        }
    }

    let mut cut = Body::new(framing);
    let mut cuts = Cuts(u32::from(seed));
    let mut at = 0;
    let outcome = loop {
        if at == bytes.len() || cut.done() {
            break Ok(at);
        }
        let read = &bytes[at..bytes.len().min(at + cuts.next(seed))];
        match cut.take(read) {
            Err(e) => break Err(e),
            Ok(n) => {
                assert!(n <= read.len());
                at += n;
                assert!(cut.payload <= at as u64);
                if n < read.len() {
                    assert!(cut.done(), "stopped early at {at}");
                }
            }
        }
    };
    assert_eq!(
        outcome.is_ok(),
        taken.is_ok(),
        "whole {taken:?}, cut {outcome:?}"
    );
    if taken.is_ok() {
        assert_eq!(outcome, taken);
        assert_eq!(cut.payload, whole.payload);
        assert_eq!(cut.done(), whole.done());
    }
}

/// Read sizes from 1 to 16, from a small linear congruential generator.
struct Cuts(u32);

impl Cuts {
    fn next(&mut self, seed: u8) -> usize {
        if seed == 0 {
            return 1;
        }
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (self.0 >> 16) as usize % 16
    }
}
