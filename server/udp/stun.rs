//! STUN Binding answers (RFC 8489/5389) for the server's UDP port: tells a
//! peer the address its datagrams arrive from (its server-reflexive address).
//!
//! Pure: bytes and the source address in, the answer's bytes out, so it is
//! testable without sockets. Decoding and encoding go through the maintained
//! `stun_codec` crate; nothing here parses STUN by hand.
//!
//! RFC 3489 clients (no magic cookie; e.g. Debian's `stun` tool) are answered
//! the way RFC 5389 section 12.2 asks: MAPPED-ADDRESS instead of
//! XOR-MAPPED-ADDRESS, and the request's cookie field copied back.
//!
//! # No larger an answer than a Binding success needs
//!
//! The source of a UDP request is unverified, so every answer is something
//! a spoofer can aim at a victim. The answer is therefore the smallest
//! that does the job: a success carries XOR-MAPPED-ADDRESS only (32 bytes
//! for IPv4, 44 for IPv6, to a request of at least 20), without the
//! optional SOFTWARE attribute (RFC 8489 section 14.14; it would also tell
//! every prober which software and version answers); and a request this server cannot honour (an unknown
//! comprehension-required attribute, a CHANGE-REQUEST with flags) gets no
//! answer at all instead of RFC 8489 section 6.3.1's 420 error response,
//! which would be larger than the request (24 -> 92 bytes before). That is
//! a deliberate deviation: such a client, like an RFC 3489 client asking for
//! a change, sees a timeout, which STUN clients already handle as
//! "no answer" (RFC 8489 section 6.2.1), and a Binding client of this
//! server has no reason to send such attributes. How many answers one
//! source gets is bounded in [`super::stun_limit`].

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{
    ErrorCode, Fingerprint, MappedAddress, MessageIntegrity, Software, UnknownAttributes, Username,
    XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5780::attributes::ChangeRequest;
use stun_codec::{Attribute as _, Message, MessageClass, MessageDecoder, MessageEncoder};

/// The fixed magic cookie of RFC 5389 and later (bytes 4..8 of a message).
/// A request without it comes from an RFC 3489 client.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Bytes of a STUN header; the cookie field sits at 4..8.
const HEADER_LEN: usize = 20;

stun_codec::define_attribute_enums!(
    StunAttribute,
    StunAttributeDecoder,
    StunAttributeEncoder,
    [
        MappedAddress,
        XorMappedAddress,
        Software,
        ErrorCode,
        UnknownAttributes,
        Username,
        MessageIntegrity,
        Fingerprint,
        ChangeRequest
    ]
);

/// Why a STUN datagram gets no answer. Never sent anywhere: the UDP task
/// counts it and logs it at debug level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunDrop {
    /// Not a well-formed STUN message (truncated, bad lengths, bad
    /// FINGERPRINT, trailing bytes...).
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    /// A well-formed message that is not a Binding request (indications and
    /// responses get no answer).
    #[error("not a Binding request")]
    NotBindingRequest,
    /// An RFC 3489 request this server cannot honour (a change request, or
    /// an unknown comprehension-required attribute): old clients take
    /// silence as "test failed".
    #[error("RFC 3489 request this server cannot honour")]
    LegacyUnsupported,
    /// A request with comprehension-required attributes this server does
    /// not understand (or a CHANGE-REQUEST with flags set): no 420 error
    /// response, which would be larger than the request (see the module
    /// docs).
    #[error("request with unknown comprehension-required attributes")]
    UnknownRequired,
}

