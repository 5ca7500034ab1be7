//! The walk of [`super::wire`] over an OTLP/JSON request: each resource's place
//! in the body, its records, and about the bytes it takes once decoded, found
//! without allocating.
//!
//! JSON amplifies too: `{},` is three bytes and an empty `Span` struct a few
//! hundred. Objects are priced as the structs they become, known from where they
//! stand (an element of `spans` is a `Span`); where the walk does not know, as
//! the largest OTLP struct.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::trace::v1 as trace;

use super::decode::{Malformed, Part};

/// The nesting serde_json accepts (its recursion limit).
pub const MAX_DEPTH: u32 = 128;

/// The slot of a string or number in an array.
const SCALAR_SIZE: usize = size_of::<String>();

/// How a signal's records nest inside a resource, in OTLP/JSON names.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The field of the resource holding its scopes.
    scopes: &'static str,
    scope_size: usize,
    /// The field of a scope holding its records (metrics, for metrics).
    records: &'static str,
    record_size: usize,
    /// Records are data points inside metrics.
    metrics: bool,
}

pub const TRACES: Shape = Shape {
    scopes: "scopeSpans",
    scope_size: size_of::<trace::ScopeSpans>(),
    records: "spans",
    record_size: size_of::<trace::Span>(),
    metrics: false,
};

pub const LOGS: Shape = Shape {
    scopes: "scopeLogs",
    scope_size: size_of::<logs::ScopeLogs>(),
    records: "logRecords",
    record_size: size_of::<logs::LogRecord>(),
    metrics: false,
};

pub const METRICS: Shape = Shape {
    scopes: "scopeMetrics",
    scope_size: size_of::<metrics::ScopeMetrics>(),
    records: "metrics",
    record_size: size_of::<metrics::Metric>(),
    metrics: true,
};

const POINT_SIZE: usize = max(&[
    size_of::<metrics::NumberDataPoint>(),
    size_of::<metrics::HistogramDataPoint>(),
    size_of::<metrics::ExponentialHistogramDataPoint>(),
    size_of::<metrics::SummaryDataPoint>(),
]);

/// Any object of a request whose place says nothing.
const OBJECT_SIZE: usize = max(&[
    size_of::<trace::ScopeSpans>(),
    size_of::<trace::Span>(),
    size_of::<trace::span::Event>(),
    size_of::<trace::span::Link>(),
    size_of::<logs::ScopeLogs>(),
    size_of::<logs::LogRecord>(),
    size_of::<metrics::ScopeMetrics>(),
    size_of::<metrics::Metric>(),
    POINT_SIZE,
    size_of::<metrics::Exemplar>(),
    size_of::<metrics::summary_data_point::ValueAtQuantile>(),
    size_of::<common::EntityRef>(),
    size_of::<common::KeyValue>(),
    size_of::<common::AnyValue>(),
]);

const fn max(sizes: &[usize]) -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > max {
            max = sizes[i];
        }
        i += 1;
    }
    max
}

/// The member names whose place matters.
const NAMES: &[&str] = &[
    "resourceSpans",
    "resourceMetrics",
    "resourceLogs",
    "scopeSpans",
    "scopeMetrics",
    "scopeLogs",
    "spans",
    "metrics",
    "logRecords",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "dataPoints",
    "attributes",
];

/// Where a value stands inside a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Resource,
    Scopes,
    Scope,
    Records,
    /// A span or a log record.
    Record,
    Metric,
    MetricData,
    Points,
    Point,
    Attributes,
    Elsewhere,
}

impl Shape {
    /// The place of the value of member `key` of an object at `at`.
    fn member(&self, at: At, key: &[u8]) -> At {
        match at {
            At::Resource if key == self.scopes.as_bytes() => At::Scopes,
            At::Scope if key == self.records.as_bytes() => At::Records,
            At::Metric
                if matches!(
                    key,
                    b"gauge" | b"sum" | b"histogram" | b"exponentialHistogram" | b"summary"
                ) =>
            {
                At::MetricData
            }
            At::MetricData if key == b"dataPoints" => At::Points,
            _ if key == b"attributes" => At::Attributes,
            _ => At::Elsewhere,
        }
    }

    /// The place of the elements of an array at `at`, and the size of each
    /// element that is an object.
    fn element(&self, at: At) -> (At, usize) {
        match at {
            At::Scopes => (At::Scope, self.scope_size),
            At::Records if self.metrics => (At::Metric, self.record_size),
            At::Records => (At::Record, self.record_size),
            At::Points => (At::Point, POINT_SIZE),
            At::Attributes => (At::Elsewhere, size_of::<common::KeyValue>()),
            _ => (At::Elsewhere, OBJECT_SIZE),
        }
    }
}

/// The resources of an `Export*ServiceRequest` in OTLP/JSON, the elements of its
/// member `field`, each counted with `item_size` bytes for the queue item it
/// becomes. Other members are skipped, as serde skips unknown fields.
pub fn parts<'a>(
    request: &'a [u8],
    field: &'static str,
    shape: Shape,
    item_size: usize,
) -> Parts<'a> {
    Parts {
        walk: Walk {
            buf: request,
            pos: 0,
            shape,
        },
        field,
        item_size,
        state: State::Start,
        seen: false,
    }
}

pub struct Parts<'a> {
    walk: Walk<'a>,
    field: &'static str,
    item_size: usize,
    state: State,
    seen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Member,
    Element,
    AfterMember,
    End,
    Done,
}

impl Iterator for Parts<'_> {
    type Item = Result<Part, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.step();
        if next.is_err() {
            self.state = State::Done;
        }
        next.transpose()
    }
}

