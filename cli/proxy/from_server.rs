//! Server → client: only JSON-RPC messages reach the client's stdout, each as its
//! canonical line, and nothing else but the replies thoth writes between lines.
//!
//! Each server line gets the lax check of `thoth_core::lax` (one JSON value of
//! JSON-RPC shape; lone `\u` surrogates pass, for the client's parser to judge; bytes
//! that are not UTF-8 fail). A line up to 4 MiB is held until complete, checked, scanned for
//! bookkeeping (answered requests, the tools/list inventory) and relayed, or diverted
//! whole to stderr when it fails (a banner, a log line, `{not json`). A longer line is
//! checked on its first 4 MiB before any of it is relayed, then streamed and checked
//! piece by piece: if it turns out not to be a message, it is cut off (the line is
//! ended, so the client's reader is never left mid-line), the rest goes nowhere, and
//! the client gets an error for the request it answered. A partial last line when the
//! server exits is diverted, never completed with a `\n`. Relayed lines have raw CRs
//! written as spaces and raw U+2028, U+2029 and U+0085 as `\u` escapes (the same
//! value), so a universal-newline client such as the Python SDK reads the same
//! messages. Diverted, cut and rewritten lines are counted. While a streamed line is
//! unfinished, replies wait (they would corrupt the line).

use serde_json::json;
use thoth_core::{LaxLine, LineRewriter, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::answers;
use super::calls::{CatalogEvent, SharedBook, book, id_key, is_own_key};

/// A searcher for a needle looked for in every server line, built once: building one
/// per search costs more than searching a small line.
type Needle = std::sync::LazyLock<memchr::memmem::Finder<'static>>;
static METHOD: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\"method\""));
static ESCAPE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\\u"));
static ELICITATIONS: Needle = Needle::new(|| memchr::memmem::Finder::new(b"elicitations"));
static INPUT_REQUESTS: Needle = Needle::new(|| memchr::memmem::Finder::new(b"inputRequests"));
static LIST_CHANGED: Needle = Needle::new(|| memchr::memmem::Finder::new(b"list_changed"));
static TOOLS: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\"tools\""));

/// What the relay applies to the server's lines: the tools the client is not shown,
/// who decides the server's requests, what to do with what answers carry.
pub type Judges = (
    Option<std::sync::Arc<super::hide::HideRule>>,
    Option<std::sync::Arc<super::server_asks::ServerAsks>>,
    Option<crate::inspect::actions::ResultActions>,
);

/// Lines up to this size are held whole and scanned.
pub const SCAN_LIMIT: usize = 4 * 1024 * 1024;
/// Bytes read from the server at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes of a diverted line kept for the log.
const DIVERT_LOG_LIMIT: usize = 4096;
/// Bytes of a streamed line's id kept for the error that follows a cut.
const MAX_ID_BYTES: usize = 256;
/// Bytes of a streamed (longer than [`SCAN_LIMIT`]) watched response kept for the
/// catalog at most: a listing longer than this is relayed and not read.
pub const MAX_STREAMED_LISTING: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Only whitespace so far.
    Start,
    /// A line held until it ends (or outgrows the scan limit).
    Held,
    /// A line too long to hold, checked and relayed as it arrives.
    Streaming,
    /// Not a JSON-RPC message: going to stderr.
    Diverted,
    /// A streamed line cut off: the rest of it is dropped.
    Cut,
}

/// Splits the server's stdout into relayed lines and diverted ones.
pub struct Relay {
    /// Scan relayed lines for responses (only worth it while requests are in flight).
    pub scan_responses: bool,
    /// Response ids whose whole line is wanted (tools/list for the catalog and the
    /// inventory, initialize for the protocol revision).
    pub capture: std::collections::HashSet<String>,
    /// The book's `watch_generation` that `capture` was copied at.
    pub capture_generation: u64,
    line: Line,
    held: Vec<u8>,
    /// Bytes of the current line seen so far (for diverted and cut lines).
    line_len: usize,
    scan_limit: usize,
    /// The lax check and the rewriter of a streamed line, and its id when known.
    lax: LaxLine,
    rewriter: LineRewriter,
    streamed_id: Option<Vec<u8>>,
    /// A streamed piece ended in a CR not relayed yet.
    cr_pending: bool,
    /// Which listed tools the client is not shown (`super::hide`).
    pub hide: Option<std::sync::Arc<super::hide::HideRule>>,
    /// The streamed line as relayed, when it answers a watched request (the catalog
    /// reads it at its end), within [`MAX_STREAMED_LISTING`].
    captured: Option<Vec<u8>>,
    /// Who decides the server's requests to the client (`super::server_asks`).
    pub asks: Option<std::sync::Arc<super::server_asks::ServerAsks>>,
    /// What to do with what the detectors find in answers (`super::result_inspection`).
    pub inspect: Option<crate::inspect::actions::ResultActions>,
    /// The server's requests waiting for the client's answer (as of this chunk).
    pub server_pending: usize,
    /// A line waiting for the enforcer's decisions, and what came after it.
    paused: Option<Box<Paused>>,
    deferred: Vec<u8>,
}

/// What the relay found in a chunk, besides the bytes for stdout.
#[derive(Debug, Default)]
pub struct Found {
    /// Ids of responses seen (normalised keys).
    pub answered: Vec<String>,
    /// Lines that are not JSON-RPC messages (text, escaped and truncated for the log).
    pub diverted: Vec<String>,
    /// Streamed lines cut off (why, for the log).
    pub cut: Vec<String>,
    /// Canonical-line substitutions in relayed lines.
    pub rewrites: thoth_core::Rewrites,
    /// Whole lines answering an id in [`Relay::capture`], and tool-list changes, in
    /// the order the server wrote them.
    pub watched: Vec<Watched>,
    /// Tools left out of the listings relayed.
    pub hidden: Vec<super::hide::Hidden>,
    /// The server's requests judged (relayed or refused), for the audit log and the
    /// server's answers.
    pub asked: Vec<super::server_asks::Judged>,
    /// Id keys of the server's requests relayed to the client.
    pub server_requests: Vec<String>,
    /// Id keys of the server's requests it cancelled.
    pub server_cancelled: Vec<String>,
    /// What the detectors found in answers, and what was done.
    pub inspections: Vec<super::result_inspection::Inspection>,
}

/// What becomes of a server line the relay judged.
#[derive(Debug)]
enum Pass {
    /// Relayed as it is.
    Relay,
    /// Not relayed (the server is answered).
    Drop,
    /// Not relayed: the client gets these bytes (an error for its request) instead.
    Instead(Vec<u8>),
    /// Held until the enforcer has answered what it asks the client.
    Pause(Box<Paused>),
}

/// A line held while the enforcer decides the requests for the client in it (remote
/// mode): nothing after it is relayed before it is settled, so the order of the
/// server's lines is kept.
#[derive(Debug)]
pub struct Paused {
    /// The line (set by the relay once it pauses).
    line: Vec<u8>,
    /// A request of the server's (its raw id), or an answer carrying requests for the
    /// client (the raw id of the client's request).
    inside: bool,
    raw_id: Vec<u8>,
    judged: Vec<super::server_asks::Judged>,
    questions: std::collections::VecDeque<super::server_asks::Question>,
}

