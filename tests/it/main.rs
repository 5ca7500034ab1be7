//! Integration tests: the real `otel-run` binary against real peers.

mod collector;
mod config;
mod launch;
mod receiver;
mod util;
