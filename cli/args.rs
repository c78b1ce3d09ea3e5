//! Command-line flags, parsed once by clap. Values that need more than clap's checks
//! are validated where they are turned into settings.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::domain::Mode;

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
    /// Run an MCP server under governance: thoth run [flags] -- <command> [args…]
    Run(RunArgs),
    /// Check a server before rolling it out: resolution, initialize, tools/list, decisions.
    Doctor(DoctorArgs),
    /// Audit log tools.
    Audit(AuditArgs),
    /// Review tool-definition pins: what changed since a server was pinned.
    Pins(PinsArgs),
    /// The local Cedar engine as an enforcer service.
    Enforcer(EnforcerArgs),
    /// Approve a step-up hold on an enforcer served by `thoth enforcer serve`.
    Approve(ResolveArgs),
    /// Deny a step-up hold.
    Deny(ResolveArgs),
    /// Classify JSON-RPC frames (one JSON line per frame on stdout).
    Scan(ScanArgs),
    /// Put every stdio server of an MCP client's config under `thoth run` (or --restore).
    WrapConfig(WrapConfigArgs),
    /// What thoth is configured to do on this machine.
    Status(StatusArgs),
    /// One health verdict for MDM (Intune: --json, Jamf: --jamf FIELD).
    Health(HealthArgs),
    /// Register this endpoint with the GovAPI now (MDM install scripts).
    Register(RegisterArgs),
    /// Print a shell completion script: thoth completions bash > /etc/bash_completion.d/thoth
    Completions(CompletionsArgs),
    /// Print the man page (roff): thoth man > /usr/local/share/man/man1/thoth.1
    Man,
}

/// `thoth completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// `thoth wrap-config`. `--agent-id` is hidden: each server's name in the file is its
/// agent id (the flag is still parsed, so giving it gets a precise refusal).
#[derive(Debug, Args)]
#[command(mut_arg("agent_id", |a| a.hide(true)))]
pub struct WrapConfigArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// The client: claude-desktop, claude-code, cursor, vscode, windsurf, gemini, zed
    /// (default: detected from CONFIG's path).
    #[arg(long)]
    pub client: Option<String>,
    /// Every existing user-level config file of this user (of --client only, if given).
    #[arg(long)]
    pub all: bool,
    /// Write the result here instead of changing CONFIG.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print a unified diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give back the original: byte for byte when the file is still what thoth wrote,
    /// else by unwrapping each wrapped entry in place.
    #[arg(long)]
    pub restore: bool,
    /// Put the API key in each wrapped entry's env (THOTH_API_KEY). Never in args.
    #[arg(long)]
    pub embed_api_key: bool,
    /// Print the per-file report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the config even when --policy is missing or does not parse (every wrapped
    /// server would then refuse to start until it is fixed).
    #[arg(long)]
    pub force: bool,
    /// The client config file.
    pub config: Option<PathBuf>,
}

/// `thoth status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// `thoth health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// One line of JSON: flat PascalCase scalars plus a `checks` object.
    #[arg(long, conflicts_with = "jamf")]
    pub json: bool,
    /// Print `<result>VALUE</result>` for one field of the JSON object.
    #[arg(long, value_name = "FIELD")]
    pub jamf: Option<String>,
    /// Also check that the enforcer (and GovAPI) answer, with a short timeout.
    #[arg(long)]
    pub probe: bool,
    /// Report on this user's profile instead (MDM runs as root/SYSTEM).
    #[arg(long, conflicts_with = "all_users")]
    pub user: Option<String>,
    /// Report on every user's profile; the worst status wins.
    #[arg(long)]
    pub all_users: bool,
    /// Internal: assess the profile in this home and print it as JSON (what root runs
    /// as each user for --user and --all-users).
    #[arg(long, hide = true, conflicts_with_all = ["user", "all_users", "json", "jamf"])]
    pub one_home: Option<std::path::PathBuf>,
}

/// `thoth register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub flags: RunFlags,
}

/// Identity and policy flags shared by `run` and `doctor` (stable names).
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// The agent (server) id, e.g. the server's name in the client config.
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Tenant id ([a-z0-9-], at most 63 characters).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// The user on whose behalf tools run.
    #[arg(long)]
    pub user_id: Option<String>,
    /// This machine's endpoint id (default: the host name).
    #[arg(long)]
    pub endpoint_id: Option<String>,
    /// observe | step_up | block | progressive (default block).
    #[arg(long, value_parser = mode_arg)]
    pub enforcement_mode: Option<Mode>,
    /// Session intent (default from ~/.thoth/intent_map.json).
    #[arg(long)]
    pub session_intent: Option<String>,
    /// API key for the Thoth enforcer. Prefer THOTH_API_KEY or THOTH_API_KEY_FILE:
    /// every process listing shows a command line.
    #[arg(long)]
    pub api_key: Option<String>,
    /// A Cedar policy file: decide locally with it.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Largest client → server frame in bytes (default 16 MiB).
    #[arg(long, value_parser = parse_frame_bytes)]
    pub max_frame_bytes: Option<usize>,
    /// What to do with what the detectors find in the server's answers, per class:
    /// `secret=redact,pii=record,phi=block,injection=record` (record, redact or block;
    /// a class not named is not inspected). THOTH_INSPECT_RESULTS; the managed
    /// `inspect_results` wins per class.
    #[arg(long, value_parser = inspect_results_arg, value_name = "CLASS=ACTION,…")]
    pub inspect_results: Option<crate::inspect::actions::ResultActions>,
}

