//! `thoth wrap-config` end to end: the real binary over the client corpus in
//! `tests/data/clients/`, with HOME and PATH in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{Scratch, assert_ok};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/clients");

/// (corpus file, client)
const CLIENT_FILES: &[(&str, &str)] = &[
    ("claude-desktop.json", "claude-desktop"),
    ("claude-code.json", "claude-code"),
    ("cursor.json", "cursor"),
    ("vscode.jsonc", "vscode"),
    ("windsurf.json", "windsurf"),
    ("gemini.jsonc", "gemini"),
    ("zed.jsonc", "zed"),
];

/// A scratch HOME with `bin/thoth` on PATH (the stable path wrap-config writes).
fn home(name: &str) -> Scratch {
    let s = Scratch::new(name);
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    #[cfg(unix)]
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_thoth"), bin.join("thoth")).expect("link");
    s
}

fn wrap_cmd(s: &Scratch) -> std::process::Command {
    let mut cmd = s.thoth();
    cmd.env("PATH", s.path("bin"));
    cmd.arg("wrap-config");
    cmd
}

fn copy_in(s: &Scratch, corpus_file: &str) -> PathBuf {
    let to = s.path(corpus_file);
    std::fs::copy(Path::new(CORPUS).join(corpus_file), &to).expect("copy corpus file");
    to
}

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("run thoth")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}

#[test]
fn wraps_every_client_file_as_snapshotted() {
    for (file, client) in CLIENT_FILES {
        let s = home(&format!("snap-{client}"));
        let path = copy_in(&s, file);
        let out = run(wrap_cmd(&s)
            .args([
                "--client",
                client,
                "--tenant-id",
                "acme",
                "--enforcement-mode",
                "block",
            ])
            .arg(&path));
        assert!(out.status.success(), "{client}: {}", stderr(&out));
        let wrapped = String::from_utf8(read(&path)).expect("utf-8");
        let shown = wrapped.replace(&s.dir.display().to_string(), "[HOME]");
        insta::assert_snapshot!(format!("wrap-{client}"), shown);
        // The API key never reaches a wrapped file unless asked for.
        assert!(!wrapped.contains("THOTH_API_KEY"));
    }
}

