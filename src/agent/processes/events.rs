//! Records from the process probes' ring buffer, laid out as in
//! `probes/process.h`.

/// `OTEL_RUN_PROC_*` of `probes/process.h`.
const FORK: u32 = 1;
const EXEC: u32 = 2;
const EXIT: u32 = 3;
const NESTED: u32 = 4;
const PATH_MAX: usize = 256;
const ARGS_MAX: usize = 2048;

/// `struct otel_run_proc` of `probes/process.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    time_ns: u64,
    kind: u32,
    pid: u32,
    ppid: u32,
    status: i32,
}

/// `struct otel_run_exec` of `probes/process.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ExecRecord {
    head: Head,
    path_len: u32,
    args_len: u32,
    args_truncated: u32,
    _pad: u32,
    path: [u8; PATH_MAX],
    args: [u8; ARGS_MAX],
}

const _: () = assert!(std::mem::size_of::<Head>() == 24);
const _: () = assert!(std::mem::size_of::<ExecRecord>() == 24 + 16 + PATH_MAX + ARGS_MAX);

/// What a traced process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub path: String,
    pub args: Vec<String>,
}

impl Program {
    /// The span's name: the executable's base name.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// One record of the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fork {
        pid: u32,
        ppid: u32,
        time_ns: u64,
    },
    Exec {
        pid: u32,
        time_ns: u64,
        program: Program,
    },
    /// `status` is the kernel's wait status.
    Exit {
        pid: u32,
        time_ns: u64,
        status: i32,
    },
    /// The process exec'd otel-run, which records its own subtree.
    Nested {
        pid: u32,
        time_ns: u64,
    },
}

/// Reads a plain-old-data record from the start of `bytes`.
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked, `T` is a `repr(C)` struct of integers and
    // byte arrays (any bit pattern is valid), and the read is unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl Event {
    /// The record in a ring-buffer item; `None` for one otel-run does not know.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        let head: Head = read(bytes)?;
        let (pid, time_ns) = (head.pid, head.time_ns);
        Some(match head.kind {
            FORK => Event::Fork {
                pid,
                ppid: head.ppid,
                time_ns,
            },
            EXIT => Event::Exit {
                pid,
                time_ns,
                status: head.status,
            },
            NESTED => Event::Nested { pid, time_ns },
            EXEC => {
                let exec: ExecRecord = read(bytes)?;
                let path = &exec.path[..(exec.path_len as usize).min(PATH_MAX)];
                let args = &exec.args[..(exec.args_len as usize).min(ARGS_MAX)];
                Event::Exec {
                    pid,
                    time_ns,
                    program: Program {
                        path: String::from_utf8_lossy(path).into_owned(),
                        args: split_args(args),
                    },
                }
            }
            _ => return None,
        })
    }
}

/// The kernel's argument block: arguments each ended by a NUL (the last one's
/// NUL is missing when the block was cut short).
fn split_args(block: &[u8]) -> Vec<String> {
    let block = block.strip_suffix(&[0]).unwrap_or(block);
    if block.is_empty() {
        return Vec::new();
    }
    block
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_blocks_split_at_their_nuls() {
        assert_eq!(split_args(b"cc\0-c\0a.c\0"), ["cc", "-c", "a.c"]);
        assert_eq!(split_args(b"cc\0-c\0a."), ["cc", "-c", "a."]);
        assert!(split_args(b"").is_empty());
    }
}
