//! Identifiers both sides use, parsed once at the edge and typed after.
//!
//! * [`PeerId`]: a peer's UUID. Any case parses; it always prints as
//!   lowercase hyphenated text, which is how the seed, the proto and the
//!   `--json` events spell it.
//! * [`SessionToken`]: the secret the server hands out on first
//!   registration. 32 bytes, 64 hex characters on the wire; never printed
//!   by `Debug`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use uuid::Uuid;

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not a UUID.
    #[error("not a UUID")]
    NotUuid,
    /// Not 64 hexadecimal characters.
    #[error("not 64 hexadecimal characters")]
    NotToken,
}

/// A peer's id: a UUID, compared and printed in lowercase.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Uuid);

impl PeerId {
    /// A fresh random (version 4) id, as the seed makes one per run.
    pub fn random() -> PeerId {
        PeerId(Uuid::new_v4())
    }

    /// Wraps a UUID.
    pub const fn from_uuid(uuid: Uuid) -> PeerId {
        PeerId(uuid)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 raw bytes (relay frames carry ids this way).
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Whether the id claims to be derived from a public key (UUID version
    /// 8, see [`crate::keys::PublicKey::peer_id`]). Such an id only ever
    /// speaks authenticated: a plaintext datagram claiming one is forged or
    /// downgraded.
    pub fn is_key_derived(&self) -> bool {
        self.0.get_version_num() == 8
    }

    /// The first 8 characters, for short display (`1b4e28ba...`).
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }

    /// Parses a UUID in any case, hyphenated or not.
    pub fn parse(text: &str) -> Result<PeerId, IdError> {
        Uuid::parse_str(text.trim())
            .map(PeerId)
            .map_err(|_| IdError::NotUuid)
    }
}

impl From<Uuid> for PeerId {
    fn from(uuid: Uuid) -> PeerId {
        PeerId(uuid)
    }
}

impl From<PeerId> for Uuid {
    fn from(id: PeerId) -> Uuid {
        id.0
    }
}

impl FromStr for PeerId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<PeerId, IdError> {
        PeerId::parse(text)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Straight from a stack buffer: peer lists serialize thousands.
        let mut buf = Uuid::encode_buffer();
        serializer.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PeerId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PeerId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret session token: 256 bits, 244 of them random (two v4 UUIDs),
/// kept as bytes and shown as 64 lowercase hex characters. It only travels
/// to and from the signaling API; relay frames carry a MAC under a key
/// derived from it ([`crate::proto::relay_frame::RelayKey`]), never the
/// token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// A fresh random token.
    pub fn generate() -> SessionToken {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        SessionToken(bytes)
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> SessionToken {
        SessionToken(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex characters, any case.
    pub fn parse(text: &str) -> Result<SessionToken, IdError> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(IdError::NotToken);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let hi = hex_value(text[2 * i]).ok_or(IdError::NotToken)?;
            let lo = hex_value(text[2 * i + 1]).ok_or(IdError::NotToken)?;
            *byte = (hi << 4) | lo;
        }
        Ok(SessionToken(out))
    }

    /// The token as 64 lowercase hex characters, as clients see it.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Whether `given` (hex, any case) is this token. Takes the same time
    /// wherever the first difference is.
    pub fn matches(&self, given: &str) -> bool {
        let given = given.as_bytes();
        if given.len() != 64 {
            return false;
        }
        let mut diff = 0u8;
        let mut valid = true;
        for (i, expected) in self.0.iter().enumerate() {
            let hi = hex_value(given[2 * i]);
            let lo = hex_value(given[2 * i + 1]);
            valid &= hi.is_some() & lo.is_some();
            let byte = (hi.unwrap_or(0) << 4) | lo.unwrap_or(0);
            diff |= byte ^ expected;
        }
        valid && diff == 0
    }

    /// Whether `given` (raw bytes) is this token, in constant time.
    pub fn matches_bytes(&self, given: &[u8; 32]) -> bool {
        let diff = self
            .0
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets into logs.
        f.write_str("SessionToken(..)")
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_parse_in_any_case_and_print_lowercase() {
        let id = PeerId::parse("1B4E28BA-2FA1-11D2-883F-0016D3CCA427").unwrap();
        assert_eq!(id.to_string(), "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(id.short(), "1b4e28ba");
        assert_eq!(PeerId::parse("not-a-uuid"), Err(IdError::NotUuid));
        assert_eq!(PeerId::parse(""), Err(IdError::NotUuid));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"");
        assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<PeerId>("\"x\"").is_err());
    }

    #[test]
    fn tokens_round_trip_and_compare() {
        let t = SessionToken::generate();
        let hex = t.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(SessionToken::parse(&hex).unwrap(), t);
        assert_eq!(SessionToken::parse(&hex.to_uppercase()).unwrap(), t);
        assert!(t.matches(&hex));
        assert!(t.matches(&hex.to_uppercase()));
        assert!(t.matches_bytes(t.as_bytes()));
        assert!(!t.matches(&SessionToken::generate().to_hex()));
        assert!(!t.matches(&hex[..63]));
        assert!(!t.matches(&format!("{}g", &hex[..63])));
        assert!(!t.matches(&format!("{hex}0")));
        assert_eq!(SessionToken::parse(&hex[..63]), Err(IdError::NotToken));
        assert_eq!(
            SessionToken::parse(&format!("{}g", &hex[..63])),
            Err(IdError::NotToken)
        );
        // Multi-byte UTF-8 of the right byte length is not hex.
        assert_eq!(SessionToken::parse(&"é".repeat(32)), Err(IdError::NotToken));
        assert_eq!(format!("{t:?}"), "SessionToken(..)");
    }
}
