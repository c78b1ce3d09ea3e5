//! JSON-RPC 2.0 classification with zero-copy views, and the rules that close parser
//! differentials.
//!
//! [`scan`] validates the whole frame (see [`crate::json`]) in the same pass that walks
//! the envelope, `params` and `params._meta`; nothing is parsed twice on the happy path.
//! The rules (docs/architecture.md §2):
//!
//! - member names are compared after unescaping (`"\u006dethod"` is `method`);
//! - a protected member (`jsonrpc`, `id`, `method`, `params`, `result`, `error`; in
//!   tools/call params `name`, `arguments`, `_meta`) that appears twice is invalid,
//!   never first-wins or last-wins;
//! - a key that is not a protected member but folds onto one ([`crate::lookalike`]) is
//!   invalid, and so is a method that folds onto `tools/call` without being it;
//! - `jsonrpc` is exactly `"2.0"`; `result` with `error`, or `method` with either, is
//!   invalid; `params` is an object or an array; a request id is a string or an integer
//!   within ±(2^53−1) (no `-0`, fraction or exponent);
//! - a tools/call has object `params` with a string `name` (no control characters, at
//!   most [`MAX_TOOL_NAME`] bytes unescaped), `arguments` an object when present and
//!   `_meta` an object when present.
//!
//! Rules about `params` members are checked only for tools/call: other methods keep
//! whatever params their protocol gives them.

use crate::error::{Error, ErrorKind};
use crate::json::{DEFAULT_MAX_DEPTH, Key, Lexer, pack};
use crate::lookalike::folds_onto;
use crate::text::RawStr;

/// Longest tool name, in bytes once unescaped, that a tools/call may carry.
pub const MAX_TOOL_NAME: usize = 256;

/// A tool name, unescaped, in a bounded buffer.
pub type ToolName = heapless::String<MAX_TOOL_NAME>;

const ENVELOPE: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const TOOL_PARAMS: &[&str] = &["name", "arguments", "_meta"];
const TOOLS_CALL: &str = "tools/call";

/// A byte range `start..end` within a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Its length in bytes.
    pub const fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True when it covers no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes it covers in `frame` (empty when out of range).
    pub fn of<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.start..self.end).unwrap_or_default()
    }
}

/// What kind of JSON value an id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// A string.
    String,
    /// An integer within ±(2^53−1).
    Integer,
    /// `null` (responses only).
    Null,
}

/// A JSON-RPC id, as its raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id<'a> {
    /// The id's JSON text, exactly as received.
    pub raw: &'a [u8],
    /// Where it lies in the frame.
    pub span: Span,
    /// What kind of value it is.
    pub kind: IdKind,
}

/// The tools/call members a [`Call`] carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ToolParts<'a> {
    name: Option<RawStr<'a>>,
    arguments: Option<Span>,
    progress_token: Option<Span>,
}

/// What the params walk learnt about the tools/call members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ToolFacts<'a> {
    parts: ToolParts<'a>,
    /// First rule broken inside params; it matters only for tools/call.
    fault: Option<Error>,
}

impl ToolFacts<'_> {
    fn fault(&mut self, kind: ErrorKind, at: usize) {
        if self.fault.is_none() {
            self.fault = Some(Error::at(kind, at));
        }
    }
}

/// A request (with id) or notification (without).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    span: Span,
    method: RawStr<'a>,
    id: Option<Id<'a>>,
    params: Option<Span>,
    tool: ToolParts<'a>,
}

impl<'a> Call<'a> {
    /// The method name, still escaped.
    pub const fn method(&self) -> RawStr<'a> {
        self.method
    }

    /// The id; `None` for a notification.
    pub const fn id(&self) -> Option<Id<'a>> {
        self.id
    }

    /// The span of `params`, when present.
    pub const fn params(&self) -> Option<Span> {
        self.params
    }

    /// The span of the whole message (the frame, or the batch element).
    pub const fn span(&self) -> Span {
        self.span
    }

    /// True when the method is `tools/call` (after unescaping).
    pub fn is_tool_call(&self) -> bool {
        self.method.eq_str(TOOLS_CALL)
    }
}

