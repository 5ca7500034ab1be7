//! A walk over an OTLP protobuf request that allocates nothing: for each of its
//! resources (`ResourceSpans`, `ResourceMetrics`, `ResourceLogs`), where it is,
//! how many records it holds and about how many bytes it takes once decoded.
//!
//! Decoding is what a hostile request amplifies: the two bytes of an empty
//! `Span` become a struct of a few hundred bytes, so 16 MiB of them would take
//! gigabytes. The walk knows the OTLP schema (which fields are messages, strings
//! or repeated numbers) and prices each field as prost would allocate it, so the
//! receiver decides what to decode before anything is allocated.
//!
//! Spans are forwarded as they arrive, without being decoded (see
//! [`super::decode`]), so for them the walk is also the check prost's decoding
//! was: every string is UTF-8, every field of the traces schema has its wire
//! type, and nesting stays within prost's limit, counted from the request as a
//! backend decoding the forwarded request counts it. What the walk accepts, any
//! OTLP peer decodes.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::trace::v1 as trace;

use super::decode::{Malformed, Part};

/// The nesting prost accepts (its recursion limit).
const MAX_DEPTH: u32 = 100;

/// The OTLP messages, as far as the walk needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    Buckets,
    SummaryDataPoint,
    ValueAtQuantile,
    Exemplar,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a field decodes to.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A message: an element of a `Vec` when repeated (its struct is allocated),
    /// else held inside its parent's struct.
    Message(Kind, bool),
    /// Bytes: its content is allocated.
    Bytes,
    /// A string: its content is allocated, and must be UTF-8.
    String,
    /// One element of a repeated string.
    RepeatedString,
    /// A number of the traces schema (or the messages it shares), which prost
    /// reads only in its wire type.
    Number(WireType),
    /// A repeated number, packed or not; packed varints take 8 bytes for each
    /// byte that ends one.
    RepeatedNumber { varint: bool },
    /// A number, or a field prost skips: nothing is allocated.
    Other,
}

impl Kind {
    /// The struct prost decodes this message to.
    fn size(self) -> usize {
        use Kind::*;
        match self {
            ResourceSpans => size_of::<trace::ResourceSpans>(),
            ScopeSpans => size_of::<trace::ScopeSpans>(),
            Span => size_of::<trace::Span>(),
            Event => size_of::<trace::span::Event>(),
            Link => size_of::<trace::span::Link>(),
            Status => size_of::<trace::Status>(),
            ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
            ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
            Metric => size_of::<metrics::Metric>(),
            Gauge => size_of::<metrics::Gauge>(),
            Sum => size_of::<metrics::Sum>(),
            Histogram => size_of::<metrics::Histogram>(),
            ExponentialHistogram => size_of::<metrics::ExponentialHistogram>(),
            Summary => size_of::<metrics::Summary>(),
            NumberDataPoint => size_of::<metrics::NumberDataPoint>(),
            HistogramDataPoint => size_of::<metrics::HistogramDataPoint>(),
            ExponentialHistogramDataPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
            Buckets => size_of::<metrics::exponential_histogram_data_point::Buckets>(),
            SummaryDataPoint => size_of::<metrics::SummaryDataPoint>(),
            ValueAtQuantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
            Exemplar => size_of::<metrics::Exemplar>(),
            ResourceLogs => size_of::<logs::ResourceLogs>(),
            ScopeLogs => size_of::<logs::ScopeLogs>(),
            LogRecord => size_of::<logs::LogRecord>(),
            Resource => size_of::<opentelemetry_proto::tonic::resource::v1::Resource>(),
            Scope => size_of::<common::InstrumentationScope>(),
            EntityRef => size_of::<common::EntityRef>(),
            KeyValue => size_of::<common::KeyValue>(),
            AnyValue => size_of::<common::AnyValue>(),
            ArrayValue => size_of::<common::ArrayValue>(),
            KeyValueList => size_of::<common::KeyValueList>(),
        }
    }

