//! A program with functions to probe and no OpenTelemetry in it.
//!
//! `uprobe-rust-example N [SLEEP_MS]` handles N requests; each
//! `handlers::handle` call sleeps SLEEP_MS and calls `handlers::parse` once:
//!
//!     sudo otel-run --traces-exporter console \
//!         --uprobe ':uprobe_rust_example::handlers::*' -- ./uprobe-rust-example 3 10

use std::time::Duration;

mod handlers {
    use super::Duration;

    #[inline(never)]
    pub fn handle(request: u64, sleep: Duration) -> u64 {
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        parse(request) + 1
    }

    #[inline(never)]
    pub fn parse(request: u64) -> u64 {
        std::hint::black_box(request * 2)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let sleep_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let sleep = Duration::from_millis(sleep_ms);
    let sum: u64 = (0..n).map(|i| handlers::handle(i, sleep)).sum();
    println!("handled {n} requests, sum {sum}");
}
