//! STUN (RFC 5389/8489) Binding, server side: tells a client the address
//! its request came from, as XOR-MAPPED-ADDRESS (plus MAPPED-ADDRESS for
//! RFC 3489-era clients). Decoding and encoding are `stun_codec`'s.

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{MappedAddress, Software, XorMappedAddress};
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder};

/// The SOFTWARE attribute of our answers.
const SOFTWARE: &str = concat!("p2pchat-signaling ", env!("CARGO_PKG_VERSION"));

/// The answer to a Binding request from `from`, or `None` for anything that
/// is not a well-formed Binding request (it is dropped without a reply: a
/// reply to garbage would make the port a reflector).
pub fn answer(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let message = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(request)
        .ok()?
        .ok()?;
    if message.class() != MessageClass::Request || message.method() != BINDING {
        return None;
    }
    let mut response = Message::<Attribute>::new(
        MessageClass::SuccessResponse,
        BINDING,
        message.transaction_id(),
    );
    response.add_attribute(XorMappedAddress::new(from));
    response.add_attribute(MappedAddress::new(from));
    if let Ok(software) = Software::new(SOFTWARE.to_owned()) {
        response.add_attribute(software);
    }
    MessageEncoder::new().encode_into_bytes(response).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_codec::TransactionId;

    fn request(class: MessageClass) -> Vec<u8> {
        let m = Message::<Attribute>::new(class, BINDING, TransactionId::new([5; 12]));
        MessageEncoder::new().encode_into_bytes(m).expect("encodes")
    }

    #[test]
    fn answers_a_binding_request_with_the_source_address() {
        for from in ["198.51.100.4:40000", "[2001:db8::9]:3478"] {
            let from: SocketAddr = from.parse().expect("addr");
            let bytes = answer(&request(MessageClass::Request), from).expect("answered");
            let m = MessageDecoder::<Attribute>::new()
                .decode_from_bytes(&bytes)
                .expect("decodes")
                .expect("not broken");
            assert_eq!(m.class(), MessageClass::SuccessResponse);
            assert_eq!(m.transaction_id(), TransactionId::new([5; 12]));
            let xor = m.get_attribute::<XorMappedAddress>().expect("xor");
            assert_eq!(xor.address(), from);
            let plain = m.get_attribute::<MappedAddress>().expect("mapped");
            assert_eq!(plain.address(), from);
        }
    }

    #[test]
    fn everything_else_is_dropped() {
        let from: SocketAddr = "198.51.100.4:1".parse().expect("addr");
        assert!(answer(&request(MessageClass::Indication), from).is_none());
        assert!(answer(&request(MessageClass::SuccessResponse), from).is_none());
        assert!(answer(b"", from).is_none());
        assert!(answer(&[0u8; 19], from).is_none());
        let good = request(MessageClass::Request);
        for len in 0..good.len() {
            assert!(answer(&good[..len], from).is_none(), "prefix {len}");
        }
        let mut bad_cookie = good.clone();
        bad_cookie[4] ^= 0xff;
        assert!(answer(&bad_cookie, from).is_none());
    }
}
