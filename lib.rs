//! p2pchat: peer-to-peer chat over UDP with a small signaling server.
//!
//! * [`proto`] is the generated gRPC contract (`proto/signaling.proto`).
//! * [`server`] is the signaling service: registry, gRPC, REST shim.
//! * [`client`] is the peer: wire protocol, sessions, signaling client, UI.

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

#[path = "server/mod.rs"]
pub mod server;

#[path = "client/mod.rs"]
pub mod client;
