//! The Prometheus exporter: while the command runs, the agent serves what it
//! received as a scrape endpoint (`OTEL_EXPORTER_PROMETHEUS_HOST`:`PORT`, by
//! default localhost:9464), in the text format or OpenMetrics as the scraper
//! asks. Metrics are pulled, not pushed: an export only folds a batch into the
//! [`store::Store`] a scrape renders.

pub mod names;
pub mod store;
pub mod text;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

use store::Store;
use text::Format;

/// Where the scrape endpoint listens.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
}

/// A bound scrape endpoint and the store it shows.
pub struct Scrape {
    store: Arc<Mutex<Store>>,
    address: SocketAddr,
}

impl Scrape {
    /// Binds the endpoint at once (so a port in use is said at start) and
    /// serves scrapes on the current tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Scrape> {
        let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        let store = Arc::new(Mutex::new(Store::default()));
        let app = Router::new().fallback(scrape).with_state(store.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Scrape { store, address })
    }

    /// Folds received metrics into what the next scrape shows; points the
    /// text format cannot show are counted there and said once.
    pub fn add<'a>(&self, batch: impl Iterator<Item = &'a ResourceMetrics>) {
        let mut store = lock(&self.store);
        for resource in batch {
            store.add(resource);
        }
        for why in store.unshown.unsaid.drain(..) {
            tracing::warn!("metrics a Prometheus scrape cannot show are left out: {why}");
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "a Prometheus scrape endpoint on http://{}/metrics",
            self.address
        )
    }
}

async fn scrape(State(store): State<Arc<Mutex<Store>>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = Format::accepted(accept);
    let body = text::render(&lock(&store), format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// The store, even after a panic while it was held: a scrape shows what it has.
fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
