//! The probes time calls with the kernel's CLOCK_MONOTONIC (`bpf_ktime_get_ns`);
//! spans need wall-clock time. One reading of both clocks at start gives the
//! offset, which holds for the run (it ignores wall-clock steps made meanwhile,
//! as a monotonic span duration should).

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds minus monotonic nanoseconds.
    offset: i128,
}

impl Clock {
    pub fn now() -> Clock {
        // The wall clock read between two monotonic readings: their midpoint is
        // the monotonic time of the wall reading, to within the few ns between them.
        let before = monotonic_ns();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let after = monotonic_ns();
        Clock {
            offset: wall - (i128::from(before) + i128::from(after)) / 2,
        }
    }

    /// Unix nanoseconds of a CLOCK_MONOTONIC reading.
    pub fn wall(&self, monotonic_ns: u64) -> u64 {
        (i128::from(monotonic_ns) + self.offset).clamp(0, i128::from(u64::MAX)) as u64
    }
}

pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes only into the timespec we own.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_monotonic_now_to_wall_now() {
        let clock = Clock::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mapped = clock.wall(monotonic_ns());
        assert!(mapped.abs_diff(wall) < 50_000_000, "{mapped} vs {wall}");
        // Durations are kept exactly.
        assert_eq!(clock.wall(2_000) - clock.wall(1_000), 1_000);
    }
}
