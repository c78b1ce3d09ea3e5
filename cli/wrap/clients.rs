//! The MCP clients thoth knows: their names, where each keeps its configuration on
//! each OS, which JSON dialect the file is written in, and which members hold servers.
//!
//! Everything here is pure: the home directory, the Windows folders and the directory
//! listing used for the Claude Desktop MSIX path are passed in, so the per-OS rules are
//! unit-tested on any machine. This module never reads or writes a config file.

use std::path::{Path, PathBuf};

/// One MCP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    VsCode,
    Windsurf,
    Gemini,
    Zed,
}

/// Every client, in the order reports list them.
pub const ALL: [Client; 7] = [
    Client::ClaudeDesktop,
    Client::ClaudeCode,
    Client::Cursor,
    Client::VsCode,
    Client::Windsurf,
    Client::Gemini,
    Client::Zed,
];

/// The syntax a client accepts in its file; the edit keeps to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 8259 JSON: no comments, no trailing commas.
    Json,
    /// JSON with `//` and `/* */` comments and trailing commas.
    Jsonc,
}

/// The operating systems whose paths the registry knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Mac,
    Windows,
    Linux,
}

impl Os {
    /// The OS thoth was built for.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Os::Mac
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// Where a user's files live, injected so the rules are testable.
#[derive(Debug, Clone)]
pub struct Places {
    pub os: Os,
    pub home: PathBuf,
    /// `%APPDATA%` (Windows), else unused.
    pub appdata: Option<PathBuf>,
    /// `%LOCALAPPDATA%` (Windows), else unused.
    pub local_appdata: Option<PathBuf>,
}

impl Places {
    /// The current user's places.
    pub fn current(home: PathBuf) -> Self {
        Self {
            os: Os::current(),
            appdata: std::env::var_os("APPDATA").map(PathBuf::from),
            local_appdata: std::env::var_os("LOCALAPPDATA").map(PathBuf::from),
            home,
        }
    }

    /// Another user's places, derived from their home (MDM runs as root/SYSTEM).
    pub fn for_home(os: Os, home: PathBuf) -> Self {
        let (appdata, local_appdata) = if os == Os::Windows {
            (
                Some(home.join("AppData").join("Roaming")),
                Some(home.join("AppData").join("Local")),
            )
        } else {
            (None, None)
        };
        Self {
            os,
            home,
            appdata,
            local_appdata,
        }
    }

    fn roaming(&self) -> PathBuf {
        self.appdata
            .clone()
            .unwrap_or_else(|| self.home.join("AppData").join("Roaming"))
    }

    fn local(&self) -> PathBuf {
        self.local_appdata
            .clone()
            .unwrap_or_else(|| self.home.join("AppData").join("Local"))
    }

    /// The per-OS application-data folder (`~/Library/Application Support`,
    /// `%APPDATA%`, `~/.config`).
    fn app_support(&self) -> PathBuf {
        match self.os {
            Os::Mac => self.home.join("Library").join("Application Support"),
            Os::Windows => self.roaming(),
            Os::Linux => self.home.join(".config"),
        }
    }
}

impl Client {
    /// The name `--client` takes.
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::VsCode => "vscode",
            Client::Windsurf => "windsurf",
            Client::Gemini => "gemini",
            Client::Zed => "zed",
        }
    }

    /// Parses a `--client` value.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|c| c.name() == name)
    }

    /// The dialect of the client's files.
    pub fn dialect(self) -> Dialect {
        match self {
            Client::VsCode | Client::Gemini | Client::Zed => Dialect::Jsonc,
            _ => Dialect::Json,
        }
    }

    /// The member that holds servers at the top of the file.
    pub fn servers_key(self) -> &'static str {
        match self {
            Client::VsCode => "servers",
            Client::Zed => "context_servers",
            _ => "mcpServers",
        }
    }

    /// The user-level files of this client, whether or not they exist. `list_dir`
    /// lists a directory's entry names (for the MSIX package folder).
    pub fn user_files(self, p: &Places, list_dir: &dyn Fn(&Path) -> Vec<String>) -> Vec<PathBuf> {
        let home = &p.home;
        match self {
            Client::ClaudeDesktop => {
                let mut files = vec![
                    p.app_support()
                        .join("Claude")
                        .join("claude_desktop_config.json"),
                ];
                if p.os == Os::Windows {
                    let packages = p.local().join("Packages");
                    let mut msix: Vec<String> = list_dir(&packages)
                        .into_iter()
                        .filter(|n| n.starts_with("Claude_"))
                        .collect();
                    msix.sort();
                    files.extend(msix.into_iter().map(|n| {
                        packages
                            .join(n)
                            .join("LocalCache")
                            .join("Roaming")
                            .join("Claude")
                            .join("claude_desktop_config.json")
                    }));
                }
                files
            }
            Client::ClaudeCode => vec![home.join(".claude.json")],
            Client::Cursor => vec![home.join(".cursor").join("mcp.json")],
            Client::VsCode => vec![p.app_support().join("Code").join("User").join("mcp.json")],
            Client::Windsurf => vec![
                home.join(".codeium")
                    .join("windsurf")
                    .join("mcp_config.json"),
            ],
            Client::Gemini => vec![home.join(".gemini").join("settings.json")],
            Client::Zed => vec![match p.os {
                Os::Windows => p.roaming().join("Zed").join("settings.json"),
                _ => home.join(".config").join("zed").join("settings.json"),
            }],
        }
    }

    /// The client a file belongs to, judged from its path (user and project files).
    pub fn detect(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let parent = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let grandparent = path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match name.as_str() {
            "claude_desktop_config.json" => Some(Client::ClaudeDesktop),
            ".claude.json" | ".mcp.json" => Some(Client::ClaudeCode),
            "mcp_config.json" if parent == "windsurf" => Some(Client::Windsurf),
            "mcp.json" if parent == ".cursor" => Some(Client::Cursor),
            "mcp.json" if parent == ".vscode" || (parent == "user" && grandparent == "code") => {
                Some(Client::VsCode)
            }
            "settings.json" if parent == ".gemini" => Some(Client::Gemini),
            "settings.json" if parent == "zed" => Some(Client::Zed),
            _ => None,
        }
    }
}

