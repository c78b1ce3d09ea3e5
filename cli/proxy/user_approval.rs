//! Approvals where the human is: a STEP_UP whose policy lets the user approve it
//! (`@approver("user")` on the forbid, or the enforcer's `approver: "user"`) is put to
//! the user by their own client, as an MCP elicitation, instead of being refused at once.
//!
//! - Local engine, a client that declared elicitation's form mode: thoth asks
//!   `elicitation/create` (the tool, the server, why, a bounded summary of the
//!   arguments, and approve or deny) and holds the call meanwhile, with progress
//!   notifications when the client asked for them. Only `accept` with
//!   `decision: "approve"` forwards the call; `decline`, `cancel` or `deny` answer
//!   -32001; no answer within the hold time answers -32002 (and the question is
//!   cancelled), as for any hold.
//! - A remote hold with an approval URL, for a client that declared URL mode: the page
//!   is shown in the client. `accept` only says it was opened, so the call still waits
//!   for the hold to resolve; `decline` or `cancel` end the hold with -32001.
//! - A 2026-07-28 (stateless) session cannot be asked: the call is answered with an
//!   `input_required` result carrying the question, and the client's retry brings the
//!   answer with thoth's `requestState` token (see [`Issued`]).
//!
//! Unforgeable: a question's id is in thoth's own namespace (`calls::OWN_ID_PREFIX`),
//! and its answer is taken from the client's side only and never relayed; the server
//! sees neither. The model cannot answer: it writes tool arguments, not the client's
//! responses. An approval is bound to the one pending call (stateless: to its token
//! and to the call's key — agent, tool, SHA-256 of the canonical arguments — and used
//! once). At most [`MAX_OPEN`] questions are open per session; past it the call gets
//! -32002 as it would without elicitation. This module must never forward a call on
//! anything but an explicit approval, nor quote argument text to the user unescaped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::calls::OWN_ID_PREFIX;
use super::outbox::Outbox;

/// Questions open at once per session at most (each is a dialog in the client).
pub const MAX_OPEN: usize = 4;
/// Stateless questions awaiting their retry at most.
const MAX_ISSUED: usize = 64;
/// How long a stateless question waits for its retry: nothing keeps a client's timer
/// running there, and a person may take a while.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Retries of an approved stateless call carrying the server's own `requestState`
/// (its own input rounds) admitted at most, within [`TOKEN_LIFETIME`].
const CONTINUATIONS: u8 = 8;
/// Values of the arguments (leaves) shown to the user at most: a call with more is not
/// asked (the user could not see all of it).
const MAX_LEAVES: usize = 64;
/// Characters of one value shown at most (a longer one says how much is cut).
const LEAF_CHARS: usize = 160;
/// Characters of the arguments' summary at most: a longer one is not asked either.
const SUMMARY_CHARS: usize = 6000;
/// Characters of the tool name (256 bytes at most), the server's name and the reason
/// shown at most.
const NAME_CHARS: usize = 256;
/// The key of thoth's question among a stateless result's `inputRequests`.
pub const INPUT_KEY: &str = "thoth.approval";
/// What a stateless question's `requestState` starts with.
pub const STATE_PREFIX: &str = "thoth:approval:";

/// The elicitation modes a client declared (`capabilities.elicitation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modes {
    pub form: bool,
    pub url: bool,
}

impl Modes {
    /// From a client's `capabilities`: an `elicitation` object with neither `form` nor
    /// `url` means form mode (2025-06-18 had no modes); anything but an object, none.
    pub fn of(capabilities: Option<&Value>) -> Self {
        let Some(declared) = capabilities
            .and_then(|c| c.get("elicitation"))
            .and_then(Value::as_object)
        else {
            return Self::default();
        };
        let form = declared.get("form").is_some_and(Value::is_object);
        let url = declared.get("url").is_some_and(Value::is_object);
        if form || url {
            Self { form, url }
        } else {
            Self {
                form: true,
                url: false,
            }
        }
    }
}

