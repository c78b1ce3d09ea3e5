//! JSONTestSuite (vendored in `core/tests/data/JSONTestSuite`): every `y_` file is
//! accepted, every `n_` file rejected, and each `i_` file gets the decision below.
//!
//! `i_` decisions: the ten `i_number_*` files are grammatical numbers and accepted
//! (thoth never converts numbers, so huge exponents cannot overflow anything); every
//! other `i_` file is rejected: lone, inverted or incomplete surrogate escapes
//! (`\uD800` alone cannot become UTF-8, and readers disagree on what to do with it),
//! invalid, overlong, truncated or out-of-range UTF-8, Latin-1, UTF-16 with or without
//! BOM, a UTF-8 BOM, and 500 nested arrays (deeper than the limit of 64).

use std::path::PathBuf;

fn suite() -> Vec<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite/test_parsing");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the vendored suite is missing)", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn accepted(name: &str) -> bool {
    if name.starts_with("y_") {
        true
    } else if name.starts_with("n_") {
        false
    } else {
        name.starts_with("i_number_")
    }
}

#[test]
fn every_file_gets_its_decision() {
    let files = suite();
    let mut counts = [0usize; 3];
    let mut wrong = Vec::new();
    for (name, bytes) in &files {
        let got = thoth_core::validate(bytes).is_ok();
        if got != accepted(name) {
            wrong.push(format!("{name}: accepted={got}"));
        }
        let class = match &name[..2] {
            "y_" => 0,
            "n_" => 1,
            _ => 2,
        };
        counts[class] += 1;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(counts, [95, 188, 35], "y/n/i file counts");
}

#[test]
fn scan_never_accepts_what_validate_rejects() {
    for (name, bytes) in suite() {
        if thoth_core::validate(&bytes).is_err() {
            let err = thoth_core::scan(&bytes).unwrap_err();
            assert!(err.kind.is_parse_error(), "{name}: {err}");
        }
    }
}