/// The accepted `--client` names, for messages.
pub fn names() -> String {
    ALL.map(Client::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dirs(_: &Path) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn names_round_trip() {
        for c in ALL {
            assert_eq!(Client::from_name(c.name()), Some(c));
        }
        assert_eq!(Client::from_name("Cursor"), None);
    }

    #[test]
    fn user_files_per_os() {
        let mac = Places::for_home(Os::Mac, "/Users/ann".into());
        let linux = Places::for_home(Os::Linux, "/home/ann".into());
        let win = Places::for_home(Os::Windows, r"C:\Users\Ann Lee".into());
        let cases: &[(Client, &Places, &str)] = &[
            (
                Client::ClaudeDesktop,
                &mac,
                "/Users/ann/Library/Application Support/Claude/claude_desktop_config.json",
            ),
            (
                Client::ClaudeDesktop,
                &linux,
                "/home/ann/.config/Claude/claude_desktop_config.json",
            ),
            (Client::ClaudeCode, &linux, "/home/ann/.claude.json"),
            (Client::Cursor, &mac, "/Users/ann/.cursor/mcp.json"),
            (
                Client::VsCode,
                &mac,
                "/Users/ann/Library/Application Support/Code/User/mcp.json",
            ),
            (
                Client::VsCode,
                &linux,
                "/home/ann/.config/Code/User/mcp.json",
            ),
            (
                Client::Windsurf,
                &linux,
                "/home/ann/.codeium/windsurf/mcp_config.json",
            ),
            (Client::Gemini, &mac, "/Users/ann/.gemini/settings.json"),
            (Client::Zed, &mac, "/Users/ann/.config/zed/settings.json"),
        ];
        for (client, places, want) in cases {
            assert_eq!(
                client.user_files(places, &no_dirs),
                vec![PathBuf::from(want)],
                "{client:?}"
            );
        }
        let files = Client::ClaudeDesktop.user_files(&win, &|dir: &Path| {
            assert!(dir.ends_with(Path::new("AppData").join("Local").join("Packages")));
            vec!["Other_1".into(), "Claude_pzs8sxrjxfjjc".into()]
        });
        assert_eq!(files.len(), 2);
        assert!(
            files[0].ends_with(
                Path::new("AppData")
                    .join("Roaming")
                    .join("Claude")
                    .join("claude_desktop_config.json")
            )
        );
        assert!(files[1].to_string_lossy().contains("Claude_pzs8sxrjxfjjc"));
        assert!(
            Client::Zed.user_files(&win, &no_dirs)[0]
                .ends_with(Path::new("Roaming").join("Zed").join("settings.json"))
        );
    }

    #[test]
    fn detects_clients_from_paths() {
        let cases: &[(&str, Option<Client>)] = &[
            (
                "/x/Claude/claude_desktop_config.json",
                Some(Client::ClaudeDesktop),
            ),
            ("/home/a/.claude.json", Some(Client::ClaudeCode)),
            ("/src/proj/.mcp.json", Some(Client::ClaudeCode)),
            ("/home/a/.cursor/mcp.json", Some(Client::Cursor)),
            ("/src/proj/.cursor/mcp.json", Some(Client::Cursor)),
            ("/src/proj/.vscode/mcp.json", Some(Client::VsCode)),
            ("/home/a/.config/Code/User/mcp.json", Some(Client::VsCode)),
            (
                "/home/a/.codeium/windsurf/mcp_config.json",
                Some(Client::Windsurf),
            ),
            ("/home/a/.gemini/settings.json", Some(Client::Gemini)),
            ("/home/a/.config/zed/settings.json", Some(Client::Zed)),
            ("/home/a/mcp.json", None),
            ("/home/a/settings.json", None),
        ];
        for (path, want) in cases {
            assert_eq!(Client::detect(Path::new(path)), *want, "{path}");
        }
    }
}
