fn main() -> std::process::ExitCode {
    thoth::run(std::env::args_os())
}