/// A response: `result` or `error`, and an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    span: Span,
    id: Id<'a>,
    is_error: bool,
}

impl<'a> Response<'a> {
    /// The id (possibly `null`).
    pub const fn id(&self) -> Id<'a> {
        self.id
    }

    /// True for an `error` response.
    pub const fn is_error(&self) -> bool {
        self.is_error
    }

    /// The span of the whole message.
    pub const fn span(&self) -> Span {
        self.span
    }
}

/// A non-empty batch; its elements are scanned one by one by [`Batch::elements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    frame: &'a [u8],
    span: Span,
    max_depth: u8,
}

impl<'a> Batch<'a> {
    /// The elements, each classified on its own (one bad element hides no other).
    pub fn elements(&self) -> BatchElements<'a> {
        let mut lx = Lexer::new(self.frame, self.max_depth);
        lx.pos = self.span.start;
        BatchElements {
            lx,
            started: false,
            done: false,
        }
    }

    /// The span of the array.
    pub const fn span(&self) -> Span {
        self.span
    }
}

/// A classified frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A call with an id.
    Request(Call<'a>),
    /// A call without an id.
    Notification(Call<'a>),
    /// A result or error.
    Response(Response<'a>),
    /// A non-empty array of messages.
    Batch(Batch<'a>),
}

/// The parts of a tools/call a policy decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// `params.name`, unescaped.
    pub name: ToolName,
    /// The exact span of `params.arguments` (`{` to `}`), when present.
    pub arguments: Option<Span>,
    /// The raw value of `params._meta.progressToken`, when present.
    pub progress_token: Option<Span>,
}

/// Scans `frame` with the default nesting limit.
pub fn scan(frame: &[u8]) -> Result<Message<'_>, Error> {
    scan_with_depth(frame, DEFAULT_MAX_DEPTH)
}

/// Validates and classifies one frame.
pub fn scan_with_depth(frame: &[u8], max_depth: u8) -> Result<Message<'_>, Error> {
    let mut lx = Lexer::new(frame, max_depth);
    let Some(first) = lx.peek_non_ws() else {
        return Err(lx.err(ErrorKind::Empty));
    };
    let start = lx.pos;
    match first {
        b'{' => match walk_message(&mut lx, 0) {
            Ok(message) => lx.expect_end().map(|()| message),
            Err(e) => Err(reject(frame, max_depth, start, e)),
        },
        b'[' => {
            lx.skip_value(0)?;
            let end = lx.pos;
            lx.expect_end()?;
            let mut inner = lx.at(start + 1);
            if inner.peek_non_ws() == Some(b']') {
                return Err(Error::at(ErrorKind::EmptyBatch, start));
            }
            Ok(Message::Batch(Batch {
                frame,
                span: Span::new(start, end),
                max_depth,
            }))
        }
        _ => {
            lx.skip_value(0)?;
            lx.expect_end()?;
            Err(Error::at(ErrorKind::NotAnObject, start))
        }
    }
}

/// Extracts what a decision needs from a tools/call that [`scan`] accepted.
pub fn tool_call(call: &Call<'_>) -> Result<ToolCall, Error> {
    let at = call.span.start;
    if !call.is_tool_call() {
        return Err(Error::at(ErrorKind::NotToolCall, at));
    }
    let raw = call
        .tool
        .name
        .ok_or(Error::at(ErrorKind::MissingToolName, at))?;
    let mut tc = ToolCall {
        name: ToolName::new(),
        arguments: call.tool.arguments,
        progress_token: call.tool.progress_token,
    };
    let pushed = match raw.as_unescaped_str() {
        Some(text) => tc.name.push_str(text).is_ok(),
        None => raw.chars().all(|c| tc.name.push(c).is_ok()),
    };
    if pushed {
        Ok(tc)
    } else {
        Err(Error::at(ErrorKind::NameTooLong, at))
    }
}

