//! Trust on first use: the keys we have seen, pinned so a later change is
//! noticed.
//!
//! # What is pinned, and what a change means
//!
//! A peer id is derived from its key, so a peer id can never honestly
//! come with another key: a key that does not derive the id it claims is
//! refused before it gets here. The id pin ([`KnownPeers::check`]) thus
//! answers "have we met this key before?". The real trust-on-first-use
//! signal is the *username*: people address peers by name, and "Bob" with
//! a key we have not seen for "Bob" is either Bob on a new device or after
//! a reinstall, or someone else calling himself Bob.
//! [`KnownPeers::check_name`] answers that.
//!
//! A pin is one line: (username, key, peer id, first seen). Rules:
//! * At most one pin per username (exact, case-sensitive string match:
//!   look-alike names such as "bob" or "B0b" are different names, and
//!   their first contact is reported as new, not as changed).
//! * A peer id may have several pins, one per name it was seen under, so a
//!   peer that renames keeps every name it had pinned to its key.
//! * A pin is never replaced implicitly: [`KnownPeers::pin`] of a name
//!   pinned to another key fails with
//!   [`IdentityError::NameAlreadyPinned`]. Accepting a new key for a name
//!   is an explicit act (`/trust Bob`): [`KnownPeers::forget_name`] (or
//!   [`KnownPeers::forget`] of the old id, which drops all its names), then
//!   [`KnownPeers::pin`].
//! * A peer seen without a username is pinned by id only (name `-`).
//!
//! # The file
//!
//! `known_peers` beside the identity key ([`path_next_to`]), mode 0600,
//! rewritten whole and atomically (temporary file, rename) on every change;
//! its line format is documented in [`mod@format`].
//!
//! Bounds: [`MAX_KNOWN_PEERS`] pins (lines), [`MAX_KNOWN_PEERS_FILE_BYTES`]
//! bytes, [`MAX_PINNED_USERNAME_BYTES`] per name. A file over a bound, a
//! line that does not parse, a username pinned twice or a file writable by
//! group or others is an error naming the file (and line): pins are never
//! dropped silently. Comments are not kept when p2pchat rewrites the file;
//! deleting a pin's line by hand (while `peer` is not running) is the
//! other way to accept a changed key.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use p2pchat::{PeerId, PublicKey};

use super::{IdentityError, atomic};
use crate::text::sanitize_display;

pub mod format;

/// The file's name, in the identity key's directory.
pub const KNOWN_PEERS_FILE_NAME: &str = "known_peers";

/// Most pins (lines) kept.
pub const MAX_KNOWN_PEERS: usize = 10_000;

/// Largest known-peers file read: room for [`MAX_KNOWN_PEERS`] lines with
/// the longest escaped names (about 880 bytes each), plus comments.
pub const MAX_KNOWN_PEERS_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest username pinned, in bytes (the server allows 64 characters, at
/// most 256 bytes of UTF-8).
pub const MAX_PINNED_USERNAME_BYTES: usize = 256;

/// Permission bits the file must not have: write for group or others (who
/// could plant pins).
const FORBIDDEN_MODE: u32 = 0o022;

/// What the pins say about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Nothing pinned: first contact.
    New,
    /// Pinned, and this is the key.
    Matches,
    /// Pinned to another key: warn the user (see
    /// [`changed_key_explanation`]) and do not treat the peer as known.
    Changed {
        /// The key pinned before.
        pinned: PublicKey,
    },
}

/// One pin (one line of the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedPeer {
    /// The id the key derives.
    pub peer_id: PeerId,
    /// The pinned key.
    pub key: PublicKey,
    /// The name it was pinned under (`None`: pinned by id only).
    pub username: Option<String>,
    /// Unix seconds when pinned.
    pub first_seen: u64,
}

/// The pins, in memory and (unless [`KnownPeers::in_memory`]) on disk.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    /// `None`: nothing is persisted (`--ephemeral`).
    path: Option<PathBuf>,
    /// In file order.
    pins: Vec<PinnedPeer>,
    /// Username to index in `pins`.
    by_name: HashMap<String, usize>,
    /// Peer id to the index of one of its pins (all share the key).
    by_id: HashMap<PeerId, usize>,
}

/// `known_peers` in the directory of `identity_path`.
pub fn path_next_to(identity_path: &Path) -> PathBuf {
    match identity_path.parent() {
        Some(dir) => dir.join(KNOWN_PEERS_FILE_NAME),
        None => PathBuf::from(KNOWN_PEERS_FILE_NAME),
    }
}

