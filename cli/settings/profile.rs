//! The user's `~/.thoth` profile: created on first run, never overwritten.
//!
//! `intent_map.json` maps agent ids to session intents (`"*"` is the default),
//! `proxy_api_key.json` holds the API key (`{"api_key": ""}` until an administrator
//! fills it; refused when group or others can read it, as ssh refuses keys), and
//! `policy.cedar` is a starter policy that allows every tool, so a first run never
//! surprises anyone: tighten it (see examples/policies/) to start governing.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Secret, SettingsError};

/// The starter local policy: everything allowed, and why.
pub const STARTER_POLICY: &str = r#"// thoth starter policy (created on first run): every tool call is allowed.
//
// thoth evaluates this file with Cedar for each tools/call when no Thoth enforcer is
// configured. Replace it with a stricter policy, for example one from
// examples/policies/ in the thoth repository:
//   read-only.cedar  blocks tools whose names look like writes, deletes or execution
//   hipaa.cedar      uses the session intent to keep PHI tools to clinical sessions
//
// Request shape: principal Thoth::Agent::"<agent id>", action Thoth::Action::"tools/call",
// resource Thoth::Tool::"<tool name>" (attributes name, title, in_catalog, annotated,
// annotations, pin, description_flags), and a context with tool_name, arguments,
// session_intent, enforcement_mode, session_tool_calls, session_call_count,
// previous_tool.
@id("starter-allow-all")
@reason("starter policy allows every tool")
permit (principal, action, resource);

// A tool whose definition (description, schema, annotations) changed since its
// server's first session was pinned waits for a person: review it with
// `thoth pins list`, then `thoth pins accept <agent> <tool>`.
@id("starter-changed-tool")
@reason("this tool's definition changed since it was pinned: review it with `thoth pins list`, then `thoth pins accept`")
@decision("step_up")
forbid (principal, action, resource)
when { resource.pin == "changed" };
"#;

/// `~/.thoth`.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: PathBuf,
}

impl Profile {
    /// The profile of the user running thoth.
    pub fn locate() -> Result<Self, SettingsError> {
        let home = dirs::home_dir().ok_or_else(|| {
            SettingsError::new("cannot find the home directory (set HOME) for ~/.thoth")
        })?;
        Ok(Self {
            dir: home.join(".thoth"),
        })
    }

    pub fn intent_map(&self) -> PathBuf {
        self.dir.join("intent_map.json")
    }
    pub fn api_key_file(&self) -> PathBuf {
        self.dir.join("proxy_api_key.json")
    }
    pub fn policy_file(&self) -> PathBuf {
        self.dir.join("policy.cedar")
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.join("audit")
    }

    /// Creates the directory (0700) and the starter files that are missing.
    pub fn bootstrap(&self) -> Result<(), SettingsError> {
        let fail = |path: &Path, e: std::io::Error| {
            SettingsError::new(format!("cannot create {}: {e}", path.display()))
        };
        if !self.dir.exists() {
            create_private_dir(&self.dir).map_err(|e| fail(&self.dir, e))?;
        }
        create_if_missing(&self.intent_map(), b"{\n  \"*\": \"\"\n}\n", 0o600)
            .map_err(|e| fail(&self.intent_map(), e))?;
        create_if_missing(&self.api_key_file(), b"{\"api_key\": \"\"}\n", 0o600)
            .map_err(|e| fail(&self.api_key_file(), e))?;
        create_if_missing(&self.policy_file(), STARTER_POLICY.as_bytes(), 0o644)
            .map_err(|e| fail(&self.policy_file(), e))?;
        Ok(())
    }

    /// The session intent for `agent_id` from intent_map.json: its own entry, then `"*"`.
    pub fn session_intent(&self, agent_id: &str) -> Result<Option<String>, SettingsError> {
        let path = self.intent_map();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SettingsError::new(format!("{}: {e}", path.display()))),
        };
        let map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|e| {
            SettingsError::new(format!(
                "{}: line {} column {}: {e} (expected {{\"<agent id>\": \"<intent>\", \"*\": \"<default>\"}})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(map
            .get(agent_id)
            .or_else(|| map.get("*"))
            .filter(|s| !s.is_empty())
            .cloned())
    }
}

/// Reads an API key file: the raw key, or `{"api_key": "…"}`. Empty means no key.
pub fn read_api_key(path: &Path) -> Result<Option<Secret>, SettingsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SettingsError::new(format!(
                "{}: cannot read API key file: {e}",
                path.display()
            )));
        }
    };
    check_private(path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        SettingsError::new(format!("{}: API key file is not UTF-8", path.display()))
    })?;
    let trimmed = text.trim();
    let key = if trimmed.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct KeyFile {
            api_key: Option<String>,
        }
        let parsed: KeyFile = serde_json::from_str(trimmed).map_err(|e| {
            SettingsError::new(format!(
                "{}: line {} column {}: expected {{\"api_key\": \"…\"}} or the raw key",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        parsed.api_key.unwrap_or_default()
    } else {
        trimmed.to_string()
    };
    Ok((!key.trim().is_empty()).then(|| Secret::new(key.trim().to_string())))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), SettingsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| SettingsError::new(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SettingsError::new(format!(
            "THOTH_API_KEY_FILE {} is readable by group or others (mode {:o}): run chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), SettingsError> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates `path` with `contents` unless it exists (never overwrites); whether it did.
pub fn create_if_missing(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    match options.open(path) {
        Ok(mut file) => file.write_all(contents).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
