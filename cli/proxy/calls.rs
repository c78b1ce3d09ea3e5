//! What the proxy remembers between frames: calls pending a decision (cancellable,
//! bounded), and requests forwarded to the server and not yet answered (so they can
//! be answered if the server dies).

use std::collections::HashMap;

use tokio::task::AbortHandle;

/// At most this many calls wait for their decision; more are answered "busy".
pub const MAX_PENDING: usize = 256;
/// Forwarded requests remembered for an answer if the server dies.
pub const MAX_IN_FLIGHT: usize = 4096;
/// tools/list and initialize requests watched at most.
const MAX_WATCHED: usize = 64;
/// Catalog events waiting for the client pump at most (pages beyond are dropped: their
/// tools are then not in the catalog, which the policy sees).
const MAX_CATALOG_EVENTS: usize = 256;
/// Judged server requests waiting for the audit log at most (the oldest record goes
/// first; the server's answers are kept apart and never dropped below that bound).
pub const MAX_SERVER_ASKED: usize = 4096;
/// Hidden tools waiting for the client pump at most (past it, every tool counts as
/// changed for the session).
const MAX_HIDDEN_EVENTS: usize = 65_536;
/// Bytes of tools/list pages waiting for the client pump at most.
const MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;

/// What the relay saw for the session's tool catalog, in the order it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// A whole `tools/list` response line (one page).
    Page(Vec<u8>),
    /// `notifications/tools/list_changed`: earlier pages no longer hold.
    Changed,
    /// A tool left out of a listing relayed to the client (for the audit log).
    Hidden(super::hide::Hidden),
    /// A listing reached the client without being read (too long, not watched, or
    /// dropped from this queue).
    Unread,
}

/// The id namespace of thoth's own requests to the server: `"thoth:<uuid>"`.
pub const OWN_ID_PREFIX: &str = "thoth:";

/// Whether an id key (see `id_key`) is in thoth's own namespace.
pub fn is_own_key(key: &str) -> bool {
    key.strip_prefix('"')
        .is_some_and(|k| k.starts_with(OWN_ID_PREFIX))
}

