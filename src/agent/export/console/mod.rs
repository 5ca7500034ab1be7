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

mod json;
pub mod logs;
pub mod metrics;
pub mod spans;

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
}

impl Console {
    /// `stdout`, `stderr`, or a file path (created, appended to).
    pub fn open(target: &str) -> std::io::Result<Console> {
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
        Ok(Console {
            output,
            file: Arc::new(file),
            closed: AtomicBool::new(false),
        })
    }

    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(closed());
        }
        let records: Vec<String> = batch.iter().flat_map(Payload::to_console).collect();
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
                Err(closed())
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

fn closed() -> ExportError {
    ExportError::Closed("its reader has gone (broken pipe)".into())
}
