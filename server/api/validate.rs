//! Input rules shared by the gRPC service and the REST shim, so both APIs
//! accept and refuse exactly the same things with the same messages.

use std::net::IpAddr;

use p2pchat::keys::{PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
use p2pchat::{PeerId, PublicKey};

use super::errors::ApiError;

/// Longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Parses a peer id; it must be a UUID (any standard text form). Returned in
/// its canonical form so every lookup uses one spelling.
pub fn peer_id(field: &'static str, text: &str) -> Result<PeerId, ApiError> {
    PeerId::parse(text).map_err(|_| ApiError::InvalidArgument {
        field,
        message: format!("{field} must be a UUID, got {:?}", truncate(text, 80)),
    })
}

/// Checks a username: empty means "use the default"; otherwise at most
/// [`MAX_USERNAME_CHARS`] characters and no control characters.
pub fn username(text: &str) -> Result<Option<String>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let chars = text.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(ApiError::InvalidArgument {
            field: "username",
            message: format!(
                "username must be at most {MAX_USERNAME_CHARS} characters, got {chars}"
            ),
        });
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument {
            field: "username",
            message: "username must not contain control characters".into(),
        });
    }
    if text.trim().is_empty() {
        return Err(ApiError::InvalidArgument {
            field: "username",
            message: "username must not be only whitespace".into(),
        });
    }
    Ok(Some(text.to_owned()))
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

/// Parses an endpoint IP.
pub fn ip(field: &'static str, text: &str) -> Result<IpAddr, ApiError> {
    text.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::InvalidArgument {
            field,
            message: format!(
                "{field} must be an IPv4 or IPv6 address, got {:?}",
                truncate(text, 80)
            ),
        })
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