impl KnownPeers {
    /// Empty pins that are never written anywhere.
    pub fn in_memory() -> KnownPeers {
        KnownPeers {
            path: None,
            pins: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    /// Reads the pins at `path` (a missing file is no pins); later changes
    /// are written there.
    pub fn load(path: &Path) -> Result<KnownPeers, IdentityError> {
        let mut known = KnownPeers {
            path: Some(path.to_path_buf()),
            ..KnownPeers::in_memory()
        };
        let file = match atomic::open_checked(path, FORBIDDEN_MODE, MAX_KNOWN_PEERS_FILE_BYTES) {
            Ok(file) => file,
            Err(IdentityError::NotFound { .. }) => return Ok(known),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(MAX_KNOWN_PEERS_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| IdentityError::io("read", path, e))?;
        if bytes.len() as u64 > MAX_KNOWN_PEERS_FILE_BYTES {
            return Err(IdentityError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                max: MAX_KNOWN_PEERS_FILE_BYTES,
            });
        }
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let bad = |reason: String| IdentityError::KnownPeersLine {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".to_owned()))?;
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.trim().is_empty() || text.trim_start().starts_with('#') {
                continue;
            }
            let pin = format::parse_line(text).map_err(bad)?;
            if known.pins.len() >= MAX_KNOWN_PEERS {
                return Err(bad(format!("more than {MAX_KNOWN_PEERS} pins")));
            }
            if let Some(name) = &pin.username
                && let Some(&other) = known.by_name.get(name)
            {
                let first = &known.pins[other];
                return Err(bad(format!(
                    "{name:?} is pinned twice (also to key {}); keep one of the lines",
                    first.key
                )));
            }
            if let Some(&other) = known.by_id.get(&pin.peer_id)
                && known.pins[other].key != pin.key
            {
                return Err(bad(format!(
                    "peer id {} is pinned to two keys",
                    pin.peer_id
                )));
            }
            known.pins.push(pin);
            known.index_last();
        }
        Ok(known)
    }

    /// Where the pins are written (`None`: in memory only).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of pins.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether there are no pins.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// Every pin, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &PinnedPeer> {
        self.pins.iter()
    }

    /// Whether `key` is the one pinned for `peer_id`. Since ids derive from
    /// keys, [`Pin::Changed`] here means a key that does not own the id.
    pub fn check(&self, peer_id: PeerId, key: &PublicKey) -> Pin {
        match self.by_id.get(&peer_id) {
            None => Pin::New,
            Some(&i) => compare(&self.pins[i].key, key),
        }
    }

    /// Whether `key` is the one pinned for `username`: [`Pin::Changed`] is
    /// the trust-on-first-use warning. An empty username is never pinned,
    /// so it is always [`Pin::New`].
    pub fn check_name(&self, username: &str, key: &PublicKey) -> Pin {
        match self.by_name.get(username) {
            None => Pin::New,
            Some(&i) => compare(&self.pins[i].key, key),
        }
    }

    /// The pin of `username`, if any.
    pub fn pinned_name(&self, username: &str) -> Option<&PinnedPeer> {
        self.by_name.get(username).map(|&i| &self.pins[i])
    }

    /// Pins `key` for `peer_id` and `username` (empty: by id only), first
    /// seen at `now_unix`, and persists the pins if file-backed. Pinning
    /// what is already pinned changes nothing (the first sighting stays).
    /// Fails, changing nothing, if `username` is pinned to another key
    /// ([`IdentityError::NameAlreadyPinned`]: forget it first), if the key
    /// does not derive `peer_id`, at [`MAX_KNOWN_PEERS`], or if the file
    /// cannot be written.
    pub fn pin(
        &mut self,
        peer_id: PeerId,
        key: &PublicKey,
        username: &str,
        now_unix: u64,
    ) -> Result<(), IdentityError> {
        if !key.owns(&peer_id) {
            return Err(IdentityError::KeyDoesNotOwnId { peer_id });
        }
        if username.len() > MAX_PINNED_USERNAME_BYTES {
            return Err(IdentityError::UsernameTooLong {
                len: username.len(),
                max: MAX_PINNED_USERNAME_BYTES,
            });
        }
        if let Pin::Changed { .. } = self.check(peer_id, key) {
            // Two keys deriving one id: a hash collision someone made.
            return Err(IdentityError::KeyDoesNotOwnId { peer_id });
        }
        let mut pins = self.pins.clone();
        if username.is_empty() {
            if self.by_id.contains_key(&peer_id) {
                return Ok(());
            }
        } else {
            match self.check_name(username, key) {
                Pin::Matches => return Ok(()),
                Pin::Changed { .. } => {
                    return Err(IdentityError::NameAlreadyPinned {
                        username: username.to_owned(),
                    });
                }
                // A named pin makes the id's nameless one redundant.
                Pin::New => pins.retain(|p| p.peer_id != peer_id || p.username.is_some()),
            }
        }
        if pins.len() >= MAX_KNOWN_PEERS {
            return Err(IdentityError::TooManyKnownPeers {
                path: self.path.clone(),
                max: MAX_KNOWN_PEERS,
            });
        }
        pins.push(PinnedPeer {
            peer_id,
            key: *key,
            username: (!username.is_empty()).then(|| username.to_owned()),
            first_seen: now_unix,
        });
        self.commit(pins)
    }

    /// Drops every pin of `peer_id` (all its names); returns how many, and
    /// persists if file-backed.
    pub fn forget(&mut self, peer_id: PeerId) -> Result<usize, IdentityError> {
        let mut pins = self.pins.clone();
        pins.retain(|p| p.peer_id != peer_id);
        let removed = self.pins.len() - pins.len();
        if removed > 0 {
            self.commit(pins)?;
        }
        Ok(removed)
    }

    /// Drops the pin of `username` (the user accepted a new key for that
    /// name, `/trust NAME`); returns it, and persists if file-backed.
    pub fn forget_name(&mut self, username: &str) -> Result<Option<PinnedPeer>, IdentityError> {
        let Some(&i) = self.by_name.get(username) else {
            return Ok(None);
        };
        let mut pins = self.pins.clone();
        let removed = pins.remove(i);
        self.commit(pins)?;
        Ok(Some(removed))
    }

    /// Writes `pins` (if file-backed), then makes them the current ones:
    /// on a write failure nothing changes.
    fn commit(&mut self, pins: Vec<PinnedPeer>) -> Result<(), IdentityError> {
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                atomic::create_private_dir(dir)?;
            }
            atomic::replace(path, format::render(&pins).as_bytes())?;
        }
        self.pins = pins;
        self.reindex();
        Ok(())
    }

    fn reindex(&mut self) {
        self.by_name.clear();
        self.by_id.clear();
        for i in 0..self.pins.len() {
            self.index(i);
        }
    }

    fn index_last(&mut self) {
        self.index(self.pins.len() - 1);
    }

    fn index(&mut self, i: usize) {
        let pin = &self.pins[i];
        if let Some(name) = &pin.username {
            self.by_name.insert(name.clone(), i);
        }
        self.by_id.entry(pin.peer_id).or_insert(i);
    }
}

