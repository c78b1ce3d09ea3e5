//! What the proxy writes, in both directions: whole frames queued for the server's
//! stdin, and thoth's own frames queued for the client between the server's lines.
//!
//! The queues are bounded (a slow server slows the client; a slow client slows the
//! replies), and closing them is how the writer and the relay learn the session is
//! over. Nothing here decides anything or looks inside a frame.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::mpsc;

/// Frames queued for the server's stdin at most (a slow server slows the client).
const TO_SERVER_QUEUE: usize = 8;
/// Replies queued for the client at most.
const TO_CLIENT_QUEUE: usize = 256;

/// The sending ends of a session's queues.
pub struct Outbox {
    /// Bytes for the server (whole frames, `\n`-terminated); `None` once closed.
    to_server: RefCell<Option<mpsc::Sender<Vec<u8>>>>,
    /// Frames for the client (`\n`-terminated); `None` once closed.
    to_client: RefCell<Option<mpsc::Sender<Vec<u8>>>>,
    /// Spent buffers of the server writer, reused for the next batch of frames.
    spare: Rc<RefCell<Vec<Vec<u8>>>>,
}

/// The receiving ends of a session's queues, for its pumps.
pub struct Queues {
    /// What the server writer writes.
    pub to_server: mpsc::Receiver<Vec<u8>>,
    /// What the relay writes to the client between the server's lines.
    pub to_client: mpsc::Receiver<Vec<u8>>,
}

impl Outbox {
    /// An outbox and the queues its writers drain.
    pub fn new() -> (Self, Queues) {
        let (to_server_tx, to_server) = mpsc::channel(TO_SERVER_QUEUE);
        let (to_client_tx, to_client) = mpsc::channel(TO_CLIENT_QUEUE);
        (
            Self {
                to_server: RefCell::new(Some(to_server_tx)),
                to_client: RefCell::new(Some(to_client_tx)),
                spare: Rc::new(RefCell::new(Vec::new())),
            },
            Queues {
                to_server,
                to_client,
            },
        )
    }

    /// Where the server writer hands spent buffers back.
    pub fn spare(&self) -> Rc<RefCell<Vec<Vec<u8>>>> {
        self.spare.clone()
    }

    /// A spent buffer of the server writer (or a new one) holding a copy of `bytes`.
    pub fn spare_copy(&self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.borrow_mut().pop().unwrap_or_default();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Queues bytes for the server (waits while its queue is full).
    pub async fn send_server(&self, bytes: Vec<u8>) {
        let tx = self.to_server.borrow().clone();
        if let Some(tx) = tx {
            let _ = tx.send(bytes).await;
        }
    }

    /// Waits while the server's queue is full.
    pub async fn server_backpressure(&self) {
        let tx = self.to_server.borrow().clone();
        if let Some(tx) = tx
            && tx.capacity() == 0
        {
            let _ = tx.reserve().await;
        }
    }

    /// Queues one of thoth's own frames for the client (a `\n` is added).
    pub async fn answer_client(&self, mut frame: Vec<u8>) {
        frame.push(b'\n');
        let tx = self.to_client.borrow().clone();
        if let Some(tx) = tx {
            let _ = tx.send(frame).await;
        }
    }

    /// Queues one of thoth's own frames for the client without waiting (a `\n` is
    /// added); false when the queue is full or closed. For what must be said where
    /// nothing can wait (a question dropped with its call).
    pub fn try_answer_client(&self, mut frame: Vec<u8>) -> bool {
        frame.push(b'\n');
        let tx = self.to_client.borrow().clone();
        tx.is_some_and(|tx| tx.try_send(frame).is_ok())
    }

    /// Nothing more goes to the server: the writer closes its stdin once drained.
    pub fn close_server(&self) {
        self.to_server.borrow_mut().take();
    }

    /// Nothing more goes either way.
    pub fn close(&self) {
        self.close_server();
        self.to_client.borrow_mut().take();
    }
}
