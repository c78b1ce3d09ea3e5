//! Finds a server's executable without a shell, as a pure function of the command
//! name, the environment and a file-system probe, so macOS, Linux and Windows rules are
//! all unit-tested on one machine.
//!
//! Order: the effective PATH; then platform fallback directories where GUI-launched
//! clients (whose PATH lacks the user's shell setup) commonly miss tools: Homebrew,
//! ~/.local/bin, ~/.cargo/bin, Volta, the newest nvm Node, asdf and mise shims on
//! macOS/Linux; Program Files, nodejs, AppData\npm and System32 on Windows. On Windows a
//! name without extension is tried with each PATHEXT extension (.exe/.cmd/.bat…).

/// The target platform's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Unix,
    Windows,
}

impl Platform {
    pub fn current() -> Self {
        if cfg!(windows) {
            Self::Windows
        } else {
            Self::Unix
        }
    }
    fn separator(self) -> char {
        match self {
            Self::Unix => '/',
            Self::Windows => '\\',
        }
    }
    fn list_separator(self) -> char {
        match self {
            Self::Unix => ':',
            Self::Windows => ';',
        }
    }
}

/// What resolution may look at.
pub trait Probe {
    /// True when `path` is an executable file.
    fn is_executable(&self, path: &str) -> bool;
    /// Entries of a directory (full paths); empty when it does not exist.
    fn list_dir(&self, path: &str) -> Vec<String>;
}

/// The parts of the environment resolution reads.
#[derive(Debug, Clone, Default)]
pub struct ResolveEnv {
    pub path: Option<String>,
    pub pathext: Option<String>,
    pub home: Option<String>,
    pub program_files: Option<String>,
    pub program_files_x86: Option<String>,
    pub local_app_data: Option<String>,
    pub app_data: Option<String>,
    pub system_root: Option<String>,
}

impl ResolveEnv {
    /// From the process environment.
    pub fn from_process() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Self {
            path: var("PATH"),
            pathext: var("PATHEXT"),
            home: dirs::home_dir().map(|h| h.to_string_lossy().into_owned()),
            program_files: var("ProgramFiles"),
            program_files_x86: var("ProgramFiles(x86)"),
            local_app_data: var("LOCALAPPDATA"),
            app_data: var("APPDATA"),
            system_root: var("SystemRoot"),
        }
    }
}

/// A successful resolution, with the paths that were tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: String,
    pub dir: String,
    pub tried: Vec<String>,
}

/// Resolution failed: every path tried and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub name: String,
    pub tried: Vec<String>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot find the server command `{}` (thoth runs it without a shell). Searched: {}. {}",
            self.name,
            if self.tried.is_empty() {
                "nothing".to_string()
            } else {
                self.tried.join(", ")
            },
            install_hint(&self.name)
        )
    }
}

/// What to install for common server launchers.
pub fn install_hint(name: &str) -> &'static str {
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    let base = base.trim_end_matches(".exe").trim_end_matches(".cmd");
    match base {
        "npx" | "npm" => {
            "npx and npm come with Node.js: install Node.js (nodejs.org, Homebrew, nvm or Volta), then use the absolute path if your MCP client does not see your shell's PATH."
        }
        "node" => {
            "Install Node.js (nodejs.org, Homebrew, nvm or Volta), then use the absolute path if your MCP client does not see your shell's PATH."
        }
        "uvx" | "uv" => {
            "uvx comes with uv: install it (see docs.astral.sh/uv, or `pipx install uv`), usually into ~/.local/bin."
        }
        "python" | "python3" | "py" => {
            "Install Python 3 (python.org or your package manager), or give the interpreter's absolute path."
        }
        "docker" => "Install Docker Desktop or the docker CLI and make sure it is on PATH.",
        _ => "Give the absolute path of the executable, or add its directory to PATH.",
    }
}

fn join(platform: Platform, dir: &str, name: &str) -> String {
    let sep = platform.separator();
    if dir.ends_with(sep) || dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}{sep}{name}")
    }
}

fn parent(platform: Platform, path: &str) -> String {
    let cut = path
        .rfind(|c| c == platform.separator() || c == '/')
        .unwrap_or(0);
    path[..cut].to_string()
}