/// The answer to a datagram that arrived from `source`: a Binding success
/// response with its XOR-MAPPED-ADDRESS (MAPPED-ADDRESS for RFC 3489
/// clients) and nothing else. A request with comprehension-required
/// attributes it does not understand is dropped
/// ([`StunDrop::UnknownRequired`]); CHANGE-REQUEST with a flag set counts
/// as not understood: this server has one address.
pub fn answer(datagram: &[u8], source: SocketAddr) -> Result<Vec<u8>, StunDrop> {
    // Behind a dual-stack socket an IPv4 client shows up as ::ffff:a.b.c.d;
    // it must hear about its IPv4 address.
    let source = SocketAddr::new(source.ip().to_canonical(), source.port());
    let legacy_cookie = legacy_cookie(datagram);
    let request = match legacy_cookie {
        None => decode(datagram)?,
        Some(_) => {
            // stun_codec only reads RFC 5389 messages: put the cookie where
            // RFC 3489 had the first bytes of its longer transaction id.
            let mut copy = datagram.to_vec();
            copy[4..8].copy_from_slice(&MAGIC_COOKIE);
            decode(&copy)?
        }
    };
    if request.class() != MessageClass::Request || request.method() != BINDING {
        return Err(StunDrop::NotBindingRequest);
    }

    let unknown_required = request
        .unknown_attributes()
        .any(|a| a.get_type().is_comprehension_required());
    let change = request
        .get_attribute::<ChangeRequest>()
        .is_some_and(|c| c.ip() || c.port());
    if unknown_required || change {
        return Err(match legacy_cookie {
            Some(_) => StunDrop::LegacyUnsupported,
            None => StunDrop::UnknownRequired,
        });
    }

    let mut response = Message::new(
        MessageClass::SuccessResponse,
        BINDING,
        request.transaction_id(),
    );
    match legacy_cookie {
        // RFC 3489 has no XOR-MAPPED-ADDRESS.
        Some(_) => response.add_attribute(MappedAddress::new(source)),
        None => response.add_attribute(XorMappedAddress::new(source)),
    }
    let mut bytes = MessageEncoder::<StunAttribute>::new()
        .encode_into_bytes(response)
        .map_err(|err| StunDrop::Malformed(format!("cannot encode the answer: {err}")))?;
    if let (Some(cookie), Some(field)) = (legacy_cookie, bytes.get_mut(4..8)) {
        field.copy_from_slice(&cookie);
    }
    Ok(bytes)
}

/// The cookie field of an RFC 3489 request (one without the magic cookie),
/// `None` for RFC 5389+ messages and for datagrams too short to tell.
fn legacy_cookie(datagram: &[u8]) -> Option<[u8; 4]> {
    if datagram.len() < HEADER_LEN {
        return None;
    }
    let field: [u8; 4] = datagram.get(4..8)?.try_into().ok()?;
    (field != MAGIC_COOKIE).then_some(field)
}

fn decode(bytes: &[u8]) -> Result<Message<StunAttribute>, StunDrop> {
    // A fresh decoder per datagram: a failed decode leaves no state behind.
    MessageDecoder::<StunAttribute>::new()
        .decode_from_bytes(bytes)
        .map_err(|err| StunDrop::Malformed(first_line(&err)))?
        .map_err(|broken| StunDrop::Malformed(first_line(broken.error())))
}

