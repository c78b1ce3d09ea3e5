//! `thoth scan`: one JSON line per frame describing how thoth-core reads it.
//!
//! Frames come from the core framer (or the whole input with `--whole`), so what this
//! prints is exactly what the proxy would see. Invalid frames are data, not failures:
//! the exit code is 0 unless the input does not exist (66) or reading or writing
//! fails (74).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use thoth_core::{Error, FrameStep, LineFramer, Message, RawStr, tool_call};

use crate::args::ScanArgs;

/// Why a scan stopped (an invalid frame never does).
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("read failed: {0}")]
    Read(io::Error),
    #[error("write failed: {0}")]
    Write(io::Error),
}

/// Runs `thoth scan`.
pub fn run(args: &ScanArgs) -> ExitCode {
    let result = match &args.file {
        Some(path) => std::fs::File::open(path)
            .map_err(|source| ScanError::Open {
                path: path.clone(),
                source,
            })
            .and_then(|file| scan_stream(file, args)),
        None => scan_stream(io::stdin().lock(), args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("thoth scan: {}", crate::logging::escaped(&e.to_string()));
            ExitCode::from(match &e {
                ScanError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    crate::exit::NO_INPUT
                }
                _ => crate::exit::IO_ERROR,
            })
        }
    }
}

fn scan_stream(mut input: impl Read, args: &ScanArgs) -> Result<(), ScanError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut number = 0usize;
    let mut emit = |line: Option<String>, out: &mut io::BufWriter<io::StdoutLock<'_>>| {
        number += 1;
        let members =
            line.unwrap_or_else(|| r#""kind":"invalid","error":"frame_too_large""#.into());
        writeln!(out, r#"{{"frame":{number},{members}}}"#)
    };
    if args.whole {
        let mut all = Vec::new();
        input
            .take(args.max_frame_bytes as u64 + 1)
            .read_to_end(&mut all)
            .map_err(ScanError::Read)?;
        let line = (all.len() <= args.max_frame_bytes).then(|| describe(&all));
        return finish(emit(line, &mut out).and_then(|()| out.flush()));
    }
    let mut framer = LineFramer::new(args.max_frame_bytes);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ScanError::Read(e)),
        };
        if n == 0 {
            if let Some(line) = step_line(framer.finish(&buf), &buf) {
                finish(emit(line, &mut out))?;
            }
            return finish(out.flush());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        loop {
            let step = framer.step(&buf);
            let line = step_line(step, &buf);
            let consumed = match step {
                FrameStep::Frame { consumed, .. }
                | FrameStep::Oversized { consumed, .. }
                | FrameStep::NeedMore { consumed } => consumed,
            };
            if let Some(line) = line {
                finish(emit(line, &mut out))?;
            }
            buf.drain(..consumed);
            if matches!(step, FrameStep::NeedMore { .. }) {
                break;
            }
        }
    }
}

/// `Some(Some(line))` for a frame, `Some(None)` for an oversized one.
fn step_line(step: FrameStep, buf: &[u8]) -> Option<Option<String>> {
    match step {
        FrameStep::Frame { frame, .. } => Some(Some(describe(frame.of(buf)))),
        FrameStep::Oversized { .. } => Some(None),
        FrameStep::NeedMore { .. } => None,
    }
}

/// A closed stdout (`thoth scan | head`) ends the scan quietly.
fn finish(result: io::Result<()>) -> Result<(), ScanError> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(ScanError::Write(e)),
        _ => Ok(()),
    }
}

/// The members of the JSON object describing one frame (without braces or number).
pub fn describe(frame: &[u8]) -> String {
    match thoth_core::scan(frame) {
        Ok(Message::Batch(batch)) => {
            let elements: Vec<String> = batch
                .elements()
                .map(|element| match element {
                    Ok(message) => format!("{{{}}}", describe_message(frame, &message)),
                    Err(e) => format!("{{{}}}", describe_error(frame, &e)),
                })
                .collect();
            format!(r#""kind":"batch","elements":[{}]"#, elements.join(","))
        }
        Ok(message) => describe_message(frame, &message),
        Err(e) => describe_error(frame, &e),
    }
}

fn describe_message(frame: &[u8], message: &Message<'_>) -> String {
    let mut out = String::new();
    match message {
        Message::Request(call) | Message::Notification(call) if call.is_tool_call() => {
            if let Err(refusal) = crate::proxy::checks::check(frame, call) {
                // What run refuses before any policy: the same reason it answers with.
                out.push_str(r#""kind":"invalid","method":"tools/call""#);
                if let Some(id) = call.id() {
                    let _ = write!(out, r#","id":{}"#, String::from_utf8_lossy(id.raw));
                }
                let _ = write!(out, r#","error":"{}""#, refusal.reason());
                return out;
            }
            return describe_call(call);
        }
        Message::Request(call) | Message::Notification(call) => return describe_call(call),
        Message::Response(response) => {
            let _ = write!(
                out,
                r#""kind":"response","id":{}"#,
                String::from_utf8_lossy(response.id().raw)
            );
        }
        Message::Batch(_) => out.push_str(r#""kind":"batch""#),
    }
    out
}

/// A request or notification that passes every check of its own.
fn describe_call(call: &thoth_core::Call<'_>) -> String {
    let mut out = String::new();
    let kind = if call.id().is_some() {
        "request"
    } else {
        "notification"
    };
    let _ = write!(
        out,
        r#""kind":"{kind}","method":{}"#,
        quoted(&call.method())
    );
    if let Some(id) = call.id() {
        let _ = write!(out, r#","id":{}"#, String::from_utf8_lossy(id.raw));
    }
    if let Ok(tc) = tool_call(call) {
        let _ = write!(out, r#","tool":{}"#, json_string(&tc.name));
        if let Some(span) = tc.arguments {
            let _ = write!(out, r#","arguments":[{},{}]"#, span.start, span.end);
        }
    }
    out
}

fn describe_error(frame: &[u8], e: &Error) -> String {
    let mut out = String::from(r#""kind":"invalid""#);
    if let Some(id) = e.id {
        let _ = write!(out, r#","id":{}"#, String::from_utf8_lossy(id.of(frame)));
    }
    let _ = write!(out, r#","error":"{}""#, e.kind.as_str());
    out
}

fn quoted(raw: &RawStr<'_>) -> String {
    json_string(&raw.chars().collect::<String>())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
