//! Input rules shared by the gRPC service and the REST shim, so both APIs
//! accept and refuse exactly the same things with the same messages.

use std::net::IpAddr;

use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

use p2pchat::keys::{PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
use p2pchat::{PeerId, PublicKey};

use super::errors::ApiError;

/// Longest username accepted, in characters (the contract's).
pub use p2pchat::MAX_USERNAME_CHARS;

/// Parses a peer id; it must be a UUID (any standard text form). Returned in
/// its canonical form so every lookup uses one spelling.
pub fn peer_id(field: &'static str, text: &str) -> Result<PeerId, ApiError> {
    PeerId::parse(text).map_err(|_| ApiError::InvalidArgument {
        field,
        message: format!("{field} must be a UUID, got {:?}", truncate(text, 80)),
    })
}

/// Checks a username and returns it NFC-normalised: empty means "use the
/// default"; otherwise at most [`MAX_USERNAME_CHARS`] characters (after
/// NFC), no control characters, no default-ignorable ones (bidi controls,
/// zero-width characters, tag characters, variation selectors: invisible,
/// so they make lookalikes), not only whitespace, and one script (UTS #39
/// mixed-script detection: `José`, `Мария` and `太郎` are single-script;
/// `Аlice` with a Cyrillic А is not). Names that look like another online
/// peer's are refused by the store (see `store::names`).
pub fn username(text: &str) -> Result<Option<String>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let refuse = |message: String| ApiError::InvalidArgument {
        field: "username",
        message,
    };
    let name: String = text.nfc().collect();
    let chars = name.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(refuse(format!(
            "username must be at most {MAX_USERNAME_CHARS} characters, got {chars}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse(
            "username must not contain control characters".into(),
        ));
    }
    if let Some(c) = name.chars().find(|c| is_default_ignorable(*c)) {
        return Err(refuse(format!(
            "username must not contain invisible characters (bidi controls, zero-width or tag \
             characters and the like), got U+{:04X}",
            u32::from(c)
        )));
    }
    if name.trim().is_empty() {
        return Err(refuse("username must not be only whitespace".into()));
    }
    if !name.as_str().is_single_script() {
        return Err(refuse(
            "username must be written in one script (mixed scripts make lookalike names)".into(),
        ));
    }
    Ok(Some(name))
}

/// Whether `c` has the Default_Ignorable_Code_Point property: UTS #39's
/// skeleton drops exactly those (with unicode-security's own table), so a
/// character whose skeleton is empty is one.
fn is_default_ignorable(c: char) -> bool {
    let mut buf = [0u8; 4];
    unicode_security::skeleton(c.encode_utf8(&mut buf))
        .next()
        .is_none()
}

/// Checks a UDP port: 1-65535.
pub fn port(field: &'static str, value: i64) -> Result<u16, ApiError> {
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ApiError::InvalidArgument {
            field,
            message: format!("{field} must be between 1 and 65535, got {value}"),
        }),
    }
}

/// Parses an Ed25519 public key: 32 bytes, a valid point, not of small
/// order.
pub fn public_key(field: &'static str, bytes: &[u8]) -> Result<PublicKey, ApiError> {
    PublicKey::from_bytes(bytes).map_err(|_| ApiError::InvalidArgument {
        field,
        message: format!(
            "{field} must be a {PUBLIC_KEY_BYTES}-byte Ed25519 public key (a valid point, not of \
             small order), got {} bytes",
            bytes.len()
        ),
    })
}

/// Checks an Ed25519 signature's length (whether it verifies is checked
/// later).
pub fn signature(field: &'static str, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.len() == SIGNATURE_BYTES {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument {
            field,
            message: format!(
                "{field} must be a {SIGNATURE_BYTES}-byte Ed25519 signature, got {} bytes",
                bytes.len()
            ),
        })
    }
}

