//! p2pchat: peer-to-peer chat over UDP with a small signaling server.
//!
//! * [`proto`] is the generated gRPC contract (`proto/signaling.proto`).
//! * [`server`] is the signaling service: registry, gRPC, REST shim.
//! * [`client`] is the peer: wire protocol, sessions, signaling client, UI.

pub mod proto {
    //! Generated code for the `p2pchat.signaling.v1` package.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("p2pchat.signaling.v1");

    /// Encoded `FileDescriptorSet` of the contract, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/signaling_descriptor.bin"));
}

#[path = "server/mod.rs"]
pub mod server;

#[path = "client/mod.rs"]
pub mod client;