/// What the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Form: `accept` with `decision: "approve"`. URL: `accept` (the page was opened).
    Approved,
    /// `decline`, `cancel`, `accept` with anything but an approval, or an answer that
    /// cannot be read one way only: the word says which.
    Refused(&'static str),
    /// No answer in time, or the client could not ask (it answered an error).
    Unanswered,
}

impl Answer {
    /// Reads the client's response to a question (`form`: thoth asked for a decision).
    pub fn of(response: &[u8], form: bool) -> Self {
        // Read as a strict reader reads it: a member twice (which readers resolve
        // differently) is no approval.
        let Ok(response) = crate::enforce::arguments::parse(response) else {
            return Self::Refused("unreadable");
        };
        let Some(result) = response.get("result") else {
            return Self::Unanswered;
        };
        match result.get("action").and_then(Value::as_str) {
            Some("accept") if !form => Self::Approved,
            Some("accept") => {
                let decision = result
                    .get("content")
                    .and_then(|c| c.get("decision"))
                    .and_then(Value::as_str);
                if decision == Some("approve") {
                    Self::Approved
                } else {
                    Self::Refused("deny")
                }
            }
            Some("decline") => Self::Refused("decline"),
            Some("cancel") => Self::Refused("cancel"),
            _ => Self::Refused("unreadable"),
        }
    }
}

/// One open question: its id, and where its answer arrives. Dropping it closes the
/// question: one not answered yet is cancelled in the client, and a late answer is
/// dropped, never relayed.
pub struct Question {
    /// The id's JSON text (`"thoth:…"`).
    pub raw_id: Vec<u8>,
    key: String,
    answer: Option<oneshot::Receiver<Vec<u8>>>,
    questions: Rc<Questions>,
}

impl Question {
    /// The client's response (the whole frame), once it comes; `None` if the session
    /// ended first.
    pub async fn answer(&mut self) -> Option<Vec<u8>> {
        let rx = self.answer.as_mut()?;
        let got = rx.await.ok();
        self.answer = None;
        got
    }

    /// Whether the answer is still awaited.
    pub fn waiting(&self) -> bool {
        self.answer.is_some()
    }
}

impl Drop for Question {
    fn drop(&mut self) {
        self.questions.open.borrow_mut().remove(&self.key);
        if self.waiting() {
            // (Nothing can wait here: a full queue leaves the dialog to the client.)
            let _ = self
                .questions
                .out
                .try_answer_client(cancelled(&self.raw_id));
        }
    }
}

/// A stateless question awaiting the client's retry.
struct Issued {
    call_key: [u8; 32],
    expires: Instant,
    /// An approval page's question: the remote hold the retry is then held on.
    hold: Option<Box<crate::enforce::Decision>>,
}

/// How a stateless retry's approval reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// The token is thoth's and unknown, expired or used: the approval is gone.
    Expired,
    /// The token was issued for another call (other tool or arguments).
    OtherCall,
    /// The retry's answer to thoth's question.
    Answered(Answer),
    /// The retry's answer to an approval page's question (`Approved`: the page was
    /// opened), and the remote hold it belongs to.
    Page(Answer, Box<crate::enforce::Decision>),
}

/// The session's open questions.
pub struct Questions {
    open: RefCell<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    issued: RefCell<HashMap<String, Issued>>,
    /// Stateless calls the user approved: call key → (expiry, retries left) for the
    /// server's own input rounds on them.
    approved: RefCell<HashMap<[u8; 32], (Instant, u8)>>,
    /// Where a question dropped unanswered is cancelled.
    out: Rc<Outbox>,
}

impl Questions {
    pub fn new(out: Rc<Outbox>) -> Self {
        Self {
            open: RefCell::default(),
            issued: RefCell::default(),
            approved: RefCell::default(),
            out,
        }
    }

