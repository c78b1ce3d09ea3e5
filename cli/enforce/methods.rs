//! The MCP requests besides `tools/call` a policy can govern: what each one targets
//! (a resource URI, a prompt name) and the arguments it carries, read from its params.
//!
//! Why: `resources/read` on a server's resource template runs server code as a tool
//! call does, and `prompts/get` hands a server arguments too; neither was decided.
//! A method is governed only when some policy's scope names its action (see
//! `enforce::local`): a policy written for tools/call never starts judging resources.
//! This module only reads params; it never decides and never answers.

use serde_json::{Map, Value};

/// The methods besides tools/call a policy can govern, each its own Cedar action
/// (`Thoth::Action::"resources/read"`, …): client → server requests, then the server →
/// client ones ([`SERVER_REQUESTS`]).
pub const GOVERNABLE: [&str; 7] = [
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// The client → server requests among [`GOVERNABLE`].
pub const CLIENT_REQUESTS: [&str; 4] = [
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
];

/// The server → client requests among [`GOVERNABLE`]: decided before the client sees
/// them (the principal is still the session's agent).
pub const SERVER_REQUESTS: [&str; 3] =
    ["sampling/createMessage", "elicitation/create", "roots/list"];

/// The members of a governed request's params the enforcer is sent (`mcp_params`):
/// those its target and arguments are read from, so `thoth enforcer serve` reads the
/// same. A request's `_meta`, unknown members and a sampling request's messages stay
/// out of the enforcer's body.
pub fn enforcer_params(method: &str, params: Option<&Value>) -> Value {
    let members: &[&str] = match method {
        "resources/read" | "resources/subscribe" => &["uri"],
        "prompts/get" => &["name", "arguments"],
        "completion/complete" => &["ref", "argument"],
        "sampling/createMessage" => &["tools", "toolChoice", "maxTokens", "includeContext"],
        "elicitation/create" => &["mode", "url", "message", "requestedSchema"],
        _ => &[],
    };
    let kept: Map<String, Value> = members
        .iter()
        .filter_map(|k| Some((k.to_string(), params?.get(*k)?.clone())))
        .collect();
    Value::Object(kept)
}

/// Tools named in one sampling request read at most (more are refused).
const MAX_SAMPLING_TOOLS: usize = 1024;

/// Bytes of a URI or prompt name read at most (a longer one is refused).
pub const MAX_TARGET_BYTES: usize = 64 * 1024;

/// The governable method named `method`, as its static name.
pub fn governable(method: &str) -> Option<&'static str> {
    GOVERNABLE.iter().copied().find(|m| *m == method)
}

/// What a governed request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A resource (`resources/read`, `resources/subscribe`, a `ref/resource`
    /// completion): `Thoth::Resource::"<uri>"`, the URI as a WHATWG parser (the SDKs')
    /// serialises it, with its parts as policies compare them.
    Resource {
        uri: String,
        scheme: String,
        host: String,
        path: String,
        query: String,
    },
    /// A prompt (`prompts/get`, a `ref/prompt` completion): `Thoth::Prompt::"<name>"`.
    Prompt { name: String },
    /// `sampling/createMessage`: `Thoth::Sampling::"sampling/createMessage"`. The tools
    /// it offers the model are run by the server without any tools/call.
    Sampling {
        tools: Vec<String>,
        tool_choice: String,
        max_tokens: i64,
        include_context: String,
    },
    /// `elicitation/create`: `Thoth::Elicitation::"<mode>"` (`form` or `url`); for a
    /// URL, as a browser reads it (scheme and host lowercased).
    Elicitation {
        mode: String,
        url: String,
        scheme: String,
        host: String,
    },
    /// `roots/list`: `Thoth::Roots::"roots/list"`.
    Roots,
}

impl Target {
    /// The URI or the prompt name.
    pub fn label(&self) -> &str {
        match self {
            Self::Resource { uri, .. } => uri,
            Self::Prompt { name } => name,
            Self::Sampling { .. } => "sampling/createMessage",
            Self::Elicitation { mode, .. } => mode,
            Self::Roots => "roots/list",
        }
    }

