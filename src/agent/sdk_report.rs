//! What the command's own SDKs dropped before anything reached the agent.
//!
//! A span the child's SDK drops (its batch queue full, its export failed, still
//! queued when the process ended) never reaches the receiver, so the agent cannot
//! count it. Shims that can see those drops (Python's) append one line per process
//! at exit to a file otel-run names in OTEL_RUN_SDK_REPORT, and the agent adds the
//! lines up once the command has exited: a server's forked workers each add theirs.
//!
//! A line is `spans queue_full=N export_failed=N unsent=N`: the unit, then counts
//! by cause. Fields otel-run does not know are skipped, so a shim may say more.

use std::io;
use std::path::Path;

/// The file the command's processes report to, removed with it.
pub struct SdkReport {
    file: tempfile::NamedTempFile,
}

impl SdkReport {
    pub fn create() -> io::Result<SdkReport> {
        let file = tempfile::Builder::new()
            .prefix("otel-run-sdk-")
            .suffix(".txt")
            .tempfile()?;
        Ok(SdkReport { file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What every process reported, summed.
    pub fn read(&self) -> SdkDrops {
        SdkDrops::parse(&std::fs::read_to_string(self.path()).unwrap_or_default())
    }
}

/// Spans the command's SDKs dropped, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SdkDrops {
    pub queue_full: u64,
    pub export_failed: u64,
    pub unsent: u64,
}

impl SdkDrops {
    pub fn total(&self) -> u64 {
        self.queue_full + self.export_failed + self.unsent
    }

    fn parse(text: &str) -> SdkDrops {
        let mut drops = SdkDrops::default();
        // A line without its newline was cut short (its process was killed while
        // writing): its numbers may be cut too.
        let lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        for line in lines {
            let mut words = line.split_whitespace();
            if words.next() != Some("spans") {
                continue;
            }
            for (key, value) in words.filter_map(|w| w.split_once('=')) {
                let Ok(n) = value.parse::<u64>() else {
                    continue;
                };
                match key {
                    "queue_full" => drops.queue_full += n,
                    "export_failed" => drops.export_failed += n,
                    "unsent" => drops.unsent += n,
                    _ => {}
                }
            }
        }
        drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_several_processes_add_up() {
        let text = "spans queue_full=990 export_failed=0 unsent=0\n\
                    spans queue_full=10 export_failed=2 unsent=1 pid=42\n";
        assert_eq!(
            SdkDrops::parse(text),
            SdkDrops {
                queue_full: 1000,
                export_failed: 2,
                unsent: 1
            }
        );
    }

    #[test]
    fn unknown_and_cut_lines_are_skipped() {
        let text = "logs queue_full=5\nspans queue_full=x unsent=3\nspans queue_full=7";
        assert_eq!(
            SdkDrops::parse(text),
            SdkDrops {
                unsent: 3,
                ..SdkDrops::default()
            }
        );
    }

    #[test]
    fn the_file_is_read_as_the_processes_left_it() {
        let report = SdkReport::create().unwrap();
        assert_eq!(report.read().total(), 0);
        std::fs::write(
            report.path(),
            "spans queue_full=4 export_failed=0 unsent=0\n",
        )
        .unwrap();
        assert_eq!(report.read().queue_full, 4);
    }
}
