//! The peer-to-peer wire protocol: typed datagrams, encode and decode, no I/O.
//!
//! The base format is the seed's: `{"type", "from", "timestamp", "body"}` with
//! the types `hello`, `message`, `ping`, `pong` and `disconnect`. Everything
//! beyond that is an additive, optional field or the extra `ack` type (which
//! the seed's own code already lists), and is only used towards a peer that
//! announced it understands it (see [`Extension`]). Unknown fields are ignored
//! on decode, so a newer peer's additions never break an older one.
//!
//! Each kind is its own type ([`Hello`], [`Message`], [`Ping`], [`Pong`],
//! [`Ack`], [`Disconnect`]) carrying only the fields that kind uses, behind a
//! common [`Header`]; [`Datagram`] is their sum. The JSON layout itself
//! lives in one private place (`json.rs`) so the bytes stay exactly the
//! seed's whatever the types grow into.

mod extensions;
mod json;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p2pchat::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use extensions::{Extension, MAX_EXTENSIONS, Negotiated, our_extensions, parse_announced};

/// Largest datagram this peer sends. Kept under the ~1280-byte IPv6 minimum
/// MTU minus headers so no datagram is ever IP-fragmented.
pub const MAX_SEND_DATAGRAM_BYTES: usize = 1200;

/// Largest datagram this peer accepts. More lenient than what we send, so a
/// seed peer that sends a longer line in one datagram is still understood;
/// anything larger is dropped as oversized.
pub const MAX_RECV_DATAGRAM_BYTES: usize = 8192;

/// Largest handshake message a `noise` field may carry (decoded); the
/// largest our handshake writes is well under this.
pub const MAX_HANDSHAKE_BYTES: usize = 512;

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

/// Position of a fragment within one chat line: `{"index", "count"}` on the
/// wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 0-based index of this fragment.
    pub index: u32,
    /// Number of fragments in the line, at least 1.
    pub count: u32,
}

/// The fields every datagram has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// The sender's peer id (a UUID; anything else fails to decode).
    pub from: PeerId,
    /// Unix time in seconds when it was sent (informational only).
    pub timestamp: f64,
}

impl Header {
    /// A header from `from` stamped now.
    pub fn now(from: PeerId) -> Header {
        Header {
            from,
            timestamp: unix_now(),
        }
    }
}

/// What a peer announces about itself on `hello`, `ping` and `pong`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announce {
    /// The extensions the sender speaks (wire names, unknown ones kept);
    /// `None` when the field is absent (a seed peer).
    pub extensions: Option<Vec<String>>,
    /// A random id of the sender's session object. A hello with a new value
    /// from a peer we are in session with means it started over (its
    /// message ids restart at 1), so we must too.
    pub session: Option<u64>,
    /// A Noise handshake message riding in this `hello` or `pong` (the
    /// `noise` field, base64 on the wire), at most [`MAX_HANDSHAKE_BYTES`].
    /// The seed ignores the field; our peers open encrypted sessions with it.
    pub handshake: Option<Vec<u8>>,
}

impl Announce {
    /// Everything we speak, for session `session`.
    pub fn ours(session: u64) -> Announce {
        Announce {
            extensions: Some(our_extensions()),
            session: Some(session),
            handshake: None,
        }
    }

    /// [`Announce::ours`] carrying a handshake message.
    pub fn with_handshake(session: u64, handshake: Option<Vec<u8>>) -> Announce {
        Announce {
            handshake,
            ..Announce::ours(session)
        }
    }
}

/// Handshake and hole-punching probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Sender and time.
    pub header: Header,
    /// Extensions and session id.
    pub announce: Announce,
    /// The sender's display name (informational).
    pub username: Option<String>,
}

/// A chat line, or with [`Extension::Fragments`] one part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Sender and time.
    pub header: Header,
    /// The text.
    pub body: String,
    /// The message's number in the reliable stream ([`Extension::Reliable`]);
    /// `None` for a seed peer's plain message.
    pub id: Option<u64>,
    /// Which part of a fragmented line this is.
    pub part: Option<Part>,
}