    /// No answer can come any more (the client's input ended): every open question
    /// is unanswered now.
    pub fn close(&self) {
        self.open.borrow_mut().clear();
    }

    /// The user approved the stateless call `call_key`: the server's own input rounds
    /// on it (retries carrying its `requestState`) are admitted for a while.
    pub fn approved(&self, call_key: [u8; 32]) {
        let mut approved = self.approved.borrow_mut();
        let now = Instant::now();
        approved.retain(|_, (expiry, _)| *expiry > now);
        if approved.len() < MAX_ISSUED {
            approved.insert(call_key, (now + TOKEN_LIFETIME, CONTINUATIONS));
        }
    }

    /// Takes one admitted retry of the approved call `call_key`, if one is left.
    pub fn continuation(&self, call_key: &[u8; 32]) -> bool {
        let mut approved = self.approved.borrow_mut();
        match approved.get_mut(call_key) {
            Some((expiry, left)) if *expiry > Instant::now() && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Opens a question, unless [`MAX_OPEN`] are open.
    pub fn open(self: &Rc<Self>) -> Option<Question> {
        let mut open = self.open.borrow_mut();
        if open.len() >= MAX_OPEN {
            return None;
        }
        let id = format!("{OWN_ID_PREFIX}approval:{}", uuid::Uuid::new_v4());
        let raw_id = Value::String(id).to_string().into_bytes();
        let key = super::calls::id_key(&raw_id);
        let (tx, rx) = oneshot::channel();
        open.insert(key.clone(), tx);
        Some(Question {
            raw_id,
            key,
            answer: Some(rx),
            questions: self.clone(),
        })
    }

    /// Takes the client's response to one of thoth's own requests (`key`, an id key in
    /// thoth's namespace): an open question's answer is delivered; anything else is
    /// dropped. Either way it is never relayed.
    pub fn answered(&self, key: &str, response: &[u8]) {
        match self.open.borrow_mut().remove(key) {
            Some(tx) => {
                let _ = tx.send(response.to_vec());
            }
            None => tracing::debug!(
                "the client answered a request of thoth's that is not open (dropped)"
            ),
        }
    }

    /// Issues a stateless question's token for the call whose key is `call_key`, valid
    /// for `lifetime`; `None` when [`MAX_ISSUED`] are waiting.
    pub fn issue(&self, call_key: [u8; 32], lifetime: Duration) -> Option<String> {
        self.issue_for(call_key, lifetime, None)
    }

    /// [`Self::issue`] for an approval page shown for the remote hold of `hold`.
    pub fn issue_page(
        &self,
        call_key: [u8; 32],
        lifetime: Duration,
        hold: crate::enforce::Decision,
    ) -> Option<String> {
        self.issue_for(call_key, lifetime, Some(Box::new(hold)))
    }

    fn issue_for(
        &self,
        call_key: [u8; 32],
        lifetime: Duration,
        hold: Option<Box<crate::enforce::Decision>>,
    ) -> Option<String> {
        let mut issued = self.issued.borrow_mut();
        let now = Instant::now();
        issued.retain(|_, i| i.expires > now);
        if issued.len() >= MAX_ISSUED {
            return None;
        }
        let token = format!("{STATE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        issued.insert(
            token.clone(),
            Issued {
                call_key,
                expires: now + lifetime,
                hold,
            },
        );
        Some(token)
    }

    /// Reads a stateless retry carrying thoth's token (`params` of the call): the token
    /// is used up whatever the answer.
    pub fn retry(&self, token: &str, call_key: &[u8; 32], params: &Value) -> Retry {
        let Some(issued) = self.issued.borrow_mut().remove(token) else {
            return Retry::Expired;
        };
        if issued.expires <= Instant::now() {
            return Retry::Expired;
        }
        if &issued.call_key != call_key {
            return Retry::OtherCall;
        }
        let form = issued.hold.is_none();
        let answer = params
            .get("inputResponses")
            .and_then(|r| r.get(INPUT_KEY))
            .map(|result| {
                // Read as a response carrying it, the way a stateful answer is read.
                let response = json!({ "result": result }).to_string();
                Answer::of(response.as_bytes(), form)
            })
            .unwrap_or(Answer::Unanswered);
        match issued.hold {
            Some(hold) => Retry::Page(answer, hold),
            None => Retry::Answered(answer),
        }
    }
}

/// A stateless retry bringing back thoth's `requestState`: the token, and the call's
/// params (where the answer is), read by a strict reader.
pub struct BroughtBack {
    pub token: String,
    pub params: Value,
}

/// What a stateless tools/call brings back.
pub enum Back {
    /// No `requestState`.
    Nothing,
    /// thoth's token (and the answer to its question).
    Ours(BroughtBack),
    /// The server's own `requestState`: one of its input rounds.
    Servers,
    /// Params that do not read one way only while they may hold thoth's token: the
    /// call is refused (the token must neither ride through to the server nor be
    /// read as another reader would).
    Unreadable,
}

impl Back {
    /// What a tools/call frame brings back (found without parsing a frame that cannot
    /// hold a `requestState`: the key may be written with escapes).
    pub fn of(frame: &[u8]) -> Self {
        type Needle = std::sync::LazyLock<memchr::memmem::Finder<'static>>;
        static STATE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"requestState"));
        static ESCAPE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\\u"));
        static TOKEN: Needle = Needle::new(|| memchr::memmem::Finder::new(STATE_PREFIX.as_bytes()));
        let escaped = ESCAPE.find(frame).is_some();
        if STATE.find(frame).is_none() && !escaped {
            return Self::Nothing;
        }
        let Some(raw) = raw_params(frame) else {
            return Self::Nothing;
        };
        // A member twice, keys equal under case folding: not one reading.
        let Ok(params) = crate::enforce::arguments::parse(raw) else {
            if escaped || TOKEN.find(frame).is_some() {
                return Self::Unreadable;
            }
            let lax: Option<Value> = serde_json::from_slice(raw).ok();
            return match lax.as_ref().and_then(|p| p.get("requestState")) {
                Some(_) => Self::Servers,
                None => Self::Nothing,
            };
        };
        match params.get("requestState") {
            Some(Value::String(token)) if token.starts_with(STATE_PREFIX) => {
                Self::Ours(BroughtBack {
                    token: token.clone(),
                    params,
                })
            }
            Some(_) => Self::Servers,
            None => Self::Nothing,
        }
    }
}

