//! The known-peers file's text.
//!
//! UTF-8, one pin per line, fields separated by spaces (written as one):
//!
//! ```text
//! # comment lines start with '#'; blank lines are ignored
//! <peer-id> <public-key> <first-seen> <username>
//! 6b0f...-8...-... Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE= 1767225600 Bob
//! ```
//!
//! * `peer-id`: the lowercase hyphenated UUID; it must be the one the key
//!   derives (checked on load).
//! * `public-key`: standard base64 of the 32-byte Ed25519 key.
//! * `first-seen`: unix seconds when the pin was made.
//! * `username`: `-` for none; otherwise the name with every character that
//!   is not a letter, a digit or ASCII punctuation, and every `%`, `#` and a
//!   lone `-`, written as `%XX` per UTF-8 byte (`Bob%20Smith`).

use p2pchat::{PeerId, PublicKey};

use super::{MAX_PINNED_USERNAME_BYTES, PinnedPeer};

/// Parses one pin line (not a comment or blank).
pub(super) fn parse_line(text: &str) -> Result<PinnedPeer, String> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [id, key, first_seen, name] = fields[..] else {
        return Err(format!(
            "expected 4 fields \"<peer-id> <public-key> <first-seen> <username>\", found {}",
            fields.len()
        ));
    };
    let peer_id = PeerId::parse(id).map_err(|_| format!("{id:?} is not a peer id"))?;
    let key = PublicKey::from_base64(key)
        .map_err(|_| format!("{key:?} is not a base64 Ed25519 public key"))?;
    if !key.owns(&peer_id) {
        return Err(format!("the key does not derive the peer id {peer_id}"));
    }
    let first_seen = first_seen
        .parse::<u64>()
        .map_err(|_| format!("{first_seen:?} is not a unix time"))?;
    let username = unescape(name)?;
    if username
        .as_ref()
        .is_some_and(|n| n.len() > MAX_PINNED_USERNAME_BYTES)
    {
        return Err(format!(
            "the username is longer than {MAX_PINNED_USERNAME_BYTES} bytes"
        ));
    }
    Ok(PinnedPeer {
        peer_id,
        key,
        username,
        first_seen,
    })
}

/// The whole file.
pub(super) fn render(pins: &[PinnedPeer]) -> String {
    let mut out = String::from(
        "# p2pchat known peers: the key first seen for each peer and name (trust on first use).\n\
         # <peer-id> <public-key> <first-seen-unix> <username, %XX-escaped; - for none>\n\
         # Delete a line to accept a changed key for that name; comments are not kept.\n",
    );
    for pin in pins {
        out.push_str(&format!(
            "{} {} {} {}\n",
            pin.peer_id,
            pin.key,
            pin.first_seen,
            escape(pin.username.as_deref())
        ));
    }
    out
}

/// A username as one field: letters, digits and ASCII punctuation but `%`
/// and `#` as they are, everything else `%XX` per UTF-8 byte; `-` is none.
pub(super) fn escape(name: Option<&str>) -> String {
    let Some(name) = name else {
        return "-".to_owned();
    };
    if name == "-" {
        return "%2D".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_alphanumeric() || (c.is_ascii_punctuation() && c != '%' && c != '#') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Reverses [`escape`].
fn unescape(field: &str) -> Result<Option<String>, String> {
    if field == "-" {
        return Ok(None);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in the username {field:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out)
        .map_err(|_| format!("the username {field:?} is not UTF-8 once unescaped"))?;
    Ok(Some(name))
}
