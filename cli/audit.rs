//! The audit log: every decision as one JSON line, chained with SHA-256 per session.
//!
//! Files live at `~/.thoth/audit/<UTC date>/<session id>.jsonl`, one per `thoth run`,
//! so proxies started together never interleave a chain. Each line is a JSON object
//! whose last member is `"hash"`: the SHA-256 of the line's bytes before that member
//! (the object up to, and without, `,"hash":…`). Each record carries `prev_hash`, the
//! previous line's hash; the first record's `prev_hash` is the SHA-256 of the session
//! id. Records never hold tool arguments or results. Besides decisions, a session's
//! log holds events: `records_dropped`, and `relay_changes` at the end of a session in
//! which thoth changed relayed bytes (canonical-line substitutions) or kept server
//! lines from the client (diverted or cut off), with a count of each kind.
//!
//! Writing happens on a dedicated thread behind a bounded queue, so the pumps never
//! wait for the disk. A record that does not fit in the queue is dropped and counted;
//! the count is written into the next record (`dropped_before`) and reported on stderr.
//! `verify` detects edited, inserted, removed or reordered lines; it cannot detect a
//! truncated tail (nothing after the last line vouches for it). The chain is anchored
//! on the session id inside the records, never on the file's name, so a log copied
//! under another name verifies the same.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Records queued for the writer thread at most.
pub const QUEUE: usize = 1024;
/// How long [`AuditLog::finish`] waits for queued records to reach the disk.
const FINISH: std::time::Duration = std::time::Duration::from_secs(2);

/// How long after the first record queued to a sleeping writer it is woken. Queuing
/// never wakes a thread itself: a decision's round trip pays no context switch, and
/// the records of a burst are written (and flushed) together.
const WAKE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// The next record; `None` once every sender is gone and the queue is empty. With
/// nothing queued the writer parks with no timeout (an idle session wakes no thread)
/// after saying so in `awake`, so that the next sender schedules its wake-up.
fn next_record(rx: &std::sync::mpsc::Receiver<Queued>, awake: &AtomicBool) -> Option<Queued> {
    use std::sync::mpsc::TryRecvError;
    loop {
        match rx.try_recv() {
            Ok(entry) => return Some(entry),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        awake.store(false, Ordering::SeqCst);
        // A record queued before that store saw the writer awake and scheduled nothing.
        match rx.try_recv() {
            Ok(entry) => {
                awake.store(true, Ordering::SeqCst);
                return Some(entry);
            }
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => std::thread::park(),
        }
    }
}

/// Wakes the writer [`WAKE_DELAY`] from now, on the sender's runtime (the proxy's);
/// at once when there is none.
fn wake_later(writer: &std::thread::Thread) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            // Unparks when dropped: also when the runtime shuts down before the delay.
            struct Wake(std::thread::Thread);
            impl Drop for Wake {
                fn drop(&mut self) {
                    self.0.unpark();
                }
            }
            let wake = Wake(writer.clone());
            runtime.spawn(async move {
                tokio::time::sleep(WAKE_DELAY).await;
                drop(wake);
            });
        }
        Err(_) => writer.unpark(),
    }
}

/// What the writer thread is sent.
enum Queued {
    Decision(Record),
    /// An event record: its name and members.
    Event(&'static str, Map<String, Value>),
}

/// One decision, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    pub agent: String,
    pub tool: String,
    pub decision: String,
    pub reason: String,
    pub mode: String,
    pub rule_ids: Vec<String>,
    pub latency_us: u64,
    /// In observe mode: what would have been decided.
    pub would_be: Option<String>,
}

/// The writer thread, and the channel on which it says it has finished.
struct Writer {
    thread: std::thread::JoinHandle<()>,
    finished: std::sync::mpsc::Receiver<()>,
}

/// What a sender needs to wake a sleeping writer.
struct Waker {
    thread: std::thread::Thread,
    /// The writer is awake, or its wake-up is scheduled.
    awake: Arc<AtomicBool>,
}

/// Sends records to the writer thread.
pub struct AuditLog {
    tx: std::sync::Mutex<Option<SyncSender<Queued>>>,
    writer: std::sync::Mutex<Option<Writer>>,
    waker: Option<Waker>,
    dropped: Arc<AtomicU64>,
    /// The session's file (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub path: PathBuf,
}

