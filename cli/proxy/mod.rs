//! `thoth run`: the governed stdio proxy.
//!
//! Two threads: the main one reads the client, scans, decides and writes the server's
//! stdin; the relay thread copies the server's stdout (and thoth's replies) to the
//! client. Each direction of a round trip stays on one thread (no hand-off on the
//! path), and relaying no longer waits behind scanning, so both cores work on a stream.
//! They share only [`calls::RelayBook`] (requests in flight, watched tools/list ids)
//! behind an uncontended mutex, and the reply channel. The pieces:
//!
//! - [`from_client`]: client stdin → scan → forward / decide / answer;
//! - [`from_server`]: server stdout → client stdout, with thoth's replies between lines;
//! - the server writer: frames → server stdin, closed when the client is done;
//! - lifetime: client EOF, signals and the server's death, per docs/architecture.md §3.
//!
//! [`start_pumps`] wires the pumps to any streams: `thoth run` to its stdio and the
//! child's pipes, [`run_pipes`] to four pipes with no child (the pass-through bench and
//! the pumps' property test).

pub mod answers;
pub mod calls;
pub mod checks;
pub mod decide;
pub mod envelope;
pub mod from_client;
pub mod from_server;
pub mod hide;
pub mod hold;
pub mod modify;
pub mod outbox;
pub mod result_inspection;
pub mod server_asks;
mod stdio;
pub mod user_approval;

use std::cell::RefCell;
use std::ffi::OsString;
use std::process::{ExitCode, Stdio};
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::audit::AuditLog;
use crate::child::{self, locate::Resolved};
use crate::settings::RunSettings;
use decide::{Engine, Session};
use from_client::Ctx;
use outbox::Queues;

/// How long a dead server's stdout may take to end before pending calls are answered.
const ORPHAN_WAIT: Duration = Duration::from_millis(500);

/// Why the proxy stopped.
enum Stop {
    ClientDone,
    ServerExited(std::io::Result<std::process::ExitStatus>),
    Signal(&'static str),
}

/// Runs the proxy until the server exits; returns thoth's exit code.
pub fn run(
    settings: RunSettings,
    engine: Engine,
    session: Session,
    resolved: &Resolved,
    args: &[OsString],
    audit: AuditLog,
    catalog: crate::catalog::Catalog,
) -> ExitCode {
    let runtime = match crate::runtime::current_thread() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(crate::exit::SOFTWARE);
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &runtime,
        serve(settings, engine, session, resolved, args, audit, catalog),
    )
}

