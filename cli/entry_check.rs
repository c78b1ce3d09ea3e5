//! Whether a wrapped client entry would start: what `health` checks for each one.
//!
//! A client starts `<command> <args…>` with the entry's `env` added to its own. This
//! module goes through what that `thoth run` would do before it spawns the server —
//! find thoth, parse its flags, read its environment, resolve its settings (the same
//! function `run` uses, refusals for root included) and load its engine (the policy
//! parses; a remote enforcer's client builds) — and stops there: it never spawns the
//! server, never creates the profile, never touches the network, and never quotes a
//! file's contents (health runs it as root's stand-in for the user).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::settings::EnvVars;
use crate::settings::profile::Profile;
use crate::wrap::edit::WrappedEntry;

/// Why an entry would not start, in one line (the caller names the client, file and
/// server).
pub fn check(entry: &WrappedEntry, profile: &Profile) -> Result<(), String> {
    check_thoth(&entry.thoth)?;
    let argv =
        std::iter::once(OsString::from("thoth")).chain(entry.args.iter().map(OsString::from));
    let run = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(run),
        }) => run,
        Ok(_) => return Err("its args do not start thoth run".into()),
        Err(e) => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            return Err(format!("thoth run would not parse its flags: {first}"));
        }
    };
    let added: BTreeMap<&str, &str> = entry
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The entry's env over thoth's own (its secrets from where `harden` keeps them).
    let get = |name: &str| {
        added.get(name).map(OsString::from).or_else(|| {
            if crate::harden::SECRETS.contains(&name) {
                crate::harden::secret(name)
            } else {
                std::env::var_os(name)
            }
        })
    };
    let names = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .chain(added.keys().map(|k| k.to_string()))
        .collect::<std::collections::BTreeSet<_>>();
    let env =
        EnvVars::read(&get, names).map_err(|e| format!("thoth run would refuse to start: {e}"))?;
    let settings = crate::run_cmd::resolve_settings(&run.flags, &env, profile.clone(), None)
        .map_err(|e| format!("thoth run would refuse to start: {e}"))?;
    if let crate::settings::EngineChoice::Local { policy, .. } = &settings.engine
        && *policy == profile.policy_file()
        && !policy.exists()
    {
        // The first run writes the starter policy there.
        return Ok(());
    }
    crate::run_cmd::load_engine(&settings)
        .map(|_| ())
        .map_err(|e| format!("thoth run would refuse to start: {}", e.unquoted()))
}

/// The command names a thoth that exists and can be executed.
fn check_thoth(command: &str) -> Result<(), String> {
    let path = Path::new(command);
    if !path.is_absolute() {
        // A bare name is looked up on the client's PATH, which a GUI client does not
        // share with the shell: the search here (PATH and the usual install folders)
        // is the best estimate.
        return crate::child::resolve_command(&OsString::from(command))
            .map(|_| ())
            .map_err(|_| {
                format!("its command {command} is not found on PATH: use thoth's absolute path")
            });
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("its command {command} cannot be used: {e}"))?;
    if !meta.is_file() {
        return Err(format!("its command {command} is not a file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("its command {command} is not executable"));
        }
    }
    Ok(())
}