impl AuditLog {
    /// Opens `<dir>/<UTC date>/<session>.jsonl` and starts the writer thread.
    pub fn start(dir: &Path, session_id: &str) -> std::io::Result<Self> {
        Self::start_with_queue(dir, session_id, QUEUE)
    }

    fn start_with_queue(dir: &Path, session_id: &str, queue: usize) -> std::io::Result<Self> {
        let folder = dir.join(crate::clock::today_utc());
        crate::private_files::create_dirs(&folder)?;
        let path = folder.join(format!("{session_id}.jsonl"));
        let file_path = path.clone();
        let (tx, rx) = sync_channel::<Queued>(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let session = session_id.to_string();
        let (finished_tx, finished) = sync_channel::<()>(1);
        let awake = Arc::new(AtomicBool::new(true));
        let writer_awake = awake.clone();
        let thread = std::thread::Builder::new()
            .name("thoth-audit".into())
            .spawn(move || {
                // Dropped on every way out: `finish` stops waiting.
                let _finished = finished_tx;
                // The file is created with the first record: a session without tool
                // calls leaves no empty file behind.
                let Some(first) = next_record(&rx, &writer_awake) else {
                    return;
                };
                let file = match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&file_path)
                {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!("cannot open the audit log {}: {e}", file_path.display());
                        return;
                    }
                };
                let mut writer = ChainWriter::new(std::io::BufWriter::new(file), &session);
                let mut next = Some(first);
                while let Some(entry) = next.take() {
                    let dropped_before = counter.swap(0, Ordering::Relaxed);
                    let written = match &entry {
                        Queued::Decision(record) => writer.write(record, dropped_before),
                        Queued::Event(name, fields) => {
                            writer.write_event(name, fields, dropped_before)
                        }
                    };
                    if written.is_err() {
                        tracing::error!("audit log write failed; later records are lost");
                        return;
                    }
                    // Write what is queued in one go; flush when the queue is empty.
                    next = match rx.try_recv() {
                        Ok(record) => Some(record),
                        Err(_) => {
                            let _ = writer.flush();
                            next_record(&rx, &writer_awake)
                        }
                    };
                }
                let lost = counter.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writer.write_dropped(lost);
                }
                let _ = writer.flush();
            })?;
        let waker = Some(Waker {
            thread: thread.thread().clone(),
            awake,
        });
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            writer: std::sync::Mutex::new(Some(Writer { thread, finished })),
            waker,
            dropped,
            path,
        })
    }

    /// Closes the queue and waits (at most 2 s) until every queued record is written.
    pub fn finish(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(Writer { thread, finished }) = writer {
            // The queue is closed: the writer drains it and ends.
            thread.thread().unpark();
            // The sender is dropped when the thread ends, which wakes this at once.
            let _ = finished.recv_timeout(FINISH);
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }

    /// Queues a record; never blocks.
    pub fn record(&self, record: Record) {
        self.send(Queued::Decision(record));
    }

    /// Queues an event record (`"event":name` and `fields`); never blocks.
    pub fn event(&self, name: &'static str, fields: Map<String, Value>) {
        self.send(Queued::Event(name, fields));
    }

    fn send(&self, record: Queued) {
        let Ok(guard) = self.tx.lock() else { return };
        let Some(tx) = guard.as_ref() else { return };
        match tx.try_send(record) {
            Ok(()) => {
                if let Some(waker) = &self.waker
                    && !waker.awake.swap(true, Ordering::SeqCst)
                {
                    wake_later(&waker.thread);
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "audit queue full: dropping records (the count is recorded in the chain)"
                    );
                }
            }
        }
    }

    /// Records dropped so far and not yet written into the chain.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A log that records nothing (doctor).
    pub fn disabled() -> Self {
        Self {
            tx: std::sync::Mutex::new(None),
            writer: std::sync::Mutex::new(None),
            waker: None,
            dropped: Arc::new(AtomicU64::new(0)),
            path: PathBuf::new(),
        }
    }
}

impl Drop for AuditLog {
    /// Without [`AuditLog::finish`] the writer still drains what is queued and ends.
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(waker) = &self.waker {
            waker.thread.unpark();
        }
    }
}

struct ChainWriter<W: Write> {
    out: W,
    session: String,
    prev: String,
    seq: u64,
    /// The line being written (reused: one allocation for the session).
    text: Vec<u8>,
}

