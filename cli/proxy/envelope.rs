//! The per-request envelope of 2026-07-28: a stateless client sends no `initialize`;
//! each request carries its protocol version, client info and capabilities in
//! `params._meta` under reserved `io.modelcontextprotocol/` keys.
//!
//! Why: what thoth does per revision (batches refused, schema refusals as results)
//! needs the revision, and thoth's own requests to such a server (its tools/list)
//! must carry the same envelope or the server refuses them. This module only reads;
//! it never changes a client's frame.

use serde_json::{Map, Value};

/// The reserved key of the protocol version.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// The reserved key of the client's capabilities.
pub const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// The reserved keys copied into thoth's own requests (nothing else of the client's
/// `_meta`: a progress token or a log level is the client's request's alone).
const STAMP_KEYS: [&str; 3] = [
    PROTOCOL_VERSION_KEY,
    "io.modelcontextprotocol/clientInfo",
    CAPABILITIES_KEY,
];

/// A request's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The protocol version it names.
    pub version: String,
    /// The reserved keys thoth's own requests carry, as the client wrote them.
    pub stamp: Map<String, Value>,
}

/// Whether `frame` may carry an envelope (found without parsing frames that cannot:
/// the key may be written with escapes, `\/` or `\u`).
pub fn may_have(frame: &[u8]) -> bool {
    // (Searchers built once: building one per frame costs more than the search.)
    type Needle = std::sync::LazyLock<memchr::memmem::Finder<'static>>;
    static VERSION: Needle = Needle::new(|| memchr::memmem::Finder::new(b"protocolVersion"));
    static ESCAPE: Needle = Needle::new(|| memchr::memmem::Finder::new(b"\\u"));
    VERSION.find(frame).is_some() || ESCAPE.find(frame).is_some()
}

/// The envelope of a request's `params` bytes, when they carry one whose version is a
/// string.
pub fn read(params: &[u8]) -> Option<Envelope> {
    let params: Value = serde_json::from_slice(params).ok()?;
    let meta = params.get("_meta")?.as_object()?;
    let version = meta.get(PROTOCOL_VERSION_KEY)?.as_str()?.to_string();
    // A revision is a date (`2026-07-28`): anything else is not learned.
    let dated = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !dated {
        return None;
    }
    let stamp: Map<String, Value> = STAMP_KEYS
        .iter()
        .filter_map(|key| Some((key.to_string(), meta.get(*key)?.clone())))
        .collect();
    // thoth's own requests carry the stamp: a client's outsized one is not copied.
    if serde_json::to_vec(&stamp).map_or(usize::MAX, |b| b.len()) > MAX_STAMP_BYTES {
        return None;
    }
    Some(Envelope { version, stamp })
}

/// Bytes of the reserved keys copied into thoth's own requests at most.
const MAX_STAMP_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_read_as_clients_write_it() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"io.modelcontextprotocol/clientCapabilities":{},"progressToken":3},"name":"t"}"#,
                Some("2026-07-28"),
            ),
            (
                r#"{"_meta":{"io.modelcontextprotocol\/protocol\u0056ersion":"2026-07-28"}}"#,
                Some("2026-07-28"),
            ),
            (r#"{"_meta":{"progressToken":1}}"#, None),
            (
                r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":7}}"#,
                None,
            ),
            (r#"{"protocolVersion":"2025-06-18"}"#, None),
            (
                r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"9999-99-99x"}}"#,
                None,
            ),
            (
                r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"latest"}}"#,
                None,
            ),
            (r#"[]"#, None),
        ];
        for (params, version) in cases {
            assert!(may_have(params.as_bytes()) || version.is_none(), "{params}");
            let envelope = read(params.as_bytes());
            assert_eq!(
                envelope.as_ref().map(|e| e.version.as_str()),
                *version,
                "{params}"
            );
            if let Some(envelope) = envelope {
                assert!(!envelope.stamp.contains_key("progressToken"));
                assert!(envelope.stamp.contains_key(PROTOCOL_VERSION_KEY));
            }
        }
        let full = read(cases[0].0.as_bytes()).unwrap();
        assert_eq!(full.stamp.len(), 3);
    }
}