/// A rule failed: report a parse error instead if the frame is not even JSON, and
/// echo the id when it is unambiguous.
fn reject(frame: &[u8], max_depth: u8, start: usize, e: Error) -> Error {
    if e.kind.is_parse_error() {
        return e;
    }
    let mut whole = Lexer::new(frame, max_depth);
    if let Err(parse) = whole.skip_value(0).and_then(|()| whole.expect_end()) {
        return parse;
    }
    Error {
        id: unambiguous_id(frame, max_depth, start),
        ..e
    }
}

/// The envelope members, found by their unescaped names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Member {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
}

const JSONRPC: u128 = pack(b"jsonrpc");
const ID: u128 = pack(b"id");
const METHOD: u128 = pack(b"method");
const PARAMS: u128 = pack(b"params");
const RESULT: u128 = pack(b"result");
const ERROR: u128 = pack(b"error");
const NAME: u128 = pack(b"name");
const ARGUMENTS: u128 = pack(b"arguments");
const META: u128 = pack(b"_meta");
const PROGRESS_TOKEN: u128 = pack(b"progressToken");

/// The key's name packed into a word; an escaped key is unescaped first.
fn key_word(key: &Key<'_>) -> u128 {
    if !key.text.has_escapes() {
        return key.word;
    }
    let mut buf = [0u8; 16];
    key.text
        .unescape_into(&mut buf)
        .map_or(0, |name| pack(name.as_bytes()))
}

fn envelope_member(key: &Key<'_>) -> Option<Member> {
    Some(match key_word(key) {
        JSONRPC => Member::Jsonrpc,
        ID => Member::Id,
        METHOD => Member::Method,
        PARAMS => Member::Params,
        RESULT => Member::Result,
        ERROR => Member::Error,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamsKind {
    Object,
    Array,
    Other,
}

#[derive(Default)]
struct Envelope<'a> {
    seen: u8,
    version_ok: Option<bool>,
    id: Option<(Span, Option<IdKind>)>,
    method: Option<Option<RawStr<'a>>>,
    params: Option<(Span, ParamsKind)>,
    result: bool,
    error: bool,
    tool: ToolFacts<'a>,
}

/// Walks one message object (the cursor is at `{`, inside `depth` containers).
fn walk_message<'a>(lx: &mut Lexer<'a>, depth: u8) -> Result<Message<'a>, Error> {
    let start = lx.pos;
    if lx.too_deep(depth) {
        return Err(lx.err(ErrorKind::TooDeep));
    }
    let inner = depth + 1;
    let mut env = Envelope::default();
    let mut next = lx.open_object()?;
    while let Some(key) = next {
        let first = lx.next_token()?;
        let at = lx.pos;
        let Some(member) = envelope_member(&key) else {
            if folds_onto(&key.text, ENVELOPE) {
                return Err(Error::at(ErrorKind::LookalikeMember, at));
            }
            lx.skip_value(inner)?;
            next = lx.next_member()?;
            continue;
        };
        let bit = 1u8 << member as u8;
        if env.seen & bit != 0 {
            return Err(Error::at(ErrorKind::DuplicateMember, at));
        }
        env.seen |= bit;
        match member {
            Member::Jsonrpc => {
                env.version_ok = Some(if first == b'"' {
                    lx.string()?.eq_str("2.0")
                } else {
                    lx.skip_value(inner)?;
                    false
                });
            }
            Member::Id => {
                let kind = match first {
                    b'"' => lx.string().map(|_| Some(IdKind::String))?,
                    b'-' | b'0'..=b'9' => {
                        lx.number()?;
                        is_integer_id(lx.bytes.get(at..lx.pos).unwrap_or_default())
                            .then_some(IdKind::Integer)
                    }
                    b'n' => lx.skip_value(inner).map(|()| Some(IdKind::Null))?,
                    _ => lx.skip_value(inner).map(|()| None)?,
                };
                env.id = Some((Span::new(at, lx.pos), kind));
            }
            Member::Method => {
                env.method = Some(if first == b'"' {
                    Some(lx.string()?)
                } else {
                    lx.skip_value(inner)?;
                    None
                });
            }
            Member::Params => {
                let kind = match first {
                    // A method already read that is not tools/call: its params are
                    // only validated (their members matter to tools/call alone).
                    b'{' if matches!(env.method, Some(Some(m)) if !m.eq_str(TOOLS_CALL)) => {
                        lx.skip_value(inner).map(|()| ParamsKind::Object)?
                    }
                    b'{' => {
                        walk_params(lx, inner, &mut env.tool)?;
                        ParamsKind::Object
                    }
                    b'[' => lx.skip_value(inner).map(|()| ParamsKind::Array)?,
                    _ => lx.skip_value(inner).map(|()| ParamsKind::Other)?,
                };
                env.params = Some((Span::new(at, lx.pos), kind));
            }
            Member::Result => lx.skip_value(inner).map(|()| env.result = true)?,
            Member::Error => lx.skip_value(inner).map(|()| env.error = true)?,
        }
        next = lx.next_member()?;
    }
    classify(lx.bytes, &env, Span::new(start, lx.pos))
}

