//! otel-run's limit of open files. The receiver and the proxies hold a file
//! descriptor per connection, and the usual soft limit (1024) is low for a
//! server: like servers do, otel-run raises its soft limit to the hard limit.
//!
//! A child inherits the limits of the process that forks it, and programs
//! expect the limits they were started with (some size tables by them, some
//! still use `select`, which breaks past 1024). So the limit is raised once
//! the command is spawned: the command starts with otel-run's own limits.

/// The receiver's connections may use half the descriptors otel-run may have
/// once raised, leaving the rest to the proxies, exporters and probes.
pub fn connection_budget(max: usize) -> usize {
    match limits() {
        Some(limit) if limit.rlim_max != libc::RLIM_INFINITY => {
            max.min(usize::try_from(limit.rlim_max / 2).unwrap_or(usize::MAX))
        }
        _ => max,
    }
}

/// Raises the soft limit of open files to the hard limit.
pub fn raise() {
    let Some(mut limit) = limits() else { return };
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::debug!(
            "cannot raise the open files limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}