/// What to tell the user when `username` shows up with `presented` while
/// `pinned` was pinned for that name. The username (network text) is
/// neutralised for the terminal here ([`sanitize_display`]).
pub fn changed_key_explanation(
    username: &str,
    pinned: &PublicKey,
    presented: &PublicKey,
    known_peers_file: Option<&Path>,
) -> String {
    let name = sanitize_display(username);
    let file_hint = match known_peers_file {
        Some(path) => format!(
            ", or delete the line ending in {} from {} while peer is not running",
            format::escape(Some(username)),
            path.display()
        ),
        None => String::new(),
    };
    format!(
        "WARNING: \"{name}\" now has a different key than the one you first saw under that \
         name (pinned key {pinned}, peer id {}; presented key {presented}, peer id {}). This \
         happens when {name} reinstalled p2pchat or uses a new device, but it is also exactly \
         what someone impersonating {name} looks like. Do not trust this peer until you have \
         checked: ask {name} over another channel (in person, a phone call) to compare the \
         safety number of your conversation. If it matches, accept the new key with \
         /trust {name}{file_hint}.",
        pinned.peer_id(),
        presented.peer_id(),
    )
}

fn compare(pinned: &PublicKey, key: &PublicKey) -> Pin {
    if pinned == key {
        Pin::Matches
    } else {
        Pin::Changed { pinned: *pinned }
    }
}

#[cfg(test)]
mod tests;
