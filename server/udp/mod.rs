//! The server's UDP port: STUN Binding answers and the relay, on one
//! socket, demultiplexed by the first byte of each datagram (see
//! [`p2pchat::datagram::classify`]).
//!
//! One task owns the socket and the relay table: it answers STUN
//! ([`stun`], at most `--stun-rate` answers a second per source:
//! [`stun_limit`]), authenticates relay BIND/RELEASE frames with the senders'
//! relay keys ([`keys`]) and admits them against the store ([`admission`]),
//! forwards DATA through the table ([`relay`]), frees sessions (and
//! forgets keys) of peers that leave the store (its change feed) and
//! sessions that idle out, and stops on the server's shutdown signal.

pub mod admission;
mod bucket;
pub mod keys;
pub mod relay;
pub mod stun;
pub mod stun_limit;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::net::shutdown::Shutdown;
use crate::store::{ChangeKind, PeerStore, WatchEvent, WatchStream};
use p2pchat::datagram::{DatagramKind, classify};
use p2pchat::proto::relay_frame::{Claim, ClaimKind, MAX_FRAME_BYTES, RefuseCode, RelayFrame};
use relay::{Denied, Outgoing, RelayTable};
use stun_limit::StunLimiter;

pub use keys::{KeyedStore, RelayKeys};
pub use relay::RelayLimits;

/// How often idle relay sessions are looked for.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Binds the UDP socket (with SO_REUSEADDR like the TCP listener, so a
/// restarted server gets its port back at once).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Serves STUN and the relay on `socket` until `shutdown` fires. `keys` are
/// the relay keys `store` (a [`KeyedStore`]) learns at registration.
pub async fn run(
    socket: UdpSocket,
    store: Arc<dyn PeerStore>,
    keys: RelayKeys,
    limits: RelayLimits,
    mut shutdown: Shutdown,
) {
    let mut table = RelayTable::new(limits);
    let mut stun_rate = StunLimiter::new(limits.stun_rate, Instant::now());
    let mut departures = follow(&*store).await;
    let mut expiry = tokio::time::interval(EXPIRY_TICK);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One byte more than the largest frame, so an oversized one is seen.
    let mut buf = vec![0u8; MAX_FRAME_BYTES + 1];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    for (to, bytes) in handle(&buf[..n], from, &*store, &keys, &mut table, &mut stun_rate).await {
                        if let Err(err) = socket.send_to(&bytes, to).await {
                            tracing::debug!(%to, %err, "UDP send failed");
                        }
                    }
                }
                // ICMP errors from earlier sends surface here on Linux; the
                // socket itself is fine.
                Err(err) => tracing::debug!(%err, "UDP receive error"),
            },
            event = next_event(&mut departures) => match event {
                Some(event) => apply(&mut table, &keys, event),
                // The feed ended; follow it again at the next tick.
                None => departures = None,
            },
            _ = expiry.tick() => {
                let freed = table.expire(Instant::now());
                if freed > 0 {
                    tracing::debug!(freed, sessions = table.len(), "idle relay sessions freed");
                }
                if departures.is_none() {
                    departures = follow(&*store).await;
                }
            }
            _ = shutdown.recv() => break,
        }
    }
    let stats = table.stats();
    let stun_stats = stun_rate.stats();
    tracing::info!(
        stun_answered = stun_stats.answered,
        stun_limited = stun_stats.limited,
        forwarded = stats.forwarded,
        dropped_unroutable = stats.dropped_unroutable,
        dropped_rate = stats.dropped_rate,
        dropped_unauthenticated = stats.dropped_unauthenticated,
        dropped_replayed = stats.dropped_replayed,
        refusals_suppressed = stats.refusals_suppressed,
        challenges_suppressed = stats.challenges_suppressed,
        "UDP (STUN + relay) stopped"
    );
}

