//! Server → client: lines are relayed as they stream, and stdout carries nothing else
//! but the replies thoth writes between lines.
//!
//! The first non-whitespace byte of a line decides: `{` or `[` relays it, anything else
//! (a banner, a log line) is diverted whole to stderr and counted. Lines up to 4 MiB are
//! held until complete and scanned for bookkeeping (answered requests); longer ones are
//! streamed through as they arrive and never held whole. The server's output is not
//! strictly validated: the client's parser is the judge there. While a streamed line is
//! unfinished, replies wait (they would corrupt the line).

use thoth_core::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::state::{SharedBook, book, id_key};

/// Lines up to this size are held whole and scanned.
pub const SCAN_LIMIT: usize = 4 * 1024 * 1024;
/// Bytes read from the server at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes of a diverted line kept for the log.
const DIVERT_LOG_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Only whitespace so far.
    Start,
    /// A JSON line held for scanning.
    Held,
    /// A JSON line too long to hold: streaming.
    Streaming,
    /// Not JSON: going to stderr.
    Diverted,
}

/// Splits the server's stdout into relayed lines and diverted ones.
pub struct Relay {
    /// Scan relayed lines for responses (only worth it while requests are in flight).
    pub scan_responses: bool,
    /// Response ids whose whole line is wanted (tools/list for the inventory).
    pub capture: std::collections::HashSet<String>,
    line: Line,
    held: Vec<u8>,
    diverted_len: usize,
    scan_limit: usize,
}

/// What the relay found in a chunk, besides the bytes for stdout.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Ids of responses seen (normalised keys).
    pub answered: Vec<String>,
    /// Non-JSON lines (text, truncated for the log).
    pub diverted: Vec<String>,
    /// Whole lines answering an id in [`Relay::capture`].
    pub captured: Vec<Vec<u8>>,
}

impl Relay {
    pub fn new(scan_limit: usize) -> Self {
        Self {
            scan_responses: true,
            capture: std::collections::HashSet::new(),
            line: Line::Start,
            held: Vec::new(),
            diverted_len: 0,
            scan_limit,
        }
    }

    /// True while a streamed line is unfinished (nothing else may be written).
    pub fn mid_line(&self) -> bool {
        self.line == Line::Streaming
    }

    /// Feeds a chunk; bytes for the client are appended to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        while !data.is_empty() {
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
            self.segment(segment, out);
            if ends {
                self.end_line(out, found);
            }
            data = rest;
        }
    }

    fn whole_line(&mut self, line: &[u8], out: &mut Vec<u8>, found: &mut Found) {
        match line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r')) {
            None => {}
            Some(b'{' | b'[') => {
                if self.scan_responses {
                    bookkeeping(line, &self.capture, found);
                }
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            Some(_) => {
                let shown = &line[..line.len().min(DIVERT_LOG_LIMIT)];
                let mut text = String::from_utf8_lossy(shown)
                    .trim_end_matches('\r')
                    .trim_start()
                    .to_string();
                if line.len() > shown.len() {
                    text.push_str(&format!("… ({} bytes)", line.len()));
                }
                found.diverted.push(text);
            }
        }
    }

    /// End of stream: finish a partial line.
    pub fn finish(&mut self, out: &mut Vec<u8>, found: &mut Found) {
        if self.line != Line::Start {
            self.end_line(out, found);
        }
    }

    fn segment(&mut self, mut seg: &[u8], out: &mut Vec<u8>) {
        if self.line == Line::Start {
            match seg.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r')) {
                None => {
                    self.held.extend_from_slice(seg);
                    return;
                }
                Some(i) => {
                    self.line = if matches!(seg[i], b'{' | b'[') {
                        Line::Held
                    } else {
                        Line::Diverted
                    };
                    if self.line == Line::Diverted {
                        self.held.clear();
                        seg = &seg[i..];
                    }
                }
            }
        }
        match self.line {
            Line::Held if self.held.len() + seg.len() <= self.scan_limit => {
                self.held.extend_from_slice(seg)
            }
            Line::Held => {
                // Hand the held bytes over without copying them (no second 4 MiB buffer).
                if out.is_empty() {
                    std::mem::swap(out, &mut self.held);
                } else {
                    out.append(&mut self.held);
                }
                out.extend_from_slice(seg);
                self.held = Vec::new();
                self.line = Line::Streaming;
            }
            Line::Streaming => out.extend_from_slice(seg),
            Line::Diverted => {
                let room = DIVERT_LOG_LIMIT.saturating_sub(self.held.len());
                self.held.extend_from_slice(&seg[..seg.len().min(room)]);
                self.diverted_len += seg.len();
            }
            Line::Start => {}
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>, found: &mut Found) {
        match self.line {
            Line::Start => {}
            Line::Held => {
                if self.scan_responses {
                    bookkeeping(&self.held, &self.capture, found);
                }
                out.extend_from_slice(&self.held);
                out.push(b'\n');
            }
            Line::Streaming => out.push(b'\n'),
            Line::Diverted => {
                let mut text = String::from_utf8_lossy(&self.held)
                    .trim_end_matches('\r')
                    .to_string();
                if self.diverted_len > self.held.len() {
                    text.push_str(&format!("… ({} bytes)", self.diverted_len));
                }
                found.diverted.push(text);
            }
        }
        self.line = Line::Start;
        self.held.clear();
        if self.held.capacity() > 64 * 1024 {
            self.held = Vec::new();
        }
        self.diverted_len = 0;
    }
}

