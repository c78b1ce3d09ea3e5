//! Root doing a user's work as that user.
//!
//! An MDM runs `wrap-config`, `status` and `health` as root over files in users' homes.
//! Everything there is the user's to plant: a link to `/etc/shadow` or to a root-only
//! key, a FIFO that never answers, a lock held forever, `/dev/zero`. Rather than make
//! every open in those commands safe for root, root never does that work itself: it
//! runs the same thoth binary as the user who owns the file or home (their uid and
//! primary gid, supplementary groups dropped, `HOME` theirs, thoth's secrets removed
//! unless the command passes one on), bounded in time, and only reads back what that
//! process prints. A link then reaches only what the user could read anyway, and a
//! file that blocks stalls only the child, which is killed at the deadline.
//!
//! This module must never follow a link to find an owner (it looks at the link
//! itself) and never wait for a child without a deadline.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the user's part may take by default (`THOTH_USER_WORK_TIMEOUT_MS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of the user's part's stdout read back at most.
const MAX_OUTPUT: u64 = 4 * 1024 * 1024;

/// A user other than root who owns a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
}

/// When thoth runs as root: the owner of the first of `paths` that another user
/// controls, and that user. A path is another user's when any of its components, from
/// the top down, belongs to that user (each looked at without following a link): who
/// owns a directory or a link on the way decides where the rest of the path leads.
pub fn foreign_owner(paths: &[&Path]) -> Option<Owner> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            return None;
        }
        for path in paths {
            let absolute = match std::path::absolute(path) {
                Ok(p) => p,
                Err(_) => continue,
            };
            let mut prefix = PathBuf::new();
            for component in absolute.components() {
                prefix.push(component);
                let Ok(meta) = std::fs::symlink_metadata(&prefix) else {
                    break;
                };
                if meta.uid() != 0 {
                    return owner_of(meta.uid(), meta.gid());
                }
            }
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = paths;
        None
    }
}

#[cfg(unix)]
fn owner_of(uid: u32, gid: u32) -> Option<Owner> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()?;
    Some(match user {
        Some(user) => Owner {
            uid,
            gid: user.gid.as_raw(),
            name: user.name,
            home: user.dir,
        },
        // A uid without an account (a test's, or a deleted user's): its own group.
        None => Owner {
            uid,
            gid,
            name: uid.to_string(),
            home: PathBuf::from("/nonexistent"),
        },
    })
}

/// What the user's part gave back.
#[derive(Debug)]
pub enum UserWork {
    /// It ended within the deadline: its status and what it printed on stdout.
    Done { status: ExitStatus, stdout: Vec<u8> },
    /// It was still running at the deadline and was killed.
    TimedOut,
}

/// Runs this thoth binary with `args` as `owner`, with `HOME` set to `home`, its
/// stdin empty and its stderr thoth's, and `pass_secrets` (name, value) added to its
/// environment; stdout is captured when `capture`, else shared. Waits at most
/// `timeout`.
pub fn run_as(
    owner: &Owner,
    home: &Path,
    args: &[OsString],
    pass_secrets: &[(&str, OsString)],
    capture: bool,
    timeout: Duration,
) -> std::io::Result<UserWork> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("HOME", home)
        .env("USER", &owner.name)
        .env("LOGNAME", &owner.name)
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit());
    // In thoth's own directory, so relative paths on the command line (`--policy
    // p.cedar`, CONFIG) mean what they meant to root; `/` when the user cannot enter it.
    let here = std::env::current_dir().ok().filter(|dir| dir.is_absolute());
    cmd.current_dir(here.as_deref().unwrap_or(Path::new("/")));
    for name in crate::harden::SECRETS {
        cmd.env_remove(name);
    }
    for (name, value) in pass_secrets {
        cmd.env(name, value);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // std drops the supplementary groups (setgroups(0)) when it sets the uid as root.
        cmd.uid(owner.uid).gid(owner.gid);
    }
    let mut child = match cmd.spawn() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && here.is_some() => {
            tracing::warn!(
                "{} cannot enter thoth's current directory: running in / (give absolute paths)",
                crate::logging::escaped(&owner.name)
            );
            cmd.current_dir("/").spawn()?
        }
        other => other?,
    };
    let reader = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut bytes = Vec::new();
            let _ = out.take(MAX_OUTPUT).read_to_end(&mut bytes);
            bytes
        })
    });
    let Some(status) = wait_until(&mut child, Instant::now() + timeout)? else {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(UserWork::TimedOut);
    };
    let stdout = reader
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    Ok(UserWork::Done { status, stdout })
}

/// The child's exit status, or `None` when it is still running at `deadline`.
///
/// On Linux a helper thread waits for the exit without reaping the child (`waitid`
/// with `WNOWAIT`), so the process stays this thread's to kill: its pid cannot be
/// reused before `child` reaps it, and nothing polls. Elsewhere (or if `waitid`
/// fails), a 10 ms poll.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        if let Ok(raw) = i32::try_from(child.id()) {
            let pid = nix::unistd::Pid::from_raw(raw);
            let (exited_tx, exited) = std::sync::mpsc::sync_channel::<bool>(1);
            std::thread::spawn(move || {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                let waited = loop {
                    match waitid(Id::Pid(pid), flags) {
                        Err(nix::errno::Errno::EINTR) => {}
                        other => break other.is_ok(),
                    }
                };
                let _ = exited_tx.send(waited);
            });
            let left = deadline.saturating_duration_since(Instant::now());
            match exited.recv_timeout(left) {
                Ok(true) => return child.wait().map(Some),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return child.try_wait(),
                Ok(false) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
    }
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The deadline of a user's part: `THOTH_USER_WORK_TIMEOUT_MS` when set and valid.
pub fn timeout(env: Option<&crate::settings::EnvVars>) -> Duration {
    env.and_then(|e| e.user_work_timeout)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Re-runs the whole command line as `owner` (stdout shared), for commands that only
/// touch that user's files; the exit code is the child's (1 when it timed out).
pub fn rerun_as(
    owner: &Owner,
    home: &Path,
    pass_secrets: &[(&str, OsString)],
) -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let env = crate::settings::EnvVars::from_process().ok();
    let limit = timeout(env.as_ref());
    tracing::info!(
        "running as {} (uid {}): the files belong to that user",
        crate::logging::escaped(&owner.name),
        owner.uid
    );
    match run_as(owner, home, &args, pass_secrets, false, limit) {
        Ok(UserWork::Done { status, .. }) => std::process::ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ),
        Ok(UserWork::TimedOut) => {
            tracing::error!(
                "the work as {} did not end within {} ms (a FIFO, a held lock or a slow disk in that home?); stopped",
                crate::logging::escaped(&owner.name),
                limit.as_millis()
            );
            std::process::ExitCode::from(crate::exit::FAILURE)
        }
        Err(e) => {
            tracing::error!(
                "cannot run as {}: {e}",
                crate::logging::escaped(&owner.name)
            );
            std::process::ExitCode::from(crate::exit::FAILURE)
        }
    }
}