impl Paused {
    fn new(inside: bool, raw_id: &[u8], judgements: Vec<super::server_asks::Judgement>) -> Self {
        let mut paused = Self {
            line: Vec::new(),
            inside,
            raw_id: raw_id.to_vec(),
            judged: Vec::new(),
            questions: std::collections::VecDeque::new(),
        };
        for judgement in judgements {
            match judgement {
                super::server_asks::Judgement::Now(judged) => paused.judged.push(*judged),
                super::server_asks::Judgement::Ask(question) => {
                    paused.questions.push_back(*question)
                }
            }
        }
        paused
    }
}

/// The errors for each answer of a batch withheld whole, as one array.
fn batch_blocked(batch: &thoth_core::Batch<'_>, error: &[u8]) -> Option<Vec<u8>> {
    let detections = serde_json::from_slice::<serde_json::Value>(error)
        .ok()
        .and_then(|v| v.pointer("/error/data/detections").cloned());
    let mut errors = Vec::new();
    for element in batch.elements().flatten() {
        if let Message::Response(r) = element {
            let one = answers::error(
                Some(r.id().raw),
                answers::BLOCKED,
                "Blocked by Thoth: the server's answer carries what it may not",
                Some(&json!({ "reason": "content_blocked", "detections": detections })),
            );
            errors.push(one);
        }
    }
    // (A batch without answers has no one to answer.)
    if errors.is_empty() {
        return None;
    }
    let mut array = b"[".to_vec();
    array.extend(errors.join(&b","[..]));
    array.push(b']');
    Some(array)
}

/// Writes thoth's answer to the client in place of a server line.
fn write_instead(answer: &[u8], out: &mut Vec<u8>, found: &mut Found) {
    let rewrites = thoth_core::write_canonical(answer, |piece| out.extend_from_slice(piece));
    found.rewrites.add(rewrites);
    out.push(b'\n');
}

/// Whether a response line may carry requests for the client (`result.inputRequests`,
/// `error.data.elicitations`, their names maybe escaped): found without parsing lines
/// that cannot.
fn may_ask_inside(line: &[u8]) -> bool {
    INPUT_REQUESTS.find(line).is_some()
        || ELICITATIONS.find(line).is_some()
        || (ESCAPE.find(line).is_some() && {
            let mut lax = thoth_core::LaxLine::new();
            lax.feed(line).is_ok() && lax.may_ask()
        })
}

/// A line that may ask the client something but that thoth cannot read as clients do
/// (it passed the lax check, so this is a limit such as nesting): not relayed while
/// server requests are governed (fail closed), diverted to stderr.
fn unreadable(asks: &super::server_asks::ServerAsks, line: &[u8], found: &mut Found) -> Pass {
    if !asks.blocks() {
        return Pass::Relay;
    }
    found
        .diverted
        .push(shown(line, line.len(), "not readable as clients read it"));
    Pass::Drop
}

/// A line read as JavaScript's `JSON.parse` and Python's `json` read it: the last of a
/// member named twice, a lone surrogate as U+FFFD.
fn read_as_clients(line: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(line)
        .or_else(|_| serde_json::from_slice(&crate::catalog::without_lone_surrogates(line)))
        .ok()
}

/// The requests for the client inside one response — the input requests of a result
/// (`result.inputRequests`), the URL elicitations of an error
/// (`error.data.elicitations`) — judged; the client's error for request `raw_id` when
/// one is refused. A response to thoth's own request is never relayed, so it is not
/// judged.
fn asked_inside(
    asks: &super::server_asks::ServerAsks,
    response: &serde_json::Value,
    raw_id: &[u8],
    found: &mut Found,
) -> Pass {
    if is_own_key(&id_key(raw_id)) {
        return Pass::Relay;
    }
    let input_requests = response
        .get("result")
        .and_then(|r| r.get("inputRequests"))
        .and_then(serde_json::Value::as_object);
    let elicitations = response
        .get("error")
        .and_then(|e| e.get("data"))
        .and_then(|d| d.get("elicitations"))
        .and_then(serde_json::Value::as_array);
    if input_requests.is_none() && elicitations.is_none() {
        return Pass::Relay;
    }
    // (A line with both is no JSON-RPC answer, but each client picks one: both count.)
    let mut judgements = input_requests
        .map(|requests| asks.judge_input_requests(requests, raw_id))
        .unwrap_or_default();
    if let Some(elicitations) = elicitations {
        judgements.extend(asks.judge_url_elicitations(elicitations, raw_id));
    }
    let paused = Paused::new(true, raw_id, judgements);
    if !paused.questions.is_empty() {
        return Pass::Pause(Box::new(paused));
    }
    let mut judged = paused.judged;
    let answer = super::server_asks::embedded_answer(raw_id, &mut judged);
    found.asked.extend(judged);
    match answer {
        Some(answer) => {
            found.answered.push(id_key(raw_id));
            Pass::Instead(answer)
        }
        None => Pass::Relay,
    }
}

/// A line the client side wants to know about.
#[derive(Debug, PartialEq, Eq)]
pub enum Watched {
    /// A response to a watched request: its id key and its whole line.
    Response { key: String, line: Vec<u8> },
    /// `notifications/tools/list_changed`.
    ToolsChanged,
    /// A response to a watched request, too long to hold (streamed): not read.
    TooLong { key: String },
    /// A long response whose id thoth could not read, while a listing was awaited.
    Unknown,
}

impl Relay {
    pub fn new(scan_limit: usize) -> Self {
        Self {
            scan_responses: true,
            capture: std::collections::HashSet::new(),
            capture_generation: 0,
            line: Line::Start,
            held: Vec::new(),
            line_len: 0,
            scan_limit,
            lax: LaxLine::new(),
            rewriter: LineRewriter::new(),
            streamed_id: None,
            cr_pending: false,
            hide: None,
            captured: None,
            asks: None,
            inspect: None,
            server_pending: 0,
            paused: None,
            deferred: Vec::new(),
        }
    }

    /// The next request the enforcer must decide before the relay goes on (remote
    /// mode); the pump asks it and hands the decision to [`Relay::decided`].
    pub fn next_question(&mut self) -> Option<super::server_asks::Question> {
        self.paused.as_mut()?.questions.pop_front()
    }

    /// The enforcer's decision about `question`: once every question of the paused line
    /// is decided, the line is settled (relayed, refused or answered with an error) and
    /// what came after it is fed on (which may pause again).
    pub fn decided(
        &mut self,
        question: super::server_asks::Question,
        decision: crate::enforce::Decision,
        out: &mut Vec<u8>,
        found: &mut Found,
    ) {
        let Some(asks) = self.asks.clone() else {
            return;
        };
        let Some(paused) = self.paused.as_mut() else {
            return;
        };
        paused.judged.push(asks.conclude(question, decision));
        if !paused.questions.is_empty() {
            return;
        }
        let Some(paused) = self.paused.take() else {
            return;
        };
        let Paused {
            line,
            inside,
            raw_id,
            mut judged,
            ..
        } = *paused;
        let relay = if inside {
            let answer = super::server_asks::embedded_answer(&raw_id, &mut judged);
            found.asked.extend(judged);
            match answer {
                Some(answer) => {
                    found.answered.push(id_key(&raw_id));
                    write_instead(&answer, out, found);
                    false
                }
                None => true,
            }
        } else {
            let refused = judged.iter().any(|j| j.refusal.is_some());
            found.asked.extend(judged);
            if !refused {
                self.server_pending += 1;
                found.server_requests.push(id_key(&raw_id));
            }
            !refused
        };
        if relay {
            let scanned =
                (self.scan_responses || self.inspect.is_some()).then(|| thoth_core::scan(&line));
            self.relay_judged(&line, scanned.as_ref(), out, found);
        }
        let rest = std::mem::take(&mut self.deferred);
        self.feed(&rest, out, found);
    }

