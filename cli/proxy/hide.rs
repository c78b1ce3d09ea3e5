//! Hidden tools: a `tools/list` response reaches the client without the tools an
//! `@hide` policy forbids for every call (`enforce::local`), so the model is not
//! offered what it can never run. This is the one change thoth makes to a server's
//! answer besides the canonical line; each hidden tool is counted and audited, and a
//! hidden tool that is called anyway is still blocked by the same policy.
//!
//! Only the `tools` array changes: every other member keeps its bytes (each is
//! carried as the raw text the server wrote) and so does each tool kept. A response
//! this module cannot take apart safely — not one object, a member named twice, a
//! batch — is relayed unchanged (its tools stay listed, and blocked when called).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// Decides, from a tool's name and definition, the rule id that hides it.
pub type HideRule = dyn Fn(&str, &Value) -> Option<String> + Send + Sync;

/// A tool left out of a listing, and the rule that hid it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    pub tool: String,
    pub rule: String,
}

/// An object's members in the order written, each as its raw text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Collect;
        impl<'de> Visitor<'de> for Collect {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Collect)
    }
}

impl Members {
    fn parse(text: &str) -> Option<Self> {
        let members: Self = serde_json::from_str(text).ok()?;
        let mut names: Vec<&str> = members.0.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let unique = names.windows(2).all(|w| w.first() != w.get(1));
        unique.then_some(members)
    }

    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The object again, with `name`'s value replaced by `text`.
    fn write_with(&self, name: &str, text: &str) -> String {
        let mut out = String::from("{");
        for (i, (member, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(member.clone()).to_string());
            out.push(':');
            out.push_str(if member == name { text } else { value.get() });
        }
        out.push('}');
        out
    }
}

/// `line` without the tools `rule` hides, and which it hid; `None` when it hides none
/// or the line is not a response this module rewrites.
pub fn without_hidden(line: &[u8], rule: &HideRule) -> Option<(Vec<u8>, Vec<Hidden>)> {
    let text = std::str::from_utf8(line).ok()?;
    let response = Members::parse(text)?;
    let result = Members::parse(response.get("result")?.get())?;
    let tools: Vec<Box<RawValue>> = serde_json::from_str(result.get("tools")?.get()).ok()?;
    let mut kept = Vec::with_capacity(tools.len());
    let mut hidden = Vec::new();
    for tool in &tools {
        // Judged as the catalog reads it (lone surrogates as U+FFFD); kept as written.
        let definition: Option<Value> = serde_json::from_str(tool.get()).ok().or_else(|| {
            let repaired = crate::catalog::without_lone_surrogates(tool.get().as_bytes());
            serde_json::from_slice(&repaired).ok()
        });
        let verdict = definition.as_ref().and_then(|d| {
            let name = d.get("name")?.as_str()?;
            rule(name, d).map(|rule| Hidden {
                tool: name.to_string(),
                rule,
            })
        });
        match verdict {
            Some(h) => hidden.push(h),
            None => kept.push(tool.get()),
        }
    }
    if hidden.is_empty() {
        return None;
    }
    let tools = format!("[{}]", kept.join(","));
    let result = result.write_with("tools", &tools);
    Some((response.write_with("result", &result).into_bytes(), hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hide_named(prefix: &'static str) -> impl Fn(&str, &Value) -> Option<String> {
        move |name, _| name.starts_with(prefix).then(|| "rule".to_string())
    }

    #[test]
    fn only_the_hidden_tools_leave_the_line() {
        let line = br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"read","inputSchema":{"type":"object"}},{"name":"export_all","description":"x"}, {"name":"list","n":1.50}],"nextCursor":"c\u0032"}}"#;
        let (out, hidden) = without_hidden(line, &hide_named("export")).expect("hides one");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"read","inputSchema":{"type":"object"}},{"name":"list","n":1.50}],"nextCursor":"c\u0032"}}"#
        );
        assert_eq!(
            hidden,
            [Hidden {
                tool: "export_all".into(),
                rule: "rule".into()
            }]
        );
    }

    #[test]
    fn nothing_hidden_or_nothing_safe_to_rewrite_leaves_the_line_alone() {
        let rule = hide_named("export");
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}"#[..],
            // A member named twice: which one a client reads is not ours to pick.
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"export"}]},"result":{"tools":[]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"export"}],"tools":[]}}"#,
            br#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"export"}]}}]"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
            b"not json",
        ] {
            assert_eq!(without_hidden(line, &rule), None, "{}", String::from_utf8_lossy(line));
        }
        let all = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"export"}]}}"#;
        let (out, _) = without_hidden(all, &rule).expect("hides");
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
    }

    #[test]
    fn a_lone_surrogate_neither_shows_a_hidden_tool_nor_changes_a_kept_one() {
        let line = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"export","description":"\ud800"},{"name":"read","description":"\udc00x"}]}}"#;
        let (out, hidden) = without_hidden(line, &hide_named("export")).expect("hides");
        assert_eq!(hidden.len(), 1);
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","description":"\udc00x"}]}}"#
        );
    }
}
