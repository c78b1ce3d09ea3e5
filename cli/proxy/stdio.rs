//! thoth's own stdin and stdout as non-blocking async streams.
//!
//! Pipes (and socketpairs, which Node-based clients use) are registered with the event
//! loop directly, so a frame is read and written without a hand-off to a blocking
//! thread. Anything else (a terminal, a file) falls back to tokio's stdio.

use tokio::io::{AsyncRead, AsyncWrite};

/// thoth's stdin.
pub fn stdin() -> Box<dyn AsyncRead + Unpin> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned()
            && widen(&fd)
            && let Ok(rx) =
                tokio::net::unix::pipe::Receiver::from_file_unchecked(std::fs::File::from(fd))
        {
            return Box::new(rx);
        }
    }
    Box::new(tokio::io::stdin())
}

/// thoth's stdout.
pub fn stdout() -> Box<dyn AsyncWrite + Unpin> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned()
            && widen(&fd)
            && let Ok(tx) =
                tokio::net::unix::pipe::Sender::from_file_unchecked(std::fs::File::from(fd))
        {
            return Box::new(tx);
        }
    }
    Box::new(tokio::io::stdout())
}

/// Widens thoth's end of a pipe (no-op elsewhere); always true, for chaining.
#[cfg(unix)]
fn widen(fd: &std::os::fd::OwnedFd) -> bool {
    #[cfg(target_os = "linux")]
    crate::child::widen_pipe(fd);
    let _ = fd;
    true
}
