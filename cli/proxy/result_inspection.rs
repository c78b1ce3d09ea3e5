//! The server's answers, inspected before the client reads them (`--inspect-results`):
//! what the detectors find is recorded, redacted in place or blocked, per class.
//!
//! Why here and not in the relay: the relay decides where bytes go; this decides what
//! an answer may carry. It never logs what it found, only detector names and counts,
//! and a redacted answer differs from the server's only inside the strings redacted.

use serde_json::json;

use crate::inspect::actions::{Action, ResultActions};
use crate::inspect::{Class, DETECTORS, Detections};

/// What was found in one answer, for the audit log.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Names and counts of what was found (configured classes only).
    pub detections: Detections,
    /// What was done: the strongest action among the classes found.
    pub action: Action,
    /// Matches replaced (when redacted).
    pub redactions: usize,
}

/// What becomes of an answer.
#[derive(Debug)]
pub enum Verdict {
    /// Relayed as the server wrote it.
    AsIs,
    /// Relayed with these bytes instead (redacted).
    Redacted(Vec<u8>),
    /// Not relayed: the client gets this error for its request.
    Blocked(Vec<u8>),
}

/// Inspects an answer `line` to the client's request `raw_id`.
pub fn inspect(
    line: &[u8],
    raw_id: &[u8],
    actions: &ResultActions,
) -> (Verdict, Option<Inspection>) {
    if !crate::inspect::available() && actions.acts() {
        // The detectors are out of service: what is to be redacted or blocked is
        // withheld.
        let record = Inspection {
            detections: Detections::default(),
            action: Action::Block,
            redactions: 0,
        };
        return (
            Verdict::Blocked(blocked(raw_id, &Detections::default())),
            Some(record),
        );
    }
    let inspected = crate::inspect::redact::inspect_line(line, |class| {
        actions.get(class) == Some(Action::Redact)
    });
    let mut detections = inspected.detections;
    detections
        .by_name
        .retain(|name, _| class_of(name).and_then(|c| actions.get(c)).is_some());
    if detections.is_empty() {
        return (Verdict::AsIs, None);
    }
    let strongest = detections
        .classes()
        .into_iter()
        .filter_map(|c| actions.get(c))
        .max()
        .unwrap_or(Action::Record);
    // A redaction must leave a line that checks, answering the same request.
    let id_of = |bytes: &[u8]| match thoth_core::scan(bytes) {
        Ok(thoth_core::Message::Response(r)) => Some(r.id().raw.to_vec()),
        _ => None,
    };
    let redacted = inspected
        .redacted
        .filter(|bytes| thoth_core::check_line(bytes).is_ok() && id_of(bytes) == id_of(line));
    // A key to redact cannot be rewritten, nor a line that would not check after: the
    // answer is withheld instead (fail closed).
    let action = match strongest {
        Action::Redact if inspected.unredactable || redacted.is_none() => Action::Block,
        other => other,
    };
    let verdict = match (action, redacted) {
        (Action::Block, _) => Verdict::Blocked(blocked(raw_id, &detections)),
        (Action::Redact, Some(bytes)) => Verdict::Redacted(bytes),
        _ => Verdict::AsIs,
    };
    let record = Inspection {
        detections,
        action,
        redactions: if matches!(verdict, Verdict::Redacted(_)) {
            inspected.redactions
        } else {
            0
        },
    };
    (verdict, Some(record))
}

fn class_of(name: &str) -> Option<Class> {
    DETECTORS.iter().find(|d| d.name == name).map(|d| d.class)
}

/// The client's error for a withheld answer: what was found, by name and count.
pub fn blocked(raw_id: &[u8], detections: &Detections) -> Vec<u8> {
    let names: Vec<&str> = detections.names().collect();
    super::answers::error(
        Some(raw_id),
        super::answers::BLOCKED,
        &format!(
            "Blocked by Thoth: the server's answer carries {}",
            names.join(", ")
        ),
        Some(&json!({ "reason": "content_blocked", "detections": detections.to_json() })),
    )
}

/// A line too long to inspect whole, while a class is to be redacted or blocked: not
/// relayed (the client gets this error for its request).
pub fn too_long(raw_id: Option<&[u8]>) -> Vec<u8> {
    super::answers::error(
        raw_id,
        super::answers::BLOCKED,
        "Blocked by Thoth: the server's answer is too long to inspect",
        Some(&json!({ "reason": "too_long_to_inspect" })),
    )
}

/// The detectors' versions, for the audit record: `{"name": version}`.
pub fn versions(detections: &Detections) -> serde_json::Value {
    serde_json::Value::Object(
        detections
            .names()
            .filter_map(|n| DETECTORS.iter().find(|d| d.name == n))
            .map(|d| (d.name.to_string(), json!(d.version)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"key AKIAIOSFODNN7EXAMPLE for ann@acme-health.com"}]}}"#;

    #[test]
    fn each_action_does_what_it_says() {
        let actions = |spec: &str| ResultActions::parse(spec).unwrap();
        let (verdict, record) = inspect(ANSWER, b"3", &actions("secret=redact,pii=record"));
        let Verdict::Redacted(bytes) = verdict else {
            panic!("{verdict:?}");
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("[REDACTED:aws_access_key_id]") && text.contains("ann@acme-health.com")
        );
        let record = record.unwrap();
        assert_eq!(
            (record.action, record.redactions, record.detections.count()),
            (Action::Redact, 1, 2)
        );

        let (verdict, record) = inspect(ANSWER, b"3", &actions("pii=block"));
        let Verdict::Blocked(error) = verdict else {
            panic!("{verdict:?}");
        };
        let v: serde_json::Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(
            v["error"]["data"]["detections"],
            json!({"email_address": 1})
        );
        assert!(
            !String::from_utf8_lossy(&error).contains("ann@"),
            "never the text"
        );
        assert_eq!(
            record.unwrap().detections.count(),
            1,
            "only configured classes count"
        );

        let (verdict, record) = inspect(ANSWER, b"3", &actions("injection=block"));
        assert!(matches!(verdict, Verdict::AsIs) && record.is_none());
        let (verdict, record) = inspect(ANSWER, b"3", &actions("secret=record"));
        assert!(matches!(verdict, Verdict::AsIs));
        assert_eq!(record.unwrap().action, Action::Record);
    }
}
