//! The Zipkin exporter: spans in Zipkin's v2 JSON, posted to
//! `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.

pub mod model;
