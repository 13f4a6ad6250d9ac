//! The TCP side of the server, below the APIs: the one listener that serves
//! HTTP/1.1 and HTTP/2 side by side ([`listener`]), its limits
//! ([`limits`]), the shutdown signal every long-lived task follows
//! ([`shutdown`]), and the set that tracks those tasks ([`tasks`]).

pub mod limits;
pub mod listener;
pub mod shutdown;
pub mod tasks;

use std::net::SocketAddr;

/// The address of the client a request came from, put into every request's
/// extensions by the listener. Both APIs record it as the peer's observed IP.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);
