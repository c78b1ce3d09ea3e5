//! Settings: flags, `THOTH_*` variables, the machine-wide managed file and the user's
//! `~/.thoth` profile, merged once at startup with the precedence
//! managed > flag > environment > profile > derived default (docs/architecture.md §6).
//!
//! Everything is validated here so the rest of thoth works with typed, in-range values.
//! A managed setting also refuses any flag or variable that would weaken it.

pub mod env;
mod error;
pub mod managed;
pub mod otlp;
pub mod profile;
pub mod run;
pub mod tls;

pub use env::EnvVars;
pub use error::{Secret, SettingsError};
pub use managed::Managed;
pub use run::{EngineChoice, GovApiSettings, RunSettings};
pub use tls::TlsSettings;