/// A decision line, in the order of its members on disk (a struct, not a map: the
/// writer serializes a record without building one).
#[derive(serde::Serialize)]
struct DecisionLine<'a> {
    time: &'a str,
    session: &'a str,
    agent: &'a str,
    tool: &'a str,
    decision: &'a str,
    reason: &'a str,
    mode: &'a str,
    rule_ids: &'a [String],
    latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_be: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    dropped_before: u64,
    seq: u64,
    prev_hash: &'a str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<W: Write> ChainWriter<W> {
    fn new(out: W, session: &str) -> Self {
        Self {
            out,
            session: session.to_string(),
            prev: hex::encode(Sha256::digest(session.as_bytes())),
            seq: 0,
            text: Vec::with_capacity(512),
        }
    }

    fn append(&mut self, mut body: Map<String, Value>) -> std::io::Result<()> {
        self.seq += 1;
        body.insert("seq".into(), json!(self.seq));
        body.insert("prev_hash".into(), json!(self.prev));
        self.text.clear();
        serde_json::to_writer(&mut self.text, &Value::Object(body))?;
        self.seal()
    }

    /// Writes `self.text` (one JSON object) with its `hash` member last, and chains it.
    fn seal(&mut self) -> std::io::Result<()> {
        let hash = hex::encode(Sha256::digest(&self.text));
        let head = self.text.strip_suffix(b"}").unwrap_or(&self.text);
        self.out.write_all(head)?;
        writeln!(self.out, ",\"hash\":\"{hash}\"}}")?;
        self.prev = hash;
        Ok(())
    }

    fn header(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("time".into(), json!(crate::clock::now_rfc3339()));
        m.insert("session".into(), json!(self.session));
        m
    }

    fn write(&mut self, r: &Record, dropped_before: u64) -> std::io::Result<()> {
        self.seq += 1;
        let time = crate::clock::now_rfc3339();
        let line = DecisionLine {
            time: &time,
            session: &self.session,
            agent: &r.agent,
            tool: &r.tool,
            decision: &r.decision,
            reason: &r.reason,
            mode: &r.mode,
            rule_ids: &r.rule_ids,
            latency_us: r.latency_us,
            would_be: r.would_be.as_deref(),
            dropped_before,
            seq: self.seq,
            prev_hash: &self.prev,
        };
        self.text.clear();
        serde_json::to_writer(&mut self.text, &line)?;
        self.seal()
    }

    fn write_event(
        &mut self,
        name: &str,
        fields: &Map<String, Value>,
        dropped_before: u64,
    ) -> std::io::Result<()> {
        let mut m = self.header();
        m.insert("event".into(), json!(name));
        for (key, value) in fields {
            m.insert(key.clone(), value.clone());
        }
        if dropped_before > 0 {
            m.insert("dropped_before".into(), json!(dropped_before));
        }
        self.append(m)
    }

    fn write_dropped(&mut self, count: u64) -> std::io::Result<()> {
        let mut m = self.header();
        m.insert("event".into(), json!("records_dropped"));
        m.insert("dropped_before".into(), json!(count));
        self.append(m)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Why one file does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The chain is broken: a line was edited, removed, inserted or reordered.
    Chain,
    /// The file could not be read (a verdict on the disk, not on the log).
    Unreadable,
}

/// The first problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub path: PathBuf,
    pub line: usize,
    pub why: String,
    pub fault: Fault,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.why)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.why)
        }
    }
}

/// A file whose chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// The session its records name.
    pub session: String,
    /// The file's name is not `<session>.jsonl` (a copy under another name).
    pub renamed: bool,
}

