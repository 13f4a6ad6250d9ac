//! The peer-to-peer wire protocol: JSON datagrams, encode and decode, no I/O.
//!
//! The base format is the seed's: `{"type", "from", "timestamp", "body"}` with
//! the types `hello`, `message`, `ping`, `pong` and `disconnect`. Everything
//! beyond that is an additive, optional field or the extra `ack` type (which
//! the seed's own code already lists), and is only used towards a peer that
//! announced it understands it (see [`Extension`]). Unknown fields are ignored
//! on decode, so a newer peer's additions never break an older one.

use p2pchat::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest datagram this peer sends. Kept under the ~1280-byte IPv6 minimum
/// MTU minus headers so no datagram is ever IP-fragmented.
pub const MAX_SEND_DATAGRAM_BYTES: usize = 1200;

/// Largest datagram this peer accepts. More lenient than what we send, so a
/// seed peer that sends a longer line in one datagram is still understood;
/// anything larger is dropped as oversized.
pub const MAX_RECV_DATAGRAM_BYTES: usize = 8192;

/// Most bytes of JSON-escaped body text per fragment. Leaves room under
/// [`MAX_SEND_DATAGRAM_BYTES`] for the envelope (type, 36-byte peer id,
/// timestamp, id, part).
pub const MAX_FRAGMENT_BODY_BYTES: usize = 900;

/// Most entries in a received `extensions` list; longer lists are truncated.
pub const MAX_EXTENSIONS: usize = 16;

/// The datagram types. `ack` is our extension; the rest are the seed's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Initial handshake; also the hole-punching probe.
    Hello,
    /// A chat line (or, with [`Extension::Fragments`], part of one).
    Message,
    /// Keep-alive request.
    Ping,
    /// Keep-alive answer; also the answer to a `hello`.
    Pong,
    /// Graceful end of the session.
    Disconnect,
    /// Acknowledges a message by id ([`Extension::Reliable`] only).
    Ack,
}

/// Optional protocol features, announced in the `extensions` field of
/// `hello`, `ping` and `pong`. A feature is used only when both sides announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extension {
    /// Message ids, acks, retransmission, in-order exactly-once delivery.
    Reliable,
    /// Long lines split into several `message` datagrams with a `part` field.
    /// Requires [`Extension::Reliable`] (fragments are ordered by id).
    Fragments,
}

impl Extension {
    /// Every extension this implementation speaks, in announcement order.
    pub const ALL: [Extension; 2] = [Extension::Reliable, Extension::Fragments];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Extension::Reliable => "reliable/1",
            Extension::Fragments => "fragments/1",
        }
    }

    /// Parses a wire name; unknown names are `None` (and ignored).
    pub fn parse(name: &str) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// Position of a fragment within one chat line: `[index, count]` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 0-based index of this fragment.
    pub index: u32,
    /// Number of fragments in the line, at least 1.
    pub count: u32,
}

/// One decoded datagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datagram {
    /// What the datagram is.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The sender's peer id (a UUID; anything else fails to decode).
    pub from: PeerId,
    /// Unix time in seconds when it was sent (informational only).
    #[serde(default)]
    pub timestamp: f64,
    /// Message text; empty for control datagrams.
    #[serde(default)]
    pub body: String,
    /// Message id (reliable messages) or the acknowledged id (acks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// On an ack: every id up to and including this one has been received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
    /// On a fragmented message: which part of the line this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// On `hello`, `ping` and `pong`: the extensions the sender speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
    /// On `ping`: a number the `pong` echoes, to match answers to requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// On `hello`, `ping` and `pong`: a random id of the sender's session
    /// object. A
    /// hello with a new value from a peer we are in session with means it
    /// started over (its message ids restart at 1), so we must too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// On `hello`: the sender's display name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Why a received datagram was rejected. Every variant means "drop it".
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Larger than [`MAX_RECV_DATAGRAM_BYTES`].
    #[error("datagram of {0} bytes exceeds the {MAX_RECV_DATAGRAM_BYTES}-byte limit")]
    Oversized(usize),
    /// Not JSON, not an object, a field of the wrong type, or an unknown type.
    #[error("malformed datagram: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Well-formed JSON that breaks a protocol rule.
    #[error("invalid datagram: {0}")]
    Invalid(&'static str),
}

/// Why a datagram could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// Serialization failed (cannot happen for these plain types).
    #[error("cannot encode datagram: {0}")]
    Json(#[from] serde_json::Error),
    /// The result is larger than [`MAX_SEND_DATAGRAM_BYTES`].
    #[error("encoded datagram of {0} bytes exceeds the {MAX_SEND_DATAGRAM_BYTES}-byte limit")]
    TooLarge(usize),
}

impl Datagram {
    /// A datagram of `kind` from `from` stamped now, with every optional field
    /// unset.
    pub fn new(kind: Kind, from: PeerId, body: impl Into<String>) -> Self {
        Datagram {
            kind,
            from,
            timestamp: unix_now(),
            body: body.into(),
            id: None,
            upto: None,
            part: None,
            extensions: None,
            nonce: None,
            session: None,
            username: None,
        }
    }

