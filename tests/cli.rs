//! The command line itself: what `--help` shows, completions and the man page, the
//! status of a fresh profile.

use crate::util::{Scratch, assert_ok, thoth};

fn stdout_of(args: &[&str]) -> String {
    let out = thoth().args(args).output().unwrap();
    assert_ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_shows_only_the_flags_a_command_takes() {
    // wrap-config names each entry's agent after its server: no --agent-id to offer.
    let wrap = stdout_of(&["wrap-config", "--help"]);
    assert!(!wrap.contains("--agent-id"), "{wrap}");
    assert!(wrap.contains("--force"), "{wrap}");
    // run needs it, and says so.
    let run = stdout_of(&["run", "--help"]);
    assert!(
        run.contains("Usage: thoth run [OPTIONS] --agent-id <AGENT_ID> -- <COMMAND>..."),
        "{run}"
    );
    // doctor defaults it from the command.
    let doctor = stdout_of(&["doctor", "--help"]);
    assert!(doctor.contains("[OPTIONS] -- <COMMAND>..."), "{doctor}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(
            script.contains("wrap-config") && script.contains("enforcement-mode"),
            "{shell}"
        );
    }
    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") && man.contains(".TH thoth 1"),
        "{man}"
    );
    assert!(man.contains("wrap\\-config"), "{man}");
    let out = thoth().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_of_a_fresh_profile_lists_no_policy_file_that_does_not_exist() {
    let s = Scratch::new("status-fresh");
    let out = s.thoth().arg("status").output().unwrap();
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let point = text
        .lines()
        .find(|l| l.starts_with("decision point:"))
        .expect("decision point");
    assert!(
        point.contains("starter policy, not created yet: the first thoth run writes ")
            && point.contains("allowing every tool"),
        "{text}"
    );
    assert!(!s.path(".thoth").exists(), "status creates nothing");
    // Once it exists, its path is listed as it is.
    let run = s
        .thoth()
        .args(["run", "--agent-id", "a", "--", "true"])
        .output()
        .unwrap();
    assert_ok(&run);
    let text = String::from_utf8(s.thoth().arg("status").output().unwrap().stdout).unwrap();
    let point = text
        .lines()
        .find(|l| l.starts_with("decision point:"))
        .expect("decision point");
    assert!(
        point.starts_with(&format!(
            "decision point:   local {} (",
            s.path(".thoth/policy.cedar").display()
        )),
        "{text}"
    );
    // health names the account, not the home folder.
    let health = s.thoth().args(["health", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    assert_eq!(v["User"], String::from_utf8_lossy(&me.stdout).trim(), "{v}");
}

/// Every command that loads a policy places Cedar's errors in the file.
#[test]
fn a_broken_policy_is_placed_by_every_command_that_loads_it() {
    let s = Scratch::new("placed");
    let bad = s.write(
        "bad.cedar",
        "permit (principal, action, resource)\n  when { true | false };\n",
    );
    let bad = bad.to_str().unwrap();
    let place = format!("{bad}:2:15: invalid Cedar policy: invalid token");
    let fixture = crate::util::fixture();
    let fixture = fixture.to_str().unwrap();
    for args in [
        vec!["doctor", "--policy", bad, "--", fixture],
        vec![
            "enforcer",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            bad,
        ],
    ] {
        let out = s.thoth().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(err.contains(&place), "{args:?}: {err}");
        assert!(
            err.contains("ERROR  2 |   when { true | false };\n"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("ERROR    |               ^\n"),
            "{args:?}: {err}"
        );
    }
    let out = s
        .thoth()
        .arg("status")
        .env("THOTH_POLICY_FILE", bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("policy:           INVALID\n"), "{text}");
    assert!(
        text.contains(&format!("                  {place}\n")),
        "{text}"
    );
    assert!(
        text.contains("                   2 |   when { true | false };\n"),
        "{text}"
    );
}