fn bookkeeping(line: &[u8], capture: &std::collections::HashSet<String>, found: &mut Found) {
    let mut wanted = false;
    let mut note = |m: &Message<'_>| {
        if let Message::Response(r) = m {
            let key = id_key(r.id().raw);
            wanted |= capture.contains(&key);
            found.answered.push(key);
        }
    };
    match thoth_core::scan(line) {
        Ok(Message::Batch(b)) => b.elements().flatten().for_each(|m| note(&m)),
        Ok(m) => note(&m),
        Err(_) => {}
    }
    if wanted {
        found.captured.push(line.to_vec());
    }
}

/// Relays the server's stdout and thoth's replies to the client's stdout until the
/// server's stdout has ended and every reply sender is gone.
pub async fn pump(
    shared: SharedBook,
    inventory: Option<crate::govapi::InventorySender>,
    mut from_server: impl AsyncRead + Unpin,
    mut replies: mpsc::Receiver<Vec<u8>>,
    mut stdout: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut relay = Relay::new(SCAN_LIMIT);
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
                        book(&shared).server_eof = true;
                    }
                    Ok(n) => {
                        let state = book(&shared);
                        relay.scan_responses = !state.in_flight.is_empty();
                        if relay.capture != state.tools_list {
                            relay.capture.clone_from(&state.tools_list);
                        }
                        drop(state);
                        relay.feed(chunk.get(..n).unwrap_or_default(), &mut out, &mut found)
                    }
                }
            }
            reply = replies.recv(), if replies_open && !relay.mid_line() => {
                match reply {
                    Some(frame) => {
                        out.extend_from_slice(&frame);
                        // Drain what is already queued into the same write.
                        while out.len() < 64 * 1024 {
                            match replies.try_recv() {
                                Ok(more) => out.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                    }
                    None => replies_open = false,
                }
            }
        }
        if !found.answered.is_empty() || !found.diverted.is_empty() {
            let mut state = book(&shared);
            for key in &found.answered {
                state.in_flight.remove(key);
                if !state.tools_list.is_empty() {
                    state.tools_list.remove(key);
                }
            }
            state.diverted_lines += found.diverted.len() as u64;
        }
        if let Some(inventory) = &inventory {
            for line in &found.captured {
                inventory.send(line);
            }
        }
        for text in found.diverted {
            tracing::warn!(target: "server", "non-JSON line on the server's stdout (diverted to stderr): {text}");
        }
        if !out.is_empty() {
            stdout.write_all(&out).await?;
            stdout.flush().await?;
            out.clear();
            if out.capacity() > 1024 * 1024 {
                out = Vec::with_capacity(64 * 1024);
            }
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

    #[test]
    fn json_lines_relay_and_text_is_diverted() {
        let (out, found) = relay_all(
            &[
                b"Server v1 starting\n{\"jsonrpc\":\"2.0\",\"id\":1,\"re",
                b"sult\":{}}\n  [1]\n\n   \nWARN x\n{\"partial\":1}",
            ],
            1024,
        );
        assert_eq!(
            out,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n  [1]\n{\"partial\":1}\n"
        );
        assert_eq!(found.answered, ["1"]);
        assert_eq!(found.diverted, ["Server v1 starting", "WARN x"]);
    }

    #[test]
    fn long_lines_stream_without_being_held() {
        let mut r = Relay::new(8);
        let (mut out, mut found) = (Vec::new(), Found::default());
        r.feed(b"{\"a\":\"0123456789", &mut out, &mut found);
        assert!(r.mid_line());
        assert_eq!(out, b"{\"a\":\"0123456789");
        out.clear();
        r.feed(b"abc\"}\n{}\n", &mut out, &mut found);
        assert!(!r.mid_line());
        assert_eq!(out, b"abc\"}\n{}\n");
        assert!(r.held.capacity() <= 64 * 1024);
    }
}
