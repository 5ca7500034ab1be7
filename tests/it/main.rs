//! Integration tests: the real `otel-run` binary against real peers.

mod collector;
mod config;
mod examples;
mod launch;
mod receiver;
mod util;
