//! From a request body to pipeline items, within bounds that are checked before
//! anything is decoded: the one decode path of the receiver, for OTLP/HTTP and
//! OTLP/gRPC alike (and the fuzz target).
//!
//! A walk over the encoding ([`super::wire`] for protobuf, [`super::json`] for
//! JSON) finds each resource, its records and what it will take once decoded;
//! resources are decoded one by one while they fit the bounds, and the records
//! of those that do not are rejected and counted.
//!
//! Spans in protobuf are not decoded at all: the agent forwards what a command
//! sends, and decoding each span only to encode it again was most of what
//! forwarding cost. Each resource becomes a slice of the request body
//! ([`Spans::Encoded`](crate::telemetry::spans::Spans)), which the protobuf
//! exporters send as it is; the walk has checked it as prost would have.

use std::io::Read as _;
use std::mem::size_of;
use std::ops::Range;

use bytes::Bytes;
use flate2::read::GzDecoder;

use super::{Routed, json, json_names, wire};
use crate::agent::pipeline::Bounds;

/// The largest body read, and the largest once decompressed.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
    /// otel-run's own encoding of spans, which its Python shim sends (see
    /// `receiver::compact`), in one of its forms.
    CompactSpans(super::CompactForm),
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub encoding: Encoding,
    pub gzip: bool,
}

/// One resource of a request, as a walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Where its encoding is in the (decompressed) request.
    pub range: Range<usize>,
    /// Spans, data points or log records, as the pipeline counts them (a metric
    /// without data points is one).
    pub items: usize,
    /// About what it takes once decoded (its structs and their contents), and
    /// at least its encoding.
    pub bytes: usize,
}

/// Why a request is not OTLP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// What a request decoded to.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The resources accepted, each with the bytes the queue counts it for.
    pub accepted: Vec<(T, usize)>,
    /// Records in resources over the bounds, not decoded.
    pub rejected: u64,
    /// Records that held nothing to forward (see [`Routed::take_empty`]),
    /// taken out of the resources accepted: their names.
    pub empty: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad gzip body: {0}")]
    Gzip(std::io::Error),
    #[error("the request is larger than {} MiB (once decompressed)", MAX_REQUEST_BYTES >> 20)]
    Oversized,
    #[error("malformed OTLP {signal} request: {message}")]
    Malformed {
        signal: &'static str,
        message: String,
    },
    /// Not one of its resources fits.
    #[error(
        "a request of {items} {records} is larger than otel-run takes at once (at most {} {records} and {} MiB once decoded)",
        bounds.items,
        bounds.bytes >> 20
    )]
    TooLarge {
        records: &'static str,
        items: u64,
        bounds: Bounds,
    },
}

