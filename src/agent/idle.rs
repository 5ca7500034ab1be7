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
    /// The listeners' descriptors, for a last look when stopped (they stay
    /// open: the agent owns them until it finishes).
    listening: Vec<std::os::fd::RawFd>,
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
        // The default stack: `connected` starts the whole agent on it.
        let thread = std::thread::Builder::new()
            .name("otel-run-idle".into())
            .spawn(move || {
                let _stop_read = stop_read;
                if wait(&mut fds) {
                    connected();
                }
            })?;
        let listening = listeners.iter().map(|l| l.as_raw_fd()).collect();
        Ok(Watcher {
            stop,
            thread,
            listening,
        })
    }

    /// Stops the thread (if it has not seen a connection) and waits for it,
    /// so that whatever `connected` started has been started. Returns whether
    /// a connection is waiting all the same: one that came as it stopped,
    /// which the caller must still serve.
    pub fn stop(self) -> bool {
        let byte = [0u8];
        // SAFETY: writes one byte from a live buffer to a pipe this owns.
        unsafe { libc::write(self.stop.as_raw_fd(), byte.as_ptr().cast(), 1) };
        let _ = self.thread.join();
        let mut fds: Vec<libc::pollfd> = self
            .listening
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of pollfd; a zero timeout never blocks.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        n > 0
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
        // A connection first: one that came with the stop is still served.
        if listeners.iter().any(|fd| fd.revents != 0) {
            return true;
        }
        if stop.revents != 0 {
            return false;
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
        assert!(!watcher.stop(), "no connection is waiting");
        assert!(!started.load(Ordering::SeqCst));
    }

    #[test]
    fn a_connection_that_comes_as_it_stops_is_still_said() {
        let l = listener();
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let watcher = Watcher::spawn(std::slice::from_ref(&l), move || {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // Whichever the thread saw first, the connection is not forgotten.
        let waiting = watcher.stop();
        assert!(waiting || started.load(Ordering::SeqCst));
    }
}
