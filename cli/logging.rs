//! Diagnostics to stderr through `tracing`, filtered by `THOTH_LOG` (default `info`).
//! Nothing here ever writes to stdout, which carries only protocol frames.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber once; later calls are no-ops.
pub fn init() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("THOTH_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // sqlx warns with a database URL's parameter values (a password among them): its
    // errors only, whatever THOTH_LOG says.
    let no_sqlx_chatter = tracing_subscriber::filter::filter_fn(|meta| {
        !meta.target().starts_with("sqlx") || *meta.level() <= tracing::Level::ERROR
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(filter)
        .with_filter(no_sqlx_chatter);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// A value from outside (the enforcer, the server, a file, the environment) as it may
/// appear in a log line: every control character (CR, LF, ESC…), line and paragraph
/// separator and bidirectional override is written as its Rust escape (`\r`, `\n`,
/// `\u{1b}`, `\u{2028}`), so the value can neither forge a log line nor rewrite the
/// terminal. Everything else is written as it is.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escaped`].
pub struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            f.write_str(&rest[..at])?;
            for e in c.escape_default() {
                f.write_char(e)?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Whether `c` could forge a log line or rewrite the terminal when printed as it is.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn control_characters_are_escaped() {
        let forged = "https://a/h1\r\nERROR forged line\u{1b}[2K\u{2028}x\u{202e}y\u{85}";
        let shown = escaped(forged).to_string();
        assert_eq!(
            shown,
            r"https://a/h1\r\nERROR forged line\u{1b}[2K\u{2028}x\u{202e}y\u{85}"
        );
        assert!(!shown.chars().any(char::is_control));
        for plain in [
            "",
            "plain text",
            "C:\\Program Files\\x",
            "é ü 日本 🦀",
            "tab-free",
        ] {
            assert_eq!(escaped(plain).to_string(), plain);
        }
        assert_eq!(escaped("\t\0").to_string(), r"\t\u{0}");
    }
}