    /// Whether this message is one record: a span, a log record or a data point.
    fn is_record(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Span | LogRecord
                | NumberDataPoint
                | HistogramDataPoint
                | ExponentialHistogramDataPoint
                | SummaryDataPoint
        )
    }

    /// Field `tag` of this message, from the OTLP .proto files.
    #[inline(always)]
    fn field(self, tag: u32) -> Field {
        use Field::{Bytes, Number, Other, RepeatedNumber, RepeatedString, String};
        use Kind::*;
        use WireType::{Fixed32, Fixed64, Varint};
        let one = |kind| Field::Message(kind, false);
        let many = |kind| Field::Message(kind, true);
        match (self, tag) {
            (AnyValue, 1) => String,
            (AnyValue, 7) => Bytes,
            (AnyValue, 2 | 3 | 8) => Number(Varint),
            (AnyValue, 4) => Number(Fixed64),
            (AnyValue, 5) => one(ArrayValue),
            (AnyValue, 6) => one(KeyValueList),
            (ArrayValue, 1) => many(AnyValue),
            (KeyValueList, 1) => many(KeyValue),
            (KeyValue, 1) => String,
            (KeyValue, 2) => one(AnyValue),
            (KeyValue, 3) => Number(Varint),
            (Scope, 1 | 2) => String,
            (Scope, 3) => many(KeyValue),
            (Scope, 4) => Number(Varint),
            (EntityRef, 1 | 2) => String,
            (EntityRef, 3 | 4) => RepeatedString,
            (Resource, 1) => many(KeyValue),
            (Resource, 2) => Number(Varint),
            (Resource, 3) => many(EntityRef),

            (ResourceSpans, 1) | (ResourceMetrics, 1) | (ResourceLogs, 1) => one(Resource),
            (ResourceSpans, 2) => many(ScopeSpans),
            (ResourceMetrics, 2) => many(ScopeMetrics),
            (ResourceLogs, 2) => many(ScopeLogs),
            (ResourceSpans | ResourceMetrics | ResourceLogs, 3) => String,
            (ScopeSpans | ScopeMetrics | ScopeLogs, 1) => one(Scope),
            (ScopeSpans, 2) => many(Span),
            (ScopeMetrics, 2) => many(Metric),
            (ScopeLogs, 2) => many(LogRecord),
            (ScopeSpans | ScopeMetrics | ScopeLogs, 3) => String,

            (Span, 1 | 2 | 4) => Bytes,
            (Span, 3 | 5) => String,
            (Span, 6 | 10 | 12 | 14) => Number(Varint),
            (Span, 7 | 8) => Number(Fixed64),
            (Span, 9) => many(KeyValue),
            (Span, 11) => many(Event),
            (Span, 13) => many(Link),
            (Span, 15) => one(Status),
            (Span, 16) => Number(Fixed32),
            (Event, 1) => Number(Fixed64),
            (Event, 2) => String,
            (Event, 3) => many(KeyValue),
            (Event, 4) => Number(Varint),
            (Link, 1 | 2) => Bytes,
            (Link, 3) => String,
            (Link, 4) => many(KeyValue),
            (Link, 5) => Number(Varint),
            (Link, 6) => Number(Fixed32),
            (Status, 2) => String,
            (Status, 3) => Number(Varint),

            (LogRecord, 3 | 9 | 10 | 12) => Bytes,
            (LogRecord, 5) => one(AnyValue),
            (LogRecord, 6) => many(KeyValue),

            (Metric, 1..=3) => Bytes,
            (Metric, 12) => many(KeyValue),
            (Metric, 5) => one(Gauge),
            (Metric, 7) => one(Sum),
            (Metric, 9) => one(Histogram),
            (Metric, 10) => one(ExponentialHistogram),
            (Metric, 11) => one(Summary),
            (Gauge | Sum, 1) => many(NumberDataPoint),
            (Histogram, 1) => many(HistogramDataPoint),
            (ExponentialHistogram, 1) => many(ExponentialHistogramDataPoint),
            (Summary, 1) => many(SummaryDataPoint),
            (NumberDataPoint, 7) => many(KeyValue),
            (NumberDataPoint, 5) => many(Exemplar),
            (HistogramDataPoint, 9) => many(KeyValue),
            (HistogramDataPoint, 6 | 7) => RepeatedNumber { varint: false },
            (HistogramDataPoint, 8) => many(Exemplar),
            (ExponentialHistogramDataPoint, 1) => many(KeyValue),
            (ExponentialHistogramDataPoint, 8 | 9) => one(Buckets),
            (ExponentialHistogramDataPoint, 11) => many(Exemplar),
            (Buckets, 2) => RepeatedNumber { varint: true },
            (SummaryDataPoint, 7) => many(KeyValue),
            (SummaryDataPoint, 6) => many(ValueAtQuantile),
            (Exemplar, 7) => many(KeyValue),
            (Exemplar, 4 | 5) => Bytes,
            _ => Other,
        }
    }
}