/// Follows the store's change feed, or `None` when it cannot be watched now.
async fn follow(store: &dyn PeerStore) -> Option<WatchStream> {
    match store.watch(None).await {
        Ok(feed) => Some(feed),
        Err(err) => {
            tracing::warn!(%err, "relay cannot follow the store; retrying");
            None
        }
    }
}

/// The next event of the feed; never resolves while there is none.
async fn next_event(feed: &mut Option<WatchStream>) -> Option<WatchEvent> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

/// Frees the relay sessions, and forgets the relay keys, of peers that
/// left.
fn apply(table: &mut RelayTable, keys: &RelayKeys, event: WatchEvent) {
    match event {
        WatchEvent::Change(change) => {
            if matches!(change.kind, ChangeKind::Left(_)) {
                keys.left(&change.peer.peer_id, change.revision);
                let freed = table.peer_left(change.peer.peer_id);
                if freed > 0 {
                    tracing::debug!(peer = %change.peer.peer_id, freed, "relay sessions freed: peer left");
                }
            }
        }
        WatchEvent::Snapshot {
            peers, revision, ..
        } => {
            // A (re)start or a lagged feed: some departures may have been
            // missed, so check every session and key against the online
            // peers.
            let online = |p: &PeerId| peers.binary_search_by(|r| r.peer_id.cmp(p)).is_ok();
            let freed = table.retain_online(online);
            let forgotten = keys.retain_online(online, revision);
            tracing::debug!(
                freed,
                forgotten,
                "relay swept against a snapshot of the store"
            );
        }
    }
}

/// What one datagram from `from` makes the server send.
async fn handle(
    bytes: &[u8],
    from: SocketAddr,
    store: &dyn PeerStore,
    keys: &RelayKeys,
    table: &mut RelayTable,
    stun_rate: &mut StunLimiter,
) -> Vec<Outgoing> {
    match classify(bytes) {
        // Only a request that would be answered is charged, so garbage
        // sent in a source's name does not use up its answers.
        DatagramKind::Stun => match stun::answer(bytes, from) {
            Ok(answer) if stun_rate.allow(from.ip(), Instant::now()) => vec![(from, answer)],
            Ok(_) => {
                tracing::trace!(%from, "STUN answer over the source's rate dropped");
                Vec::new()
            }
            Err(why) => {
                tracing::trace!(%from, %why, "STUN datagram dropped");
                Vec::new()
            }
        },
        DatagramKind::Relay => relay(bytes, from, store, keys, table).await,
        DatagramKind::Sealed | DatagramKind::Other => {
            tracing::trace!(%from, len = bytes.len(), "unknown UDP datagram dropped");
            Vec::new()
        }
    }
}

async fn relay(
    bytes: &[u8],
    from: SocketAddr,
    store: &dyn PeerStore,
    keys: &RelayKeys,
    table: &mut RelayTable,
) -> Vec<Outgoing> {
    let frame = match RelayFrame::decode(bytes) {
        Ok(frame) => frame,
        Err(err) => {
            tracing::trace!(%from, %err, "malformed relay frame dropped");
            return Vec::new();
        }
    };
    if let Some((kind, claim)) = frame.claim() {
        return claimed(kind, claim, from, store, keys, table).await;
    }
    match frame {
        RelayFrame::Data { channel, payload } => table
            .data(channel, payload, from, Instant::now())
            .into_iter()
            .collect(),
        // Server-to-peer frames sent to the server: ignored.
        _ => Vec::new(),
    }
}

