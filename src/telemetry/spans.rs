//! What the traces pipeline carries: OTLP `ResourceSpans` messages as received,
//! or spans otel-run made itself and wrote straight into protobuf.
//!
//! The proxies make a span per request. Building each as a `Span` message (a
//! `String` for every attribute's key and value) and encoding it afterwards
//! kept the agent busy allocating and freeing; [`SpanBatch`] writes the encoding
//! directly, and the protobuf exporters send those bytes as they are. Spans
//! received in protobuf are kept as the bytes received, the same way. Only the
//! JSON, console, Zipkin and viewer exporters decode them.

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::Limits;

/// One item of the traces pipeline.
#[derive(Debug, Clone)]
pub enum Spans {
    Message(ResourceSpans),
    /// A `ResourceSpans` message already encoded (by `SpanBatch`, or as
    /// received), and how many spans it holds.
    Encoded {
        bytes: Bytes,
        count: usize,
    },
}

impl Default for Spans {
    fn default() -> Spans {
        Spans::Message(ResourceSpans::default())
    }
}

impl From<ResourceSpans> for Spans {
    fn from(message: ResourceSpans) -> Spans {
        Spans::Message(message)
    }
}

impl Spans {
    pub fn count(&self) -> usize {
        match self {
            Spans::Message(m) => m.scope_spans.iter().map(|s| s.spans.len()).sum(),
            Spans::Encoded { count, .. } => *count,
        }
    }

    /// The message, decoded when it was encoded.
    pub fn message(&self) -> std::borrow::Cow<'_, ResourceSpans> {
        match self {
            Spans::Message(m) => std::borrow::Cow::Borrowed(m),
            Spans::Encoded { bytes, .. } => std::borrow::Cow::Owned(
                // Written by `SpanBatch` in this process, or received and
                // checked by the receiver's walk as prost decodes: decoding
                // cannot fail unless either is wrong, which their tests check.
                ResourceSpans::decode(bytes.as_ref()).unwrap_or_default(),
            ),
        }
    }
}

impl Message for Spans {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Spans::Message(m) => m.encode_raw(buf),
            Spans::Encoded { bytes, .. } => buf.put_slice(bytes),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if let Spans::Encoded { .. } = self {
            *self = Spans::Message(self.message().into_owned());
        }
        match self {
            Spans::Message(m) => m.merge_field(tag, wire_type, buf, ctx),
            Spans::Encoded { .. } => unreachable!("made a message above"),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Spans::Message(m) => m.encoded_len(),
            Spans::Encoded { bytes, .. } => bytes.len(),
        }
    }

    fn clear(&mut self) {
        *self = Spans::default();
    }
}

impl serde::Serialize for Spans {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.message().serialize(serializer)
    }
}

/// Spans of one resource and scope, written into protobuf as they come.
pub struct SpanBatch {
    /// `resource` and the start of `scope_spans`, encoded once.
    resource: Vec<u8>,
    scope: Vec<u8>,
    /// The spans, after `headroom` bytes where `take` writes what comes
    /// before them: the batch's bytes are never copied whole.
    spans: Vec<u8>,
    headroom: usize,
    count: usize,
    scratch: Vec<u8>,
    limits: Limits,
}

