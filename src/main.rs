fn main() -> std::process::ExitCode {
    otel_run::main()
}