fn raw_params(frame: &[u8]) -> Option<&[u8]> {
    let Ok(thoth_core::Message::Request(call)) = thoth_core::scan(frame) else {
        return None;
    };
    Some(call.params()?.of(frame))
}

fn params_of(frame: &[u8]) -> Option<Value> {
    serde_json::from_slice(raw_params(frame)?).ok()
}

/// The elicitation modes a stateless request declares (`_meta`'s client capabilities).
pub fn request_modes(frame: &[u8]) -> Modes {
    let params = params_of(frame);
    Modes::of(
        params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(super::envelope::CAPABILITIES_KEY)),
    )
}

/// What the question says: the tool, the server, why, and the arguments.
pub struct Asked<'a> {
    pub tool: &'a str,
    pub server: Option<&'a str>,
    pub reason: &'a str,
    pub arguments: Option<&'a Value>,
}

/// The form-mode `elicitation/create` params for a call (`with_mode`: the session's
/// revision has modes, 2025-11-25 and later); `None` when the arguments cannot all be
/// shown ([`summary`]): the user is then not asked.
pub fn form_params(asked: &Asked<'_>, with_mode: bool) -> Option<Value> {
    // The server names itself: said so, since it could claim to be anything.
    let server = asked.server.map_or_else(
        || "this MCP server".to_string(),
        |s| {
            format!(
                "the MCP server that calls itself {}",
                shown(&Value::String(s.to_string()).to_string(), NAME_CHARS)
            )
        },
    );
    let message = format!(
        "thoth: the tool {} of {server} waits for your approval.\nWhy: {}\nArguments:\n{}\nApprove this one call?",
        shown(
            &Value::String(asked.tool.to_string()).to_string(),
            NAME_CHARS
        ),
        shown(asked.reason, NAME_CHARS),
        summary(asked.arguments)?,
    );
    let mut params = json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {
                "decision": {
                    "type": "string",
                    "title": "Your decision",
                    "description": "approve lets this one call run; deny blocks it",
                    "enum": ["approve", "deny"],
                },
            },
            "required": ["decision"],
        },
    });
    if with_mode && let Some(map) = params.as_object_mut() {
        map.insert("mode".into(), json!("form"));
    }
    Some(params)
}

