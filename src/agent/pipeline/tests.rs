//! The pipeline with the real OTLP/HTTP client against a scripted endpoint: a
//! fake, because a real collector cannot be told to fail on demand.

use std::sync::atomic::AtomicUsize;

use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::telemetry::spans::Spans;

use super::*;
use crate::agent::export::otlp::Client;
use crate::settings::otlp::{Protocol, Signal, Target};

/// Answers each export with the next scripted status (200 once the script
/// runs out) and counts the spans it accepted.
struct FakeEndpoint {
    statuses: Mutex<VecDeque<StatusCode>>,
    requests: AtomicUsize,
    spans_accepted: AtomicUsize,
    batch_sizes: Mutex<Vec<usize>>,
}

async fn fake_endpoint(statuses: &[StatusCode]) -> (Arc<FakeEndpoint>, String) {
    let state = Arc::new(FakeEndpoint {
        statuses: Mutex::new(statuses.iter().copied().collect()),
        requests: AtomicUsize::new(0),
        spans_accepted: AtomicUsize::new(0),
        batch_sizes: Mutex::new(Vec::new()),
    });
    let handler_state = state.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = handler_state.clone();
            async move {
                state.requests.fetch_add(1, Ordering::SeqCst);
                let status = state
                    .statuses
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(StatusCode::OK);
                if status == StatusCode::OK {
                    let request =
                        <ExportTraceServiceRequest as prost::Message>::decode(body).unwrap();
                    let n: usize = request
                        .resource_spans
                        .into_iter()
                        .map(|r| Spans::from(r).count())
                        .sum();
                    state.spans_accepted.fetch_add(n, Ordering::SeqCst);
                    state.batch_sizes.lock().unwrap().push(n);
                }
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

fn exporter(url: &str) -> Exporter {
    let target = Target {
        signal: Signal::Traces,
        url: url::Url::parse(url).unwrap(),
        protocol: Protocol::HttpProtobuf,
        headers: Vec::new(),
        gzip: false,
        timeout: Duration::from_secs(2),
        certificate: None,
        client_key: None,
        client_certificate: None,
    };
    Exporter::Otlp(Box::new(Client::new(target).unwrap()))
}

fn spans(n: usize) -> Spans {
    Spans::Message(ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("s{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn config(max_queue: usize, max_batch: usize) -> BatchConfig {
    BatchConfig {
        schedule_delay: Duration::from_secs(60),
        max_queue,
        max_queue_bytes: MAX_QUEUE_BYTES,
        max_batch,
        export_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_accepted() {
    let (endpoint, url) = fake_endpoint(&[
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ])
    .await;
    let (pipeline, worker) = Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
    assert_eq!(pipeline.push(spans(3)), 0);
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 3);
    assert_eq!(endpoint.spans_accepted.load(Ordering::SeqCst), 3);
    assert_eq!(
        totals,
        Totals {
            exported: 3,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_counted_as_dropped() {
    let (endpoint, url) = fake_endpoint(&[StatusCode::BAD_REQUEST]).await;
    let (pipeline, worker) = Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
    pipeline.push(spans(2));
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
    assert_eq!(totals.dropped_export_failed, 2);
    assert_eq!(totals.exported, 0);
}

#[tokio::test]
async fn a_full_queue_rejects_and_counts() {
    let (_endpoint, url) = fake_endpoint(&[]).await;
    let (pipeline, worker) = Pipeline::start(config(5, 100), vec![exporter(&url)], Arc::default());
    assert_eq!(pipeline.push(spans(4)), 0);
    assert_eq!(pipeline.push(spans(2)), 2, "4 + 2 exceeds the queue of 5");
    // A producer that asks first drops without building.
    assert!(!pipeline.has_room(2, 0));
    pipeline.drop_full(2);
    assert!(pipeline.has_room(1, 0));
    assert_eq!(pipeline.push(spans(1)), 0);
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(
        totals,
        Totals {
            exported: 5,
            dropped_queue_full: 4,
            ..Default::default()
        }
    );
}

/// A span whose one attribute is `bytes` long.
fn big_span(bytes: usize) -> Spans {
    let Spans::Message(mut message) = spans(1) else {
        unreachable!("spans() builds messages")
    };
    message.scope_spans[0].spans[0].name = "x".repeat(bytes);
    Spans::Message(message)
}

#[tokio::test]
async fn the_queue_is_bounded_by_bytes_too() {
    let (_endpoint, url) = fake_endpoint(&[]).await;
    let config = BatchConfig {
        max_queue_bytes: 10_000,
        ..config(100, 100)
    };
    let (pipeline, worker) = Pipeline::start(config, vec![exporter(&url)], Arc::default());
    assert_eq!(pipeline.push(big_span(6_000)), 0);
    assert_eq!(
        pipeline.push(big_span(6_000)),
        1,
        "12 000 bytes exceed 10 000"
    );
    assert!(!pipeline.has_room(1, 5_000));
    assert!(pipeline.has_room(1, 3_000));
    // A request's items are queued whole or not at all, and not counted:
    // the sender is told to retry.
    assert_eq!(
        pipeline.offer(vec![(spans(1), 1_000), (spans(1), 3_500)]),
        Err(Refused::Full)
    );
    assert_eq!(pipeline.offer(vec![(spans(2), 3_900)]), Ok(()));
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(
        totals,
        Totals {
            exported: 3,
            dropped_queue_full: 1,
            ..Default::default()
        }
    );
    assert_eq!(pipeline.offer(vec![(spans(1), 1)]), Err(Refused::Closed));
}

#[tokio::test]
async fn a_batch_being_exported_keeps_its_bytes_counted() {
    let always_busy = vec![StatusCode::SERVICE_UNAVAILABLE; 1000];
    let (endpoint, url) = fake_endpoint(&always_busy).await;
    let config = BatchConfig {
        max_queue_bytes: 10_000,
        ..config(100, 1)
    };
    let (pipeline, worker) = Pipeline::start(config, vec![exporter(&url)], Arc::default());
    assert_eq!(pipeline.offer(vec![(spans(1), 8_000)]), Ok(()));
    // The worker took the batch at once (a batch is one span) and retries it.
    let retrying = async {
        while endpoint.requests.load(Ordering::SeqCst) < 2 {
            sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(10), retrying)
        .await
        .expect("the batch is being retried");
    assert!(pipeline.has_room(1, 2_000));
    assert_eq!(pipeline.offer(vec![(spans(1), 3_000)]), Err(Refused::Full));
    pipeline
        .shutdown(worker, Instant::now() + Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn rejected_records_are_counted_as_dropped() {
    let (_endpoint, url) = fake_endpoint(&[]).await;
    let (pipeline, worker) =
        Pipeline::<Spans>::start(config(100, 10), vec![exporter(&url)], Arc::default());
    pipeline.drop_too_large(7);
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(totals.dropped_too_large, 7);
    assert_eq!(totals.dropped(), 7);
}

#[tokio::test]
async fn a_full_batch_is_exported_without_waiting_for_the_schedule() {
    let (endpoint, url) = fake_endpoint(&[]).await;
    let (pipeline, worker) = Pipeline::start(config(100, 4), vec![exporter(&url)], Arc::default());
    pipeline.push(spans(2));
    pipeline.push(spans(2));
    let exported = async {
        while endpoint.spans_accepted.load(Ordering::SeqCst) < 4 {
            sleep(Duration::from_millis(10)).await;
        }
    };
    // The schedule delay is a minute: only a full batch explains an export now.
    timeout(Duration::from_secs(10), exported)
        .await
        .expect("the full batch was exported");
    pipeline.push(spans(3));
    pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(*endpoint.batch_sizes.lock().unwrap(), vec![4, 3]);
}

#[tokio::test]
async fn the_flush_at_exit_gives_up_at_its_deadline() {
    let always_busy = vec![StatusCode::SERVICE_UNAVAILABLE; 1000];
    let (_endpoint, url) = fake_endpoint(&always_busy).await;
    let (pipeline, worker) = Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
    pipeline.push(spans(3));
    let totals = pipeline
        .shutdown(worker, Instant::now() + Duration::from_millis(300))
        .await;
    assert_eq!(totals.dropped_export_failed, 3);
    assert_eq!(totals.exported, 0);
}

#[tokio::test]
async fn received_items_are_exported_without_waiting_for_the_schedule() {
    let (endpoint, url) = fake_endpoint(&[]).await;
    let (pipeline, worker) = Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
    // otel-run's own span waits for the schedule (a minute) ...
    pipeline.push(spans(1));
    sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
    // ... until received spans arrive: those go at once, and it with them.
    assert_eq!(pipeline.offer(vec![(spans(2), 100)]), Ok(()));
    let exported = async {
        while endpoint.spans_accepted.load(Ordering::SeqCst) < 3 {
            sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(10), exported)
        .await
        .expect("the received spans were exported before the schedule");
    assert_eq!(pipeline.offer(vec![(spans(1), 100)]), Ok(()));
    pipeline
        .shutdown(worker, Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(*endpoint.batch_sizes.lock().unwrap(), vec![3, 1]);
}