/// Verifies one audit file; returns its records' count and session.
///
/// The chain starts from the session id the first record names, not from the file's
/// name: a copy under another name verifies the same, and an edit is reported on the
/// line it touched. (Earlier releases wrote the same session id in both places, so
/// their logs verify unchanged.) Every record must name that same session. An empty
/// file is broken: thoth creates a log with its first record, so an empty one was
/// truncated.
pub fn verify_file(path: &Path) -> Result<Verified, Broken> {
    let broken = |line: usize, why: String| Broken {
        path: path.to_path_buf(),
        line,
        why,
        fault: Fault::Chain,
    };
    let unreadable = |line: usize, e: std::io::Error| Broken {
        path: path.to_path_buf(),
        line,
        why: e.to_string(),
        fault: Fault::Unreadable,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(0, e))?;
    let mut session: Option<String> = None;
    let mut prev = String::new();
    let mut count = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(broken(n, "not UTF-8: the line was edited".into()));
            }
            Err(e) => return Err(unreadable(n, e)),
        };
        let Some(cut) = line.rfind(",\"hash\":\"") else {
            return Err(broken(n, "no hash".into()));
        };
        let (body, tail) = line.split_at(cut);
        let Some(hash) = tail
            .strip_prefix(",\"hash\":\"")
            .and_then(|t| t.strip_suffix("\"}"))
        else {
            return Err(broken(n, "malformed hash member".into()));
        };
        let signed = format!("{body}}}");
        if hex::encode(Sha256::digest(signed.as_bytes())) != hash {
            return Err(broken(n, "hash mismatch: the line was edited".into()));
        }
        let record: Value =
            serde_json::from_str(&signed).map_err(|e| broken(n, format!("not JSON: {e}")))?;
        let Some(named) = record["session"].as_str() else {
            return Err(broken(n, "no session member".into()));
        };
        let session = session.get_or_insert_with(|| {
            prev = hex::encode(Sha256::digest(named.as_bytes()));
            named.to_string()
        });
        if record["prev_hash"] != Value::String(prev.clone()) {
            let why = if n == 1 {
                "prev_hash is not the session's first: lines were removed from the start"
            } else {
                "prev_hash does not match the previous line: lines were removed, inserted or reordered"
            };
            return Err(broken(n, why.into()));
        }
        if named != session.as_str() {
            return Err(broken(n, "record belongs to another session".into()));
        }
        prev = hash.to_string();
        count += 1;
    }
    let Some(session) = session else {
        return Err(broken(
            0,
            "empty: thoth writes a log with its first record, so this one was truncated".into(),
        ));
    };
    let renamed = path.file_stem() != Some(std::ffi::OsStr::new(&session));
    Ok(Verified {
        records: count,
        session,
        renamed,
    })
}

/// Why there is nothing to give a verdict on.
#[derive(Debug, thiserror::Error)]
pub enum NothingToVerify {
    #[error("{}: no such file or directory", .0.display())]
    Missing(PathBuf),
    #[error("{}: nothing to verify (no .jsonl audit file under it)", .0.display())]
    Empty(PathBuf),
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file's verdict: what verified, or the first problem in it.
pub type Verdict = (PathBuf, Result<Verified, Broken>);

/// Verifies a file or every `.jsonl` file under a directory, each on its own (in
/// path order).
pub fn verify_path(path: &Path) -> Result<Vec<Verdict>, NothingToVerify> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NothingToVerify::Missing(path.to_path_buf()),
        _ => NothingToVerify::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Ok(vec![(path.to_path_buf(), verify_file(path))]);
    }
    let mut files = Vec::new();
    collect_jsonl(path, &mut files).map_err(|source| NothingToVerify::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(NothingToVerify::Empty(path.to_path_buf()));
    }
    files.sort();
    // A session's log is one file: a second file with the same session is a copy or a
    // substitute for another session's log.
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    Ok(files
        .into_iter()
        .map(|f| {
            let verdict = verify_file(&f).and_then(|v| match seen.get(&v.session) {
                Some(first) => Err(Broken {
                    path: f.clone(),
                    line: 0,
                    why: format!(
                        "holds session {}, as {} does: a copy of a log, or one put in another's place",
                        v.session,
                        first.display()
                    ),
                    fault: Fault::Chain,
                }),
                None => {
                    seen.insert(v.session.clone(), f.clone());
                    Ok(v)
                }
            });
            (f, verdict)
        })
        .collect())
}

