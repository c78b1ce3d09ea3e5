//! The `thoth` command: a governance sidecar for MCP servers.
//!
//! `main` hands the raw arguments to [`run`], which parses them once into validated
//! settings and dispatches to one module per command. Only JSON-RPC frames (or, for
//! `scan`, its JSON lines) ever reach stdout; diagnostics go to stderr via `tracing`.

mod args;
mod as_owner;
mod audit;
mod child;
mod clock;
mod doctor;
mod domain;
mod enforce;
mod enforcer_service;
mod exit;
mod govapi;
mod harden;
mod health;
mod logging;
mod net;
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
mod wrap;

// The library's public surface: only what the benches and the fuzz targets drive
// (the integration tests run the binary). Everything else is private to the crate.
pub use domain::Mode;
pub use enforce::local::LocalEngine;
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
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout and usage errors to stderr.
            let _ = e.print();
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
        args::Command::Audit(audit_args) => audit_cmd(&audit_args),
        args::Command::Enforcer(args::EnforcerArgs {
            command: args::EnforcerCommand::Serve(serve),
        }) => enforcer_service::run(&serve),
        args::Command::Approve(resolve) => enforcer_service::approve_or_deny(&resolve, true),
        args::Command::Deny(resolve) => enforcer_service::approve_or_deny(&resolve, false),
        args::Command::WrapConfig(wrap_args) => wrap::run(&wrap_args),
        args::Command::Status(status_args) => status::run(&status_args),
        args::Command::Health(health_args) => health::run(&health_args),
        args::Command::Register(register_args) => register::run(&register_args),
    }
}

fn audit_cmd(args: &args::AuditArgs) -> ExitCode {
    let args::AuditCommand::Verify { path } = &args.command;
    let path = match path {
        Some(p) => p.clone(),
        None => match settings::profile::Profile::locate() {
            Ok(profile) => profile.audit_dir(),
            Err(e) => return crate::exit::config_error(&e),
        },
    };
    let verified = audit::verify_path(&path);
    if path_is_default_tree(&path) {
        remember_verification(&verified);
    }
    match verified {
        Ok((files, records)) => {
            tracing::info!(
                "audit chain verified: {files} file(s), {records} record(s) under {}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(broken) => {
            tracing::error!(
                "audit chain broken: {}",
                logging::escaped(&broken.to_string())
            );
            ExitCode::from(crate::exit::FAILURE)
        }
    }
}

fn path_is_default_tree(path: &std::path::Path) -> bool {
    settings::profile::Profile::locate().is_ok_and(|p| p.audit_dir() == path)
}

/// The last verification of the whole tree, for `status` and `health`.
fn remember_verification(verified: &Result<(usize, usize), audit::Broken>) {
    let Ok(profile) = settings::profile::Profile::locate() else {
        return;
    };
    let record = match verified {
        Ok((files, records)) => state_file::AuditVerification {
            at: clock::now_rfc3339(),
            ok: true,
            files: *files,
            records: *records,
            error: None,
        },
        Err(broken) => state_file::AuditVerification {
            at: clock::now_rfc3339(),
            ok: false,
            error: Some(broken.to_string()),
            ..Default::default()
        },
    };
    let _ = state_file::StateFile::in_profile(&profile.dir)
        .update(|s| s.audit_verification = Some(record));
}
