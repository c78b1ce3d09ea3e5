//! What the proxy remembers between frames: calls pending a decision (cancellable,
//! bounded), and requests forwarded to the server and not yet answered (so they can
//! be answered if the server dies).

use std::collections::HashMap;

use tokio::task::AbortHandle;

/// At most this many calls wait for their decision; more are answered "busy".
pub const MAX_PENDING: usize = 256;
/// Forwarded requests remembered for an answer if the server dies.
pub const MAX_IN_FLIGHT: usize = 4096;
/// tools/list requests watched for the inventory at most.
const MAX_WATCHED: usize = 64;

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

#[derive(Default)]
pub struct ProxyState {
    /// Calls not yet forwarded or answered (cancellable), by id.
    pub pending: HashMap<String, Pending>,
    /// id key → raw id of requests forwarded and not yet answered.
    pub in_flight: HashMap<String, Vec<u8>>,
    /// Non-JSON lines the server printed on stdout (diverted to stderr).
    pub diverted_lines: u64,
    /// Ids of forwarded tools/list requests whose responses go to the GovAPI inventory.
    pub tools_list: std::collections::HashSet<String>,
}

impl ProxyState {
    /// Calls still waiting for their decision.
    pub fn deciding(&self) -> usize {
        self.pending.values().filter(|p| p.deciding).count()
    }

    /// Remembers a tools/list request so its response feeds the inventory.
    pub fn watch_tools_list(&mut self, raw_id: &[u8]) {
        if self.tools_list.len() < MAX_WATCHED {
            self.tools_list.insert(id_key(raw_id));
        }
    }

    pub fn forwarded(&mut self, raw_id: &[u8]) {
        if self.in_flight.len() < MAX_IN_FLIGHT {
            self.in_flight.insert(id_key(raw_id), raw_id.to_vec());
        }
    }
}