    /// True while a streamed line is unfinished (nothing else may be written).
    pub fn mid_line(&self) -> bool {
        self.line == Line::Streaming
    }

    /// Feeds a chunk; bytes for the client are appended to `out`. While a line waits
    /// for the enforcer ([`Relay::next_question`]), the rest is kept for later.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        while !data.is_empty() {
            if self.paused.is_some() {
                self.deferred.extend_from_slice(data);
                return;
            }
            let (segment, rest, ends) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            // A whole line inside the chunk is judged in place, without holding it.
            if ends && self.line == Line::Start && segment.len() <= self.scan_limit {
                self.whole_line(segment, out, found);
                data = rest;
                continue;
            }
            self.segment(segment, out, found);
            if ends {
                self.end_line(out, found);
            }
            data = rest;
        }
    }

    /// End of stream: a partial last line is diverted (or, streamed, cut off). (The
    /// pump settles a held line before it reads on, so none is held here.)
    pub fn finish(&mut self, out: &mut Vec<u8>, found: &mut Found) {
        debug_assert!(self.paused.is_none(), "finish while a line is held");
        match self.line {
            Line::Start => {}
            Line::Held => {
                let held = std::mem::take(&mut self.held);
                found
                    .diverted
                    .push(shown(&held, held.len(), "partial last line"));
            }
            // A whole value that only lacks its `\n` ends as any line does.
            Line::Streaming => self.end_line(out, found),
            Line::Diverted => found.diverted.push(shown(&self.held, self.line_len, "")),
            Line::Cut => {}
        }
        self.reset();
    }

    /// A line that arrived whole in one chunk.
    fn whole_line(&mut self, line: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Whitespace before a line's value is not kept (as blank lines are not).
        if let Some(first) = line.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r')) {
            self.relay_or_divert(&line[first..], out, found);
        }
    }

    /// Relays a complete line that passes the lax check, else diverts it.
    fn relay_or_divert(&mut self, line: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        if thoth_core::check_line(line).is_err() {
            found.diverted.push(shown(line, line.len(), ""));
            return;
        }
        // (`\u` too: a member name may be escaped, `"\u006dethod"`. An input request
        // inside a result has a `method` too; URL elicitations inside an error do not.)
        let maybe_request = self.asks.is_some()
            && (METHOD.find(line).is_some()
                || ESCAPE.find(line).is_some()
                || INPUT_REQUESTS.find(line).is_some()
                || ELICITATIONS.find(line).is_some());
        // One scan serves both the server's requests and the bookkeeping of responses.
        let scanned = (maybe_request || self.scan_responses || self.inspect.is_some())
            .then(|| thoth_core::scan(line));
        if maybe_request && let Some(message) = &scanned {
            match self.server_request(line, message, found) {
                Pass::Relay => {}
                // Refused: the server gets the answer, the client never sees it.
                Pass::Drop => return,
                // A result the client must not read: it gets an error for its request.
                Pass::Instead(answer) => return write_instead(&answer, out, found),
                Pass::Pause(mut paused) => {
                    paused.line = line.to_vec();
                    self.paused = Some(paused);
                    return;
                }
            }
        }
        self.relay_judged(line, scanned.as_ref(), out, found);
    }

    /// Relays a line judged fit for the client: its bookkeeping first, then the line
    /// as the client reads it (a listing without the hidden tools, the canonical line).
    fn relay_judged(
        &mut self,
        line: &[u8],
        scanned: Option<&Result<Message<'_>, thoth_core::Error>>,
        out: &mut Vec<u8>,
        found: &mut Found,
    ) {
        let watched = found.watched.len();
        if self.scan_responses
            && let Some(message) = scanned
            && bookkeeping(line, message, &self.capture, found)
        {
            // The answer to one of thoth's own requests: read, never relayed.
            return;
        }
        // A listing the client asked for: the catalog reads it whole (above), the
        // client gets it without the tools it may never call.
        let rewritten = match &self.hide {
            Some(rule) if found.watched.len() > watched => {
                super::hide::without_hidden(line, rule.as_ref())
            }
            _ => None,
        };
        let line = match &rewritten {
            Some((shown, hidden)) => {
                found.hidden.extend(hidden.iter().cloned());
                shown.as_slice()
            }
            None => line,
        };
        // What the answer carries, inspected when set to: recorded, redacted or withheld.
        let inspected;
        // (A line the strict reader refuses but clients read — a lone surrogate, a
        // member twice — is an answer to inspect all the same.)
        let lax_id;
        let line = match (&self.inspect, scanned) {
            (
                Some(actions),
                Some(read @ (Ok(Message::Response(_) | Message::Batch(_)) | Err(_))),
            ) => {
                let raw_id: &[u8] = match read {
                    Ok(Message::Response(r)) => r.id().raw,
                    Err(_) => {
                        lax_id = read_as_clients(line)
                            .and_then(|v| v.get("id").map(|id| id.to_string().into_bytes()))
                            .unwrap_or_else(|| b"null".to_vec());
                        &lax_id
                    }
                    _ => b"null",
                };
                let (verdict, record) = super::result_inspection::inspect(line, raw_id, actions);
                found.inspections.extend(record);
                match verdict {
                    super::result_inspection::Verdict::AsIs => line,
                    super::result_inspection::Verdict::Redacted(bytes) => {
                        inspected = bytes;
                        inspected.as_slice()
                    }
                    super::result_inspection::Verdict::Blocked(error) => {
                        let error = match read {
                            // Each answer of a batch is withheld, each with its error.
                            Ok(Message::Batch(batch)) => batch_blocked(batch, &error),
                            _ => Some(error),
                        };
                        if let Some(error) = error {
                            write_instead(&error, out, found);
                        }
                        return;
                    }
                }
            }
            _ => line,
        };
        // A notification the client pump must hear of (found without scanning lines
        // that cannot be one).
        if LIST_CHANGED.find(line).is_some() && is_tools_list_changed(line) {
            found.watched.push(Watched::ToolsChanged);
        }
        let rewrites = thoth_core::write_canonical(line, |piece| out.extend_from_slice(piece));
        found.rewrites.add(rewrites);
        out.push(b'\n');
    }

    /// A server → client request or notification, or a result carrying input
    /// requests: judged, counted and bounded.
    fn server_request(
        &mut self,
        line: &[u8],
        message: &Result<Message<'_>, thoth_core::Error>,
        found: &mut Found,
    ) -> Pass {
        let Some(asks) = self.asks.clone() else {
            return Pass::Relay;
        };
        match message {
            Ok(Message::Request(call)) => {
                let raw = call.id().map_or(&b"null"[..], |id| id.raw);
                let method = crate::enforce::methods::SERVER_REQUESTS
                    .iter()
                    .copied()
                    .find(|m| call.method().eq_str(m));
                self.one_request(&asks, method, raw, call.params().map(|p| p.of(line)), found)
            }
            Ok(Message::Response(response)) if may_ask_inside(line) => {
                match read_as_clients(line) {
                    Some(value) => asked_inside(&asks, &value, response.id().raw, found),
                    None => unreadable(&asks, line, found),
                }
            }
            Ok(Message::Notification(call)) if call.method().eq_str("notifications/cancelled") => {
                let request = call
                    .params()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p.of(line)).ok())
                    .and_then(|p| p.get("requestId").map(|id| id.to_string()));
                if let Some(key) = request {
                    found.server_cancelled.push(id_key(key.as_bytes()));
                }
                Pass::Relay
            }
            Ok(Message::Response(_) | Message::Notification(_)) => Pass::Relay,
            // A batch, or a line the strict reader refuses (a member twice, a lone
            // surrogate, an odd id) that clients still read: judged as they read it.
            Ok(Message::Batch(_)) | Err(_) => self.as_clients_read_it(&asks, line, found),
        }
    }

    /// Judges one server request.
    fn one_request(
        &mut self,
        asks: &super::server_asks::ServerAsks,
        method: Option<&'static str>,
        raw: &[u8],
        params: Option<&[u8]>,
        found: &mut Found,
    ) -> Pass {
        if is_own_key(&id_key(raw)) {
            // The client's answer would be taken for the answer to thoth's own
            // question (and a server that learnt a question's id could answer it).
            found
                .asked
                .push(super::server_asks::ServerAsks::reserved_id(
                    method.unwrap_or("request"),
                    raw,
                ));
            return Pass::Drop;
        }
        if self.server_pending >= super::calls::MAX_PENDING && asks.blocks() {
            found.asked.push(super::server_asks::ServerAsks::too_many(
                method.unwrap_or("request"),
                raw,
                super::calls::MAX_PENDING,
            ));
            return Pass::Drop;
        }
        match method.and_then(|m| asks.judge(m, raw, params)) {
            Some(super::server_asks::Judgement::Now(judged)) => {
                let refused = judged.refusal.is_some();
                found.asked.push(*judged);
                if refused {
                    return Pass::Drop;
                }
            }
            Some(ask @ super::server_asks::Judgement::Ask(_)) => {
                return Pass::Pause(Box::new(Paused::new(false, raw, vec![ask])));
            }
            None => {}
        }
        self.server_pending += 1;
        found.server_requests.push(id_key(raw));
        Pass::Relay
    }

    /// A line the strict scan does not classify as one message, read as JavaScript's
    /// `JSON.parse` and Python's `json` read it (the last of a member named twice; a
    /// lone surrogate as U+FFFD): a governed request in it is judged, and the input
    /// requests of a result; a batch holding a governed request or a refused input
    /// request is refused whole (each of its requests answered to the server, each of
    /// its responses answered to the client with an error), since its elements cannot
    /// be relayed apart.
    fn as_clients_read_it(
        &mut self,
        asks: &super::server_asks::ServerAsks,
        line: &[u8],
        found: &mut Found,
    ) -> Pass {
        let Some(value) = read_as_clients(line) else {
            return unreadable(asks, line, found);
        };
        let governed = |v: &serde_json::Value| {
            v.get("method")
                .and_then(serde_json::Value::as_str)
                .and_then(|m| {
                    crate::enforce::methods::SERVER_REQUESTS
                        .iter()
                        .copied()
                        .find(|s| *s == m)
                })
                .filter(|_| v.get("id").is_some())
        };
        let id_of = |v: &serde_json::Value| {
            v.get("id")
                .map_or_else(|| b"null".to_vec(), |id| id.to_string().into_bytes())
        };
        let is_response =
            |v: &serde_json::Value| v.get("method").is_none() && v.get("id").is_some();
        // A request in thoth's own id namespace is never relayed (see `one_request`).
        let own = |v: &serde_json::Value| {
            v.get("method").is_some() && v.get("id").is_some_and(|id| is_own_key(&id.to_string()))
        };
        match &value {
            serde_json::Value::Array(elements) => {
                let mut refused_input = false;
                for element in elements.iter().filter(|e| is_response(e)) {
                    let judged = asked_inside(asks, element, &id_of(element), found);
                    refused_input |= !matches!(judged, Pass::Relay);
                }
                let own_id = elements.iter().any(own);
                if !own_id
                    && (!(refused_input || elements.iter().any(|e| governed(e).is_some()))
                        || !asks.blocks())
                {
                    return Pass::Relay;
                }
                for element in elements
                    .iter()
                    .filter(|e| e.get("method").is_some() && e.get("id").is_some())
                {
                    found
                        .asked
                        .push(super::server_asks::ServerAsks::refused_batch(
                            governed(element).unwrap_or("request"),
                            &id_of(element),
                        ));
                }
                // The client still gets an answer for each of its requests.
                let errors: Vec<serde_json::Value> = elements
                    .iter()
                    .filter(|e| is_response(e))
                    .filter_map(|e| {
                        let raw = id_of(e);
                        found.answered.push(id_key(&raw));
                        let answer = answers::error(
                            Some(&raw),
                            answers::BLOCKED,
                            "thoth did not relay a batch of the server's holding a request it refused",
                            Some(&json!({ "reason": "batch_refused" })),
                        );
                        serde_json::from_slice(&answer).ok()
                    })
                    .collect();
                match errors.is_empty() {
                    true => Pass::Drop,
                    false => {
                        Pass::Instead(serde_json::Value::Array(errors).to_string().into_bytes())
                    }
                }
            }
            one => match governed(one) {
                Some(method) => {
                    let params = one.get("params").map(|p| p.to_string().into_bytes());
                    self.one_request(asks, Some(method), &id_of(one), params.as_deref(), found)
                }
                None if is_response(one) => asked_inside(asks, one, &id_of(one), found),
                None if own(one) => self.one_request(asks, None, &id_of(one), None, found),
                None => Pass::Relay,
            },
        }
    }

    fn segment(&mut self, mut seg: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        if self.line == Line::Start {
            // Whitespace before a line's value is not kept (as blank lines are not).
            match seg.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r')) {
                Some(first) => {
                    seg = &seg[first..];
                    self.line = Line::Held;
                }
                None => return,
            }
        }
        self.line_len = self.line_len.saturating_add(seg.len());
        match self.line {
            Line::Start | Line::Held if self.held.len() + seg.len() <= self.scan_limit => {
                self.held.extend_from_slice(seg);
            }
            Line::Start | Line::Held => self.start_streaming(seg, out, found),
            Line::Streaming => match self.lax.feed(seg) {
                // A member that makes the line a request of the server's, or a result
                // carrying input requests, only now: it is cut before that member, and
                // both sides get an error (the client never reads the line whole).
                Ok(()) if self.lax.may_ask() && self.governs_asks() => {
                    let _ = self.rewriter.finish(|piece| out.extend_from_slice(piece));
                    out.push(b'\n');
                    found.cut.push(format!(
                        "a request of the server's, or input requests, after {} bytes",
                        self.line_len
                    ));
                    let id = self.streamed_id.take();
                    self.refuse_unjudged(id, out, found);
                }
                Ok(()) => self.stream_out(seg, out),
                Err(e) => self.cut(out, found, e.kind.as_str()),
            },
            Line::Diverted => {
                let room = DIVERT_LOG_LIMIT.saturating_sub(self.held.len());
                self.held.extend_from_slice(&seg[..seg.len().min(room)]);
            }
            Line::Cut => {}
        }
    }

    /// The held bytes and `seg` outgrow the scan limit: the held bytes are checked
    /// before anything of the line is relayed, then the line streams.
    fn start_streaming(&mut self, seg: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        let held = std::mem::take(&mut self.held);
        self.lax = LaxLine::new();
        if self
            .lax
            .feed(&held)
            .and_then(|()| self.lax.feed(seg))
            .is_err()
        {
            // Nothing was relayed: the whole line goes to stderr.
            self.held = held;
            self.held.truncate(DIVERT_LOG_LIMIT);
            self.line = Line::Diverted;
            return;
        }
        self.streamed_id = self
            .lax
            .id_span()
            .filter(|(start, end)| end - start <= MAX_ID_BYTES)
            .and_then(|(start, end)| {
                let mut id = held
                    .get(start.min(held.len())..end.min(held.len()))?
                    .to_vec();
                let from_seg = start.saturating_sub(held.len())..end.saturating_sub(held.len());
                id.extend_from_slice(seg.get(from_seg)?);
                Some(id)
            });
        if self.lax.may_ask() && self.governs_asks() {
            // Possibly a request of the server's (or a result carrying input requests),
            // too long to judge whole: nothing of it is relayed.
            let id = self.streamed_id.take();
            self.refuse_unjudged(id, out, found);
            return;
        }
        if self
            .streamed_id
            .as_ref()
            .is_some_and(|id| is_own_key(&id_key(id)))
        {
            // An answer to thoth's own request, too long to read: it never reaches the
            // client (the rest of the line is dropped; thoth's wait ends at its deadline).
            self.streamed_id = None;
            self.line = Line::Cut;
            return;
        }
        if self.inspect.is_some_and(|a| a.acts()) {
            // Too long to inspect whole while a class is to be redacted or blocked:
            // not relayed (fail closed); the client gets an error for its request.
            let id = self.streamed_id.take();
            let error = super::result_inspection::too_long(id.as_deref());
            write_instead(&error, out, found);
            if let Some(id) = &id {
                found.answered.push(id_key(id));
            }
            tracing::warn!(
                "withheld an answer of the server's longer than {} MiB: too long to inspect while --inspect-results redacts or blocks",
                self.scan_limit / (1024 * 1024)
            );
            self.line = Line::Cut;
            return;
        }
        self.rewriter = LineRewriter::new();
        self.cr_pending = false;
        // A watched answer (a long tools/list page) is kept as the client reads it.
        // While a listing is awaited, any long response is kept too: its id may be
        // written another way than the request's (see `bookkeeping`).
        self.captured =
            (!self.capture.is_empty()).then(|| Vec::with_capacity(held.len() + seg.len()));
        out.reserve(held.len() + seg.len());
        let start = out.len();
        self.rewriter
            .feed(&held, |piece| out.extend_from_slice(piece));
        self.keep_captured(out, start);
        self.stream_out(seg, out);
        self.line = Line::Streaming;
    }

    /// Whether some request of the server's can be refused.
    fn governs_asks(&self) -> bool {
        self.asks.as_ref().is_some_and(|a| a.governs_any())
    }

    /// A line too long to judge whole that may ask the client something: neither side
    /// is left waiting — the client gets an error for the id, the server too — and the
    /// rest of the line goes nowhere.
    fn refuse_unjudged(&mut self, id: Option<Vec<u8>>, out: &mut Vec<u8>, found: &mut Found) {
        let raw = id.as_deref().unwrap_or(b"null");
        let mut judged = super::server_asks::ServerAsks::refused_long(raw);
        // Ids are the sender's: a request's id is answered to the server (when it has
        // one), a response's to the client; never the other way round.
        if !self.lax.may_be_call() || id.is_none() {
            judged.refusal = None;
        }
        found.asked.push(judged);
        if self.lax.may_be_call() {
            self.captured = None;
            self.line = Line::Cut;
            return;
        }
        let answer = answers::error(
            id.as_deref(),
            answers::INTERNAL,
            "thoth did not relay a server line too long to judge",
            Some(&json!({ "reason": "server_line_too_long_to_judge" })),
        );
        found
            .rewrites
            .add(thoth_core::write_canonical(&answer, |piece| {
                out.extend_from_slice(piece)
            }));
        out.push(b'\n');
        if let Some(id) = &id {
            found.answered.push(id_key(id));
        }
        self.captured = None;
        self.line = Line::Cut;
    }

    /// Adds what was relayed of a watched streamed line since `start` to its capture,
    /// or gives the capture up once it outgrows [`MAX_STREAMED_LISTING`].
    fn keep_captured(&mut self, out: &[u8], start: usize) {
        if let Some(captured) = self.captured.as_mut() {
            let piece = out.get(start..).unwrap_or_default();
            if captured.len() + piece.len() > MAX_STREAMED_LISTING {
                self.captured = None;
            } else {
                captured.extend_from_slice(piece);
            }
        }
    }

    /// Relays a piece of a streamed line. A CR at its end waits for the next piece: it
    /// may be the line's terminator (`\r\n`), which is not relayed.
    fn stream_out(&mut self, seg: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.stream_piece(seg, out);
        self.keep_captured(out, start);
    }

    fn stream_piece(&mut self, seg: &[u8], out: &mut Vec<u8>) {
        if std::mem::take(&mut self.cr_pending) && !seg.is_empty() {
            self.rewriter
                .feed(b"\r", |piece| out.extend_from_slice(piece));
        }
        let seg = match seg.strip_suffix(b"\r") {
            Some(rest) => {
                self.cr_pending = true;
                rest
            }
            None => seg,
        };
        self.rewriter
            .feed(seg, |piece| out.extend_from_slice(piece));
    }

    /// Ends a streamed line that is not a message: the client's reader gets the end of
    /// the line, then an error for the request the line answered (null when unknown).
    fn cut(&mut self, out: &mut Vec<u8>, found: &mut Found, why: &str) {
        let _ = self.rewriter.finish(|piece| out.extend_from_slice(piece));
        out.push(b'\n');
        let id = self.streamed_id.take();
        if let Some(id) = &id {
            found.answered.push(id_key(id));
        }
        let answer = answers::error(
            id.as_deref(),
            answers::INTERNAL,
            "thoth cut off a server line that is not a JSON-RPC message",
            Some(&json!({ "reason": "server_line_invalid", "detail": why })),
        );
        found
            .rewrites
            .add(thoth_core::write_canonical(&answer, |piece| {
                out.extend_from_slice(piece)
            }));
        out.push(b'\n');
        found
            .cut
            .push(format!("{why} after {} bytes", self.line_len));
        self.line = Line::Cut;
    }

    fn end_line(&mut self, out: &mut Vec<u8>, found: &mut Found) {
        match self.line {
            Line::Start => {}
            Line::Held => {
                let held = std::mem::take(&mut self.held);
                let line = held.strip_suffix(b"\r").unwrap_or(&held);
                self.relay_or_divert(line, out, found);
                self.held = held;
            }
            Line::Streaming => match self.lax.finish() {
                Ok(()) => {
                    let start = out.len();
                    let rewrites = self.rewriter.finish(|piece| out.extend_from_slice(piece));
                    self.keep_captured(out, start);
                    found.rewrites.add(rewrites);
                    out.push(b'\n');
                    // A long response whose id was not in its first 4 MiB, while a
                    // listing is awaited: it may be that listing, unread.
                    let key = self.streamed_id.take().map(|id| id_key(&id));
                    let watched = key.as_ref().is_some_and(|k| self.capture.contains(k));
                    match (self.captured.take(), watched) {
                        (Some(line), true) => found.watched.push(Watched::Response {
                            key: key.clone().unwrap_or_default(),
                            line,
                        }),
                        (None, true) => found.watched.push(Watched::TooLong {
                            key: key.clone().unwrap_or_default(),
                        }),
                        // Not the awaited id, but a tools list all the same.
                        (Some(line), false) if answers_with_tools(&line) => {
                            found.watched.push(Watched::Response {
                                key: key.clone().unwrap_or_default(),
                                line,
                            });
                        }
                        // Too long to keep, or without a readable id, while a listing
                        // is awaited: it may be that listing, unread.
                        (None, false) if !self.capture.is_empty() => {
                            found.watched.push(Watched::Unknown);
                        }
                        _ => {}
                    }
                    // Too long to scan, but its id was read: the request is answered.
                    if let Some(key) = key {
                        found.answered.push(key);
                    }
                }
                Err(e) => self.cut(out, found, e.kind.as_str()),
            },
            Line::Diverted => found.diverted.push(shown(&self.held, self.line_len, "")),
            Line::Cut => {}
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.line = Line::Start;
        self.held.clear();
        if self.held.capacity() > 64 * 1024 {
            self.held = Vec::new();
        }
        self.line_len = 0;
        self.streamed_id = None;
        self.captured = None;
    }
}

