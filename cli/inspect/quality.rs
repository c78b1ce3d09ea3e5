//! The detectors' quality, measured on the corpora in `tests/data/inspect/` and pinned:
//! a change that loses a finding or gains a false one fails here, and the table it
//! prints (`cargo test --lib inspect::quality -- --nocapture`) is the README's.

use super::{DETECTORS, scan_text};

const POSITIVE: &str = include_str!("../../tests/data/inspect/positive.tsv");
const NEGATIVE: &str = include_str!("../../tests/data/inspect/negative.txt");

fn lines(corpus: &str) -> impl Iterator<Item = &str> {
    corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
}

/// Undoes the corpus's escapes (`\n`, `\uXXXX`, `\UXXXXXXXX` written by its
/// generator) so a case can hold what a file cannot show plainly.
fn unescape(text: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{}\"", text.replace('"', "\\\"")))
        .unwrap_or_else(|_| text.to_string())
}

fn found(text: &str) -> Vec<&'static str> {
    let mut findings = Vec::new();
    scan_text(text, &mut findings);
    let mut names: Vec<_> = findings.iter().map(|f| f.detector().name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn recall_and_false_positives_are_pinned() {
    let mut table = Vec::new();
    let mut total = (0, 0);
    for detector in DETECTORS {
        let cases: Vec<String> = lines(POSITIVE)
            .filter_map(|l| l.split_once('\t'))
            .filter(|(name, _)| *name == detector.name)
            .map(|(_, text)| unescape(text))
            .collect();
        let hits = cases
            .iter()
            .filter(|t| found(t).contains(&detector.name))
            .count();
        let misses: Vec<&String> = cases
            .iter()
            .filter(|t| !found(t).contains(&detector.name))
            .collect();
        assert!(!cases.is_empty(), "{} has no positive case", detector.name);
        table.push(format!(
            "| {} | {} | {}/{} |",
            detector.name,
            detector.class.as_str(),
            hits,
            cases.len()
        ));
        total.0 += hits;
        total.1 += cases.len();
        // Pinned: every case of the corpus is found (a miss fails, naming it).
        assert_eq!(hits, cases.len(), "{} missed {misses:?}", detector.name);
    }
    let negatives: Vec<&str> = lines(NEGATIVE).collect();
    let false_positives: Vec<(&str, Vec<&str>)> = negatives
        .iter()
        .map(|t| (*t, found(t)))
        .filter(|(_, names)| !names.is_empty())
        .collect();
    println!(
        "| detector | class | recall |\n|---|---|---|\n{}",
        table.join("\n")
    );
    println!(
        "recall {}/{}; false positives {}/{} negative texts",
        total.0,
        total.1,
        false_positives.len(),
        negatives.len()
    );
    assert!(false_positives.is_empty(), "{false_positives:?}");
}
