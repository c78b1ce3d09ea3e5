//! Tokio runtimes: thoth uses current-thread runtimes only, one per OS thread that
//! needs async I/O (the proxy's main thread, the relay, the GovAPI agent, and the
//! one-shot clients of `doctor`, `health --probe`, `register`, `approve`/`deny`).

use std::future::Future;

/// A current-thread runtime with I/O and timers.
pub fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs the future `make` builds on a new named thread with its own runtime (built
/// there, so I/O objects created by `make` register with it), then calls `exited`,
/// also when the runtime could not be built.
pub fn spawn_thread<F>(
    name: &str,
    make: impl FnOnce() -> F + Send + 'static,
    exited: impl FnOnce() + Send + 'static,
) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            match current_thread() {
                Ok(rt) => rt.block_on(async move { make().await }),
                Err(e) => tracing::error!("cannot start a runtime: {e}"),
            }
            exited();
        })
        .map(drop)
}
