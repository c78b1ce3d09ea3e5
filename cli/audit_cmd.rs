//! `thoth audit verify`: a verdict on every audit file of a path.
//!
//! The verdict goes to stdout, one line per file and a summary, so scripts read it the
//! same way whatever the log level; diagnostics go to stderr. Each failure class has
//! its own exit code (README, "Exit codes"): 1 when a chain is broken, 66 when there
//! is nothing to verify (no such path, or no audit file under it), 74 when a file
//! could not be read. Verifying the default tree is remembered for `status` and
//! `health`.

use std::path::Path;
use std::process::ExitCode;

use crate::args::{AuditArgs, AuditCommand};
use crate::audit::{self, Fault, NothingToVerify, Verdict};
use crate::logging::escaped;
use crate::settings::profile::Profile;
use crate::state_file::{AuditVerification, StateFile};
use crate::wording::count;

/// Runs `thoth audit …`.
pub fn run(args: &AuditArgs) -> ExitCode {
    let AuditCommand::Verify { path } = &args.command;
    let profile = Profile::locate();
    let path = match (path, &profile) {
        (Some(p), _) => p.clone(),
        (None, Ok(profile)) => profile.audit_dir(),
        (None, Err(e)) => return crate::exit::config_error(e),
    };
    let default_tree = profile.as_ref().ok().filter(|p| p.audit_dir() == path);
    let verdicts = match audit::verify_path(&path) {
        Ok(v) => v,
        Err(nothing) => {
            tracing::error!("audit verify: {}", escaped(&nothing.to_string()));
            return ExitCode::from(match nothing {
                NothingToVerify::Unreadable { .. } => crate::exit::IO_ERROR,
                NothingToVerify::Missing(_) | NothingToVerify::Empty(_) => crate::exit::NO_INPUT,
            });
        }
    };
    for line in verdict_lines(&verdicts) {
        println!("{line}");
    }
    if let Some(profile) = default_tree {
        remember(&profile.dir, &verdicts);
    }
    let faults = |fault: Fault| {
        verdicts
            .iter()
            .any(|(_, v)| v.as_ref().is_err_and(|b| b.fault == fault))
    };
    if faults(Fault::Chain) {
        ExitCode::from(crate::exit::FAILURE)
    } else if faults(Fault::Unreadable) {
        ExitCode::from(crate::exit::IO_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per file, then the summary (paths escaped: they come from the disk).
fn verdict_lines(verdicts: &[Verdict]) -> Vec<String> {
    let mut lines = Vec::with_capacity(verdicts.len() + 1);
    let (mut records, mut broken, mut unreadable) = (0usize, 0usize, 0usize);
    for (path, verdict) in verdicts {
        lines.push(match verdict {
            Ok(v) => {
                records += v.records;
                let renamed = if v.renamed {
                    format!(
                        " (its records are session {}: the file was renamed)",
                        escaped(&v.session)
                    )
                } else {
                    String::new()
                };
                format!(
                    "ok          {}: {}{renamed}",
                    escaped(&path.display().to_string()),
                    count(v.records, "record")
                )
            }
            Err(b) if b.fault == Fault::Chain => {
                broken += 1;
                format!("BROKEN      {}", escaped(&b.to_string()))
            }
            Err(b) => {
                unreadable += 1;
                format!("UNREADABLE  {}", escaped(&b.to_string()))
            }
        });
    }
    let verdict = match (broken, unreadable) {
        (0, 0) => "audit chain verified".to_string(),
        (0, u) => format!("audit chain not verified: {} unreadable", count(u, "file")),
        (b, 0) => format!("audit chain BROKEN in {}", count(b, "file")),
        (b, u) => format!(
            "audit chain BROKEN in {}, {} unreadable",
            count(b, "file"),
            count(u, "file")
        ),
    };
    lines.push(format!(
        "{verdict}: {} checked, {} intact",
        count(verdicts.len(), "file"),
        count(records, "record")
    ));
    lines
}

/// The last verification of the whole tree, for `status` and `health`.
fn remember(profile_dir: &Path, verdicts: &[Verdict]) {
    let first_problem = verdicts.iter().find_map(|(_, v)| v.as_ref().err());
    let record = AuditVerification {
        at: crate::clock::now_rfc3339(),
        ok: first_problem.is_none(),
        files: verdicts.len(),
        records: verdicts
            .iter()
            .filter_map(|(_, v)| v.as_ref().ok())
            .map(|v| v.records)
            .sum(),
        error: first_problem.map(ToString::to_string),
    };
    let _ = StateFile::in_profile(profile_dir).update(|s| s.audit_verification = Some(record));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Broken, Verified};
    use std::path::PathBuf;

    #[test]
    fn one_line_per_file_and_a_summary() {
        let ok = (
            PathBuf::from("a.jsonl"),
            Ok(Verified {
                records: 1,
                session: "a".into(),
                renamed: false,
            }),
        );
        let edited = (
            PathBuf::from("b.jsonl"),
            Err(Broken {
                path: "b.jsonl".into(),
                line: 2,
                why: "hash mismatch: the line was edited".into(),
                fault: Fault::Chain,
            }),
        );
        assert_eq!(
            verdict_lines(std::slice::from_ref(&ok)),
            [
                "ok          a.jsonl: 1 record",
                "audit chain verified: 1 file checked, 1 record intact"
            ]
        );
        assert_eq!(
            verdict_lines(&[ok, edited]),
            [
                "ok          a.jsonl: 1 record",
                "BROKEN      b.jsonl:2: hash mismatch: the line was edited",
                "audit chain BROKEN in 1 file: 2 files checked, 1 record intact"
            ]
        );
    }
}
