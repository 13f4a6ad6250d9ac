//! Why the identity key or the known-peers file could not be used.
//!
//! Every message names the file and says what to do; they are written for
//! the person running `peer`, who sees them as `error: <message>: <cause>`
//! (the I/O cause, where there is one, is the error's `source`).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// A failure reading or writing the identity key or the known-peers file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Neither `$XDG_DATA_HOME` (absolute) nor `$HOME` is set.
    #[error(
        "cannot tell where to keep the identity key: neither XDG_DATA_HOME nor HOME is set \
         (pass --identity PATH, or --ephemeral for a throw-away identity)"
    )]
    NoDataDir,

    /// There is no file at the path (only [`crate::identity::keyfile::load`]).
    #[error("there is no identity key at {}", path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },

    /// The file has permission bits for group or others that it must not
    /// have (any, for the key; write, for the known-peers file).
    #[error(
        "{} is accessible by other users (mode {mode:04o}): p2pchat refuses it, as ssh \
         refuses such files; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// Not a regular file (a directory, a device, a socket).
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },

    /// Larger than a file of its kind can be.
    #[error(
        "{} is too large ({size} bytes; at most {max} bytes): it is not a file p2pchat wrote, \
         and it was left untouched",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least this much).
        size: u64,
        /// The bound.
        max: u64,
    },

    /// The key file does not hold an Ed25519 PKCS#8 PEM private key.
    #[error(
        "the identity key {} is not a valid Ed25519 private key: {reason}; it was left \
         untouched: restore it from a backup, or move it away to start over with a new \
         identity (peers who knew you will see a new key)",
        path.display()
    )]
    CorruptKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The file exists but we may not open it.
    #[error(
        "cannot {action} {}: permission denied (it and its directory should belong to you; \
         the key file with mode 600)",
        path.display()
    )]
    PermissionDenied {
        /// What failed, e.g. "read".
        action: &'static str,
        /// The file.
        path: PathBuf,
    },

    /// Any other I/O failure; `action` says what we were doing.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What failed, e.g. "read" or "create the directory".
        action: &'static str,
        /// The path it failed on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A line of the known-peers file does not parse.
    #[error(
        "{} line {line}: {reason}; fix or delete that line (no pin is ever dropped silently)",
        path.display()
    )]
    KnownPeersLine {
        /// The known-peers file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Pinning one more peer would pass `MAX_KNOWN_PEERS`.
    #[error(
        "cannot remember another peer: {max} known peers is the limit{}; remove lines of \
         peers you no longer talk to",
        match path { Some(p) => format!(" of {}", p.display()), None => String::new() }
    )]
    TooManyKnownPeers {
        /// The known-peers file, when file-backed.
        path: Option<PathBuf>,
        /// The bound.
        max: usize,
    },

    /// A pin whose key does not derive its peer id (a caller's mistake:
    /// such a peer is refused before it could be pinned), or an id already
    /// pinned to another key (two keys deriving one id: a forged collision).
    #[error(
        "cannot pin peer {peer_id}: its key does not derive that id, or the id is pinned to another key"
    )]
    KeyDoesNotOwnId {
        /// The id.
        peer_id: p2pchat::PeerId,
    },

    /// A username too long to pin (longer than any the server accepts).
    #[error("cannot pin a username of {len} bytes (at most {max})")]
    UsernameTooLong {
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },

    /// The username is already pinned to another key: the caller must
    /// [`forget`](crate::identity::known_peers::KnownPeers::forget) the old
    /// pin first (the user's `/trust`).
    #[error("{username:?} is pinned to another key; accept the new key explicitly (/trust) first")]
    NameAlreadyPinned {
        /// The username.
        username: String,
    },
}

impl IdentityError {
    /// Maps an I/O error on `path`, giving permission denied its own message.
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            IdentityError::PermissionDenied {
                action,
                path: path.to_path_buf(),
            }
        } else {
            IdentityError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}
