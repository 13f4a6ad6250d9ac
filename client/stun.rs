//! STUN (RFC 5389/8489) Binding, client side: learns the server-reflexive
//! address (our public IP and port as a STUN server sees them) of the chat
//! socket itself, so the mapping we register is the one chat traffic uses.
//!
//! Encoding and decoding go through the `stun_codec` crate; this module only
//! builds the request, matches the answer to it and retransmits.

use std::net::SocketAddr;
use std::time::Duration;

use bytecodec::{DecodeExt, EncodeExt};
use p2pchat::datagram::{DatagramKind, classify};
use stun_codec::rfc5389::attributes::{MappedAddress, Software, XorMappedAddress};
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use thiserror::Error;

use super::transport::Transport;

/// Retransmission schedule of a Binding request: the waits after each send
/// (RFC 8489 starts at 500 ms; a first answer on a LAN or loopback comes
/// much sooner, and start-up should not stall for long).
pub const RETRANSMIT_WAITS: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(800),
];

/// Why no server-reflexive address was learned.
#[derive(Debug, Error)]
pub enum StunError {
    /// Every request went unanswered.
    #[error("no STUN answer from {server} after {attempts} requests")]
    NoAnswer {
        /// The STUN server.
        server: SocketAddr,
        /// Requests sent.
        attempts: usize,
    },
    /// The socket failed.
    #[error("STUN over the chat socket failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A Binding request with a random transaction id.
pub fn binding_request() -> (TransactionId, Vec<u8>) {
    let mut id = [0u8; 12];
    id.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
    let tid = TransactionId::new(id);
    let mut message = Message::<Attribute>::new(MessageClass::Request, BINDING, tid);
    if let Ok(software) = Software::new(concat!("p2pchat ", env!("CARGO_PKG_VERSION")).to_owned()) {
        message.add_attribute(software);
    }
    let bytes = MessageEncoder::new()
        .encode_into_bytes(message)
        .unwrap_or_default();
    (tid, bytes)
}

/// The mapped address in a Binding success response to `tid`
/// (XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489-era server);
/// `None` for anything else.
pub fn parse_binding_response(bytes: &[u8], tid: TransactionId) -> Option<SocketAddr> {
    // stun_codec checks the magic cookie and the transaction id below.
    if classify(bytes) != DatagramKind::Stun {
        return None;
    }
    let message = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(bytes)
        .ok()?
        .ok()?;
    if message.class() != MessageClass::SuccessResponse
        || message.method() != BINDING
        || message.transaction_id() != tid
    {
        return None;
    }
    message
        .get_attribute::<XorMappedAddress>()
        .map(XorMappedAddress::address)
        .or_else(|| {
            message
                .get_attribute::<MappedAddress>()
                .map(MappedAddress::address)
        })
}

/// Asks `server` for our reflexive address over `transport`, retransmitting
/// per [`RETRANSMIT_WAITS`]. Other datagrams arriving meanwhile are
/// dropped (nobody knows our address yet at start-up; a peer's probe is
/// repeated anyway).
pub async fn discover(
    transport: &dyn Transport,
    server: SocketAddr,
) -> Result<SocketAddr, StunError> {
    let (tid, request) = binding_request();
    let mut buf = vec![0u8; 2048];
    for wait in RETRANSMIT_WAITS {
        transport.send_to(&request, server).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let received = tokio::time::timeout_at(deadline, transport.recv_from(&mut buf)).await;
            let Ok(received) = received else { break };
            match received {
                Ok((n, from)) if from == server => {
                    if let Some(addr) = parse_binding_response(&buf[..n], tid) {
                        return Ok(addr);
                    }
                }
                Ok(_) => {}
                // E.g. ICMP port unreachable surfacing as an error: the
                // server has no STUN port; further tries are pointless.
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(StunError::Io(err));
                }
                Err(_) => {}
            }
        }
    }
    Err(StunError::NoAnswer {
        server,
        attempts: RETRANSMIT_WAITS.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_codec::rfc5389::attributes::XorMappedAddress;

    fn response(tid: TransactionId, addr: SocketAddr) -> Vec<u8> {
        let mut m = Message::<Attribute>::new(MessageClass::SuccessResponse, BINDING, tid);
        m.add_attribute(XorMappedAddress::new(addr));
        MessageEncoder::new()
            .encode_into_bytes(m)
            .expect("encodable")
    }

    #[test]
    fn request_is_a_binding_request() {
        let (tid, bytes) = binding_request();
        assert_eq!(classify(&bytes), DatagramKind::Stun);
        let m = MessageDecoder::<Attribute>::new()
            .decode_from_bytes(&bytes)
            .expect("decodes")
            .expect("not broken");
        assert_eq!(m.class(), MessageClass::Request);
        assert_eq!(m.method(), BINDING);
        assert_eq!(m.transaction_id(), tid);
    }

    #[test]
    fn parses_the_matching_answer_only() {
        let (tid, _) = binding_request();
        let addr: SocketAddr = "203.0.113.7:40000".parse().expect("addr");
        assert_eq!(
            parse_binding_response(&response(tid, addr), tid),
            Some(addr)
        );
        let (other, _) = binding_request();
        assert_eq!(parse_binding_response(&response(other, addr), tid), None);
        let v6: SocketAddr = "[2001:db8::1]:9".parse().expect("addr");
        assert_eq!(parse_binding_response(&response(tid, v6), tid), Some(v6));
    }

    #[test]
    fn garbage_is_not_an_answer() {
        let (tid, request) = binding_request();
        assert_eq!(parse_binding_response(&request, tid), None);
        assert_eq!(parse_binding_response(b"{\"type\":\"hello\"}", tid), None);
        assert_eq!(parse_binding_response(&[], tid), None);
        let good = response(tid, "203.0.113.7:1".parse().expect("addr"));
        for len in 0..good.len() {
            assert_eq!(
                parse_binding_response(&good[..len], tid),
                None,
                "prefix {len}"
            );
        }
    }

    #[tokio::test]
    async fn discover_gets_an_answer_and_times_out_without_one() {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            let m = MessageDecoder::<Attribute>::new()
                .decode_from_bytes(&buf[..n])
                .expect("decodes")
                .expect("not broken");
            server
                .send_to(&response(m.transaction_id(), from), from)
                .await
                .expect("send");
            from
        });
        let found = discover(&client, server_addr).await.expect("answer");
        assert_eq!(found, client.local_addr().expect("addr"));
        assert_eq!(answer.await.expect("task"), found);

        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let err = discover(&client, silent.local_addr().expect("addr"))
            .await
            .expect_err("no answer");
        assert!(
            matches!(err, StunError::NoAnswer { attempts: 4, .. }),
            "{err}"
        );
    }
}