/// Walks `params` (the cursor is at `{`, inside `depth` containers).
fn walk_params<'a>(lx: &mut Lexer<'a>, depth: u8, facts: &mut ToolFacts<'a>) -> Result<(), Error> {
    if lx.too_deep(depth) {
        return Err(lx.err(ErrorKind::TooDeep));
    }
    let inner = depth + 1;
    let mut seen = [false; 3];
    let mut next = lx.open_object()?;
    while let Some(key) = next {
        let first = lx.next_token()?;
        let at = lx.pos;
        let slot = match key_word(&key) {
            NAME => Some(0),
            ARGUMENTS => Some(1),
            META => Some(2),
            _ => None,
        };
        match slot {
            Some(i) if seen.get(i).copied().unwrap_or(false) => {
                facts.fault(ErrorKind::DuplicateMember, at);
                lx.skip_value(inner)?;
            }
            Some(0) => {
                seen[0] = true;
                if first == b'"' {
                    facts.parts.name = Some(lx.string()?);
                } else {
                    facts.fault(ErrorKind::NameNotString, at);
                    lx.skip_value(inner)?;
                }
            }
            Some(1) => {
                seen[1] = true;
                lx.skip_value(inner)?;
                if first == b'{' {
                    facts.parts.arguments = Some(Span::new(at, lx.pos));
                } else {
                    facts.fault(ErrorKind::ArgumentsNotObject, at);
                }
            }
            Some(_) => {
                seen[2] = true;
                if first == b'{' {
                    walk_meta(lx, inner, facts)?;
                } else {
                    facts.fault(ErrorKind::MetaNotObject, at);
                    lx.skip_value(inner)?;
                }
            }
            None => {
                if folds_onto(&key.text, TOOL_PARAMS) {
                    facts.fault(ErrorKind::LookalikeMember, at);
                }
                lx.skip_value(inner)?;
            }
        }
        next = lx.next_member()?;
    }
    Ok(())
}

/// Walks `params._meta` for `progressToken`.
fn walk_meta<'a>(lx: &mut Lexer<'a>, depth: u8, facts: &mut ToolFacts<'a>) -> Result<(), Error> {
    if lx.too_deep(depth) {
        return Err(lx.err(ErrorKind::TooDeep));
    }
    let inner = depth + 1;
    let mut next = lx.open_object()?;
    while let Some(key) = next {
        lx.next_token()?;
        let at = lx.pos;
        lx.skip_value(inner)?;
        if key_word(&key) == PROGRESS_TOKEN {
            if facts.parts.progress_token.is_some() {
                facts.fault(ErrorKind::DuplicateMember, at);
            }
            facts.parts.progress_token = Some(Span::new(at, lx.pos));
        }
        next = lx.next_member()?;
    }
    Ok(())
}