    /// A resource as a server's URL parser reads `uri` (WHATWG, as pydantic's `AnyUrl`
    /// and JavaScript's `URL`): canonical URI, lowercased scheme and host, and the path
    /// percent-decoded with its `.` and `..` segments resolved, so
    /// `file:///srv/../etc/passwd` and `file:///srv/%2e%2e/etc/passwd` are `/etc/passwd`.
    /// Refused (`None`): a URI such a parser rejects or rewrites before reading
    /// (spaces, control characters), and a `file:` URI with a query or fragment (which
    /// a server may take for part of the file name).
    pub fn resource(uri: &str) -> Option<Self> {
        if uri.bytes().any(|b| b <= 0x20 || b == 0x7f) {
            return None;
        }
        let parsed = url::Url::parse(uri).ok()?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        if scheme == "file" && (parsed.query().is_some() || parsed.fragment().is_some()) {
            return None;
        }
        Some(Self::Resource {
            uri: parsed.as_str().to_string(),
            host: parsed.host_str().unwrap_or_default().to_ascii_lowercase(),
            path: normalised(parsed.path()),
            query: parsed.query().unwrap_or_default().to_string(),
            scheme,
        })
    }
}

/// `path` percent-decoded, with `.`, `..` and empty segments resolved lexically; a
/// path that started with a separator keeps one.
fn normalised(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    if text.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// One governed request: its method, target and arguments (a JSON object of the
/// prompt's arguments, or `{<argument name>: <value>}` of a completion; empty for
/// resources).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    pub method: &'static str,
    pub target: Target,
    pub arguments: Value,
}

/// Why a governed request's params cannot be decided (it is refused, -32602).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "params.uri must be a URL of at most 64 KiB, without spaces or control characters (and a file: URL without a query or fragment)"
    )]
    Uri,
    #[error("params.name must be a string of at most 64 KiB")]
    Name,
    #[error("params.arguments must be an object of strings, of at most 1 MiB")]
    Arguments,
    #[error("params.ref must be a ref/prompt with a name or a ref/resource with a uri")]
    Ref,
    #[error("params.argument must be an object with a string name and value")]
    Argument,
    #[error(
        "params.tools must be an array of at most 1024 tools with string names, and params.toolChoice {{\"mode\": \"auto\" | \"required\" | \"none\"}}"
    )]
    Tools,
    #[error("params.maxTokens must be an integer")]
    MaxTokens,
    #[error("params.mode must be \"form\" or \"url\", and a url request needs params.url")]
    Elicitation,
}

/// Why a method is not governed by a local policy (the reason its records carry).
pub fn not_governed(method: &str) -> String {
    format!("{method} is not governed: no policy's scope names Thoth::Action::\"{method}\"")
}

/// Reads a governed request's raw params as tools/call arguments are read
/// (`enforce::arguments`: a member twice, case-folded keys that collide, numbers a
/// reader would round, are refused, never guessed), then its target.
pub fn read(method: &'static str, params: Option<&[u8]>) -> Result<MethodCall, String> {
    let params = params
        .map(super::arguments::parse)
        .transpose()
        .map_err(|e| format!("params are not readable: {e}"))?;
    parse(method, params.as_ref()).map_err(|e| e.to_string())
}

