//! The peer's side of the server relay: which peers we relay with, their
//! channels, when to (re-)send BIND, and the wrapping of chat datagrams
//! into DATA frames. Pure state: the engine does the sending.
//!
//! The frame format is the contract in [`p2pchat::proto::relay_frame`]. A
//! binding is asked for when probing finds no direct path in time; both
//! peers ask, and the server pairs them. It is kept (refreshed) for the life
//! of the session, so a session that upgraded to a direct path can fall
//! back at once if that path dies.
//!
//! BIND and RELEASE carry a MAC under our relay key (derived from the
//! session token, which never goes on the wire), a counter that only grows
//! (started at the Unix time in milliseconds, one more per frame, for all
//! bindings with this server), and the channel of the last BOUND as an
//! echo. A BOUND with a new channel is the relay's challenge (a new binding,
//! or the relay saw us at a new address): it is echoed at once, and the
//! relay forwards to us once the echo arrived from the same address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use p2pchat::proto::relay_frame::{MAX_RELAY_PAYLOAD, NO_CHANNEL, RelayFrame, RelayKey};
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
    /// The channel of the last BOUND: ours in DATA, and the echo in BIND.
    channel: Option<u64>,
    ready: bool,
    next_bind: Instant,
    /// A new channel was echoed at once and the relay has not answered
    /// with that channel yet: a further new channel waits for the retry
    /// pace (no BIND storm if the relay keeps challenging).
    echo_pending: bool,
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

/// Our identity towards the relay: our id and the relay key derived from
/// our session token (the token itself is not kept here).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Our peer id.
    pub peer_id: PeerId,
    /// The MAC key of our BIND and RELEASE frames.
    pub key: RelayKey,
}

impl Credentials {
    /// Derives the relay key from `token`.
    pub fn new(peer_id: PeerId, token: &SessionToken) -> Credentials {
        Credentials {
            peer_id,
            key: RelayKey::from_token(token),
        }
    }
}

/// The relay bindings of one peer. See the module docs.
#[derive(Debug)]
pub struct RelayClient {
    server: SocketAddr,
    bindings: HashMap<PeerId, Binding>,
    /// The counter of our next BIND or RELEASE to this server.
    counter: u64,
}