fn collect_jsonl(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_jsonl(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tool: &str) -> Record {
        Record {
            agent: "a".into(),
            tool: tool.into(),
            decision: "ALLOW".into(),
            reason: "r".into(),
            mode: "block".into(),
            rule_ids: vec!["p0".into()],
            latency_us: 3,
            would_be: None,
        }
    }

    /// A decision line is the object the map-built lines of earlier releases were:
    /// the same members in the same order, the same bytes.
    #[test]
    fn decision_lines_keep_their_members_and_order() {
        let mut w = ChainWriter::new(Vec::new(), "s0");
        let mut r = record("read");
        r.would_be = Some("BLOCK".into());
        w.write(&r, 2).unwrap();
        let line = String::from_utf8(w.out.clone()).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "time",
                "session",
                "agent",
                "tool",
                "decision",
                "reason",
                "mode",
                "rule_ids",
                "latency_us",
                "would_be",
                "dropped_before",
                "seq",
                "prev_hash",
                "hash"
            ]
        );
        let mut m = v.as_object().unwrap().clone();
        m.remove("hash");
        let head = line.split(",\"hash\":").next().unwrap();
        assert_eq!(format!("{head}}}"), Value::Object(m).to_string());
    }

    #[test]
    fn chain_verifies_and_detects_edits_and_removals() {
        let dir = std::env::temp_dir().join(format!("thoth-audit-unit-{}", std::process::id()));
        let path = dir.join("s1.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = ChainWriter::new(std::fs::File::create(&path).unwrap(), "s1");
        for t in ["read", "write", "exec"] {
            w.write(&record(t), 0).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        assert_eq!(
            verify_file(&path).map(|v| (v.records, v.renamed)),
            Ok((3, false))
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"write\"", "\"wrote\"", 1)).unwrap();
        assert_eq!(verify_file(&path).unwrap_err().line, 2);
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.why.contains("prev_hash"));
        // Under another name, an edit is still found on the line it touched.
        std::fs::write(&path, text.replacen("\"write\"", "\"wrote\"", 1)).unwrap();
        let renamed = dir.join("copy-for-review.jsonl");
        std::fs::rename(&path, &renamed).unwrap();
        let err = verify_file(&renamed).unwrap_err();
        assert_eq!((err.line, err.fault), (2, Fault::Chain), "{err}");
        assert!(err.why.starts_with("hash mismatch"), "{err}");
        std::fs::write(&renamed, &text).unwrap();
        let copy = verify_file(&renamed).unwrap();
        assert_eq!(
            (copy.records, copy.session.as_str(), copy.renamed),
            (3, "s1", true)
        );
        // Beside its original, the copy is flagged; an emptied log is broken.
        std::fs::write(dir.join("s1.jsonl"), &text).unwrap();
        let verdicts = verify_path(&dir).unwrap();
        let flagged: Vec<_> = verdicts.iter().filter(|(_, v)| v.is_err()).collect();
        assert_eq!(flagged.len(), 1, "{verdicts:?}");
        assert!(
            flagged[0]
                .1
                .as_ref()
                .unwrap_err()
                .why
                .contains("holds session s1")
        );
        std::fs::remove_file(dir.join("s1.jsonl")).unwrap();
        std::fs::write(dir.join("s9.jsonl"), "").unwrap();
        let empty = verify_file(&dir.join("s9.jsonl")).unwrap_err();
        assert!(empty.why.starts_with("empty"), "{empty}");
        std::fs::remove_file(dir.join("s9.jsonl")).unwrap();
        // Without its first line, the chain does not start where a session starts.
        std::fs::write(&renamed, format!("{}\n{}\n", lines[1], lines[2])).unwrap();
        let err = verify_file(&renamed).unwrap_err();
        assert_eq!(err.line, 1, "{err}");
        assert!(err.why.contains("removed from the start"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_the_count_lands_in_the_chain() {
        let dir = std::env::temp_dir().join(format!("thoth-audit-queue-{}", std::process::id()));
        // A queue of one: a burst overflows it.
        let log = AuditLog::start_with_queue(&dir, "s2", 1).unwrap();
        for _ in 0..2000 {
            log.record(record("burst"));
        }
        let path = log.path.clone();
        log.finish();
        // The writer thread finishes once every sender is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let total = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let written = text.lines().count();
            let dropped: u64 = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v["dropped_before"].as_u64())
                .sum();
            let burst = text.lines().filter(|l| l.contains("\"burst\"")).count() as u64;
            if burst + dropped == 2000 || std::time::Instant::now() > deadline {
                break (burst, dropped, written);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(
            total.0 + total.1,
            2000,
            "every record is either written or counted: {total:?}"
        );
        assert!(total.1 > 0, "the burst overflowed the queue");
        assert!(verify_file(&path).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
