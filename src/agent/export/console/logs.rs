//! Log records in the shape of Python's `ConsoleLogRecordExporter`
//! (`ReadableLogRecord.to_json()`): one object per record, snake_case keys, ISO
//! times, `0x` ids (zeros outside a span), the trace flags as a number, bytes as
//! base64.

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};

use super::json::{self, Bytes, Json, hex_id, obj, text};

/// One record per log record of `resource_logs`.
pub fn records(resource_logs: &ResourceLogs) -> Vec<String> {
    let resource = json::resource(resource_logs.resource.as_ref(), &resource_logs.schema_url);
    resource_logs
        .scope_logs
        .iter()
        .flat_map(|s| &s.log_records)
        .map(|record| log_json(record, resource.clone()).record())
        .collect()
}

fn log_json(record: &LogRecord, resource: Json) -> Json {
    // OTLP leaves what Python has as `None` at its zero value.
    let id = |bytes: &[u8], len: usize| {
        if bytes.is_empty() {
            hex_id(&vec![0; len])
        } else {
            hex_id(bytes)
        }
    };
    obj(vec![
        ("body", json::value(record.body.as_ref(), Bytes::Base64)),
        (
            "severity_number",
            if record.severity_number == 0 {
                Json::Null
            } else {
                Json::Int(i64::from(record.severity_number))
            },
        ),
        ("severity_text", json::text_or_null(&record.severity_text)),
        (
            "attributes",
            if record.attributes.is_empty() {
                Json::Null
            } else {
                json::attributes(&record.attributes, Bytes::Base64)
            },
        ),
        (
            "dropped_attributes",
            Json::Int(i64::from(record.dropped_attributes_count)),
        ),
        ("timestamp", json::time(record.time_unix_nano)),
        (
            "observed_timestamp",
            json::time(record.observed_time_unix_nano),
        ),
        ("trace_id", id(&record.trace_id, 16)),
        ("span_id", id(&record.span_id, 8)),
        // The low byte of OTLP's flags is the W3C trace flags.
        ("trace_flags", Json::Int(i64::from(record.flags & 0xff))),
        ("resource", resource),
        ("event_name", text(&record.event_name)),
    ])
}
