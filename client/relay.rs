//! The peer's side of the server relay: which peers we relay with, their
//! channels, when to (re-)send BIND, and the wrapping of chat datagrams
//! into DATA frames. Pure state: the engine does the sending.
//!
//! The frame format is the contract in [`p2pchat::proto::relay_frame`]. A
//! binding is asked for when probing finds no direct path in time; both
//! peers ask, and the server pairs them. It is kept (refreshed) for the life
//! of the session, so a session that upgraded to a direct path can fall
//! back at once if that path dies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use p2pchat::proto::relay_frame::{MAX_RELAY_PAYLOAD, RelayFrame};
use p2pchat::{PeerId, SessionToken};

/// Pause between BINDs while the server has not confirmed ours.
pub const BIND_RETRY: Duration = Duration::from_millis(500);

/// Pause between BINDs while waiting for the other side (the server also
/// pushes "ready", this only covers a lost push).
pub const BIND_WAITING_REFRESH: Duration = Duration::from_secs(1);

/// Pause between BINDs of a ready binding: keeps it (and our NAT mapping
/// towards the server) alive well inside the server's idle timeout.
pub const BIND_READY_REFRESH: Duration = Duration::from_secs(10);

/// Most relay bindings at once (one per session at most).
pub const MAX_BINDINGS: usize = 32;

/// State of one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    channel: Option<u64>,
    ready: bool,
    next_bind: Instant,
}

/// What a frame from the relay meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayInput {
    /// The binding with this peer is ready: both sides are bound.
    Ready(PeerId),
    /// The binding is confirmed but the other side has not bound yet.
    Waiting(PeerId),
    /// A chat datagram relayed from this peer.
    Data(PeerId, Vec<u8>),
    /// The server refused our binding with this peer (code per the spec).
    Refused(PeerId, u8),
    /// Not for us (unknown channel, malformed): dropped.
    Ignored,
}

/// Our identity towards the relay.
#[derive(Debug, Clone, Copy)]
pub struct Credentials {
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our session token.
    pub token: SessionToken,
}

/// The relay bindings of one peer. See the module docs.
#[derive(Debug)]
pub struct RelayClient {
    server: SocketAddr,
    bindings: HashMap<PeerId, Binding>,
}

impl RelayClient {
    /// A client for the relay at `server`.
    pub fn new(server: SocketAddr) -> RelayClient {
        RelayClient {
            server,
            bindings: HashMap::new(),
        }
    }

    /// The relay's address (the session's candidate for it).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Starts binding with `peer`; a BIND goes out on the next
    /// [`RelayClient::poll`]. False if the table is full.
    pub fn request(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.bindings.contains_key(&peer) {
            return true;
        }
        if self.bindings.len() >= MAX_BINDINGS {
            return false;
        }
        self.bindings.insert(
            peer,
            Binding {
                channel: None,
                ready: false,
                next_bind: now,
            },
        );
        true
    }

    /// Whether a binding with `peer` is ready.
    pub fn is_ready(&self, peer: PeerId) -> bool {
        self.bindings.get(&peer).is_some_and(|b| b.ready)
    }

    /// Forgets the binding with `peer`; returns the RELEASE frame to send.
    pub fn release(&mut self, peer: PeerId, creds: Credentials) -> Option<Vec<u8>> {
        self.bindings.remove(&peer)?;
        Some(
            RelayFrame::Release {
                peer_id: *creds.peer_id.as_uuid(),
                token: *creds.token.as_bytes(),
                target: *peer.as_uuid(),
            }
            .to_bytes(),
        )
    }

