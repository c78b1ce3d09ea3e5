//! The `thoth` command: a governance sidecar for MCP servers.
//!
//! `main` hands the raw arguments to [`run`], which parses them once into validated
//! settings and dispatches to one module per command. Only JSON-RPC frames (or, for
//! `scan`, its JSON lines) ever reach stdout; diagnostics go to stderr via `tracing`.

mod args;
mod as_owner;
mod audit;
mod audit_cmd;
mod catalog;
mod child;
mod clock;
mod completions;
mod doctor;
mod domain;
mod enforce;
mod enforcer_service;
mod entry_check;
mod exit;
mod govapi;
mod harden;
mod health;
mod inspect;
mod jcs;
mod logging;
mod net;
mod otlp;
mod pins;
mod pins_cmd;
mod private_files;
mod proxy;
mod readers;
mod register;
mod run_cmd;
mod runtime;
mod scan;
mod settings;
mod state_file;
mod status;
mod telemetry;
mod user_file;
mod wording;
mod wrap;

// The library's public surface: only what the benches and the fuzz targets drive
// (the integration tests run the binary). Everything else is private to the crate.
pub use catalog::Catalog;
pub use domain::Mode;
pub use enforce::ToolFacts;
pub use enforce::local::LocalEngine;
pub use inspect::DETECTORS;
pub use inspect::redact::inspect_line;
pub use pins::PinSession;
pub use proxy::decide::{Engine, Session, decide};
pub use proxy::from_server::relay_bytes;
#[cfg(unix)]
pub use proxy::{run_bytes, run_pipes};
pub use readers::{Reader, tool_calls};
pub use settings::RunSettings;
pub use settings::TlsSettings;
pub use settings::profile::Profile;
pub use wrap::clients::ALL as CLIENTS;
pub use wrap::edit::{WrapSpec, check, survey, unwrap, wrap};

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Runs thoth with `argv` and returns the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(argv: I) -> ExitCode {
    harden::process();
    let argv: Vec<OsString> = argv.into_iter().collect();
    let cli = match args::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout and usage errors to stderr.
            let _ = e.print();
            if let Some(hint) = args::usage_hint(&argv, &e) {
                eprintln!("{hint}");
            }
            return if e.use_stderr() {
                ExitCode::from(crate::exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init();
    match cli.command {
        args::Command::Scan(scan_args) => scan::run(&scan_args),
        args::Command::Run(run_args) => run_cmd::run(&run_args),
        args::Command::Doctor(doctor_args) => doctor::run(&doctor_args),
        args::Command::Audit(audit_args) => audit_cmd::run(&audit_args),
        args::Command::Pins(pins_args) => pins_cmd::run(&pins_args),
        args::Command::Enforcer(args::EnforcerArgs {
            command: args::EnforcerCommand::Serve(serve),
        }) => enforcer_service::run(&serve),
        args::Command::Approve(resolve) => enforcer_service::approve_or_deny(&resolve, true),
        args::Command::Deny(resolve) => enforcer_service::approve_or_deny(&resolve, false),
        args::Command::WrapConfig(wrap_args) => wrap::run(&wrap_args),
        args::Command::Status(status_args) => status::run(&status_args),
        args::Command::Health(health_args) => health::run(&health_args),
        args::Command::Register(register_args) => register::run(&register_args),
        args::Command::Completions(c) => completions::completions(c.shell),
        args::Command::Man => completions::man(),
    }
}
