//! Client → server: every frame is scanned by thoth-core before anything reaches the
//! server.
//!
//! Frames other than `tools/call` are forwarded byte for byte (terminated by `\n`).
//! Invalid frames are answered (-32700 / -32600 / -32602) and never forwarded. A
//! tools/call notification is dropped (no response could carry a denial). A tools/call
//! request is decided before anything of it reaches the server: at once with the local
//! engine (an allowed call then leaves from the read buffer like any frame, in order),
//! or in a task of its own with the remote enforcer, so a slow decision never stalls
//! other traffic; `notifications/cancelled` for a call still pending resolves it
//! without forwarding anything. A batch is decided element by element: allowed
//! elements go to the server as one batch, the errors come back as one array. What a
//! decision means for the call is `super::decide::action`'s one rule in every case.
//!
//! Every forwarded frame is written as its canonical line (`thoth_core::canon`): raw
//! CRs become spaces and raw U+2028, U+2029, U+0085 become `\u` escapes, so a server
//! that splits lines on more than `\n` still reads the one frame that was decided. The
//! value never changes; each substitution is counted (and audited at session end).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{Value, json};
use thoth_core::{Call, FrameStep, LineFramer, Message, Span, ToolCall};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::answers;
use super::calls::{CatalogEvent, MAX_PENDING, Pending, ProxyState, id_key};
use super::checks::{self, Refusal};
use super::decide::{Action, Answering, CallFrame, Engine, Session, action, decide, input};
use super::hold::{self, Held, Holds};
use super::outbox::{Outbox, Queues};
use super::user_approval::{self, Answer, Modes, Questions};
use crate::audit::{AuditLog, Record};
use crate::catalog::Catalog;
use crate::domain::Mode;
use crate::domain::PinState;
use crate::enforce::local::LocalEngine;
use crate::enforce::modes::{Decided, observe, too_large};
use crate::enforce::{Decision, ToolFacts, Verdict};
use crate::settings::RunSettings;
use crate::telemetry::{Telemetry, event};

/// Undecided calls at which the client pump lets decisions run first.
const YIELD_AT_DECIDING: usize = 32;

/// Bytes read from the client at a time (at least).
const READ_CHUNK: usize = 64 * 1024;

/// What the client pump and its decision tasks share (all on one thread). The relay
/// sees only the book in `calls`, the server writer only its queue, holds only
/// [`Holds`].
pub struct Ctx {
    pub settings: RunSettings,
    pub engine: Engine,
    pub session: RefCell<Session>,
    /// Calls pending a decision, and the book shared with the relay.
    pub calls: RefCell<ProxyState>,
    pub audit: AuditLog,
    pub out: Rc<Outbox>,
    /// Step-up holds (remote engine only).
    pub holds: Option<Rc<Holds>>,
    /// Telemetry events, when configured; taken at shutdown to flush them.
    pub telemetry: RefCell<Option<Telemetry>>,
    /// The GovAPI agent, when configured; taken at shutdown to flush it.
    pub gov: RefCell<Option<crate::govapi::Handle>>,
    /// The server's tools as this session listed them (fed by the relay's book).
    pub catalog: RefCell<Catalog>,
    /// The protocol revision the server answered initialize with.
    pub protocol: RefCell<Option<String>>,
    /// The server has answered initialize (thoth may then ask it itself).
    pub initialized: std::cell::Cell<bool>,
    /// thoth listed the server's tools itself (once per session).
    pub own_listing_done: std::cell::Cell<bool>,
    /// A stateless (2026-07-28) session's envelope, from its first request that has
    /// one while no initialize was answered: the revision, and what thoth's own
    /// requests carry.
    pub envelope: RefCell<Option<super::envelope::Envelope>>,
    /// The client sent initialize (its session is not stateless).
    pub initialize_sent: std::cell::Cell<bool>,
    /// The elicitation modes the client declared in initialize.
    pub client_modes: std::cell::Cell<Modes>,
    /// thoth's open questions to the user (`super::user_approval`).
    pub questions: Rc<Questions>,
    /// The server's name (`serverInfo.name` of its initialize answer), for questions.
    pub server_name: RefCell<Option<String>>,
    /// OTLP export, when configured; taken at shutdown to flush it.
    pub otlp: RefCell<Option<crate::otlp::Otlp>>,
}

impl Ctx {
    /// A session's shared state, and the queues its pumps drain.
    pub fn new(
        settings: RunSettings,
        engine: Engine,
        session: Session,
        audit: AuditLog,
    ) -> (Rc<Self>, Queues) {
        let (out, queues) = Outbox::new();
        let out = Rc::new(out);
        let questions = Rc::new(Questions::new(out.clone()));
        let holds = match &engine {
            Engine::Remote(remote) => Some(Rc::new(Holds::new(
                settings.step_up_poll,
                settings.step_up_hold,
                remote.clone(),
                out.clone(),
                questions.clone(),
            ))),
            Engine::Local(_) => None,
        };
        let ctx = Rc::new(Self {
            settings,
            engine,
            session: RefCell::new(session),
            calls: RefCell::new(ProxyState::default()),
            audit,
            out,
            holds,
            telemetry: RefCell::new(None),
            gov: RefCell::new(None),
            catalog: RefCell::new(Catalog::default()),
            protocol: RefCell::new(None),
            initialized: std::cell::Cell::new(false),
            own_listing_done: std::cell::Cell::new(false),
            envelope: RefCell::new(None),
            initialize_sent: std::cell::Cell::new(false),
            client_modes: std::cell::Cell::new(Modes::default()),
            questions,
            server_name: RefCell::new(None),
            otlp: RefCell::new(None),
        });
        (ctx, queues)
    }

    /// Queues a telemetry event (never waits).
    pub fn emit(&self, kind: &str, tool: &str, decision: Option<&Decision>) {
        if let Some(t) = self.telemetry.borrow().as_ref() {
            let session = self.session.borrow().id.clone();
            t.emit(event(kind, &self.settings, &session, tool, decision));
        }
    }

    /// An audit event record (`"event":name`), mirrored to OTLP when it is on.
    pub fn audit_event(&self, name: &'static str, fields: serde_json::Map<String, Value>) {
        if let Some(otlp) = self.otlp.borrow().as_ref() {
            otlp.send(crate::otlp::Item::Log {
                time_unix_nano: crate::otlp::now_unix_nano(),
                name: format!("thoth.{name}"),
                attributes: fields
                    .iter()
                    // What may quote a call's arguments stays in the local audit log:
                    // targets (URIs hold paths and queries), reasons and details (a
                    // schema refusal quotes the value it refused).
                    .filter(|(k, _)| !OTLP_WITHHELD.contains(&k.as_str()))
                    .map(|(k, v)| (format!("thoth.{k}"), v.clone()))
                    .collect(),
                trace: None,
            });
        }
        self.audit.event(name, fields);
    }

    /// The trace a call's decision continues: the client's `_meta.traceparent`, else a
    /// fresh one when OTLP export is on (else none), with the call's own span id.
    pub fn call_trace(&self, frame: &[u8]) -> Option<CallTrace> {
        let exporting = self.otlp.borrow().is_some();
        if !exporting && matches!(self.engine, Engine::Local(_)) {
            // Nothing would read it.
            return None;
        }
        let client = crate::otlp::TraceContext::of_call(frame);
        match (client, exporting) {
            // Not exported: the enforcer continues the client's span itself.
            (Some(context), false) => context.parent.map(|span| CallTrace { context, span }),
            (Some(context), true) => Some(CallTrace {
                context,
                span: crate::otlp::span_id(),
            }),
            (None, true) => Some(CallTrace {
                context: crate::otlp::TraceContext::fresh(),
                span: crate::otlp::span_id(),
            }),
            (None, false) => None,
        }
    }

    /// Queues one of thoth's own frames for the client.
    pub async fn answer_client(&self, frame: Vec<u8>) {
        self.out.answer_client(frame).await;
    }
}

/// Audit fields never mirrored to OTLP (they may quote what a call carries).
const OTLP_WITHHELD: [&str; 7] = [
    "target",
    "reason",
    "detail",
    "url",
    "uri",
    "arguments",
    "message",
];

/// A call's place in a trace: the trace, and the call's own span.
#[derive(Debug, Clone, Copy)]
pub struct CallTrace {
    pub context: crate::otlp::TraceContext,
    pub span: [u8; 8],
}

