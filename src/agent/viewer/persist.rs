//! `--store PATH`: the store kept in a file, so a restart keeps the traces.
//!
//! The file is a sequence of records, each a kind byte (`T` spans, `L` logs),
//! a little-endian `u32` length and one OTLP `ResourceSpans` or `ResourceLogs`
//! message in protobuf. Batches are appended as they arrive; at start the file
//! is replayed into the store, then rewritten with only what the store kept, so
//! it stays within the store's bounds across restarts. A record cut short (the
//! agent killed mid-write) ends the replay: everything before it is kept.
//! Metrics are not kept: they are the latest values, soon sent again.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use super::store::Store;

const SPANS: u8 = b'T';
const LOGS: u8 = b'L';

pub struct Persist {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl Persist {
    /// Replays `path` into `store` (a missing file is an empty store), then
    /// rewrites it with what the store kept and opens it for appending.
    pub fn open(path: &Path, store: &Store) -> std::io::Result<Persist> {
        match File::open(path) {
            Ok(file) => replay(BufReader::new(file), store)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let fresh = path.with_extension("tmp");
        {
            let mut out = BufWriter::new(File::create(&fresh)?);
            write_store(&mut out, store)?;
            out.flush()?;
        }
        std::fs::rename(&fresh, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Persist {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends encoded spans (`logs` false) or logs, on the blocking pool.
    pub async fn append(&self, logs: bool, messages: Vec<Vec<u8>>) -> std::io::Result<()> {
        let kind = if logs { LOGS } else { SPANS };
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            for message in &messages {
                record(&mut buf, kind, message);
            }
            let file = file.lock().unwrap_or_else(|e| e.into_inner());
            (&*file).write_all(&buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

fn record(out: &mut Vec<u8>, kind: u8, message: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message);
}

fn replay(mut input: impl Read, store: &Store) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    loop {
        if read_full(&mut input, &mut head)? {
            return Ok(());
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        if read_full(&mut input, &mut body)? {
            tracing::warn!("the store's file ends with a record cut short: it is left out");
            return Ok(());
        }
        match head[0] {
            SPANS => match ResourceSpans::decode(&body[..]) {
                Ok(m) => store.add_spans(&m),
                Err(e) => {
                    tracing::warn!("a record of the store's file is not OTLP spans ({e}): left out")
                }
            },
            LOGS => match ResourceLogs::decode(&body[..]) {
                Ok(m) => store.add_logs(&m),
                Err(e) => {
                    tracing::warn!("a record of the store's file is not OTLP logs ({e}): left out")
                }
            },
            other => {
                return Err(std::io::Error::other(format!(
                    "not a store file written by otel-run (record kind {other:#x})"
                )));
            }
        }
    }
}

/// Fills `buf`; `true` when the input ended first (cleanly or not).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => return Ok(true),
            n => filled += n,
        }
    }
    Ok(false)
}

/// What the store holds, oldest trace first, one message per span or log.
fn write_store(out: &mut impl Write, store: &Store) -> std::io::Result<()> {
    let mut buf = Vec::new();
    store.read_in_order(|trace| {
        for span in &trace.spans {
            let message = ResourceSpans {
                resource: Some((*span.resource).clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some((*span.scope).clone()),
                    spans: vec![span.item.decode()],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            };
            record(&mut buf, SPANS, &message.encode_to_vec());
        }
        for log in &trace.logs {
            let message = ResourceLogs {
                resource: Some((*log.resource).clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some((*log.scope).clone()),
                    log_records: vec![log.item.clone()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            };
            record(&mut buf, LOGS, &message.encode_to_vec());
        }
    });
    out.write_all(&buf)
}
