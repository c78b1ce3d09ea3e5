//! Every exit code thoth returns, in one place, and the one way a configuration error
//! ends a command.
//!
//! `thoth run` exits with the server's own code when the server ran; these are thoth's
//! own. Codes follow sysexits(3) where one fits, and the shell's 127 for a command that
//! cannot be found, so MDM scripts and shells read them as they read any tool's.

use std::process::ExitCode;

/// A check failed or something did not work (health, status, audit verify, register).
pub const FAILURE: u8 = 1;
/// The command line could not be parsed (clap's usage errors).
pub const USAGE: u8 = 2;
/// Nothing to work on (EX_NOINPUT): no such input file, or nothing in it to check.
pub const NO_INPUT: u8 = 66;
/// Reading or writing failed (EX_IOERR).
pub const IO_ERROR: u8 = 74;
/// thoth itself failed at run time (EX_SOFTWARE): no runtime, lost pipes.
pub const SOFTWARE: u8 = 70;
/// A configuration error (EX_CONFIG): a setting, file or flag names the fix.
pub const CONFIG: u8 = 78;
/// The server command cannot be found or started.
pub const NOT_FOUND: u8 = 127;

/// One stderr line (escaped: it may quote a file or the environment) and the
/// configuration exit code.
pub fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    config_report(&[e.to_string()])
}

/// A configuration error of several lines (a policy error placed in its file), each an
/// escaped stderr line of its own, and the configuration exit code.
pub fn config_report(lines: &[String]) -> ExitCode {
    for line in lines {
        tracing::error!("{}", crate::logging::escaped(line));
    }
    ExitCode::from(CONFIG)
}
