//! Reading a file a user names or controls (a policy, its schema, a client config):
//! only a regular file, opened without blocking, and bounded in size.
//!
//! A FIFO would block the read until someone writes to it, `/dev/zero` would grow
//! memory without end, and a command run as root for a user (`health`) must end on
//! its own. This module never waits on a file and never reads more than it was told.

use std::io::Read;
use std::path::Path;

/// Opens `path` for reading and returns its bytes, refusing anything but a regular file
/// of at most `max` bytes (the error names why, for the caller's message).
pub fn read(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer appears; without it, the
        // open returns and the type check below refuses it.
        options.custom_flags(nix::libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {max} thoth reads",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "more than the {max} bytes thoth reads"
        )));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read(path, max)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound() {
        let dir = std::env::temp_dir().join(format!("thoth-user-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read(&small, 3).unwrap(), b"abc");
        assert!(
            read(&small, 2)
                .unwrap_err()
                .to_string()
                .contains("more than the 2")
        );
        assert!(read(&dir, 10).is_err(), "a directory");
        #[cfg(unix)]
        {
            let fifo = dir.join("fifo");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
            // Returns at once, refused.
            assert_eq!(
                read(&fifo, 10).unwrap_err().to_string(),
                "not a regular file"
            );
            assert!(read(Path::new("/dev/zero"), 10).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