fn classify<'a>(frame: &'a [u8], env: &Envelope<'a>, span: Span) -> Result<Message<'a>, Error> {
    let fail = |kind| Err(Error::at(kind, span.start));
    match env.version_ok {
        None => return fail(ErrorKind::MissingVersion),
        Some(false) => return fail(ErrorKind::BadVersion),
        Some(true) => {}
    }
    let id = |kinds: &[IdKind]| -> Result<Option<Id<'a>>, Error> {
        match env.id {
            None => Ok(None),
            Some((span, Some(kind))) if kinds.contains(&kind) => Ok(Some(Id {
                raw: span.of(frame),
                span,
                kind,
            })),
            Some((span, _)) => Err(Error::at(ErrorKind::BadId, span.start)),
        }
    };
    let Some(method) = env.method else {
        return match (env.result, env.error) {
            (true, true) => fail(ErrorKind::ResultAndError),
            (false, false) => fail(ErrorKind::NotAMessage),
            (_, is_error) => match id(&[IdKind::String, IdKind::Integer, IdKind::Null])? {
                Some(id) => Ok(Message::Response(Response { span, id, is_error })),
                None => fail(ErrorKind::MissingId),
            },
        };
    };
    if env.result || env.error {
        return fail(ErrorKind::MethodWithResult);
    }
    let Some(method) = method else {
        return fail(ErrorKind::MethodNotString);
    };
    let is_tool_call = method.eq_str(TOOLS_CALL);
    if !is_tool_call && folds_onto(&method, &[TOOLS_CALL]) {
        return fail(ErrorKind::LookalikeMethod);
    }
    if matches!(env.params, Some((_, ParamsKind::Other))) {
        return fail(ErrorKind::ParamsNotStructured);
    }
    let id = id(&[IdKind::String, IdKind::Integer])?;
    if is_tool_call {
        check_tool_call(env, span)?;
    }
    let call = Call {
        span,
        method,
        id,
        params: env.params.map(|(span, _)| span),
        // What a params walk learnt matters to tools/call alone; other calls carry
        // none of it, whichever order their members came in.
        tool: if is_tool_call {
            env.tool.parts
        } else {
            ToolParts::default()
        },
    };
    Ok(if id.is_some() {
        Message::Request(call)
    } else {
        Message::Notification(call)
    })
}

fn check_tool_call(env: &Envelope<'_>, span: Span) -> Result<(), Error> {
    let fail = |kind| Err(Error::at(kind, span.start));
    match env.params {
        None => return fail(ErrorKind::MissingToolName),
        Some((_, ParamsKind::Array)) => return fail(ErrorKind::ParamsNotObject),
        _ => {}
    }
    if let Some(fault) = env.tool.fault {
        return Err(fault);
    }
    let Some(name) = env.tool.parts.name else {
        return fail(ErrorKind::MissingToolName);
    };
    // Raw ASCII controls cannot occur in a valid string: plain ASCII names skip the walk.
    if !name.has_escapes() && name.raw().is_ascii() {
        return if name.raw().len() > MAX_TOOL_NAME {
            fail(ErrorKind::NameTooLong)
        } else {
            Ok(())
        };
    }
    let mut len = 0usize;
    for c in name.chars() {
        if c.is_control() {
            return fail(ErrorKind::NameControlChar);
        }
        len += c.len_utf8();
        if len > MAX_TOOL_NAME {
            return fail(ErrorKind::NameTooLong);
        }
    }
    Ok(())
}

/// `-?(0|[1-9][0-9]*)` within ±(2^53−1), read with `nom`; `-0` is refused because a
/// reader could take it for `0`.
fn is_integer_id(raw: &[u8]) -> bool {
    use nom::Parser;
    use nom::bytes::complete::take_while1;
    use nom::character::complete::char;
    use nom::combinator::{all_consuming, opt};
    let parsed: nom::IResult<&[u8], (Option<char>, &[u8])> =
        all_consuming((opt(char('-')), take_while1(|b: u8| b.is_ascii_digit()))).parse(raw);
    let Ok((_, (sign, digits))) = parsed else {
        return false;
    };
    if digits.len() > 16 || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return false;
    }
    if sign.is_some() && digits == b"0" {
        return false;
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    value < (1u64 << 53)
}

