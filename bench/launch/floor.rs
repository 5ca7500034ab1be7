//! The floor of any launcher here: the least a program that starts a command
//! and waits for it must do, built as `install.sh` builds otel-run (static,
//! position-dependent). It spawns its arguments as otel-run spawns a command,
//! in a process group of its own with a parent-death signal (so `fork`, not
//! `posix_spawn`), waits, and exits with the command's code. Nothing else:
//! no settings, no agent, no signal forwarding.
//!
//! `floor --exec COMMAND` is the floor of the floor: it replaces itself with the
//! command (no fork, no wait), so it costs one exec of a static binary and
//! nothing else. A launcher that waits for its command cannot cost less.
use std::os::unix::process::CommandExt;

unsafe extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: u64 = 9;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let mut program = args.next().expect("usage: floor [--exec] COMMAND [ARGS...]");
    let exec_only = program == "--exec";
    if exec_only {
        program = args.next().expect("usage: floor --exec COMMAND [ARGS...]");
    }
    let mut command = std::process::Command::new(program);
    if exec_only {
        let error = command.args(args).exec();
        panic!("cannot run the command: {error}");
    }
    command.args(args).process_group(0);
    // SAFETY: prctl is async-signal-safe, as a pre-exec hook must be.
    unsafe {
        command.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let status = command.status().expect("cannot run the command");
    std::process::exit(status.code().unwrap_or(128));
}
