//! What thoth refuses in a client frame on its own, before any policy or session
//! state: a tools/call whose params the core rejects, arguments that a lax decoder
//! could read otherwise than the policy does, a tools/call without an id.
//!
//! The proxy's pump and `thoth scan` both call these functions, so what scan calls a
//! valid request is what run lets reach a decision. Nothing here decides, answers or
//! looks at the session; it never allocates for a frame that is not a tools/call.

use serde_json::Value;
use thoth_core::{Call, ToolCall};

use crate::enforce::{MAX_POLICY_ARGUMENTS, arguments};

/// Why a client message is refused before any decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The core's reading of the message or of the tools/call params.
    Core(thoth_core::Error),
    /// Arguments with a repeated key, or keys equal under case folding.
    Arguments(arguments::ArgumentsError),
    /// A tools/call notification: no id, so a denial could not be answered (dropped).
    NoId,
}

impl Refusal {
    /// The stable reason (`data.reason` of the answer).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Core(e) => e.kind.as_str(),
            Self::Arguments(_) => "ambiguous_arguments",
            Self::NoId => "tools_call_without_id",
        }
    }
}

/// A tools/call message's name, arguments span and progress token, read by the core
/// (its own checks on params: one `name`, a string, an object of arguments…).
pub fn tool_call(call: &Call<'_>) -> Result<ToolCall, Refusal> {
    if call.id().is_none() {
        return Err(Refusal::NoId);
    }
    thoth_core::tool_call(call).map_err(Refusal::Core)
}

/// The call's arguments as the policy sees them, and their length in bytes: `None`
/// when longer than the policy limit (decided by that limit alone, unread).
pub fn arguments(frame: &[u8], tc: &ToolCall) -> Result<(Option<Value>, usize), Refusal> {
    let Some(span) = tc.arguments else {
        return Ok((Some(Value::Object(serde_json::Map::new())), 0));
    };
    let raw = span.of(frame);
    if raw.len() > MAX_POLICY_ARGUMENTS {
        return Ok((None, raw.len()));
    }
    arguments::parse(raw)
        .map(|v| (Some(v), raw.len()))
        .map_err(Refusal::Arguments)
}

/// Every check above on one tools/call message, in the pump's order.
pub fn check(frame: &[u8], call: &Call<'_>) -> Result<(), Refusal> {
    let tc = tool_call(call)?;
    arguments(frame, &tc).map(|_| ())
}
