//! Standard streams otel-run was started without.
//!
//! Before `main`, Rust's runtime opens `/dev/null` on a closed stdin, stdout or
//! stderr. The command would inherit those: `otel-run -- yes >&-` would write to
//! `/dev/null` forever where `yes >&-` fails at once. So the binary notes which
//! streams are closed before the runtime starts ([`note_closed`], run from the
//! binary's `.init_array`), and the child closes them again just before it execs.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bit N set: descriptor N was closed when otel-run started.
static CLOSED: AtomicU8 = AtomicU8::new(0);

/// Notes which of descriptors 0, 1 and 2 are closed. Called before Rust's
/// runtime starts, so it uses nothing but a syscall and an atomic.
pub extern "C" fn note_closed() {
    let mut closed = 0;
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            closed |= 1 << fd;
        }
    }
    CLOSED.store(closed, Ordering::Relaxed);
}

/// The descriptors noted closed.
pub fn closed() -> impl Iterator<Item = libc::c_int> {
    let closed = CLOSED.load(Ordering::Relaxed);
    (0..=2).filter(move |fd| closed & (1 << fd) != 0)
}
