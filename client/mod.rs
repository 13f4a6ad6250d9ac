//! The peer: wire protocol, sessions, signaling client and user interfaces.
//!
//! Layers, from the wire up:
//! * [`protocol`]: the JSON datagrams (seed format plus negotiated
//!   extensions), no I/O.
//! * [`session`]: one chat session as a pure state machine (probing,
//!   keep-alive, reliable ordered delivery, fragmentation).

pub mod protocol;
pub mod session;