impl SpanBatch {
    pub fn new(resource: &Resource, scope: &InstrumentationScope, limits: Limits) -> SpanBatch {
        let resource = resource.encode_to_vec();
        let scope = scope.encode_to_vec();
        let headroom = head_room(resource.len(), scope.len());
        SpanBatch {
            resource,
            scope,
            spans: vec![0; headroom],
            headroom,
            count: 0,
            scratch: Vec::with_capacity(512),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Starts the next span; it joins the batch when [`SpanWriter::end`] is called.
    pub fn span(&mut self, head: SpanHead<'_>) -> SpanWriter<'_> {
        self.scratch.clear();
        let buf = &mut self.scratch;
        bytes_field(1, &head.trace_id, buf);
        bytes_field(2, &head.span_id, buf);
        if !head.trace_state.is_empty() {
            bytes_field(3, head.trace_state.as_bytes(), buf);
        }
        if let Some(parent) = head.parent {
            bytes_field(4, &parent, buf);
        }
        if !head.name.is_empty() {
            bytes_field(5, head.name.as_bytes(), buf);
        }
        encode_key(6, WireType::Varint, buf);
        encode_varint(head.kind as u64, buf);
        encode_key(7, WireType::SixtyFourBit, buf);
        buf.put_u64_le(head.start);
        encode_key(8, WireType::SixtyFourBit, buf);
        buf.put_u64_le(head.end);
        SpanWriter {
            batch: self,
            attributes: 0,
            dropped: 0,
            flags: head.flags,
        }
    }

    /// The spans written so far, as one pipeline item; the batch starts empty again.
    pub fn take(&mut self) -> Spans {
        let spans_len = self.spans.len() - self.headroom;
        let scope_spans_len = field_len(1, self.scope.len()) + spans_len;
        let mut head = Vec::with_capacity(self.headroom);
        bytes_field(1, &self.resource, &mut head);
        encode_key(2, WireType::LengthDelimited, &mut head);
        encode_varint(scope_spans_len as u64, &mut head);
        bytes_field(1, &self.scope, &mut head);
        let start = self.headroom - head.len();
        self.spans[start..self.headroom].copy_from_slice(&head);
        // The next batch is likely the size of this one.
        let mut next = Vec::with_capacity(self.spans.len());
        next.resize(self.headroom, 0);
        let bytes = Bytes::from(std::mem::replace(&mut self.spans, next)).slice(start..);
        let count = std::mem::take(&mut self.count);
        Spans::Encoded { bytes, count }
    }
}

/// What every span has, written before its attributes.
pub struct SpanHead<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: &'a str,
    pub parent: Option<[u8; 8]>,
    /// The W3C flags and the OTLP "parent is remote" bits.
    pub flags: u32,
    pub name: &'a str,
    /// `SpanKind` as its number.
    pub kind: i32,
    pub start: u64,
    pub end: u64,
}

/// One span being written: its attributes, within the attribute limits, then
/// its status.
pub struct SpanWriter<'a> {
    batch: &'a mut SpanBatch,
    attributes: usize,
    dropped: u32,
    flags: u32,
}

impl SpanWriter<'_> {
    /// Whether one more attribute fits the count limit; counts it dropped if not.
    fn room(&mut self) -> bool {
        if self.batch.limits.keeps(self.attributes) {
            self.attributes += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    pub fn str(&mut self, key: &str, value: &str) {
        if !self.room() {
            return;
        }
        let value = self.batch.limits.cut(value);
        let buf = self.attribute(key, field_len(1, value.len()));
        bytes_field(1, value.as_bytes(), buf);
    }

    pub fn int(&mut self, key: &str, value: i64) {
        if !self.room() {
            return;
        }
        let buf = self.attribute(key, 1 + encoded_len_varint(value as u64));
        encode_key(3, WireType::Varint, buf);
        encode_varint(value as u64, buf);
    }

    /// Writes a `KeyValue` up to its `AnyValue`'s content, which is `value_len`
    /// bytes, for the caller to write.
    fn attribute(&mut self, key: &str, value_len: usize) -> &mut Vec<u8> {
        let buf = &mut self.batch.scratch;
        encode_key(9, WireType::LengthDelimited, buf);
        encode_varint(
            (field_len(1, key.len()) + field_len(2, value_len)) as u64,
            buf,
        );
        bytes_field(1, key.as_bytes(), buf);
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(value_len as u64, buf);
        buf
    }

    /// Writes the status (`StatusCode` as its number) and adds the span to the batch.
    pub fn end(self, code: i32, message: &str) {
        let SpanWriter {
            batch,
            attributes: _,
            dropped,
            flags,
        } = self;
        let buf = &mut batch.scratch;
        if dropped > 0 {
            encode_key(10, WireType::Varint, buf);
            encode_varint(dropped.into(), buf);
        }
        let mut status_len = 0;
        if !message.is_empty() {
            status_len += field_len(2, message.len());
        }
        if code != 0 {
            status_len += 1 + encoded_len_varint(code as u64);
        }
        encode_key(15, WireType::LengthDelimited, buf);
        encode_varint(status_len as u64, buf);
        if !message.is_empty() {
            bytes_field(2, message.as_bytes(), buf);
        }
        if code != 0 {
            encode_key(3, WireType::Varint, buf);
            encode_varint(code as u64, buf);
        }
        // Fields in the order prost writes them, so the bytes are the ones the
        // message would have.
        encode_key(16, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(flags);
        encode_key(2, WireType::LengthDelimited, &mut batch.spans);
        encode_varint(batch.scratch.len() as u64, &mut batch.spans);
        batch.spans.extend_from_slice(&batch.scratch);
        batch.count += 1;
    }
}

fn bytes_field(field: u32, value: &[u8], buf: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

/// The most bytes a `ResourceSpans` takes before its spans: its resource, and
/// the start of its one `ScopeSpans` (key, length of up to 5 bytes, scope).
fn head_room(resource: usize, scope: usize) -> usize {
    let field_max = |len: usize| prost::encoding::key_len(1) + 5 + len;
    field_max(resource) + field_max(0) + field_max(scope)
}

/// The encoded length of a length-delimited field whose content is `len` bytes.
fn field_len(field: u32, len: usize) -> usize {
    prost::encoding::key_len(field) + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, Status};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn head<'a>(name: &'a str, parent: Option<[u8; 8]>) -> SpanHead<'a> {
        SpanHead {
            trace_id: [1; 16],
            span_id: [2; 8],
            trace_state: "k=v",
            parent,
            flags: 0x301,
            name,
            kind: 2,
            start: 1_700_000_000_000_000_000,
            end: 1_700_000_000_000_123_456,
        }
    }

    /// The same spans built as messages by prost.
    fn expected(resource: &Resource, scope: &InstrumentationScope) -> ResourceSpans {
        let span = |name: &str, parent: Option<[u8; 8]>, attributes, dropped, status| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "k=v".into(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x301,
            name: name.into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_123_456,
            attributes,
            dropped_attributes_count: dropped,
            status: Some(status),
            ..Default::default()
        };
        ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope.clone()),
                spans: vec![
                    span(
                        "GET /users/{id}",
                        Some([3; 8]),
                        vec![
                            kv("url.path", Value::StringValue("/users/ünïcode".into())),
                            kv("http.response.status_code", Value::IntValue(200)),
                            kv("big", Value::IntValue(-5)),
                        ],
                        0,
                        Status::default(),
                    ),
                    span(
                        "POST",
                        None,
                        vec![kv("a", Value::StringValue("x".repeat(300)))],
                        0,
                        Status {
                            message: "upstream unreachable".into(),
                            code: 2,
                        },
                    ),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    fn resource_and_scope() -> (Resource, InstrumentationScope) {
        let resource = Resource {
            attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "otel-run/proxy".into(),
            version: "1".into(),
            ..Default::default()
        };
        (resource, scope)
    }

    #[test]
    fn written_spans_decode_to_what_prost_would_have_built() {
        let (resource, scope) = resource_and_scope();
        let mut batch = SpanBatch::new(&resource, &scope, Limits::default());
        let mut span = batch.span(head("GET /users/{id}", Some([3; 8])));
        span.str("url.path", "/users/ünïcode");
        span.int("http.response.status_code", 200);
        span.int("big", -5);
        span.end(0, "");
        let mut span = batch.span(head("POST", None));
        span.str("a", &"x".repeat(300));
        span.end(2, "upstream unreachable");
        assert_eq!(batch.len(), 2);
        let item = batch.take();
        assert!(batch.is_empty());
        assert_eq!(item.count(), 2);
        let want = expected(&resource, &scope);
        assert_eq!(*item.message(), want);
        // Byte for byte what prost writes, so any OTLP peer reads it alike.
        assert_eq!(item.encode_to_vec(), want.encode_to_vec());
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        // The batch is reusable.
        let mut span = batch.span(head("GET /users/{id}", Some([3; 8])));
        span.str("url.path", "/users/ünïcode");
        span.end(0, "");
        let again = batch.take();
        assert_eq!(again.count(), 1);
        let again = again.message();
        assert_eq!(again.resource, want.resource);
        assert_eq!(again.scope_spans[0].scope, want.scope_spans[0].scope);
        assert_eq!(again.scope_spans[0].spans[0].name, "GET /users/{id}");
    }

    #[test]
    fn limits_cut_values_and_count_dropped_attributes() {
        let (resource, scope) = resource_and_scope();
        let mut batch = SpanBatch::new(&resource, &scope, Limits::new(Some(2), Some(3)));
        let mut span = batch.span(head("GET", None));
        span.str("a", "ünïcode");
        span.int("b", 7);
        span.str("c", "dropped");
        span.int("d", 8);
        span.end(0, "");
        let item = batch.take();
        let span = &item.message().scope_spans[0].spans[0];
        assert_eq!(
            span.attributes,
            [
                kv("a", Value::StringValue("ünï".into())),
                kv("b", Value::IntValue(7))
            ]
        );
        assert_eq!(span.dropped_attributes_count, 2);
    }

    #[test]
    fn a_message_item_is_encoded_and_decoded_as_the_message() {
        let (resource, scope) = resource_and_scope();
        let message = expected(&resource, &scope);
        let item = Spans::from(message.clone());
        assert_eq!(item.count(), 2);
        assert_eq!(item.encode_to_vec(), message.encode_to_vec());
        let decoded = Spans::decode(message.encode_to_vec().as_slice()).unwrap();
        assert_eq!(*decoded.message(), message);
    }
}
