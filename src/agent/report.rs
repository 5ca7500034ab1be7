//! The agent's messages to the user: each kind of trouble is said once, not per
//! batch, and the exit summary is one line (and one more for what the command's
//! own SDK dropped).

use std::collections::HashSet;
use std::sync::Mutex;

use super::export::{ExportError, Exporter};
use super::pipeline::Totals;
use super::sdk_report::SdkDrops;
use crate::settings::otlp::Signal;

#[derive(Default)]
pub struct Reporter {
    said: Mutex<HashSet<String>>,
}

impl Reporter {
    /// True the first time `key` is seen.
    fn first(&self, key: String) -> bool {
        self.said.lock().expect("reporter lock").insert(key)
    }

    pub fn export_failed(&self, signal: Signal, exporter: &Exporter, err: &ExportError) {
        let destination = exporter.describe();
        match err {
            // One message for an endpoint nothing listens on, whatever the signal.
            ExportError::Unreachable(_) => {
                if self.first(format!("unreachable {destination}")) {
                    let (what, flag) = match exporter {
                        Exporter::Zipkin(_) => ("Zipkin receiver", "--exporter-zipkin-endpoint"),
                        _ => ("OTLP collector", "--exporter-otlp-endpoint"),
                    };
                    tracing::warn!(
                        "no {what} at {destination} ({err}); {signal} are dropped\nhint: start one there, set `{flag}`, or print them with `--{signal}-exporter console`",
                        signal = signal.name()
                    );
                }
            }
            // One message for a closed console, whatever the signal: it stays closed.
            ExportError::Closed(_) => {
                if self.first(format!("closed {destination}")) {
                    tracing::warn!(
                        "{destination}: {err}; what would be printed there from now on is dropped and counted\nhint: `--console-output FILE` keeps the console output apart from the command's own"
                    );
                }
            }
            // Said once; the pipeline sends this signal there no more.
            ExportError::Unsupported(_) => {
                if self.first(format!("unsupported {} {destination}", signal.name())) {
                    tracing::warn!(
                        "{destination} does not take {signal} ({err}); {signal} are not sent there again this run, and are counted as dropped\nhint: if the backend takes {signal}, check the endpoint's path; `--{signal}-exporter none` stops making them",
                        signal = signal.name()
                    );
                }
            }
            _ => {
                if self.first(format!("failed {} {destination}", signal.name())) {
                    tracing::warn!("exporting {} to {destination} failed: {err}", signal.name());
                } else {
                    tracing::debug!("exporting {} to {destination} failed: {err}", signal.name());
                }
            }
        }
    }

    pub fn queue_full(&self, signal: Signal) {
        if self.first(format!("full {}", signal.name())) {
            tracing::warn!(
                "the {} queue is full; dropping until the exporter catches up\nhint: raise `--bsp-max-queue-size` or lower `--bsp-schedule-delay`",
                signal.name()
            );
        }
    }

    /// The receiver answered "retry later" because the queue is full: the
    /// sender keeps the data, so nothing is dropped here.
    pub fn backpressure(&self, signal: Signal) {
        if self.first(format!("backpressure {}", signal.name())) {
            tracing::warn!(
                "the {} queue is full; the program is asked to retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)\nhint: a backend slower than the program, or unreachable, fills the queue",
                signal.name()
            );
        }
    }

    /// A request held more than the queue could ever take.
    pub fn too_large(&self, signal: Signal, message: &str) {
        if self.first(format!("too large {}", signal.name())) {
            tracing::warn!("rejected received {}: {message}", signal.name());
        }
    }

    /// Received records held nothing to forward.
    pub fn empty(&self, signal: Signal, message: &str) {
        if self.first(format!("empty {}", signal.name())) {
            tracing::warn!("rejected received {}: {message}", signal.name());
        }
    }

    /// The receiver closed a connection as soon as it was accepted (`why`).
    pub fn connection_refused(&self, why: &str) {
        if self.first(format!("refused {why}")) {
            tracing::warn!("the local OTLP receiver refuses connections: {why}");
        }
    }

    /// At exit: how many connections the receiver refused, if any.
    pub fn connections_refused(&self, refused: u64) {
        if refused > 0 {
            tracing::warn!("the local OTLP receiver refused {refused} connections");
        }
    }

    pub fn flush_timed_out(&self, signal: Signal, left: u64) {
        tracing::warn!(
            "gave up flushing {} at exit after the export timeout; {left} dropped\nhint: `--exporter-otlp-timeout` (and `--bsp-export-timeout`) set how long otel-run waits",
            signal.name()
        );
    }

    /// The exit line: always at `-v` or with `always`, and as a warning when
    /// anything was dropped.
    pub fn summary(&self, totals: &[(Signal, Totals)], always: bool) {
        let dropped: u64 = totals.iter().map(|(_, t)| t.dropped()).sum();
        let parts: Vec<String> = totals
            .iter()
            .filter(|(_, t)| t.exported > 0 || t.dropped() > 0)
            .map(|(signal, t)| {
                let mut text = format!("{} {} exported", t.exported, signal.records());
                if t.dropped() > 0 {
                    text += &format!(
                        ", {} dropped ({} queue full, {} export failed",
                        t.dropped(),
                        t.dropped_queue_full,
                        t.dropped_export_failed
                    );
                    if t.dropped_too_large > 0 {
                        text += &format!(", {} in requests too large", t.dropped_too_large);
                    }
                    if t.dropped_empty > 0 {
                        text += &format!(", {} received without data", t.dropped_empty);
                    }
                    text.push(')');
                }
                text
            })
            .collect();
        if parts.is_empty() {
            if always {
                crate::diag::notice("nothing was received");
            }
            return;
        }
        if dropped > 0 {
            tracing::warn!("{}", parts.join("; "));
        } else if always {
            crate::diag::notice(&parts.join("; "));
        } else {
            tracing::info!("{}", parts.join("; "));
        }
    }

    /// What the command's SDK dropped before sending, said with its causes.
    pub fn sdk_dropped(&self, drops: &SdkDrops) {
        if drops.total() == 0 {
            return;
        }
        let causes = [
            (
                drops.queue_full,
                "its queue was full",
                "because its queue was full",
            ),
            (
                drops.export_failed,
                "their export failed",
                "because their export failed",
            ),
            (
                drops.unsent,
                "they were still queued when it exited",
                "still queued when it exited",
            ),
        ];
        let present: Vec<_> = causes.iter().filter(|(n, _, _)| *n > 0).collect();
        let why = match present.as_slice() {
            [(_, alone, _)] => alone.to_string(),
            _ => present
                .iter()
                .map(|(n, _, among)| format!("{n} {among}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let hint = if drops.queue_full > 0 {
            "\nhint: raise `OTEL_BSP_MAX_QUEUE_SIZE` (`--bsp-max-queue-size`), which the command's SDK reads too"
        } else {
            ""
        };
        tracing::warn!(
            "the command's SDK dropped {} spans: {why}{hint}",
            drops.total()
        );
    }
}
