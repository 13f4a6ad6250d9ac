//! Private files, written so a reader never sees half of one: the bytes go
//! to a fresh temporary file (mode 0600, `O_EXCL`) in the same directory,
//! are flushed to disk, then become the real file in one step: a hard link
//! where an existing file must never be replaced, a rename where it is
//! meant to be. The directory is flushed after.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand_core::RngCore;

use super::IdentityError;

/// Mode of every file written here.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Mode of a directory created here.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700 if it is missing.
/// An existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| IdentityError::io("create the directory", dir, e))?;
    // The umask may have taken bits away (even the owner's): set it exactly.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| IdentityError::io("set the permissions of", dir, e))
}

/// Writes `bytes` to `path` unless a file is already there. Returns
/// `false`, writing nothing, when one is (also when another process
/// created it while we wrote: the hard link is the single point where the
/// file appears, and it fails rather than replace).
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<bool, IdentityError> {
    let temp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links (FAT, some network mounts):
        // `O_EXCL` on the real name still never replaces a file, though a
        // reader racing us could see it half-written.
        Err(e) if is_no_links(&e) => match write_exclusive(path, bytes) {
            Ok(()) => {
                sync_parent(path);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(IdentityError::io("create", path, e)),
        },
        Err(e) => Err(IdentityError::io("create", path, e)),
    }
}

/// Replaces (or creates) `path` with `bytes` in one step.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let temp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(IdentityError::io("replace", path, e));
    }
    sync_parent(path);
    Ok(())
}

/// Opens `path` for reading and checks, on the opened file (no race with a
/// rename), that it is a regular file of at most `max` bytes with none of
/// the `forbidden` permission bits.
pub(crate) fn open_checked(path: &Path, forbidden: u32, max: u64) -> Result<File, IdentityError> {
    // Opening a FIFO would block: look first. Swapping one in after this
    // takes write access to the directory; what is opened is checked again.
    if fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        return Err(IdentityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => IdentityError::NotFound {
            path: path.to_path_buf(),
        },
        _ => IdentityError::io("open", path, e),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| IdentityError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(IdentityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(IdentityError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > max {
        return Err(IdentityError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    Ok(file)
}

/// A fresh temporary file beside `path` holding `bytes`, flushed to disk.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, IdentityError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last_err = None;
    for _ in 0..8 {
        let temp = dir.join(format!(
            ".{name}.tmp-{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_core::OsRng.next_u32()
        ));
        match write_exclusive(&temp, bytes) {
            Ok(()) => return Ok(temp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(IdentityError::io("write a temporary file in", dir, e));
            }
        }
    }
    Err(IdentityError::io(
        "write a temporary file in",
        dir,
        last_err.unwrap_or_else(|| io::Error::other("no free temporary name")),
    ))
}

/// Creates `path` (never an existing file), mode 0600, writes and flushes.
/// A file that was created but could not be written is removed.
fn write_exclusive(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    let written = (|| {
        // The umask cannot add bits, but set the mode exactly anyway.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// `EPERM`, what Linux returns for `link` on FAT (1 on every Unix).
const EPERM: i32 = 1;

/// Whether a hard link failed because the file system has none.
fn is_no_links(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(EPERM)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes the directory entry of `path` (the new name) to disk. Best
/// effort: some file systems cannot sync a directory, and the file itself
/// is complete and flushed by now.
fn sync_parent(path: &Path) {
    if let Ok(dir) = File::open(parent(path)) {
        let _ = dir.sync_all();
    }
}