/// `thoth run`: the agent id is required (doctor defaults it from the command).
#[derive(Debug, Args)]
#[command(mut_arg("agent_id", |a| a.required(true)))]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// The server command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `thoth doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for initialize and tools/list.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// The server command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `thoth enforcer`.
#[derive(Debug, Args)]
pub struct EnforcerArgs {
    #[command(subcommand)]
    pub command: EnforcerCommand,
}

/// Enforcer subcommands.
#[derive(Debug, Subcommand)]
pub enum EnforcerCommand {
    /// Serve a Cedar policy over the enforcer wire protocol.
    Serve(ServeArgs),
}

/// `thoth enforcer serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The Cedar policy to serve.
    #[arg(long)]
    pub policy: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is logged).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// File holding the API key clients must send (raw or {"api_key": …}); without it
    /// any client is served.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// JSONL file that telemetry batches are appended to.
    #[arg(long)]
    pub events_file: Option<PathBuf>,
    /// How long a hold waits for approval, in seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hold_seconds: u64,
    /// Base URL used in approval links (default http(s)://<listen address>).
    #[arg(long)]
    pub public_url: Option<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Connections served at once at most (more wait in the listen backlog).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections: u64,
    /// Requests a second per API key at most, with bursts of twice that (more get 429).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_requests_per_second: u32,
    /// How long a TLS handshake, a request's headers and then its body may each take,
    /// in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_timeout_ms: u64,
    /// Open holds per agent at most; past that a STEP_UP comes without a hold.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_holds_per_agent: u64,
    /// Where holds, approvals, the decision log and events live: postgres://… for
    /// several replicas (default THOTH_DATABASE_URL, else a SQLite file,
    /// enforcer.db, in the server's ~/.thoth).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Days the decision log, events and ended holds are kept.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub retention_days: u64,
    /// How often queued decision-log rows are written, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub decision_log_flush_ms: u64,
}

/// `thoth approve TOKEN` / `thoth deny TOKEN`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The hold token (the last segment of the approval URL).
    pub token: String,
    /// The enforcer (default THOTH_ENFORCER_URL).
    #[arg(long)]
    pub enforcer_url: Option<String>,
    /// Print the enforcer's answer (the hold as polls see it) as JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// The name the approval is recorded under (default: this account's name).
    #[arg(long = "as", value_name = "NAME")]
    pub approver_name: Option<String>,
}

/// `thoth audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `thoth pins`.
#[derive(Debug, Args)]
pub struct PinsArgs {
    #[command(subcommand)]
    pub command: PinsCommand,
}

/// Pins subcommands.
#[derive(Debug, Subcommand)]
pub enum PinsCommand {
    /// Every pinned server, its tools, and the definitions waiting for review.
    List {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Pin the definitions seen since (every pending one of AGENT, or TOOL's).
    Accept {
        /// The agent id (as `thoth pins list` shows it).
        agent: String,
        /// One tool; every pending tool of the agent when absent.
        tool: Option<String>,
        /// Accept only the definition with this digest (the one `thoth pins list`
        /// showed you), not one that changed again since.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Remove every pin of AGENT: its next session pins what it sees.
    Forget {
        /// The agent id.
        agent: String,
    },
}

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of one audit file or every file under a directory
    /// (default ~/.thoth/audit).
    Verify {
        /// File or directory.
        path: Option<PathBuf>,
    },
}

fn mode_arg(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Mode::TABLE.iter().map(|(name, _)| *name).collect();
        let (last, rest) = names.split_last().unwrap_or((&"", &[]));
        format!("`{s}` is not a mode: use {} or {last}", rest.join(", "))
    })
}

fn inspect_results_arg(s: &str) -> Result<crate::inspect::actions::ResultActions, String> {
    crate::inspect::actions::ResultActions::parse(s)
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

/// A line to add under clap's usage error, for the mistakes people make most: a server
/// command given to `run` or `doctor` without `--` before it.
pub fn usage_hint(argv: &[OsString], error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let command = argv.get(1)?.to_str()?;
    if error.kind() != ErrorKind::UnknownArgument || !matches!(command, "run" | "doctor") {
        return None;
    }
    let Some(ContextValue::String(unexpected)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    (!unexpected.starts_with('-')).then(|| {
        format!(
            "hint: put `--` before the server command: thoth {command} [flags] -- {} …",
            crate::logging::escaped(unexpected)
        )
    })
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