/// A BIND or RELEASE. Nothing is ever sent back unless it authenticates and
/// is fresh: an unknown sender, a bad MAC or a replayed counter is dropped
/// without a word, and REFUSED is capped overall, so the port is no
/// reflector.
async fn claimed(
    kind: ClaimKind,
    claim: &Claim,
    from: SocketAddr,
    store: &dyn PeerStore,
    keys: &RelayKeys,
    table: &mut RelayTable,
) -> Vec<Outgoing> {
    let Some(auth) = admission::authenticate(keys, kind, claim) else {
        table.count_unauthenticated();
        tracing::trace!(%from, ?kind, "unauthenticated relay frame dropped");
        return Vec::new();
    };
    let (peer, target) = (auth.peer, auth.target);
    // Before any store lookup: a replay costs nothing more.
    if !table.check_fresh(peer, target, claim.counter) {
        tracing::debug!(%from, %peer, ?kind, "replayed relay frame dropped");
        return Vec::new();
    }
    if kind == ClaimKind::Release {
        // No reply either way: a RELEASE is fire-and-forget.
        table.release(peer, target, claim.channel, claim.counter);
        return Vec::new();
    }
    let outcome = match admission::admit_bind(store, &peer, &target).await {
        Ok(()) => table.bind(
            peer,
            target,
            from,
            claim.channel,
            claim.counter,
            Instant::now(),
        ),
        Err(code) => Err(Denied::Refuse(code)),
    };
    match outcome {
        Ok(out) => out,
        Err(Denied::Refuse(code)) if table.may_refuse(Instant::now()) => refused(from, claim, code),
        Err(_) => Vec::new(),
    }
}

fn refused(to: SocketAddr, claim: &Claim, code: RefuseCode) -> Vec<Outgoing> {
    vec![(
        to,
        RelayFrame::Refused {
            target: claim.target,
            code: code as u8,
        }
        .to_bytes(),
    )]
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use p2pchat::proto::relay_frame::{NO_CHANNEL, RelayKey};

    use super::*;
    use crate::store::{MemoryStore, RegisteredVia, Registration, StoreConfig};

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// 10,000 pseudo-random relay datagrams (noise behind the `PR` magic,
    /// and real BINDs of registered peers with bytes overwritten) through
    /// the same handler the socket loop uses: nothing panics, and nothing
    /// that does not authenticate gets an answer.
    #[tokio::test]
    async fn pseudo_random_relay_datagrams_never_panic_nor_get_answers() {
        let (memory, _guard) = MemoryStore::new(StoreConfig::default());
        let keys = RelayKeys::new();
        let store = KeyedStore::new(Arc::new(memory), keys.clone());
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let done = store
                .register(Registration {
                    peer_id: PeerId::random(),
                    username: None,
                    udp_port: 4000,
                    endpoints: Vec::new(),
                    token: None,
                    observed_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    via: RegisteredVia::Grpc,
                    public_key: None,
                })
                .await
                .unwrap();
            ids.push(done.peer.peer_id);
            tokens.push(done.token);
        }
        let key = RelayKey::from_token(&tokens[0]);
        let valid =
            RelayFrame::bind(&key, *ids[0].as_uuid(), *ids[1].as_uuid(), NO_CHANNEL, 5).to_bytes();
        let mut table = RelayTable::new(RelayLimits::default());
        let mut stun_rate = StunLimiter::new(1, Instant::now());
        let from = SocketAddr::from(([198, 51, 100, 7], 4242));
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for round in 0..10_000u32 {
            let bytes = if round % 2 == 0 {
                let len = (rng.next() % (MAX_FRAME_BYTES as u64 + 8)) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                for (i, head) in b"PR\x02".iter().enumerate() {
                    if let Some(byte) = b.get_mut(i) {
                        *byte = *head;
                    }
                }
                if let Some(kind) = b.get_mut(3) {
                    *kind = (rng.next() % 6) as u8;
                }
                b
            } else {
                let mut b = valid.clone();
                let at = (rng.next() % b.len() as u64) as usize;
                let old = b[at];
                b[at] = old ^ (1 + (rng.next() % 255) as u8);
                b
            };
            let out = handle(&bytes, from, &store, &keys, &mut table, &mut stun_rate).await;
            assert!(out.is_empty(), "round {round} answered: {out:?}");
        }
        assert!(table.is_empty());
        assert!(table.stats().dropped_unauthenticated > 4_000);
        // The untouched BIND is answered (the sweep did reach the relay).
        let out = handle(&valid, from, &store, &keys, &mut table, &mut stun_rate).await;
        assert_eq!(out.len(), 1);
    }
}
