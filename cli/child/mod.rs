//! The server process: shell-free resolution, environment, process tree and shutdown.
//!
//! Everything about the child's lifetime lives here (in the manner of uv's `child.rs`):
//! the server runs in its own process group so a signal reaches its descendants, and on
//! Linux with `PR_SET_PDEATHSIG(SIGKILL)` so not even a SIGKILLed thoth leaves it behind
//! (the signal follows the thread that spawned: thoth's main thread, which lives as long
//! as thoth). MCP clients give thoth about 2 s after closing stdin before SIGTERM and 2 s
//! more before SIGKILL, so the escalation here is 1 s + 1 s. On Windows thoth puts itself
//! in a job object with kill-on-close before spawning, so the server and everything it
//! starts inherit the job (no window between spawn and assignment) and end when thoth's
//! handle closes, however thoth ends; stopping kills the server process directly (there
//! is no SIGTERM). This module never touches stdout.

pub mod locate;

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::harden::SECRETS;
use locate::{FsProbe, NotFound, Platform, ResolveEnv, Resolved};

/// Variables never passed to the server: thoth's secrets.
pub fn is_secret(name: &str) -> bool {
    SECRETS.contains(&name)
}

/// Resolves the server command with the process environment and the real file system.
pub fn resolve_command(program: &OsString) -> Result<Resolved, NotFound> {
    let name = program.to_string_lossy();
    locate::resolve(
        Platform::current(),
        &name,
        &ResolveEnv::from_process(),
        &FsProbe,
    )
}

/// The child's environment: thoth's minus its secrets, with the resolved directory
/// prepended to PATH when absent (a `#!/usr/bin/env node` shebang needs it).
pub fn child_env(resolved: &Resolved) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !k.to_str().is_some_and(is_secret))
        .filter(|(k, _)| k != "PATH")
        .collect();
    let path = std::env::var("PATH").ok();
    env.push((
        "PATH".into(),
        locate::path_with(Platform::current(), path.as_deref(), &resolved.dir).into(),
    ));
    env
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub pid: u32,
}

/// Starts the server; `stderr` is inherited by `run` and captured by `doctor`.
pub fn spawn(resolved: &Resolved, args: &[OsString], stderr: Stdio) -> std::io::Result<Server> {
    #[cfg(windows)]
    join_kill_on_close_job();
    let mut cmd = Command::new(&resolved.path);
    cmd.args(args)
        .env_clear()
        .envs(child_env(resolved))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(false);
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2) and getppid(2), both async-signal-safe. It allocates nothing, on its
        // error paths too: an errno becomes an `io::Error` of the `Os` kind, which holds
        // just the number (a boxed message could deadlock on an allocator lock another
        // thread of thoth held at the fork).
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)?;
                // thoth may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
                    return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    #[cfg(target_os = "linux")]
    {
        if let Some(stdin) = &child.stdin {
            widen_pipe(stdin);
        }
        if let Some(stdout) = &child.stdout {
            widen_pipe(stdout);
        }
    }
    Ok(Server { child, pid })
}

/// Pipe capacity thoth asks for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB
/// by default, to unprivileged users).
#[cfg(target_os = "linux")]
const PIPE_CAPACITY: i32 = 1 << 20;

/// Grows a pipe's kernel buffer so bulk traffic takes fewer wake-ups (best effort: a
/// smaller pipe still works).
#[cfg(target_os = "linux")]
pub fn widen_pipe(fd: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_CAPACITY),
    );
}

/// Puts thoth in a kill-on-close job once; children inherit it. A failure (thoth is in
/// a job that forbids nesting, on old Windows) is logged and the server runs anyway.
#[cfg(windows)]
fn join_kill_on_close_job() {
    static JOB: std::sync::OnceLock<Option<win32job::Job>> = std::sync::OnceLock::new();
    JOB.get_or_init(|| {
        let mut info = win32job::ExtendedLimitInfo::new();
        info.limit_kill_on_job_close();
        let job = win32job::Job::create_with_limit_info(&info)
            .and_then(|job| job.assign_current_process().map(|()| job));
        match job {
            Ok(job) => Some(job),
            Err(e) => {
                tracing::warn!(
                    "cannot create the kill-on-close job object ({e}): the server's descendants may outlive thoth"
                );
                None
            }
        }
    });
}

/// Sends `signal` to the server's process group (ignores a group already gone).
#[cfg(unix)]
fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Asks the server's process tree to stop.
pub fn terminate(server: &mut Server) {
    #[cfg(unix)]
    signal_group(server.pid, nix::sys::signal::Signal::SIGTERM);
    #[cfg(not(unix))]
    let _ = server.child.start_kill();
}

/// Kills the server's process tree.
pub fn kill(server: &mut Server) {
    #[cfg(unix)]
    signal_group(server.pid, nix::sys::signal::Signal::SIGKILL);
    let _ = server.child.start_kill();
}

/// Waits for the server to exit: SIGTERM to the group after `term_after`, SIGKILL
/// `kill_after` later. Stragglers left in the group get SIGTERM once it has exited.
pub async fn stop(
    server: &mut Server,
    term_after: Duration,
    kill_after: Duration,
) -> std::io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(term_after, server.child.wait()).await {
        terminate(server);
        return status;
    }
    terminate(server);
    if let Ok(status) = tokio::time::timeout(kill_after, server.child.wait()).await {
        return status;
    }
    kill(server);
    server.child.wait().await
}

/// The exit code thoth returns for the server's status (128+signal when killed).
pub fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xFF).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + (signal & 0x7F)).unwrap_or(1);
        }
    }
    1
}
