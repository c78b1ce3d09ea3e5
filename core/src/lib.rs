//! `thoth-core`: the part of thoth that reads bytes an attacker controls.
//!
//! It splits a byte stream into newline-delimited frames ([`frame`]), validates each
//! frame as strict JSON ([`json`]) and classifies it as a JSON-RPC message with
//! zero-copy views ([`rpc`]), and writes JSON-RPC error replies ([`reply`]). What thoth
//! writes for a frame is its canonical line ([`canon`]): read as one line holding the
//! same value by every mainstream reader. The server's lines get a lax check of their
//! own before they reach the client ([`lax`]).
//!
//! The crate is `#![no_std]` without `alloc`: every view borrows from the caller's
//! buffer, every bound is fixed at compile time or given by the caller, and nothing
//! recurses (nesting is tracked on a 128-bit stack). It must never panic, allocate or
//! accept a frame that two reasonable JSON-RPC readers could read differently: such a
//! frame is a policy bypass, so it is rejected instead (see [`rpc`] for the rules).
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

#[cfg(feature = "std")]
extern crate std;

pub mod canon;
mod error;
pub mod frame;
pub mod json;
pub mod lax;
mod lookalike;
pub mod reply;
pub mod rpc;
mod text;

pub use canon::{LineRewriter, Rewrites, canonical_len, needs_rewrite, write_canonical};
pub use error::{Error, ErrorKind};
pub use frame::{FrameStep, Frames, LineFramer};
pub use json::{DEFAULT_MAX_DEPTH, MAX_DEPTH, validate, validate_with_depth};
pub use lax::{LaxLine, check_line};
pub use reply::{ReplyError, write_error_reply};
pub use rpc::{
    Batch, BatchElements, Call, Id, IdKind, Message, Response, Span, ToolCall, ToolName, scan,
    scan_with_depth, tool_call,
};
pub use text::RawStr;
