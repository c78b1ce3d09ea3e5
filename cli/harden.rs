//! thoth's own process, made hard to read by the server it runs.
//!
//! The server runs as the same user as thoth, so it could read thoth's memory and the
//! environment it started with (`/proc/<thoth pid>/environ`, `/proc/<pid>/mem`) and
//! find the enforcer key, the approver key, the GovAPI credentials and the ingest
//! token, even though its own environment is scrubbed of them. [`process`] runs first
//! in `thoth::run`, while thoth is still one thread: on Linux it makes thoth
//! non-dumpable (its `/proc` files then belong to root, and a same-user ptrace
//! attach is refused), and everywhere it moves the secret variables out of the
//! environment into memory that only [`secret`] reads. (On macOS, where there is no
//! `/proc`, nothing more is done: the environment of another process is not readable
//! through a file there, and the secrets leave the environment all the same.)
//!
//! This module must never log a secret's value, and it must run before any thread is
//! started: changing the environment is not thread-safe.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::OnceLock;

/// Variables whose values are secrets: never logged, never passed to the server.
pub const SECRETS: &[&str] = &[
    "THOTH_API_KEY",
    "THOTH_GOVAPI_BEARER_TOKEN",
    "THOTH_GOVAPI_API_KEY",
    "THOTH_EVENT_INGEST_TOKEN",
    "THOTH_APPROVER_KEY",
    "THOTH_DATABASE_URL",
];

static TAKEN: OnceLock<HashMap<&'static str, OsString>> = OnceLock::new();

/// Hardens the process (see the module doc). Call once, first, single-threaded.
pub fn process() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make thoth non-dumpable (PR_SET_DUMPABLE): {e}");
    }
    let mut taken = HashMap::new();
    for &name in SECRETS {
        if let Some(value) = std::env::var_os(name) {
            taken.insert(name, value);
            // SAFETY: `process` runs at the start of `thoth::run`, before thoth starts
            // any thread (the runtime, the relay, the audit writer come later), so no
            // other thread can read or write the environment concurrently.
            unsafe { std::env::remove_var(name) };
        }
    }
    let _ = TAKEN.set(taken);
}

/// The value a secret variable had when thoth started (or, when [`process`] has not
/// run, as in unit tests, its value now).
pub fn secret(name: &str) -> Option<OsString> {
    match TAKEN.get() {
        Some(taken) => taken.get(name).cloned(),
        None => std::env::var_os(name),
    }
}