/// A diverted line for the log: its first bytes, control characters escaped (a line
/// from the server cannot forge a log line), and its length when it was cut.
fn shown(bytes: &[u8], len: usize, label: &str) -> String {
    let head = bytes
        .get(..bytes.len().min(DIVERT_LOG_LIMIT))
        .unwrap_or_default();
    let mut text: String = String::from_utf8_lossy(head)
        .trim()
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if len > head.len() {
        text.push_str(&format!("… ({len} bytes)"));
    }
    if !label.is_empty() {
        text = format!("{label}: {text}");
    }
    text
}

/// What the relay writes to the client for `output` from the server, read in
/// `chunk`-byte pieces, holding lines up to `scan_limit` bytes (for tests and the
/// fuzz target; replies from thoth are not part of it).
pub fn relay_bytes(output: &[u8], chunk: usize, scan_limit: usize) -> Vec<u8> {
    let mut relay = Relay::new(scan_limit);
    let (mut out, mut found) = (Vec::new(), Found::default());
    for piece in output.chunks(chunk.max(1)) {
        relay.feed(piece, &mut out, &mut found);
    }
    relay.finish(&mut out, &mut found);
    out
}

/// Appends one of thoth's own frames as its canonical line (it carries client bytes).
fn canonical_reply(frame: &[u8], out: &mut Vec<u8>, found: &mut Found) {
    let rewrites = thoth_core::write_canonical(frame, |piece| out.extend_from_slice(piece));
    found.rewrites.add(rewrites);
}

