//! The server's UDP port: STUN Binding answers and the relay, on one
//! socket, demultiplexed by the first byte of each datagram (see
//! [`p2pchat::datagram::classify`]).
//!
//! One task owns the socket and the relay table: it answers STUN, checks
//! relay BIND/RELEASE tokens against the registry, forwards DATA, frees
//! sessions of peers that leave the registry (its change feed) and sessions
//! that idle out, and stops on the server's shutdown signal.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::registry::{ChangeKind, PeerRegistry};
use super::relay::{Outgoing, RelayLimits, RelayTable};
use super::shutdown::Shutdown;
use super::stun;
use p2pchat::datagram::{DatagramKind, classify};
use p2pchat::proto::relay_frame::{MAX_FRAME_BYTES, RefuseCode, RelayFrame};

/// How often idle relay sessions are looked for.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Binds the UDP socket (with SO_REUSEADDR like the TCP listener, so a
/// restarted server gets its port back at once).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Serves STUN and the relay on `socket` until `shutdown` fires.
pub async fn run(
    socket: UdpSocket,
    registry: PeerRegistry,
    limits: RelayLimits,
    mut shutdown: Shutdown,
) {
    let mut table = RelayTable::new(limits);
    let mut changes = registry.watch(None).changes;
    let mut expiry = tokio::time::interval(EXPIRY_TICK);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One byte more than the largest frame, so an oversized one is seen.
    let mut buf = vec![0u8; MAX_FRAME_BYTES + 1];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    for (to, bytes) in handle(&buf[..n], from, &registry, &mut table) {
                        if let Err(err) = socket.send_to(&bytes, to).await {
                            tracing::debug!(%to, %err, "UDP send failed");
                        }
                    }
                }
                // ICMP errors from earlier sends surface here on Linux; the
                // socket itself is fine.
                Err(err) => tracing::debug!(%err, "UDP receive error"),
            },
            change = changes.recv() => match change {
                Ok(change) => {
                    if matches!(change.kind, ChangeKind::Left(_)) {
                        let freed = table.peer_left(change.peer.peer_id);
                        if freed > 0 {
                            tracing::debug!(peer = %change.peer.peer_id, freed, "relay sessions freed: peer left");
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Some departures were missed: check every session.
                    let freed = table.retain_online(|p| registry.is_online(p));
                    tracing::debug!(freed, "relay swept after a lagged change feed");
                }
                Err(RecvError::Closed) => {
                    changes = registry.watch(None).changes;
                }
            },
            _ = expiry.tick() => {
                let freed = table.expire(Instant::now());
                if freed > 0 {
                    tracing::debug!(freed, sessions = table.len(), "idle relay sessions freed");
                }
            }
            _ = shutdown.recv() => break,
        }
    }
    let stats = table.stats();
    tracing::info!(
        forwarded = stats.forwarded,
        dropped_unroutable = stats.dropped_unroutable,
        dropped_rate = stats.dropped_rate,
        "UDP (STUN + relay) stopped"
    );
}

/// What one datagram from `from` makes the server send.
fn handle(
    bytes: &[u8],
    from: SocketAddr,
    registry: &PeerRegistry,
    table: &mut RelayTable,
) -> Vec<Outgoing> {
    match classify(bytes) {
        DatagramKind::Stun => match stun::answer(bytes, from) {
            Ok(answer) => vec![(from, answer)],
            Err(why) => {
                tracing::trace!(%from, %why, "STUN datagram dropped");
                Vec::new()
            }
        },
        DatagramKind::Relay => relay(bytes, from, registry, table),
        DatagramKind::Other => {
            tracing::trace!(%from, len = bytes.len(), "unknown UDP datagram dropped");
            Vec::new()
        }
    }
}

fn relay(
    bytes: &[u8],
    from: SocketAddr,
    registry: &PeerRegistry,
    table: &mut RelayTable,
) -> Vec<Outgoing> {
    let frame = match RelayFrame::decode(bytes) {
        Ok(frame) => frame,
        Err(err) => {
            tracing::trace!(%from, %err, "malformed relay frame dropped");
            return Vec::new();
        }
    };
    let now = Instant::now();
    let refuse = |target, code: RefuseCode| {
        vec![(
            from,
            RelayFrame::Refused {
                target,
                code: code as u8,
            }
            .to_bytes(),
        )]
    };
    match frame {
        RelayFrame::Bind {
            peer_id,
            token,
            target,
        } => {
            if registry.verify_online(&peer_id, &token).is_err() {
                return refuse(target, RefuseCode::Unauthorized);
            }
            if !registry.is_online(&target) {
                return refuse(target, RefuseCode::TargetOffline);
            }
            match table.bind(peer_id, target, from, now) {
                Ok(out) => out,
                Err(code) => refuse(target, code),
            }
        }
        RelayFrame::Release {
            peer_id,
            token,
            target,
        } => {
            // No reply either way: a RELEASE is fire-and-forget.
            if registry.verify_online(&peer_id, &token).is_ok() {
                table.release(peer_id, target);
            }
            Vec::new()
        }
        RelayFrame::Data { channel, payload } => table
            .data(channel, payload, from, now)
            .into_iter()
            .collect(),
        // Server-to-peer frames sent to the server: ignored.
        RelayFrame::Bound { .. } | RelayFrame::Refused { .. } => Vec::new(),
    }
}