    /// BIND frames due at `now`.
    pub fn poll(&mut self, now: Instant, creds: Credentials) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (peer, b) in self.bindings.iter_mut() {
            if now < b.next_bind {
                continue;
            }
            frames.push(
                RelayFrame::Bind {
                    peer_id: *creds.peer_id.as_uuid(),
                    token: *creds.token.as_bytes(),
                    target: *peer.as_uuid(),
                }
                .to_bytes(),
            );
            b.next_bind = now
                + match (b.channel, b.ready) {
                    (None, _) => BIND_RETRY,
                    (Some(_), false) => BIND_WAITING_REFRESH,
                    (Some(_), true) => BIND_READY_REFRESH,
                };
        }
        frames
    }

    /// When [`RelayClient::poll`] has work next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.bindings.values().map(|b| b.next_bind).min()
    }

    /// Interprets a frame that came from the relay's address at `now`
    /// (which schedules the next BIND of a binding whose state changed).
    pub fn on_frame(&mut self, bytes: &[u8], now: Instant) -> RelayInput {
        let Ok(frame) = RelayFrame::decode(bytes) else {
            return RelayInput::Ignored;
        };
        match frame {
            RelayFrame::Bound {
                target,
                channel,
                ready,
            } => {
                let peer = PeerId::from(target);
                let Some(b) = self.bindings.get_mut(&peer) else {
                    return RelayInput::Ignored;
                };
                let became_ready = ready && !b.ready;
                if b.channel != Some(channel) || ready != b.ready {
                    // New or changed (e.g. the server restarted): refresh on
                    // the schedule of the new state.
                    b.next_bind = now
                        + if ready {
                            BIND_READY_REFRESH
                        } else {
                            BIND_WAITING_REFRESH
                        };
                }
                b.channel = Some(channel);
                b.ready = ready;
                if became_ready {
                    RelayInput::Ready(peer)
                } else if ready {
                    RelayInput::Ignored
                } else {
                    RelayInput::Waiting(peer)
                }
            }
            RelayFrame::Data { channel, payload } => {
                match self
                    .bindings
                    .iter()
                    .find(|(_, b)| b.ready && b.channel == Some(channel))
                {
                    Some((peer, _)) => RelayInput::Data(*peer, payload.to_vec()),
                    None => RelayInput::Ignored,
                }
            }
            RelayFrame::Refused { target, code } => {
                let peer = PeerId::from(target);
                match self.bindings.get_mut(&peer) {
                    Some(b) => {
                        b.ready = false;
                        b.channel = None;
                        // Back off: the condition (e.g. the peer is not
                        // registered yet) may clear.
                        b.next_bind = now + BIND_READY_REFRESH;
                        RelayInput::Refused(peer, code)
                    }
                    None => RelayInput::Ignored,
                }
            }
            RelayFrame::Bind { .. } | RelayFrame::Release { .. } => RelayInput::Ignored,
        }
    }

    /// `payload` wrapped for the relay towards `peer`; `None` while the
    /// binding is not ready or the payload is over the relay's limit.
    pub fn wrap(&self, peer: PeerId, payload: &[u8]) -> Option<Vec<u8>> {
        let b = self.bindings.get(&peer)?;
        if !b.ready || payload.len() > MAX_RELAY_PAYLOAD {
            return None;
        }
        let channel = b.channel?;
        Some(RelayFrame::Data { channel, payload }.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const PEER: PeerId = PeerId::from_uuid(uuid::uuid!("bbbbbbbb-0000-4000-8000-000000000002"));

    fn creds() -> Credentials {
        Credentials {
            peer_id: PeerId::from_uuid(Uuid::from_u128(1)),
            token: SessionToken::from_bytes([7; 32]),
        }
    }

    fn client() -> RelayClient {
        RelayClient::new("192.0.2.1:3478".parse().unwrap())
    }

    fn bound(channel: u64, ready: bool) -> Vec<u8> {
        RelayFrame::Bound {
            target: *PEER.as_uuid(),
            channel,
            ready,
        }
        .to_bytes()
    }

    #[test]
    fn bind_schedule_follows_the_binding_state_on_the_callers_clock() {
        let t0 = Instant::now();
        let mut r = client();
        assert!(r.request(PEER, t0));
        assert_eq!(r.poll(t0, creds()).len(), 1);
        assert_eq!(r.next_deadline(), Some(t0 + BIND_RETRY));
        // Confirmed but waiting: refresh from the time we were told.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.on_frame(&bound(9, false), t1), RelayInput::Waiting(PEER));
        assert_eq!(r.next_deadline(), Some(t1 + BIND_WAITING_REFRESH));
        let t2 = t1 + Duration::from_millis(50);
        assert_eq!(r.on_frame(&bound(9, true), t2), RelayInput::Ready(PEER));
        assert_eq!(r.next_deadline(), Some(t2 + BIND_READY_REFRESH));
        assert!(r.is_ready(PEER));
        assert!(r.wrap(PEER, b"x").is_some());
        // Unchanged state: the schedule stays.
        assert_eq!(
            r.on_frame(&bound(9, true), t2 + BIND_RETRY),
            RelayInput::Ignored
        );
        assert_eq!(r.next_deadline(), Some(t2 + BIND_READY_REFRESH));
        let refused = RelayFrame::Refused {
            target: *PEER.as_uuid(),
            code: 3,
        }
        .to_bytes();
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(r.on_frame(&refused, t3), RelayInput::Refused(PEER, 3));
        assert_eq!(r.next_deadline(), Some(t3 + BIND_READY_REFRESH));
        assert!(!r.is_ready(PEER));
    }

    #[test]
    fn binding_table_and_payload_limits_edge() {
        let now = Instant::now();
        let mut r = client();
        for i in 0..MAX_BINDINGS {
            assert!(r.request(PeerId::from_uuid(Uuid::from_u128(100 + i as u128)), now));
        }
        assert!(!r.request(PEER, now), "one past the table limit");
        let mut r = client();
        r.request(PEER, now);
        r.on_frame(&bound(1, true), now);
        assert!(r.wrap(PEER, &vec![0; MAX_RELAY_PAYLOAD]).is_some());
        assert!(r.wrap(PEER, &vec![0; MAX_RELAY_PAYLOAD + 1]).is_none());
        assert!(r.release(PEER, creds()).is_some());
        assert!(r.release(PEER, creds()).is_none());
    }
}