    /// Encodes to JSON, refusing anything over [`MAX_SEND_DATAGRAM_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let bytes = serde_json::to_vec(self)?;
        if bytes.len() > MAX_SEND_DATAGRAM_BYTES {
            return Err(EncodeError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes and validates one received datagram.
    pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
        if bytes.len() > MAX_RECV_DATAGRAM_BYTES {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut dg: Datagram = serde_json::from_slice(bytes)?;
        if !dg.timestamp.is_finite() {
            return Err(DecodeError::Invalid("'timestamp' is not a finite number"));
        }
        if let Some(part) = dg.part
            && (part.count == 0 || part.index >= part.count)
        {
            return Err(DecodeError::Invalid("'part' index out of range"));
        }
        if dg.kind == Kind::Ack && dg.id.is_none() && dg.upto.is_none() {
            return Err(DecodeError::Invalid("ack without 'id' or 'upto'"));
        }
        if let Some(list) = dg.extensions.as_mut() {
            list.truncate(MAX_EXTENSIONS);
        }
        Ok(dg)
    }

    /// A `disconnect` from `from` (also the answer to a stranger).
    pub fn disconnect(from: PeerId) -> Datagram {
        Datagram::new(Kind::Disconnect, from, "")
    }

    /// What the datagram is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Who claims to have sent it (unauthenticated).
    pub fn from(&self) -> PeerId {
        self.from
    }

    /// The sender's session id, on `hello`, `ping` and `pong`.
    pub fn session_id(&self) -> Option<u64> {
        self.session
    }

    /// The known extensions this datagram announces, or `None` when it
    /// carries no `extensions` field at all (a seed peer).
    pub fn announced_extensions(&self) -> Option<Vec<Extension>> {
        self.extensions
            .as_ref()
            .map(|names| names.iter().filter_map(|n| Extension::parse(n)).collect())
    }
}

/// The wire names of every extension we speak, for `hello`/`pong`.
pub fn our_extensions() -> Vec<String> {
    Extension::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect()
}

/// Seconds since the Unix epoch, as the seed's `time.time()`.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Splits `text` into pieces whose JSON-escaped form is at most
/// `max_escaped_bytes` each, never inside a character. Always returns at
/// least one piece (an empty line is one empty piece).
pub fn split_for_datagrams(text: &str, max_escaped_bytes: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for ch in text.chars() {
        let len = escaped_len(ch);
        if current_len + len > max_escaped_bytes && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current.push(ch);
        current_len += len;
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Bytes `ch` takes inside a JSON string as serde_json writes it.
fn escaped_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Neutralises text received from the network before it reaches a terminal:
/// control characters (C0, DEL, C1) become U+FFFD-free visible escapes like
/// `\x1b`, so ANSI/OSC sequences, cursor moves and bells cannot take effect.
/// Tabs become a space. Also used for usernames.
pub fn sanitize_display(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\t' => out.push(' '),
            c if c.is_control() => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{code:x}}}"));
                }
            }
            // Bidi overrides can visually reorder a line; show them escaped.
            c @ ('\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: PeerId = PeerId::from_uuid(uuid::uuid!("a1b2c3d4-5678-90ab-cdef-1234567890ab"));

    #[test]
    fn decodes_seed_message() {
        let raw = br#"{"type": "message", "from": "a1b2c3d4-5678-90ab-cdef-1234567890ab", "timestamp": 1234567890.123, "body": "Hello!"}"#;
        let dg = Datagram::decode(raw).unwrap();
        assert_eq!(dg.kind, Kind::Message);
        assert_eq!(dg.from, ID);
        assert_eq!(dg.body, "Hello!");
        assert!(dg.id.is_none());
        assert!(dg.announced_extensions().is_none());
    }

    #[test]
    fn ignores_unknown_fields_and_extensions() {
        let raw = br#"{"type":"hello","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","timestamp":1,"body":"","future":[1,2],"extensions":["reliable/1","warp/9"]}"#;
        let dg = Datagram::decode(raw).unwrap();
        assert_eq!(dg.announced_extensions(), Some(vec![Extension::Reliable]));
    }

    #[test]
    fn extension_list_is_truncated_at_the_limit() {
        let names: Vec<String> = (0..MAX_EXTENSIONS + 5).map(|i| format!("x{i}")).collect();
        let mut dg = Datagram::new(Kind::Hello, ID, "");
        dg.extensions = Some(names);
        let raw = serde_json::to_vec(&dg).unwrap();
        let back = Datagram::decode(&raw).unwrap();
        assert_eq!(back.extensions.unwrap().len(), MAX_EXTENSIONS);
        // Our own extensions are within the limit and all understood.
        assert!(our_extensions().len() <= MAX_EXTENSIONS);
        let mut hello = Datagram::new(Kind::Hello, ID, "");
        hello.extensions = Some(our_extensions());
        assert_eq!(hello.announced_extensions(), Some(Extension::ALL.to_vec()));
    }

    #[test]
    fn seed_fields_are_optional_except_type_and_from() {
        let dg =
            Datagram::decode(br#"{"type":"ping","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#)
                .unwrap();
        assert_eq!(dg.body, "");
        assert!(Datagram::decode(br#"{"type":"ping"}"#).is_err());
        assert!(Datagram::decode(br#"{"from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        for raw in [
            &b"not json"[..],
            b"[]",
            b"42",
            br#"{"type":"shout","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#,
            br#"{"type":"message","from":7}"#,
            br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":3}"#,
            br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","timestamp":"now"}"#,
            br#"{"type":"message","from":""}"#,
            br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","id":-1}"#,
            br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","part":{"index":2,"count":2}}"#,
            br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","part":{"index":0,"count":0}}"#,
            br#"{"type":"ack","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#,
            b"\xff\xfe",
        ] {
            assert!(Datagram::decode(raw).is_err(), "accepted {raw:?}");
        }
        // `from` must be a peer id (a UUID).
        for from in [
            "\"x\"",
            "\"\"",
            "7",
            "\"a1b2c3d4-5678-90ab-cdef-1234567890ab0\"",
        ] {
            let raw = format!(r#"{{"type":"ping","from":{from}}}"#);
            assert!(Datagram::decode(raw.as_bytes()).is_err(), "accepted {raw}");
        }
        let upper = br#"{"type":"ping","from":"A1B2C3D4-5678-90AB-CDEF-1234567890AB"}"#;
        assert_eq!(Datagram::decode(upper).unwrap().from(), ID);
    }

    #[test]
    fn oversized_limit_edge() {
        let pad = |total: usize| {
            let base =
                r#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":""}"#;
            let body = "a".repeat(total - base.len());
            format!(
                r#"{{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":"{body}"}}"#
            )
        };
        assert_eq!(pad(MAX_RECV_DATAGRAM_BYTES).len(), MAX_RECV_DATAGRAM_BYTES);
        assert!(Datagram::decode(pad(MAX_RECV_DATAGRAM_BYTES).as_bytes()).is_ok());
        assert!(matches!(
            Datagram::decode(pad(MAX_RECV_DATAGRAM_BYTES + 1).as_bytes()),
            Err(DecodeError::Oversized(_))
        ));
    }

    #[test]
    fn encode_refuses_over_send_limit() {
        let mut dg = Datagram::new(Kind::Message, ID, "");
        let overhead = dg.encode().unwrap().len();
        dg.body = "a".repeat(MAX_SEND_DATAGRAM_BYTES - overhead);
        assert_eq!(dg.encode().unwrap().len(), MAX_SEND_DATAGRAM_BYTES);
        dg.body.push('a');
        assert!(matches!(dg.encode(), Err(EncodeError::TooLarge(_))));
    }

    #[test]
    fn roundtrip_with_extensions() {
        let mut dg = Datagram::new(Kind::Message, ID, "hé \"x\"\n");
        dg.id = Some(5);
        dg.part = Some(Part { index: 1, count: 3 });
        let back = Datagram::decode(&dg.encode().unwrap()).unwrap();
        assert_eq!(back, dg);
    }

    #[test]
    fn worst_case_fragment_fits_one_datagram() {
        // Every character escapes to 6 bytes: the worst case for the budget.
        let text = "\u{1}".repeat(1000);
        let pieces = split_for_datagrams(&text, MAX_FRAGMENT_BODY_BYTES);
        assert_eq!(pieces.concat(), text);
        for piece in &pieces {
            let mut dg = Datagram::new(Kind::Message, ID, piece.clone());
            dg.id = Some(u64::MAX);
            dg.part = Some(Part {
                index: u32::MAX - 1,
                count: u32::MAX,
            });
            assert!(dg.encode().is_ok());
        }
        let text = "€".repeat(2000);
        let pieces = split_for_datagrams(&text, MAX_FRAGMENT_BODY_BYTES);
        assert!(pieces.iter().all(|p| p.len() <= MAX_FRAGMENT_BODY_BYTES));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_for_datagrams("", 10), vec![String::new()]);
        assert_eq!(split_for_datagrams("abcd", 2), vec!["ab", "cd"]);
    }

    #[test]
    fn sanitize_neutralises_escapes() {
        let evil = "hi\u{1b}[2J\u{7}\r\n\u{9b}31m\u{202e}x\ty";
        let clean = sanitize_display(evil);
        assert!(!clean.chars().any(|c| c.is_control()));
        assert_eq!(clean, "hi\\x1b[2J\\x07\\x0d\\x0a\\x9b31m\\u{202e}x y");
        assert_eq!(sanitize_display("plain ünïcode"), "plain ünïcode");
    }
}