/// Fallback directories for `platform`, in order.
pub fn fallback_dirs(platform: Platform, env: &ResolveEnv, probe: &dyn Probe) -> Vec<String> {
    let mut dirs = Vec::new();
    match platform {
        Platform::Unix => {
            dirs.extend(
                ["/usr/local/bin", "/opt/homebrew/bin", "/usr/bin", "/bin"].map(String::from),
            );
            if let Some(home) = &env.home {
                for rel in [".local/bin", ".cargo/bin", ".volta/bin"] {
                    dirs.push(join(platform, home, rel));
                }
                if let Some(newest) = newest_nvm(probe, &join(platform, home, ".nvm/versions/node"))
                {
                    dirs.push(join(platform, &newest, "bin"));
                }
                dirs.push(join(platform, home, ".asdf/shims"));
                dirs.push(join(platform, home, ".local/share/mise/shims"));
            }
        }
        Platform::Windows => {
            if let Some(pf) = &env.program_files {
                dirs.push(pf.clone());
                dirs.push(join(platform, pf, "nodejs"));
            }
            if let Some(pf86) = &env.program_files_x86 {
                dirs.push(pf86.clone());
            }
            if let Some(local) = &env.local_app_data {
                dirs.push(local.clone());
            }
            if let Some(roaming) = &env.app_data {
                dirs.push(join(platform, roaming, "npm"));
            }
            let root = env
                .system_root
                .clone()
                .unwrap_or_else(|| "C:\\Windows".into());
            dirs.push(join(platform, &root, "System32"));
        }
    }
    dirs
}

/// The newest `vX.Y.Z` directory under nvm's versions directory.
fn newest_nvm(probe: &dyn Probe, versions: &str) -> Option<String> {
    probe
        .list_dir(versions)
        .into_iter()
        .filter_map(|dir| {
            let name = dir
                .rsplit(['/', '\\'])
                .next()?
                .strip_prefix('v')?
                .to_string();
            let parts: Vec<u64> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((parts, dir))
        })
        .max()
        .map(|(_, dir)| dir)
}

/// Resolves `name` to an executable.
pub fn resolve(
    platform: Platform,
    name: &str,
    env: &ResolveEnv,
    probe: &dyn Probe,
) -> Result<Resolved, NotFound> {
    let mut tried = Vec::new();
    let extensions: Vec<String> = match platform {
        Platform::Unix => vec![String::new()],
        Platform::Windows => {
            let has_ext = name
                .rsplit(['/', '\\'])
                .next()
                .is_some_and(|b| b.contains('.'));
            let mut exts = vec![];
            if has_ext {
                exts.push(String::new());
            }
            let pathext = env
                .pathext
                .clone()
                .unwrap_or_else(|| ".COM;.EXE;.BAT;.CMD".into());
            exts.extend(
                pathext
                    .split(';')
                    .filter(|e| !e.is_empty())
                    .map(str::to_ascii_lowercase),
            );
            exts
        }
    };
    let found = |candidate: String, tried: &mut Vec<String>| {
        let hit = probe.is_executable(&candidate);
        tried.push(candidate.clone());
        hit.then(|| Resolved {
            dir: parent(platform, &candidate),
            path: candidate,
            tried: Vec::new(),
        })
    };
    let is_path = name.contains('/') || (platform == Platform::Windows && name.contains('\\'));
    if is_path {
        for ext in &extensions {
            if let Some(r) = found(format!("{name}{ext}"), &mut tried) {
                return Ok(Resolved { tried, ..r });
            }
        }
        return Err(NotFound {
            name: name.into(),
            tried,
        });
    }
    let path_dirs = env
        .path
        .as_deref()
        .unwrap_or_default()
        .split(platform.list_separator())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let mut dirs: Vec<String> = Vec::new();
    for dir in path_dirs.chain(fallback_dirs(platform, env, probe)) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in &dirs {
        for ext in &extensions {
            if let Some(r) = found(join(platform, dir, &format!("{name}{ext}")), &mut tried) {
                return Ok(Resolved { tried, ..r });
            }
        }
    }
    Err(NotFound {
        name: name.into(),
        tried,
    })
}

/// `dir` prepended to a PATH value unless it is already one of its entries.
pub fn path_with(platform: Platform, path: Option<&str>, dir: &str) -> String {
    let sep = platform.list_separator();
    match path {
        Some(p) if p.split(sep).any(|entry| entry == dir) => p.to_string(),
        Some(p) if !p.is_empty() => format!("{dir}{sep}{p}"),
        _ => dir.to_string(),
    }
}

/// The real file system.
pub struct FsProbe;

