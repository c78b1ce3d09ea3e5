//! One error type for everything the core rejects, so callers map it to a JSON-RPC code
//! in one place. It is `Copy` and carries only an offset and, when known, the raw id.

use crate::rpc::Span;

/// Why a frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    // --- Not JSON (JSON-RPC -32700) ---
    /// The frame holds no value (only whitespace).
    Empty,
    /// The frame ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue the value here.
    UnexpectedByte,
    /// Bytes that are not well-formed UTF-8 (including a BOM, overlongs and surrogates).
    InvalidUtf8,
    /// A raw control character (below U+0020) inside a string.
    ControlInString,
    /// An unknown escape or a malformed `\u` escape.
    InvalidEscape,
    /// A `\u` surrogate escape without its partner.
    LoneSurrogate,
    /// A number outside the JSON grammar (`01`, `1.`, `.5`, `-`, `NaN`…).
    InvalidNumber,
    /// A misspelt `true`, `false` or `null`.
    InvalidLiteral,
    /// Anything but whitespace after the value.
    TrailingData,
    /// Nesting deeper than the limit.
    TooDeep,
    /// The frame is larger than the framer or the scanner accepts.
    FrameTooLarge,

    // --- JSON, but not a valid JSON-RPC message (-32600) ---
    /// The frame is neither an object nor an array.
    NotAnObject,
    /// A batch with no element.
    EmptyBatch,
    /// `jsonrpc` is missing.
    MissingVersion,
    /// `jsonrpc` is not exactly `"2.0"`.
    BadVersion,
    /// A protected member appears twice.
    DuplicateMember,
    /// A key that is a look-alike of a protected member (case fold, controls).
    LookalikeMember,
    /// `method` is not a string.
    MethodNotString,
    /// A method that is a look-alike of `tools/call` without being it.
    LookalikeMethod,
    /// An id that is not a string or an integer within ±(2^53−1).
    BadId,
    /// A response without an id.
    MissingId,
    /// `result` together with `error`.
    ResultAndError,
    /// `method` together with `result` or `error`.
    MethodWithResult,
    /// Neither `method` nor `result`/`error`.
    NotAMessage,
    /// `params` is neither an object nor an array.
    ParamsNotStructured,

    // --- A tools/call whose params are unusable (-32602) ---
    /// tools/call without `params` or without `params.name`.
    MissingToolName,
    /// tools/call `params` is not an object.
    ParamsNotObject,
    /// `params.name` is not a string.
    NameNotString,
    /// `params.name` holds a control character.
    NameControlChar,
    /// `params.name` is longer than [`crate::rpc::MAX_TOOL_NAME`] bytes.
    NameTooLong,
    /// `params.arguments` is not an object.
    ArgumentsNotObject,
    /// `params._meta` is not an object.
    MetaNotObject,
    /// The message is not a tools/call (from [`crate::tool_call`]).
    NotToolCall,
}

impl ErrorKind {
    /// The snake_case name used by `thoth scan` and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnexpectedEnd => "unexpected_end",
            Self::UnexpectedByte => "unexpected_byte",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::ControlInString => "control_in_string",
            Self::InvalidEscape => "invalid_escape",
            Self::LoneSurrogate => "lone_surrogate",
            Self::InvalidNumber => "invalid_number",
            Self::InvalidLiteral => "invalid_literal",
            Self::TrailingData => "trailing_data",
            Self::TooDeep => "too_deep",
            Self::FrameTooLarge => "frame_too_large",
            Self::NotAnObject => "not_an_object",
            Self::EmptyBatch => "empty_batch",
            Self::MissingVersion => "missing_version",
            Self::BadVersion => "bad_version",
            Self::DuplicateMember => "duplicate_member",
            Self::LookalikeMember => "lookalike_member",
            Self::MethodNotString => "method_not_string",
            Self::LookalikeMethod => "lookalike_method",
            Self::BadId => "bad_id",
            Self::MissingId => "missing_id",
            Self::ResultAndError => "result_and_error",
            Self::MethodWithResult => "method_with_result",
            Self::NotAMessage => "not_a_message",
            Self::ParamsNotStructured => "params_not_structured",
            Self::MissingToolName => "missing_tool_name",
            Self::ParamsNotObject => "params_not_object",
            Self::NameNotString => "name_not_string",
            Self::NameControlChar => "name_control_char",
            Self::NameTooLong => "name_too_long",
            Self::ArgumentsNotObject => "arguments_not_object",
            Self::MetaNotObject => "meta_not_object",
            Self::NotToolCall => "not_tool_call",
        }
    }

    /// True when the frame is not JSON at all (JSON-RPC "Parse error").
    pub const fn is_parse_error(self) -> bool {
        matches!(
            self,
            Self::Empty
                | Self::UnexpectedEnd
                | Self::UnexpectedByte
                | Self::InvalidUtf8
                | Self::ControlInString
                | Self::InvalidEscape
                | Self::LoneSurrogate
                | Self::InvalidNumber
                | Self::InvalidLiteral
                | Self::TrailingData
                | Self::TooDeep
                | Self::FrameTooLarge
        )
    }

    /// The JSON-RPC error code a client should get for this rejection.
    pub const fn code(self) -> i32 {
        if self.is_parse_error() {
            -32700
        } else {
            match self {
                Self::MissingToolName
                | Self::ParamsNotObject
                | Self::NameNotString
                | Self::NameControlChar
                | Self::NameTooLong
                | Self::ArgumentsNotObject
                | Self::MetaNotObject => -32602,
                _ => -32600,
            }
        }
    }
}

/// A rejected frame: what, where, and the raw id when the frame has exactly one valid id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// Why the frame was rejected.
    pub kind: ErrorKind,
    /// Byte offset in the frame where the problem was found.
    pub offset: usize,
    /// Span of the frame's id when it is present once, valid and unambiguous; a reply
    /// echoes it, otherwise it answers with `null`.
    pub id: Option<Span>,
}

impl Error {
    pub(crate) const fn at(kind: ErrorKind, offset: usize) -> Self {
        Self {
            kind,
            offset,
            id: None,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.offset)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
