//! The peer: wire protocol, sessions, signaling client and user interfaces.
//!
//! Layers, from the wire up:
//! * [`protocol`]: the JSON datagrams (seed format plus negotiated
//!   extensions); plain data, no I/O.
//! * [`session`]: one chat session as a pure state machine (hole-punching
//!   probes, keep-alive, reliable ordered delivery, fragmentation).
//! * [`transport`]: the UDP socket edge, behind a trait tests can wrap.
//! * [`signaling`]: the tonic client (register, lease, inbox, watch,
//!   reconnect).
//! * [`engine`]: the event loop tying these together; front ends send it
//!   [`engine::Command`]s and render its [`engine::Event`]s.
//! * [`frontend`]: the loop every line-based front end runs; [`console`]
//!   and [`json_ui`] are the line console and `--json` front ends, and
//!   [`input`] parses what the user types for all front ends.
//! * [`tui`]: the full-screen terminal UI (its own loop: keys, not lines).

pub mod console;
pub mod engine;
pub mod frontend;
pub mod input;
pub mod json_ui;
pub mod wire;
/// The wire module under its earlier name, for existing imports.
pub use wire as protocol;
pub mod relay;
pub mod session;
pub mod signaling;
pub mod stun;
pub mod transport;
pub mod tui;