/// Decodes a request body of `T`'s signal: the resources that fit `bounds`, in
/// order, and the count of records rejected. Resources without records are
/// checked and left out: there is nothing to forward.
///
/// Items forwarded undecoded ([`Routed::forwarded`]) share the body, which lives
/// as long as one of them: each is counted for at least its own bytes, and when
/// the body holds more than the items are counted for (resources rejected, other
/// fields), they are copied out of it rather than keep it all.
pub fn decode<T: Routed>(
    body: impl Into<Bytes>,
    format: Format,
    bounds: Bounds,
) -> Result<Decoded<T>, DecodeError> {
    let body = body.into();
    if body.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::Oversized);
    }
    let body = if format.gzip { gunzip(&body)? } else { body };
    let is_json = match format.encoding {
        Encoding::CompactSpans(form) => return compact::<T>(&body, form, bounds),
        Encoding::Json => true,
        Encoding::Protobuf => false,
    };
    let named;
    let body_slice = if is_json {
        named = json_names::lower_camel_keys(&body);
        &named[..]
    } else {
        &body[..]
    };
    let signal = T::SIGNAL.name();
    let malformed = |message: String| DecodeError::Malformed { signal, message };
    let records = T::SIGNAL.records();
    let mut decoded = Decoded {
        accepted: Vec::new(),
        rejected: 0,
        empty: Vec::new(),
    };
    let (mut items, mut bytes) = (0usize, 0usize);
    let mut take = |part: Part| -> Result<(), DecodeError> {
        let fits = items.saturating_add(part.items) <= bounds.items
            && bytes.saturating_add(part.bytes) <= bounds.bytes;
        if !fits {
            decoded.rejected += part.items as u64;
            return Ok(());
        }
        if !is_json && let Some(item) = T::forwarded(body.slice(part.range.clone()), part.items) {
            if part.items > 0 {
                items += part.items;
                bytes += part.bytes;
                decoded.accepted.push((item, part.bytes));
            }
            return Ok(());
        }
        let encoded = &body_slice[part.range];
        let mut resource = if is_json {
            serde_json::from_slice::<T::Resource>(encoded).map_err(|e| malformed(e.to_string()))?
        } else {
            <T::Resource as prost::Message>::decode(encoded)
                .map_err(|e| malformed(e.to_string()))?
        };
        T::take_empty(&mut resource, &mut decoded.empty);
        let item: T = resource.into();
        if item.count() > 0 {
            items += part.items;
            bytes += part.bytes;
            decoded.accepted.push((item, part.bytes));
        }
        Ok(())
    };
    let item_size = size_of::<T>();
    let walk_error = |e: Malformed| malformed(e.0.to_string());
    if is_json {
        for part in json::parts(body_slice, T::JSON_FIELD, T::SHAPE, item_size) {
            take(part.map_err(walk_error)?)?;
        }
    } else {
        for part in wire::parts(body_slice, T::KIND, item_size) {
            take(part.map_err(walk_error)?)?;
        }
    }
    let counted: usize = decoded.accepted.iter().map(|(_, bytes)| bytes).sum();
    if counted < body.len() {
        for (item, _) in &mut decoded.accepted {
            if let Some(shared) = item.encoded() {
                let count = item.count();
                *item = T::forwarded(Bytes::copy_from_slice(&shared), count)
                    .expect("an item held encoded is one forwarded");
            }
        }
    }
    if decoded.accepted.is_empty() && decoded.rejected > 0 {
        return Err(DecodeError::TooLarge {
            records,
            items: decoded.rejected,
            bounds,
        });
    }
    Ok(decoded)
}

/// A body in otel-run's compact encoding: decoded whole (it is as large as the
/// OTLP it stands for, within the same limit), then its resources taken in
/// order while they fit `bounds`, as [`decode`] takes those of OTLP.
fn compact<T: Routed>(
    body: &[u8],
    form: super::CompactForm,
    bounds: Bounds,
) -> Result<Decoded<T>, DecodeError> {
    let signal = T::SIGNAL.name();
    let resources = T::compact(body, form)
        .unwrap_or_else(|| {
            Err(format!(
                "otel-run's compact encoding holds only spans, not {signal}"
            ))
        })
        .map_err(|message| DecodeError::Malformed { signal, message })?;
    let mut decoded = Decoded {
        accepted: Vec::new(),
        rejected: 0,
        empty: Vec::new(),
    };
    let (mut items, mut bytes) = (0usize, 0usize);
    for resource in resources {
        let item: T = resource.into();
        let count = item.count();
        // What the walks count a decoded resource for: its structs and their
        // contents, about twice its encoding.
        let size = size_of::<T>() + 2 * item.encoded_len();
        if items.saturating_add(count) > bounds.items || bytes.saturating_add(size) > bounds.bytes {
            decoded.rejected += count as u64;
            continue;
        }
        items += count;
        bytes += size;
        decoded.accepted.push((item, size));
    }
    if decoded.accepted.is_empty() && decoded.rejected > 0 {
        return Err(DecodeError::TooLarge {
            records: T::SIGNAL.records(),
            items: decoded.rejected,
            bounds,
        });
    }
    Ok(decoded)
}

fn gunzip(body: &[u8]) -> Result<Bytes, DecodeError> {
    let mut inflated = Vec::new();
    GzDecoder::new(body)
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(DecodeError::Gzip)?;
    if inflated.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::Oversized);
    }
    // Items forwarded keep it: without the room it grew by.
    inflated.shrink_to_fit();
    Ok(inflated.into())
}

#[cfg(test)]
mod tests;
