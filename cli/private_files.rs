//! Folders and files only their owner can read (0700 and 0600 on Unix): the profile,
//! audit logs, backups, records and state. Elsewhere the platform's defaults apply.

use std::io::Write;
use std::path::Path;

/// Creates `dir` and its missing parents, private.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a private file (the mode applies only when it is created).
pub fn file_options() -> std::fs::OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `bytes` to `path` (created private, or truncated) and syncs it.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `bytes` to a new private file at `path` (never an existing file or a link
/// planted there) and syncs it.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = file_options().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
