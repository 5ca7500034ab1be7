//! The Zipkin exporter: spans in Zipkin's v2 JSON ([`model`]), posted to
//! `OTEL_EXPORTER_ZIPKIN_ENDPOINT` within `OTEL_EXPORTER_ZIPKIN_TIMEOUT`.

pub mod model;

use std::time::Duration;

use super::otlp::{http_status_error, roots, send_error, snippet};
use super::{ExportError, Payload};
use crate::settings::report::redact_url;

#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: url::Url,
    pub timeout: Duration,
}

pub struct Client {
    config: Config,
    /// Built in `new` for `http://`; for `https://`, with the system's roots on
    /// the first export.
    http: tokio::sync::OnceCell<reqwest::Client>,
}

impl Client {
    pub fn new(config: Config) -> Result<Client, String> {
        let client = Client {
            config,
            http: tokio::sync::OnceCell::new(),
        };
        if client.config.endpoint.scheme() != "https" {
            let http = client.build(None)?;
            let _ = client.http.set(http);
        }
        Ok(client)
    }

    fn build(
        &self,
        roots: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("otel-run/", env!("CARGO_PKG_VERSION")))
            .tls_built_in_root_certs(false)
            .resolve_to_addrs("localhost", &super::localhost::LOOPBACK);
        for der in roots.unwrap_or_default() {
            let cert = reqwest::Certificate::from_der(der).expect("a root rustls has parsed");
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| e.to_string())
    }

    async fn http(&self) -> Result<&reqwest::Client, ExportError> {
        self.http
            .get_or_try_init(|| async {
                let roots = tokio::task::spawn_blocking(roots)
                    .await
                    .map_err(|e| ExportError::Permanent(e.to_string()))?;
                self.build(Some(&roots.ders))
                    .map_err(ExportError::Permanent)
            })
            .await
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub fn describe(&self) -> String {
        format!(
            "{} in Zipkin's JSON",
            redact_url(self.config.endpoint.as_str())
        )
    }

    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        let resources: Vec<_> = batch.iter().filter_map(Payload::as_spans).collect();
        let spans = model::spans(resources.iter().map(|r| r.as_ref()));
        let body = serde_json::to_vec(&spans).expect("JSON values serialize");
        let sent = self
            .http()
            .await?
            .post(self.config.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| send_error(e, self.config.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(http_status_error(
            status,
            format!("HTTP {status}{}", snippet(&text)),
            None,
        ))
    }
}
