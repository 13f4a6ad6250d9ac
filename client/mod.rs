//! The peer: wire protocol, sessions, signaling client and user interfaces.