/// Reads the client's stdin until EOF.
///
/// Frames forwarded as they are stay where they were read: the buffer is compacted in
/// place (nothing moves while every frame is forwarded and ends in a bare `\n`) and
/// handed to the server writer whole, with only the unfinished last line copied into
/// the next buffer. A pass-through byte is thus copied by the kernel alone.
pub async fn pump(ctx: Rc<Ctx>, mut input: impl AsyncRead + Unpin) -> std::io::Result<()> {
    let mut framer = LineFramer::new(ctx.settings.max_frame_bytes);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        let n = input.read_buf(&mut buf).await?;
        // `buf[..kept]` is for the server; `buf[start..]` is not handled yet.
        let mut kept = 0;
        let mut start = 0;
        loop {
            let rest = buf.get(start..).unwrap_or_default();
            let step = if n == 0 {
                framer.finish(rest)
            } else {
                framer.step(rest)
            };
            match step {
                FrameStep::Frame { frame, consumed } => {
                    let frame = Span::new(start + frame.start, start + frame.end);
                    let rewrite = thoth_core::needs_rewrite(frame.of(&buf));
                    if rewrite
                        && thoth_core::canonical_len(frame.of(&buf)) > ctx.settings.max_frame_bytes
                    {
                        // Its canonical line would outgrow the limit the server is promised.
                        ctx.answer_client(canonical_too_large(
                            frame.of(&buf),
                            ctx.settings.max_frame_bytes,
                        ))
                        .await;
                        start += consumed;
                        if n == 0 {
                            break;
                        }
                        continue;
                    }
                    match route(&ctx, frame.of(&buf)) {
                        Route::Forward => {
                            kept = forward(&ctx, &mut buf, kept, frame, rewrite).await
                        }
                        Route::Done => {}
                        Route::Reply(answer) => ctx.answer_client(answer).await,
                        Route::ToolCall { raw_id, call } => {
                            // (This also reads what the relay queued for the catalog.)
                            let fetch = call
                                .as_ref()
                                .is_ok_and(|tc| fetch_due(&ctx, tc.name.as_str()));
                            if fetch {
                                // thoth's own tools/list must not overtake what was read before.
                                flush_kept(&ctx, &buf, &mut kept).await;
                            }
                            match tools_call(&ctx, frame.of(&buf), rewrite, raw_id, call, fetch)
                                .await
                            {
                                AfterCall::Done => {}
                                // In order with what came before, without a copy.
                                AfterCall::ForwardFrame => {
                                    kept = forward(&ctx, &mut buf, kept, frame, rewrite).await;
                                }
                                AfterCall::Send(mut bytes) => {
                                    flush_kept(&ctx, &buf, &mut kept).await;
                                    bytes.push(b'\n');
                                    ctx.out.send_server(bytes).await;
                                }
                            }
                        }
                        Route::Ask {
                            raw_id,
                            call,
                            params,
                        } => {
                            // What was read before it goes first; nothing after it
                            // overtakes it.
                            flush_kept(&ctx, &buf, &mut kept).await;
                            match ask_enforcer(&ctx, &raw_id, &call, &params).await {
                                Some(answer) => ctx.answer_client(answer).await,
                                None => {
                                    let key = id_key(&raw_id);
                                    ctx.calls.borrow_mut().forwarded(key, &raw_id);
                                    kept = forward(&ctx, &mut buf, kept, frame, rewrite).await;
                                }
                            }
                        }
                        Route::Batch => {
                            // What was read before it goes first.
                            flush_kept(&ctx, &buf, &mut kept).await;
                            batch(&ctx, frame.of(&buf), rewrite).await;
                        }
                    }
                    start += consumed;
                }
                FrameStep::Oversized { dropped, consumed } => {
                    ctx.answer_client(oversized(dropped, ctx.settings.max_frame_bytes))
                        .await;
                    start += consumed;
                }
                FrameStep::NeedMore { consumed } => {
                    start += consumed;
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        if kept > 0 {
            let next = ctx.out.spare_copy(buf.get(start..).unwrap_or_default());
            buf.truncate(kept);
            ctx.out.send_server(std::mem::replace(&mut buf, next)).await;
        } else {
            buf.drain(..start.min(buf.len()));
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Forwards `frame` as its canonical line: kept in the buffer (see [`keep`]) when it
/// has nothing to rewrite, which is almost always; else, after what was kept before
/// it, as a rewritten copy. Returns the new end of the kept bytes.
async fn forward(
    ctx: &Ctx,
    buf: &mut Vec<u8>,
    mut kept: usize,
    frame: Span,
    rewrite: bool,
) -> usize {
    if !rewrite {
        return keep(buf, kept, frame);
    }
    flush_kept(ctx, buf, &mut kept).await;
    let mut line = canonical(ctx, frame.of(buf));
    line.push(b'\n');
    ctx.out.send_server(line).await;
    kept
}

/// The canonical line of a validated client frame that the pump found to need one
/// (`thoth_core::canon`), with its substitutions counted.
fn canonical(ctx: &Ctx, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let rewrites = thoth_core::write_canonical(bytes, |piece| out.extend_from_slice(piece));
    let shared = ctx.calls.borrow().book.clone();
    let mut book = super::calls::book(&shared);
    if book.client_rewrites.is_empty() {
        tracing::warn!(
            "a client frame held raw CR, U+2028, U+2029 or U+0085: forwarded as its canonical \
             line (CR as a space, the others as \\u escapes; same value)"
        );
    }
    book.client_rewrites.add(rewrites);
    out
}

/// Moves `frame` (and a `\n`) down to `buf[kept..]`, where the bytes to forward end,
/// and returns their new end. Nothing moves while frames follow each other with bare
/// `\n`s; a `\r\n` or a frame not forwarded opens a gap that later frames close.
fn keep(buf: &mut Vec<u8>, kept: usize, frame: Span) -> usize {
    if kept != frame.start {
        buf.copy_within(frame.start..frame.end, kept);
    }
    let newline = kept + frame.len();
    match buf.get_mut(newline) {
        Some(byte) => *byte = b'\n',
        // The last frame of the stream, without a terminator.
        None => buf.push(b'\n'),
    }
    newline + 1
}

/// Sends the bytes kept so far now (a copy: the buffer is still being read).
async fn flush_kept(ctx: &Ctx, buf: &[u8], kept: &mut usize) {
    if *kept > 0 {
        let bytes = ctx.out.spare_copy(buf.get(..*kept).unwrap_or_default());
        *kept = 0;
        ctx.out.send_server(bytes).await;
    }
}

/// The answer to a frame whose canonical line would be over `max` bytes (its id when it
/// is a request).
fn canonical_too_large(frame: &[u8], max: usize) -> Vec<u8> {
    let id = match thoth_core::scan(frame) {
        Ok(Message::Request(call)) => call.id().map(|id| id.raw.to_vec()),
        _ => None,
    };
    answers::error(
        id.as_deref(),
        -32600,
        "Invalid Request",
        Some(&json!({
            "reason": "frame_too_large",
            "detail": "its canonical line (raw U+2028, U+2029, U+0085 written as \\u escapes) is over the limit",
            "frame_bytes": thoth_core::canonical_len(frame),
            "max_frame_bytes": max,
        })),
    )
}

fn oversized(dropped: u64, max: usize) -> Vec<u8> {
    answers::error(
        None,
        -32600,
        "Invalid Request",
        Some(
            &json!({ "reason": "frame_too_large", "frame_bytes": dropped, "max_frame_bytes": max }),
        ),
    )
}

/// What the pump does with a frame, found without waiting: the frames forwarded as
/// they are never enter the async machinery (nor have their scan copied into it).
enum Route {
    /// Forward its bytes unchanged.
    Forward,
    /// Nothing to do (dropped, or a cancellation resolved here).
    Done,
    /// Answered by thoth, never forwarded.
    Reply(Vec<u8>),
    /// A tools/call request: its raw id and what a decision needs.
    ToolCall {
        raw_id: Vec<u8>,
        call: Result<Box<ToolCall>, Refusal>,
    },
    /// A batch: decided element by element, after the bytes read before it.
    Batch,
    /// A governed request the enforcer is asked about first (remote mode).
    Ask {
        raw_id: Vec<u8>,
        call: Box<crate::enforce::methods::MethodCall>,
        params: Value,
    },
}

fn route(ctx: &Ctx, frame: &[u8]) -> Route {
    let message = match thoth_core::scan(frame) {
        Ok(m) => m,
        Err(e) => return Route::Reply(answers::rejected(frame, &e)),
    };
    if let Message::Request(call) = &message {
        learn_envelope(ctx, frame, call);
    }
    match message {
        Message::Request(call) if call.is_tool_call() => Route::ToolCall {
            raw_id: call.id().map_or(&b"null"[..], |id| id.raw).to_vec(),
            call: checks::tool_call(&call).map(Box::new),
        },
        Message::Notification(call) if call.is_tool_call() => {
            tracing::warn!(
                "dropped a tools/call notification (no id: a denial could not be answered)"
            );
            Route::Done
        }
        Message::Notification(call) if governable_method(&call).is_some() => {
            tracing::warn!(
                "dropped a notification named as a request thoth governs (no id: a denial could not be answered)"
            );
            Route::Done
        }
        Message::Notification(call) if call.method().eq_str("notifications/cancelled") => {
            if cancel_pending(ctx, frame, &call) {
                Route::Done
            } else {
                Route::Forward
            }
        }
        Message::Request(call) => {
            let raw = call.id().map_or(&b"null"[..], |id| id.raw);
            let key = id_key(raw);
            if ctx.calls.borrow().is_pending(&key) {
                return Route::Reply(reused_id(raw));
            }
            if super::calls::is_own_key(&key) {
                // The answer would be taken for the answer to thoth's own request.
                return Route::Reply(reserved_id(raw));
            }
            if let Some(method) = governable_method(&call) {
                match govern(ctx, frame, &call, method) {
                    Governed::Pass => {}
                    Governed::Answer(answer) => return Route::Reply(answer),
                    Governed::Ask {
                        call: asked,
                        params,
                    } => {
                        return Route::Ask {
                            raw_id: raw.to_vec(),
                            call: asked,
                            params,
                        };
                    }
                }
            }
            let mut state = ctx.calls.borrow_mut();
            if call.method().eq_str("tools/list") {
                state.watch_tools_list(&key);
            } else if call.method().eq_str("initialize") {
                state.watch_initialize(&key);
            }
            state.forwarded(key, raw);
            Route::Forward
        }
        Message::Batch(_) => Route::Batch,
        Message::Response(r) => {
            let key = id_key(r.id().raw);
            if super::calls::is_own_key(&key) {
                // An answer to thoth's own question: taken here, never relayed.
                ctx.questions.answered(&key, frame);
                return Route::Done;
            }
            // The client answered one of the server's requests.
            let shared = ctx.calls.borrow().book.clone();
            super::calls::book(&shared).server_pending.remove(&key);
            Route::Forward
        }
        Message::Notification(_) => Route::Forward,
    }
}

/// A stateless (2026-07-28) client names its revision in each request's `_meta`, and
/// sends no initialize: its first such request, while no initialize was answered,
/// sets the session's revision and the envelope of thoth's own requests. Not
/// `server/discover` (a client probes a server with it that may then turn out to speak
/// an older revision only) nor `initialize`.
fn learn_envelope(ctx: &Ctx, frame: &[u8], call: &Call<'_>) {
    if call.method().eq_str("initialize") {
        // A session that begins with initialize is not stateless, answered or not.
        ctx.initialize_sent.set(true);
        let params = call
            .params()
            .and_then(|p| serde_json::from_slice::<Value>(p.of(frame)).ok());
        ctx.client_modes.set(Modes::of(
            params.as_ref().and_then(|p| p.get("capabilities")),
        ));
    }
    if ctx.initialized.get()
        || ctx.initialize_sent.get()
        || ctx.envelope.borrow().is_some()
        || call.method().eq_str("server/discover")
    {
        return;
    }
    let Some(params) = call.params().map(|p| p.of(frame)) else {
        return;
    };
    if !super::envelope::may_have(params) {
        return;
    }
    if let Some(envelope) = super::envelope::read(params) {
        *ctx.protocol.borrow_mut() = Some(envelope.version.clone());
        *ctx.envelope.borrow_mut() = Some(envelope);
    }
}

/// Whether a negotiated protocol revision has JSON-RPC batches: 2025-03-26 has them;
/// 2025-06-18 removed them, and SDK servers of later revisions never answer one (a
/// client waiting for that answer hangs).
fn batching_allowed(version: &str) -> bool {
    // Revisions are dates: they compare as strings.
    version < "2025-06-18"
}

/// The answer to a batch under a revision without batches: -32600 for each request in
/// it (so no request of the client waits for an answer that never comes); nothing of
/// it reaches the server. `None` when it holds no request.
fn batch_refused(frame: &[u8], version: &str) -> Option<Vec<u8>> {
    let Ok(Message::Batch(batch)) = thoth_core::scan(frame) else {
        return None;
    };
    let detail = format!(
        "protocol revision {version} has no JSON-RPC batches: send each request on its own line"
    );
    let answers: Vec<Vec<u8>> = batch
        .elements()
        .filter_map(|element| match element {
            Ok(Message::Request(call)) => Some(answers::error(
                Some(call.id().map_or(&b"null"[..], |id| id.raw)),
                -32600,
                "Invalid Request",
                Some(&json!({ "reason": "batch_not_in_protocol", "detail": detail })),
            )),
            _ => None,
        })
        .collect();
    tracing::warn!(
        "refused a batch of {}: {detail}",
        crate::wording::count(answers.len(), "request")
    );
    if answers.is_empty() {
        return None;
    }
    let mut out = b"[".to_vec();
    out.extend_from_slice(&answers.join(&b","[..]));
    out.push(b']');
    Some(out)
}

/// The governable method a request names besides tools/call (`enforce::methods`).
fn governable_method(call: &Call<'_>) -> Option<&'static str> {
    crate::enforce::methods::CLIENT_REQUESTS
        .iter()
        .copied()
        .find(|m| call.method().eq_str(m))
}

/// What becomes of a request of a governable method besides tools/call.
enum Governed {
    /// Forward it (allowed, or not governed: audited either way).
    Pass,
    /// Answer the client with this; the server never sees the request.
    Answer(Vec<u8>),
    /// Ask the enforcer first (remote mode with `THOTH_ENFORCER_GOVERN_METHODS`).
    Ask {
        call: Box<crate::enforce::methods::MethodCall>,
        params: Value,
    },
}

/// A request of a governable method besides tools/call: decided when the local policy
/// governs it (a policy's scope names its action), asked of the enforcer when remote
/// mode is set to, else passed as before. Every request is audited, governed or not.
fn govern(ctx: &Ctx, frame: &[u8], call: &Call<'_>, method: &'static str) -> Governed {
    use crate::enforce::methods;
    let raw_id = call.id().map_or(&b"null"[..], |id| id.raw);
    let started = Instant::now();
    let params = call.params().map(|p| p.of(frame));
    let asks_enforcer =
        matches!(&ctx.engine, Engine::Remote(_)) && ctx.settings.enforcer_govern_methods;
    let local = match &ctx.engine {
        Engine::Local(local) if local.governs(method) => Some(local),
        Engine::Remote(_) if asks_enforcer => None,
        _ => {
            let target = params
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|p| methods::parse(method, Some(&p)).ok())
                .map(|c| c.target.label().to_string())
                .unwrap_or_default();
            let why = match &ctx.engine {
                Engine::Local(_) => methods::not_governed(method),
                Engine::Remote(_) => format!("{method} is not sent to the enforcer"),
            };
            record_method(
                ctx,
                method,
                &target,
                &Decided {
                    decision: Decision::new(Verdict::Allow, why).with_code("NOT_GOVERNED"),
                    would_be: None,
                },
                started,
            );
            return Governed::Pass;
        }
    };
    // Read as every server reads it: a member named twice (`uri` twice) or a value a
    // parser could read two ways is refused, never guessed.
    let method_call = match methods::read(method, params) {
        Ok(c) => c,
        Err(why) => {
            let decided = observe(
                ctx.settings.mode,
                Decision::new(Verdict::Block, format!("{method} refused: {why}"))
                    .with_code("PARAMS_INVALID"),
            );
            record_method(ctx, method, "", &decided, started);
            if decided.decision.verdict == Verdict::Allow {
                return Governed::Pass;
            }
            return Governed::Answer(answers::params_refused(raw_id, &why));
        }
    };
    let Some(local) = local else {
        let read = params.and_then(|p| serde_json::from_slice::<Value>(p).ok());
        return Governed::Ask {
            call: Box::new(method_call),
            params: methods::enforcer_params(method, read.as_ref()),
        };
    };
    let label = method_call.target.label().to_string();
    let decision = {
        let mut session = ctx.session.borrow_mut();
        let facts = ToolFacts::default();
        let outcome = local.evaluate_method(
            &input(
                &ctx.settings,
                &session.id,
                &session.history,
                &label,
                &facts,
                Some(&method_call.arguments),
            ),
            &method_call,
        );
        let key = format!("{method} {label}");
        crate::enforce::modes::apply_mode(
            outcome,
            ctx.settings.mode,
            &key,
            &mut session.soft_denied,
        )
    };
    let decided = observe(ctx.settings.mode, decision);
    record_method(ctx, method, &label, &decided, started);
    match method_answer(ctx, raw_id, &label, &decided) {
        Some(answer) => Governed::Answer(answer),
        None => Governed::Pass,
    }
}

/// The client's answer to a governed request that is not allowed (`None` when it is).
fn method_answer(ctx: &Ctx, raw_id: &[u8], label: &str, decided: &Decided) -> Option<Vec<u8>> {
    if decided.decision.verdict == Verdict::Allow {
        return None;
    }
    let attestation = uuid::Uuid::new_v4().to_string();
    let session_id = ctx.session.borrow().id.clone();
    let data = answers::decision_data(&decided.decision, label, &session_id, &attestation);
    // A JSON-RPC error whatever the deny style: only a tool call has a tool result.
    Some(answers::denied(
        raw_id,
        &decided.decision,
        &data,
        crate::domain::DenyStyle::Error,
    ))
}

/// Asks the enforcer about a governed request (remote mode); `None`: forward it.
/// A MODIFY is not applied to these methods: it is refused.
async fn ask_enforcer(
    ctx: &Ctx,
    raw_id: &[u8],
    call: &crate::enforce::methods::MethodCall,
    params: &Value,
) -> Option<Vec<u8>> {
    let Engine::Remote(remote) = &ctx.engine else {
        return None;
    };
    let started = Instant::now();
    let label = call.target.label().to_string();
    let decision = enforcer_decides(ctx, remote, call, params).await;
    let decided = observe(
        ctx.settings.mode,
        crate::enforce::modes::for_method(decision, call.method),
    );
    record_method(ctx, call.method, &label, &decided, started);
    method_answer(ctx, raw_id, &label, &decided)
}

/// Asks the enforcer about the server's requests the relay holds (remote mode with
/// methods governed there), one at a time, in the order the server wrote them: the
/// relay applies and audits each decision.
pub async fn answer_server_questions(
    ctx: Rc<Ctx>,
    mut questions: tokio::sync::mpsc::Receiver<super::server_asks::Asked>,
) {
    while let Some((question, reply)) = questions.recv().await {
        let decision = match &ctx.engine {
            Engine::Remote(remote) => {
                enforcer_decides(&ctx, remote, &question.call, &question.params).await
            }
            Engine::Local(_) => Decision::new(Verdict::Block, "no enforcer to ask"),
        };
        let _ = reply.send(decision);
    }
}

/// The enforcer's decision about a governed request besides tools/call.
async fn enforcer_decides(
    ctx: &Ctx,
    remote: &crate::enforce::remote::RemoteEnforcer,
    call: &crate::enforce::methods::MethodCall,
    params: &Value,
) -> Decision {
    let label = call.target.label().to_string();
    let (session_id, history) = {
        let session = ctx.session.borrow();
        (session.id.clone(), session.history.clone())
    };
    let facts = ToolFacts::default();
    let attestation = uuid::Uuid::new_v4().to_string();
    remote
        .enforce_method(
            &input(
                &ctx.settings,
                &session_id,
                &history,
                &label,
                &facts,
                Some(&call.arguments),
            ),
            call,
            params,
            &session_id,
            &attestation,
        )
        .await
}

/// The audit record of a request besides tools/call: a `method` event (the decision
/// records of tools/call keep their shape).
fn record_method(ctx: &Ctx, method: &str, target: &str, decided: &Decided, started: Instant) {
    let fields = method_record(ctx, method, target, decided, started);
    ctx.audit_event("method", fields);
}

/// The fields of a `method` audit record (counted as a decision when one was made).
fn method_record(
    ctx: &Ctx,
    method: &str,
    target: &str,
    decided: &Decided,
    started: Instant,
) -> serde_json::Map<String, Value> {
    let d = &decided.decision;
    let undecided = d.decision_reason_code.as_deref() == Some("NOT_GOVERNED");
    if let Some(gov) = ctx.gov.borrow().as_ref().filter(|_| !undecided) {
        gov.counters.count(d.verdict.as_str());
    }
    let mut fields = serde_json::Map::new();
    fields.insert("agent".into(), json!(ctx.settings.agent_id));
    fields.insert("method".into(), json!(method));
    fields.insert("target".into(), json!(target));
    fields.insert("decision".into(), json!(d.verdict.as_str()));
    fields.insert(
        "reason".into(),
        json!(decided.would_be.as_ref().unwrap_or(d).reason),
    );
    fields.insert("code".into(), json!(d.decision_reason_code));
    fields.insert("mode".into(), json!(ctx.settings.mode.as_str()));
    fields.insert("rule_ids".into(), json!(d.matched_rule_ids));
    fields.insert(
        "latency_us".into(),
        json!(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
    );
    fields.insert(
        "would_be".into(),
        json!(decided.would_be.as_ref().map(|w| w.verdict.as_str())),
    );
    fields
}

/// Decides a batch element by element: allowed elements go to the server as one batch,
/// the answers to the client as one array.
/// `rewrite`: the frame needs its canonical line (MODIFYed elements come out of the
/// splice as canonical lines already).
async fn batch(ctx: &Rc<Ctx>, frame: &[u8], rewrite: bool) {
    sync_catalog(ctx);
    // (Scanned again only while a stateless session's revision may still be learned.)
    let learning = !ctx.initialized.get() && ctx.envelope.borrow().is_none();
    if learning && let Ok(Message::Batch(batch)) = thoth_core::scan(frame) {
        for element in batch.elements().flatten() {
            if let Message::Request(call) = element {
                learn_envelope(ctx, frame, &call);
            }
        }
    }
    let protocol = ctx.protocol.borrow().clone();
    if let Some(version) = protocol.filter(|v| !batching_allowed(v)) {
        if let Some(answer) = batch_refused(frame, &version) {
            ctx.answer_client(answer).await;
        }
        return;
    }
    watch_in_batch(ctx, frame);
    let mut planned = plan_batch(ctx, frame);
    for p in planned.iter_mut() {
        if let Planned::Decide {
            element,
            raw_id,
            call,
        } = p
        {
            *p = match decide_element(ctx, frame, element, raw_id, call).await {
                Action::Forward(bytes) => Planned::Forward(bytes.into_owned()),
                Action::Answer(answer) => Planned::Answer(answer),
            };
        }
    }
    let (to_server, to_client) = assemble(planned);
    if let Some(batch) = to_server {
        let batch = if rewrite {
            canonical(ctx, &batch)
        } else {
            batch
        };
        ctx.out.send_server(batch).await;
    }
    if let Some(errors) = to_client {
        ctx.answer_client(errors).await;
    }
}

/// The tools/list and initialize requests of a batch are watched as single ones are
/// (their answers feed the catalog and name the protocol revision).
fn watch_in_batch(ctx: &Ctx, frame: &[u8]) {
    let Ok(Message::Batch(batch)) = thoth_core::scan(frame) else {
        return;
    };
    for element in batch.elements().flatten() {
        if let Message::Request(call) = element {
            let key = id_key(call.id().map_or(&b"null"[..], |id| id.raw));
            if call.method().eq_str("tools/list") {
                ctx.calls.borrow_mut().watch_tools_list(&key);
            } else if call.method().eq_str("initialize") {
                ctx.calls.borrow_mut().watch_initialize(&key);
            }
        }
    }
}

fn reserved_id(raw: &[u8]) -> Vec<u8> {
    answers::error(
        Some(raw),
        -32600,
        "Invalid Request",
        Some(
            &json!({ "reason": "reserved_id", "detail": "ids starting with \"thoth:\" are thoth's own" }),
        ),
    )
}

/// Pages of thoth's own listing followed at most.
const MAX_OWN_PAGES: usize = 16;
/// How long thoth waits for the server to answer its whole own listing.
const OWN_LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a call to `tool` makes thoth list the tools itself first.
fn fetch_due(ctx: &Ctx, tool: &str) -> bool {
    sync_catalog(ctx);
    !ctx.own_listing_done.get()
        && (ctx.initialized.get() || ctx.envelope.borrow().is_some())
        && !ctx.catalog.borrow().knows(tool)
}

/// A call names a tool the catalog does not know (the client never listed, or not
/// every page): thoth asks the server itself, once per session, before deciding, so the
/// tool's schema and claims count. Its requests use ids of its own namespace and their
/// answers are consumed by the relay, never relayed. Nothing is asked before the
/// server has answered initialize (the session has not begun); once it has, the client
/// cannot turn this off by leaving out `notifications/initialized`. A stateless
/// (2026-07-28) session has no initialize: there thoth asks once a request has named
/// the revision, with that request's envelope. The caller has asked [`fetch_due`].
async fn fetch_catalog(ctx: &Ctx, tool: &str) {
    ctx.own_listing_done.set(true);
    let shared = ctx.calls.borrow().book.clone();
    let (signal, eof) = {
        let book = crate::proxy::calls::book(&shared);
        (book.own_answered.clone(), book.server_eof_signal.clone())
    };
    let deadline = tokio::time::Instant::now() + OWN_LISTING_WAIT;
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_OWN_PAGES {
        let id = format!("{}{}", super::calls::OWN_ID_PREFIX, uuid::Uuid::new_v4());
        let key = id_key(json!(id).to_string().as_bytes());
        ctx.calls.borrow_mut().watch_tools_list(&key);
        let mut params = cursor
            .as_ref()
            .map_or_else(|| json!({}), |c| json!({ "cursor": c }));
        // A stateless server refuses a request without the session's envelope.
        if let (Some(envelope), Some(map)) =
            (ctx.envelope.borrow().as_ref(), params.as_object_mut())
        {
            map.insert("_meta".into(), Value::Object(envelope.stamp.clone()));
        }
        let mut frame =
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params })
                .to_string()
                .into_bytes();
        frame.push(b'\n');
        let answered_own = |key: &str| {
            let book = crate::proxy::calls::book(&shared);
            book.server_eof || !book.tools_list.contains(key)
        };
        let sent = tokio::time::timeout_at(deadline, ctx.out.send_server(frame)).await;
        let waited = tokio::time::timeout_at(deadline, async {
            // Woken by any of thoth's own answers and by the server's end: this
            // request's answer is the one that removed its key.
            loop {
                let answered = signal.notified();
                tokio::pin!(answered);
                answered.as_mut().enable();
                let ended = eof.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if answered_own(&key) {
                    return;
                }
                tokio::select! {
                    () = answered => {}
                    () = ended => {}
                }
            }
        })
        .await;
        if sent.is_err() || waited.is_err() {
            tracing::warn!(
                "the server did not answer thoth's own tools/list within {} s: unlisted tools are decided as not listed",
                OWN_LISTING_WAIT.as_secs()
            );
            return;
        }
        sync_catalog(ctx);
        cursor = ctx.catalog.borrow_mut().take_next_cursor();
        if cursor.is_none() || ctx.catalog.borrow().knows(tool) {
            return;
        }
    }
}

fn reused_id(raw: &[u8]) -> Vec<u8> {
    answers::error(
        Some(raw),
        -32600,
        "Invalid Request",
        Some(&json!({ "reason": "id_already_pending" })),
    )
}

/// `notifications/cancelled` for a call still pending: resolve it (no response, per
/// spec) and tell the caller not to forward (the server never saw the call).
fn cancel_pending(ctx: &Ctx, frame: &[u8], call: &Call<'_>) -> bool {
    let Some(params) = call.params() else {
        return false;
    };
    let Ok(value) = serde_json::from_slice::<Value>(params.of(frame)) else {
        return false;
    };
    let Some(request_id) = value.get("requestId") else {
        return false;
    };
    let key = request_id.to_string();
    if super::calls::is_own_key(&key) {
        // It names one of thoth's own requests: the server never saw it, nor may it
        // learn its id (a question's id is what binds its answer).
        return true;
    }
    let removed = ctx.calls.borrow_mut().remove_pending(&key);
    match removed {
        Some(Pending { abort, .. }) => {
            if let Some(abort) = abort {
                abort.abort();
            }
            tracing::info!(
                "cancelled call {} before its decision; not forwarded",
                crate::logging::escaped(&key)
            );
            true
        }
        None => false,
    }
}

/// The answer to a call refused before any decision (see [`checks`]).
fn refused(frame: &[u8], id: &[u8], refusal: &Refusal) -> Vec<u8> {
    match refusal {
        Refusal::Core(e) => answers::rejected(frame, e),
        Refusal::Arguments(why) => answers::error(
            Some(id),
            -32602,
            "Invalid params",
            Some(&json!({ "reason": refusal.reason(), "detail": why.to_string() })),
        ),
        Refusal::NoId => answers::error(
            Some(id),
            -32600,
            "Invalid Request",
            Some(&json!({ "reason": refusal.reason() })),
        ),
    }
}

/// What the pump does after [`tools_call`].
enum AfterCall {
    /// Nothing: answered, or left to its decision task.
    Done,
    /// Forward the frame as it came (its canonical line), in order.
    ForwardFrame,
    /// Forward these bytes instead (a canonical line or a MODIFYed call), in order.
    Send(Vec<u8>),
}

/// Decides a tools/call request: at once with the local engine (whose decisions never
/// wait), else in a task of its own so a slow enforcer or a hold never stalls other
/// traffic (observe mode then forwards the frame at once and decides for the record).
/// `fetch`: thoth first lists the tools itself ([`fetch_due`], asked by the pump).
async fn tools_call(
    ctx: &Rc<Ctx>,
    frame: &[u8],
    rewrite: bool,
    raw_id: Vec<u8>,
    call: Result<Box<ToolCall>, Refusal>,
    fetch: bool,
) -> AfterCall {
    let brought_back = if ctx.envelope.borrow().is_some() && call.is_ok() {
        user_approval::Back::of(frame)
    } else {
        user_approval::Back::Nothing
    };
    let unreadable = |detail: &str| {
        answers::error(
            Some(&raw_id),
            -32600,
            "Invalid Request",
            Some(&json!({ "reason": "unreadable_retry", "detail": detail })),
        )
    };
    let back = match brought_back {
        user_approval::Back::Nothing => {
            return decide_call(ctx, frame, rewrite, raw_id, call, fetch, None).await;
        }
        user_approval::Back::Servers => {
            let back = Some(Stateless::Servers);
            return decide_call(ctx, frame, rewrite, raw_id, call, fetch, back).await;
        }
        user_approval::Back::Unreadable => {
            ctx.answer_client(unreadable(
                "its params do not read one way only, and may carry thoth's requestState",
            ))
            .await;
            return AfterCall::Done;
        }
        user_approval::Back::Ours(back) => back,
    };
    // thoth's token and answer are for thoth: the server gets the call without them.
    let stripped =
        match super::modify::without_params_members(frame, &["requestState", "inputResponses"]) {
            Ok(stripped) => stripped,
            Err(e) => {
                ctx.answer_client(unreadable(&e.0)).await;
                return AfterCall::Done;
            }
        };
    let call = match thoth_core::scan(&stripped) {
        Ok(Message::Request(c)) => checks::tool_call(&c).map(Box::new),
        _ => return AfterCall::Done,
    };
    let rewrite = thoth_core::needs_rewrite(&stripped);
    let back = Some(Stateless::Ours(back));
    match decide_call(ctx, &stripped, rewrite, raw_id, call, fetch, back).await {
        // What goes out is the call without thoth's members, not the bytes read.
        AfterCall::ForwardFrame if rewrite => AfterCall::Send(canonical(ctx, &stripped)),
        AfterCall::ForwardFrame => AfterCall::Send(stripped),
        other => other,
    }
}

/// What a stateless call brought back that its decision depends on.
enum Stateless {
    /// thoth's question token and the answer (the frame was stripped of them).
    Ours(user_approval::BroughtBack),
    /// The server's own `requestState`: one of its input rounds.
    Servers,
}

/// [`tools_call`] for a frame as it goes out; `back`: what a stateless call brought
/// back.
async fn decide_call(
    ctx: &Rc<Ctx>,
    frame: &[u8],
    rewrite: bool,
    raw_id: Vec<u8>,
    call: Result<Box<ToolCall>, Refusal>,
    fetch: bool,
    back: Option<Stateless>,
) -> AfterCall {
    let key = id_key(&raw_id);
    if super::calls::is_own_key(&key) {
        ctx.answer_client(reserved_id(&raw_id)).await;
        return AfterCall::Done;
    }
    let (reused, busy) = {
        let state = ctx.calls.borrow();
        (state.is_pending(&key), state.deciding() >= MAX_PENDING)
    };
    if reused {
        ctx.answer_client(reused_id(&raw_id)).await;
        return AfterCall::Done;
    }
    if busy {
        let busy = answers::error(
            Some(&raw_id),
            answers::INTERNAL,
            "busy: too many calls pending a decision",
            None,
        );
        ctx.answer_client(busy).await;
        return AfterCall::Done;
    }
    let checked = call.and_then(|tc| checks::arguments(frame, &tc).map(|args| (tc, args)));
    let (tc, (args, args_len)) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            ctx.answer_client(refused(frame, &raw_id, &refusal)).await;
            return AfterCall::Done;
        }
    };
    if fetch {
        fetch_catalog(ctx, tc.name.as_str()).await;
    }
    let facts = match catalog_gate(ctx, tc.name.as_str(), args.as_ref(), &raw_id) {
        Ok(facts) => facts,
        Err(answer) => {
            ctx.answer_client(answer).await;
            return AfterCall::Done;
        }
    };
    if let Engine::Local(local) = &ctx.engine {
        let tool = tc.name.as_str();
        ctx.emit("TOOL_CALL_PRE", tool, None);
        // Decided afresh even when the user approved: the facts may have changed.
        let trace = ctx.call_trace(frame);
        let decided = decide_locally(ctx, local, tool, &facts, args.as_ref(), args_len, trace);
        let decided = match back {
            Some(Stateless::Ours(back)) => retry_answered(ctx, tool, args.as_ref(), &back, decided),
            Some(Stateless::Servers) => continued(ctx, tool, args.as_ref(), decided),
            None => decided,
        };
        let held = HeldCall {
            frame,
            rewrite,
            raw_id: &raw_id,
            tool,
            arguments: args.as_ref(),
            progress: tc.progress_token,
            key: &key,
        };
        let Err(decided) = ask_user(ctx, decided, held).await else {
            return AfterCall::Done;
        };
        // The canonical line only for a call that goes out (its rewrites are counted).
        let goes_out = matches!(decided.decision.verdict, Verdict::Allow | Verdict::Modify);
        let call = CallFrame {
            frame: if rewrite && goes_out {
                Cow::Owned(canonical(ctx, frame))
            } else {
                Cow::Borrowed(frame)
            },
            raw_id: &raw_id,
            tool,
        };
        return match settle(ctx, &decided, call, key) {
            Action::Forward(Cow::Borrowed(_)) => AfterCall::ForwardFrame,
            Action::Forward(Cow::Owned(bytes)) => AfterCall::Send(bytes),
            Action::Answer(bytes) => {
                ctx.answer_client(bytes).await;
                AfterCall::Done
            }
        };
    }
    let frame = frame.to_vec();
    let trace = ctx.call_trace(&frame);
    let stateless = ctx.envelope.borrow().is_some();
    let pending_id = raw_id.clone();
    // Observe mode forwards at once, after what the client sent before it, and decides
    // for the record only (the one place the pump itself looks at the mode).
    let forwarded_at_once = ctx.settings.mode == Mode::Observe;
    if forwarded_at_once {
        ctx.calls.borrow_mut().forwarded(key.clone(), &raw_id);
    }
    let task_ctx = ctx.clone();
    let task_key = key.clone();
    let progress = tc.progress_token.map(|span| span.of(&frame).to_vec());
    // What goes out is the canonical line (taken after the spans above were read); a
    // MODIFY splices canonical arguments into it.
    let frame = if rewrite {
        canonical(ctx, &frame)
    } else {
        frame
    };
    // Observe mode: this canonical line goes out now (once: its rewrites are counted
    // once), and the task only decides for the record.
    let (frame, now) = if forwarded_at_once {
        (Vec::new(), Some(frame))
    } else {
        (frame, None)
    };
    ctx.emit("TOOL_CALL_PRE", tc.name.as_str(), None);
    let task = tokio::task::spawn_local(async move {
        let ctx = task_ctx;
        let tool = tc.name.as_str();
        // The call's key (a hash of its canonical arguments) is computed only when an
        // approval could admit it or a hold could be approved: not on the common path.
        let call_key = || hold::call_key(&ctx.settings.agent_id, tool, args.as_ref());
        let approved = ctx
            .holds
            .as_ref()
            .is_some_and(|holds| holds.take_approval(call_key));
        let decided = if approved {
            let decided = Decided {
                decision: Decision::new(
                    Verdict::Allow,
                    "an approver approved this call's step-up hold",
                ),
                would_be: None,
            };
            record(&ctx, tool, &decided, Instant::now());
            decided
        } else if let Some(retried) = match &back {
            Some(Stateless::Ours(back)) => page_retry(&ctx, tool, args.as_ref(), back),
            _ => None,
        } {
            match retried {
                PageRetry::Hold(held) => {
                    resolve_hold(&ctx, tool, held, progress.as_deref(), &call_key).await
                }
                PageRetry::Now(decided) => decided,
            }
        } else {
            let decided =
                decide_and_record(&ctx, tool, &facts, args.as_ref(), args_len, trace).await;
            // A stateless client that can show a URL is shown a hold's approval page
            // through `input_required` (it cannot be sent a request). Its capabilities
            // are read only then, not for every call.
            if stateless
                && !forwarded_at_once
                && shows_a_page(&decided)
                && user_approval::request_modes(&frame).url
            {
                let page = show_page_stateless(&ctx, tool, &raw_id, &decided, call_key());
                if let Some(answer) = page {
                    ctx.calls.borrow_mut().decided(&task_key);
                    ctx.answer_client(answer).await;
                    ctx.calls.borrow_mut().remove_pending(&task_key);
                    return;
                }
            }
            resolve_hold(&ctx, tool, decided, progress.as_deref(), &call_key).await
        };
        ctx.calls.borrow_mut().decided(&task_key);
        if forwarded_at_once {
            ctx.emit("TOOL_CALL_POST", tool, Some(&decided.decision));
            ctx.calls.borrow_mut().remove_pending(&task_key);
        } else {
            finish(&ctx, &decided, frame, &raw_id, tool, task_key).await;
        }
    });
    ctx.calls.borrow_mut().insert_pending(
        key,
        Pending {
            raw_id: pending_id,
            deciding: true,
            abort: Some(task.abort_handle()),
        },
    );
    // When decisions pile up, let them run before the next frame, and read no further
    // while the server's queue is full: a client streaming calls is paced by its
    // decisions and its server instead of being told "busy" (slow decisions still are).
    if ctx.calls.borrow().deciding() >= YIELD_AT_DECIDING {
        tokio::task::yield_now().await;
    }
    ctx.out.server_backpressure().await;
    match now {
        Some(line) if rewrite => AfterCall::Send(line),
        Some(_) => AfterCall::ForwardFrame,
        None => AfterCall::Done,
    }
}

/// Sends a call decided in a task of its own on its way (forwarded or answered), and
/// only then forgets it as pending, so client EOF cannot lose it.
async fn finish(
    ctx: &Ctx,
    decided: &Decided,
    frame: Vec<u8>,
    raw_id: &[u8],
    tool: &str,
    key: String,
) {
    let call = CallFrame {
        frame: Cow::Owned(frame),
        raw_id,
        tool,
    };
    match settle(ctx, decided, call, key.clone()) {
        Action::Forward(bytes) => {
            let mut bytes = bytes.into_owned();
            bytes.push(b'\n');
            ctx.out.send_server(bytes).await;
        }
        Action::Answer(bytes) => ctx.answer_client(bytes).await,
    }
    ctx.calls.borrow_mut().remove_pending(&key);
}

/// A call the local engine asked a step-up for, as the user may be asked about it.
struct HeldCall<'a> {
    frame: &'a [u8],
    rewrite: bool,
    raw_id: &'a [u8],
    tool: &'a str,
    arguments: Option<&'a Value>,
    progress: Option<Span>,
    key: &'a str,
}

/// A local STEP_UP the policy lets the user approve, put to them in their client
/// (`super::user_approval`): the call is held in a task of its own until they answer
/// (or, in a stateless session, answered with the question). `Err` gives the decision
/// back when the user cannot be asked: another decision, a client without form mode,
/// every question slot taken.
async fn ask_user(ctx: &Rc<Ctx>, decided: Decided, call: HeldCall<'_>) -> Result<(), Decided> {
    if !asks_the_user(&decided) {
        return Err(decided);
    }
    let d = &decided.decision;
    let protocol = ctx.protocol.borrow().clone();
    // Revisions are dates: they compare as strings. Modes came with 2025-11-25.
    let with_mode = protocol.as_deref().is_some_and(|v| v >= "2025-11-25");
    let server = ctx.server_name.borrow().clone();
    let asked = user_approval::Asked {
        tool: call.tool,
        server: server.as_deref(),
        reason: &d.reason,
        arguments: call.arguments,
    };
    let Some(params) = user_approval::form_params(&asked, with_mode) else {
        tracing::warn!(
            "a step-up the user may approve has arguments too many or too long to show them all: answered -32002"
        );
        return Err(decided);
    };
    if ctx.envelope.borrow().is_some() {
        return ask_stateless(ctx, decided, &call, &params).await;
    }
    if !ctx.client_modes.get().form {
        return Err(decided);
    }
    let Some(question) = ctx.questions.open() else {
        tracing::warn!(
            "{} questions wait for the user already: this step-up is answered -32002",
            user_approval::MAX_OPEN
        );
        return Err(decided);
    };
    let frame = if call.rewrite {
        canonical(ctx, call.frame)
    } else {
        call.frame.to_vec()
    };
    let progress = call.progress.map(|span| span.of(call.frame).to_vec());
    let (raw_id, tool, key) = (
        call.raw_id.to_vec(),
        call.tool.to_string(),
        call.key.to_string(),
    );
    let wait = user_approval::Wait {
        poll: ctx.settings.step_up_poll,
        hold: ctx.settings.step_up_hold,
    };
    let task_ctx = ctx.clone();
    let task_key = key.clone();
    let task_raw_id = raw_id.clone();
    let task = tokio::task::spawn_local(async move {
        let ctx = task_ctx;
        let started = Instant::now();
        let answer = user_approval::ask(question, &params, progress.as_deref(), wait).await;
        let decided = user_answered(&ctx, &tool, decided, answer, started);
        ctx.calls.borrow_mut().decided(&task_key);
        finish(&ctx, &decided, frame, &task_raw_id, &tool, task_key).await;
    });
    ctx.calls.borrow_mut().insert_pending(
        key,
        Pending {
            raw_id,
            deciding: true,
            abort: Some(task.abort_handle()),
        },
    );
    Ok(())
}

/// A stateless session's question: the call is answered with an `input_required`
/// result carrying it and a token, which the client's retry brings back with the
/// answer ([`retry_answered`]). `Err` when the request does not declare form mode or
/// too many tokens wait.
async fn ask_stateless(
    ctx: &Ctx,
    decided: Decided,
    call: &HeldCall<'_>,
    params: &Value,
) -> Result<(), Decided> {
    if !user_approval::request_modes(call.frame).form {
        return Err(decided);
    }
    let key = hold::call_key(&ctx.settings.agent_id, call.tool, call.arguments);
    let Some(token) = ctx.questions.issue(key, user_approval::TOKEN_LIFETIME) else {
        return Err(decided);
    };
    ctx.answer_client(user_approval::input_required(call.raw_id, params, &token))
        .await;
    Ok(())
}

/// The decision for a stateless retry bringing back thoth's token, given the policy's
/// `fresh` decision for it (recorded when it differs): an approval stands only while
/// the policy still asks the user; a refusal or a token brought back by another call
/// blocks; an expired token or no answer leaves the fresh decision (which may ask
/// again). The token is used up either way.
fn retry_answered(
    ctx: &Ctx,
    tool: &str,
    arguments: Option<&Value>,
    back: &user_approval::BroughtBack,
    fresh: Decided,
) -> Decided {
    let key = hold::call_key(&ctx.settings.agent_id, tool, arguments);
    let started = Instant::now();
    let decision = match ctx.questions.retry(&back.token, &key, &back.params) {
        user_approval::Retry::Expired
        | user_approval::Retry::Page(..)
        | user_approval::Retry::Answered(Answer::Unanswered) => {
            return fresh;
        }
        user_approval::Retry::OtherCall => {
            let mut block = Decision::new(
                Verdict::Block,
                "the approval brought back was asked for another call",
            )
            .with_code("APPROVAL_MISMATCH");
            block.matched_rule_ids = fresh.decision.matched_rule_ids.clone();
            block
        }
        user_approval::Retry::Answered(Answer::Approved) if !asks_the_user(&fresh) => {
            return fresh;
        }
        user_approval::Retry::Answered(answer) => {
            if answer == Answer::Approved {
                ctx.questions.approved(key);
            }
            return user_answered(ctx, tool, fresh, answer, started);
        }
    };
    let decided = Decided {
        decision,
        would_be: None,
    };
    record(ctx, tool, &decided, started);
    decided
}

/// What a stateless retry bringing back an approval page's token makes of the call.
enum PageRetry {
    /// The page was opened: the call waits for its hold, as any held call.
    Hold(Decided),
    /// Refused by the user, or the token was another call's.
    Now(Decided),
}

/// Whether a remote decision has a hold whose approval page the user may be shown.
fn shows_a_page(decided: &Decided) -> bool {
    asks_the_user(decided)
        && decided.decision.hold_token.is_some()
        && decided.decision.approval_url.is_some()
}

/// The `input_required` answer showing a remote hold's approval page to a stateless
/// client (a URL elicitation), with a token bound to the call and the hold; `None`
/// when no token can be issued (the call is then held as before).
fn show_page_stateless(
    ctx: &Ctx,
    tool: &str,
    raw_id: &[u8],
    decided: &Decided,
    key: [u8; 32],
) -> Option<Vec<u8>> {
    let url = decided.decision.approval_url.as_deref()?;
    let token =
        ctx.questions
            .issue_page(key, user_approval::TOKEN_LIFETIME, decided.decision.clone())?;
    let params = user_approval::url_params(tool, url, &uuid::Uuid::new_v4().to_string());
    Some(user_approval::input_required(raw_id, &params, &token))
}

/// A stateless retry bringing back an approval page's token (remote engine): opened →
/// held on that hold; declined or cancelled → BLOCK (recorded); another call's token
/// → BLOCK; expired (or a token that is not a page's) → `None`, decided as any call.
fn page_retry(
    ctx: &Ctx,
    tool: &str,
    arguments: Option<&Value>,
    back: &user_approval::BroughtBack,
) -> Option<PageRetry> {
    let key = hold::call_key(&ctx.settings.agent_id, tool, arguments);
    let started = Instant::now();
    let decision = match ctx.questions.retry(&back.token, &key, &back.params) {
        user_approval::Retry::Page(Answer::Refused(how), _) => Decision::new(
            Verdict::Block,
            format!("the user did not approve this call in their client ({how})"),
        )
        .with_code("USER_DECLINED"),
        user_approval::Retry::Page(_, hold) => {
            return Some(PageRetry::Hold(Decided {
                decision: *hold,
                would_be: None,
            }));
        }
        user_approval::Retry::OtherCall => Decision::new(
            Verdict::Block,
            "the approval brought back was asked for another call",
        )
        .with_code("APPROVAL_MISMATCH"),
        user_approval::Retry::Expired | user_approval::Retry::Answered(_) => return None,
    };
    let decided = Decided {
        decision,
        would_be: None,
    };
    record(ctx, tool, &decided, started);
    Some(PageRetry::Now(decided))
}

/// Whether a decision is a step-up the user may approve (and is enforced).
fn asks_the_user(decided: &Decided) -> bool {
    decided.decision.verdict == Verdict::StepUp
        && decided.decision.user_may_approve
        && decided.would_be.is_none()
}

/// A stateless call carrying the server's own `requestState` (one of its input rounds
/// on a call): admitted when the policy still asks the user and the user approved this
/// very call (same key) a moment ago (`Questions::continuation`), so the server's
/// rounds do not ask the user again each time.
fn continued(ctx: &Ctx, tool: &str, arguments: Option<&Value>, fresh: Decided) -> Decided {
    if !asks_the_user(&fresh) {
        return fresh;
    }
    let key = hold::call_key(&ctx.settings.agent_id, tool, arguments);
    if !ctx.questions.continuation(&key) {
        return fresh;
    }
    let mut decision = Decision::new(
        Verdict::Allow,
        "the user approved this call in their client (the server's own input round on it)",
    )
    .with_code("USER_APPROVED");
    decision.matched_rule_ids = fresh.decision.matched_rule_ids.clone();
    let decided = Decided {
        decision,
        would_be: None,
    };
    record(ctx, tool, &decided, Instant::now());
    decided
}

/// The decision once the user has answered, recorded (every approval, refusal and
/// unanswered question is an audit record).
fn user_answered(
    ctx: &Ctx,
    tool: &str,
    asked: Decided,
    answer: Answer,
    started: Instant,
) -> Decided {
    let mut decision = match answer {
        Answer::Approved => Decision::new(
            Verdict::Allow,
            "the user approved this call in their client",
        )
        .with_code("USER_APPROVED"),
        Answer::Refused(how) => Decision::new(
            Verdict::Block,
            format!("the user did not approve this call in their client ({how})"),
        )
        .with_code("USER_DECLINED"),
        Answer::Unanswered => {
            let mut unanswered = asked.decision.clone();
            unanswered.reason = format!(
                "{} (the user did not answer in their client in time)",
                unanswered.reason
            );
            unanswered
        }
    };
    decision.matched_rule_ids = asked.decision.matched_rule_ids.clone();
    let decided = Decided {
        decision,
        would_be: None,
    };
    record(ctx, tool, &decided, started);
    decided
}

/// Holds a STEP_UP with a hold token (remote engine) until it is resolved or the hold
/// time is up; other decisions (observe mode's ALLOWs among them) pass unchanged.
async fn resolve_hold(
    ctx: &Rc<Ctx>,
    tool: &str,
    decided: Decided,
    progress: Option<&[u8]>,
    key: &dyn Fn() -> [u8; 32],
) -> Decided {
    let d = &decided.decision;
    let Some(holds) = &ctx.holds else {
        return decided;
    };
    if d.verdict != Verdict::StepUp || d.hold_token.is_none() {
        return decided;
    }
    let started = Instant::now();
    // A stateless session cannot be sent a question (nor an approval page).
    let url_mode = ctx.client_modes.get().url && ctx.envelope.borrow().is_none();
    let mut resolved = match hold::hold(holds, d, tool, progress, key(), url_mode).await {
        Held::TimedOut => return decided,
        Held::Declined(how) => Decision::new(
            Verdict::Block,
            format!("the user did not approve this call in their client ({how})"),
        )
        .with_code("USER_DECLINED"),
        Held::Resolved(Verdict::Allow) => {
            Decision::new(Verdict::Allow, "an approver approved the step-up hold")
        }
        Held::Resolved(_) => {
            Decision::new(Verdict::Block, "the step-up hold was denied or expired")
                .with_code("HOLD_DENIED")
        }
    };
    resolved.hold_token = d.hold_token.clone();
    resolved.violation_id = d.violation_id.clone();
    let decided = Decided {
        decision: resolved,
        would_be: None,
    };
    record(ctx, tool, &decided, started);
    decided
}

/// Decides one call (local or remote), applies observe mode, and records it in the
/// audit log.
async fn decide_and_record(
    ctx: &Ctx,
    tool: &str,
    facts: &ToolFacts,
    args: Option<&Value>,
    args_len: usize,
    trace: Option<CallTrace>,
) -> Decided {
    let started = Instant::now();
    let decision = match &ctx.engine {
        Engine::Local(local) => {
            return decide_locally(ctx, local, tool, facts, args, args_len, trace);
        }
        Engine::Remote(remote) => {
            // A snapshot: other calls may be decided while this one waits.
            let (session_id, history) = {
                let mut session = ctx.session.borrow_mut();
                let before = session.history.clone();
                session.history.record(tool);
                (session.id.clone(), before)
            };
            match args {
                None => too_large(args_len),
                Some(_) => {
                    let attestation = uuid::Uuid::new_v4().to_string();
                    let traceparent = trace.map(|t| t.context.header(t.span));
                    remote
                        .enforce_traced(
                            &input(&ctx.settings, &session_id, &history, tool, facts, args),
                            &session_id,
                            &attestation,
                            traceparent.as_deref(),
                        )
                        .await
                }
            }
        }
    };
    conclude(ctx, tool, decision, started, trace)
}

/// Observe mode applied to a decision made since `started`, and its audit record.
fn conclude(
    ctx: &Ctx,
    tool: &str,
    decision: Decision,
    started: Instant,
    trace: Option<CallTrace>,
) -> Decided {
    let decided = observe(ctx.settings.mode, decision);
    record_traced(ctx, tool, &decided, started, trace);
    decided
}

/// [`decide_and_record`] for the local engine, which never waits.
fn decide_locally(
    ctx: &Ctx,
    local: &LocalEngine,
    tool: &str,
    facts: &ToolFacts,
    args: Option<&Value>,
    args_len: usize,
    trace: Option<CallTrace>,
) -> Decided {
    let started = Instant::now();
    let hidden = ctx.catalog.borrow().hidden_by(tool).map(str::to_string);
    if let Some(rule) = hidden {
        // Hidden from the client's listing: blocked whatever the facts are now (the
        // server may describe it differently since).
        ctx.session.borrow_mut().history.record(tool);
        let mut decision = Decision::new(
            Verdict::Block,
            format!("tool {tool:?} is hidden from the tool list by policy {rule}"),
        )
        .with_code("POLICY_FORBID");
        decision.matched_rule_ids = vec![rule];
        return conclude(ctx, tool, decision, started, trace);
    }
    let decision = {
        let mut session = ctx.session.borrow_mut();
        decide(
            local,
            &ctx.settings,
            &mut session,
            tool,
            facts,
            args,
            args_len,
        )
    };
    conclude(ctx, tool, decision, started, trace)
}

/// The catalog's facts about `tool`, or the answer for arguments its schema refuses
/// (recorded in the audit log, never forwarded).
fn catalog_gate(
    ctx: &Ctx,
    tool: &str,
    args: Option<&Value>,
    raw_id: &[u8],
) -> Result<ToolFacts, Vec<u8>> {
    // (The caller's `fetch_catalog` has read what the relay queued.)
    let mut catalog = ctx.catalog.borrow_mut();
    let facts = catalog.facts(tool);
    let Some(args) = args else {
        // Too large to read: decided by that limit alone.
        return Ok(facts);
    };
    match catalog.check(tool, args) {
        Ok(()) => Ok(facts),
        Err(refusal) => {
            drop(catalog);
            let why = refusal.to_string();
            // Observe mode forwards every call and records what would have happened
            // (without the values the client is shown: records never carry arguments).
            let decided = observe(
                ctx.settings.mode,
                Decision::new(Verdict::Block, refusal.recorded()).with_code("SCHEMA_INVALID"),
            );
            record(ctx, tool, &decided, Instant::now());
            if decided.decision.verdict == Verdict::Allow {
                return Ok(facts);
            }
            ctx.emit("TOOL_CALL_BLOCK", tool, Some(&decided.decision));
            Err(answers::schema_refused(
                raw_id,
                tool,
                &why,
                ctx.protocol.borrow().as_deref(),
            ))
        }
    }
}

/// Reads what the relay saw of the catalog since the last call, in order.
fn sync_catalog(ctx: &Ctx) {
    let (events, hello) = ctx.calls.borrow().take_catalog_events();
    if let Some((protocol, server_name)) = hello {
        *ctx.protocol.borrow_mut() = Some(protocol);
        *ctx.server_name.borrow_mut() = server_name;
        ctx.initialized.set(true);
        // A session that began with initialize is not stateless.
        *ctx.envelope.borrow_mut() = None;
    }
    if events.is_empty() {
        return;
    }
    let inventory = ctx.gov.borrow().as_ref().and_then(|g| g.inventory_sender());
    let mut catalog = ctx.catalog.borrow_mut();
    for event in events {
        match event {
            CatalogEvent::Page(line) => {
                catalog.absorb_page(&line);
                if let Some(inventory) = &inventory {
                    inventory.send(crate::govapi::InventoryPage {
                        line,
                        pins: catalog.pin_states(),
                    });
                }
            }
            CatalogEvent::Changed => {
                catalog.forget();
                // What thoth listed itself no longer holds either.
                ctx.own_listing_done.set(false);
            }
            CatalogEvent::Unread => catalog.mark_unread(),
            CatalogEvent::Hidden(hidden) => {
                catalog.hide(&hidden.tool, &hidden.rule);
                let mut fields = serde_json::Map::new();
                fields.insert("agent".into(), json!(ctx.settings.agent_id));
                fields.insert("tool".into(), json!(hidden.tool));
                fields.insert("rule_ids".into(), json!([hidden.rule]));
                ctx.audit_event("tool_hidden", fields);
            }
        }
    }
    let report = catalog.take_pin_report();
    drop(catalog);
    report_pins(ctx, report);
}

/// Says what pinning found: one stderr line, one audit record and one telemetry
/// event per tool and definition (docs/architecture.md §4).
fn report_pins(ctx: &Ctx, report: crate::catalog::PinReport) {
    let agent = crate::logging::escaped(&ctx.settings.agent_id);
    for notice in report.notices {
        let tool = crate::logging::escaped(&notice.tool);
        let whose = if notice.managed {
            "the managed settings' pin"
        } else {
            "its pin"
        };
        match notice.state {
            PinState::Changed => tracing::warn!(
                "tool {tool} of agent {agent} changed its definition since it was pinned ({} is not {whose} {}): policies see resource.pin == \"changed\"; review with `thoth pins list --json`, then `thoth pins accept {agent} {tool} --digest {}`",
                short(&notice.digest),
                notice.pinned.as_deref().map_or("", short),
                notice.digest,
            ),
            _ => tracing::warn!(
                "tool {tool} of agent {agent} is new since this server was pinned: policies see resource.pin == \"new\"; review with `thoth pins list --json`, then `thoth pins accept {agent} {tool} --digest {}`",
                notice.digest,
            ),
        }
        let mut fields = serde_json::Map::new();
        fields.insert("agent".into(), json!(ctx.settings.agent_id));
        fields.insert("tool".into(), json!(notice.tool));
        fields.insert("pin".into(), json!(notice.state.as_str()));
        fields.insert("digest".into(), json!(notice.digest));
        fields.insert("pinned".into(), json!(notice.pinned));
        fields.insert("managed".into(), json!(notice.managed));
        ctx.audit_event("tool_pin", fields);
        let kind = match notice.state {
            PinState::Changed => "TOOL_DEFINITION_CHANGED",
            _ => "TOOL_DEFINITION_NEW",
        };
        ctx.emit(kind, &notice.tool, None);
    }
    for gone in report.gone {
        tracing::warn!(
            "tool {} of agent {agent} is pinned but no longer listed (renamed or removed)",
            crate::logging::escaped(&gone)
        );
        let mut fields = serde_json::Map::new();
        fields.insert("agent".into(), json!(ctx.settings.agent_id));
        fields.insert("tool".into(), json!(gone));
        fields.insert("pin".into(), json!("gone"));
        ctx.audit_event("tool_pin", fields);
        ctx.emit("TOOL_DEFINITION_GONE", &gone, None);
    }
}

/// A digest as messages show it: its first 12 hex digits.
fn short(digest: &str) -> &str {
    digest.get(..("sha256:".len() + 12)).unwrap_or(digest)
}

/// Reads what the relay queues for the catalog as soon as it is queued, so pins are
/// judged, reported and sent to the inventory when the server lists its tools, not
/// at the next call. Ends with the session.
pub async fn watch_catalog(ctx: Rc<Ctx>) {
    let signal = {
        let shared = ctx.calls.borrow().book.clone();
        crate::proxy::calls::book(&shared).catalog_signal.clone()
    };
    loop {
        signal.notified().await;
        sync_catalog(&ctx);
        settle_server_asks(&ctx).await;
    }
}

/// The last of what the relay queued, read before the session's audit log closes.
pub async fn settle_last(ctx: &Ctx) {
    sync_catalog(ctx);
    settle_server_asks(ctx).await;
}

/// Audits the server's requests the relay judged, and answers the server for those
/// the client must not see.
async fn settle_server_asks(ctx: &Ctx) {
    let (asked, answers, inspections) = {
        let shared = ctx.calls.borrow().book.clone();
        let mut book = super::calls::book(&shared);
        (
            std::mem::take(&mut book.server_asked),
            std::mem::take(&mut book.server_answers),
            std::mem::take(&mut book.inspections),
        )
    };
    for inspection in &inspections {
        // Names and counts only: never the text found.
        let mut fields = serde_json::Map::new();
        fields.insert("agent".into(), json!(ctx.settings.agent_id));
        fields.insert("action".into(), json!(inspection.action.as_str()));
        fields.insert("detections".into(), inspection.detections.to_json());
        fields.insert(
            "detector_versions".into(),
            super::result_inspection::versions(&inspection.detections),
        );
        fields.insert("redactions".into(), json!(inspection.redactions));
        ctx.audit_event("inspection", fields);
    }
    for judged in &asked {
        let mut fields = method_record(
            ctx,
            judged.method,
            &judged.target,
            &judged.decided,
            judged.started,
        );
        if let Some(key) = &judged.input_key {
            // One of the input requests of an `input_required` result.
            fields.insert("input_request".into(), json!(key));
        }
        ctx.audit_event("method", fields);
    }
    for mut answer in answers {
        answer.push(b'\n');
        ctx.out.send_server(answer).await;
    }
}

/// A MODIFY whose arguments the tool's schema refuses, as the BLOCK it becomes.
fn modified_refusal(ctx: &Ctx, decided: &Decided, tool: &str) -> Option<Decided> {
    let modified = decided
        .decision
        .modified_arguments
        .as_ref()
        .filter(|_| decided.decision.verdict == Verdict::Modify)?;
    let refusal = ctx.catalog.borrow_mut().check(tool, modified).err()?;
    Some(Decided {
        decision: Decision::new(
            Verdict::Block,
            format!("the enforcer's MODIFY was refused: {refusal}"),
        )
        .with_code("SCHEMA_INVALID"),
        would_be: None,
    })
}

/// The tool a hold was for (for the audit record of its resolution).
/// One audit record for a decision made since `started`.
fn record(ctx: &Ctx, tool: &str, decided: &Decided, started: Instant) {
    record_traced(ctx, tool, decided, started, None);
}

/// [`record`], with the call's span exported to OTLP (when on) in `trace`.
fn record_traced(
    ctx: &Ctx,
    tool: &str,
    decided: &Decided,
    started: Instant,
    trace: Option<CallTrace>,
) {
    let d = &decided.decision;
    if let Some(otlp) = ctx.otlp.borrow().as_ref() {
        export_decision(ctx, otlp, tool, decided, started, trace);
    }
    if let Some(gov) = ctx.gov.borrow().as_ref() {
        gov.counters.count(d.verdict.as_str());
    }
    ctx.audit.record(Record {
        agent: ctx.settings.agent_id.clone(),
        tool: tool.to_string(),
        decision: d.verdict.as_str().to_string(),
        reason: decided.would_be.as_ref().unwrap_or(d).reason.clone(),
        mode: ctx.settings.mode.as_str().to_string(),
        rule_ids: d.matched_rule_ids.clone(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        would_be: decided
            .would_be
            .as_ref()
            .map(|w| w.verdict.as_str().to_string()),
    });
    if let Some(would_be) = &decided.would_be {
        tracing::info!(
            tool,
            would_be = would_be.verdict.as_str(),
            "observe mode: forwarded a call policy would not allow"
        );
    }
}

/// A decision as OTLP sees it: a log record and the call's span, both with names,
/// decision, codes and rule ids as attributes (never arguments or results).
fn export_decision(
    ctx: &Ctx,
    otlp: &crate::otlp::Otlp,
    tool: &str,
    decided: &Decided,
    started: Instant,
    trace: Option<CallTrace>,
) {
    let d = &decided.decision;
    let end = crate::otlp::now_unix_nano();
    let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let session = ctx.session.borrow().id.clone();
    let mut attributes = vec![
        ("thoth.agent_id".to_string(), json!(ctx.settings.agent_id)),
        ("thoth.tenant_id".to_string(), json!(ctx.settings.tenant_id)),
        ("thoth.session_id".to_string(), json!(session)),
        ("thoth.user_id".to_string(), json!(ctx.settings.user_id)),
        (
            "thoth.endpoint_id".to_string(),
            json!(ctx.settings.endpoint_id),
        ),
        ("thoth.tool".to_string(), json!(tool)),
        // The code and rule ids, not the reason's text: a reason may quote an argument
        // (a schema refusal does).
        ("thoth.decision".to_string(), json!(d.verdict.as_str())),
        ("thoth.mode".to_string(), json!(ctx.settings.mode.as_str())),
        ("thoth.rule_ids".to_string(), json!(d.matched_rule_ids)),
    ];
    if let Some(code) = &d.decision_reason_code {
        attributes.push(("thoth.decision_reason_code".into(), json!(code)));
    }
    if let Some(would_be) = &decided.would_be {
        attributes.push(("thoth.would_be".into(), json!(would_be.verdict.as_str())));
    }
    let trace = trace.unwrap_or_else(|| CallTrace {
        context: crate::otlp::TraceContext::fresh(),
        span: crate::otlp::span_id(),
    });
    otlp.send(crate::otlp::Item::Log {
        time_unix_nano: end,
        name: "thoth.decision".into(),
        attributes: attributes.clone(),
        trace: Some((trace.context, trace.span)),
    });
    otlp.send(crate::otlp::Item::Span(Box::new(crate::otlp::CallSpan {
        trace: trace.context,
        span_id: trace.span,
        start_unix_nano: end.saturating_sub(elapsed),
        end_unix_nano: end,
        attributes,
        denied: d.verdict != Verdict::Allow,
    })));
}

/// The action for a decided call ([`action`]), with what follows from it: a forwarded
/// request is remembered (by `key`, its [`id_key`]) until the server answers it, and
/// telemetry hears of both.
fn settle<'f>(ctx: &Ctx, decided: &Decided, call: CallFrame<'f, '_>, key: String) -> Action<'f> {
    let (raw_id, tool) = (call.raw_id, call.tool);
    // What an enforcer MODIFYs a call into must pass the tool's own schema too.
    let unchecked_modify;
    let decided = match modified_refusal(ctx, decided, tool) {
        Some(blocked) => {
            unchecked_modify = blocked;
            &unchecked_modify
        }
        None => decided,
    };
    let action = {
        let session = ctx.session.borrow();
        let answering = Answering {
            session_id: &session.id,
            deny_style: ctx.settings.deny_style,
            max_frame_bytes: ctx.settings.max_frame_bytes,
        };
        action(decided, call, answering)
    };
    match &action {
        Action::Forward(_) => {
            ctx.calls.borrow_mut().forwarded(key, raw_id);
            ctx.emit("TOOL_CALL_POST", tool, Some(&decided.decision));
        }
        Action::Answer(_) => ctx.emit("TOOL_CALL_BLOCK", tool, Some(&decided.decision)),
    }
    action
}

/// A batch element's decision, made at once (no element is held): the same path as a
/// single call, with the element's bytes as the call.
async fn decide_element<'e>(
    ctx: &Ctx,
    frame: &[u8],
    element: &'e [u8],
    raw_id: &[u8],
    tc: &ToolCall,
) -> Action<'e> {
    let (args, len) = match checks::arguments(frame, tc) {
        Ok(parsed) => parsed,
        Err(refusal) => return Action::Answer(refused(frame, raw_id, &refusal)),
    };
    let tool = tc.name.as_str();
    if fetch_due(ctx, tool) {
        fetch_catalog(ctx, tool).await;
    }
    let facts = match catalog_gate(ctx, tool, args.as_ref(), raw_id) {
        Ok(facts) => facts,
        Err(answer) => return Action::Answer(answer),
    };
    ctx.emit("TOOL_CALL_PRE", tool, None);
    let decided = decide_and_record(ctx, tool, &facts, args.as_ref(), len, None).await;
    let call = CallFrame {
        frame: Cow::Borrowed(element),
        raw_id,
        tool,
    };
    settle(ctx, &decided, call, id_key(raw_id))
}

