//! The lax check of the server's lines: is this line a JSON-RPC message, as the
//! client's own parser will judge it?
//!
//! thoth relays the server's output to the client's stdout, which must carry nothing
//! but JSON-RPC messages: a banner, a log line or half a value there breaks the
//! client's reader or, worse, is read as something else. The server's output is not
//! held to the strict rules of [`crate::json`]: JavaScript servers cut strings inside
//! surrogate pairs and write lone `\u` surrogates, which pass (the client's parser
//! judges them). What is checked is the grammar (one JSON value, exact numbers and
//! literals, escapes of the right form, no raw control characters in strings,
//! well-formed UTF-8, nesting at most [`crate::MAX_DEPTH`]) and the shape: an object
//! with a `jsonrpc` member, or a non-empty array of such objects. Bytes that are not
//! UTF-8 fail: a client that decodes with replacement and one that refuses the line
//! would read different messages.
//!
//! [`LaxLine`] takes the line in pieces and remembers where it stopped, so a line too
//! long to hold is checked as it streams and cut off at the first piece that breaks
//! it; [`check_line`] takes a whole line. It never allocates and never panics.

use crate::error::{Error, ErrorKind};
use crate::json::{Lexer, MAX_DEPTH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the top value.
    Start,
    /// A value is expected (after `:`, or after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the container's close.
    After,
    /// Inside a string (a key when `key`).
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside a `\u` escape, with `left` hex digits to go.
    Hex { key: bool, left: u8 },
    /// Inside a multi-byte UTF-8 sequence: `left` continuation bytes to go, the next
    /// one within `lo..=hi`.
    Utf8 { key: bool, left: u8, lo: u8, hi: u8 },
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: `word` and how many bytes matched.
    Literal { word: &'static [u8], at: u8 },
    /// The top value is complete: only whitespace may follow.
    Done,
}

/// The member that makes an object a JSON-RPC message.
const VERSION_KEY: &[u8] = b"jsonrpc";

/// A resumable lax check of one line (see the module doc).
#[derive(Clone, Debug)]
pub struct LaxLine {
    state: State,
    /// Bit n is set when the container n levels down is an object.
    stack: u128,
    open: u8,
    /// Bytes fed so far (error offsets are relative to the start of the line).
    offset: usize,
    failed: Option<Error>,
    /// The top value is an array (a batch): its elements are the messages.
    batch: bool,
    /// The message object being read has a `jsonrpc` member.
    versioned: bool,
    /// The first bytes of the key being read, and its length so far.
    key: [u8; 16],
    key_len: u8,
    /// The key being read has an escape in it.
    key_escaped: bool,
    /// A member seen so far makes the line possibly a request or a result carrying
    /// input requests (see [`LaxLine::may_ask`]).
    may_ask: bool,
    /// A message-level `method` member (or an escaped name there) was seen.
    method_seen: bool,
    /// The message-level key just read is `id`.
    id_next: bool,
    /// Where the message's `id` value starts, while it is being read.
    id_start: Option<usize>,
    /// Where the message's `id` value lies in the line, once read.
    id_span: Option<(usize, usize)>,
}

impl Default for LaxLine {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks a whole line (without its terminator): what [`LaxLine`] decides for the
/// same bytes, on the strict validator's fast lexer (a held line never takes the
/// byte-at-a-time path).
pub fn check_line(line: &[u8]) -> Result<(), Error> {
    let mut lx = Lexer::lax(line);
    match lx.peek_non_ws() {
        None => Err(Error::at(ErrorKind::Empty, lx.pos)),
        Some(b'{') => {
            message(&mut lx, 0)?;
            lx.expect_end()
        }
        Some(b'[') => {
            lx.pos += 1;
            if lx.next_token()? == b']' {
                return Err(lx.err(ErrorKind::EmptyBatch));
            }
            loop {
                if lx.next_token()? != b'{' {
                    return Err(lx.err(ErrorKind::NotAnObject));
                }
                message(&mut lx, 1)?;
                match lx.next_token()? {
                    b',' => lx.pos += 1,
                    b']' => {
                        lx.pos += 1;
                        break;
                    }
                    _ => return Err(lx.err(ErrorKind::UnexpectedByte)),
                }
            }
            lx.expect_end()
        }
        Some(_) => Err(lx.err(ErrorKind::NotAnObject)),
    }
}

/// One message object at the cursor (`{`), inside `enclosing` containers: it must have
/// a `jsonrpc` member, written without escapes.
fn message(lx: &mut Lexer<'_>, enclosing: u8) -> Result<(), Error> {
    let mut versioned = false;
    let mut key = lx.open_object()?;
    while let Some(k) = key {
        versioned |= !k.text.has_escapes() && k.text.raw() == VERSION_KEY;
        lx.skip_value(enclosing + 1)?;
        key = lx.next_member()?;
    }
    if versioned {
        Ok(())
    } else {
        Err(lx.err(ErrorKind::MissingVersion))
    }
}

impl LaxLine {
    /// A check at the start of a line.
    pub const fn new() -> Self {
        Self {
            state: State::Start,
            stack: 0,
            open: 0,
            offset: 0,
            failed: None,
            batch: false,
            versioned: false,
            key: [0; 16],
            key_len: 0,
            key_escaped: false,
            may_ask: false,
            method_seen: false,
            id_next: false,
            id_start: None,
            id_span: None,
        }
    }

    /// Where the `id` of the message (not of a batch) lies in the line (offsets from its
    /// first byte), once its value has been read: a string or a number, raw.
    pub fn id_span(&self) -> Option<(usize, usize)> {
        self.id_span
    }

    /// Whether the line read so far may be a request (a message-level `method`
    /// member), a result carrying input requests (an `inputRequests` member one level
    /// below a message, as in `result.inputRequests`) or an error carrying URL
    /// elicitations (an `elicitations` member two levels below, as in
    /// `error.data.elicitations`), or has a member name at one of those levels written
    /// with escapes, which a reader unescapes to any of them. A line that is none of
    /// these cannot ask the client anything.
    pub fn may_ask(&self) -> bool {
        self.may_ask
    }

    /// Whether the line read so far may be a request or notification (a message-level
    /// `method` member, or a name there written with escapes) rather than a response:
    /// its id, if any, is then the sender's, not the receiver's.
    pub fn may_be_call(&self) -> bool {
        self.method_seen
    }

    /// True while nothing but whitespace has been fed.
    pub fn is_blank(&self) -> bool {
        self.state == State::Start && self.failed.is_none()
    }

    /// Checks the next piece of the line. After an error every later call returns it.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.run(piece);
        self.offset = self.offset.saturating_add(piece.len());
        if let Err(e) = result {
            self.failed = Some(e);
        }
        result
    }

    /// The line has ended: Ok when it held one whole message.
    pub fn finish(&mut self) -> Result<(), Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.state {
            State::Done => Ok(()),
            State::Start => Err(Error::at(ErrorKind::Empty, self.offset)),
            _ => Err(Error::at(ErrorKind::UnexpectedEnd, self.offset)),
        }
    }

    /// The depth at which the message objects sit.
    fn message_depth(&self) -> u8 {
        if self.batch { 2 } else { 1 }
    }

    fn run(&mut self, piece: &[u8]) -> Result<(), Error> {
        let mut i = 0;
        while let Some(&b) = piece.get(i) {
            let at = self.offset.saturating_add(i);
            let err = |kind| Error::at(kind, at);
            match self.state {
                State::Str { key: false } => {
                    i = skip_plain(piece, i);
                    let Some(&b) = piece.get(i) else {
                        break;
                    };
                    let at = self.offset.saturating_add(i);
                    self.string_byte(b, false, at)
                        .map_err(|k| Error::at(k, at))?;
                }
                State::Str { key: true } => {
                    self.string_byte(b, true, at).map_err(err)?;
                }
                State::Escape { key } => {
                    self.state = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            State::Str { key }
                        }
                        b'u' => State::Hex { key, left: 4 },
                        _ => return Err(err(ErrorKind::InvalidEscape)),
                    };
                    // An escaped key is never the bare `jsonrpc`.
                    self.key_len = u8::MAX;
                    self.key_escaped |= key;
                }
                State::Hex { key, left } => {
                    if !b.is_ascii_hexdigit() {
                        return Err(err(ErrorKind::InvalidEscape));
                    }
                    self.state = if left > 1 {
                        State::Hex {
                            key,
                            left: left - 1,
                        }
                    } else {
                        State::Str { key }
                    };
                }
                State::Utf8 { key, left, lo, hi } => {
                    if !(lo..=hi).contains(&b) {
                        return Err(err(ErrorKind::InvalidUtf8));
                    }
                    if key {
                        self.key_byte(b);
                    }
                    self.state = if left > 1 {
                        State::Utf8 {
                            key,
                            left: left - 1,
                            lo: 0x80,
                            hi: 0xBF,
                        }
                    } else {
                        State::Str { key }
                    };
                }
                State::Number(num) => {
                    match next_number(num, b) {
                        Ok(Some(next)) => self.state = State::Number(next),
                        Ok(None) => {
                            // The number ended before `b`: `b` is read anew below.
                            self.value_done(at);
                            continue;
                        }
                        Err(kind) => return Err(err(kind)),
                    }
                }
                State::Literal { word, at: matched } => {
                    let matched = usize::from(matched);
                    if word.get(matched) != Some(&b) {
                        return Err(err(ErrorKind::InvalidLiteral));
                    }
                    if matched + 1 == word.len() {
                        self.value_done(at + 1);
                    } else {
                        self.state = State::Literal {
                            word,
                            at: (matched + 1) as u8,
                        };
                    }
                }
                _ if matches!(b, b' ' | b'\t' | b'\r' | b'\n') => {}
                State::Start => match b {
                    b'{' => self.open_container(true).map_err(err)?,
                    b'[' => {
                        self.batch = true;
                        self.open_container(false).map_err(err)?;
                    }
                    _ => return Err(err(ErrorKind::NotAnObject)),
                },
                State::Value | State::ArrayFirst => {
                    if self.state == State::ArrayFirst && b == b']' {
                        if self.batch && self.open == 1 {
                            return Err(err(ErrorKind::EmptyBatch));
                        }
                        self.close_container(at).map_err(err)?;
                    } else if self.batch && self.open == 1 && b != b'{' {
                        // A batch element must be a message object.
                        return Err(err(ErrorKind::NotAnObject));
                    } else {
                        self.start_value(b, at).map_err(err)?;
                    }
                }
                State::ObjectFirst | State::Key => match b {
                    b'"' => {
                        self.key_len = 0;
                        self.key_escaped = false;
                        self.state = State::Str { key: true };
                    }
                    b'}' if self.state == State::ObjectFirst => {
                        self.close_container(at).map_err(err)?
                    }
                    _ => return Err(err(ErrorKind::UnexpectedByte)),
                },
                State::Colon => {
                    if b != b':' {
                        return Err(err(ErrorKind::UnexpectedByte));
                    }
                    self.state = State::Value;
                }
                State::After => {
                    let in_object = self.stack & 1 == 1;
                    match b {
                        b',' => {
                            self.state = if in_object { State::Key } else { State::Value };
                        }
                        b'}' if in_object => self.close_container(at).map_err(err)?,
                        b']' if !in_object => self.close_container(at).map_err(err)?,
                        _ => return Err(err(ErrorKind::UnexpectedByte)),
                    }
                }
                State::Done => return Err(err(ErrorKind::TrailingData)),
            }
            i += 1;
        }
        Ok(())
    }

    fn string_byte(&mut self, b: u8, key: bool, at: usize) -> Result<(), ErrorKind> {
        match b {
            b'"' => {
                if key {
                    let name = self.key.get(..usize::from(self.key_len));
                    if self.open == self.message_depth() {
                        self.versioned |= name == Some(VERSION_KEY);
                        self.id_next = !self.batch && name == Some(b"id");
                        let method = self.key_escaped || name == Some(b"method");
                        self.method_seen |= method;
                        self.may_ask |= method;
                    } else if self.open == self.message_depth() + 1 {
                        self.may_ask |= self.key_escaped || name == Some(b"inputRequests");
                    } else if self.open == self.message_depth() + 2 {
                        self.may_ask |= self.key_escaped || name == Some(b"elicitations");
                    }
                    self.state = State::Colon;
                } else {
                    self.value_done(at + 1);
                }
            }
            b'\\' => self.state = State::Escape { key },
            0x00..=0x1F => return Err(ErrorKind::ControlInString),
            0x80..=0xFF => {
                // Unicode Table 3-7: the lead byte fixes the length and the range of
                // the second byte.
                let (left, lo, hi) = match b {
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    _ => return Err(ErrorKind::InvalidUtf8),
                };
                if key {
                    self.key_byte(b);
                }
                self.state = State::Utf8 { key, left, lo, hi };
            }
            _ if key => self.key_byte(b),
            _ => {}
        }
        Ok(())
    }

    fn key_byte(&mut self, b: u8) {
        if let Some(slot) = self.key.get_mut(usize::from(self.key_len)) {
            *slot = b;
            self.key_len += 1;
        } else {
            self.key_len = u8::MAX;
        }
    }

    fn start_value(&mut self, b: u8, at: usize) -> Result<(), ErrorKind> {
        if core::mem::take(&mut self.id_next) && matches!(b, b'"' | b'-' | b'0'..=b'9') {
            self.id_start = Some(at);
        }
        self.state = match b {
            b'{' => return self.open_container(true),
            b'[' => return self.open_container(false),
            b'"' => State::Str { key: false },
            b'-' => State::Number(Num::Minus),
            b'0' => State::Number(Num::Zero),
            b'1'..=b'9' => State::Number(Num::Int),
            b't' => State::Literal {
                word: b"true",
                at: 1,
            },
            b'f' => State::Literal {
                word: b"false",
                at: 1,
            },
            b'n' => State::Literal {
                word: b"null",
                at: 1,
            },
            _ => return Err(ErrorKind::UnexpectedByte),
        };
        Ok(())
    }

    fn open_container(&mut self, object: bool) -> Result<(), ErrorKind> {
        if self.open >= MAX_DEPTH {
            return Err(ErrorKind::TooDeep);
        }
        self.open += 1;
        self.stack = self.stack << 1 | u128::from(object);
        if object && self.open == self.message_depth() {
            self.versioned = false;
        }
        self.state = if object {
            State::ObjectFirst
        } else {
            State::ArrayFirst
        };
        Ok(())
    }

    fn close_container(&mut self, at: usize) -> Result<(), ErrorKind> {
        let object = self.stack & 1 == 1;
        if object && self.open == self.message_depth() && !self.versioned {
            return Err(ErrorKind::MissingVersion);
        }
        self.open = self.open.saturating_sub(1);
        self.stack >>= 1;
        self.value_done(at + 1);
        Ok(())
    }

    /// A value ended just before `end`.
    fn value_done(&mut self, end: usize) {
        if let Some(start) = self.id_start.take() {
            self.id_span = Some((start, end));
        }
        self.state = if self.open == 0 {
            State::Done
        } else {
            State::After
        };
    }
}

