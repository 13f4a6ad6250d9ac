//! STUN Binding answers (RFC 8489/5389) for the server's UDP port: tells a
//! peer the address its datagrams arrive from (its server-reflexive address).
//!
//! Pure: bytes and the source address in, the answer's bytes out, so it is
//! testable without sockets. Decoding and encoding go through the maintained
//! `stun_codec` crate; nothing here parses STUN by hand.
//!
//! RFC 3489 clients (no magic cookie; e.g. Debian's `stun` tool) are answered
//! the way RFC 5389 section 12.2 asks: MAPPED-ADDRESS instead of
//! XOR-MAPPED-ADDRESS, and the request's cookie field copied back (and no
//! SOFTWARE, which RFC 3489 does not have).

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{
    ErrorCode, Fingerprint, MappedAddress, MessageIntegrity, Software, UnknownAttributes, Username,
    XorMappedAddress,
};
use stun_codec::rfc5389::errors::UnknownAttribute;
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5780::attributes::ChangeRequest;
use stun_codec::{
    Attribute as _, AttributeType, Message, MessageClass, MessageDecoder, MessageEncoder,
};

/// The SOFTWARE attribute of every answer.
pub const SOFTWARE: &str = concat!("p2pchat signaling-server ", env!("CARGO_PKG_VERSION"));

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
}

/// The answer to a datagram that arrived from `source`: a Binding success
/// response with its XOR-MAPPED-ADDRESS and SOFTWARE (only MAPPED-ADDRESS
/// for RFC 3489 clients), or a 420 error response listing the
/// comprehension-required attributes it does not understand. CHANGE-REQUEST
/// with a flag set counts as not understood: this server has one address.
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

    let mut not_understood: Vec<AttributeType> = request
        .unknown_attributes()
        .map(|a| a.get_type())
        .filter(|t| t.is_comprehension_required())
        .collect();
    if request
        .get_attribute::<ChangeRequest>()
        .is_some_and(|c| c.ip() || c.port())
    {
        not_understood.push(AttributeType::new(ChangeRequest::CODEPOINT));
    }

    let transaction_id = request.transaction_id();
    let response = match (legacy_cookie, not_understood.is_empty()) {
        (Some(_), false) => return Err(StunDrop::LegacyUnsupported),
        (Some(_), true) => {
            let mut response = Message::new(MessageClass::SuccessResponse, BINDING, transaction_id);
            // No SOFTWARE: RFC 3489 has no such attribute, and clients of
            // that era (Debian's `stun`) misparse 0x8022 as their own.
            response.add_attribute(MappedAddress::new(source));
            response
        }
        (None, true) => {
            let mut response = Message::new(MessageClass::SuccessResponse, BINDING, transaction_id);
            response.add_attribute(XorMappedAddress::new(source));
            response.add_attribute(Software::new_static(SOFTWARE));
            response
        }
        (None, false) => {
            let mut response = Message::new(MessageClass::ErrorResponse, BINDING, transaction_id);
            response.add_attribute(ErrorCode::from(UnknownAttribute));
            response.add_attribute(UnknownAttributes::new(not_understood));
            response.add_attribute(Software::new_static(SOFTWARE));
            response
        }
    };
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
        assert_eq!(
            resp.get_attribute::<Software>().map(|s| s.description()),
            Some(SOFTWARE)
        );
        assert!(resp.get_attribute::<MappedAddress>().is_none());
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
    fn change_request_without_flags_is_answered_with_flags_is_420() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let (req, _) = request(vec![ChangeRequest::new(false, false).into()]);
        let resp = decode_response(&answer(&req, source).unwrap());
        assert_eq!(resp.class(), MessageClass::SuccessResponse);

        let (req, id) = request(vec![ChangeRequest::new(true, true).into()]);
        let resp = decode_response(&answer(&req, source).unwrap());
        assert_eq!(resp.class(), MessageClass::ErrorResponse);
        assert_eq!(resp.transaction_id(), id);
        assert_eq!(
            resp.get_attribute::<ErrorCode>().map(|e| e.code()),
            Some(420)
        );
        assert_eq!(
            resp.get_attribute::<UnknownAttributes>()
                .map(|u| u.unknowns().to_vec()),
            Some(vec![AttributeType::new(0x0003)])
        );
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
    fn unknown_attributes_required_get_420_optional_are_ignored() {
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let (req, _) = request(vec![]);
        let resp =
            decode_response(&answer(&with_raw_attribute(req.clone(), 0x7f01), source).unwrap());
        assert_eq!(
            resp.get_attribute::<ErrorCode>().map(|e| e.code()),
            Some(420)
        );
        assert_eq!(
            resp.get_attribute::<UnknownAttributes>()
                .map(|u| u.unknowns().to_vec()),
            Some(vec![AttributeType::new(0x7f01)])
        );
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