/// The error's kind and cause without its multi-line tracking history.
fn first_line(err: &bytecodec::Error) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use stun_codec::TransactionId;

    use super::*;

    fn request(attributes: Vec<StunAttribute>) -> (Vec<u8>, TransactionId) {
        let id = TransactionId::new([7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let mut message = Message::<StunAttribute>::new(MessageClass::Request, BINDING, id);
        for a in attributes {
            message.add_attribute(a);
        }
        let bytes = MessageEncoder::new().encode_into_bytes(message).unwrap();
        (bytes, id)
    }

    fn decode_response(bytes: &[u8]) -> Message<StunAttribute> {
        MessageDecoder::<StunAttribute>::new()
            .decode_from_bytes(bytes)
            .unwrap()
            .unwrap()
    }

    fn check_success(source: SocketAddr, expected: SocketAddr) {
        let (req, id) = request(vec![]);
        let resp = decode_response(&answer(&req, source).unwrap());
        assert_eq!(resp.class(), MessageClass::SuccessResponse);
        assert_eq!(resp.method(), BINDING);
        assert_eq!(resp.transaction_id(), id);
        assert_eq!(
            resp.get_attribute::<XorMappedAddress>()
                .map(|a| a.address()),
            Some(expected)
        );
        assert!(resp.get_attribute::<Software>().is_none());
        assert!(resp.get_attribute::<MappedAddress>().is_none());
    }

    /// The answer is the smallest a Binding success can be: header plus
    /// XOR-MAPPED-ADDRESS (12 bytes for IPv4, 24 for IPv6).
    #[test]
    fn a_success_is_no_larger_than_a_binding_success_needs() {
        let (req, _) = request(vec![]);
        assert_eq!(req.len(), 20);
        let v4 = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 7), 1));
        assert_eq!(answer(&req, v4).unwrap().len(), 32);
        let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 1));
        assert_eq!(answer(&req, v6).unwrap().len(), 44);
    }

    #[test]
    fn ipv4_and_ipv6_sources_get_their_xor_mapped_address() {
        let v4 = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 7), 40_000));
        check_success(v4, v4);
        let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42), 1));
        check_success(v6, v6);
        let mapped = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 9).to_ipv6_mapped(), 65535));
        let plain = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 9), 65535));
        check_success(mapped, plain);
    }

    #[test]
    fn xor_mapped_address_is_xored_on_the_wire() {
        let source = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 0x1234));
        let (req, _) = request(vec![]);
        let bytes = answer(&req, source).unwrap();
        // Attribute 0x0020 right after the header: family 1, port and
        // address XORed with the cookie.
        assert_eq!(&bytes[20..24], &[0x00, 0x20, 0x00, 0x08]);
        assert_eq!(bytes[25], 0x01);
        assert_eq!(&bytes[26..28], &[0x12 ^ 0x21, 0x34 ^ 0x12]);
        assert_eq!(&bytes[28..32], &[10 ^ 0x21, 0x12, 0xa4, 1 ^ 0x42]);
    }

    #[test]
    fn rfc3489_client_gets_mapped_address_and_its_cookie_field_back() {
        // A request as Debian's `stun` 0.97 sends it: 16-byte transaction
        // id, CHANGE-REQUEST with no flags.
        let req = [
            0x00, 0x01, 0x00, 0x08, 0x01, 0xe4, 0x3c, 0x10, 0x4c, 0xae, 0x91, 0x23, 0x77, 0x17,
            0xfa, 0x69, 0x71, 0xac, 0x3e, 0x4f, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 23427));
        let mut bytes = answer(&req, source).unwrap();
        assert_eq!(
            &bytes[4..20],
            &req[4..20],
            "whole 3489 transaction id echoed"
        );
        bytes[4..8].copy_from_slice(&MAGIC_COOKIE);
        let resp = decode_response(&bytes);
        assert_eq!(resp.class(), MessageClass::SuccessResponse);
        assert_eq!(
            resp.get_attribute::<MappedAddress>().map(|a| a.address()),
            Some(source)
        );
        assert!(resp.get_attribute::<XorMappedAddress>().is_none());
        assert!(resp.get_attribute::<Software>().is_none());

        // A change request it cannot honour: silence.
        let mut change = req;
        change[27] = 0x06;
        assert_eq!(answer(&change, source), Err(StunDrop::LegacyUnsupported));
    }

    #[test]
    fn change_request_without_flags_is_answered_with_flags_is_dropped() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let (req, _) = request(vec![ChangeRequest::new(false, false).into()]);
        let resp = decode_response(&answer(&req, source).unwrap());
        assert_eq!(resp.class(), MessageClass::SuccessResponse);

        let (req, _) = request(vec![ChangeRequest::new(true, true).into()]);
        assert_eq!(answer(&req, source), Err(StunDrop::UnknownRequired));
    }

    /// Appends a raw attribute (type, 4-byte value) and fixes the length.
    fn with_raw_attribute(mut req: Vec<u8>, attr_type: u16) -> Vec<u8> {
        req.extend_from_slice(&attr_type.to_be_bytes());
        req.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
        let len = u16::try_from(req.len() - HEADER_LEN).unwrap();
        req[2..4].copy_from_slice(&len.to_be_bytes());
        req
    }

    #[test]
    fn unknown_attributes_required_are_dropped_optional_are_ignored() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let (req, _) = request(vec![]);
        // 24 bytes that used to earn a 92-byte 420 error response.
        let unknown = with_raw_attribute(req.clone(), 0x7f01);
        assert_eq!(unknown.len(), 28);
        assert_eq!(answer(&unknown, source), Err(StunDrop::UnknownRequired));
        let resp = decode_response(&answer(&with_raw_attribute(req, 0xc001), source).unwrap());
        assert_eq!(resp.class(), MessageClass::SuccessResponse);
    }

    #[test]
    fn username_and_fingerprint_are_accepted() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let id = TransactionId::new([9; 12]);
        let mut message = Message::<StunAttribute>::new(MessageClass::Request, BINDING, id);
        message.add_attribute(Username::new("alice".into()).unwrap());
        let fingerprint = Fingerprint::new(&message).unwrap();
        message.add_attribute(fingerprint);
        let req = MessageEncoder::new().encode_into_bytes(message).unwrap();
        let resp = decode_response(&answer(&req, source).unwrap());
        assert_eq!(resp.class(), MessageClass::SuccessResponse);
        // A corrupted fingerprint makes the message malformed.
        let mut bad = req;
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(answer(&bad, source), Err(StunDrop::Malformed(_))));
    }

    #[test]
    fn non_requests_and_other_methods_are_dropped() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let id = TransactionId::new([1; 12]);
        for class in [
            MessageClass::Indication,
            MessageClass::SuccessResponse,
            MessageClass::ErrorResponse,
        ] {
            let message = Message::<StunAttribute>::new(class, BINDING, id);
            let bytes = MessageEncoder::new().encode_into_bytes(message).unwrap();
            assert_eq!(answer(&bytes, source), Err(StunDrop::NotBindingRequest));
        }
        // TURN Allocate (method 3).
        let message = Message::<StunAttribute>::new(
            MessageClass::Request,
            stun_codec::Method::new(3).unwrap(),
            id,
        );
        let bytes = MessageEncoder::new().encode_into_bytes(message).unwrap();
        assert_eq!(answer(&bytes, source), Err(StunDrop::NotBindingRequest));
    }

    #[test]
    fn truncated_extended_and_garbage_input_is_dropped_without_panic() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let (req, _) = request(vec![
            Software::new("x".repeat(30)).unwrap().into(),
            ChangeRequest::new(false, false).into(),
        ]);
        assert!(answer(&req, source).is_ok());
        for len in 0..req.len() {
            assert!(
                answer(&req[..len], source).is_err(),
                "truncated to {len} bytes was answered"
            );
        }
        let mut trailing = req.clone();
        trailing.push(0);
        assert!(answer(&trailing, source).is_err());

        // Pseudo-random datagrams that pass the first-byte demux, with and
        // without a cookie: none may panic (the result is irrelevant).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first &= 0x03;
            }
            if round % 2 == 0 && bytes.len() >= 8 {
                bytes[4..8].copy_from_slice(&MAGIC_COOKIE);
                // A plausible length field, so attribute parsing is reached.
                let body = u16::try_from(bytes.len().saturating_sub(HEADER_LEN)).unwrap();
                bytes[2..4].copy_from_slice(&body.to_be_bytes());
            }
            let _ = answer(&bytes, source);
        }
    }

    #[tokio::test]
    async fn answers_over_a_real_udp_socket() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (req, id) = request(vec![]);
        client
            .send_to(&req, server.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        let reply = answer(&buf[..n], from).unwrap();
        server.send_to(&reply, from).await.unwrap();
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let resp = decode_response(&buf[..n]);
        assert_eq!(resp.transaction_id(), id);
        assert_eq!(
            resp.get_attribute::<XorMappedAddress>()
                .map(|a| a.address()),
            Some(client.local_addr().unwrap())
        );
    }
}
