//! Settings: flags, `THOTH_*` variables, the machine-wide managed file and the user's
//! `~/.thoth` profile, merged once at startup with the precedence
//! managed > flag > environment > profile > derived default (docs/architecture.md §6).
//!
//! Everything is validated here so the rest of thoth works with typed, in-range values.
//! A managed setting also refuses any flag or variable that would weaken it.

pub mod env;
pub mod managed;
pub mod profile;
pub mod run;

use std::fmt;

pub use env::EnvVars;
pub use managed::Managed;
pub use run::{EngineChoice, GovApiSettings, RunSettings};

/// A startup error: one line naming the setting and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(String);

impl SettingsError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// A secret value: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