/// The resources of an encoded `Export*ServiceRequest` whose field 1 holds
/// `kind` messages, each counted with `item_size` bytes for the queue item it
/// becomes. Other fields are skipped, as prost skips unknown fields.
pub fn parts(request: &[u8], kind: Kind, item_size: usize) -> Parts<'_> {
    Parts {
        reader: Reader {
            buf: request,
            pos: 0,
        },
        kind,
        item_size,
    }
}

pub struct Parts<'a> {
    reader: Reader<'a>,
    kind: Kind,
    item_size: usize,
}

impl Iterator for Parts<'_> {
    type Item = Result<Part, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.step();
        if next.is_err() {
            // One error ends the walk.
            self.reader.pos = self.reader.buf.len();
        }
        next.transpose()
    }
}

impl Parts<'_> {
    fn step(&mut self) -> Result<Option<Part>, Malformed> {
        while !self.reader.is_empty() {
            let (tag, wire) = self.reader.key()?;
            if tag != 1 {
                self.reader.skip(tag, wire, 0)?;
                continue;
            }
            if wire != WireType::Len {
                return Err(Malformed("a resource is not a message"));
            }
            let body = self.reader.len_delimited()?;
            let stats = message(body, self.kind, 1)?;
            let end = self.reader.pos;
            return Ok(Some(Part {
                range: end - body.len()..end,
                items: stats.items,
                // A resource forwarded undecoded holds its encoding.
                bytes: stats.bytes.max(body.len()).saturating_add(self.item_size),
            }));
        }
        Ok(None)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    items: usize,
    bytes: usize,
}

/// Walks one message: its records and the bytes its fields allocate (its own
/// struct is its parent's to count).
fn message(buf: &[u8], kind: Kind, depth: u32) -> Result<Stats, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("messages nested too deep"));
    }
    let mut stats = Stats::default();
    let mut reader = Reader { buf, pos: 0 };
    while !reader.is_empty() {
        let (tag, wire) = reader.key()?;
        let field = kind.field(tag);
        let bytes = match (field, wire) {
            (Field::Message(child, repeated), WireType::Len) => {
                let body = reader.len_delimited()?;
                let inner = match child {
                    Kind::KeyValue => key_value(body, depth + 1)?,
                    _ => message(body, child, depth + 1)?,
                };
                stats.items += inner.items;
                inner.bytes + if repeated { child.size() } else { 0 }
            }
            (Field::Bytes, WireType::Len) => reader.len_delimited()?.len(),
            (Field::String, WireType::Len) => reader.string()?.len(),
            (Field::RepeatedString, WireType::Len) => size_of::<String>() + reader.string()?.len(),
            (Field::Number(expected), _) if wire == expected => {
                reader.number(wire)?;
                0
            }
            (Field::RepeatedNumber { varint }, WireType::Len) => {
                let packed = reader.len_delimited()?;
                let numbers = if varint {
                    packed.iter().filter(|b| *b & 0x80 == 0).count()
                } else {
                    packed.len() / 8
                };
                numbers * 8
            }
            (Field::RepeatedNumber { varint }, _)
                if wire
                    == if varint {
                        WireType::Varint
                    } else {
                        WireType::Fixed64
                    } =>
            {
                reader.number(wire)?;
                8
            }
            (
                Field::Message(..)
                | Field::Bytes
                | Field::String
                | Field::RepeatedString
                | Field::RepeatedNumber { .. }
                | Field::Number(_),
                _,
            ) => {
                return Err(Malformed("a field has the wrong wire type"));
            }
            (Field::Other, _) => {
                reader.skip(tag, wire, depth)?;
                0
            }
        };
        stats.bytes = stats.bytes.saturating_add(bytes);
    }
    if kind.is_record() {
        stats.items = 1;
    } else if kind == Kind::Metric {
        stats.items = stats.items.max(1);
    }
    Ok(stats)
}

