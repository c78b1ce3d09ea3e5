//! Command-line flags, parsed once by clap. Values that need more than clap's checks
//! are validated where they are turned into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default bound on one client → server frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// thoth: a governance sidecar for Model Context Protocol servers.
#[derive(Debug, Parser)]
#[command(name = "thoth", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify JSON-RPC frames (one JSON line per frame on stdout).
    Scan(ScanArgs),
}

/// `thoth scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// File to read; stdin when absent.
    pub file: Option<PathBuf>,
    /// Treat the whole input as one frame (for corpora with embedded newlines).
    #[arg(long)]
    pub whole: bool,
    /// Longest frame accepted, in bytes (larger ones are reported as frame_too_large).
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES, value_parser = parse_frame_bytes)]
    pub max_frame_bytes: usize,
}

/// A frame bound between 1 KiB and 1 GiB.
pub fn parse_frame_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (use a whole number, e.g. 16777216)"))?;
    if (1024..=1 << 30).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range: use 1024 to 1073741824 bytes"))
    }
}
