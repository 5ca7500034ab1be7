//! The Prometheus exporter: while the command runs, the agent serves what it
//! received as a scrape endpoint (`OTEL_EXPORTER_PROMETHEUS_HOST`:`PORT`).

pub mod names;
pub mod store;
pub mod text;
