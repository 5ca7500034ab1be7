//! The reverse proxy: listens in front of the command and sends every request on
//! to it, with one SERVER span per request.
//!
//! HTTP/1.x is relayed on the sockets themselves ([`h1`]): a client connection is
//! one task that owns its upstream connection, reads a request head, writes the
//! upstream's, and passes the bodies on in their own framing as they come. No
//! second task, channel or header map stands between the two sockets, which is
//! what a request costs through a general HTTP client and server. HTTP/2 with
//! prior knowledge (h2c) is served by hyper.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::uri::{Authority, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::Shared;
use super::alarm::Alarm;
use super::h1::{self, Framing, Refusal};
use super::relay::{self, Body};
use super::span::{Exchange, Kind, Requested};
use crate::telemetry::sampler::child_context;

/// How long a kept-alive client connection may sit idle between requests.
const IDLE: Duration = Duration::from_secs(60);
/// What is read of a socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, upstream: Authority, shared: Arc<Shared>) {
    let upstream = Arc::new(upstream);
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    loop {
        let (stream, peer) = super::accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        let connection = Connection {
            down_alarm: Alarm::new(now + shared.bounds.header_timeout),
            up_alarm: Alarm::new(now + shared.bounds.timeout),
            shared: shared.clone(),
            upstream: upstream.clone(),
            local,
            peer,
            down: stream,
            down_buf: BytesMut::with_capacity(READ_SIZE),
            up: None,
            out: Vec::with_capacity(1024),
        };
        tokio::spawn(connection.run());
    }
}

/// One client connection and the upstream connection it uses.
struct Connection {
    shared: Arc<Shared>,
    upstream: Arc<Authority>,
    local: SocketAddr,
    peer: SocketAddr,
    down: TcpStream,
    down_buf: BytesMut,
    up: Option<Upstream>,
    /// The head (and the body bytes at hand) being written.
    out: Vec<u8>,
    /// Bounds the waits for the client, and for the upstream's answers.
    down_alarm: Alarm,
    up_alarm: Alarm,
}

struct Upstream {
    stream: TcpStream,
    buf: BytesMut,
}

