//! The floor of any launcher here: the least a program that starts a command
//! and waits for it must do, built as `install.sh` builds otel-run (static,
//! position-dependent). It spawns its arguments as otel-run spawns a command,
//! in a process group of its own with a parent-death signal (so `fork`, not
//! `posix_spawn`), waits, and exits with the command's code. Nothing else:
//! no settings, no agent, no signal forwarding.
use std::os::unix::process::CommandExt;

unsafe extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: u64 = 9;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("usage: floor COMMAND [ARGS...]");
    let mut command = std::process::Command::new(program);
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
