//! Models of how real MCP peers cut a byte stream into messages, for the tests and the
//! fuzz target that prove the canonical line (`thoth_core::canon`).
//!
//! A frame means what the laxest mainstream reader makes of it, so thoth's output is
//! checked against each class of reader it may face, bytes in, messages out. Each
//! model cuts lines as its class does, then parses every line with a JSON parser and
//! skips the lines that do not parse (real servers log a parse error and go on); the
//! stream decoder stops at its first error, as Go's `json.Decoder` does. None of this
//! runs in `thoth run`: it exists so that a test can say "every reader saw exactly the
//! messages thoth forwarded".

use serde_json::Value;

/// A class of line reader (the table in `thoth_core::canon`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Splits on `\n` and strips one trailing `\r`: the TypeScript SDK, Go
    /// `bufio.Scanner`, rmcp, tokio-util `LinesCodec`.
    Newline,
    /// Universal newlines `\r`, `\n`, `\r\n`: Python's `TextIOWrapper` (the Python MCP
    /// SDK), Java's `readLine`, Node's `readline`.
    Universal,
    /// Universal newlines and U+2028, U+2029: JavaScript line readers that follow
    /// ECMAScript's line terminators.
    UniversalUnicode,
    /// Python's `str.splitlines()`: the above and `\v`, `\f`, `\x1c`–`\x1e`, U+0085.
    SplitLines,
    /// A stream of JSON values that ignores lines: Go's `encoding/json.Decoder`,
    /// serde_json's `StreamDeserializer`.
    ValueStream,
}

impl Reader {
    /// Every class.
    pub const ALL: [Reader; 5] = [
        Reader::Newline,
        Reader::Universal,
        Reader::UniversalUnicode,
        Reader::SplitLines,
        Reader::ValueStream,
    ];

    /// The messages this reader parses from `bytes`, in order.
    pub fn messages(self, bytes: &[u8]) -> Vec<Value> {
        match self {
            Reader::Newline => bytes
                .split(|&b| b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter_map(parse)
                .collect(),
            Reader::ValueStream => serde_json::Deserializer::from_slice(bytes)
                .into_iter::<Value>()
                .map_while(Result::ok)
                .collect(),
            text_reader => {
                // Text-mode readers decode first (undecodable bytes replaced).
                let text = String::from_utf8_lossy(bytes);
                text.split(|c| text_break(text_class(text_reader), c))
                    .filter_map(|line| parse(line.as_bytes()))
                    .collect()
            }
        }
    }
}

fn text_class(reader: Reader) -> u8 {
    match reader {
        Reader::Universal => 0,
        Reader::UniversalUnicode => 1,
        _ => 2,
    }
}

/// True when `c` ends a line for the text reader of `class` (0 universal newlines, 1
/// with U+2028/U+2029, 2 `str.splitlines`). `\r\n` yields an empty line between its
/// two breaks, which parses to nothing, as if it were one break.
fn text_break(class: u8, c: char) -> bool {
    match c {
        '\n' | '\r' => true,
        '\u{2028}' | '\u{2029}' => class >= 1,
        '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' => class >= 2,
        _ => false,
    }
}

/// One line's message, if the line holds one JSON value.
fn parse(line: &[u8]) -> Option<Value> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    serde_json::from_slice(trimmed).ok()
}

/// Every `tools/call` request or notification in `messages`, batches included: the
/// calls a server would run.
pub fn tool_calls(messages: &[Value]) -> Vec<&Value> {
    let mut calls = Vec::new();
    for message in messages {
        let elements = match message {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for element in elements {
            if element.get("method").and_then(Value::as_str) == Some("tools/call") {
                calls.push(element);
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_cuts_the_smuggling_frame_its_own_way() {
        let evil = r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"evil"}}"#;
        let frame = |sep: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"safe","arguments":{{"pad":{sep}{evil}{sep}}}}}}}"#
            )
        };
        // (separator, readers that see the smuggled call on its own line)
        let cases: &[(&str, &[Reader])] = &[
            (
                "\r",
                &[
                    Reader::Universal,
                    Reader::UniversalUnicode,
                    Reader::SplitLines,
                ],
            ),
            ("\u{2028}", &[Reader::UniversalUnicode, Reader::SplitLines]),
            ("\u{85}", &[Reader::SplitLines]),
            ("\u{0b}", &[Reader::SplitLines]),
        ];
        for (sep, splitters) in cases {
            let bytes = format!("{}\n", frame(sep));
            for reader in Reader::ALL {
                let messages = reader.messages(bytes.as_bytes());
                let names: Vec<&str> = tool_calls(&messages)
                    .iter()
                    .filter_map(|c| c["params"]["name"].as_str())
                    .collect();
                let sees_evil = names.contains(&"evil");
                assert_eq!(sees_evil, splitters.contains(&reader), "{reader:?} {sep:?}");
            }
        }
    }

    #[test]
    fn crlf_and_blank_lines_are_one_break() {
        let bytes = b"{\"a\":1}\r\n\r\n{\"b\":2}\n";
        for reader in Reader::ALL {
            assert_eq!(reader.messages(bytes).len(), 2, "{reader:?}");
        }
    }
}