/// What the two halves of an exchange tell each other (on one thread; atomics
/// only because the connection's task must be `Send`).
#[derive(Default)]
struct Progress {
    /// The whole request body has gone upstream.
    request_done: Flag,
    /// Something of the response has reached the client.
    began: Flag,
    /// The response's status, once its head is read (0 before).
    status: AtomicU16,
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Flag {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Progress {
    fn status(&self) -> Option<u16> {
        Some(self.status.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }
}

/// A request head read from the client, ready to go upstream (in `out`).
struct Parsed {
    request: h1::Request,
    context: crate::telemetry::context::SpanContext,
    parent: Option<crate::telemetry::context::SpanId>,
}

/// How reading a request head ended.
enum Next {
    Request(Box<Parsed>),
    Refused(Refusal),
    /// The client sent part of a head and then nothing within the header timeout.
    TimedOut,
    /// The client closed, or was idle too long: the connection just ends.
    Gone,
}

/// How an exchange's response went.
enum Received {
    /// The whole response reached the client.
    Done {
        status: u16,
        size: u64,
        framing: Framing,
        upstream_done: bool,
    },
    /// The upstream switched protocols (101): the connection is spliced.
    Switched { status: u16 },
    /// Nothing reached the client: the proxy answers with this status.
    Failed(StatusCode, String),
    /// The upstream closed the connection before a response began (a 502).
    Closed(String),
    /// The exchange broke off after the response began (or the client left
    /// before it did): the connection can only end.
    Broken { status: Option<u16>, size: u64 },
}

impl Connection {
    async fn run(mut self) {
        let deadline = Instant::now() + self.shared.bounds.header_timeout;
        // HTTP/2's preface, or the start of an HTTP/1 request?
        while self.down_buf.len() < h1::H2_PREFACE.len()
            && h1::H2_PREFACE.starts_with(&self.down_buf)
        {
            match self.read_down(deadline).await {
                Some(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        if self.down_buf.starts_with(h1::H2_PREFACE) {
            return self.serve_h2().await;
        }
        let mut deadline = Some(deadline);
        loop {
            let next = self.read_head(deadline.take()).await;
            let keep_going = match next {
                Next::Request(parsed) => self.exchange(*parsed).await,
                Next::Refused(refusal) => {
                    let status =
                        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
                    self.refuse(status).await;
                    false
                }
                Next::TimedOut => {
                    self.refuse(StatusCode::REQUEST_TIMEOUT).await;
                    false
                }
                Next::Gone => false,
            };
            if !keep_going {
                return;
            }
        }
    }

    /// Reads what the client sent next, unless `deadline` comes first.
    async fn read_down(&mut self, deadline: Instant) -> Option<io::Result<usize>> {
        self.down_buf.reserve(READ_SIZE);
        let read = self.down.read_buf(&mut self.down_buf);
        self.down_alarm.within(deadline, read).await
    }

    /// Reads the next request head; `deadline` bounds it (the first request's
    /// from the connection's start), else the header timeout runs from its first byte.
    async fn read_head(&mut self, mut deadline: Option<Instant>) -> Next {
        loop {
            if !self.down_buf.is_empty() {
                match self.parse_head() {
                    Ok(Some(parsed)) => return Next::Request(Box::new(parsed)),
                    Ok(None) => {}
                    Err(refusal) => return Next::Refused(refusal),
                }
            }
            let limit = deadline.unwrap_or_else(|| Instant::now() + IDLE);
            match self.read_down(limit).await {
                Some(Ok(0)) | Some(Err(_)) => return Next::Gone,
                Some(Ok(_)) => {
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.shared.bounds.header_timeout);
                    }
                }
                None if !self.down_buf.is_empty() => return Next::TimedOut,
                None => return Next::Gone,
            }
        }
    }

    /// The request head in the buffer, if complete, with the upstream's head in `out`.
    fn parse_head(&mut self) -> Result<Option<Parsed>, Refusal> {
        let max = self.shared.bounds.max_header_bytes;
        let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
        let mut head = httparse::Request::new(&mut headers);
        let len = match head.parse(&self.down_buf) {
            Ok(httparse::Status::Complete(len)) if len <= max => len,
            Ok(httparse::Status::Complete(_)) => return Err(Refusal::HeadersTooLarge),
            Ok(httparse::Status::Partial) if self.down_buf.len() >= max => {
                return Err(Refusal::HeadersTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadersTooLarge),
            Err(_) => return Err(Refusal::BadRequest),
        };
        let shared = &*self.shared;
        let parent = shared.propagators.extract_with(|name| {
            head.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        });
        let context = child_context(&shared.sampler, parent.as_ref());
        let request = h1::forward_request(
            &head,
            len,
            &self.down_buf,
            self.upstream.as_str(),
            &shared.propagators,
            &context,
            &mut self.out,
        )?;
        Ok(Some(Parsed {
            request,
            context,
            parent: parent.map(|p| p.span_id),
        }))
    }

    /// The record of a request, when spans or metrics are kept.
    fn begin(&self, parsed: &Parsed, start: SystemTime) -> Option<Exchange> {
        if !self.shared.recorder.enabled() {
            return None;
        }
        let kept = &parsed.request.kept;
        let value = |b: &Option<Bytes>| {
            b.clone()
                .and_then(|b| HeaderValue::from_maybe_shared(b).ok())
        };
        let requested = Requested {
            method: parsed.request.method.clone(),
            uri: Uri::from_maybe_shared(kept.target.clone())
                .unwrap_or_else(|_| Uri::from_static("/")),
            version: parsed.request.version,
            host: value(&kept.host),
            user_agent: value(&kept.user_agent),
        };
        Some(Exchange::begin(
            Kind::Server,
            (parsed.context.clone(), parsed.parent),
            requested,
            (self.local, self.peer),
            start,
        ))
    }

    /// Sends one request upstream and its response back; whether the client
    /// connection goes on to another request.
    async fn exchange(&mut self, parsed: Parsed) -> bool {
        let start = SystemTime::now();
        let exchange = self.begin(&parsed, start);
        let request = parsed.request;
        self.down_buf.advance(request.len);
        // The body bytes at hand go with the head, in one write.
        let mut body = h1::Body::new(request.framing);
        let Ok(at_hand) = body.take(&self.down_buf) else {
            let message = "the request's chunked framing is broken".to_string();
            return self.fail(exchange, StatusCode::BAD_REQUEST, message).await;
        };
        self.out.extend_from_slice(&self.down_buf[..at_hand]);
        self.down_buf.advance(at_hand);
        // A kept connection the upstream has closed since is found out when
        // the request is written or its answer read: a request that can be
        // sent again (whole at hand, idempotent) then goes once more, anew.
        let resendable = body.done() && request.method.is_idempotent();
        let mut retried = false;
        loop {
            let kept = self.up.take().filter(|up| !closed_while_idle(&up.stream));
            let reused = kept.is_some();
            let mut up = match kept {
                Some(up) => up,
                None => match self.connect().await {
                    Ok(up) => up,
                    Err(e) => {
                        let message = format!("upstream unreachable: {e}");
                        return self.fail(exchange, StatusCode::BAD_GATEWAY, message).await;
                    }
                },
            };
            if let Err(e) = up.stream.write_all(&self.out).await {
                if reused && !retried {
                    retried = true;
                    continue;
                }
                let message = format!("upstream unreachable: {e}");
                return self.fail(exchange, StatusCode::BAD_GATEWAY, message).await;
            }
            let (received, body_sent) = self.relay(&mut up, &request, &mut body).await;
            if matches!(received, Received::Closed(_)) && reused && !retried && resendable {
                retried = true;
                continue;
            }
            return self
                .finish(exchange, up, &request, &body, body_sent, received)
                .await;
        }
    }

    /// Relays the response, and the rest of the request body while it comes;
    /// whether the whole request body went up.
    async fn relay(
        &mut self,
        up: &mut Upstream,
        request: &h1::Request,
        body: &mut h1::Body,
    ) -> (Received, bool) {
        let progress = Progress::default();
        if body.done() {
            progress.request_done.set();
        }
        let (mut down_r, mut down_w) = self.down.split();
        let (mut up_r, mut up_w) = up.stream.split();
        let receive = receive(
            (&mut up_r, &mut up.buf),
            &mut down_w,
            &mut self.out,
            request,
            &progress,
            (&mut self.up_alarm, self.shared.bounds.timeout),
        );
        if body.done() {
            return (receive.await, true);
        }
        let send = async {
            send_body(&mut down_r, &mut self.down_buf, &mut up_w, body).await?;
            progress.request_done.set();
            Ok::<(), Unsent>(())
        };
        tokio::pin!(send, receive);
        let (mut sent, mut sending) = (false, true);
        let received = loop {
            tokio::select! {
                biased;
                r = &mut receive => break r,
                s = &mut send, if sending => match s {
                    Ok(()) => (sent, sending) = (true, false),
                    // The upstream stopped reading the body (it answered
                    // early, or is gone): its answer, if any, still comes.
                    Err(Unsent::Upstream) => sending = false,
                    // The request broke off: the upstream waits for the rest
                    // of it in vain, and the exchange ends here.
                    Err(_) if progress.began.get() => {
                        break Received::Broken { status: progress.status(), size: 0 };
                    }
                    Err(Unsent::Framing) => {
                        break Received::Failed(
                            StatusCode::BAD_REQUEST,
                            "broken chunked framing".into(),
                        );
                    }
                    Err(Unsent::Client) => break Received::Broken { status: None, size: 0 },
                },
            }
        };
        (received, sent)
    }

    /// Records the exchange as it went; whether the client connection goes on.
    async fn finish(
        &mut self,
        mut exchange: Option<Exchange>,
        up: Upstream,
        request: &h1::Request,
        body: &h1::Body,
        body_sent: bool,
        received: Received,
    ) -> bool {
        if let Some(e) = exchange.as_mut()
            && request.framing != Framing::None
        {
            e.request_size = Some(body.payload);
        }
        let whole = body_sent && body.done();
        match received {
            Received::Done {
                status,
                size,
                framing,
                upstream_done,
            } => {
                // Bytes past the response's end would be read as the next one's.
                if !upstream_done && whole && up.buf.is_empty() {
                    self.up = Some(up);
                }
                self.record(exchange, Some(status), size, None);
                if !whole {
                    // Answered before the request ended: what the client still
                    // sends must not reset the connection under the answer.
                    self.linger().await;
                    return false;
                }
                !request.close && framing != Framing::UntilClose
            }
            Received::Switched { status } => {
                self.splice(up, exchange, status).await;
                false
            }
            Received::Broken { status, size } => {
                self.record(exchange, status, size, None);
                false
            }
            Received::Closed(message) => {
                self.fail(exchange, StatusCode::BAD_GATEWAY, message).await
            }
            Received::Failed(status, message) => self.fail(exchange, status, message).await,
        }
    }

    async fn connect(&self) -> io::Result<Upstream> {
        let port = self.upstream.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.shared.bounds.timeout,
            TcpStream::connect((self.upstream.host(), port)),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Upstream {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
        })
    }

    fn record(
        &self,
        exchange: Option<Exchange>,
        status: Option<u16>,
        size: u64,
        error: Option<(&'static str, String)>,
    ) {
        if let Some(mut exchange) = exchange {
            exchange.status = status;
            exchange.response_size = Some(size);
            exchange.error = error;
            exchange.end = SystemTime::now();
            self.shared.recorder.record(exchange);
        }
    }

    /// Answers with the proxy's own `status`, records it, and ends the connection.
    async fn fail(
        &mut self,
        exchange: Option<Exchange>,
        status: StatusCode,
        message: String,
    ) -> bool {
        let size = h1::local_response(status, true, &mut self.out);
        let _ = self.down.write_all(&self.out).await;
        let error = match status {
            StatusCode::BAD_GATEWAY => Some(("502", message)),
            StatusCode::GATEWAY_TIMEOUT => Some(("504", message)),
            _ => None,
        };
        self.record(exchange, Some(status.as_u16()), size, error);
        self.linger().await;
        false
    }

    /// A request refused before it went anywhere: answered, recorded when its
    /// request line could be read, and the connection ended.
    async fn refuse(&mut self, status: StatusCode) {
        let exchange = h1::request_line(&self.down_buf).and_then(|(method, target)| {
            let context = child_context(&self.shared.sampler, None);
            let parsed = Parsed {
                request: h1::Request {
                    len: 0,
                    method,
                    version: Version::HTTP_11,
                    framing: Framing::None,
                    close: true,
                    upgrade: false,
                    kept: h1::Kept {
                        target,
                        host: None,
                        user_agent: None,
                    },
                },
                context,
                parent: None,
            };
            self.begin(&parsed, SystemTime::now())
        });
        let size = h1::local_response(status, true, &mut self.out);
        let _ = self.down.write_all(&self.out).await;
        self.record(exchange, Some(status.as_u16()), size, None);
        self.linger().await;
    }

    /// Closes the client's side so that what it still sends does not reset the
    /// connection before it has read the answer.
    async fn linger(&mut self) {
        let _ = self.down.shutdown().await;
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut total = 0usize;
            while total < (1 << 20) {
                match self.down.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }

    /// Passes bytes both ways after a 101 until either side ends; one span.
    async fn splice(&mut self, mut up: Upstream, exchange: Option<Exchange>, status: u16) {
        let early_up = self.down_buf.len() as u64;
        let early_down = up.buf.len() as u64;
        let flushed = async {
            up.stream.write_all(&self.down_buf).await?;
            self.down.write_all(&up.buf).await?;
            tokio::io::copy_bidirectional(&mut self.down, &mut up.stream).await
        };
        let (sent, received) = flushed.await.unwrap_or((0, 0));
        if let Some(mut exchange) = exchange {
            exchange.request_size = Some(early_up + sent);
            exchange.status = Some(status);
            exchange.response_size = Some(early_down + received);
            exchange.end = SystemTime::now();
            self.shared.recorder.record(exchange);
        }
    }

    /// Hands an HTTP/2 connection, its preface already read, to hyper.
    async fn serve_h2(self) {
        let Connection {
            shared,
            upstream,
            local,
            peer,
            down,
            down_buf,
            ..
        } = self;
        let io = Prefixed {
            prefix: down_buf.freeze(),
            inner: down,
        };
        let builder = shared.builder.clone();
        let handler =
            move |request| handle_h2(shared.clone(), upstream.clone(), local, peer, request);
        let _ = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service_fn(handler))
            .await;
    }
}

/// Whether a kept upstream connection was closed (or sent something unasked)
/// while it sat idle. The runtime has already seen any such event: without one
/// this costs no system call.
fn closed_while_idle(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => false,
        Poll::Ready(Err(_)) => true,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            !matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Why a request body did not all go upstream.
enum Unsent {
    /// The client closed, or its connection failed, before the body's end.
    Client,
    /// The body's chunked framing is broken.
    Framing,
    /// The upstream connection no longer takes the body.
    Upstream,
}

/// Copies the rest of a request body from the client to the upstream.
async fn send_body<R, W>(
    from: &mut R,
    buf: &mut BytesMut,
    to: &mut W,
    body: &mut h1::Body,
) -> Result<(), Unsent>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !body.done() {
        if buf.is_empty() {
            buf.reserve(READ_SIZE);
            match from.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(Unsent::Client),
                Ok(_) => {}
            }
        }
        let n = body.take(buf).map_err(|_| Unsent::Framing)?;
        to.write_all(&buf[..n])
            .await
            .map_err(|_| Unsent::Upstream)?;
        buf.advance(n);
    }
    Ok(())
}

/// Reads the upstream's response and passes it to the client: interim (1xx)
/// heads as they come, then the final head rewritten and the body in its framing.
async fn receive<R, W>(
    (from, buf): (&mut R, &mut BytesMut),
    to: &mut W,
    out: &mut Vec<u8>,
    request: &h1::Request,
    progress: &Progress,
    (alarm, timeout): (&mut Alarm, Duration),
) -> Received
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + timeout;
    let response = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
            let mut head = httparse::Response::new(&mut headers);
            match head.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let close = |framing| {
                        request.close
                            || framing == Framing::UntilClose
                            || !progress.request_done.get()
                    };
                    match head.code {
                        Some(code @ 100..=199) if code != 101 => Some(Err((len, code))),
                        _ => match h1::forward_response(&head, request, close, out) {
                            Some(response) => Some(Ok((len, response))),
                            None => {
                                return Received::Failed(
                                    StatusCode::BAD_GATEWAY,
                                    "the upstream's response framing is invalid".into(),
                                );
                            }
                        },
                    }
                }
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => None,
                _ => {
                    return Received::Failed(
                        StatusCode::BAD_GATEWAY,
                        "the upstream's response head is not HTTP/1.1".into(),
                    );
                }
            }
        };
        match parsed {
            Some(Ok((len, response))) => {
                buf.advance(len);
                break response;
            }
            // 100 Continue and the like: passed on (HTTP/1.0 has none), and
            // the final head follows.
            Some(Err((len, _))) => {
                let interim = &buf[..len];
                if request.version != Version::HTTP_10 {
                    progress.began.set();
                    if to.write_all(interim).await.is_err() {
                        return Received::Broken {
                            status: None,
                            size: 0,
                        };
                    }
                }
                buf.advance(len);
                continue;
            }
            None => {}
        }
        buf.reserve(READ_SIZE);
        match alarm.within(deadline, from.read_buf(buf)).await {
            Some(Ok(0)) if buf.is_empty() && !progress.began.get() => {
                return Received::Closed(
                    "upstream unreachable: it closed the connection before responding".into(),
                );
            }
            Some(Ok(0)) => {
                return Received::Failed(
                    StatusCode::BAD_GATEWAY,
                    "the upstream closed the connection within its response head".into(),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) if buf.is_empty() && !progress.began.get() => {
                return Received::Closed(format!("upstream unreachable: {e}"));
            }
            Some(Err(e)) => {
                return Received::Failed(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream unreachable: {e}"),
                );
            }
            None => {
                return Received::Failed(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream sent no response within {} ms",
                        timeout.as_millis()
                    ),
                );
            }
        }
    };
    let status = response.status;
    progress.began.set();
    progress.status.store(status, Ordering::Relaxed);
    if status == 101 && request.upgrade {
        if to.write_all(out).await.is_err() {
            return Received::Broken {
                status: Some(status),
                size: 0,
            };
        }
        return Received::Switched { status };
    }
    let mut body = h1::Body::new(response.framing);
    let Ok(at_hand) = body.take(buf) else {
        return Received::Failed(
            StatusCode::BAD_GATEWAY,
            "the upstream's chunked framing is broken".into(),
        );
    };
    out.extend_from_slice(&buf[..at_hand]);
    buf.advance(at_hand);
    if to.write_all(out).await.is_err() {
        return Received::Broken {
            status: Some(status),
            size: 0,
        };
    }
    while !body.done() {
        buf.reserve(READ_SIZE);
        match from.read_buf(buf).await {
            Ok(0) if body.at_eof() => break,
            Ok(0) | Err(_) => {
                return Received::Broken {
                    status: Some(status),
                    size: body.payload,
                };
            }
            Ok(_) => {}
        }
        let Ok(n) = body.take(buf) else {
            return Received::Broken {
                status: Some(status),
                size: body.payload,
            };
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return Received::Broken {
                status: Some(status),
                size: body.payload,
            };
        }
        buf.advance(n);
    }
    Received::Done {
        status,
        size: body.payload,
        framing: response.framing,
        upstream_done: response.upstream_done,
    }
}

/// A stream whose first bytes were already read.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One HTTP/2 request, sent through the pool (streams are concurrent).
async fn handle_h2(
    shared: Arc<Shared>,
    upstream: Arc<Authority>,
    local: SocketAddr,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = SystemTime::now();
    let parent = shared.propagators.extract(request.headers());
    let context = child_context(&shared.sampler, parent.as_ref());
    shared.propagators.inject(request.headers_mut(), &context);
    let host = request.headers().get(header::HOST).cloned().or_else(|| {
        let authority = request.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let mut exchange = Exchange::begin(
        Kind::Server,
        (context, parent.map(|p| p.span_id)),
        Requested::of(&request, host),
        (local, peer),
        start,
    );
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme("http")
        .authority((*upstream).clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        exchange.error = Some(("400", "the request target is not a path".into()));
        return Ok(relay::local(
            StatusCode::BAD_REQUEST,
            exchange,
            &shared.recorder,
            None,
        ));
    };
    relay::relay(
        |r| relay::pooled(&shared.client, r),
        request,
        uri,
        shared.bounds.timeout,
        exchange,
        &shared.recorder,
    )
    .await
}
