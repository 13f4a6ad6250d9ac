//! The peer: wire protocol, sessions, signaling client and user interfaces.
//!
//! Layers, from the wire up:
//! * [`wire`]: the typed JSON datagrams (seed format plus negotiated
//!   extensions); plain data, no I/O.
//! * [`session`]: one chat session as a pure state machine, in layers: path
//!   (candidates, probing, selection), liveness (keep-alive, RTT), reliable
//!   numbered streams, fragmentation, and the channel seam between them and
//!   the wire (plaintext today; where encryption slots in).
//! * [`secure`]: the sans-IO Noise layer (handshake, sealed datagrams).
//! * [`relay`]: the peer's relay bindings (pure: BIND schedule, wrapping).
//! * [`stun`]: the STUN client (Binding requests and answers).
//! * [`transport`]: the UDP socket edge, behind a trait tests can wrap.
//! * [`signaling`]: the tonic client (register, lease, inbox, watch,
//!   reconnect).
//! * [`engine`]: a sans-IO core (session table, limits, focus, peer
//!   directory) under a thin select loop; front ends send it
//!   [`engine::Request`]s and render its [`engine::Event`]s.
//! * [`frontend`]: the loop every line-based front end runs; [`console`]
//!   and [`json_ui`] are the line console and `--json` front ends, and
//!   [`input`] parses what the user types for all front ends.
//! * [`text`]: the phrasing console and TUI share, and every sanitiser.
//! * [`tui`]: the full-screen terminal UI (its own loop: keys, not lines).

pub mod console;
pub mod engine;
pub mod frontend;
pub mod identity;
pub mod input;
pub mod json_ui;
pub mod relay;
pub mod secure;
pub mod session;
pub mod signaling;
pub mod stun;
pub mod text;
pub mod transport;
pub mod tui;
pub mod wire;