/// The URL-mode `elicitation/create` params showing an approval page.
pub fn url_params(tool: &str, url: &str, elicitation_id: &str) -> Value {
    json!({
        "mode": "url",
        "url": url,
        "elicitationId": elicitation_id,
        "message": format!(
            "thoth: the tool {} waits for approval on this page.",
            shown(tool, NAME_CHARS)
        ),
    })
}

/// thoth's request to the client, as its canonical line.
pub fn request(raw_id: &[u8], params: &Value) -> Vec<u8> {
    let mut frame = b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec();
    frame.extend_from_slice(raw_id);
    frame.extend_from_slice(b",\"method\":\"elicitation/create\",\"params\":");
    frame.extend_from_slice(params.to_string().as_bytes());
    frame.push(b'}');
    canonical(&frame)
}

/// `notifications/cancelled` for a question no longer awaited.
pub fn cancelled(raw_id: &[u8]) -> Vec<u8> {
    let mut frame =
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":"
            .to_vec();
    frame.extend_from_slice(raw_id);
    frame.extend_from_slice(b",\"reason\":\"the call no longer waits for approval\"}}");
    frame
}

/// `notifications/elicitation/complete` for an approval page whose hold has resolved.
pub fn completed(elicitation_id: &str) -> Vec<u8> {
    let params = json!({ "elicitationId": elicitation_id });
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/elicitation/complete\",\"params\":{params}}}"
    )
    .into_bytes()
}

/// The stateless answer to a call: `input_required`, with thoth's question (form or URL
/// elicitation params) and token.
pub fn input_required(raw_id: &[u8], params: &Value, token: &str) -> Vec<u8> {
    let result = json!({
        "resultType": "input_required",
        "inputRequests": { INPUT_KEY: { "method": "elicitation/create", "params": params } },
        "requestState": token,
    });
    let mut frame = b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec();
    frame.extend_from_slice(raw_id);
    frame.extend_from_slice(b",\"result\":");
    frame.extend_from_slice(result.to_string().as_bytes());
    frame.push(b'}');
    canonical(&frame)
}

fn canonical(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len());
    thoth_core::write_canonical(frame, |piece| out.extend_from_slice(piece));
    out
}

/// The arguments as the user reads them: every value on a line of its own, by its
/// path, sorted (the model chose the order they came in), each value bounded to
/// [`LEAF_CHARS`] and saying how much was cut. `None` when they cannot all be shown:
/// too large to read, more than [`MAX_LEAVES`] values, or a summary over
/// [`SUMMARY_CHARS`] — a value the user never saw must not ride on their approval.
pub fn summary(arguments: Option<&Value>) -> Option<String> {
    let arguments = arguments?;
    if arguments.as_object().is_some_and(serde_json::Map::is_empty) {
        return Some("(none)".into());
    }
    let mut leaves = Vec::new();
    collect(arguments, String::new(), &mut leaves)?;
    leaves.sort();
    let text = leaves.join("\n");
    (text.chars().count() <= SUMMARY_CHARS).then_some(text)
}

