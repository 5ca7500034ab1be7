//! The receiver's decode of a request body: OTLP protobuf and JSON, gzip or not,
//! for traces, metrics and logs, under small bounds so that partial acceptance
//! is exercised. Whatever the input, decoding must not panic, and what it
//! accepts must fit the bounds.
//!
//! The first byte picks the signal, the encoding (a JSON body whose selector has
//! its top bit set is read as otel-run's compact span encoding instead, as
//! marshal data when the next bit is set too), whether the rest is
//! compressed here first (so the decoder sees well-formed gzip of fuzzed
//! content) or given as gzip as it is, and the bounds. What is accepted
//! undecoded (spans in protobuf) must decode with prost.

#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use otel_run::agent::pipeline::Bounds;
use otel_run::agent::receiver::{CompactForm, Encoding, Format, Routed, decode};
use otel_run::telemetry::spans::Spans;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = match (selector & 1, selector >> 7) {
        (0, _) => Encoding::Protobuf,
        (_, 0) => Encoding::Json,
        _ if selector & 0x40 == 0 => Encoding::CompactSpans(CompactForm::Json),
        _ => Encoding::CompactSpans(CompactForm::Marshal),
    };
    let (gzip, body) = match (selector >> 1) & 3 {
        0 | 1 => (false, body.to_vec()),
        2 => (true, compress(body)),
        _ => (true, body.to_vec()),
    };
    let format = Format { encoding, gzip };
    let bounds = Bounds {
        items: 1 + usize::from(selector >> 5) * 3,
        bytes: 2048 << (selector >> 5),
    };
    match (selector >> 3) & 3 {
        0 | 1 => check::<Spans>(&body, format, bounds),
        2 => check::<ResourceMetrics>(&body, format, bounds),
        _ => check::<ResourceLogs>(&body, format, bounds),
    }
});

fn check<T: Routed>(body: &[u8], format: Format, bounds: Bounds) {
    let Ok(decoded) = decode::<T>(body.to_vec(), format, bounds) else {
        return;
    };
    let items: usize = decoded.accepted.iter().map(|(item, _)| item.count()).sum();
    let bytes: usize = decoded.accepted.iter().map(|(_, bytes)| bytes).sum();
    assert!(items <= bounds.items, "{items} records accepted");
    assert!(bytes <= bounds.bytes, "{bytes} bytes accepted");
    assert!(decoded.accepted.iter().all(|(item, _)| item.count() > 0));
    // What is forwarded undecoded, any OTLP peer decodes.
    for (item, bytes) in &decoded.accepted {
        if let Some(encoded) = item.encoded() {
            let message = <T::Resource as prost::Message>::decode(encoded.as_ref());
            assert!(message.is_ok(), "forwarded undecoded but not decodable");
            assert!(*bytes >= encoded.len(), "counted for less than it holds");
        }
    }
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("a Vec grows");
    encoder.finish().expect("a Vec grows")
}