/// The protocol revision of an initialize response, and the server's name in it
/// (bounded: it is shown to the user in thoth's questions).
fn protocol_of(line: &[u8]) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let result = v.get("result")?;
    let version = result.get("protocolVersion")?.as_str()?;
    let name = result
        .get("serverInfo")
        .and_then(|i| i.get("name"))
        .and_then(serde_json::Value::as_str)
        .map(|n| n.chars().take(128).collect());
    // A revision is a date; anything longer is not one.
    (version.len() <= 32).then(|| (version.to_string(), name))
}

/// Whether a line is the server's `notifications/tools/list_changed`.
fn is_tools_list_changed(line: &[u8]) -> bool {
    matches!(
        thoth_core::scan(line),
        Ok(Message::Notification(call)) if call.method().eq_str("notifications/tools/list_changed")
    )
}

/// Notes the responses in a line; true when the line answers one of thoth's own
/// requests (ids in `calls::OWN_ID_PREFIX`'s namespace), which the client never sees.
fn bookkeeping(
    line: &[u8],
    message: &Result<Message<'_>, thoth_core::Error>,
    capture: &std::collections::HashSet<String>,
    found: &mut Found,
) -> bool {
    let mut wanted = Vec::new();
    let mut own = false;
    let mut note = |m: &Message<'_>| {
        if let Message::Response(r) = m {
            let key = id_key(r.id().raw);
            if capture.contains(&key) {
                wanted.push(key.clone());
            }
            found.answered.push(key);
        }
    };
    match message {
        Ok(Message::Batch(b)) => b.elements().flatten().for_each(|m| note(&m)),
        Ok(m) => {
            own = matches!(m, Message::Response(r) if is_own_key(&id_key(r.id().raw)));
            note(m);
        }
        Err(_) => {}
    }
    // A response with a tools list that matches no watched request — its id written
    // another way (`"1"` or `1.0` for 1, which a JavaScript client takes for its
    // request), or unasked — may be the listing the client shows: the catalog reads
    // it, and it is hidden from as a listing is.
    if wanted.is_empty()
        && !own
        && !capture.is_empty()
        && TOOLS.find(line).is_some()
        && answers_with_tools(line)
    {
        wanted.push(found.answered.last().cloned().unwrap_or_default());
    }
    for key in wanted {
        found.watched.push(Watched::Response {
            key,
            line: line.to_vec(),
        });
    }
    own
}