async fn serve(
    settings: RunSettings,
    engine: Engine,
    session: Session,
    resolved: &Resolved,
    args: &[OsString],
    audit: AuditLog,
    catalog: crate::catalog::Catalog,
) -> ExitCode {
    let mut server = match child::spawn(resolved, args, Stdio::inherit()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start {}: {e}", resolved.path);
            return ExitCode::from(crate::exit::NOT_FOUND);
        }
    };
    let (Some(server_stdin), Some(server_stdout)) =
        (server.child.stdin.take(), server.child.stdout.take())
    else {
        tracing::error!("the server's stdio pipes are missing");
        return ExitCode::from(crate::exit::SOFTWARE);
    };
    #[cfg(unix)]
    let server_stdout = match server_stdout.into_owned_fd() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("the server's stdout cannot be relayed: {e}");
            child::terminate(&mut server);
            return ExitCode::from(crate::exit::SOFTWARE);
        }
    };
    let term_delay = settings.child_term_delay;
    let kill_delay = settings.child_kill_delay;
    let (ctx, queues) = Ctx::new(settings, engine, session, audit);
    *ctx.catalog.borrow_mut() = catalog;
    if let Some(gov) = ctx.settings.govapi.clone() {
        let identity =
            crate::govapi::Identity::from_settings(&ctx.settings, &ctx.session.borrow().id);
        let state = crate::state_file::StateFile::in_profile(&ctx.settings.profile.dir);
        *ctx.gov.borrow_mut() = crate::govapi::Handle::start(gov, identity, state);
    }
    let telemetry_task = start_telemetry(&ctx);
    let otlp_task = start_otlp(&ctx);
    let pumps = start_pumps(
        &ctx,
        queues,
        stdio::stdin(),
        server_stdin,
        server_stdout,
        Box::new(stdio::stdout),
    );
    let Pumps {
        client: mut client_pump,
        writer,
        relay: server_pump,
    } = pumps;
    let mut signals = Signals::new();

    let stop = tokio::select! {
        status = server.child.wait() => Stop::ServerExited(status),
        result = &mut client_pump => {
            if let Ok(Err(e)) = result {
                tracing::warn!("reading the client's stdin failed: {e}");
            }
            Stop::ClientDone
        }
        name = signals.recv() => Stop::Signal(name),
    };

    let status = match stop {
        Stop::ServerExited(status) => {
            client_pump.abort();
            answer_orphans(&ctx, "the MCP server exited").await;
            child::terminate(&mut server);
            status
        }
        Stop::ClientDone => {
            // Finish pending decisions (bounded), then close the server's stdin. No
            // question to the user can be answered any more.
            ctx.questions.close();
            let deadline =
                tokio::time::Instant::now() + ctx.settings.step_up_hold + Duration::from_secs(5);
            let settled = ctx.calls.borrow().settled();
            while !ctx.calls.borrow().is_settled() {
                if tokio::time::timeout_at(deadline, settled.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            ctx.out.close_server();
            tokio::select! {
                status = child::stop(&mut server, term_delay, kill_delay) => status,
                name = signals.recv() => {
                    tracing::info!("{name} received while the server was stopping");
                    child::stop(&mut server, Duration::ZERO, kill_delay).await
                }
            }
        }
        Stop::Signal(name) => {
            tracing::info!("{name} received: stopping the MCP server");
            client_pump.abort();
            child::stop(&mut server, Duration::ZERO, kill_delay).await
        }
    };
    ctx.out.close();
    writer.abort();
    // The server's stdout ends with it; replies are flushed before we exit (a line
    // held for the enforcer may take its timeout first).
    let relay_grace = Duration::from_secs(2)
        + if ctx.settings.enforcer_govern_methods {
            ctx.settings.enforcer_timeout
        } else {
            Duration::ZERO
        };
    let _ = tokio::time::timeout(relay_grace, server_pump).await;
    // Flush telemetry for at most 2 s.
    let telemetry = ctx.telemetry.borrow_mut().take().map(|t| t.dropped());
    drain(
        telemetry,
        telemetry_task,
        crate::telemetry::FLUSH,
        "telemetry event",
    )
    .await;
    // What OTLP has queued goes out, for at most 2 s. (After the last audit records:
    // they are mirrored to it.)
    let flush_otlp = async {
        let otlp = ctx.otlp.borrow_mut().take().map(|o| o.dropped());
        drain(otlp, otlp_task, crate::otlp::FLUSH, "OTLP record").await;
    };
    // The last inventory and heartbeat, bounded.
    let gov = ctx.gov.borrow_mut().take();
    if let Some(gov) = gov {
        gov.finish();
    }
    // What the relay judged last (listings, hidden tools, the server's requests) is
    // audited before the log closes.
    from_client::settle_last(&ctx).await;
    report_relay_changes(&ctx);
    flush_otlp.await;
    let dropped = ctx.audit.dropped();
    ctx.audit.finish();
    if dropped > 0 {
        tracing::warn!(
            "{} dropped under pressure (counted in the chain)",
            crate::wording::count(dropped, "audit record")
        );
    }
    match status {
        Ok(status) => ExitCode::from(child::exit_code(status)),
        Err(e) => {
            tracing::error!("waiting for the MCP server failed: {e}");
            ExitCode::from(crate::exit::SOFTWARE)
        }
    }
}

/// What thoth changed or kept back in the relayed streams, on stderr and as one
/// `relay_changes` audit event, when anything.
fn report_relay_changes(ctx: &Ctx) {
    let shared = ctx.calls.borrow().book.clone();
    let book = calls::book(&shared);
    if book.diverted_lines > 0 {
        tracing::warn!(
            "the server printed {} on stdout that {}; {} to stderr",
            crate::wording::count(book.diverted_lines, "line"),
            if book.diverted_lines == 1 {
                "is not a JSON-RPC message"
            } else {
                "are not JSON-RPC messages"
            },
            if book.diverted_lines == 1 {
                "it went"
            } else {
                "they went"
            }
        );
    }
    let counts = [
        (
            "client_carriage_returns",
            u64::from(book.client_rewrites.carriage_returns),
        ),
        (
            "client_line_separators",
            u64::from(book.client_rewrites.separators),
        ),
        (
            "server_carriage_returns",
            u64::from(book.server_rewrites.carriage_returns),
        ),
        (
            "server_line_separators",
            u64::from(book.server_rewrites.separators),
        ),
        ("server_lines_diverted", book.diverted_lines),
        ("server_lines_cut", book.cut_lines),
        ("tools_hidden", book.tools_hidden),
        ("server_requests_unrecorded", book.server_asked_unrecorded),
    ];
    drop(book);
    if counts.iter().all(|(_, n)| *n == 0) {
        return;
    }
    let fields = counts
        .iter()
        .map(|(name, n)| ((*name).to_string(), serde_json::json!(n)))
        .collect();
    ctx.audit_event("relay_changes", fields);
}

/// Lets an exporter whose sender is gone (`dropped`: what its queue dropped, `None`
/// when it never ran) send what it holds, for at most `limit`.
async fn drain(
    dropped: Option<u64>,
    task: Option<tokio::task::JoinHandle<()>>,
    limit: Duration,
    what: &str,
) {
    let Some(dropped) = dropped else { return };
    if let Some(task) = task {
        let _ = tokio::time::timeout(limit, task).await;
    }
    if dropped > 0 {
        tracing::warn!(
            "{} dropped (queue full)",
            crate::wording::count(dropped, what)
        );
    }
}

/// OTLP export (`crate::otlp`), when the settings turn it on. Its client follows no
/// redirect (the headers may carry a collector's key).
fn start_otlp(ctx: &Rc<Ctx>) -> Option<tokio::task::JoinHandle<()>> {
    let settings = ctx.settings.otlp.clone()?;
    // The enforcer's pins name the enforcer's certificate, not the collector's; and no
    // proxy from the user's environment stands between thoth and the collector.
    let mut tls = ctx.settings.tls.clone();
    tls.pins.clear();
    let client = exporter_client(&tls, "OTLP export", |b| b.no_proxy())?;
    let shown = |url: &str| {
        let url = url.split(['?', '#']).next().unwrap_or_default();
        if url.is_empty() {
            "nowhere".to_string()
        } else {
            crate::settings::env::without_credentials(url)
        }
    };
    tracing::info!(
        "OTLP export to {} (logs) and {} (traces)",
        shown(&settings.logs_url),
        shown(&settings.traces_url)
    );
    let (otlp, task) = crate::otlp::Otlp::start(settings, client);
    *ctx.otlp.borrow_mut() = Some(otlp);
    Some(task)
}

/// An exporter's HTTP client (`crate::net::client_builder`: no redirects; a 2 s connect
/// timeout, then `tune`), or `None` with a warning that `what` is off.
fn exporter_client(
    tls: &crate::settings::TlsSettings,
    what: &str,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Option<reqwest::Client> {
    let built = tls
        .client_config()
        .map_err(|e| e.to_string())
        .and_then(|config| {
            tune(crate::net::client_builder(config).connect_timeout(Duration::from_secs(2)))
                .build()
                .map_err(|e| e.to_string())
        });
    built.map_err(|e| tracing::warn!("{what} is off: {e}")).ok()
}

/// Starts telemetry when a URL and an API key are configured.
fn start_telemetry(ctx: &Rc<Ctx>) -> Option<tokio::task::JoinHandle<()>> {
    let url = ctx.settings.telemetry_url.clone()?;
    let Some(api_key) = ctx.settings.api_key.clone() else {
        tracing::warn!("telemetry to {url} is off: no API key");
        return None;
    };
    // No redirects (crate::net::client_builder): the key and ingest token go to the
    // configured origin only.
    let client = exporter_client(&ctx.settings.tls, "telemetry", |b| {
        b.timeout(Duration::from_secs(5))
    })?;
    let sink = crate::telemetry::Sink {
        url,
        api_key,
        ingest_token: ctx.settings.ingest_token.clone(),
        client,
    };
    let (telemetry, task) = crate::telemetry::Telemetry::start(sink);
    *ctx.telemetry.borrow_mut() = Some(telemetry);
    Some(task)
}

/// Calls waiting for a decision, and requests the server never answered, get an error.
async fn answer_orphans(ctx: &Rc<Ctx>, why: &str) {
    // Responses the server wrote before exiting are still being relayed: answer only
    // what is left once its stdout has ended (bounded: a grandchild may hold it open).
    // A line held for the enforcer holds what follows it: that wait is the enforcer's.
    let book = ctx.calls.borrow().book.clone();
    let mut start = tokio::time::Instant::now();
    let mut was_paused = false;
    let eof = calls::book(&book).server_eof_signal.clone();
    loop {
        let (ended, paused) = {
            let state = calls::book(&book);
            (state.server_eof, state.relay_paused)
        };
        if ended && !paused {
            break;
        }
        if paused || was_paused {
            // The wait for the server's last lines starts again once the hold ends.
            start = tokio::time::Instant::now();
        }
        was_paused = paused;
        let deadline = start
            + if paused {
                ORPHAN_WAIT + ctx.settings.enforcer_timeout
            } else {
                ORPHAN_WAIT
            };
        if tokio::time::timeout_at(deadline, eof.notified())
            .await
            .is_err()
            // (A hold that began while this waited is waited for in its turn.)
            && !calls::book(&book).relay_paused
        {
            break;
        }
    }
    let (pending, in_flight) = {
        let mut state = ctx.calls.borrow_mut();
        let pending = state.drain_pending();
        let in_flight: Vec<_> = calls::book(&state.book)
            .in_flight
            .drain()
            .map(|(_, raw)| raw)
            .collect();
        (pending, in_flight)
    };
    let data = json!({ "reason": "server_exited" });
    for p in &pending {
        if let Some(abort) = &p.abort {
            abort.abort();
        }
    }
    for raw in pending.iter().map(|p| &p.raw_id).chain(in_flight.iter()) {
        ctx.answer_client(answers::error(
            Some(raw),
            answers::INTERNAL,
            why,
            Some(&data),
        ))
        .await;
    }
}

/// Owns the server's stdin: writes frames as they come, and closes it when every
/// sender is gone.
async fn write_server(
    mut stdin: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    spare: Rc<RefCell<Vec<Vec<u8>>>>,
    stall_warn: Duration,
) {
    // No buffered writer: what the client pump read is written from its own buffer.
    // Small writes queued together are joined into one; a large one is never copied.
    while let Some(mut bytes) = rx.recv().await {
        let mut large = None;
        while bytes.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(next) if bytes.len() + next.len() <= COALESCE_BYTES => {
                    bytes.extend_from_slice(&next);
                    recycle(&spare, next);
                }
                Ok(next) => {
                    large = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        for bytes in std::iter::once(bytes).chain(large) {
            if write_watched(&mut stdin, &bytes, stall_warn).await.is_err() {
                return;
            }
            recycle(&spare, bytes);
        }
    }
    let _ = stdin.shutdown().await;
}

/// Writes `bytes` to the server's stdin, warning once per write when the server has
/// read none of it for `stall_warn`: a server that stopped reading (the TypeScript
/// SDK closes its transport for good after a line over its 10 MiB read buffer) would
/// otherwise stall the session without a word. The timer starts only when a write
/// has to wait.
async fn write_watched(
    stdin: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    stall_warn: Duration,
) -> std::io::Result<()> {
    let write = stdin.write_all(bytes);
    tokio::pin!(write);
    // Nearly every write completes at once: only one that waits gets a timer.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(written) = first {
        return written;
    }
    match tokio::time::timeout(stall_warn, &mut write).await {
        Ok(written) => written,
        Err(_) => {
            tracing::warn!(
                "the MCP server has not read its stdin for {} ms ({} bytes waiting); it may \
                 have stopped reading (the TypeScript SDK does after a line over 10 MiB: \
                 lower --max-frame-bytes)",
                stall_warn.as_millis(),
                bytes.len()
            );
            write.await
        }
    }
}

/// Writes queued together are joined up to this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;

/// Hands a spent buffer back: the client pump refills it instead of allocating.
fn recycle(spare: &RefCell<Vec<Vec<u8>>>, mut bytes: Vec<u8>) {
    if bytes.capacity() <= 1 << 20 && spare.borrow().len() < 4 {
        bytes.clear();
        spare.borrow_mut().push(bytes);
    }
}

/// The server's stdout as the relay takes it: a descriptor on Unix (the relay thread
/// registers it with its own runtime), the child's pipe elsewhere.
#[cfg(unix)]
pub type ServerOutput = std::os::fd::OwnedFd;
/// The server's stdout as the relay takes it.
#[cfg(not(unix))]
pub type ServerOutput = tokio::process::ChildStdout;

/// Makes the client's output stream, on the thread that writes it.
pub type ClientOutput = Box<dyn FnOnce() -> Box<dyn AsyncWrite + Unpin> + Send>;

/// A session's running pumps.
pub struct Pumps {
    /// Client → server: ends at the client's EOF.
    pub client: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Writes the server's stdin; closes it once every sender is gone.
    pub writer: tokio::task::JoinHandle<()>,
    /// Resolves when the server → client relay has ended.
    pub relay: tokio::sync::oneshot::Receiver<()>,
}

/// Starts the three pumps of a session between the client's streams and the server's
/// (on the current `LocalSet`, and the relay on its own thread). `thoth run` wires them
/// to its stdio and the child's pipes; [`run_pipes`] to any pipes.
pub fn start_pumps(
    ctx: &Rc<Ctx>,
    queues: Queues,
    client_in: impl AsyncRead + Unpin + 'static,
    server_in: impl AsyncWrite + Unpin + 'static,
    server_out: ServerOutput,
    client_out: ClientOutput,
) -> Pumps {
    let Queues {
        to_server,
        to_client,
    } = queues;
    let writer = tokio::task::spawn_local(write_server(
        server_in,
        to_server,
        ctx.out.spare(),
        ctx.settings.server_stall_warn,
    ));
    let book = ctx.calls.borrow().book.clone();
    let inspects = ctx.settings.inspect_results.any()
        || match &ctx.engine {
            Engine::Local(engine) => engine.reads_detections(),
            Engine::Remote(_) => true,
        };
    if inspects {
        // The detectors compile once (~10 ms): not on the first call's path.
        let _ = std::thread::Builder::new()
            .name("thoth-detectors".into())
            .spawn(crate::inspect::warm_up);
    }
    let remote_asks =
        matches!(&ctx.engine, Engine::Remote(_)) && ctx.settings.enforcer_govern_methods;
    let asks = server_asks::ServerAsks::new(
        match &ctx.engine {
            Engine::Local(engine) => Some(engine.clone()),
            Engine::Remote(_) => None,
        },
        remote_asks,
        &ctx.settings.agent_id,
        &ctx.settings.tenant_id,
        &ctx.settings.user_id,
        ctx.settings.environment,
        ctx.settings.mode,
        &ctx.settings.session_intent,
        &ctx.session.borrow().id,
    );
    let asks = if remote_asks {
        // One question at a time: the relay holds the server's output meanwhile.
        let (questions, asked) = mpsc::channel(1);
        tokio::task::spawn_local(from_client::answer_server_questions(ctx.clone(), asked));
        asks.asking(questions)
    } else {
        asks
    };
    let asks = std::sync::Arc::new(asks);
    let relay = relay_thread(
        book,
        (
            hide_rule(ctx),
            Some(asks),
            ctx.settings
                .inspect_results
                .any()
                .then_some(ctx.settings.inspect_results),
        ),
        server_out,
        to_client,
        client_out,
    );
    tokio::task::spawn_local(from_client::watch_catalog(ctx.clone()));
    let client = tokio::task::spawn_local(from_client::pump(ctx.clone(), client_in));
    Pumps {
        client,
        writer,
        relay,
    }
}

/// The proxy between four pipes, without a child process: what `thoth run` does
/// between a client and a server, for the pass-through bench (`benches/proxy.rs`) and
/// the pumps' property test.
/// Returns when the client's input and the server's output have both ended.
#[cfg(unix)]
pub fn run_pipes(
    ctx_parts: (RunSettings, Engine, Session),
    client_in: std::os::fd::OwnedFd,
    client_out: std::os::fd::OwnedFd,
    server_in: std::os::fd::OwnedFd,
    server_out: std::os::fd::OwnedFd,
) -> std::io::Result<()> {
    use tokio::net::unix::pipe;
    let runtime = crate::runtime::current_thread()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (settings, engine, session) = ctx_parts;
        let (ctx, queues) = Ctx::new(settings, engine, session, AuditLog::disabled());
        let client_in = pipe::Receiver::from_owned_fd(client_in)?;
        let server_in = pipe::Sender::from_owned_fd(server_in)?;
        let client_out: ClientOutput =
            Box::new(move || match pipe::Sender::from_owned_fd(client_out) {
                Ok(tx) => Box::new(tx),
                Err(e) => {
                    tracing::error!("the client's output cannot be written: {e}");
                    Box::new(tokio::io::sink())
                }
            });
        let pumps = start_pumps(&ctx, queues, client_in, server_in, server_out, client_out);
        let read = pumps.client.await.map_err(std::io::Error::other)?;
        ctx.out.close();
        let _ = pumps.writer.await;
        let _ = pumps.relay.await;
        read
    })
}

