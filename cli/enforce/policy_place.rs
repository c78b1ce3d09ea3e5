//! Where a Cedar diagnostic points in a policy file: `file:line:column`, the line
//! itself and a caret under the spot.
//!
//! Cedar's errors carry byte spans (miette labels) into the text they were parsed
//! from; a message without them leaves the user to search the file for a `|`. This
//! module turns a span into a place and never panics on a span outside the text (an
//! offset past the end or inside a UTF-8 sequence is clamped to the nearest boundary).

use std::path::Path;

use miette::Diagnostic;

/// One diagnostic placed in its file: a summary line and the excerpt shown under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `file:line:column: message` (or `file: message` when Cedar gave no span).
    pub summary: String,
    /// `file:line:column: what`, without Cedar's message (which may quote the file).
    pub place: String,
    /// The source line and the caret, each prefixed by a gutter; empty without a span.
    pub excerpt: Vec<String>,
}

/// Errors placed at most; the rest are counted in the last summary.
pub const MAX_PLACED: usize = 5;

/// Places every error of a diagnostic that may group several (`related`), each with
/// `what` ("invalid Cedar policy") before its message.
pub fn place_all(path: &Path, source: &str, top: &dyn Diagnostic, what: &str) -> Vec<Placed> {
    let mut all: Vec<&dyn Diagnostic> = Vec::new();
    match top.related() {
        // Cedar's ParseErrors show their first error themselves and the others as related.
        Some(related) => {
            all.push(top);
            all.extend(related);
        }
        None => all.push(top),
    }
    let total = all.len();
    let mut placed: Vec<Placed> = all
        .into_iter()
        .take(MAX_PLACED)
        .map(|d| place(path, source, d, what))
        .collect();
    if total > MAX_PLACED
        && let Some(last) = placed.last_mut()
    {
        last.summary
            .push_str(&format!(" (and {} more errors)", total - MAX_PLACED));
    }
    placed
}

/// Places one diagnostic at its first label.
pub fn place(path: &Path, source: &str, diagnostic: &dyn Diagnostic, what: &str) -> Placed {
    let mut message = one_line(&diagnostic.to_string());
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {})", one_line(&help.to_string())));
    }
    let span = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| (label.offset(), label.len()));
    let Some((offset, len)) = span else {
        return Placed {
            summary: format!("{}: {what}: {message}", path.display()),
            place: format!("{}: {what}", path.display()),
            excerpt: Vec::new(),
        };
    };
    let at = Position::of(source, offset);
    let shown: String = at.text.chars().map(printable).collect();
    let width = source
        .get(at.byte..)
        .map_or(0, |rest| {
            rest.chars().take(len).take_while(|&c| c != '\n').count()
        })
        .max(1);
    let gutter = " ".repeat(at.line.to_string().len());
    Placed {
        summary: format!(
            "{}:{}:{}: {what}: {message}",
            path.display(),
            at.line,
            at.column
        ),
        place: format!("{}:{}:{}: {what}", path.display(), at.line, at.column),
        excerpt: vec![
            format!(" {} | {shown}", at.line),
            format!(
                " {gutter} | {}{}",
                " ".repeat(at.column - 1),
                "^".repeat(width)
            ),
        ],
    }
}

/// A byte offset as line and column (both from 1; columns count characters).
struct Position<'s> {
    line: usize,
    column: usize,
    /// The offset, moved back to a character boundary inside the text.
    byte: usize,
    /// The whole line, without its line ending.
    text: &'s str,
}

impl<'s> Position<'s> {
    fn of(source: &'s str, offset: usize) -> Self {
        let mut byte = offset.min(source.len());
        while !source.is_char_boundary(byte) {
            byte -= 1;
        }
        let before = &source[..byte];
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        let end = source[byte..].find('\n').map_or(source.len(), |i| byte + i);
        Self {
            line: before.matches('\n').count() + 1,
            column: source[start..byte].chars().count() + 1,
            byte,
            text: source[start..end].trim_end_matches('\r'),
        }
    }
}

/// One character of a quoted line, one column wide: a tab or control character would
/// move the caret off its spot or rewrite the terminal.
fn printable(c: char) -> char {
    if c == '\t' {
        ' '
    } else if crate::logging::needs_escape(c) {
        '?'
    } else {
        c
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parse_error(source: &str) -> Vec<Placed> {
        let Err(e) = cedar_policy::PolicySet::from_str(source) else {
            panic!("{source:?} parses");
        };
        place_all(Path::new("p.cedar"), source, &e, "invalid Cedar policy")
    }

    #[test]
    fn a_broken_operator_is_placed_on_its_line_and_column() {
        let source = "permit (principal, action, resource)\n  when { true | false };\n";
        let placed = parse_error(source);
        let first = &placed[0];
        assert!(first.summary.starts_with("p.cedar:2:"), "{}", first.summary);
        assert!(first.summary.contains("invalid Cedar policy: "));
        assert_eq!(first.excerpt[0], " 2 |   when { true | false };");
        let caret = first.excerpt[1].find('^').expect("a caret");
        let column: usize = first.summary.split(':').nth(2).unwrap().parse().unwrap();
        // The caret sits under the column the summary names (gutter " 2 | " is 5 wide).
        assert_eq!(caret - 5 + 1, column);
    }

    #[test]
    fn a_truncated_file_points_at_its_end() {
        let source = "permit (principal, action, resource) when {";
        let placed = parse_error(source);
        assert!(placed[0].summary.starts_with("p.cedar:1:"), "{placed:?}");
        assert_eq!(placed[0].excerpt.len(), 2);
    }

    #[test]
    fn offsets_outside_the_text_or_inside_a_character_are_clamped() {
        let source = "é\nab";
        for offset in 0..10 {
            let at = Position::of(source, offset);
            assert!(at.line >= 1 && at.column >= 1);
            assert!(source.is_char_boundary(at.byte));
        }
        let inside = Position::of(source, 1);
        assert_eq!((inside.line, inside.column, inside.byte), (1, 1, 0));
        let end = Position::of(source, 99);
        assert_eq!((end.line, end.column, end.text), (2, 3, "ab"));
    }

    #[test]
    fn quoted_lines_cannot_move_the_caret_or_hold_control_characters() {
        let shown: String = "\ta\u{1b}[2K\u{202e}".chars().map(printable).collect();
        assert_eq!(shown, " a?[2K?");
    }
}