/// Parses an endpoint IP: a unicast address. Unspecified (`0.0.0.0`,
/// `::`, and `0.0.0.0/8`), broadcast, multicast and reserved (`240.0.0.0/4`)
/// addresses are refused, so a registration cannot point the peers that
/// connect to it at a whole network segment.
pub fn ip(field: &'static str, text: &str) -> Result<IpAddr, ApiError> {
    let ip = text
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::InvalidArgument {
            field,
            message: format!(
                "{field} must be an IPv4 or IPv6 address, got {:?}",
                truncate(text, 80)
            ),
        })?;
    match not_unicast(ip) {
        None => Ok(ip),
        Some(kind) => Err(ApiError::InvalidArgument {
            field,
            message: format!("{field} must be a unicast address, got {ip} ({kind})"),
        }),
    }
}

/// Why `ip` is not a unicast address a peer could be reached at, if it is
/// not.
fn not_unicast(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let first = v4.octets()[0];
            if v4.is_unspecified() || first == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if first >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_limits() {
        assert_eq!(username("").unwrap(), None);
        let max = "é".repeat(MAX_USERNAME_CHARS);
        assert_eq!(username(&max).unwrap(), Some(max.clone()));
        assert!(username(&format!("{max}x")).is_err());
        assert!(username("bad\u{1b}[2J").is_err());
        assert!(username("tab\there").is_err());
        assert!(username("   ").is_err());
    }

    #[test]
    fn usernames_are_nfc_and_visible_and_of_one_script() {
        // "e" + combining acute becomes the precomposed "é".
        assert_eq!(username("Jose\u{301}").unwrap(), Some("José".into()));
        for ok in [
            "José",
            "Мария",
            "太郎",
            "山田 太郎",
            "Ａｌｉｃｅ",
            "user_1",
            "Zoë-Ann",
        ] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        let refused = [
            "\u{410}lice",    // Cyrillic A + Latin: mixed scripts
            "Alice\u{200b}",  // zero-width space
            "\u{202e}ecilA",  // right-to-left override
            "Al\u{2066}ice",  // left-to-right isolate
            "Alice\u{e0041}", // tag character
            "A\u{200d}lice",  // zero-width joiner
            "Alice\u{fe0f}",  // variation selector
            "Alice\u{ad}",    // soft hyphen
            "\u{3164}",       // Hangul filler
        ];
        for bad in refused {
            assert!(username(bad).is_err(), "{bad:?}");
        }
        let err = username("Alice\u{200b}").unwrap_err().to_string();
        assert!(err.contains("U+200B"), "{err}");
    }

    #[test]
    fn endpoints_must_be_unicast() {
        for ok in [
            "192.0.2.1",
            "127.0.0.1",
            "10.1.2.3",
            "2001:db8::1",
            "::1",
            "fe80::1",
        ] {
            assert!(ip("endpoints.ip", ok).is_ok(), "{ok}");
        }
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("::ffff:224.0.0.251", "multicast"),
            ("240.0.0.1", "reserved"),
        ];
        for (bad, kind) in refused {
            let err = ip("endpoints.ip", bad).unwrap_err().to_string();
            assert!(err.contains(kind), "{bad}: {err}");
        }
    }

    #[test]
    fn port_edges() {
        assert!(port("port", 0).is_err());
        assert_eq!(port("port", 1).unwrap(), 1);
        assert_eq!(port("port", 65535).unwrap(), 65535);
        assert!(port("port", 65536).is_err());
        assert!(port("port", -1).is_err());
    }

    #[test]
    fn keys_and_signatures_have_their_length() {
        assert!(public_key("public_key", &[0u8; 31]).is_err());
        // The identity point is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = public_key("public_key", &identity).unwrap_err();
        assert!(err.to_string().contains("32-byte Ed25519"), "{err}");
        assert!(signature("signature", &[0u8; 64]).is_ok());
        assert!(signature("signature", &[0u8; 63]).is_err());
        assert!(signature("signature", &[]).is_err());
    }

    #[test]
    fn peer_ids_are_uuids() {
        assert!(peer_id("peer_id", "not-a-uuid").is_err());
        let id = peer_id("peer_id", "A1B2C3D4-5678-90AB-CDEF-1234567890AB").unwrap();
        assert_eq!(id.to_string(), "a1b2c3d4-5678-90ab-cdef-1234567890ab");
        assert_eq!(crate::store::default_username(&id), "user_a1b2c3d4");
    }
}
