//! The receiver's connections: how many may be open, how long a client may take
//! to send its headers and its body, and how many body bytes are read at once.
//!
//! Any local process can connect, so none may hold otel-run's memory or file
//! descriptors for long:
//! - at most [`MAX_CONNECTIONS`] connections are open (fewer when the open files
//!   limit is low); more are closed at once, and so is a connection accepted when
//!   no file descriptor is left. Both are said once and counted.
//! - a connection that has not sent a whole request head within
//!   [`HEADER_TIMEOUT`] is closed; for HTTP/1 this also ends a keep-alive
//!   connection idle that long, as senders reconnect anyway.
//! - a body must arrive within [`BODY_TIMEOUT`] of its request's head, and the
//!   bodies being read take at most [`MAX_READING_BYTES`] together: a request
//!   beyond that is told to retry.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::status::{Rejection, Why};
use crate::agent::report::Reporter;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections the system queues for a listener before they are accepted.
pub const BACKLOG: usize = 1024;
pub const MAX_READING_BYTES: usize = 64 << 20;
/// Request heads are small; hyper's default lets each connection buffer 400 KB.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the connections share.
pub struct Limits {
    max_connections: usize,
    connections: Arc<Semaphore>,
    reading: Arc<Semaphore>,
    refused: AtomicU64,
    /// A descriptor given up to accept, and close, a connection when there are
    /// none left; otherwise it would wait in the backlog with the accept loop
    /// spinning on it.
    spare: Mutex<Option<File>>,
    reporter: Arc<Reporter>,
}

impl Limits {
    /// `max_connections` open at once.
    pub fn new(max_connections: usize, reporter: Arc<Reporter>) -> Limits {
        Limits {
            max_connections,
            connections: Arc::new(Semaphore::new(max_connections)),
            reading: Arc::new(Semaphore::new(MAX_READING_BYTES)),
            refused: AtomicU64::new(0),
            spare: Mutex::new(File::open("/dev/null").ok()),
            reporter,
        }
    }

    /// Connections closed as soon as they were accepted.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }

    fn refuse(&self, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.reporter.connection_refused(why);
    }

    /// Accepts and closes one connection waiting while no descriptor is left.
    async fn shed(&self, listener: &TcpListener) {
        self.refuse("otel-run has no file descriptor left");
        let spare = self.spare.lock().expect("spare lock").take();
        if spare.is_none() {
            // Nothing to give up: wait for a descriptor to be closed.
            sleep(Duration::from_millis(100)).await;
            return;
        }
        drop(spare);
        if let Ok(Ok((stream, _))) = timeout(Duration::from_millis(10), listener.accept()).await {
            drop(stream);
        }
        *self.spare.lock().expect("spare lock") = File::open("/dev/null").ok();
    }
}

/// Serves `app` on `listener` until `stop` is set: then the connections
/// already waiting in its backlog are accepted too, and the listener is closed.
/// The task ends only once every connection it accepted holds its permit, so
/// [`Limits::open`] counts them all from then on.
pub fn spawn(
    listener: TcpListener,
    app: Router,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // A sender that closes its side once its request is sent (one that
        // exits without waiting for the answer) still has the request served:
        // by default hyper drops the request being handled at the end of input.
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder.http2().timer(TokioTimer::new());
    tokio::spawn(async move {
        let serve = |stream: TcpStream| {
            // Taken in the same poll as the accept: no connection is ever
            // accepted and not yet counted when this task is not running.
            let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
                limits.refuse(&format!(
                    "{} connections are open already",
                    limits.max_connections
                ));
                return;
            };
            tokio::spawn(connection(stream, app.clone(), builder.clone(), permit));
        };
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => serve(stream),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    limits.shed(&listener).await;
                }
                Err(e) => {
                    tracing::debug!("the local OTLP receiver could not accept a connection: {e}");
                }
            }
        }
        // What completed its handshake before the stop is still served: read
        // straight from the socket, as the reactor may not have seen it yet.
        // No more than the backlog held, so that a process connecting without
        // end cannot keep this loop (and otel-run's exit) going.
        let Ok(listener) = listener.into_std() else {
            return;
        };
        for _ in 0..BACKLOG {
            match listener.accept() {
                Ok((stream, _)) => match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => serve(stream),
                    Err(e) => tracing::debug!("cannot serve a last connection: {e}"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        limits.refuse("otel-run has no file descriptor left");
                    }
                    // WouldBlock: the backlog is empty.
                    return;
                }
            }
        }
    })
}

/// Serves one connection; it holds `_permit` while open.
async fn connection(
    stream: TcpStream,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    _permit: OwnedSemaphorePermit,
) {
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        let app = TowerToHyperService::new(app);
        hyper::service::service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            hyper::service::Service::call(&app, request)
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // hyper times out HTTP/1 heads once they start; this also covers a client
    // that sends nothing, and HTTP/2 connections, which have no such timeout.
    tokio::select! {
        _ = &mut connection => return,
        _ = sleep(HEADER_TIMEOUT) => {}
    }
    if started.load(Ordering::Relaxed) {
        let _ = connection.await;
    }
}

/// A body read whole, holding its share of [`MAX_READING_BYTES`] while kept.
pub struct Body {
    pub bytes: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Reads a body of at most `limit` bytes within [`BODY_TIMEOUT`].
/// `declared`, the length the request announced, is the buffer's size once
/// the body starts: it then grows no more, and is not copied as it grows.
pub async fn read(
    body: axum::body::Body,
    limit: usize,
    declared: Option<usize>,
    limits: &Limits,
) -> Result<Body, Rejection> {
    let read = async {
        let mut body = body;
        let mut bytes = Vec::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Rejection::new(Why::Malformed, format!("cannot read the request body: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = bytes.len() + data.len();
            if len > limit {
                return Err(too_large(limit));
            }
            if len > bytes.capacity() {
                // What the buffer will take is taken from the budget first.
                let capacity = match declared {
                    Some(declared) if declared >= len => declared,
                    _ => len.max(bytes.capacity() * 2),
                }
                .min(limit);
                let more = u32::try_from(capacity - bytes.capacity()).expect("under the limit");
                let granted = limits
                    .reading
                    .clone()
                    .try_acquire_many_owned(more)
                    .map_err(|_| {
                        Rejection::new(
                            Why::Unavailable,
                            format!(
                                "otel-run is reading {} MiB of requests already",
                                MAX_READING_BYTES >> 20
                            ),
                        )
                    })?;
                match &mut permit {
                    Some(permit) => permit.merge(granted),
                    None => permit = Some(granted),
                }
                bytes.reserve_exact(capacity - bytes.len());
            }
            bytes.extend_from_slice(&data);
        }
        // Spans received are queued as slices of the body: it is kept without
        // the room it grew by.
        bytes.shrink_to_fit();
        Ok(Body {
            bytes,
            _permit: permit,
        })
    };
    timeout(BODY_TIMEOUT, read).await.unwrap_or_else(|_| {
        Err(Rejection::new(
            Why::TimedOut,
            format!(
                "the request body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        ))
    })
}

pub fn too_large(limit: usize) -> Rejection {
    Rejection::new(
        Why::TooLarge,
        format!("the request is larger than {} MiB", limit >> 20),
    )
}