/// What happens to one batch element.
enum Planned {
    /// Goes to the server as is.
    Forward(Vec<u8>),
    /// Answered by thoth.
    Answer(Vec<u8>),
    /// A tools/call request to decide: its bytes, raw id and call.
    Decide {
        element: Vec<u8>,
        raw_id: Vec<u8>,
        call: Box<ToolCall>,
    },
    /// Dropped (a tools/call notification).
    Drop,
}

/// Classifies each element of a batch frame.
fn plan_batch(ctx: &Ctx, frame: &[u8]) -> Vec<Planned> {
    let Ok(Message::Batch(batch)) = thoth_core::scan(frame) else {
        return Vec::new();
    };
    batch
        .elements()
        .map(|element| match element {
            Err(e) => Planned::Answer(answers::rejected(frame, &e)),
            Ok(Message::Request(call))
                if super::calls::is_own_key(&id_key(
                    call.id().map_or(&b"null"[..], |id| id.raw),
                )) =>
            {
                Planned::Answer(reserved_id(call.id().map_or(&b"null"[..], |id| id.raw)))
            }
            Ok(Message::Request(call)) if call.is_tool_call() => {
                let raw_id = call.id().map_or(&b"null"[..], |id| id.raw);
                match checks::tool_call(&call) {
                    Ok(tc) => Planned::Decide {
                        element: call.span().of(frame).to_vec(),
                        raw_id: raw_id.to_vec(),
                        call: Box::new(tc),
                    },
                    Err(refusal) => Planned::Answer(refused(frame, raw_id, &refusal)),
                }
            }
            Ok(Message::Notification(call)) if call.is_tool_call() => {
                tracing::warn!("dropped a tools/call notification inside a batch");
                Planned::Drop
            }
            // Governed as a single request is (its params are the element's).
            Ok(Message::Request(call)) if governable_method(&call).is_some() => {
                let method = governable_method(&call).unwrap_or_default();
                match govern(ctx, frame, &call, method) {
                    Governed::Answer(answer) => Planned::Answer(answer),
                    Governed::Pass => Planned::Forward(call.span().of(frame).to_vec()),
                    // The enforcer is asked about single requests only (batches are
                    // 2025-03-26's): refused, never guessed (observe mode forwards).
                    Governed::Ask { call: asked, .. } => {
                        let decided = observe(
                            ctx.settings.mode,
                            Decision::new(
                                Verdict::Block,
                                format!("{method} is not asked of the enforcer inside a batch"),
                            )
                            .with_code("NOT_DECIDED_IN_BATCH"),
                        );
                        record_method(ctx, method, asked.target.label(), &decided, Instant::now());
                        if decided.decision.verdict == Verdict::Allow {
                            Planned::Forward(call.span().of(frame).to_vec())
                        } else {
                            Planned::Answer(answers::error(
                                Some(call.id().map_or(&b"null"[..], |id| id.raw)),
                                answers::BLOCKED,
                                "Blocked by Thoth policy: not decided inside a batch",
                                Some(&json!({ "reason": "not_decided_in_batch" })),
                            ))
                        }
                    }
                }
            }
            Ok(Message::Request(call) | Message::Notification(call)) => {
                Planned::Forward(call.span().of(frame).to_vec())
            }
            Ok(Message::Response(r)) if super::calls::is_own_key(&id_key(r.id().raw)) => {
                ctx.questions
                    .answered(&id_key(r.id().raw), r.span().of(frame));
                Planned::Drop
            }
            Ok(Message::Response(r)) => Planned::Forward(r.span().of(frame).to_vec()),
            Ok(Message::Batch(_)) => Planned::Drop,
        })
        .collect()
}

