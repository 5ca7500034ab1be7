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

    /// What every process reported, summed. The file is the command's to write:
    /// only its first mebibyte is read, and counts saturate.
    pub fn read(&self) -> SdkDrops {
        use std::io::Read as _;
        let mut text = Vec::new();
        if let Ok(file) = std::fs::File::open(self.path()) {
            let _ = file.take(1 << 20).read_to_end(&mut text);
        }
        SdkDrops::parse(&String::from_utf8_lossy(&text))
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
        self.queue_full
            .saturating_add(self.export_failed)
            .saturating_add(self.unsent)
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
                let count = match key {
                    "queue_full" => &mut drops.queue_full,
                    "export_failed" => &mut drops.export_failed,
                    "unsent" => &mut drops.unsent,
                    _ => continue,
                };
                *count = count.saturating_add(n);
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

    #[test]
    fn hostile_reports_neither_overflow_nor_fill_memory() {
        let huge = format!("spans queue_full={} unsent={}\n", u64::MAX, u64::MAX);
        let drops = SdkDrops::parse(&huge.repeat(3));
        assert_eq!((drops.queue_full, drops.total()), (u64::MAX, u64::MAX));
        let report = SdkReport::create().unwrap();
        let line = "spans queue_full=1 export_failed=0 unsent=0\n";
        std::fs::write(report.path(), line.repeat(4 << 20 >> 5)).unwrap();
        assert!(report.read().queue_full <= (1 << 20) / line.len() as u64);
    }
}
