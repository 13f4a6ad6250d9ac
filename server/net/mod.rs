//! The TCP side of the server, below the APIs: the one listener that serves
//! HTTP/1.1 and HTTP/2 side by side, in plaintext or over TLS
//! ([`listener`], one connection's life in `connection`), its limits and
//! timeouts ([`limits`]), TLS setup ([`tls`]), who a connection counts
//! against ([`crate::source`]) and the per-source connection quota ([`quota`]),
//! what a connection is doing for its idle timeout ([`activity`]), the
//! request-body deadline ([`deadline`]), the shutdown signal every
//! long-lived task follows ([`shutdown`]), and the set that tracks those
//! tasks ([`tasks`]).

pub mod activity;
mod connection;
pub mod deadline;
pub mod limits;
pub mod listener;
pub mod quota;
mod refusals;
pub mod shutdown;
pub mod tasks;
pub mod tls;

use std::net::SocketAddr;

pub use crate::source::SourceKey;

/// The address of the client a request came from, put into every request's
/// extensions by the listener. Both APIs record it as the peer's observed IP.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);
