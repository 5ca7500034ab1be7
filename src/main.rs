fn main() -> std::process::ExitCode {
    otel_run::main()
}

/// Runs before Rust's runtime replaces closed standard streams with `/dev/null`,
/// so the command can be started without them too (see `launch::stdio`).
#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_STDIO: extern "C" fn() = otel_run::launch::note_closed_stdio;