/// Whether a response line (or a batch of them) carries `result.tools` as an array.
fn answers_with_tools(line: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
        return false;
    };
    let has = |v: &serde_json::Value| v.pointer("/result/tools").is_some_and(|t| t.is_array());
    match &value {
        serde_json::Value::Array(items) => items.iter().any(has),
        one => has(one),
    }
}

/// Relays the server's stdout and thoth's replies to the client's stdout until the
/// server's stdout has ended and every reply sender is gone.
pub async fn pump(
    shared: SharedBook,
    (hide, asks, inspect): Judges,
    mut from_server: impl AsyncRead + Unpin,
    mut replies: mpsc::Receiver<Vec<u8>>,
    mut stdout: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut relay = Relay::new(SCAN_LIMIT);
    relay.hide = hide;
    relay.asks = asks;
    relay.inspect = inspect;
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut server_open = true;
    let mut replies_open = true;
    while server_open || replies_open {
        let mut found = Found::default();
        tokio::select! {
            biased;
            read = from_server.read(&mut chunk), if server_open => {
                match read {
                    Ok(0) | Err(_) => {
                        server_open = false;
                        relay.finish(&mut out, &mut found);
                        let mut state = book(&shared);
                        state.server_eof = true;
                        state.server_eof_signal.notify_one();
                    }
                    Ok(n) => {
                        let state = book(&shared);
                        relay.server_pending = state.server_pending.len();
                        relay.scan_responses = !state.in_flight.is_empty()
                            || !state.tools_list.is_empty()
                            || !state.initialize.is_empty();
                        if relay.capture_generation != state.watch_generation {
                            relay.capture = state
                                .tools_list
                                .iter()
                                .chain(&state.initialize)
                                .cloned()
                                .collect();
                            relay.capture_generation = state.watch_generation;
                        }
                        drop(state);
                        relay.feed(chunk.get(..n).unwrap_or_default(), &mut out, &mut found)
                    }
                }
            }
            reply = replies.recv(), if replies_open && !relay.mid_line() => {
                match reply {
                    Some(frame) => {
                        // thoth's own frames carry client bytes (ids, progress tokens,
                        // tool names): they are canonical lines too.
                        canonical_reply(&frame, &mut out, &mut found);
                        // Drain what is already queued into the same write.
                        while out.len() < 64 * 1024 {
                            match replies.try_recv() {
                                Ok(more) => canonical_reply(&more, &mut out, &mut found),
                                Err(_) => break,
                            }
                        }
                    }
                    None => replies_open = false,
                }
            }
        }
        settle(&shared, &mut found, &mut out, &mut stdout).await?;
        // A line the enforcer must judge holds the relay: nothing after it goes out
        // before it is settled.
        let paused = relay.paused.is_some();
        if paused {
            book(&shared).relay_paused = true;
        }
        while let Some(question) = relay.next_question() {
            let decision = match relay.asks.clone() {
                Some(asks) => asks.ask(&question).await,
                None => crate::enforce::Decision::new(
                    crate::enforce::Verdict::Block,
                    "the enforcer could not be asked",
                ),
            };
            relay.decided(question, decision, &mut out, &mut found);
            settle(&shared, &mut found, &mut out, &mut stdout).await?;
        }
        if paused {
            let mut state = book(&shared);
            state.relay_paused = false;
            state.server_eof_signal.notify_one();
        }
    }
    Ok(())
}