/// The current Unix time in milliseconds (0 before 1970: the counter then
/// still counts up from there).
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RelayClient {
    /// A client for the relay at `server`, its counter starting at the
    /// current Unix time in milliseconds (so a restarted peer goes on above
    /// the counters it used before, as long as its clock did not go back).
    pub fn new(server: SocketAddr) -> RelayClient {
        RelayClient::with_counter(server, unix_millis())
    }

    /// A client whose first frame carries counter `first`.
    pub fn with_counter(server: SocketAddr, first: u64) -> RelayClient {
        RelayClient {
            server,
            bindings: HashMap::new(),
            counter: first,
        }
    }

    /// The counter the next BIND or RELEASE will carry.
    pub fn next_counter(&self) -> u64 {
        self.counter
    }

    fn take_counter(counter: &mut u64) -> u64 {
        let this = *counter;
        // 2^64 milliseconds are far away; saturating keeps it from ever
        // wrapping to small values (the relay would drop those).
        *counter = counter.saturating_add(1);
        this
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
                echo_pending: false,
            },
        );
        true
    }

    /// Whether a binding with `peer` is ready.
    pub fn is_ready(&self, peer: PeerId) -> bool {
        self.bindings.get(&peer).is_some_and(|b| b.ready)
    }

    /// Forgets the binding with `peer`; returns the RELEASE frame to send
    /// (none while the relay never gave us a channel: it would not accept
    /// one, and the binding idles out).
    pub fn release(&mut self, peer: PeerId, creds: &Credentials) -> Option<Vec<u8>> {
        let channel = self.bindings.remove(&peer)?.channel?;
        Some(
            RelayFrame::release(
                &creds.key,
                *creds.peer_id.as_uuid(),
                *peer.as_uuid(),
                channel,
                RelayClient::take_counter(&mut self.counter),
            )
            .to_bytes(),
        )
    }

    /// BIND frames due at `now`.
    pub fn poll(&mut self, now: Instant, creds: &Credentials) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (peer, b) in self.bindings.iter_mut() {
            if now < b.next_bind {
                continue;
            }
            frames.push(
                RelayFrame::bind(
                    &creds.key,
                    *creds.peer_id.as_uuid(),
                    *peer.as_uuid(),
                    b.channel.unwrap_or(NO_CHANNEL),
                    RelayClient::take_counter(&mut self.counter),
                )
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
                if b.channel != Some(channel) {
                    // A challenge (a new binding, the relay restarted or saw
                    // us at a new address): echo it now, or at the retry
                    // pace if the last new channel is still unanswered.
                    b.next_bind = if b.echo_pending {
                        now + BIND_RETRY
                    } else {
                        now
                    };
                    b.echo_pending = true;
                } else {
                    b.echo_pending = false;
                    if ready != b.ready {
                        // Refresh on the schedule of the new state.
                        b.next_bind = now
                            + if ready {
                                BIND_READY_REFRESH
                            } else {
                                BIND_WAITING_REFRESH
                            };
                    }
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
                        b.echo_pending = false;
                        // Back off: the condition (e.g. the peer is not
                        // registered yet) may clear.
                        b.next_bind = now + BIND_READY_REFRESH;
                        RelayInput::Refused(peer, code)
                    }
                    None => RelayInput::Ignored,
                }
            }
            RelayFrame::Bind(_) | RelayFrame::Release(_) => RelayInput::Ignored,
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
    use p2pchat::proto::relay_frame::{Claim, ClaimKind};
    use uuid::Uuid;

    const PEER: PeerId = PeerId::from_uuid(uuid::uuid!("bbbbbbbb-0000-4000-8000-000000000002"));
    const ME: PeerId = PeerId::from_uuid(uuid::uuid!("aaaaaaaa-0000-4000-8000-000000000001"));
    const TOKEN: [u8; 32] = [
        0x8e, 0x21, 0x5c, 0x09, 0xf3, 0x44, 0xa7, 0x10, 0x6b, 0xd2, 0x3e, 0x91, 0x07, 0xcc, 0x58,
        0x2f, 0xb4, 0x60, 0x1d, 0xe9, 0x72, 0x0a, 0x95, 0x3c, 0xef, 0x18, 0x46, 0xd0, 0x2b, 0x87,
        0x63, 0xfa,
    ];

    fn creds() -> Credentials {
        Credentials::new(ME, &SessionToken::from_bytes(TOKEN))
    }

    fn client() -> RelayClient {
        RelayClient::with_counter("192.0.2.1:3478".parse().unwrap(), 1000)
    }

    fn bound(channel: u64, ready: bool) -> Vec<u8> {
        RelayFrame::Bound {
            target: *PEER.as_uuid(),
            channel,
            ready,
        }
        .to_bytes()
    }

    /// The claim of a frame we sent, checked to verify under our key.
    fn sent(bytes: &[u8]) -> (ClaimKind, Claim) {
        let frame = RelayFrame::decode(bytes).expect("a relay frame");
        let (kind, claim) = frame.claim().expect("BIND or RELEASE");
        assert!(claim.verify(kind, &creds().key), "MAC under our key");
        assert_eq!(claim.peer_id, *ME.as_uuid());
        (kind, claim.clone())
    }

    #[test]
    fn bind_schedule_follows_the_binding_state_on_the_callers_clock() {
        let t0 = Instant::now();
        let mut r = client();
        assert!(r.request(PEER, t0));
        let first = r.poll(t0, &creds());
        assert_eq!(first.len(), 1);
        let (kind, claim) = sent(&first[0]);
        assert_eq!(kind, ClaimKind::Bind);
        assert_eq!((claim.channel, claim.counter), (NO_CHANNEL, 1000));
        assert_eq!(claim.target, *PEER.as_uuid());
        assert_eq!(r.next_deadline(), Some(t0 + BIND_RETRY));
        // The relay's challenge: echoed at once.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.on_frame(&bound(9, false), t1), RelayInput::Waiting(PEER));
        assert_eq!(r.next_deadline(), Some(t1));
        let echo = r.poll(t1, &creds());
        assert_eq!(echo.len(), 1);
        let (_, claim) = sent(&echo[0]);
        assert_eq!((claim.channel, claim.counter), (9, 1001));
        // Confirmed but waiting: refresh on the waiting schedule.
        assert_eq!(r.next_deadline(), Some(t1 + BIND_WAITING_REFRESH));
        assert_eq!(
            r.on_frame(&bound(9, false), t1 + Duration::from_millis(1)),
            RelayInput::Waiting(PEER)
        );
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
        let refresh = r.poll(t2 + BIND_READY_REFRESH, &creds());
        assert_eq!(sent(&refresh[0]).1.channel, 9);
        let refused = RelayFrame::Refused {
            target: *PEER.as_uuid(),
            code: 3,
        }
        .to_bytes();
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(r.on_frame(&refused, t3), RelayInput::Refused(PEER, 3));
        assert_eq!(r.next_deadline(), Some(t3 + BIND_READY_REFRESH));
        assert!(!r.is_ready(PEER));
        let after = r.poll(t3 + BIND_READY_REFRESH, &creds());
        assert_eq!(sent(&after[0]).1.channel, NO_CHANNEL, "channel forgotten");
    }

    #[test]
    fn a_new_channel_while_ready_is_echoed_and_pauses_wrapping() {
        // The relay saw us at a new address (our NAT moved): it challenges
        // with a new channel and forwards again after our echo.
        let t0 = Instant::now();
        let mut r = client();
        r.request(PEER, t0);
        r.poll(t0, &creds());
        r.on_frame(&bound(9, false), t0);
        r.poll(t0, &creds());
        assert_eq!(r.on_frame(&bound(9, true), t0), RelayInput::Ready(PEER));
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(r.on_frame(&bound(11, false), t1), RelayInput::Waiting(PEER));
        assert!(r.wrap(PEER, b"x").is_none(), "not forwarded meanwhile");
        assert_eq!(r.next_deadline(), Some(t1));
        let echo = r.poll(t1, &creds());
        assert_eq!(sent(&echo[0]).1.channel, 11);
        // Another new channel before the echo was answered: the retry pace.
        assert_eq!(r.on_frame(&bound(12, false), t1), RelayInput::Waiting(PEER));
        assert_eq!(r.next_deadline(), Some(t1 + BIND_RETRY));
        r.poll(t1 + BIND_RETRY, &creds());
        assert_eq!(
            r.on_frame(&bound(12, true), t1 + BIND_RETRY),
            RelayInput::Ready(PEER)
        );
        let Some(data) = r.wrap(PEER, b"x") else {
            panic!("ready again")
        };
        assert!(matches!(
            RelayFrame::decode(&data),
            Ok(RelayFrame::Data { channel: 12, .. })
        ));
        // The next new channel is echoed at once again.
        let t2 = t1 + Duration::from_secs(20);
        r.on_frame(&bound(13, false), t2);
        assert_eq!(r.next_deadline(), Some(t2));
    }

    #[test]
    fn counters_only_grow_across_bindings_and_releases() {
        let now = Instant::now();
        let before = unix_millis();
        let fresh = RelayClient::new("192.0.2.1:3478".parse().unwrap());
        assert!(
            fresh.next_counter() >= before,
            "starts at Unix milliseconds"
        );
        let mut r = client();
        let others: Vec<PeerId> = (0..3)
            .map(|i| PeerId::from_uuid(Uuid::from_u128(50 + i)))
            .collect();
        for p in &others {
            r.request(*p, now);
        }
        let mut counters: Vec<u64> = Vec::new();
        for round in 0..3 {
            let at = now + BIND_RETRY * round;
            for bytes in r.poll(at, &creds()) {
                counters.push(sent(&bytes).1.counter);
            }
        }
        for p in &others {
            let channel = 7 + p.as_uuid().as_u128() as u64;
            r.on_frame(
                &RelayFrame::Bound {
                    target: *p.as_uuid(),
                    channel,
                    ready: true,
                }
                .to_bytes(),
                now,
            );
            let release = r.release(*p, &creds()).expect("RELEASE");
            let (kind, claim) = sent(&release);
            assert_eq!(kind, ClaimKind::Release);
            assert_eq!(claim.channel, channel);
            counters.push(claim.counter);
        }
        assert_eq!(counters.len(), 12);
        assert!(counters.windows(2).all(|w| w[0] < w[1]), "{counters:?}");
        assert_eq!(counters[0], 1000);
    }

    #[test]
    fn the_token_never_leaves_in_any_frame() {
        let token = SessionToken::from_bytes(TOKEN);
        let hex = token.to_hex();
        let now = Instant::now();
        let mut r = client();
        r.request(PEER, now);
        let mut frames = r.poll(now, &creds());
        r.on_frame(&bound(0x0102_0304_0506_0708, false), now);
        frames.extend(r.poll(now, &creds()));
        r.on_frame(&bound(0x0102_0304_0506_0708, true), now);
        frames.extend(r.poll(now + BIND_READY_REFRESH, &creds()));
        frames.extend(r.wrap(PEER, b"chat"));
        frames.extend(r.release(PEER, &creds()));
        assert_eq!(frames.len(), 5);
        for bytes in &frames {
            for needle in [&TOKEN[..], &TOKEN[..8], &TOKEN[8..16], &TOKEN[24..]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "token bytes in {bytes:02x?}"
                );
            }
            assert!(
                !bytes.windows(16).any(|w| hex
                    .as_bytes()
                    .windows(16)
                    .any(|h| h.eq_ignore_ascii_case(w))),
                "token hex in {bytes:02x?}"
            );
        }
        // And the credentials print no secret.
        assert!(!format!("{:?}", creds()).contains(&hex[..8]));
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
        assert!(r.release(PEER, &creds()).is_some());
        assert!(r.release(PEER, &creds()).is_none());
        // Without a channel there is nothing the relay would accept.
        r.request(PEER, now);
        assert!(r.release(PEER, &creds()).is_none());
        assert!(!r.is_ready(PEER));
    }
}