#[test]
fn summary_counts_each_kind() {
    let s = home("summary");
    let path = copy_in(&s, "claude-code.json");
    let out = run(wrap_cmd(&s)
        .args(["--client", "claude-code", "--json"])
        .arg(&path));
    assert_ok(&out);
    assert!(
        // Its third entry was wrapped by hand with another thoth path.
        stderr(&out).contains(
            "wrapped 2, re-wrapped 1 (flags changed), already wrapped 0, remote 2, skipped 0"
        ),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ok"], true);
    let entries = report["files"][0]["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries[0]["path"],
        serde_json::json!(["mcpServers", "playwright"])
    );
    assert_eq!(entries[0]["outcome"], "wrapped");
    assert_eq!(entries[3]["outcome"], "rewrapped");
    // The same flags again change nothing; another --policy re-wraps every entry.
    let out = run(wrap_cmd(&s).args(["--client", "claude-code"]).arg(&path));
    assert!(
        stderr(&out).contains("wrapped 0, already wrapped 3, remote 2"),
        "{}",
        stderr(&out)
    );
    let policy = s.write("strict.cedar", "forbid (principal, action, resource);");
    let out = run(wrap_cmd(&s)
        .args(["--client", "claude-code", "--policy"])
        .arg(&policy)
        .arg(&path));
    assert!(
        stderr(&out).contains("wrapped 0, re-wrapped 3 (flags changed), already wrapped 0"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_or_broken_policy_is_refused_unless_forced() {
    let s = home("policy-check");
    let path = copy_in(&s, "cursor.json");
    let original = read(&path);
    let broken = s.write(
        "broken.cedar",
        "permit (principal, action, resource) when { true | false };",
    );
    for (policy, said) in [
        (s.path("nope.cedar"), "nope.cedar: cannot read policy"),
        (broken.clone(), "broken.cedar:1:50: invalid Cedar policy: "),
    ] {
        let out = run(wrap_cmd(&s)
            .args(["--client", "cursor", "--policy"])
            .arg(&policy)
            .arg(&path));
        assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("pass --force to write the config anyway"),
            "{}",
            stderr(&out)
        );
        assert_eq!(read(&path), original, "nothing written");
    }
    // The caret sits under the `|` Cedar rejects.
    let out = run(wrap_cmd(&s)
        .args(["--client", "cursor", "--policy"])
        .arg(&broken)
        .arg(&path));
    let err = stderr(&out);
    let quoted = err
        .lines()
        .find(|l| l.contains(" 1 | permit"))
        .expect("the quoted line");
    let caret = err
        .lines()
        .find(|l| l.trim_end().ends_with('^'))
        .expect("a caret");
    assert_eq!(quoted.find("| false"), caret.find('^'), "{err}");
    let out = run(wrap_cmd(&s)
        .args(["--client", "cursor", "--force", "--policy"])
        .arg(&broken)
        .arg(&path));
    assert_ok(&out);
    assert!(
        stderr(&out).contains("--force: writing the config anyway"),
        "{}",
        stderr(&out)
    );
    assert_ne!(read(&path), original);
}

#[test]
fn wrap_twice_is_wrap_once_and_restore_is_byte_exact() {
    for (file, client) in CLIENT_FILES {
        let s = home(&format!("twice-{client}"));
        let path = copy_in(&s, file);
        let original = read(&path);
        let out = run(wrap_cmd(&s)
            .args(["--client", client, "--tenant-id", "acme"])
            .arg(&path));
        assert_ok(&out);
        let once = read(&path);
        let out = run(wrap_cmd(&s)
            .args(["--client", client, "--tenant-id", "acme"])
            .arg(&path));
        assert_ok(&out);
        assert_eq!(read(&path), once, "{client}: wrap twice = wrap once");
        // Re-wrapping with other flags changes the flags, never nests.
        let out = run(wrap_cmd(&s)
            .args([
                "--client",
                client,
                "--tenant-id",
                "beta",
                "--session-intent",
                "triage",
            ])
            .arg(&path));
        assert_ok(&out);
        let rewrapped = String::from_utf8(read(&path)).expect("utf-8");
        assert!(rewrapped.contains("\"beta\""));
        assert_eq!(
            rewrapped.matches("\"run\"").count(),
            once_runs(&once),
            "{client}"
        );
        let out = run(wrap_cmd(&s)
            .args(["--client", client, "--restore"])
            .arg(&path));
        assert_ok(&out);
        assert!(stderr(&out).contains("byte-exact"), "{}", stderr(&out));
        assert_eq!(read(&path), original, "{client}: restore is byte-identical");
    }
}

fn once_runs(once: &[u8]) -> usize {
    String::from_utf8_lossy(once).matches("\"run\"").count()
}

#[test]
fn a_client_edit_between_wrap_and_restore_survives() {
    let s = home("edit-between");
    let path = copy_in(&s, "claude-code.json");
    let out = run(wrap_cmd(&s)
        .args(["--client", "claude-code", "--tenant-id", "acme"])
        .arg(&path));
    assert_ok(&out);
    // Claude Code rewrites its file: a counter changes and a server is added.
    let wrapped = String::from_utf8(read(&path)).expect("utf-8");
    let edited = wrapped
        .replace("\"numStartups\": 42", "\"numStartups\": 43")
        .replace(
            "\"mcpServers\": {\n    \"playwright\"",
            "\"mcpServers\": {\n    \"added\": {\"command\": \"added-mcp\"},\n    \"playwright\"",
        );
    assert_ne!(edited, wrapped);
    std::fs::write(&path, &edited).expect("client edit");
    let out = run(wrap_cmd(&s)
        .args(["--client", "claude-code", "--restore"])
        .arg(&path));
    assert_ok(&out);
    assert!(
        stderr(&out).contains("unwrapped in place"),
        "{}",
        stderr(&out)
    );
    let restored = String::from_utf8(read(&path)).expect("utf-8");
    let original =
        String::from_utf8(read(&Path::new(CORPUS).join("claude-code.json"))).expect("utf-8");
    let expected = original
        .replace("\"numStartups\": 42", "\"numStartups\": 43")
        .replace(
            "\"mcpServers\": {\n    \"playwright\"",
            "\"mcpServers\": {\n    \"added\": {\"command\": \"added-mcp\"},\n    \"playwright\"",
        )
        // An entry wrapped before thoth recorded it is unwrapped from its args.
        .replace(
            "\"command\": \"/usr/local/bin/thoth\",\n      \"args\": [\"run\", \"--agent-id\", \"wrapped-before\", \"--tenant-id\", \"old-tenant\", \"--\", \"uvx\", \"mcp-server-git\"]",
            "\"command\": \"uvx\",\n      \"args\": [\"mcp-server-git\"]",
        );
    assert_eq!(restored, expected);
}

#[test]
fn concurrent_modification_is_detected() {
    let s = home("concurrent");
    let path = copy_in(&s, "cursor.json");
    let original = read(&path);
    // One interfering write: thoth reads again and wraps the client's version.
    let out = run(wrap_cmd(&s)
        .env("THOTH_TEST_WRAP_INTERFERE", "1")
        .args(["--client", "cursor"])
        .arg(&path));
    assert_ok(&out);
    assert!(stderr(&out).contains("changed while thoth was wrapping it"));
    let wrapped = read(&path);
    assert!(wrapped.ends_with(b"}\n "), "the client's write is kept");
    // A client that never stops writing: thoth refuses and leaves its bytes.
    let path = copy_in(&s, "windsurf.json");
    let out = run(wrap_cmd(&s)
        .env("THOTH_TEST_WRAP_INTERFERE", "9")
        .args(["--client", "windsurf"])
        .arg(&path));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed 3 times"), "{}", stderr(&out));
    let now = read(&path);
    assert!(!String::from_utf8_lossy(&now).contains("thoth"));
    assert_eq!(
        now.len(),
        read(&Path::new(CORPUS).join("windsurf.json")).len() + 3
    );
    let _ = original;
}

#[cfg(unix)]
#[test]
fn symlink_mode_and_backup() {
    use std::os::unix::fs::PermissionsExt;
    let s = home("symlink");
    let real = copy_in(&s, "cursor.json");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let dir = s.path(".cursor");
    std::fs::create_dir_all(&dir).expect("dir");
    let link = dir.join("mcp.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let original = read(&real);
    // Detected as Cursor from the path.
    let out = run(wrap_cmd(&s).arg(&link));
    assert_ok(&out);
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert!(String::from_utf8_lossy(&read(&real)).contains("\"run\""));
    let mode = std::fs::metadata(&real).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // One 0600 backup holding the original bytes.
    let backups: Vec<PathBuf> = walk(&s.path(".thoth/backups"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bak"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(read(&backups[0]), original);
    let mode = std::fs::metadata(&backups[0])
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn invalid_and_empty_files_are_untouched() {
    let s = home("invalid");
    let path = copy_in(&s, "invalid.json");
    let original = read(&path);
    let out = run(wrap_cmd(&s).args(["--client", "claude-desktop"]).arg(&path));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("invalid.json") && err.contains("line 5"),
        "{err}"
    );
    assert_eq!(read(&path), original);
    // Comments are JSONC: not accepted in a strict-JSON client's file.
    let path = s.write("c.json", "{\n  // note\n  \"mcpServers\": {}\n}\n");
    let out = run(wrap_cmd(&s).args(["--client", "cursor"]).arg(&path));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let path = copy_in(&s, "empty.json");
    let out = run(wrap_cmd(&s).args(["--client", "cursor"]).arg(&path));
    assert_ok(&out);
    assert!(stderr(&out).contains("empty file"));
    assert_eq!(read(&path), b"");
    assert!(!s.path(".thoth/backups").exists() || walk(&s.path(".thoth/backups")).is_empty());
}

#[test]
fn dry_run_prints_a_diff_and_writes_nothing() {
    let s = home("dry");
    let path = copy_in(&s, "windsurf.json");
    let original = read(&path);
    let out = run(wrap_cmd(&s)
        .args(["--client", "windsurf", "--dry-run"])
        .arg(&path));
    assert_ok(&out);
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("--- ") && diff.contains("+++ ") && diff.contains("@@"),
        "{diff}"
    );
    assert!(diff.contains("-      \"command\": \"npx\","));
    assert!(diff.contains("+      \"command\": \""));
    assert!(
        stderr(&out).contains("[windsurf]: would wrap "),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&path), original);
    assert!(!s.path(".thoth/backups").exists());
}

#[test]
fn embedded_key_goes_to_env_only() {
    let s = home("embed");
    let path = copy_in(&s, "cursor.json");
    let out = run(wrap_cmd(&s)
        .env("THOTH_API_KEY", "tk_live_embedded")
        .args(["--client", "cursor", "--embed-api-key"])
        .arg(&path));
    assert_ok(&out);
    assert!(stderr(&out).contains("written in clear"));
    assert!(
        stderr(&out).contains("chmod 600"),
        "the copied file is 0644"
    );
    assert!(
        !stderr(&out).contains("tk_live_embedded"),
        "the key never reaches logs"
    );
    let v: serde_json::Value = serde_json::from_slice(&read(&path)).expect("strict JSON");
    for name in ["stripe", "local-script", "no-args"] {
        let entry = &v["mcpServers"][name];
        assert_eq!(entry["env"]["THOTH_API_KEY"], "tk_live_embedded", "{name}");
        assert!(!entry["args"].to_string().contains("tk_live"), "{name}");
    }
    assert_eq!(
        v["mcpServers"]["stripe"]["env"]["STRIPE_SECRET_KEY"],
        "sk_test_example"
    );
    assert!(v["mcpServers"]["figma"].get("env").is_none());
    // Without --embed-api-key, --api-key is refused rather than written anywhere.
    let out = run(wrap_cmd(&s)
        .args(["--client", "cursor", "--api-key", "x"])
        .arg(&path));
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn all_discovers_user_files_and_restores_them() {
    let s = home("all");
    let cursor = s.path(".cursor/mcp.json");
    let gemini = s.path(".gemini/settings.json");
    for (from, to) in [("cursor.json", &cursor), ("gemini.jsonc", &gemini)] {
        std::fs::create_dir_all(to.parent().expect("dir")).expect("mkdir");
        std::fs::copy(Path::new(CORPUS).join(from), to).expect("copy");
    }
    let out = run(wrap_cmd(&s).args(["--all", "--tenant-id", "acme"]));
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("[cursor]: wrapped 3") && err.contains("[gemini]: wrapped 1"),
        "{err}"
    );
    let out = run(wrap_cmd(&s).args(["--all", "--restore"]));
    assert_ok(&out);
    assert_eq!(read(&cursor), read(&Path::new(CORPUS).join("cursor.json")));
    assert_eq!(read(&gemini), read(&Path::new(CORPUS).join("gemini.jsonc")));
}

#[test]
fn unknown_clients_and_paths_are_refused() {
    let s = home("unknown");
    let path = s.write("servers.json", "{}");
    let out = run(wrap_cmd(&s).arg(&path));
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("--client"), "{}", stderr(&out));
    let out = run(wrap_cmd(&s).args(["--client", "emacs"]).arg(&path));
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("claude-desktop, claude-code, cursor"));
}

#[test]
fn output_writes_elsewhere_and_leaves_the_config() {
    let s = home("output");
    let path = copy_in(&s, "gemini.jsonc");
    let original = read(&path);
    let out_file = s.path("wrapped.jsonc");
    let out = run(wrap_cmd(&s)
        .args(["--client", "gemini", "--output"])
        .arg(&out_file)
        .arg(&path));
    assert_ok(&out);
    assert_eq!(read(&path), original);
    let wrapped = String::from_utf8(read(&out_file)).expect("utf-8");
    assert!(wrapped.contains("// MCP servers Gemini CLI starts"));
    assert!(wrapped.contains("\"--\", \"python\", \"-m\""));
    // Replacing an existing output backs it up first.
    std::fs::write(&out_file, "{\"before\": true}").expect("write");
    let out = run(wrap_cmd(&s)
        .args(["--client", "gemini", "--output"])
        .arg(&out_file)
        .arg(&path));
    assert_ok(&out);
    let backups: Vec<PathBuf> = walk(&s.path(".thoth/backups"));
    assert!(
        backups.iter().any(|b| read(b) == b"{\"before\": true}"),
        "{backups:?}"
    );
}