/// What the relay found goes to the book (before the lines reach the client: a call it
/// sends on reading a listing is checked against that listing), then the lines to the
/// client.
async fn settle(
    shared: &SharedBook,
    found: &mut Found,
    out: &mut Vec<u8>,
    stdout: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<()> {
    if !found.answered.is_empty()
        || !found.diverted.is_empty()
        || !found.cut.is_empty()
        || !found.rewrites.is_empty()
        || !found.watched.is_empty()
        || !found.hidden.is_empty()
        || !found.asked.is_empty()
        || !found.server_requests.is_empty()
        || !found.server_cancelled.is_empty()
        || !found.inspections.is_empty()
    {
        let mut state = book(shared);
        // Before the lines reach the client: a call it sends on reading a listing
        // is checked against that listing.
        for watched in found.watched.drain(..) {
            match watched {
                Watched::Response { key, line } if state.initialize.contains(&key) => {
                    if let Some((version, name)) = protocol_of(&line) {
                        state.protocol_version = Some(version);
                        state.server_name = name;
                    }
                }
                Watched::Response { line, .. } => {
                    state.catalog_event(CatalogEvent::Page(line));
                }
                Watched::ToolsChanged => state.catalog_event(CatalogEvent::Changed),
                Watched::TooLong { key } if state.tools_list.contains(&key) => {
                    state.catalog_event(CatalogEvent::Unread);
                    tracing::warn!(
                        "a tools/list response longer than {} MiB was relayed but not read: its tools are decided as not listed (resource.in_catalog == false), their arguments unchecked",
                        MAX_STREAMED_LISTING / (1024 * 1024)
                    );
                }
                Watched::TooLong { .. } => {}
                Watched::Unknown => state.catalog_event(CatalogEvent::Unread),
            }
        }
        for key in found.answered.drain(..) {
            if is_own_key(&key) {
                state.own_answered.notify_waiters();
            }
            state.in_flight.remove(&key);
            if state.tools_list.remove(&key) | state.initialize.remove(&key) {
                state.watch_generation += 1;
            }
        }
        for inspection in found.inspections.drain(..) {
            if state.inspections.len() < super::calls::MAX_SERVER_ASKED {
                state.inspections.push(inspection);
            } else {
                state.server_asked_unrecorded += 1;
            }
            state.catalog_signal.notify_one();
        }
        for key in found.server_cancelled.drain(..) {
            state.server_pending.remove(&key);
        }
        state.server_pending.extend(found.server_requests.drain(..));
        if !found.asked.is_empty() {
            for mut judged in found.asked.drain(..) {
                if let Some(answer) = judged.refusal.take() {
                    // (A server that never reads its answers cannot grow them
                    // without bound: past the bound it is not answered.)
                    if state.server_answers.len() < super::calls::MAX_SERVER_ASKED {
                        state.server_answers.push(answer);
                    }
                }
                if state.server_asked.len() >= super::calls::MAX_SERVER_ASKED {
                    state.server_asked.remove(0);
                    state.server_asked_unrecorded += 1;
                }
                state.server_asked.push(judged);
            }
            state.catalog_signal.notify_one();
        }
        state.tools_hidden += found.hidden.len() as u64;
        for hidden in found.hidden.drain(..) {
            state.catalog_event(CatalogEvent::Hidden(hidden));
        }
        state.diverted_lines += found.diverted.len() as u64;
        state.cut_lines += found.cut.len() as u64;
        state
            .server_rewrites
            .add(std::mem::take(&mut found.rewrites));
    }
    for text in found.diverted.drain(..) {
        tracing::warn!(target: "server", "a line on the server's stdout is not a JSON-RPC message (diverted to stderr): {text}");
    }
    for why in found.cut.drain(..) {
        tracing::warn!(target: "server", "cut off a streamed server line that is not a JSON-RPC message ({why}); the client was sent an error");
    }
    if !out.is_empty() {
        stdout.write_all(out).await?;
        stdout.flush().await?;
        out.clear();
        if out.capacity() > 1024 * 1024 {
            *out = Vec::with_capacity(64 * 1024);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_all(chunks: &[&[u8]], limit: usize) -> (Vec<u8>, Found) {
        let mut r = Relay::new(limit);
        let (mut out, mut found) = (Vec::new(), Found::default());
        for c in chunks {
            r.feed(c, &mut out, &mut found);
        }
        r.finish(&mut out, &mut found);
        (out, found)
    }

    const OK: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;

    /// A relay whose server may ask for sampling without tools, and nothing more.
    fn governing(limit: usize) -> Relay {
        let path = std::env::temp_dir().join(format!("thoth-asks-{}.cedar", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            "permit (principal, action == Thoth::Action::\"sampling/createMessage\", resource) when { resource.tools.isEmpty() };",
        )
        .unwrap();
        let engine = crate::enforce::local::LocalEngine::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut relay = Relay::new(limit);
        relay.asks = Some(std::sync::Arc::new(
            super::super::server_asks::ServerAsks::new(
                Some(std::sync::Arc::new(engine)),
                false,
                "agent",
                "tenant",
                "user",
                crate::domain::Environment::Dev,
                crate::domain::Mode::Block,
                "",
                "session",
            ),
        ));
        relay
    }

    /// What decides whether the server may ask the client something comes late in a
    /// line too long to hold: the line is cut before it, and both sides are answered.
    #[test]
    fn asking_members_late_in_a_streamed_line_cut_it() {
        let tools = r#"[{"name":"rm"}]"#;
        let pad = "p".repeat(64);
        let lines = [
            format!(
                r#"{{"jsonrpc":"2.0","id":"r1","params":{{"pad":"{pad}","messages":[],"tools":{tools}}},"method":"sampling/createMessage"}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":"c1","result":{{"pad":"{pad}","inputRequests":{{"x":{{"method":"sampling/createMessage","params":{{"messages":[],"tools":{tools}}}}}}}}}}}"#
            ),
        ];
        for line in &lines {
            for chunk in [7, 16, 40] {
                let mut relay = governing(32);
                let (mut out, mut found) = (Vec::new(), Found::default());
                for piece in format!("{line}\n").as_bytes().chunks(chunk) {
                    relay.feed(piece, &mut out, &mut found);
                }
                relay.finish(&mut out, &mut found);
                let text = String::from_utf8_lossy(&out);
                // What went out before the member is a line no client can read.
                for shown in text.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(shown) {
                        assert!(
                            v.get("method").is_none() && v.get("result").is_none(),
                            "{text}"
                        );
                        assert!(v.get("error").is_some(), "{text}");
                    }
                }
                assert_eq!(found.asked.len(), 1, "{text}");
                assert_eq!(found.cut.len(), 1, "{text}");
            }
        }
        // Held whole, a result whose input requests are allowed is relayed as it is.
        let allowed = br#"{"jsonrpc":"2.0","id":"c2","result":{"resultType":"input_required","inputRequests":{"x":{"method":"sampling/createMessage","params":{"messages":[]}}}}}"#;
        let mut relay = governing(1024);
        let (mut out, mut found) = (Vec::new(), Found::default());
        relay.feed(&[&allowed[..], b"\n"].concat(), &mut out, &mut found);
        assert_eq!(out, [&allowed[..], b"\n"].concat());
        assert_eq!(found.asked.len(), 1);
        assert_eq!(found.asked[0].input_key.as_deref(), Some("x"));
    }

    #[test]
    fn only_messages_are_relayed() {
        // (server output, relayed, diverted lines)
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"Server v1 starting\n", b"", 1),
            (b"[INFO] server started\n", b"", 1),
            (b"{not json\n", b"", 1),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\rPROGRESS 50%\n",
                b"",
                1,
            ),
            (b"{\"level\":\"info\",\"msg\":\"up\"}\n", b"", 1),
            (b"  [1]\n\n   \n", b"", 1),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"n\"}", b"", 1),
            (b"\n \r\n\t\n", b"", 0),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n",
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n",
                0,
            ),
            (
                b"  {\"jsonrpc\":\"2.0\",\r\"method\":\"n\"}\n",
                b"{\"jsonrpc\":\"2.0\", \"method\":\"n\"}\n",
                0,
            ),
            (
                "{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"t\":\"a\u{2028}b\"}}\n"
                    .as_bytes(),
                b"{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"t\":\"a\\u2028b\"}}\n",
                0,
            ),
            (
                b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\\ud800\"}]\n",
                b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\\ud800\"}]\n",
                0,
            ),
        ];
        for (input, want, diverted) in cases {
            for limit in [8, 1024] {
                for chunk in [1, 3, input.len().max(1)] {
                    let pieces: Vec<&[u8]> = input.chunks(chunk).collect();
                    let (out, found) = relay_all(&pieces, limit);
                    let text = String::from_utf8_lossy(input);
                    if limit == 8 && !want.is_empty() {
                        // Streamed: the same bytes, checked as they pass.
                        assert_eq!(out, *want, "{text:?} limit {limit} chunk {chunk}");
                    } else if limit == 1024 {
                        assert_eq!(out, *want, "{text:?} chunk {chunk}");
                        assert_eq!(found.diverted.len(), *diverted, "{text:?}");
                    }
                    assert!(!found.diverted.iter().any(|t| t.contains('\r')), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn long_lines_stream_without_being_held() {
        let mut r = Relay::new(8);
        let (mut out, mut found) = (Vec::new(), Found::default());
        r.feed(
            b"{\"jsonrpc\":\"2.0\",\"a\":\"0123456789",
            &mut out,
            &mut found,
        );
        assert!(r.mid_line());
        assert_eq!(out, b"{\"jsonrpc\":\"2.0\",\"a\":\"0123456789");
        out.clear();
        r.feed(b"abc\"}\n", &mut out, &mut found);
        r.feed(OK, &mut out, &mut found);
        r.feed(b"\n", &mut out, &mut found);
        assert!(!r.mid_line());
        assert_eq!(out, [&b"abc\"}\n"[..], OK, b"\n"].concat());
        assert!(r.held.capacity() <= 64 * 1024);
        assert!(found.diverted.is_empty() && found.cut.is_empty());
    }

    #[test]
    fn a_long_line_that_breaks_is_cut_off_and_answered() {
        for tail in [&b"\"} trailing words\n"[..], b"\x01\"}\n", b"\"", b"\"}]\n"] {
            let mut r = Relay::new(8);
            let (mut out, mut found) = (Vec::new(), Found::default());
            r.feed(
                br#"{"jsonrpc":"2.0","id":"q7","result":"0123456789"#,
                &mut out,
                &mut found,
            );
            r.feed(tail, &mut out, &mut found);
            r.feed(OK, &mut out, &mut found);
            r.feed(b"\n", &mut out, &mut found);
            r.finish(&mut out, &mut found);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert!(
                lines[0].starts_with(r#"{"jsonrpc":"2.0","id":"q7","result":"0123456789"#),
                "{tail:?}"
            );
            let error: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
            assert_eq!(error["id"], "q7");
            assert_eq!(error["error"]["code"], -32603);
            assert_eq!(found.cut.len(), 1);
            assert_eq!(found.answered.first().map(String::as_str), Some(r#""q7""#));
            if tail.ends_with(b"\n") {
                assert_eq!(lines[2].as_bytes(), OK, "the next line is relayed");
            }
        }
    }

    /// The error thoth writes after a cut is a frame thoth writes: its canonical line too,
    /// even when the id it copies from the server holds a raw U+2028.
    #[test]
    fn the_answer_to_a_cut_line_is_a_canonical_line() {
        let mut r = Relay::new(8);
        let (mut out, mut found) = (Vec::new(), Found::default());
        r.feed(
            "{\"jsonrpc\":\"2.0\",\"id\":\"a\u{2028}b\",\"result\":\"0123456789".as_bytes(),
            &mut out,
            &mut found,
        );
        r.feed(b"\x01\"}\n", &mut out, &mut found);
        assert_eq!(found.cut.len(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']),
            "{text:?}"
        );
        let error: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(error["id"], "a\u{2028}b");
    }

    #[test]
    fn a_long_line_that_is_not_a_message_is_never_relayed() {
        let mut r = Relay::new(8);
        let (mut out, mut found) = (Vec::new(), Found::default());
        r.feed(
            b"{\"level\":\"info\",\"msg\":\"a long log line\"}\n",
            &mut out,
            &mut found,
        );
        r.feed(b"[1, 2, 3, 4, 5, 6, 7]\n", &mut out, &mut found);
        assert!(out.is_empty());
        assert_eq!(found.diverted.len(), 2);
    }

    /// A listing answered under an id written another way than the request's (which
    /// a JavaScript client takes for its own) is read for the catalog all the same,
    /// held or streamed; a long line without a readable id while a listing is awaited
    /// is reported as possibly unread.
    #[test]
    fn listings_under_another_spelling_of_the_id_are_still_read() {
        let listing = |id: &str, pad: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"x","description":"{}"}}]}}}}"#,
                "p".repeat(pad)
            )
        };
        for (line, limit) in [
            (listing("\"1\"", 0), 1 << 20),
            (listing("1.0", 0), 1 << 20),
            (listing("\"1\"", 4096), 1024),
        ] {
            let mut r = Relay::new(limit);
            r.capture.insert("1".to_string());
            let (mut out, mut found) = (Vec::new(), Found::default());
            r.feed(format!("{line}\n").as_bytes(), &mut out, &mut found);
            assert!(
                matches!(found.watched.as_slice(), [Watched::Response { .. }]),
                "{:?}",
                found.watched
            );
        }
        // The id after the part that is scanned: unknown, so the catalog is told.
        let late = format!(
            r#"{{"jsonrpc":"2.0","result":{{"tools":[],"pad":"{}"}},"id":1}}"#,
            "p".repeat(4096)
        );
        let mut r = Relay::new(1024);
        r.capture.insert("1".to_string());
        let (mut out, mut found) = (Vec::new(), Found::default());
        r.feed(format!("{late}\n").as_bytes(), &mut out, &mut found);
        assert!(
            found
                .watched
                .iter()
                .any(|w| matches!(w, Watched::Response { .. } | Watched::Unknown)),
            "{:?}",
            found.watched
        );
        // Nothing awaited: nothing watched.
        let (_, found) = relay_all(&[format!("{}\n", listing("\"1\"", 0)).as_bytes()], 1 << 20);
        assert!(found.watched.is_empty());
    }
}