/// Walks an attribute. Most are a key and a string, bool, int or double value,
/// ten or so a span: those are read here at once, field after field in the
/// order prost writes them, rather than by the walk's dispatch on each field.
/// Any other shape (another order, an array, a field repeated, an error) is
/// walked as any message.
#[inline(always)]
fn key_value(buf: &[u8], depth: u32) -> Result<Stats, Malformed> {
    let usual = || -> Option<usize> {
        // The value's `AnyValue` is one level down, within prost's limit.
        if depth >= MAX_DEPTH {
            return None;
        }
        let mut reader = Reader { buf, pos: 0 };
        let string = |reader: &mut Reader<'_>| reader.string().ok().map(<[u8]>::len);
        // Field 1 (`key`) and field 2 (`value`), length-delimited.
        if reader.byte()? != 0x0a {
            return None;
        }
        let key = string(&mut reader)?;
        if reader.byte()? != 0x12 {
            return None;
        }
        let mut value = Reader {
            buf: reader.len_delimited().ok()?,
            pos: 0,
        };
        if !reader.is_empty() {
            return None;
        }
        let content = match value.byte()? {
            // string_value (1)
            0x0a => string(&mut value)?,
            // bool_value (2), int_value (3), string_value_strindex (8): varints
            0x10 | 0x18 | 0x40 => value.varint().ok().map(|_| 0)?,
            // double_value (4)
            0x21 => value.take(8).ok().map(|_| 0)?,
            _ => return None,
        };
        value.is_empty().then_some(key + content)
    };
    match usual() {
        Some(bytes) => Ok(Stats { items: 0, bytes }),
        None => message(buf, Kind::KeyValue, depth),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    // The reader's steps run for every field of every span forwarded: they are
    // inlined into the walk, and a one-byte varint (most keys and lengths) is
    // read without the loop.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Malformed> {
        if let Some(&byte) = self.buf.get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(byte.into());
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(Malformed("a varint is cut short"))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(Malformed("a varint overflows"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("a varint overflows"))
    }

    #[inline(always)]
    fn key(&mut self) -> Result<(u32, WireType), Malformed> {
        let key = u32::try_from(self.varint()?).map_err(|_| Malformed("a field key overflows"))?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(Malformed("a field number is 0"));
        }
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return Err(Malformed("a field has an unknown wire type")),
        };
        Ok((tag, wire))
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(Malformed("a field is cut short"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    #[inline(always)]
    fn len_delimited(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        self.take(usize::try_from(len).map_err(|_| Malformed("a field is cut short"))?)
    }

    #[inline(always)]
    /// A string's bytes, once checked to be UTF-8 (ASCII first: most are).
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let bytes = self.len_delimited()?;
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(bytes)
        } else {
            Err(Malformed("a string is not UTF-8"))
        }
    }

    /// Reads past a number of wire type `wire`.
    #[inline(always)]
    fn number(&mut self, wire: WireType) -> Result<(), Malformed> {
        match wire {
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
            _ => self.varint().map(drop),
        }
    }

    /// Skips a field's value, groups included (prost skips them as unknown), in
    /// a message `depth` levels down from the request: prost skips nothing at
    /// its nesting limit.
    fn skip(&mut self, tag: u32, wire: WireType, depth: u32) -> Result<(), Malformed> {
        if depth >= MAX_DEPTH {
            return Err(Malformed("messages nested too deep"));
        }
        match wire {
            WireType::Varint | WireType::Fixed64 | WireType::Fixed32 => self.number(wire),
            WireType::Len => self.len_delimited().map(drop),
            WireType::StartGroup => loop {
                if self.is_empty() {
                    return Err(Malformed("a group is not closed"));
                }
                let (inner, inner_wire) = self.key()?;
                if inner_wire == WireType::EndGroup {
                    return if inner == tag {
                        Ok(())
                    } else {
                        Err(Malformed("a group is closed by another"))
                    };
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            WireType::EndGroup => Err(Malformed("a group ends that did not start")),
        }
    }
}
