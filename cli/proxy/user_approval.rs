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
/// Characters of the arguments' summary shown to the user at most.
const SUMMARY_CHARS: usize = 600;
/// Characters of the tool name, the server name and the reason shown at most.
const NAME_CHARS: usize = 200;
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
}

/// How a stateless retry's approval reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The token is thoth's and unknown, expired or used: the approval is gone.
    Expired,
    /// The token was issued for another call (other tool or arguments).
    OtherCall,
    /// The retry's answer to thoth's question.
    Answered(Answer),
}

/// The session's open questions.
pub struct Questions {
    open: RefCell<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    issued: RefCell<HashMap<String, Issued>>,
    /// Where a question dropped unanswered is cancelled.
    out: Rc<Outbox>,
}

impl Questions {
    pub fn new(out: Rc<Outbox>) -> Self {
        Self {
            open: RefCell::default(),
            issued: RefCell::default(),
            out,
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
        let answer = params
            .get("inputResponses")
            .and_then(|r| r.get(INPUT_KEY))
            .map(|result| {
                // Read as a response carrying it, the way a stateful answer is read.
                let response = json!({ "result": result }).to_string();
                Answer::of(response.as_bytes(), true)
            })
            .unwrap_or(Answer::Unanswered);
        Retry::Answered(answer)
    }
}

/// A stateless retry bringing back thoth's `requestState`: the token, and the call's
/// params (where the answer is).
pub struct BroughtBack {
    pub token: String,
    pub params: Value,
}

impl BroughtBack {
    /// The token a tools/call frame brings back, if it is thoth's (found without
    /// parsing a frame that cannot hold one: the key may be written with escapes).
    pub fn of(frame: &[u8]) -> Option<Self> {
        type Needle = std::sync::LazyLock<memchr::memmem::Finder<'static>>;
        static STATE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"requestState"));
        static ESCAPE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\\u"));
        if STATE.find(frame).is_none() && ESCAPE.find(frame).is_none() {
            return None;
        }
        let params = params_of(frame)?;
        let token = params.get("requestState")?.as_str()?.to_string();
        token
            .starts_with(STATE_PREFIX)
            .then_some(Self { token, params })
    }
}

fn params_of(frame: &[u8]) -> Option<Value> {
    let Ok(thoth_core::Message::Request(call)) = thoth_core::scan(frame) else {
        return None;
    };
    serde_json::from_slice(call.params()?.of(frame)).ok()
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
/// revision has modes, 2025-11-25 and later).
pub fn form_params(asked: &Asked<'_>, with_mode: bool) -> Value {
    let server = asked.server.map_or_else(
        || "this MCP server".to_string(),
        |s| format!("the MCP server {}", shown(s, NAME_CHARS)),
    );
    let message = format!(
        "thoth: the tool {} of {server} waits for your approval.\nWhy: {}\nArguments: {}\nApprove this one call?",
        shown(asked.tool, NAME_CHARS),
        shown(asked.reason, NAME_CHARS),
        summary(asked.arguments),
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
    params
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

/// The stateless answer to a call: `input_required`, with thoth's question and token.
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

/// The arguments as one line of at most [`SUMMARY_CHARS`] characters, every
/// character a reader would not see written as an escape.
pub fn summary(arguments: Option<&Value>) -> String {
    match arguments {
        None => "(too large to show)".into(),
        Some(Value::Object(map)) if map.is_empty() => "(none)".into(),
        Some(args) => shown(&args.to_string(), SUMMARY_CHARS),
    }
}

/// `text` bounded to `max` characters (an ellipsis says when it was cut), with
/// control, line-breaking and invisible characters written as `\u{…}`: what the user
/// reads is what the call carries.
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    for (count, c) in text.chars().enumerate() {
        if count == max {
            out.push('…');
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
    out.answer_client(request(&question.raw_id, params)).await;
    let deadline = Instant::now() + wait.hold;
    let mut step = 0u64;
    loop {
        if let Some(token) = progress_token {
            out.answer_client(super::answers::progress(token, step, WAITING))
                .await;
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
        assert_eq!(shown("abcdef", 3), "abc…");
        let long = json!({ "text": "x".repeat(5000) });
        assert!(summary(Some(&long)).chars().count() <= SUMMARY_CHARS + 1);
        assert_eq!(summary(Some(&json!({}))), "(none)");
        assert_eq!(summary(None), "(too large to show)");
        let params = form_params(
            &Asked {
                tool: "send\u{200B}mail",
                server: Some("mail"),
                reason: "mail leaves the company",
                arguments: Some(&json!({ "to": "a@b.example" })),
            },
            true,
        );
        let message = params["message"].as_str().unwrap_or_default();
        assert!(message.contains("send\\u{200B}mail"), "{message}");
        assert!(message.contains("a@b.example"), "{message}");
        assert_eq!(params["mode"], "form");
        assert!(
            form_params(
                &Asked {
                    tool: "t",
                    server: None,
                    reason: "r",
                    arguments: None
                },
                false
            )
            .get("mode")
            .is_none()
        );
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
