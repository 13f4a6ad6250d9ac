//! How an outgoing session starts: probing right away, and for a session
//! a peer asked for (a connect request) with its probing capped from the
//! first probe on.

use std::net::SocketAddr;

use p2pchat::PeerId;
use tokio::time::Instant;

use super::{Protection, Role, Session, SessionConfig, SessionEvent};

impl Session {
    /// A session about to connect to `remote_id` (with [`Role::Initiate`]
    /// its probes carry the first handshake message).
    fn prepare(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        candidates: Vec<SocketAddr>,
        protection: Protection,
        now: Instant,
    ) -> Session {
        let initiate = match &protection {
            Protection::Noise {
                role: Role::Initiate(key),
                ..
            } => Some(*key),
            _ => None,
        };
        let mut s = Session::blank(
            config, local_id, local_name, remote_id, candidates, protection, now,
        );
        if let Some(key) = initiate {
            s.start_handshake(key);
        }
        s
    }

    /// Starts connecting to `remote_id`: probes every candidate address at
    /// once, right away (the first round is in the returned actions).
    pub fn connect(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        candidates: Vec<SocketAddr>,
        protection: Protection,
        now: Instant,
    ) -> Session {
        let s = Session::prepare(
            config, local_id, local_name, remote_id, candidates, protection, now,
        );
        s.begin(now)
    }

    /// As [`Session::connect`], for a session a peer asked for (a connect
    /// request): its endpoints are the caller's word, so probing them is
    /// capped from the first probe on (see
    /// [`MAX_UNSOLICITED_CANDIDATES`](super::MAX_UNSOLICITED_CANDIDATES), [`MAX_PROBES_PER_CANDIDATE`](super::MAX_PROBES_PER_CANDIDATE) and
    /// [`MAX_PROBE_HELLO_BYTES`](super::MAX_PROBE_HELLO_BYTES)).
    pub fn connect_requested(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        candidates: Vec<SocketAddr>,
        protection: Protection,
        now: Instant,
    ) -> Session {
        let mut s = Session::prepare(
            config, local_id, local_name, remote_id, candidates, protection, now,
        );
        s.path.cap_unsolicited();
        s.begin(now)
    }

    fn begin(mut self, now: Instant) -> Session {
        self.emit(SessionEvent::Probing { attempt: 1 });
        self.poll_timers(now);
        self
    }
}