impl Parts<'_> {
    fn step(&mut self) -> Result<Option<Part>, Malformed> {
        let walk = &mut self.walk;
        loop {
            walk.space();
            match self.state {
                State::Start => {
                    walk.expect(b'{')?;
                    walk.space();
                    self.state = if walk.eat(b'}') {
                        State::End
                    } else {
                        State::Member
                    };
                }
                State::Member => {
                    let ours = walk.key()? == Key::Is(self.field);
                    walk.space();
                    walk.expect(b':')?;
                    walk.space();
                    if !ours {
                        walk.value(At::Elsewhere, 1)?;
                        self.state = State::AfterMember;
                        continue;
                    }
                    if std::mem::replace(&mut self.seen, true) {
                        return Err(Malformed("a request names its resources twice"));
                    }
                    walk.expect(b'[')?;
                    walk.space();
                    self.state = if walk.eat(b']') {
                        State::AfterMember
                    } else {
                        State::Element
                    };
                }
                State::Element => {
                    let start = walk.pos;
                    let (stats, _) = walk.value(At::Resource, 2)?;
                    let end = walk.pos;
                    walk.space();
                    if !walk.eat(b',') {
                        walk.expect(b']')?;
                        self.state = State::AfterMember;
                    }
                    return Ok(Some(Part {
                        range: start..end,
                        items: stats.items,
                        bytes: stats.bytes.saturating_add(self.item_size),
                    }));
                }
                State::AfterMember => {
                    if walk.eat(b',') {
                        self.state = State::Member;
                    } else {
                        walk.expect(b'}')?;
                        self.state = State::End;
                    }
                }
                State::End => {
                    if walk.pos < walk.buf.len() {
                        return Err(Malformed("characters after the request"));
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok(None),
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    items: usize,
    bytes: usize,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.items = self.items.saturating_add(other.items);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// A member name, compared once unescaped.
#[derive(Debug, PartialEq, Eq)]
enum Key<'a> {
    Is(&'a str),
    Other,
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    shape: Shape,
}

impl<'a> Walk<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let eaten = self.peek() == Some(byte);
        if eaten {
            self.pos += 1;
        }
        eaten
    }

    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(Malformed("not the OTLP/JSON expected"))
        }
    }

    /// A string's raw contents, escapes included.
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(Malformed("a string is not closed")),
                Some(b'"') => break,
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
        let end = self.pos;
        self.pos += 1;
        Ok(&self.buf[start..end])
    }

    /// A member name, as one of the names the walk looks for.
    fn key(&mut self) -> Result<Key<'static>, Malformed> {
        let raw = self.string()?;
        let mut name = [0u8; 24];
        let Some(len) = unescape(raw, &mut name) else {
            return Ok(Key::Other);
        };
        Ok(NAMES
            .iter()
            .find(|known| known.as_bytes() == &name[..len])
            .map_or(Key::Other, |known| Key::Is(known)))
    }

    /// Walks one value at `at`; says whether it was an object.
    fn value(&mut self, at: At, depth: u32) -> Result<(Stats, bool), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed("values nested too deep"));
        }
        let mut stats = Stats::default();
        match self.peek() {
            Some(b'{') => return Ok((self.object(at, depth)?, true)),
            Some(b'[') => return Ok((self.array(at, depth)?, false)),
            Some(b'"') => stats.bytes = self.string()?.len(),
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(Malformed("not the OTLP/JSON expected"));
                }
            }
        }
        Ok((stats, false))
    }

    fn object(&mut self, at: At, depth: u32) -> Result<Stats, Malformed> {
        self.expect(b'{')?;
        let mut stats = Stats::default();
        self.space();
        if !self.eat(b'}') {
            loop {
                self.space();
                let key = self.key()?;
                self.space();
                self.expect(b':')?;
                self.space();
                let place = match key {
                    Key::Is(name) => self.shape.member(at, name.as_bytes()),
                    Key::Other => At::Elsewhere,
                };
                stats.add(self.value(place, depth + 1)?.0);
                self.space();
                if !self.eat(b',') {
                    self.expect(b'}')?;
                    break;
                }
            }
        }
        match at {
            At::Record | At::Point => stats.items = 1,
            At::Metric => stats.items = stats.items.max(1),
            _ => {}
        }
        Ok(stats)
    }

    fn array(&mut self, at: At, depth: u32) -> Result<Stats, Malformed> {
        self.expect(b'[')?;
        let (place, object_size) = self.shape.element(at);
        let mut stats = Stats::default();
        self.space();
        if self.eat(b']') {
            return Ok(stats);
        }
        loop {
            self.space();
            let (inner, object) = self.value(place, depth + 1)?;
            stats.add(inner);
            stats.bytes =
                stats
                    .bytes
                    .saturating_add(if object { object_size } else { SCALAR_SIZE });
            self.space();
            if !self.eat(b',') {
                self.expect(b']')?;
                return Ok(stats);
            }
        }
    }
}

/// Unescapes a member name into `out`; `None` when it does not fit or is not
/// ASCII (no name the walk looks for is).
fn unescape(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i] {
            b'\\' => {
                i += 1;
                match *raw.get(i)? {
                    b'u' => {
                        let hex = std::str::from_utf8(raw.get(i + 1..i + 5)?).ok()?;
                        i += 4;
                        u8::try_from(u16::from_str_radix(hex, 16).ok()?)
                            .ok()
                            .filter(u8::is_ascii)?
                    }
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    _ => return None,
                }
            }
            byte if byte.is_ascii() => byte,
            _ => return None,
        };
        *out.get_mut(len)? = byte;
        len += 1;
        i += 1;
    }
    Some(len)
}