/// Adds the leaves under `value` (at `path`) to `out`; `None` past [`MAX_LEAVES`].
fn collect(value: &Value, path: String, out: &mut Vec<String>) -> Option<()> {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                let step = if plain {
                    format!("{path}.{key}")
                } else {
                    format!("{path}[{}]", Value::String(key.clone()))
                };
                collect(value, step, out)?;
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                collect(item, format!("{path}[{i}]"), out)?;
            }
        }
        leaf => {
            if out.len() >= MAX_LEAVES {
                return None;
            }
            let path = path.strip_prefix('.').unwrap_or(&path);
            out.push(format!(
                "{} = {}",
                shown(
                    if path.is_empty() { "(arguments)" } else { path },
                    NAME_CHARS
                ),
                shown(&leaf.to_string(), LEAF_CHARS)
            ));
        }
    }
    Some(())
}

/// `text` bounded to `max` characters (a cut says how many more there were), with
/// control, line-breaking and invisible characters written as `\u{…}`: what the user
/// reads is what the call carries.
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    for (count, c) in text.chars().enumerate() {
        if count == max {
            let more = text.chars().count() - max;
            out.push_str(&format!("… ({more} more characters)"));
            break;
        }
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}')
            || crate::enforce::DescriptionFlags::invisible(c)
        {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A question's progress notification text.
const WAITING: &str = "waiting for your approval in the client";

/// How long a question waits, and how often its progress is told.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub poll: Duration,
    pub hold: Duration,
}

