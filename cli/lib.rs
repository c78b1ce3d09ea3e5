//! The `thoth` command: a governance sidecar for MCP servers.
//!
//! `main` hands the raw arguments to [`run`], which parses them once into validated
//! settings and dispatches to one module per command. Only JSON-RPC frames (or, for
//! `scan`, its JSON lines) ever reach stdout; diagnostics go to stderr via `tracing`.

pub mod args;
pub mod logging;
pub mod scan;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Runs thoth with `argv` and returns the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(argv: I) -> ExitCode {
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout and usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init();
    match cli.command {
        args::Command::Scan(scan_args) => scan::run(&scan_args),
    }
}
