//! `~/.thoth/state.json`: what this machine's proxies share between runs — the GovAPI
//! registration, the last heartbeat, today's session and violation counts, the last
//! audit chain verification.
//!
//! Clients start several `thoth run` at once, so every change happens under an
//! exclusive lock on `~/.thoth/state.lock` (read, change, write to a temporary file,
//! rename). Readers (`status`, `health`) take a shared lock. A missing or unreadable
//! state is an empty one: this file is bookkeeping, never policy, and never holds a
//! secret.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The shared state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    /// RFC 3339 UTC time of the last successful heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<Today>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_verification: Option<AuditVerification>,
}

/// A successful registration with the GovAPI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub govapi_url: String,
    pub endpoint_id: String,
    /// RFC 3339 UTC.
    pub registered_at: String,
    /// Every agent id registered for this endpoint.
    #[serde(default)]
    pub agent_ids: Vec<String>,
}

/// Today's counters (UTC day).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Today {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub sessions: u64,
    pub violations: u64,
}

/// The last `thoth audit verify` of the whole audit tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditVerification {
    pub at: String,
    pub ok: bool,
    pub files: usize,
    pub records: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl State {
    /// Today's counters, reset when the UTC day changed.
    pub fn today_mut(&mut self, date: &str) -> &mut Today {
        if self.today.as_ref().is_none_or(|t| t.date != date) {
            self.today = Some(Today {
                date: date.to_string(),
                ..Default::default()
            });
        }
        self.today.get_or_insert_with(Default::default)
    }
}

/// The state file of a profile.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    lock: PathBuf,
}

impl StateFile {
    pub fn in_profile(profile_dir: &Path) -> Self {
        Self {
            path: profile_dir.join("state.json"),
            lock: profile_dir.join("state.lock"),
        }
    }

    fn open_lock(&self) -> std::io::Result<fs::File> {
        if let Some(dir) = self.lock.parent() {
            crate::private_files::create_dirs(dir)?;
        }
        crate::private_files::file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&self.lock)
    }

    /// The current state (empty when there is none or it cannot be read). Creates
    /// nothing: `status` and `health` read profiles they must not bootstrap.
    pub fn read(&self) -> State {
        if !self.path.exists() {
            return State::default();
        }
        let lock = self.open_lock().ok();
        if let Some(l) = &lock {
            let _ = l.lock_shared();
        }
        let state = self.read_unlocked();
        if let Some(l) = lock {
            let _ = l.unlock();
        }
        state
    }

    fn read_unlocked(&self) -> State {
        fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Changes the state under the exclusive lock.
    pub fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> std::io::Result<R> {
        let locked = self.lock()?;
        let mut state = locked.state();
        let before = state.clone();
        let result = change(&mut state);
        if state != before {
            locked.save(&state)?;
        }
        Ok(result)
    }

    /// Takes the exclusive lock until the guard is dropped (held across a request,
    /// so proxies started together register once).
    pub fn lock(&self) -> std::io::Result<Locked<'_>> {
        let file = self.open_lock()?;
        file.lock()?;
        Ok(Locked { file, state: self })
    }

    fn write_unlocked(&self, state: &State) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        crate::private_files::write(&tmp, &bytes)?;
        fs::rename(&tmp, &self.path)
    }
}

/// The exclusive lock on the state; released on drop.
pub struct Locked<'a> {
    file: fs::File,
    state: &'a StateFile,
}

impl Locked<'_> {
    pub fn state(&self) -> State {
        self.state.read_unlocked()
    }

    pub fn save(&self, state: &State) -> std::io::Result<()> {
        self.state.write_unlocked(state)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Whole minutes since an RFC 3339 time (`None` when it does not parse).
pub fn age_minutes(rfc3339: &str) -> Option<i64> {
    let then = crate::clock::parse_rfc3339(rfc3339)?;
    Some((time::OffsetDateTime::now_utc() - then).whole_minutes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_updates_are_serialised() {
        let dir = std::env::temp_dir().join(format!("thoth-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = StateFile::in_profile(&dir);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let file = file.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        file.update(|s| s.today_mut("2026-11-26").sessions += 1)
                            .expect("update");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(file.read().today.expect("today").sessions, 200);
        // A new day starts from zero.
        file.update(|s| s.today_mut("2026-11-27").sessions += 1)
            .expect("update");
        assert_eq!(file.read().today.expect("today").sessions, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_state_is_empty() {
        let dir = std::env::temp_dir().join(format!("thoth-state-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("state.json"), b"{not json").expect("write");
        assert_eq!(StateFile::in_profile(&dir).read(), State::default());
        assert!(age_minutes("2020-01-01T00:00:00Z").is_some_and(|m| m > 0));
        assert_eq!(age_minutes("yesterday"), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