/// Writes `input` in `chunk`-byte writes through the real pumps ([`run_pipes`]) under
/// the Cedar policy at `policy`; returns what reached the server and what reached the
/// client. With `loopback` the server's stdin is its stdout (and the first part is
/// empty), else the server writes nothing. For the tests and the fuzz target that
/// hold the pumps to what real readers make of their output (`crate::readers`).
#[cfg(unix)]
pub fn run_bytes(
    policy: &std::path::Path,
    input: &[u8],
    chunk: usize,
    loopback: bool,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    use std::io::{Read, Write};
    let profile = crate::settings::profile::Profile {
        dir: std::env::temp_dir().join(format!("thoth-pumps-{}", std::process::id())),
    };
    let local = crate::enforce::local::LocalEngine::load(policy)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let settings = RunSettings::local(policy.to_path_buf(), profile)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let parts = (
        settings,
        Engine::Local(std::sync::Arc::new(local)),
        Session::new(),
    );
    let (client_in, mut feed) = std::io::pipe()?;
    let (mut back, client_out) = std::io::pipe()?;
    let (server_in, server_out, capture) = if loopback {
        let (server_out, server_in) = std::io::pipe()?;
        (server_in, server_out, None)
    } else {
        let (mut seen, server_in) = std::io::pipe()?;
        let (server_out, silent) = std::io::pipe()?;
        drop(silent);
        let capture = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            seen.read_to_end(&mut bytes).map(|_| bytes)
        });
        (server_in, server_out, Some(capture))
    };
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || -> std::io::Result<()> {
        for piece in input.chunks(chunk.max(1)) {
            feed.write_all(piece)?;
        }
        Ok(())
    });
    let pumps = std::thread::spawn(move || {
        run_pipes(
            parts,
            client_in.into(),
            client_out.into(),
            server_in.into(),
            server_out.into(),
        )
    });
    let mut to_client = Vec::new();
    back.read_to_end(&mut to_client)?;
    let joined = |e| std::io::Error::other(format!("a pump thread panicked: {e:?}"));
    feeder.join().map_err(joined)??;
    pumps.join().map_err(joined)??;
    let to_server = match capture {
        Some(capture) => capture.join().map_err(joined)??,
        None => Vec::new(),
    };
    Ok((to_server, to_client))
}

