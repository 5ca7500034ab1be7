//! Waiting for the command, and reaping orphans as PID 1.
//!
//! The command is waited for without being reaped, so its pid (and the process
//! group it leads) cannot be reused while signals may still be forwarded to it.
//! As PID 1 (a container's entrypoint), otel-run is also the parent of every
//! orphaned process in the container, and reaps them as they exit, as `tini`
//! does; otherwise they would stay zombies.

use std::io;

/// What the command did.
pub enum Event {
    Exited,
    /// Stopped by this signal.
    Stopped(libc::c_int),
}

/// Waits until the command `pid` exits or stops; an exit is left to reap.
pub fn next(pid: libc::pid_t) -> io::Result<Event> {
    // SAFETY: plain syscall.
    let init = unsafe { libc::getpid() } == 1;
    loop {
        let (id_type, id) = if init {
            (libc::P_ALL, 0)
        } else {
            (libc::P_PID, pid as libc::id_t)
        };
        let info = waitid(id_type, id, libc::WEXITED | libc::WSTOPPED | libc::WNOWAIT)?;
        // SAFETY: waitid filled in a child's pid and status.
        let (who, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if code == libc::CLD_STOPPED {
            // Consume the stop: it would be reported again otherwise.
            waitid(libc::P_PID, who as libc::id_t, libc::WSTOPPED)?;
            if who == pid {
                return Ok(Event::Stopped(status));
            }
        } else if who == pid {
            return Ok(Event::Exited);
        } else {
            // An orphan's exit, as PID 1.
            waitid(libc::P_PID, who as libc::id_t, libc::WEXITED)?;
        }
    }
}

fn waitid(
    id_type: libc::idtype_t,
    id: libc::id_t,
    options: libc::c_int,
) -> io::Result<libc::siginfo_t> {
    loop {
        // SAFETY: waitid writes only into the zeroed siginfo we own.
        let (rc, info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(id_type, id, &mut info, options);
            (rc, info)
        };
        if rc == 0 {
            return Ok(info);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
