//! Keeping paths alive: relay bindings (asked for when no direct path
//! answers, released when the session ends) and STUN refreshes (when a path
//! went quiet, our public address may have changed).

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use p2pchat::datagram::{DatagramKind, classify};
use tokio::time::Instant;

use super::{Core, Output, Task};
use crate::relay::{Credentials, RelayInput};
use crate::stun;
use crate::wire::Datagram;

/// How long a STUN refresh (after a path went stale) waits for its answer.
pub const STUN_REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// A STUN request in flight after a path went stale.
#[derive(Debug)]
pub(super) struct StunRefresh {
    tid: stun_codec::TransactionId,
    pub(super) deadline: Instant,
    /// Peers whose rendezvous waits for the answer.
    peers: Vec<PeerId>,
}

impl Core {
    /// A frame from the relay: a binding's state, or a relayed datagram.
    pub(super) fn on_relay_frame(&mut self, bytes: &[u8], relay_addr: SocketAddr, now: Instant) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        match relay.on_frame(bytes, now) {
            RelayInput::Ready(peer) => {
                tracing::info!(%peer, "relay ready");
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.add_relay(relay_addr, now);
                }
            }
            RelayInput::Waiting(peer) => {
                tracing::debug!(%peer, "relay bound; waiting for the other side");
            }
            RelayInput::Refused(peer, code) => {
                tracing::warn!(%peer, code, "relay refused the binding");
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.drop_relay();
                }
            }
            RelayInput::Data(_, payload) if classify(&payload) == DatagramKind::Sealed => {
                // Sealed: the keys say who sent it, not the relay.
                self.on_sealed(&payload, relay_addr, now);
            }
            RelayInput::Data(peer, payload) => {
                // The relay vouches for the sender: only a datagram that
                // claims to be from the peer it is bound to goes on.
                match Datagram::decode(&payload) {
                    Ok(dg) if dg.from() == peer => {
                        self.on_chat(&dg, relay_addr, now);
                    }
                    Ok(_) => tracing::debug!(%peer, "relayed datagram with a foreign id dropped"),
                    Err(err) => tracing::debug!(%peer, %err, "relayed datagram dropped"),
                }
            }
            RelayInput::Ignored => {}
        }
        // A BOUND with a new channel is the relay's challenge: it is due
        // at once, so echo it now rather than at the next timer.
        self.poll_relay(now);
    }

    /// A STUN datagram: the answer to our refresh, if it is one.
    pub(super) fn on_stun(&mut self, bytes: &[u8], from: SocketAddr) {
        if let Some(refresh) = &self.stun_refresh
            && Some(from) == self.stun_server
            && let Some(addr) = stun::parse_binding_response(bytes, refresh.tid)
        {
            self.finish_stun_refresh(Some(addr));
        }
    }

    /// Our identity towards the relay (needs a token from the server; the
    /// frames carry a MAC under the key derived from it, never the token).
    fn relay_credentials(&self) -> Option<Credentials> {
        Some(Credentials::new(self.me, self.relay_token.as_ref()?))
    }

    /// Starts a relay binding with `peer` (no-op without a relay).
    pub(super) fn request_relay(&mut self, peer: PeerId, now: Instant) {
        let Some(relay) = self.relay.as_mut() else {
            tracing::info!(%peer, "no direct path yet and no relay available");
            return;
        };
        if relay.is_ready(peer) {
            let addr = relay.server();
            if let Some(session) = self.sessions.get_mut(&peer) {
                session.add_relay(addr, now);
            }
            return;
        }
        if relay.request(peer, now) {
            tracing::info!(%peer, "asking the server to relay");
        }
        self.poll_relay(now);
    }

    /// Queues the BINDs that are due.
    pub(super) fn poll_relay(&mut self, now: Instant) {
        // Most calls (every timer, every relayed datagram) find nothing due:
        // skip deriving the relay key then.
        let due = self
            .relay
            .as_ref()
            .and_then(|r| r.next_deadline())
            .is_some_and(|at| at <= now);
        if !due {
            return;
        }
        let Some(creds) = self.relay_credentials() else {
            return;
        };
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let to = relay.server();
        for bytes in relay.poll(now, &creds) {
            self.outputs.push(Output::Send { to, bytes });
        }
    }

    /// Frees the relay binding with `peer`, if any.
    pub(super) fn release_relay(&mut self, peer: PeerId) {
        let Some(creds) = self.relay_credentials() else {
            return;
        };
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let to = relay.server();
        if let Some(bytes) = relay.release(peer, &creds) {
            self.outputs.push(Output::Send { to, bytes });
        }
    }

    /// A session's path went quiet: ask STUN whether our own public address
    /// changed (then register the new one), and ask for a new rendezvous so
    /// the peer probes us again.
    pub(super) fn refresh_path(&mut self, peer: PeerId, now: Instant) {
        let Some(server) = self.stun_server else {
            self.rendezvous_again(peer);
            return;
        };
        if let Some(refresh) = self.stun_refresh.as_mut() {
            if !refresh.peers.contains(&peer) {
                refresh.peers.push(peer);
            }
            return;
        }
        let (tid, request) = stun::binding_request();
        self.outputs.push(Output::Send {
            to: server,
            bytes: request,
        });
        self.stun_refresh = Some(StunRefresh {
            tid,
            deadline: now + STUN_REFRESH_TIMEOUT,
            peers: vec![peer],
        });
    }

    /// The STUN refresh ended (`answer` is `None` on timeout): register a
    /// changed address, then redo the rendezvous of the waiting peers.
    pub(super) fn finish_stun_refresh(&mut self, answer: Option<SocketAddr>) {
        let Some(refresh) = self.stun_refresh.take() else {
            return;
        };
        let changed = answer.is_some() && answer != self.reflexive;
        if !changed {
            for peer in refresh.peers {
                self.rendezvous_again(peer);
            }
            return;
        }
        tracing::info!(old = ?self.reflexive, new = ?answer, "our public address changed");
        self.reflexive = answer;
        let peers = refresh
            .peers
            .iter()
            .filter_map(|p| self.directory.get(*p).cloned())
            .collect();
        self.outputs.push(Output::Task(Task::Readdress {
            reflexive: answer,
            peers,
        }));
    }
}
