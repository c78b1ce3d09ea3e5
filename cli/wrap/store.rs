//! What `wrap-config` keeps so it can undo itself, and how it replaces a file.
//!
//! Under `~/.thoth/backups/<file name>-<hash of its path>/` (0700): a 0600 copy of the
//! bytes before every write (`<UTC time>-<sha256 prefix>.bak`) and `record.json` —
//! the SHA-256 of what thoth last wrote, the backup holding the pristine original
//! (when the file held no wrapped entry at the time), and the original `command` /
//! `args` text of each entry wrapped.
//!
//! A replacement is atomic: a temporary file in the same directory, the original's
//! mode and owner, fsync, a last check that the file still holds the bytes the edit
//! was computed from, rename, directory fsync. Writing goes through a symlink to its
//! target; the link stays. This module never writes a file that was not re-read and
//! compared first, and never leaves a temporary file behind on error.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::edit::Original;

/// Why the store could not read or write (each message names the file).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("backup {}: {source}", path.display())]
    Backup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source} (move it away to start a new record)", path.display())]
    BadRecord {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error("{} does not match its recorded SHA-256", path.display())]
    BackupMismatch { path: PathBuf },
    #[error("{} has no directory", path.display())]
    NoDirectory { path: PathBuf },
}

impl StoreError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The record of one wrapped file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WrapRecord {
    /// The file, as named when wrapped.
    pub path: PathBuf,
    /// The client it was wrapped as.
    pub client: String,
    /// SHA-256 of the bytes thoth last wrote.
    pub last_written_sha256: Option<String>,
    /// The backup holding the original bytes, while they can still be restored exactly.
    pub pristine_backup: Option<String>,
    /// SHA-256 of the pristine backup.
    pub pristine_sha256: Option<String>,
    /// Original `command`/`args` text per wrapped entry.
    #[serde(default)]
    pub entries: BTreeMap<String, Original>,
}

/// The backup folder of one config file.
pub struct Store {
    dir: PathBuf,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// The folder for `config` under `backups`.
    pub fn for_file(backups: &Path, config: &Path) -> Self {
        let name = config
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".into());
        let id = sha256_hex(config.to_string_lossy().as_bytes());
        Self {
            dir: backups.join(format!("{name}-{}", id.get(..12).unwrap_or(&id))),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record, or an empty one.
    pub fn load(&self) -> Result<WrapRecord, StoreError> {
        let path = self.dir.join("record.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::BadRecord {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WrapRecord::default()),
            Err(e) => Err(StoreError::io(&path)(e)),
        }
    }

    pub fn save(&self, record: &WrapRecord) -> Result<(), StoreError> {
        self.ensure_dir()?;
        let bytes = serde_json::to_vec_pretty(record)?;
        let path = self.dir.join("record.json");
        let tmp = self.dir.join("record.json.tmp");
        crate::private_files::write(&tmp, &bytes).map_err(StoreError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(StoreError::io(&path))
    }

    /// Copies `bytes` into a new 0600 backup; returns its file name.
    pub fn backup(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.ensure_dir()?;
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let hash = sha256_hex(bytes);
        let name = format!("{stamp}-{}.bak", hash.get(..16).unwrap_or(&hash));
        let path = self.dir.join(&name);
        crate::private_files::write(&path, bytes).map_err(|source| StoreError::Backup {
            path: path.clone(),
            source,
        })?;
        Ok(name)
    }

    /// The bytes of a backup, checked against its hash.
    pub fn read_backup(&self, name: &str, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.dir.join(name);
        let bytes = fs::read(&path).map_err(StoreError::io(&path))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(StoreError::BackupMismatch { path });
        }
        Ok(bytes)
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        crate::private_files::create_dirs(&self.dir).map_err(StoreError::io(&self.dir))
    }
}

/// Why a replacement did not happen.
#[derive(Debug)]
pub enum ReplaceError {
    /// The file changed after it was read: read it again and recompute.
    Changed,
    Io(StoreError),
}

/// The file a path names, through any symlinks.
pub fn target_of(path: &Path) -> Result<PathBuf, StoreError> {
    fs::canonicalize(path).map_err(StoreError::io(path))
}

/// Replaces `path`'s target with `new`, provided it still holds bytes whose SHA-256
/// is `expected`. `before_commit` runs just before that last check (tests use it to
/// play a client writing at the worst moment).
pub fn replace(
    path: &Path,
    expected: &str,
    new: &[u8],
    before_commit: &mut dyn FnMut(),
) -> Result<(), ReplaceError> {
    let target = target_of(path).map_err(ReplaceError::Io)?;
    let io = |e: std::io::Error, what: &Path| ReplaceError::Io(StoreError::io(what)(e));
    let meta = fs::metadata(&target).map_err(|e| io(e, &target))?;
    let dir = target.parent().ok_or_else(|| {
        ReplaceError::Io(StoreError::NoDirectory {
            path: target.clone(),
        })
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.thoth-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = crate::private_files::file_options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io(e, &tmp))?;
        file.write_all(new).map_err(|e| io(e, &tmp))?;
        keep_mode_and_owner(&file, &meta).map_err(|e| io(e, &tmp))?;
        file.sync_all().map_err(|e| io(e, &tmp))?;
        drop(file);
        before_commit();
        let now = fs::read(&target).map_err(|e| io(e, &target))?;
        if sha256_hex(&now) != expected {
            return Err(ReplaceError::Changed);
        }
        fs::rename(&tmp, &target).map_err(|e| io(e, &target))?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn keep_mode_and_owner(file: &fs::File, meta: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let current = file.metadata()?;
    if current.uid() != meta.uid() || current.gid() != meta.gid() {
        std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_mode_and_owner(file: &fs::File, meta: &fs::Metadata) -> std::io::Result<()> {
    file.set_permissions(meta.permissions())
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("thoth-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn replace_refuses_a_file_changed_meanwhile_and_cleans_up() {
        let dir = scratch("changed");
        let file = dir.join("c.json");
        fs::write(&file, b"{}").expect("write");
        let expected = sha256_hex(b"{}");
        let result = replace(&file, &expected, b"{\"a\":1}", &mut || {
            fs::write(&file, b"{\"client\":true}").expect("client write");
        });
        assert!(matches!(result, Err(ReplaceError::Changed)));
        assert_eq!(fs::read(&file).expect("read"), b"{\"client\":true}");
        assert_eq!(
            fs::read_dir(&dir).expect("dir").count(),
            1,
            "no temp file left"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn replace_keeps_mode_and_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let real = dir.join("real.json");
        fs::write(&real, b"{}").expect("write");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        replace(&link, &sha256_hex(b"{}"), b"{\"x\":2}", &mut || {}).expect("replaced");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).expect("read"), b"{\"x\":2}");
        let mode = fs::metadata(&real).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn backups_are_private_and_checked() {
        let dir = scratch("backup");
        let store = Store::for_file(&dir, Path::new("/home/a/.cursor/mcp.json"));
        let name = store.backup(b"original").expect("backup");
        assert_eq!(
            store
                .read_backup(&name, &sha256_hex(b"original"))
                .expect("read"),
            b"original"
        );
        assert!(store.read_backup(&name, &sha256_hex(b"other")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.dir().join(&name))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