/// Keep-alive request.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Sender and time.
    pub header: Header,
    /// A number the `pong` echoes, to match answers to requests.
    pub nonce: Option<u64>,
    /// Extensions and session id.
    pub announce: Announce,
}

/// Keep-alive answer; also the answer to a `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pong {
    /// Sender and time.
    pub header: Header,
    /// The nonce of the `ping` this answers (none for a `hello`, or from a
    /// seed peer).
    pub nonce: Option<u64>,
    /// Extensions and session id.
    pub announce: Announce,
}

/// Acknowledges reliable messages; at least one of the two ids is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Sender and time.
    pub header: Header,
    /// The message that triggered this ack.
    pub id: Option<u64>,
    /// Every id up to and including this one has been received.
    pub upto: Option<u64>,
}

/// Graceful end of the session (also the answer to a stranger).
#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect {
    /// Sender and time.
    pub header: Header,
}

/// One decoded datagram, typed by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Message`].
    Message(Message),
    /// See [`Ping`].
    Ping(Ping),
    /// See [`Pong`].
    Pong(Pong),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Disconnect`].
    Disconnect(Disconnect),
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

impl Message {
    /// A seed-style message (no id, no part) from `from` stamped now.
    pub fn plain(from: PeerId, body: impl Into<String>) -> Message {
        Message {
            header: Header::now(from),
            body: body.into(),
            id: None,
            part: None,
        }
    }
}

macro_rules! into_datagram {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Datagram {
            fn from(d: $kind) -> Datagram {
                Datagram::$kind(d)
            }
        }
    )*};
}
into_datagram!(Hello, Message, Ping, Pong, Ack, Disconnect);

impl Datagram {
    /// A `disconnect` from `from` (also the answer to a stranger).
    pub fn disconnect(from: PeerId) -> Datagram {
        Datagram::Disconnect(Disconnect {
            header: Header::now(from),
        })
    }

    /// What the datagram is.
    pub fn kind(&self) -> Kind {
        match self {
            Datagram::Hello(_) => Kind::Hello,
            Datagram::Message(_) => Kind::Message,
            Datagram::Ping(_) => Kind::Ping,
            Datagram::Pong(_) => Kind::Pong,
            Datagram::Ack(_) => Kind::Ack,
            Datagram::Disconnect(_) => Kind::Disconnect,
        }
    }

    /// Sender and time.
    pub fn header(&self) -> &Header {
        match self {
            Datagram::Hello(d) => &d.header,
            Datagram::Message(d) => &d.header,
            Datagram::Ping(d) => &d.header,
            Datagram::Pong(d) => &d.header,
            Datagram::Ack(d) => &d.header,
            Datagram::Disconnect(d) => &d.header,
        }
    }

    /// Who claims to have sent it (unauthenticated).
    pub fn from(&self) -> PeerId {
        self.header().from
    }

    /// What the sender announced about itself (`hello`, `ping`, `pong`).
    pub fn announce(&self) -> Option<&Announce> {
        match self {
            Datagram::Hello(d) => Some(&d.announce),
            Datagram::Ping(d) => Some(&d.announce),
            Datagram::Pong(d) => Some(&d.announce),
            _ => None,
        }
    }

    /// The handshake message a `hello` or `pong` carries, if any.
    pub fn handshake(&self) -> Option<&[u8]> {
        match self {
            Datagram::Hello(d) => d.announce.handshake.as_deref(),
            Datagram::Pong(d) => d.announce.handshake.as_deref(),
            _ => None,
        }
    }

    /// The sender's session id, on `hello`, `ping` and `pong`.
    pub fn session_id(&self) -> Option<u64> {
        self.announce().and_then(|a| a.session)
    }

    /// The known extensions this datagram announces, or `None` when it
    /// carries no `extensions` field at all (a seed peer, or a kind that
    /// does not announce).
    pub fn announced_extensions(&self) -> Option<Vec<Extension>> {
        let names = self.announce()?.extensions.as_ref()?;
        Some(parse_announced(names))
    }

    /// Encodes to JSON, refusing anything over [`MAX_SEND_DATAGRAM_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let bytes = serde_json::to_vec(&self.to_json())?;
        if bytes.len() > MAX_SEND_DATAGRAM_BYTES {
            return Err(EncodeError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    fn to_json(&self) -> json::Out<'_> {
        let h = self.header();
        let mut out = json::Out::new(self.kind(), h.from, h.timestamp);
        if let Some(a) = self.announce() {
            out.extensions = a.extensions.as_deref();
            out.session = a.session;
            out.noise = a.handshake.as_deref().map(|h| BASE64.encode(h));
        }
        match self {
            Datagram::Hello(d) => out.username = d.username.as_deref(),
            Datagram::Message(d) => {
                out.body = &d.body;
                out.id = d.id;
                out.part = d.part;
            }
            Datagram::Ping(Ping { nonce, .. }) | Datagram::Pong(Pong { nonce, .. }) => {
                out.nonce = *nonce;
            }
            Datagram::Ack(d) => {
                out.id = d.id;
                out.upto = d.upto;
            }
            Datagram::Disconnect(_) => {}
        }
        out
    }

    /// Decodes and validates one received datagram.
    pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
        if bytes.len() > MAX_RECV_DATAGRAM_BYTES {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut raw: json::In = serde_json::from_slice(bytes)?;
        if !raw.timestamp.is_finite() {
            return Err(DecodeError::Invalid("'timestamp' is not a finite number"));
        }
        if let Some(part) = raw.part
            && (part.count == 0 || part.index >= part.count)
        {
            return Err(DecodeError::Invalid("'part' index out of range"));
        }
        if raw.kind == Kind::Ack && raw.id.is_none() && raw.upto.is_none() {
            return Err(DecodeError::Invalid("ack without 'id' or 'upto'"));
        }
        if let Some(list) = raw.extensions.as_mut() {
            list.truncate(MAX_EXTENSIONS);
        }
        let handshake = match raw.noise.take() {
            None => None,
            // Base64 of MAX_HANDSHAKE_BYTES, checked before decoding.
            Some(text) if text.len() > MAX_HANDSHAKE_BYTES.div_ceil(3) * 4 => {
                return Err(DecodeError::Invalid("'noise' too long"));
            }
            Some(text) => match BASE64.decode(text) {
                Ok(bytes) if matches!(raw.kind, Kind::Hello | Kind::Pong) => Some(bytes),
                Ok(_) => None,
                Err(_) => return Err(DecodeError::Invalid("'noise' is not base64")),
            },
        };
        Ok(Datagram::from_json(raw, handshake))
    }

    fn from_json(raw: json::In, handshake: Option<Vec<u8>>) -> Datagram {
        let header = Header {
            from: raw.from,
            timestamp: raw.timestamp,
        };
        let announce = Announce {
            extensions: raw.extensions,
            session: raw.session,
            handshake,
        };
        match raw.kind {
            Kind::Hello => Datagram::Hello(Hello {
                header,
                announce,
                username: raw.username,
            }),
            Kind::Message => Datagram::Message(Message {
                header,
                body: raw.body,
                id: raw.id,
                part: raw.part,
            }),
            Kind::Ping => Datagram::Ping(Ping {
                header,
                nonce: raw.nonce,
                announce,
            }),
            Kind::Pong => Datagram::Pong(Pong {
                header,
                nonce: raw.nonce,
                announce,
            }),
            Kind::Ack => Datagram::Ack(Ack {
                header,
                id: raw.id,
                upto: raw.upto,
            }),
            Kind::Disconnect => Datagram::Disconnect(Disconnect { header }),
        }
    }
}

/// Seconds since the Unix epoch, as the seed's `time.time()`.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
