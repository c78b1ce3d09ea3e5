//! A small MCP server for thoth's integration tests (and a quick manual try).
//!
//! It answers `initialize`, `tools/list` and `tools/call` over stdio and is steered by
//! environment variables:
//! - `FIXTURE_LOG=<file>`: append every line received to the file, byte for byte;
//! - `FIXTURE_BANNER=1`: print a non-JSON banner on stdout first;
//! - `FIXTURE_GRANDCHILD=<file>`: start `sleep 600` and write its pid to the file;
//! - `FIXTURE_DUMP_ENV=<file>`: write the environment, one `NAME=value` per line;
//! - `FIXTURE_PID=<file>`: write its own pid;
//! - `FIXTURE_LINGER=1`: keep running after stdin closes (a server that must be killed);
//! - `FIXTURE_TOOLS=<n>`: list n more tools (`extra_0`…) in tools/list;
//! - `FIXTURE_DESCRIPTION_SUFFIX=<text>`: `read_file` describes itself with `<text>` added
//!   (a changed definition, for pinning);
//! - `FIXTURE_PAGE_SIZE=<n>`: tools/list answers in pages of n tools (`nextCursor`).
//!
//! `resources/read`, `resources/subscribe`, `prompts/get` and `completion/complete`
//! answer with what they were asked. The request `fixture/list_changed` makes it send `notifications/tools/list_changed`;
//! `fixture/retitle` changes `read_file`'s title first; `fixture/ask` with params
//! `{method, params}` makes it send that request to the client (id `"srv-<id>"`);
//! `fixture/raw` with `{line}` writes that line as it is.
//!
//! Tools: `read_file`, `write_file`, `delete_file`, `exec_command`, `patient_lookup`,
//! `echo` and `launch` (typed: `armed` a boolean, `count` an integer) answer with their
//! arguments; `needs_input` answers as a 2026-07-28 server asking for input (an
//! `input_required` result carrying `arguments.requests`) until the call is retried
//! with `inputResponses`, which it echoes; `read_file` declares itself read-only; `big` answers with a text of
//! `arguments.mib` MiB on one line; `crash` exits with status 3 at once.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn main() {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(path) = env("FIXTURE_PID") {
        let _ = std::fs::write(path, std::process::id().to_string());
    }
    if let Some(path) = env("FIXTURE_DUMP_ENV") {
        let dump: String = std::env::vars()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        let _ = std::fs::write(path, dump);
    }
    if let Some(path) = env("FIXTURE_GRANDCHILD")
        && let Ok(child) = std::process::Command::new("sleep").arg("600").spawn()
    {
        let _ = std::fs::write(path, child.id().to_string());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if env("FIXTURE_BANNER").is_some() {
        let _ = writeln!(
            out,
            "fixture MCP server v1 starting (this line is not JSON)"
        );
        let _ = out.flush();
    }
    let mut log = env("FIXTURE_LOG").and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(log) = log.as_mut() {
            let _ = log.write_all(&line);
            let _ = log.flush();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let replies: Vec<Value> = match &message {
            Value::Array(items) => items.iter().filter_map(answer).collect(),
            one => answer(one).into_iter().collect(),
        };
        for reply in replies {
            if reply.get("big").is_some() {
                write_big(&mut out, &reply);
                continue;
            }
            let _ = writeln!(out, "{reply}");
        }
        let _ = out.flush();
    }
    if env("FIXTURE_LINGER").is_some() {
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

/// The server's notification that its tool list changed.
const LIST_CHANGED: &str = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;

/// Writes one line of the server's own (before the answer being built).
fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `read_file`'s title changed (`fixture/retitle`).
static RETITLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn answer(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message.get("method")?.as_str()?;
    let result = match method {
        // The revision the client asks for, as SDK servers answer one they support.
        "initialize" => json!({
            "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "fixture", "version": "1.0.0" }
        }),
        "tools/list" => {
            let mut tools: Vec<Value> = ["read_file", "write_file", "delete_file", "exec_command", "patient_lookup", "echo", "big", "crash"]
                .iter()
                .map(|name| json!({ "name": name, "description": format!("fixture tool {name}"), "inputSchema": { "type": "object" } }))
                .collect();
            if let Some(read) = tools.first_mut() {
                // A rug pull: the same tool, saying something else.
                if let Ok(suffix) = std::env::var("FIXTURE_DESCRIPTION_SUFFIX") {
                    read["description"] = json!(format!("fixture tool read_file{suffix}"));
                }
                read["title"] = json!(if RETITLED.load(std::sync::atomic::Ordering::Relaxed) {
                    "Read any file"
                } else {
                    "Read a file"
                });
                read["annotations"] = json!({ "readOnlyHint": true, "destructiveHint": false, "openWorldHint": false });
            }
            tools.push(json!({
                "name": "launch",
                "description": "fixture tool launch (typed arguments)",
                "inputSchema": { "type": "object", "properties": { "armed": { "type": "boolean" }, "count": { "type": "integer" } } },
                "annotations": { "destructiveHint": true }
            }));
            let extra: usize = std::env::var("FIXTURE_TOOLS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            tools.extend((0..extra).map(|i| json!({ "name": format!("extra_{i}"), "inputSchema": { "type": "object", "properties": { "q": { "type": "string", "default": "secret-default" } } } })));
            // Pages of FIXTURE_PAGE_SIZE tools; the cursor is the next page's first index.
            let page: usize = std::env::var("FIXTURE_PAGE_SIZE")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if page > 0 {
                let from: usize = message["params"]["cursor"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let to = (from + page).min(tools.len());
                let mut result = json!({ "tools": tools.get(from..to).unwrap_or_default() });
                if to < tools.len() {
                    result["nextCursor"] = json!(to.to_string());
                }
                result
            } else {
                json!({ "tools": tools })
            }
        }
        // A test asks the server to retitle read_file, and to say its list changed.
        "fixture/retitle" => {
            RETITLED.store(true, std::sync::atomic::Ordering::Relaxed);
            say(LIST_CHANGED);
            json!({})
        }
        // A test has the server send the client a request of its own (id "srv-<id>"),
        // before the answer to this one.
        "fixture/ask" => {
            say(
                json!({ "jsonrpc": "2.0", "id": format!("srv-{id}"), "method": message["params"]["method"], "params": message["params"]["params"] }),
            );
            json!({})
        }
        // A test has the server write a line of its choosing, as it is.
        "fixture/raw" => {
            say(message["params"]["line"].as_str().unwrap_or_default());
            json!({})
        }
        // A test asks the server to say its tool list changed.
        "fixture/list_changed" => {
            say(LIST_CHANGED);
            json!({})
        }
        "tools/call" => {
            let name = message["params"]["name"].as_str().unwrap_or_default();
            let args = message["params"]
                .get("arguments")
                .cloned()
                .unwrap_or(json!({}));
            match name {
                "crash" => std::process::exit(3),
                "answer_and_exit" => {
                    // The answer first, then exit at once: its response is in the pipe
                    // while the proxy learns that the server is gone.
                    let mut out = std::io::stdout();
                    let pad = "p".repeat(args["pad_kib"].as_u64().unwrap_or(0) as usize * 1024);
                    let _ = writeln!(
                        out,
                        "{}",
                        json!({ "jsonrpc": "2.0", "id": id, "result": { "content": [], "pad": pad } })
                    );
                    let _ = out.flush();
                    std::process::exit(4);
                }
                "big" => {
                    return Some(json!({ "id": id, "big": args["mib"].as_u64().unwrap_or(1) }));
                }
                "needs_input" => match message["params"].get("inputResponses") {
                    Some(responses) => {
                        json!({ "content": [{ "type": "text", "text": responses.to_string() }], "isError": false })
                    }
                    None => json!({
                        "resultType": "input_required",
                        "inputRequests": args["requests"],
                        "requestState": "state-1"
                    }),
                },
                _ => {
                    json!({ "content": [{ "type": "text", "text": args.to_string() }], "isError": false })
                }
            }
        }
        "ping" => json!({}),
        // Resources, prompts and completions answer with what they were asked.
        "resources/read" => {
            let uri = message["params"]["uri"].clone();
            json!({ "contents": [{ "uri": uri, "text": format!("contents of {}", uri.as_str().unwrap_or_default()) }] })
        }
        "resources/subscribe" => json!({}),
        "prompts/get" => {
            json!({ "messages": [{ "role": "user", "content": { "type": "text", "text": format!("prompt {}", message["params"]["name"]) } }] })
        }
        "completion/complete" => json!({ "completion": { "values": [] } }),
        _ => {
            return Some(
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "Method not found" } }),
            );
        }
    };
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

/// One result line of `mib` MiB, written in pieces (never held whole).
fn write_big(out: &mut impl Write, reply: &Value) {
    let mib = reply["big"].as_u64().unwrap_or(1);
    let _ = write!(
        out,
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":""#,
        reply["id"]
    );
    let piece = vec![b'x'; 1024 * 1024];
    for _ in 0..mib {
        let _ = out.write_all(&piece);
    }
    let _ = writeln!(out, r#""}}],"isError":false}}}}"#);
}
