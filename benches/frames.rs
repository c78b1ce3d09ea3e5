//! Deterministic frames for the benches: one per frame class of the scan bench.
#![allow(dead_code)]

/// A small deterministic generator, so every run measures the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the", "file", "returns", "value", "server", "policy", "request", "tool", "context", "with",
    "data", "config", "error", "handler", "session", "stream", "buffer", "token", "user", "path",
];

/// Mostly ASCII prose with some UTF-8 and, every few hundred bytes, an escape.
fn text(rng: &mut Lcg, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut since_escape = 0;
    while out.len() < len {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.push_str(word);
        since_escape += word.len() + 1;
        match rng.below(40) {
            0 => out.push_str(" café"),
            1 => out.push_str(" 東京"),
            _ => {}
        }
        if since_escape > 200 + rng.below(300) as usize {
            out.push_str(if rng.below(2) == 0 { "\\n" } else { "\\\"" });
            since_escape = 0;
        } else {
            out.push(' ');
        }
    }
    out
}

/// `notifications/progress`, about 110 bytes.
pub fn notification() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"abc-123","progress":50,"total":100}}"#.to_vec()
}

/// A typical tools/call, about 200 bytes.
pub fn small_call() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/home/user/project/src/main.rs","encoding":"utf-8","limit":4000},"_meta":{"progressToken":"tok-42"}}}"#.to_vec()
}

/// A tools/call whose arguments are dense with escapes, about 3 KB.
pub fn escape_dense_call() -> Vec<u8> {
    let mut body = String::new();
    for i in 0..48 {
        body.push_str(&format!(
            r#""line{i}":"say \"hi\"\n\tpath C:\\Users\\x\\file{i}.txt \u00e9\u4e1c \ud83d\ude00 end\r\n","#
        ));
    }
    body.pop();
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"write_file","arguments":{{{body}}}}}}}"#)
        .into_bytes()
}

/// A tools/call carrying about 1 MiB of file content.
pub fn mib_call() -> Vec<u8> {
    let mut rng = Lcg(1);
    let content = text(&mut rng, 1 << 20);
    format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"write_file","arguments":{{"path":"/tmp/out.txt","content":"{content}"}}}}}}"#
    )
    .into_bytes()
}

/// A tools/call result of about 64 KiB.
pub fn result_64k() -> Vec<u8> {
    let mut rng = Lcg(2);
    let content = text(&mut rng, 64 * 1024);
    format!(r#"{{"jsonrpc":"2.0","id":11,"result":{{"content":[{{"type":"text","text":"{content}"}}],"isError":false}}}}"#)
        .into_bytes()
}

/// A tools/list response with 50 tools and their input schemas.
pub fn tools_list() -> Vec<u8> {
    let mut rng = Lcg(3);
    let tools: Vec<String> = (0..50)
        .map(|i| {
            let description = text(&mut rng, 200);
            format!(
                r#"{{"name":"tool_{i}","description":"{description}","inputSchema":{{"type":"object","properties":{{"path":{{"type":"string","description":"Path to read"}},"limit":{{"type":"integer","minimum":1,"maximum":100000,"default":1000}},"recursive":{{"type":"boolean","default":false}},"tags":{{"type":"array","items":{{"type":"string"}}}}}},"required":["path"]}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"result":{{"tools":[{}]}}}}"#,
        tools.join(",")
    )
    .into_bytes()
}

/// Every frame class with its name, smallest first.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notification", notification()),
        ("small_tools_call", small_call()),
        ("escape_dense_tools_call", escape_dense_call()),
        ("tools_list_50", tools_list()),
        ("result_64k", result_64k()),
        ("tools_call_1mib", mib_call()),
    ]
}

/// What thoth does with a frame: `scan`, then `tool_call` on a tools/call request (the
/// full strict validation); the result only keeps the work from being optimised away.
pub fn thoth_scan(frame: &[u8]) -> usize {
    match thoth_core::scan(frame) {
        Ok(thoth_core::Message::Request(call)) => match thoth_core::tool_call(&call) {
            Ok(tc) => tc.name.len() + tc.arguments.map_or(0, |s| s.len()),
            Err(_) => 1,
        },
        Ok(_) => 2,
        Err(_) => 0,
    }
}
