//! p2pchat's contract: what the signaling server and the peer agree on.
//!
//! * [`proto`] is the generated gRPC API (`proto/signaling.proto`) and the
//!   relay's UDP frame format ([`proto::relay_frame`]).
//! * [`datagram`] tells the kinds of datagram on a shared UDP port apart
//!   (STUN, relay frame, chat).
//! * [`ids`] holds the identifiers both sides parse once, at the edge:
//!   [`ids::PeerId`] and [`ids::SessionToken`].
//! * [`keys`] makes ids self-certifying: an id is derived from its owner's
//!   Ed25519 key ([`keys::PublicKey`]), and registering proves the key.
//!
//! The server is the `p2pchat-server` crate (`server/`), the peer the
//! `p2pchat-client` crate (`client/`); neither links the other.

pub mod datagram;
pub mod ids;
pub mod keys;

pub mod proto {
    //! The contract: generated code for the `p2pchat.signaling.v1` gRPC
    //! package, and the relay's UDP frame format.

    #[allow(clippy::all, missing_docs)]
    mod generated {
        tonic::include_proto!("p2pchat.signaling.v1");
    }
    pub use generated::*;

    /// Encoded `FileDescriptorSet` of the contract, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/signaling_descriptor.bin"));

    #[path = "relay_frame.rs"]
    pub mod relay_frame;
}

pub use ids::{PeerId, SessionToken};

/// Longest username the signaling server accepts, in characters (after
/// NFC): part of the contract, so a peer can refuse a longer one before it
/// connects.
pub const MAX_USERNAME_CHARS: usize = 64;
pub use keys::PublicKey;
