//! Waiting for the first connection before the agent starts.
//!
//! Most commands never send anything to the receiver (a shell script, `true`,
//! a program without an SDK), and a runtime with its worker threads, exporter
//! clients and routes costs more than the rest of a launch. So a run's
//! receiver is bound at once (the child is told its address before it starts)
//! but served only once something connects: one small thread polls the
//! listening sockets, and the first connection starts the agent, which then
//! accepts it from the backlog like any other.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::thread::JoinHandle;

/// The thread that waits, until it sees a connection or is stopped.
pub struct Watcher {
    /// Written to stop the thread; the thread polls the other end.
    stop: OwnedFd,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// Polls `listeners` on a thread of its own and calls `connected` (once)
    /// when any of them has a connection waiting.
    pub fn spawn(
        listeners: &[TcpListener],
        connected: impl FnOnce() + Send + 'static,
    ) -> io::Result<Watcher> {
        let (stop_read, stop) = pipe()?;
        let mut fds: Vec<libc::pollfd> = listeners
            .iter()
            .map(|l| l.as_raw_fd())
            .chain([stop_read.as_raw_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let thread = std::thread::Builder::new()
            .name("otel-run-idle".into())
            // It only polls: a small stack is plenty.
            .stack_size(64 * 1024)
            .spawn(move || {
                let _stop_read = stop_read;
                if wait(&mut fds) {
                    connected();
                }
            })?;
        Ok(Watcher { stop, thread })
    }

    /// Stops the thread (if it has not seen a connection) and waits for it,
    /// so that whatever `connected` started has been started.
    pub fn stop(self) {
        let byte = [0u8];
        // SAFETY: writes one byte from a live buffer to a pipe this owns.
        unsafe { libc::write(self.stop.as_raw_fd(), byte.as_ptr().cast(), 1) };
        let _ = self.thread.join();
    }
}

/// Blocks until a listener is readable (true) or the last fd, the stop
/// pipe, is (false).
fn wait(fds: &mut [libc::pollfd]) -> bool {
    loop {
        // SAFETY: `fds` is a live, correctly sized array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Polling cannot fail on valid fds; if it does, serve at once
            // rather than never.
            return true;
        }
        let (stop, listeners) = fds.split_last().expect("the stop pipe is polled");
        if stop.revents != 0 {
            return false;
        }
        if listeners.iter().any(|fd| fd.revents != 0) {
            return true;
        }
    }
}

/// A close-on-exec pipe: the child inherits neither end.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn a_connection_wakes_it_once() {
        let l = listener();
        let (tx, rx) = mpsc::channel();
        let watcher =
            Watcher::spawn(std::slice::from_ref(&l), move || tx.send(()).unwrap()).unwrap();
        // Nothing connected yet: nothing started.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("started on connection");
        watcher.stop();
        assert!(rx.try_recv().is_err(), "started once");
    }

    #[test]
    fn stopped_without_a_connection_it_starts_nothing() {
        let l = listener();
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let watcher = Watcher::spawn(std::slice::from_ref(&l), move || {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap();
        watcher.stop();
        assert!(!started.load(Ordering::SeqCst));
    }
}
