//! `thoth completions <shell>` and `thoth man`: the command line described for shells
//! and for man, generated from the same clap definitions that parse it (so they never
//! drift from the flags). Both write to stdout only what they generate.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "thoth", &mut out);
    write_out(&out)
}

/// Prints thoth(1) as roff.
pub fn man() -> ExitCode {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
        tracing::error!("cannot render the man page: {e}");
        return ExitCode::from(crate::exit::SOFTWARE);
    }
    write_out(&out)
}

fn write_out(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `thoth man | head` closes the pipe early: not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot write to stdout: {e}");
            ExitCode::from(crate::exit::IO_ERROR)
        }
    }
}
