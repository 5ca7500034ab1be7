//! Integration tests: the real `otel-run` binary against real peers.

mod bootstrap;
mod ci;
mod cli;
mod collector;
mod config;
mod console;
mod container;
mod dotnet;
mod examples;
mod hosts;
mod jaeger;
mod kubernetes;
mod launch;
mod node;
mod prometheus;
mod proxy;
mod python;
mod python_exit;
mod python_flows;
mod receiver;
mod runtimes;
mod seeds;
mod standalone;
mod uprobe;
mod util;
mod viewer_browser;