/// Asks the user (form mode) and waits for the answer: at most `wait.hold`, with a
/// progress notification every `wait.poll` when the call has a progress token (its
/// raw JSON). A question not answered in time is cancelled in the client.
pub async fn ask(
    mut question: Question,
    params: &Value,
    progress_token: Option<&[u8]>,
    wait: Wait,
) -> Answer {
    let out = question.questions.out.clone();
    // The hold counts from now, sends included (a client that reads nothing does not
    // keep the call pending longer).
    let deadline = Instant::now() + wait.hold;
    let asked = tokio::time::timeout_at(
        deadline,
        out.answer_client(request(&question.raw_id, params)),
    );
    if asked.await.is_err() {
        return Answer::Unanswered;
    }
    let mut step = 0u64;
    loop {
        if let Some(token) = progress_token {
            let told = tokio::time::timeout_at(
                deadline,
                out.answer_client(super::answers::progress(token, step, WAITING)),
            );
            if told.await.is_err() {
                return Answer::Unanswered;
            }
        }
        let next = match progress_token {
            Some(_) => (Instant::now() + wait.poll).min(deadline),
            None => deadline,
        };
        tokio::select! {
            reply = question.answer() => {
                return reply.map_or(Answer::Unanswered, |r| Answer::of(&r, true));
            }
            () = tokio::time::sleep_until(next) => {}
        }
        if Instant::now() >= deadline {
            // (Dropping the question cancels it in the client.)
            return Answer::Unanswered;
        }
        step += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_modes_read_as_the_revisions_define_them() {
        let of = |v: Value| Modes::of(Some(&v));
        let form = Modes {
            form: true,
            url: false,
        };
        assert_eq!(of(json!({})), Modes::default());
        assert_eq!(of(json!({ "elicitation": {} })), form, "2025-06-18");
        assert_eq!(of(json!({ "elicitation": { "form": {} } })), form);
        assert_eq!(
            of(json!({ "elicitation": { "url": {} } })),
            Modes {
                form: false,
                url: true
            }
        );
        assert_eq!(
            of(json!({ "elicitation": { "form": {}, "url": {} } })),
            Modes {
                form: true,
                url: true
            }
        );
        assert_eq!(of(json!({ "elicitation": true })), Modes::default());
        assert_eq!(Modes::of(None), Modes::default());
    }

    #[test]
    fn only_an_explicit_approval_approves() {
        let cases: &[(&str, bool, Answer)] = &[
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"decision":"approve"}}}"#,
                true,
                Answer::Approved,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"decision":"deny"}}}"#,
                true,
                Answer::Refused("deny"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"decision":"Approve"}}}"#,
                true,
                Answer::Refused("deny"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"decision":true}}}"#,
                true,
                Answer::Refused("deny"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept"}}"#,
                true,
                Answer::Refused("deny"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept","content":{"decision":"deny","decision":"approve"}}}"#,
                true,
                Answer::Refused("unreadable"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"decline"}}"#,
                true,
                Answer::Refused("decline"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"cancel"}}"#,
                false,
                Answer::Refused("cancel"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"ACCEPT"}}"#,
                false,
                Answer::Refused("unreadable"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","result":{"action":"accept"}}"#,
                false,
                Answer::Approved,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}"#,
                true,
                Answer::Unanswered,
            ),
        ];
        for (response, form, want) in cases {
            assert_eq!(Answer::of(response.as_bytes(), *form), *want, "{response}");
        }
    }

    #[test]
    fn what_the_user_reads_is_bounded_and_shows_the_invisible() {
        assert_eq!(
            shown("a\u{202E}b\nc\u{2028}", 10),
            "a\\u{202E}b\\u{000A}c\\u{2028}"
        );
        assert_eq!(shown("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(summary(Some(&json!({}))).as_deref(), Some("(none)"));
        assert_eq!(summary(None), None, "too large to read: not asked");
        // Every value shows, sorted by path, however the model ordered them and however
        // long the one before it is.
        let hiding = json!({ "body": "x".repeat(5000), "to": "attacker@evil.example", "cc": ["a", {"b c": true}] });
        let text = summary(Some(&hiding)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("body = \"xxx"), "{text}");
        assert!(lines[0].ends_with("(4842 more characters)"), "{text}");
        assert_eq!(lines[1], "cc[0] = \"a\"");
        assert_eq!(lines[2], "cc[1][\"b c\"] = true");
        assert_eq!(lines[3], "to = \"attacker@evil.example\"");
        let many: serde_json::Map<String, Value> = (0..=MAX_LEAVES)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert_eq!(
            summary(Some(&Value::Object(many))),
            None,
            "too many to show"
        );
        let params = form_params(
            &Asked {
                tool: "send\u{200B}mail",
                server: Some("mail"),
                reason: "mail leaves the company",
                arguments: Some(&json!({ "to": "a@b.example" })),
            },
            true,
        )
        .unwrap_or_default();
        let message = params["message"].as_str().unwrap_or_default();
        assert!(message.contains("send\\u{200B}mail"), "{message}");
        assert!(message.contains("a@b.example"), "{message}");
        assert_eq!(params["mode"], "form");
        let args = json!({});
        let legacy = form_params(
            &Asked {
                tool: "t",
                server: None,
                reason: "r",
                arguments: Some(&args),
            },
            false,
        )
        .unwrap_or_default();
        assert!(legacy.get("mode").is_none() && legacy.get("message").is_some());
    }

    #[test]
    fn questions_are_bounded_and_answered_once_from_their_own_namespace() {
        let (out, mut queues) = Outbox::new();
        let questions = Rc::new(Questions::new(Rc::new(out)));
        let open: Vec<Question> = (0..MAX_OPEN).filter_map(|_| questions.open()).collect();
        assert_eq!(open.len(), MAX_OPEN);
        assert!(questions.open().is_none(), "bounded");
        let first = &open[0];
        assert!(first.raw_id.starts_with(b"\"thoth:approval:"));
        drop(open);
        let mut q = questions.open().expect("slots free again once dropped");
        let key = super::super::calls::id_key(&q.raw_id);
        questions.answered(&key, b"{\"answer\":1}");
        questions.answered(&key, b"{\"answer\":2}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        assert_eq!(
            rt.block_on(q.answer()).as_deref(),
            Some(&b"{\"answer\":1}"[..])
        );
        assert!(!q.waiting());
        drop(q);
        let unanswered = questions.open().expect("open");
        let id = unanswered.raw_id.clone();
        drop(unanswered);
        let mut told = Vec::new();
        while let Ok(frame) = queues.to_client.try_recv() {
            told.push(frame);
        }
        assert_eq!(
            told.len(),
            1 + MAX_OPEN,
            "each unanswered question is cancelled once"
        );
        let last = told.last().map(|f| String::from_utf8_lossy(f).into_owned());
        assert!(
            last.is_some_and(|f| f.contains("notifications/cancelled")
                && f.contains(&*String::from_utf8_lossy(&id))),
        );
    }

    #[test]
    fn what_a_stateless_call_brings_back_reads_one_way_only() {
        let frame = |params: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t",{params}}}}}"#
            )
        };
        let of = |params: &str| Back::of(frame(params).as_bytes());
        assert!(matches!(of(r#""arguments":{}"#), Back::Nothing));
        assert!(matches!(
            of(r#""requestState":"server-state""#),
            Back::Servers
        ));
        assert!(matches!(
            of(r#""requestState":"thoth:approval:ab""#),
            Back::Ours(_)
        ));
        assert!(matches!(
            of(r#""request\u0053tate":"thoth\u003aapproval:ab""#),
            Back::Ours(_)
        ));
        // Two readings: refused, whichever would win.
        for twice in [
            r#""requestState":"thoth:approval:ab","requestState":"other""#,
            r#""requestState":"other","requestState":"thoth:approval:ab""#,
            r#""requestState":"other","request\u0053tate":"x""#,
            r#""requestState":"thoth:approval:ab","inputResponses":{"thoth.approval":{"action":"decline","action":"accept"}}"#,
        ] {
            assert!(matches!(of(twice), Back::Unreadable), "{twice}");
        }
        // Not thoth's, not one reading either: the server's business.
        assert!(matches!(
            of(r#""requestState":"a","requestState":"b""#),
            Back::Servers
        ));
    }

    #[test]
    fn an_approved_stateless_call_admits_a_few_of_the_server_s_own_rounds() {
        let (out, _queues) = Outbox::new();
        let questions = Questions::new(Rc::new(out));
        let key = [3u8; 32];
        assert!(!questions.continuation(&key));
        questions.approved(key);
        for _ in 0..CONTINUATIONS {
            assert!(questions.continuation(&key));
        }
        assert!(!questions.continuation(&key), "bounded");
        assert!(!questions.continuation(&[4u8; 32]), "bound to the call");
    }

    #[test]
    fn a_stateless_token_is_bound_to_its_call_and_used_once() {
        let (out, _queues) = Outbox::new();
        let questions = Questions::new(Rc::new(out));
        let key = [7u8; 32];
        let token = questions
            .issue(key, Duration::from_secs(60))
            .expect("issued");
        assert!(token.starts_with(STATE_PREFIX));
        let approve = json!({ "inputResponses": { INPUT_KEY: { "action": "accept", "content": { "decision": "approve" } } } });
        assert_eq!(
            questions.retry(&token, &[8u8; 32], &approve),
            Retry::OtherCall
        );
        assert_eq!(
            questions.retry(&token, &key, &approve),
            Retry::Expired,
            "used up"
        );
        let token = questions
            .issue(key, Duration::from_secs(60))
            .expect("issued");
        assert_eq!(
            questions.retry(&token, &key, &approve),
            Retry::Answered(Answer::Approved)
        );
        let token = questions
            .issue(key, Duration::from_secs(60))
            .expect("issued");
        assert_eq!(
            questions.retry(&token, &key, &json!({})),
            Retry::Answered(Answer::Unanswered)
        );
        let token = questions.issue(key, Duration::ZERO).expect("issued");
        assert_eq!(questions.retry(&token, &key, &approve), Retry::Expired);
    }
}
