//! The receiver as the command exits: what the command sent is taken, even a
//! connection still waiting to be accepted.

use std::io::Write as _;
use std::time::Duration;

use super::*;
use crate::agent::export::Exporter;
use crate::agent::export::otlp::Client;
use crate::agent::pipeline::BatchConfig;
use crate::settings::otlp::{Protocol, Signal, Target};

/// An exporter to a port nothing listens on: what reaches the pipeline is
/// counted as failed at the flush, and what never reached it is not counted.
fn unreachable() -> Exporter {
    let closed = std::net::TcpListener::bind(EPHEMERAL).unwrap();
    let url = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    Exporter::Otlp(Box::new(
        Client::new(Target {
            signal: Signal::Traces,
            url: url::Url::parse(&url).unwrap(),
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            gzip: false,
            timeout: Duration::from_millis(200),
            certificate: None,
            client_key: None,
            client_certificate: None,
        })
        .unwrap(),
    ))
}

#[test]
fn a_request_still_in_the_backlog_when_the_receiver_settles_is_taken() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let config = BatchConfig {
        schedule_delay: Duration::from_secs(60),
        max_queue: 16,
        max_queue_bytes: 1 << 20,
        max_batch: 16,
        export_timeout: Duration::from_millis(200),
    };
    let (pipeline, worker) = Pipeline::start(config, vec![unreachable()], Arc::default());
    let sinks = Arc::new(Sinks {
        traces: Some(pipeline),
        ..Default::default()
    });
    let listener = bind(EPHEMERAL).unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = serve(vec![listener], sinks.clone(), Arc::default(), 8);

    // Sent and closed before the receiver's tasks ever ran (this thread runs
    // them): the connection waits in the backlog, unseen by the reactor.
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"last"}]}]}]}"#;
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    write!(
        client,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(body).unwrap();
    drop(client);

    let totals = runtime.block_on(async {
        receiver.settle(Duration::from_secs(10)).await;
        let pipeline = sinks.traces.as_ref().unwrap();
        pipeline
            .shutdown(worker, tokio::time::Instant::now() + Duration::from_secs(1))
            .await
    });
    assert_eq!(
        totals.exported + totals.dropped_export_failed,
        1,
        "the span reached the pipeline"
    );
    // The listener is closed once settled: nothing more is taken.
    assert!(std::net::TcpStream::connect(addr).is_err());
}