/// Reads a governed request's params (`None` when absent).
pub fn parse(method: &'static str, params: Option<&Value>) -> Result<MethodCall, ParamsError> {
    let empty = Map::new();
    let params = params.and_then(Value::as_object).unwrap_or(&empty);
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| s.len() <= MAX_TARGET_BYTES)
            .map(str::to_string)
    };
    let none = || Value::Object(Map::new());
    match method {
        "prompts/get" => {
            let name = text(params.get("name")).ok_or(ParamsError::Name)?;
            // The spec (and both SDKs) take string values only: anything else would be
            // compared by the policy as one type and read by a lax server as another.
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => none(),
                Some(Value::Object(args))
                    if args.values().all(Value::is_string)
                        && serde_json::to_vec(args).map_or(usize::MAX, |b| b.len())
                            <= super::MAX_POLICY_ARGUMENTS =>
                {
                    Value::Object(args.clone())
                }
                Some(_) => return Err(ParamsError::Arguments),
            };
            Ok(MethodCall {
                method,
                target: Target::Prompt { name },
                arguments,
            })
        }
        "completion/complete" => {
            let reference = params.get("ref").and_then(Value::as_object);
            let kind = reference
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str);
            let target = match kind {
                Some("ref/prompt") => Target::Prompt {
                    name: text(reference.and_then(|r| r.get("name"))).ok_or(ParamsError::Ref)?,
                },
                // A template (`res://{tag}`) is not a URL: compared as written.
                Some("ref/resource") => {
                    let uri = text(reference.and_then(|r| r.get("uri"))).ok_or(ParamsError::Ref)?;
                    Target::resource(&uri).unwrap_or(Target::Resource {
                        scheme: uri
                            .split(':')
                            .next()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        host: String::new(),
                        path: String::new(),
                        query: String::new(),
                        uri,
                    })
                }
                _ => return Err(ParamsError::Ref),
            };
            let argument = params.get("argument").and_then(Value::as_object);
            let name = argument.and_then(|a| a.get("name")).and_then(Value::as_str);
            let value = argument
                .and_then(|a| a.get("value"))
                .and_then(Value::as_str);
            let (Some(name), Some(value)) = (name, value) else {
                return Err(ParamsError::Argument);
            };
            let mut arguments = Map::new();
            arguments.insert(name.to_string(), Value::String(value.to_string()));
            Ok(MethodCall {
                method,
                target,
                arguments: Value::Object(arguments),
            })
        }
        "sampling/createMessage" => {
            let tools = match params.get("tools") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(tools)) if tools.len() <= MAX_SAMPLING_TOOLS => tools
                    .iter()
                    .map(|t| text(t.get("name")).ok_or(ParamsError::Tools))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(ParamsError::Tools),
            };
            // `toolChoice` is `{"mode": "auto" | "required" | "none"}`; another shape could
            // name a tool a policy never saw named.
            let tool_choice = match params.get("toolChoice") {
                None | Some(Value::Null) => {
                    if tools.is_empty() { "none" } else { "auto" }.to_string()
                }
                Some(Value::Object(choice)) => match choice.get("mode").and_then(Value::as_str) {
                    Some(mode @ ("auto" | "required" | "none")) if choice.len() == 1 => {
                        mode.to_string()
                    }
                    _ => return Err(ParamsError::Tools),
                },
                Some(_) => return Err(ParamsError::Tools),
            };
            // A count the policy would read as one number and an SDK as another is
            // refused: an integer, as the SDKs require.
            let max_tokens = match params.get("maxTokens") {
                None | Some(Value::Null) => 0,
                Some(n) => n.as_i64().ok_or(ParamsError::MaxTokens)?,
            };
            Ok(MethodCall {
                method,
                target: Target::Sampling {
                    tools,
                    tool_choice,
                    max_tokens,
                    include_context: params
                        .get("includeContext")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                        .to_string(),
                },
                arguments: none(),
            })
        }
        "elicitation/create" => {
            // Form mode is the default (2025-06-18 has no mode), but params with a
            // `url` and no mode are URL mode to the SDKs that pick the shape that fits
            // (pydantic's union): judged as they read them.
            let mode = match params.get("mode") {
                None | Some(Value::Null) if params.contains_key("url") => "url".to_string(),
                None | Some(Value::Null) => "form".to_string(),
                Some(Value::String(m)) if m == "form" || m == "url" => m.clone(),
                Some(_) => return Err(ParamsError::Elicitation),
            };
            // A URL is read as the browser that opens it reads it (WHATWG): one that
            // does not parse, or that a browser would rewrite first (spaces, control
            // characters), is refused.
            let (url, scheme, host) = match mode.as_str() {
                "url" => {
                    let given = text(params.get("url")).ok_or(ParamsError::Elicitation)?;
                    if given.bytes().any(|b| b <= 0x20 || b == 0x7f) {
                        return Err(ParamsError::Elicitation);
                    }
                    let parsed = url::Url::parse(&given).map_err(|_| ParamsError::Elicitation)?;
                    (
                        parsed.as_str().to_string(),
                        parsed.scheme().to_ascii_lowercase(),
                        parsed
                            .host_str()
                            .unwrap_or_default()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    )
                }
                _ => (String::new(), String::new(), String::new()),
            };
            Ok(MethodCall {
                method,
                target: Target::Elicitation {
                    mode,
                    url,
                    scheme,
                    host,
                },
                arguments: none(),
            })
        }
        "roots/list" => Ok(MethodCall {
            method,
            target: Target::Roots,
            arguments: none(),
        }),
        // resources/read, resources/subscribe
        _ => Ok(MethodCall {
            method,
            target: text(params.get("uri"))
                .as_deref()
                .and_then(Target::resource)
                .ok_or(ParamsError::Uri)?,
            arguments: none(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enforcer_is_sent_only_what_targets_are_read_from() {
        let cases = [
            (
                "resources/read",
                json!({"uri": "file:///a", "_meta": {"k": 1}}),
                json!({"uri": "file:///a"}),
            ),
            (
                "prompts/get",
                json!({"name": "p", "arguments": {"a": "b"}, "x": 1}),
                json!({"name": "p", "arguments": {"a": "b"}}),
            ),
            (
                "sampling/createMessage",
                json!({"messages": [{"role": "user"}], "maxTokens": 5, "tools": [], "systemPrompt": "s"}),
                json!({"maxTokens": 5, "tools": []}),
            ),
            (
                "elicitation/create",
                json!({"mode": "url", "url": "https://a/", "message": "m"}),
                json!({"mode": "url", "url": "https://a/", "message": "m"}),
            ),
            ("roots/list", json!({"_meta": {}}), json!({})),
        ];
        for (method, params, sent) in cases {
            assert_eq!(enforcer_params(method, Some(&params)), sent, "{method}");
            // What is sent reads as what was asked.
            let from_sent = parse(
                GOVERNABLE.iter().find(|m| **m == method).unwrap(),
                Some(&sent),
            );
            let from_asked = parse(
                GOVERNABLE.iter().find(|m| **m == method).unwrap(),
                Some(&params),
            );
            assert_eq!(from_sent, from_asked, "{method}");
        }
        assert_eq!(enforcer_params("prompts/get", None), json!({}));
    }
    use serde_json::json;

    #[test]
    fn each_method_names_its_target() {
        let read = parse(
            "resources/read",
            Some(&json!({"uri": "file:///etc/passwd"})),
        );
        assert_eq!(
            read.map(|c| c.target.label().to_string()),
            Ok("file:///etc/passwd".to_string())
        );
        let prompt = parse(
            "prompts/get",
            Some(&json!({"name": "review", "arguments": {"code": "x"}})),
        )
        .expect("prompt");
        assert_eq!(prompt.target.label(), "review");
        assert_eq!(prompt.arguments, json!({"code": "x"}));
        let completion = parse(
            "completion/complete",
            Some(&json!({"ref": {"type": "ref/resource", "uri": "res://{tag}"}, "argument": {"name": "tag", "value": "ev"}})),
        )
        .expect("completion");
        assert_eq!(completion.target.label(), "res://{tag}");
        assert_eq!(completion.arguments, json!({"tag": "ev"}));
    }

    #[test]
    fn params_that_cannot_be_decided_are_refused() {
        for (method, params, error) in [
            ("resources/read", json!({}), ParamsError::Uri),
            ("resources/read", json!({"uri": 7}), ParamsError::Uri),
            (
                "resources/subscribe",
                json!({"uri": "x".repeat(MAX_TARGET_BYTES + 1)}),
                ParamsError::Uri,
            ),
            ("prompts/get", json!({"arguments": {}}), ParamsError::Name),
            (
                "prompts/get",
                json!({"name": "p", "arguments": []}),
                ParamsError::Arguments,
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/tool"}}),
                ParamsError::Ref,
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "p"}}),
                ParamsError::Argument,
            ),
        ] {
            let method = governable(method).expect("governable");
            assert_eq!(
                parse(method, Some(&params)).err(),
                Some(error),
                "{method} {params}"
            );
        }
        assert_eq!(governable("tools/call"), None);
    }

    #[test]
    fn server_requests_name_what_a_policy_judges() {
        let sampling = parse(
            "sampling/createMessage",
            Some(&json!({"messages": [], "maxTokens": 100, "tools": [{"name": "rm", "inputSchema": {}}], "toolChoice": {"mode": "required"}})),
        )
        .expect("sampling");
        assert_eq!(
            sampling.target,
            Target::Sampling {
                tools: vec!["rm".into()],
                tool_choice: "required".into(),
                max_tokens: 100,
                include_context: "none".into()
            }
        );
        assert_eq!(
            parse("sampling/createMessage", Some(&json!({"tools": [{}]}))).err(),
            Some(ParamsError::Tools)
        );
        for (url, scheme, host) in [
            ("https://Login.Example.com/x", "https", "login.example.com"),
            ("https://user:pw@evil.com:8443/p?q#f", "https", "evil.com"),
            ("https://good.com\\@evil.com/", "https", "good.com"),
            ("https://[::1]:80/", "https", "[::1]"),
            ("https://example.com./", "https", "example.com"),
            ("https:evil.com/x://login.example.com", "https", "evil.com"),
            (
                "javascript:alert(1)//://login.example.com",
                "javascript",
                "",
            ),
            ("https://%65vil.com/", "https", "evil.com"),
            ("https://\u{ff45}vil.com/", "https", "evil.com"),
            ("https://0x7f.1/", "https", "127.0.0.1"),
        ] {
            let call = parse(
                "elicitation/create",
                Some(&json!({"mode": "url", "url": url, "message": "m", "elicitationId": "e"})),
            )
            .expect("url elicitation");
            match call.target {
                Target::Elicitation {
                    scheme: s, host: h, ..
                } => assert_eq!((s.as_str(), h.as_str()), (scheme, host), "{url}"),
                other => panic!("{other:?}"),
            }
        }
        for refused in [
            "ev\til.com",
            "https://ev\til.com/",
            "not a url",
            " https://x/",
        ] {
            assert_eq!(
                parse(
                    "elicitation/create",
                    Some(&json!({"mode": "url", "url": refused, "message": "m"}))
                )
                .err(),
                Some(ParamsError::Elicitation),
                "{refused:?}"
            );
        }
        for bad in [
            json!({"maxTokens": 1e6}),
            json!({"maxTokens": "10"}),
            json!({"toolChoice": {"type": "tool", "name": "rm"}}),
            json!({"toolChoice": "auto"}),
        ] {
            assert!(
                parse("sampling/createMessage", Some(&bad)).is_err(),
                "{bad}"
            );
        }
        let form = parse(
            "elicitation/create",
            Some(&json!({"message": "m", "requestedSchema": {}})),
        );
        assert_eq!(
            form.map(|c| c.target.label().to_string()),
            Ok("form".into())
        );
        assert_eq!(
            parse("elicitation/create", Some(&json!({"mode": "url"}))).err(),
            Some(ParamsError::Elicitation)
        );
        assert_eq!(
            parse("roots/list", None).map(|c| c.target),
            Ok(Target::Roots)
        );
    }

    #[test]
    fn resources_are_read_as_a_url_parser_reads_them() {
        let parts = |uri: &str| match Target::resource(uri) {
            Some(Target::Resource {
                uri,
                scheme,
                host,
                path,
                ..
            }) => Some((uri, scheme, host, path)),
            _ => None,
        };
        for (given, scheme, host, path) in [
            ("file:///home/ann/a.txt", "file", "", "/home/ann/a.txt"),
            ("FILE://Host/srv/x", "file", "host", "/srv/x"),
            ("res://evil/tag", "res", "evil", "/tag"),
            ("urn:isbn:123", "urn", "", "isbn:123"),
            ("https://example.com", "https", "example.com", "/"),
            ("file:///srv/../etc/passwd", "file", "", "/etc/passwd"),
            ("file:///srv/%2e%2e/etc/passwd", "file", "", "/etc/passwd"),
            ("file:///srv/a%2F..%2F..%2Fetc", "file", "", "/etc"),
            ("file:///srv/./a//b/", "file", "", "/srv/a/b"),
            ("file:\\\\localhost\\etc\\passwd", "file", "", "/etc/passwd"),
            ("file:etc/passwd", "file", "", "/etc/passwd"),
            ("file:/\\host/srv", "file", "host", "/srv"),
        ] {
            let (_, s, h, p) = parts(given).unwrap_or_else(|| panic!("{given}"));
            assert_eq!(
                (s.as_str(), h.as_str(), p.as_str()),
                (scheme, host, path),
                "{given}"
            );
        }
        // What a URL parser would rewrite or reject before reading is refused.
        for refused in [
            " file:///etc/passwd",
            "fi\tle:///etc/passwd",
            "\u{1}file:///etc/passwd",
            "file:///srv/shared/.\t./etc",
            "file:///srv/x?/../../etc/passwd",
            "file:///srv/x#y",
            "no-scheme",
            "",
        ] {
            assert_eq!(parts(refused), None, "{refused:?}");
        }
        assert_eq!(
            parts("FILE:///a").map(|p| p.0),
            Some("file:///a".to_string()),
            "the URI as the parser serialises it"
        );
    }
}
