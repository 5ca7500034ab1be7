//! The `console` exporter: every record as the pretty JSON object Python's console
//! exporters print for it (`ConsoleSpanExporter`, `ConsoleMetricExporter`,
//! `ConsoleLogRecordExporter`), on stdout by default as theirs are, so a seed's
//! `otel-run ... | tee output.log` then `grep` finds what the document shows.
//!
//! stdout is shared with the command: each record goes out in one `write`, so a
//! record is never cut by the command's output more than the kernel would cut any
//! write (Python's buffered stdout splits at its buffer size). Writes run on the
//! blocking pool: a terminal or pipe that stops reading holds up only the console.
//! A closed pipe (`| head`) ends the console output: the rest is counted dropped.
//! With `--console-format tree`, spans are printed as one tree per trace ([`tree`]).

mod json;
pub mod logs;
pub mod metrics;
pub mod spans;
pub mod tree;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ExportError, Payload};

/// Where console output goes.
enum Output {
    Stdout,
    Stderr,
    File(PathBuf),
}

pub struct Console {
    output: Output,
    /// otel-run's stdout or stderr duplicated (close-on-exec, so the command does
    /// not inherit a second copy), or the file.
    file: Arc<File>,
    closed: AtomicBool,
    /// Why nothing can be printed once `closed`.
    why: &'static str,
    /// `--console-format tree`: spans held per trace until it is finished.
    trees: Option<tree::Trees>,
}

impl Console {
    /// `stdout`, `stderr`, or a file path (created, appended to); `tree`
    /// prints spans as trees.
    pub fn open(target: &str, tree: bool) -> std::io::Result<Console> {
        let (output, file) = match target {
            "stdout" => (
                Output::Stdout,
                File::from(std::io::stdout().as_fd().try_clone_to_owned()?),
            ),
            "stderr" => (
                Output::Stderr,
                File::from(std::io::stderr().as_fd().try_clone_to_owned()?),
            ),
            path => (
                Output::File(PathBuf::from(path)),
                OpenOptions::new().create(true).append(true).open(path)?,
            ),
        };
        // A stream otel-run was started without is Rust's `/dev/null` stand-in:
        // what would be printed there is counted as dropped and said, not lost.
        let fd = match output {
            Output::Stdout => Some(1),
            Output::Stderr => Some(2),
            Output::File(_) => None,
        };
        let closed_at_start = fd.is_some_and(|fd| crate::launch::closed_stdio().any(|c| c == fd));
        Ok(Console {
            output,
            file: Arc::new(file),
            closed: AtomicBool::new(closed_at_start),
            why: if closed_at_start {
                "otel-run was started with it closed"
            } else {
                "its reader has gone (broken pipe)"
            },
            trees: tree.then(tree::Trees::default),
        })
    }

    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ExportError::Closed(self.why.into()));
        }
        let records: Vec<String> = match &self.trees {
            Some(trees) if T::SIGNAL == crate::settings::otlp::Signal::Traces => batch
                .iter()
                .filter_map(Payload::as_spans)
                .flat_map(|spans| trees.add(&spans))
                .collect(),
            _ => batch.iter().flat_map(Payload::to_console).collect(),
        };
        if records.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            records
                .iter()
                .try_for_each(|record| (&*file).write_all(record.as_bytes()))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Err(ExportError::Closed(self.why.into()))
            }
            Err(e) => Err(ExportError::Permanent(format!(
                "cannot write console output: {e}"
            ))),
        }
    }

    pub fn describe(&self) -> String {
        match &self.output {
            Output::Stdout => "console (stdout)".into(),
            Output::Stderr => "console (stderr)".into(),
            Output::File(path) => format!("console (`{}`)", path.display()),
        }
    }
}

impl Drop for Console {
    /// Traces still waiting for their root are printed as they are: the
    /// console closes with the agent, and nothing more of them will come.
    fn drop(&mut self) {
        let Some(trees) = &self.trees else { return };
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        for record in trees.rest() {
            if (&*self.file).write_all(record.as_bytes()).is_err() {
                return;
            }
        }
    }
}
