//! Helpers shared by the integration tests: they run the real `thoth` binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Asserts that a finished command succeeded; otherwise fails with its exit status,
/// stderr and stdout (all a failing CI log needs).
#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n--- stderr\n{}\n--- stdout\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The thoth binary built for these tests.
pub fn thoth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thoth"));
    cmd.env_remove("THOTH_LOG");
    // The machine's own OpenTelemetry and proxy settings are not the test's.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("OTEL_") || name.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// Runs `cmd` with `input` on stdin and returns its output.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn thoth");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for thoth");
    writer.join().expect("writer thread");
    output
}

/// stdout as lines of text.
pub fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The fixture MCP server built from `examples/fixture_server.rs` (cargo test builds
/// examples before running tests).
pub fn fixture() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let target = exe.parent().and_then(Path::parent).expect("target dir");
    let path = target.join("examples").join("fixture_server");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (it builds examples)",
        path.display()
    );
    path
}

/// A scratch HOME (so ~/.thoth is the test's own) removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("thoth-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
    /// Every audit record thoth wrote under this HOME, as text (empty when none).
    pub fn audit(&self) -> String {
        let mut text = String::new();
        let days = std::fs::read_dir(self.path(".thoth/audit"))
            .into_iter()
            .flatten();
        for day in days.flatten() {
            for file in std::fs::read_dir(day.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                text.push_str(&std::fs::read_to_string(file.path()).unwrap_or_default());
            }
        }
        text
    }

    /// A `thoth` command with HOME here and a dev environment (tests run as root).
    pub fn thoth(&self) -> Command {
        let mut cmd = thoth();
        cmd.env("HOME", &self.dir)
            .env("THOTH_ENV", "dev")
            .env_remove("THOTH_API_KEY")
            .env_remove("THOTH_ENFORCER_URL")
            .env_remove("THOTH_POLICY_FILE")
            .env("THOTH_LOG", "info");
        cmd
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const READ_ONLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/policies/read-only.cedar"
);
pub const HIPAA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies/hipaa.cedar");

/// A running `thoth run` with line-oriented access to its stdout and stderr.
pub struct Proxy {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proxy {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn thoth");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let _ = tx.send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\n')
                        .to_string(),
                );
                line.clear();
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// The next stdout line, within 10 s.
    pub fn recv(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from thoth within 10 s")
    }

    /// The next stdout line as JSON.
    pub fn recv_json(&self) -> serde_json::Value {
        let line = self.recv();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits up to `wait` for another line.
    pub fn try_recv(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// The stdin of thoth, to write from another thread.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for thoth to exit (panics after `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "thoth did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every remaining stdout line (after thoth closed it).
    pub fn rest(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(line);
        }
        out
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True while `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// One HTTP request seen by a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request arrived.
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a [`TestServer`] answers: status, body, and a delay before answering.
pub struct Canned {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for fault injection (one request per
/// connection); it records every request.
pub struct TestServer {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// Reads one HTTP/1.1 request (line, headers, a `content-length` body) from `stream`.
pub fn read_request(stream: &std::net::TcpStream) -> Option<Seen> {
    use std::io::Read;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    Some(Seen {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

impl TestServer {
    pub fn start(answer: impl Fn(&Seen) -> Canned + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = std::sync::Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let log = log.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let Some(request) = read_request(&stream) else {
                        return;
                    };
                    let canned = answer(&request);
                    log.lock().unwrap().push(request);
                    std::thread::sleep(canned.delay);
                    let response = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        canned.status,
                        canned.body.len(),
                        canned.body
                    );
                    let _ = stream.write_all(response.as_bytes());
                });
            }
        });
        Self { url, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A running `thoth enforcer serve` and its address.
pub struct Enforcer {
    pub child: Child,
    pub url: String,
    /// Its stderr up to the line with its address.
    pub startup: String,
}

impl Enforcer {
    pub fn start(s: &Scratch, policy: &str, api_key: &str, approver_key: &str) -> Self {
        Self::start_with(s, policy, api_key, approver_key, &[])
    }

    /// With more `enforcer serve` flags (e.g. --tls-cert/--tls-key).
    pub fn start_with(
        s: &Scratch,
        policy: &str,
        api_key: &str,
        approver_key: &str,
        extra: &[&str],
    ) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let key = s.write("enforcer_key", api_key);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = s
            .thoth()
            .args([
                "enforcer",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--policy",
                policy,
                "--api-key-file",
            ])
            .arg(&key)
            .args(["--events-file"])
            .arg(s.path("events.jsonl"))
            .args(extra)
            .env("THOTH_APPROVER_KEY", approver_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        let url = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("no address in {first:?}");
            }
            first.push_str(&line);
            if let Some(url) = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            {
                break url.to_string();
            }
        };
        std::thread::spawn(move || for _ in reader.lines() {});
        Self {
            child,
            url,
            startup: first,
        }
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Frames that try to make thoth and a server read a tools/call differently, each with
/// the JSON-RPC code thoth answers (none of them is ever forwarded).
pub const ADVERSARIAL: &[(&str, i64)] = &[
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"write_file"}}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":2,"method":"ping","method":"tools/call","params":{"name":"write_file"}}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":3,"method":"ping","Method":"tools/call","params":{"name":"write_file"}}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file"},"paramſ":{"name":"write_file"}}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","Name":"write_file"}}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a","path":"/etc/shadow"}}}"#,
        -32602,
    ),
    (
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"cmd":"ls","CMD":"rm"}}}"#,
        -32602,
    ),
    (
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_file","arguments":{"x":{"a":1,"a":2}}}}"#,
        -32602,
    ),
    (
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"re\u0061d_file\u0000"}}"#,
        -32602,
    ),
    (
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"write_file"},"method":"tools/call"}"#,
        -32600,
    ),
    (
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a","Message":"b"}}}"#,
        -32602,
    ),
];

/// One HTTP/1.1 exchange with the server at `url`: `head` is the request line and
/// headers (without Host), then `body`; returns the whole answer as text.
pub fn http(url: &str, head: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{head}\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// `GET url+path` with the proxy key; the JSON body.
pub fn http_get(url: &str, path: &str, key: &str) -> serde_json::Value {
    let answer = http(url, &format!("GET {path} HTTP/1.1\r\nx-api-key: {key}"), "");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}