/// A JSON-RPC id normalised so `"a"` and `"\u0061"` are the same key.
pub fn id_key(raw: &[u8]) -> String {
    if raw.contains(&b'\\') {
        serde_json::from_slice::<serde_json::Value>(raw)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

/// A call waiting for its decision.
pub struct Pending {
    pub raw_id: Vec<u8>,
    /// Still waiting for its decision (counts toward the busy bound).
    pub deciding: bool,
    pub abort: Option<AbortHandle>,
}

/// What the server → client relay and the client side share: requests forwarded and
/// not yet answered, tools/list requests watched for the inventory, diverted lines.
/// The relay runs on a thread of its own, so this sits behind a mutex (uncontended:
/// one lock per forwarded request and one per chunk read from the server).
#[derive(Debug, Default)]
pub struct RelayBook {
    /// id key → raw id of requests forwarded and not yet answered.
    pub in_flight: HashMap<String, Vec<u8>>,
    /// Ids of forwarded tools/list requests whose responses feed the catalog (and the
    /// GovAPI inventory).
    pub tools_list: std::collections::HashSet<String>,
    /// Ids of forwarded initialize requests (their response names the protocol
    /// revision).
    pub initialize: std::collections::HashSet<String>,
    /// Changes to `tools_list` or `initialize` (the relay re-reads them when it moves).
    pub watch_generation: u64,
    /// Catalog pages and changes seen by the relay, not yet read by the client pump.
    pub catalog_events: Vec<CatalogEvent>,
    /// Notified when an event is queued in `catalog_events` (the client side reads it
    /// at once, not only at the next call).
    pub catalog_signal: std::sync::Arc<tokio::sync::Notify>,
    /// Notified when the server answers one of thoth's own requests (after its line,
    /// if a listing, is queued in `catalog_events`).
    pub own_answered: std::sync::Arc<tokio::sync::Notify>,
    /// The protocol revision the server answered its latest initialize with, when the
    /// client pump has not read it yet.
    pub protocol_version: Option<String>,
    /// The server's name in that answer (`serverInfo.name`), when it gave one.
    pub server_name: Option<String>,
    /// Lines the server printed on stdout that were not JSON-RPC messages (diverted to
    /// stderr), including a partial last line.
    pub diverted_lines: u64,
    /// Streamed server lines cut off when they turned out not to be JSON-RPC.
    pub cut_lines: u64,
    /// Tools left out of the listings relayed to the client (`super::hide`).
    pub tools_hidden: u64,
    /// Id keys of the server's requests relayed to the client and not answered yet
    /// (at most [`MAX_PENDING`]: past it the server's requests are refused).
    pub server_pending: std::collections::HashSet<String>,
    /// The server's requests judged, not audited yet (at most [`MAX_SERVER_ASKED`]).
    pub server_asked: Vec<super::server_asks::Judged>,
    /// Answers for the server to requests the client must not see (at most
    /// [`MAX_SERVER_ASKED`]).
    pub server_answers: Vec<Vec<u8>>,
    /// Judged server requests (and inspected answers) the audit log could not be given
    /// (queue past its bound).
    pub server_asked_unrecorded: u64,
    /// Answers inspected, not audited yet (at most [`MAX_SERVER_ASKED`]).
    pub inspections: Vec<super::result_inspection::Inspection>,
    /// Canonical-line substitutions in frames forwarded to the server.
    pub client_rewrites: thoth_core::Rewrites,
    /// Canonical-line substitutions in lines relayed to the client.
    pub server_rewrites: thoth_core::Rewrites,
    /// The server's stdout has ended: every response it wrote has been relayed.
    pub server_eof: bool,
    /// The relay holds a line for the enforcer's decisions (remote mode): what the
    /// server wrote after it is not relayed yet, whether or not its stdout has ended.
    pub relay_paused: bool,
    /// Notified when `server_eof` is set (waiters need no timer).
    pub server_eof_signal: std::sync::Arc<tokio::sync::Notify>,
}

impl RelayBook {
    /// Queues a catalog event for the client pump, within [`MAX_CATALOG_EVENTS`] and
    /// [`MAX_CATALOG_BYTES`]: past them the oldest pages and changes go first (the
    /// catalog is then told a listing went unread). Hidden tools are never dropped
    /// (their calls must stay blocked) and count only against [`MAX_HIDDEN_EVENTS`].
    pub fn catalog_event(&mut self, event: CatalogEvent) {
        let size = |e: &CatalogEvent| match e {
            CatalogEvent::Page(line) => line.len(),
            CatalogEvent::Changed | CatalogEvent::Unread | CatalogEvent::Hidden(_) => 0,
        };
        let hidden = |e: &CatalogEvent| matches!(e, CatalogEvent::Hidden(_));
        if hidden(&event) {
            if self.catalog_events.iter().filter(|e| hidden(e)).count() >= MAX_HIDDEN_EVENTS {
                // Past every bound a session can legitimately reach: no tool can be
                // trusted as the client shows it.
                self.catalog_events.push(CatalogEvent::Unread);
                self.catalog_signal.notify_one();
                return;
            }
            self.catalog_events.push(event);
            self.catalog_signal.notify_one();
            return;
        }
        let mut held: usize = self.catalog_events.iter().map(size).sum::<usize>() + size(&event);
        let mut dropped = false;
        loop {
            let queued = self.catalog_events.iter().filter(|e| !hidden(e)).count();
            if queued < MAX_CATALOG_EVENTS && held <= MAX_CATALOG_BYTES {
                break;
            }
            let Some(oldest) = self.catalog_events.iter().position(|e| !hidden(e)) else {
                break;
            };
            held -= size(&self.catalog_events.remove(oldest));
            dropped = true;
        }
        if dropped {
            tracing::warn!(
                "tools/list responses pile up faster than thoth reads them: the oldest is left out of the catalog"
            );
            // First in line, so the catalog hears of it before anything newer.
            self.catalog_events.insert(0, CatalogEvent::Unread);
        }
        self.catalog_events.push(event);
        self.catalog_signal.notify_one();
    }
}

/// The shared book.
pub type SharedBook = std::sync::Arc<std::sync::Mutex<RelayBook>>;

/// Locks the book; a poisoned lock (a panic elsewhere) still yields the data.
pub fn book(shared: &SharedBook) -> std::sync::MutexGuard<'_, RelayBook> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
pub struct ProxyState {
    /// Calls not yet forwarded or answered (cancellable), by id.
    pending: HashMap<String, Pending>,
    /// Notified when the last pending call leaves `pending` (waiters need no timer).
    settled: std::rc::Rc<tokio::sync::Notify>,
    /// Shared with the server → client relay.
    pub book: SharedBook,
}

impl ProxyState {
    /// Whether a call with this [`id_key`] is pending.
    pub fn is_pending(&self, key: &str) -> bool {
        self.pending.contains_key(key)
    }

    /// Whether no call is pending.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Notified when the last pending call is gone.
    pub fn settled(&self) -> std::rc::Rc<tokio::sync::Notify> {
        self.settled.clone()
    }

    /// Remembers a call waiting for its decision.
    pub fn insert_pending(&mut self, key: String, pending: Pending) {
        self.pending.insert(key, pending);
    }

    /// The call's decision is made (it no longer counts toward the busy bound).
    pub fn decided(&mut self, key: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.deciding = false;
        }
    }

    /// Forgets a pending call (forwarded, answered or cancelled).
    pub fn remove_pending(&mut self, key: &str) -> Option<Pending> {
        let removed = self.pending.remove(key);
        if removed.is_some() && self.pending.is_empty() {
            self.settled.notify_one();
        }
        removed
    }

    /// Every pending call, forgotten.
    pub fn drain_pending(&mut self) -> Vec<Pending> {
        let drained = self.pending.drain().map(|(_, p)| p).collect();
        self.settled.notify_one();
        drained
    }

    /// Calls still waiting for their decision.
    pub fn deciding(&self) -> usize {
        self.pending.values().filter(|p| p.deciding).count()
    }

    /// Remembers a tools/list request (by its [`id_key`]) so its response feeds the
    /// catalog and the inventory.
    pub fn watch_tools_list(&mut self, key: &str) {
        let mut book = book(&self.book);
        // thoth's own requests are always watched: their answers are never relayed.
        if book.tools_list.len() < MAX_WATCHED || is_own_key(key) {
            book.tools_list.insert(key.to_string());
            book.watch_generation += 1;
        } else {
            // Its answer reaches the client unread: the catalog must not trust what it
            // holds as what the client shows.
            book.catalog_event(CatalogEvent::Unread);
        }
    }

    /// Remembers an initialize request so its response's protocol revision is known.
    pub fn watch_initialize(&mut self, key: &str) {
        let mut book = book(&self.book);
        if book.initialize.len() < MAX_WATCHED {
            book.initialize.insert(key.to_string());
            book.watch_generation += 1;
        }
    }

    /// The catalog events since the last call, and a protocol revision negotiated since
    /// with the server's name (one lock).
    pub fn take_catalog_events(&self) -> (Vec<CatalogEvent>, Option<(String, Option<String>)>) {
        let mut book = book(&self.book);
        let events = std::mem::take(&mut book.catalog_events);
        let hello = book
            .protocol_version
            .take()
            .map(|version| (version, book.server_name.take()));
        (events, hello)
    }

    /// Remembers a request forwarded to the server (by its [`id_key`], which the caller
    /// has already computed) until the server answers it.
    pub fn forwarded(&mut self, key: String, raw_id: &[u8]) {
        let mut book = book(&self.book);
        if book.in_flight.len() < MAX_IN_FLIGHT {
            book.in_flight.insert(key, raw_id.to_vec());
        }
    }
}