impl Probe for FsProbe {
    fn is_executable(&self, path: &str) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        }
        #[cfg(not(unix))]
        {
            meta.is_file()
        }
    }

    fn list_dir(&self, path: &str) -> Vec<String> {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        files: Vec<&'static str>,
        dirs: Vec<(&'static str, Vec<&'static str>)>,
    }

    impl Probe for Fake {
        fn is_executable(&self, path: &str) -> bool {
            self.files.contains(&path)
        }
        fn list_dir(&self, path: &str) -> Vec<String> {
            self.dirs
                .iter()
                .find(|(d, _)| *d == path)
                .map(|(_, e)| e.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        }
    }

    fn unix_env() -> ResolveEnv {
        ResolveEnv {
            path: Some("/usr/bin:/bin".into()),
            home: Some("/home/ana".into()),
            ..Default::default()
        }
    }

    #[test]
    fn path_first_then_the_newest_nvm_node() {
        let probe = Fake {
            files: vec![
                "/home/ana/.nvm/versions/node/v20.11.1/bin/npx",
                "/home/ana/.nvm/versions/node/v9.0.0/bin/npx",
            ],
            dirs: vec![(
                "/home/ana/.nvm/versions/node",
                vec![
                    "/home/ana/.nvm/versions/node/v9.0.0",
                    "/home/ana/.nvm/versions/node/v20.11.1",
                    "/home/ana/.nvm/versions/node/system",
                ],
            )],
        };
        let r = resolve(Platform::Unix, "npx", &unix_env(), &probe).unwrap();
        assert_eq!(r.path, "/home/ana/.nvm/versions/node/v20.11.1/bin/npx");
        assert_eq!(r.dir, "/home/ana/.nvm/versions/node/v20.11.1/bin");
        assert_eq!(&r.tried[..2], ["/usr/bin/npx", "/bin/npx"]);
        assert!(r.tried.contains(&"/opt/homebrew/bin/npx".to_string()));
        assert!(r.tried.contains(&"/home/ana/.volta/bin/npx".to_string()));
    }

    #[test]
    fn shims_and_local_bin_are_fallbacks() {
        for (file, name) in [
            ("/home/ana/.local/bin/uvx", "uvx"),
            ("/home/ana/.asdf/shims/node", "node"),
            ("/home/ana/.local/share/mise/shims/python", "python"),
            ("/home/ana/.volta/bin/npm", "npm"),
            ("/opt/homebrew/bin/node", "node"),
        ] {
            let probe = Fake {
                files: vec![file],
                dirs: vec![],
            };
            assert_eq!(
                resolve(Platform::Unix, name, &unix_env(), &probe)
                    .unwrap()
                    .path,
                file
            );
        }
    }

    #[test]
    fn a_path_is_used_as_given() {
        let probe = Fake {
            files: vec!["./srv"],
            dirs: vec![],
        };
        let r = resolve(Platform::Unix, "./srv", &unix_env(), &probe).unwrap();
        assert_eq!((r.path.as_str(), r.tried.len()), ("./srv", 1));
    }

    #[test]
    fn windows_pathext_and_fallbacks() {
        let env = ResolveEnv {
            path: Some("C:\\Tools;C:\\Windows".into()),
            pathext: Some(".COM;.EXE;.BAT;.CMD".into()),
            program_files: Some("C:\\Program Files".into()),
            app_data: Some("C:\\Users\\ana\\AppData\\Roaming".into()),
            ..Default::default()
        };
        let probe = Fake {
            files: vec!["C:\\Program Files\\nodejs\\npx.cmd"],
            dirs: vec![],
        };
        let r = resolve(Platform::Windows, "npx", &env, &probe).unwrap();
        assert_eq!(r.path, "C:\\Program Files\\nodejs\\npx.cmd");
        assert_eq!(r.dir, "C:\\Program Files\\nodejs");
        assert_eq!(
            &r.tried[..4],
            [
                "C:\\Tools\\npx.com",
                "C:\\Tools\\npx.exe",
                "C:\\Tools\\npx.bat",
                "C:\\Tools\\npx.cmd"
            ]
        );

        let probe = Fake {
            files: vec!["C:\\Users\\ana\\AppData\\Roaming\\npm\\server.cmd"],
            dirs: vec![],
        };
        assert!(resolve(Platform::Windows, "server", &env, &probe).is_ok());
        let probe = Fake {
            files: vec!["C:\\Windows\\System32\\where.exe"],
            dirs: vec![],
        };
        assert!(resolve(Platform::Windows, "where.exe", &env, &probe).is_ok());
    }

    #[test]
    fn failure_lists_every_path_and_a_hint() {
        let probe = Fake {
            files: vec![],
            dirs: vec![],
        };
        let err = resolve(Platform::Unix, "npx", &unix_env(), &probe).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/usr/bin/npx") && text.contains("/home/ana/.asdf/shims/npx"),
            "{text}"
        );
        assert!(text.contains("Node.js"), "{text}");
        assert!(
            resolve(Platform::Unix, "uvx", &unix_env(), &probe)
                .unwrap_err()
                .to_string()
                .contains("uv")
        );
    }

    #[test]
    fn path_is_prepended_only_when_absent() {
        assert_eq!(path_with(Platform::Unix, Some("/a:/b"), "/b"), "/a:/b");
        assert_eq!(path_with(Platform::Unix, Some("/a:/b"), "/c"), "/c:/a:/b");
        assert_eq!(path_with(Platform::Unix, None, "/c"), "/c");
        assert_eq!(
            path_with(Platform::Windows, Some("C:\\a"), "C:\\n"),
            "C:\\n;C:\\a"
        );
    }
}
