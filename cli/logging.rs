//! Diagnostics to stderr through `tracing`, filtered by `THOTH_LOG` (default `info`).
//! Nothing here ever writes to stdout, which carries only protocol frames.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber once; later calls are no-ops.
pub fn init() {
    let filter = std::env::var("THOTH_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}