/// The next state of a number after `b`: `Ok(None)` when the number ended before `b`.
fn next_number(num: Num, b: u8) -> Result<Option<Num>, ErrorKind> {
    let digit = b.is_ascii_digit();
    let next = match (num, b) {
        (Num::Minus, b'0') => Num::Zero,
        (Num::Minus, _) if digit => Num::Int,
        (Num::Int, _) if digit => Num::Int,
        (Num::Zero | Num::Int, b'.') => Num::Dot,
        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
        (Num::Dot | Num::Frac, _) if digit => Num::Frac,
        (Num::Exp, b'+' | b'-') => Num::ExpSign,
        (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
        // A complete number followed by something that cannot continue one.
        (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _)
            if !(digit
                || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                || b.is_ascii_alphabetic()) =>
        {
            return Ok(None);
        }
        _ => return Err(ErrorKind::InvalidNumber),
    };
    Ok(Some(next))
}

/// The index of the first byte at or after `i` that ends a run of plain string bytes
/// (a quote, a backslash, a control character or a non-ASCII byte), 16 bytes at a
/// time.
#[inline]
fn skip_plain(piece: &[u8], mut i: usize) -> usize {
    use wide::u8x16;
    while let Some(chunk) = piece
        .get(i..i + 16)
        .and_then(|c| <[u8; 16]>::try_from(c).ok())
    {
        let v = u8x16::from(chunk);
        let special = v.simd_eq(u8x16::splat(b'"'))
            | v.simd_eq(u8x16::splat(b'\\'))
            | v.min(u8x16::splat(0x1F)).simd_eq(v);
        let mask = special.to_bitmask() | v.to_bitmask();
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(&b) = piece.get(i) {
        if matches!(b, b'"' | b'\\' | 0x00..=0x1F | 0x80..=0xFF) {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn table() {
        let ok: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            br#" { "result" : [1, -0.5e+3, true, false, null, "\ud800"], "jsonrpc":"2.0" } "#,
            br#"[{"jsonrpc":"2.0","method":"m"},{"jsonrpc":"2.0","id":"a","result":0}]"#,
            "{\"jsonrpc\":\"2.0\",\r\"r\u{e9}sult\":\"caf\u{e9} \u{2026} \u{1F600}\"}\r".as_bytes(),
            br#"{"jsonrpc":"2.0","result":{"nested":{"jsonrpc":1}}}"#,
        ];
        for line in ok {
            assert_eq!(check_line(line), Ok(()), "{:?}", core::str::from_utf8(line));
            let mut pieces = LaxLine::new();
            assert_eq!(pieces.feed(line).and_then(|()| pieces.finish()), Ok(()));
        }
        let bad: &[(&[u8], ErrorKind)] = &[
            (b"", ErrorKind::Empty),
            (b"[INFO] server started", ErrorKind::NotAnObject),
            (b"{not json", ErrorKind::UnexpectedByte),
            (
                b"{\"jsonrpc\":\"2.0\"}\rPROGRESS 50%",
                ErrorKind::TrailingData,
            ),
            (
                br#"{"level":"info","msg":"started"}"#,
                ErrorKind::MissingVersion,
            ),
            (
                br#"{"result":{"jsonrpc":"2.0"}}"#,
                ErrorKind::MissingVersion,
            ),
            (br#"{"\u006asonrpc":"2.0"}"#, ErrorKind::MissingVersion),
            (b"[]", ErrorKind::EmptyBatch),
            (b"[1]", ErrorKind::NotAnObject),
            (br#"[{"jsonrpc":"2.0"},{}]"#, ErrorKind::MissingVersion),
            (b"\"text\"", ErrorKind::NotAnObject),
            (br#"{"jsonrpc":"2.0","id":01}"#, ErrorKind::InvalidNumber),
            (
                b"{\"jsonrpc\":\"2.0\",\"met\xFFod\":1}",
                ErrorKind::InvalidUtf8,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"x\":\"\xC0\xAF\"}",
                ErrorKind::InvalidUtf8,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"x\":\"\xED\xA0\x80\"}",
                ErrorKind::InvalidUtf8,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"x\":\"\xE2\x82\"}",
                ErrorKind::InvalidUtf8,
            ),
            (br#"{"jsonrpc":"2.0","id":1.}"#, ErrorKind::InvalidNumber),
            (br#"{"jsonrpc":"2.0","id":tru}"#, ErrorKind::InvalidLiteral),
            (br#"{"jsonrpc":"2.0","id":NaN}"#, ErrorKind::UnexpectedByte),
            (br#"{"jsonrpc":"2.0","x":"\q"}"#, ErrorKind::InvalidEscape),
            (br#"{"jsonrpc":"2.0","x":"\u12"}"#, ErrorKind::InvalidEscape),
            (
                b"{\"jsonrpc\":\"2.0\",\"x\":\"\x01\"}",
                ErrorKind::ControlInString,
            ),
            (br#"{"jsonrpc":"2.0","x":[1,]}"#, ErrorKind::UnexpectedByte),
            (br#"{"jsonrpc":"2.0","result":{}"#, ErrorKind::UnexpectedEnd),
            (
                br#"{"jsonrpc":"2.0"}{"jsonrpc":"2.0"}"#,
                ErrorKind::TrailingData,
            ),
        ];
        for (line, kind) in bad {
            let mut pieces = LaxLine::new();
            let streamed = pieces.feed(line).and_then(|()| pieces.finish());
            // The two checks may name a fault differently; they reject alike.
            let whole = check_line(line).map_err(|e| e.kind);
            assert!(
                whole == Err(*kind) || streamed.map_err(|e| e.kind) == Err(*kind),
                "{:?}",
                core::str::from_utf8(line)
            );
            assert!(
                whole.is_err() && streamed.is_err(),
                "{:?}",
                core::str::from_utf8(line)
            );
        }
    }

    #[test]
    fn the_message_id_is_found_in_any_piece() {
        let line = br#"{"jsonrpc":"2.0", "id" : "a\"b","result":{"id":7}}"#;
        for cut in 0..line.len() {
            let mut lax = LaxLine::new();
            lax.feed(&line[..cut]).unwrap();
            lax.feed(&line[cut..]).unwrap();
            let (start, end) = lax.id_span().unwrap();
            assert_eq!(&line[start..end], br#""a\"b""#);
        }
        for (line, id) in [
            (&br#"{"id":-12,"jsonrpc":"2.0"}"#[..], Some(&b"-12"[..])),
            (br#"{"jsonrpc":"2.0","id":null}"#, None),
            (br#"[{"jsonrpc":"2.0","id":1}]"#, None),
        ] {
            let mut lax = LaxLine::new();
            lax.feed(line).unwrap();
            assert_eq!(lax.id_span().map(|(s, e)| &line[s..e]), id);
        }
    }

    #[test]
    fn lines_that_may_ask_the_client_are_told_apart() {
        let table: &[(&[u8], bool)] = &[
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#,
                true,
            ),
            (br#"{"jsonrpc":"2.0","id":1,"\u006dethod":"x"}"#, true),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"inputRequests":{}}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"input\u0052equests":{}}}"#,
                true,
            ),
            (
                br#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"n"}]"#,
                true,
            ),
            (
                br#"[{"jsonrpc":"2.0","id":1,"result":{"inputRequests":{}}}]"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"method":"x"}]}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"a":{"inputRequests":{}}}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"data":{"elicitations":[]}}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":{"data":{"elicit\u0061tions":[]}}}"#,
                true,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":{"elicitations":[]}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"elicitations":[]}]}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"text":"\u0041 method"}}"#,
                false,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{"methods":1,"inputRequest":2}}"#,
                false,
            ),
            (br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
        ];
        for &(line, asks) in table {
            for cut in 0..=line.len() {
                let mut lax = LaxLine::new();
                lax.feed(&line[..cut]).unwrap();
                lax.feed(&line[cut..]).unwrap();
                assert_eq!(
                    lax.may_ask(),
                    asks,
                    "{}",
                    core::str::from_utf8(line).unwrap()
                );
            }
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut line = Vec::from(&br#"{"jsonrpc":"2.0","r":"#[..]);
        line.extend(core::iter::repeat_n(b'[', 126));
        line.extend(core::iter::repeat_n(b']', 126));
        line.push(b'}');
        assert_eq!(check_line(&line), Ok(()));
        line.insert(21, b'[');
        line.insert(line.len() - 1, b']');
        assert_eq!(
            check_line(&line).map_err(|e| e.kind),
            Err(ErrorKind::TooDeep)
        );
    }

    const PARTS: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","#,
        br#""id":"#,
        b"12",
        b"-0.5e+7",
        b"true",
        b"nul",
        br#""a\"b\u00e9""#,
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b" ",
        b"\r",
        br#""jsonrpc""#,
        b"\"",
        b"\\",
        b"x",
        b"\x01",
    ];

    proptest::proptest! {
        /// Pieces are judged as the whole line is, wherever the line is cut.
        #[test]
        fn pieces_agree_with_the_whole(
            parts in proptest::collection::vec(
                proptest::sample::select(PARTS),
                0..24,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..5),
        ) {
            let line: Vec<u8> = parts.concat();
            let whole = {
                let mut lax = LaxLine::new();
                lax.feed(&line).and_then(|()| lax.finish())
            };
            // The fast whole-line check decides as the resumable one does.
            proptest::prop_assert_eq!(check_line(&line).is_ok(), whole.is_ok(), "{:?}", line);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(line.len())).collect();
            cuts.sort_unstable();
            let mut lax = LaxLine::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([line.len()]) {
                let _ = lax.feed(&line[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(lax.finish(), whole);
        }

        /// Without `\u` escapes (whose lone surrogates pass here), the grammar is
        /// serde_json's, byte for byte.
        #[test]
        fn bytes_are_judged_as_serde_json_judges_them(
            value in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..48),
        ) {
            let mut line = std::vec::Vec::from(&br#"{"jsonrpc":"2.0","result":"#[..]);
            line.extend_from_slice(&value);
            line.push(b'}');
            let theirs = serde_json::from_slice::<serde_json::Value>(&line).is_ok();
            if !line.windows(2).any(|w| w == b"\\u") {
                proptest::prop_assert_eq!(check_line(&line).is_ok(), theirs, "{:?}", line);
            }
        }

        /// On valid UTF-8 without lone surrogates, the grammar is serde_json's.
        #[test]
        fn grammar_is_json(value in proptest::arbitrary::any::<std::string::String>()) {
            let line = std::format!(r#"{{"jsonrpc":"2.0","result":{value}}}"#);
            let theirs = serde_json::from_str::<serde_json::Value>(&line).is_ok();
            let ours = check_line(line.as_bytes()).is_ok();
            if !line.contains("\\u") {
                proptest::prop_assert_eq!(ours, theirs, "{:?}", line);
            }
        }
    }
}