/// Which listed tools the client is not shown: those an `@hide` policy of the local
/// engine forbids for this session's principal (`hide`).
fn hide_rule(ctx: &Ctx) -> Option<std::sync::Arc<hide::HideRule>> {
    let Engine::Local(engine) = &ctx.engine else {
        return None;
    };
    if !engine.hides_tools() {
        return None;
    }
    let engine = engine.clone();
    let s = &ctx.settings;
    let (agent, tenant, user, intent) = (
        s.agent_id.clone(),
        s.tenant_id.clone(),
        s.user_id.clone(),
        s.session_intent.clone(),
    );
    let (environment, mode) = (s.environment, s.mode);
    let rule = move |tool: &str, definition: &serde_json::Value| {
        let facts = crate::catalog::listed_facts(definition);
        engine.hides(&crate::enforce::DecisionInput {
            agent_id: &agent,
            tenant_id: &tenant,
            user_id: &user,
            environment,
            mode,
            session_id: "",
            session_intent: &intent,
            tool_name: tool,
            tool: &facts,
            arguments: None,
            session: &crate::enforce::SessionHistory::default(),
        })
    };
    Some(std::sync::Arc::new(rule))
}

/// Runs the server → client relay on a thread of its own (Unix), so relaying the
/// server's output never waits behind scanning the client's, and the two directions
/// use both cores. The returned receiver resolves when the relay has ended.
fn relay_thread(
    book: calls::SharedBook,
    judges: from_server::Judges,
    server_out: ServerOutput,
    replies: mpsc::Receiver<Vec<u8>>,
    client_out: ClientOutput,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    #[cfg(unix)]
    {
        let relay = move || async move {
            match tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(server_out) {
                Ok(from_server) => {
                    let _ =
                        from_server::pump(book, judges, from_server, replies, client_out()).await;
                }
                Err(e) => tracing::error!("the server's stdout cannot be relayed: {e}"),
            }
        };
        let spawned = crate::runtime::spawn_thread("thoth-relay", relay, move || {
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the relay thread: {e}");
        }
    }
    #[cfg(not(unix))]
    {
        tokio::task::spawn_local(async move {
            let _ = from_server::pump(book, judges, server_out, replies, client_out()).await;
            let _ = done_tx.send(());
        });
    }
    done_rx
}

/// SIGTERM, SIGINT and SIGHUP to thoth.
struct Signals {
    #[cfg(unix)]
    streams: [Option<tokio::signal::unix::Signal>; 3],
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                streams: [
                    SignalKind::terminate(),
                    SignalKind::interrupt(),
                    SignalKind::hangup(),
                ]
                .map(|k| signal(k).ok()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let [term, int, hup] = &mut self.streams;
            tokio::select! {
                () = next(term) => "SIGTERM",
                () = next(int) => "SIGINT",
                () = next(hup) => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(unix)]
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(s) = signal
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

#[cfg(all(test, unix))]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;

    /// One client line and what the proxy must do with it.
    fn line(kind: u8, i: usize) -> (String, Option<String>) {
        let note =
            format!(r#"{{"jsonrpc":"2.0","method":"notifications/n","params":{{"i":{i}}}}}"#);
        match kind % 6 {
            0 => (note.clone(), Some(note)),
            1 => (format!("not json {i}"), None),
            2 => (" \t".into(), None),
            3 => (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#.into(),
                None,
            ),
            4 => {
                let response = format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{}}}}"#);
                (response.clone(), Some(response))
            }
            _ => (format!("[{note}]"), Some(format!("[{note}]"))),
        }
    }

    /// Writes `input` in `chunk`-byte writes through the real pumps, the server's stdin
    /// looped to its stdout; returns the client's output lines.
    fn through_pumps(input: Vec<u8>, chunk: usize) -> Vec<String> {
        let policy =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/policies/allow-all.cedar");
        let (to_server, to_client) = run_bytes(&policy, &input, chunk, true).unwrap();
        assert!(to_server.is_empty());
        String::from_utf8(to_client)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A policy that allows the tool `safe` and nothing else.
    /// Written once per test process: tests run on parallel threads, and one rewriting
    /// the file while another loads it would hand that one an empty policy.
    fn only_safe() -> PathBuf {
        static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("thoth-only-safe-{}.cedar", std::process::id()));
            std::fs::write(
                &path,
                "@id(\"only-safe\")\npermit (principal, action, resource) when { resource.name == \"safe\" };\n",
            )
            .unwrap();
            path
        })
        .clone()
    }

    const EVIL: &str = r#"{"jsonrpc":"2.0","id":"evil","method":"tools/call","params":{"name":"evil","arguments":{}}}"#;

    /// A value that hides a line break from one class of reader or another.
    fn hiding(kind: u8) -> String {
        match kind % 8 {
            0 => format!("\r{EVIL}\r"),
            1 => format!(" \t{EVIL}\r "),
            2 => "\"a\u{2028}b\u{2029}c\"".into(),
            3 => format!("\"\u{85}{}\u{85}\"", EVIL.replace('"', "\\\"")),
            4 => r#""escaped \u2028 \r""#.into(),
            5 => format!("[\r{EVIL},\r1]"),
            6 => "\"caf\u{e9} \u{2026}\"".into(),
            _ => "1".into(),
        }
    }

    /// One client frame (without terminator) and the value the server must receive.
    fn smuggler(kind: u8, hide: u8, i: usize) -> (String, Option<serde_json::Value>) {
        let v = hiding(hide);
        let frame = match kind % 8 {
            0 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"safe","arguments":{{"pad":{v}}}}}}}"#
            ),
            1 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"evil","arguments":{{"pad":{v}}}}}}}"#
            ),
            2 => format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"x":{v}}}}}"#
            ),
            3 => format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"ping","params":{{"_meta":{{"x":{v}}}}}}}"#
            ),
            4 => format!(r#"{{"jsonrpc":"2.0","id":"r{i}","result":{{"x":{v}}}}}"#),
            5 => {
                let safe = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"safe","arguments":{{"pad":{v}}}}}}}"#
                );
                let note = format!(r#"{{"jsonrpc":"2.0","method":"n","params":{{"x":{v}}}}}"#);
                let frame = format!("[{safe},\r{EVIL},{note}]");
                let forwarded = format!("[{safe},{note}]");
                return (frame, serde_json::from_str(&forwarded).ok());
            }
            6 => format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":"x{i}","reason":{v}}}}}"#
            ),
            _ => format!("{{\"jsonrpc\":\"2.0\",\u{2028}{EVIL}\u{2028}}}"),
        };
        let value = serde_json::from_str(&frame).ok();
        (frame, value)
    }

    fn sorted(values: &[serde_json::Value]) -> Vec<String> {
        let mut texts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        texts.sort();
        texts
    }

    /// thoth's own replies are frames thoth writes: canonical lines too, even when the
    /// id or the tool name they copy from the client holds a raw U+2028, U+2029 or U+0085.
    #[test]
    fn replies_to_the_client_are_canonical_lines() {
        let frames = [
            "{\"jsonrpc\":\"2.0\",\"id\":\"a\u{2028}b\",\"method\":\"tools/call\",\"params\":{\"name\":\"evil\"}}",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"ev\u{2029}il\"}}",
            "{\"jsonrpc\":\"2.0\",\"id\":\"c\u{85}d\",\"method\":\"tools/call\",\"params\":{\"name\":\"safe\",\"arguments\":{\"a\":1,\"a\":2}}}",
        ];
        let input = frames.map(|f| format!("{f}\n")).concat();
        let (_, to_client) = run_bytes(&only_safe(), input.as_bytes(), 4096, false).unwrap();
        let text = String::from_utf8(to_client).unwrap();
        assert_eq!(text.lines().count(), frames.len(), "{text:?}");
        assert!(
            !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']),
            "{text:?}"
        );
        for reader in crate::readers::Reader::ALL {
            assert_eq!(
                reader.messages(text.as_bytes()).len(),
                frames.len(),
                "{reader:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a client hides behind CRs and Unicode line separators, every class of
        /// reader (`crate::readers`) parses exactly the same messages from what thoth
        /// wrote to the server, those are the frames thoth forwarded by value, and the
        /// only tools/call any of them sees is the allowed one.
        #[test]
        fn every_reader_sees_only_what_was_decided(
            frames in prop::collection::vec((any::<u8>(), any::<u8>(), any::<bool>()), 1..24),
            chunk in 1usize..300,
        ) {
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for (i, (kind, hide, crlf)) in frames.iter().enumerate() {
                let (frame, value) = smuggler(*kind, *hide, i);
                input.extend_from_slice(frame.as_bytes());
                input.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                if kind % 8 != 1 {
                    expected.extend(value);
                }
            }
            let (to_server, replies) = run_bytes(&only_safe(), &input, chunk, false).unwrap();
            // thoth's own answers to the client read alike for every reader too.
            let answers = crate::readers::Reader::Newline.messages(&replies);
            for reader in crate::readers::Reader::ALL {
                prop_assert_eq!(&reader.messages(&replies), &answers, "{:?}", reader);
            }
            let seen = crate::readers::Reader::Newline.messages(&to_server);
            for reader in crate::readers::Reader::ALL {
                let theirs = reader.messages(&to_server);
                prop_assert_eq!(&theirs, &seen, "{:?}", reader);
                for call in crate::readers::tool_calls(&theirs) {
                    prop_assert_eq!(call["params"]["name"].as_str(), Some("safe"), "{:?}: {}", reader, call);
                    prop_assert!(call.get("id").is_some());
                }
            }
            // Decisions finish in their own time: compare as multisets.
            prop_assert_eq!(sorted(&seen), sorted(&expected));
            let text = String::from_utf8(to_server).unwrap();
            let separators = ['\r', '\u{2028}', '\u{2029}', '\u{85}'];
            prop_assert!(!text.contains(separators), "{:?}", text);
            prop_assert_eq!(text.lines().count(), seen.len());
        }

        /// However the client's bytes are cut into reads, and whatever is answered,
        /// dropped or skipped between them, the forwarded frames reach the server
        /// byte for byte and in order, each with a bare `\n`.
        #[test]
        fn forwarded_frames_keep_their_bytes_and_order(
            kinds in prop::collection::vec((any::<u8>(), any::<bool>()), 1..40),
            chunk in 1usize..200,
            unterminated in any::<bool>(),
        ) {
            let mut input = Vec::new();
            let mut forwarded = Vec::new();
            let mut invalid = 0;
            for (i, (kind, crlf)) in kinds.iter().enumerate() {
                let (text, expected) = line(*kind, i);
                input.extend_from_slice(text.as_bytes());
                if !(unterminated && i + 1 == kinds.len()) {
                    input.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                }
                invalid += usize::from(kind % 6 == 1);
                forwarded.extend(expected);
            }
            let output = through_pumps(input, chunk);
            let (errors, relayed): (Vec<_>, Vec<_>) =
                output.into_iter().partition(|l| l.contains(r#""error""#));
            prop_assert_eq!(relayed, forwarded);
            prop_assert_eq!(errors.len(), invalid);
        }
    }
}