/// The batch for the server (allowed elements, byte-identical, in order) and the one
/// array of answers for the client.
fn assemble(planned: Vec<Planned>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut forward: Vec<Vec<u8>> = Vec::new();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    for p in planned {
        match p {
            Planned::Forward(bytes) => forward.push(bytes),
            Planned::Answer(bytes) => answers.push(bytes),
            Planned::Decide { .. } | Planned::Drop => {}
        }
    }
    let join = |parts: Vec<Vec<u8>>, newline: bool| {
        let mut out = b"[".to_vec();
        out.extend_from_slice(&parts.join(&b","[..]));
        out.push(b']');
        if newline {
            out.push(b'\n');
        }
        out
    };
    (
        (!forward.is_empty()).then(|| join(forward, true)),
        (!answers.is_empty()).then(|| join(answers, false)),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn element(i: usize, kind: u8) -> String {
        match kind % 5 {
            0 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"allow_{i}"}}}}"#
            ),
            1 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"deny_{i}"}}}}"#
            ),
            2 => format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#),
            3 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"allow_{i}","arguments":{{"a":1,"a":2}}}}}}"#
            ),
            _ => format!(r#"{{"jsonrpc":"2.0","id":{i},"Method":"x"}}"#),
        }
    }

    /// A policy that allows the tools whose names start with `allow` (written once per
    /// test process, so no test reads it half-written).
    fn allow_prefix() -> std::path::PathBuf {
        static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            let path = std::env::temp_dir()
                .join(format!("thoth-allow-prefix-{}.cedar", std::process::id()));
            std::fs::write(
                &path,
                "@id(\"allow-prefix\")\npermit (principal, action, resource) when { resource.name like \"allow*\" };\n",
            )
            .unwrap();
            path
        })
        .clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Through the real pumps (the production batch path, decisions by the real
        /// engine): a batch reaches the server as exactly its allowed elements, byte for
        /// byte and in order, and the client gets one array with an answer for each of
        /// the others.
        #[test]
        fn a_batch_forwards_exactly_the_allowed_elements(kinds in prop::collection::vec(any::<u8>(), 1..12)) {
            let elements: Vec<String> = kinds.iter().enumerate().map(|(i, k)| element(i, *k)).collect();
            let frame = format!("[{}]\n", elements.join(" , "));
            let (to_server, to_client) =
                crate::proxy::run_bytes(&allow_prefix(), frame.as_bytes(), 4096, false).unwrap();
            let want_forward: Vec<&String> = elements.iter().zip(&kinds).filter(|(_, k)| *k % 5 == 0 || *k % 5 == 2).map(|(e, _)| e).collect();
            let want_answers = kinds.iter().filter(|k| matches!(*k % 5, 1 | 3 | 4)).count();
            if want_forward.is_empty() {
                prop_assert!(to_server.is_empty(), "{}", String::from_utf8_lossy(&to_server));
            } else {
                let want = format!("[{}]\n", want_forward.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","));
                prop_assert_eq!(String::from_utf8(to_server).unwrap(), want);
            }
            if want_answers == 0 {
                prop_assert!(to_client.is_empty(), "{}", String::from_utf8_lossy(&to_client));
            } else {
                let answers: Vec<Value> = serde_json::from_slice(&to_client).unwrap();
                prop_assert_eq!(answers.len(), want_answers);
                for a in &answers {
                    let code = &a["error"]["code"];
                    prop_assert!(*code == -32001 || *code == -32600 || *code == -32602, "{}", a);
                }
            }
        }
    }
}