/// The id of a rejected message when it is present once, valid, and no key folds onto
/// `id`; the frame is known to be valid JSON and `start` is at the object's `{`.
fn unambiguous_id(frame: &[u8], max_depth: u8, start: usize) -> Option<Span> {
    let mut lx = Lexer::new(frame, max_depth);
    lx.pos = start;
    let mut found = None;
    let mut count = 0u32;
    let mut next = lx.open_object().ok()?;
    while let Some(key) = next {
        let first = lx.next_token().ok()?;
        let at = lx.pos;
        lx.skip_value(1).ok()?;
        let value = frame.get(at..lx.pos)?;
        if key_word(&key) == ID {
            count += 1;
            let valid = first == b'"' || is_integer_id(value);
            found = valid.then_some(Span::new(at, lx.pos));
        } else if folds_onto(&key.text, &["id"]) {
            return None;
        }
        next = lx.next_member().ok()?;
    }
    if count == 1 { found } else { None }
}

/// Iterator over the elements of a [`Batch`].
#[derive(Clone, Debug)]
pub struct BatchElements<'a> {
    lx: Lexer<'a>,
    started: bool,
    done: bool,
}

impl<'a> Iterator for BatchElements<'a> {
    type Item = Result<Message<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let delimiter = self.lx.peek_non_ws();
        let more = match (self.started, delimiter) {
            (false, Some(b'[')) | (true, Some(b',')) => {
                self.lx.pos += 1;
                self.lx.peek_non_ws().is_some_and(|b| b != b']')
            }
            _ => false,
        };
        self.started = true;
        if !more {
            self.done = true;
            return None;
        }
        let start = self.lx.pos;
        let frame = self.lx.bytes;
        let result = if self.lx.peek_non_ws() == Some(b'{') {
            walk_message(&mut self.lx, 1)
        } else {
            Err(Error::at(ErrorKind::NotAnObject, start))
        };
        if let Err(e) = result {
            // Step over the element; the batch as a whole is valid JSON.
            self.lx.pos = start;
            if self.lx.skip_value(1).is_err() {
                self.done = true;
            }
            return Some(Err(Error {
                id: unambiguous_id(frame, DEFAULT_MAX_DEPTH, start),
                ..e
            }));
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ids() {
        for (raw, ok) in [
            (&b"0"[..], true),
            (b"-1", true),
            (b"9007199254740991", true),
            (b"-9007199254740991", true),
            (b"9007199254740992", false),
            (b"-0", false),
            (b"01", false),
            (b"1.0", false),
            (b"1e2", false),
            (b"", false),
            (b"99999999999999999999", false),
        ] {
            assert_eq!(is_integer_id(raw), ok, "{raw:?}");
        }
    }

    #[test]
    fn tool_call_view() {
        let frame = br#"{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"name":"re\u0061d","arguments":{"p":"/x"},"_meta":{"progressToken":"t1"}}}"#;
        let Ok(Message::Request(call)) = scan(frame) else {
            panic!("{:?}", scan(frame))
        };
        assert_eq!(call.id().unwrap().raw, b"7");
        let tc = tool_call(&call).unwrap();
        assert_eq!(tc.name.as_str(), "read");
        assert_eq!(tc.arguments.unwrap().of(frame), br#"{"p":"/x"}"#);
        assert_eq!(tc.progress_token.unwrap().of(frame), br#""t1""#);
    }

    #[test]
    fn batch_elements_are_independent() {
        let frame = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5, {"jsonrpc":"2.0","id":"x","Method":"a"}, {"jsonrpc":"2.0","method":"n"}]"#;
        let Ok(Message::Batch(batch)) = scan(frame) else {
            panic!()
        };
        let mut kinds = heapless::Vec::<&str, 8>::new();
        for e in batch.elements() {
            kinds
                .push(match e {
                    Ok(Message::Request(_)) => "request",
                    Ok(Message::Notification(_)) => "notification",
                    Ok(_) => "other",
                    Err(e) => e.kind.as_str(),
                })
                .unwrap();
        }
        assert_eq!(
            kinds.as_slice(),
            [
                "request",
                "not_an_object",
                "lookalike_member",
                "notification"
            ]
        );
        let third = batch.elements().nth(2).unwrap().unwrap_err();
        assert_eq!(third.id.unwrap().of(frame), b"\"x\"");
    }
}
