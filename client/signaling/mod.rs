//! The tonic client side of the signaling contract.
//!
//! [`Signaling::register`] performs the first registration (a few attempts
//! with backoff, so a server that is not up yet fails cleanly). Our peer id
//! is our key's ([`Identity::peer_id`]): every registration that is not a
//! plain lease refresh (the first one, and each after the server was lost)
//! asks for a challenge (`GetChallenge`) and signs it, so the server knows
//! we hold the key; refreshes carry only the session token. Afterwards
//! [`Signaling::run`] keeps the registration alive in the background: it
//! holds the inbox (connect requests; keeps the lease alive) and the
//! WatchPeers stream (live peer list), refreshes the lease, and when the
//! server goes away it keeps retrying, re-registers and resumes the watch,
//! reporting everything as [`SignalEvent`]s. The chat itself never waits on
//! the server.
//!
//! This file holds the [`Signaling`] handle, registration and the retry
//! loop; the rest lives in files named after their concern:
//! * `peer.rs`: [`RemotePeer`], converted from the proto at this edge, and
//!   [`PeerKey`], whether the key the server gave for it owns its id;
//! * `error.rs`: [`SignalingError`], refusals told apart from outages;
//! * `inbox.rs`: the inbox stream and RequestConnect (rendezvous);
//! * [`tls`]: TLS for `https://` servers, and which certificates it trusts;
//! * `watch.rs`: the WatchPeers stream, its snapshots, changes and resume.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use p2pchat::keys::registration_message;
use p2pchat::proto;
use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat::{PeerId, PublicKey, SessionToken};

use crate::identity::Identity;

mod error;
mod inbox;
mod peer;
pub mod tls;
mod watch;

pub use error::{SignalingError, brief};
use error::{is_refusal, refusal_text};
pub use peer::{PeerKey, RemotePeer};
pub use tls::{CaBundle, ServerTrust};
use watch::PeerWatch;

/// Registration attempts at start-up before giving up.
pub const REGISTER_ATTEMPTS: u32 = 3;

/// Pause after the first failed start-up attempt; doubles each time.
pub const REGISTER_BACKOFF: Duration = Duration::from_millis(300);

/// Longest pause between two reconnect attempts after the server was lost.
pub const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// Time limit of one unary call (challenge, register, connect request,
/// unregister).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Time limit to open the TCP/HTTP2 connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most peers kept from one snapshot; the rest are ignored (a peer list in
/// a chat client has no use for more).
pub const MAX_DIRECTORY_PEERS: usize = 10_000;

/// The result of a successful registration.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterReply {
    /// The username as the server stored it.
    pub username: String,
    /// The IP the server saw us come from.
    pub observed_ip: String,
    /// Lease length.
    pub lease: Duration,
    /// The server's STUN + relay UDP port (0: it offers none).
    pub udp_port: u16,
}

/// What the background task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalEvent {
    /// (Re-)registered; after a loss this means the server is back.
    Registered(RegisterReply),
    /// A complete list of online peers, replacing the previous one.
    Snapshot(Vec<RemotePeer>),
    /// A peer came online.
    Joined(RemotePeer),
    /// A peer's details changed.
    Updated(RemotePeer),
    /// A peer went offline.
    Left(RemotePeer),
    /// A peer asked to connect to us: probe its endpoints now.
    ConnectRequested {
        /// The caller.
        from: RemotePeer,
    },
    /// The server connection broke; the client keeps retrying.
    Lost {
        /// What went wrong.
        error: String,
    },
}

/// What we register with besides our key (which gives our peer id).
#[derive(Debug, Clone)]
pub struct Registration {
    /// Requested username (empty: the server picks `user_<id prefix>`).
    pub username: String,
    /// Our chat socket's port.
    pub udp_port: u16,
    /// Endpoints we know for ourselves (LAN addresses).
    pub endpoints: Vec<SocketAddr>,
}

/// Our server-reflexive address (from STUN), shared by the clones of a
/// [`Signaling`] so every later registration carries the current one.
type Reflexive = Arc<Mutex<Option<SocketAddr>>>;

/// Whether a Register call proves our key or only refreshes with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// GetChallenge, then sign it: first registration, and after the
    /// server was lost (it may have restarted, or our token been taken).
    Sign,
    /// The session token alone (lease refresh, new endpoints).
    TokenOnly,
}

/// A registered client. Cheap to clone; clones share the session token.
#[derive(Debug, Clone)]
pub struct Signaling {
    url: String,
    client: SignalingClient<Channel>,
    identity: Identity,
    registration: Registration,
    token: Arc<Mutex<String>>,
    reflexive: Reflexive,
}

impl Signaling {
    /// Connects and registers as `identity`'s peer id, proving the key,
    /// trying [`REGISTER_ATTEMPTS`] times with doubling backoff; an
    /// `https://` server must present a certificate the system trusts.
    pub async fn register(
        url: &str,
        identity: Identity,
        registration: Registration,
    ) -> Result<(Signaling, RegisterReply), SignalingError> {
        Self::register_with(url, &ServerTrust::default(), identity, registration).await
    }

    /// [`Signaling::register`], trusting `trust` for an `https://` server.
    pub async fn register_with(
        url: &str,
        trust: &ServerTrust,
        identity: Identity,
        registration: Registration,
    ) -> Result<(Signaling, RegisterReply), SignalingError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SignalingError::InvalidUrl {
                url: url.to_owned(),
                reason: "expected http://host:port or https://host:port".to_owned(),
            });
        }
        let invalid = |e: tonic::transport::Error| SignalingError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let endpoint = TonicEndpoint::from_shared(url.to_owned())
            .map_err(invalid)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let endpoint = tls::with_trust(endpoint, url, trust).map_err(invalid)?;
        // A lazy channel reconnects by itself on later calls after the server
        // comes back, which is what the background task relies on.
        let channel = endpoint.connect_lazy();
        let signaling = Signaling {
            url: url.to_owned(),
            client: SignalingClient::new(channel),
            identity,
            registration,
            token: Arc::new(Mutex::new(String::new())),
            reflexive: Arc::new(Mutex::new(None)),
        };
        let mut backoff = REGISTER_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=REGISTER_ATTEMPTS {
            match signaling.register_once(Proof::Sign).await {
                Ok(reg) => return Ok((signaling, reg)),
                Err(err) => {
                    last = tls::describe(brief(&err));
                    tracing::info!(attempt, error = %last, "registration failed");
                    if let SignalingError::Rpc(status) = &err
                        && is_refusal(status.code())
                    {
                        // The server answered: it is reachable, and asking
                        // again would get the same answer.
                        return Err(SignalingError::Refused {
                            url: url.to_owned(),
                            reason: refusal_text(status),
                        });
                    }
                }
            }
            if attempt < REGISTER_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(SignalingError::Unreachable {
            url: url.to_owned(),
            attempts: REGISTER_ATTEMPTS,
            last,
        })
    }

    /// Our peer id (our key's).
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Our public key, as the server hands it to other peers.
    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// Our session token (relay frames carry it); `None` before the first
    /// registration.
    pub fn session_token(&self) -> Option<SessionToken> {
        SessionToken::parse(&self.token()).ok()
    }

    /// The server URL's host, for reaching its UDP port.
    pub fn server_host(&self) -> Option<String> {
        tls::url_host(&self.url).map(str::to_owned)
    }

    /// Sets our server-reflexive address and registers again so peers get
    /// it (a refresh with our token: the server reports UPDATED).
    pub async fn set_reflexive(&self, addr: Option<SocketAddr>) -> Result<(), SignalingError> {
        match self.reflexive.lock() {
            Ok(mut r) => *r = addr,
            Err(poisoned) => *poisoned.into_inner() = addr,
        }
        self.register_once(Proof::TokenOnly).await.map(|_| ())
    }

    fn reflexive(&self) -> Option<SocketAddr> {
        self.reflexive
            .lock()
            .map(|r| *r)
            .unwrap_or_else(|poisoned| *poisoned.into_inner())
    }

    fn token(&self) -> String {
        self.token
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn set_token(&self, token: String) {
        match self.token.lock() {
            Ok(mut t) => *t = token,
            Err(poisoned) => *poisoned.into_inner() = token,
        }
    }

    /// A fresh challenge from the server, to sign.
    async fn challenge(&self) -> Result<Vec<u8>, SignalingError> {
        let mut client = self.client.clone();
        let response = tokio::time::timeout(
            RPC_TIMEOUT,
            client.get_challenge(proto::GetChallengeRequest {}),
        )
        .await
        .map_err(|_| SignalingError::Timeout)??
        .into_inner();
        Ok(response.challenge)
    }

    /// One Register call: with a fresh proof of our key (and our token, if
    /// we have one: the server keeps it when it is still valid), or a
    /// refresh with the token alone.
    async fn register_once(&self, proof: Proof) -> Result<RegisterReply, SignalingError> {
        let username = self.registration.username.clone();
        let (public_key, challenge, signature) = match proof {
            Proof::TokenOnly => Default::default(),
            Proof::Sign => {
                let challenge = self.challenge().await?;
                let key = self.identity.public_key();
                let signature = self
                    .identity
                    .sign(&registration_message(&challenge, &key, &username));
                (key.as_bytes().to_vec(), challenge, signature.to_vec())
            }
        };
        let request = proto::RegisterRequest {
            peer_id: self.peer_id().to_string(),
            username,
            udp_port: u32::from(self.registration.udp_port),
            endpoints: self
                .registration
                .endpoints
                .iter()
                .map(|a| proto::Endpoint {
                    ip: a.ip().to_string(),
                    port: u32::from(a.port()),
                    kind: proto::EndpointKind::Local as i32,
                })
                .chain(self.reflexive().map(|a| proto::Endpoint {
                    ip: a.ip().to_string(),
                    port: u32::from(a.port()),
                    kind: proto::EndpointKind::ServerReflexive as i32,
                }))
                .collect(),
            session_token: self.token(),
            public_key,
            challenge,
            signature,
        };
        let mut client = self.client.clone();
        let response = tokio::time::timeout(RPC_TIMEOUT, client.register(request))
            .await
            .map_err(|_| SignalingError::Timeout)??
            .into_inner();
        self.set_token(response.session_token);
        let username = response
            .peer
            .as_ref()
            .map(|p| p.username.clone())
            .unwrap_or_else(|| self.registration.username.clone());
        Ok(RegisterReply {
            username,
            observed_ip: response.observed_ip,
            lease: Duration::from_secs(u64::from(response.lease_seconds.max(1))),
            udp_port: u16::try_from(response.udp_port).unwrap_or(0),
        })
    }

    /// Removes our registration (clean exit). Best effort, bounded in time.
    pub async fn unregister(&self) -> Result<(), SignalingError> {
        let request = proto::UnregisterRequest {
            peer_id: self.peer_id().to_string(),
            session_token: self.token(),
        };
        let mut client = self.client.clone();
        tokio::time::timeout(RPC_TIMEOUT, client.unregister(request))
            .await
            .map_err(|_| SignalingError::Timeout)??;
        Ok(())
    }

    /// Keeps the registration, inbox and watch alive until `stop` turns true,
    /// reporting to `events`. Returns when stopped or when `events` closes.
    pub async fn run(
        self,
        lease: Duration,
        events: mpsc::Sender<SignalEvent>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut watch = PeerWatch::default();
        let mut lease = lease;
        loop {
            let outcome = tokio::select! {
                r = self.serve(lease, &mut watch, &events) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            if events.is_closed() {
                return;
            }
            let error = match outcome {
                Ok(()) => "server closed the stream".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(%error, "lost the signaling server; reconnecting");
            if events.send(SignalEvent::Lost { error }).await.is_err() {
                return;
            }
            let mut backoff = REGISTER_BACKOFF;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                // The server may have restarted (our token is unknown) or
                // another holder of our key taken over: prove the key again.
                match self.register_once(Proof::Sign).await {
                    Ok(reg) => {
                        tracing::info!(url = %self.url, "re-registered with the signaling server");
                        lease = reg.lease;
                        if events.send(SignalEvent::Registered(reg)).await.is_err() {
                            return;
                        }
                        break;
                    }
                    Err(err) => {
                        tracing::debug!(%err, "reconnect attempt failed");
                        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                    }
                }
            }
        }
    }

    /// One connected period: inbox + watch + lease refresh. Returns when any
    /// of them fails or ends, or when `events` closes.
    async fn serve(
        &self,
        lease: Duration,
        watch: &mut PeerWatch,
        events: &mpsc::Sender<SignalEvent>,
    ) -> Result<(), SignalingError> {
        let mut inbox = self.open_inbox().await?;
        let mut peers = watch.open(&self.client).await?;
        // The inbox keeps the lease alive; refreshing anyway at a third of
        // the lease also notices a half-dead connection early.
        let mut refresh = tokio::time::interval(lease / 3);
        refresh.tick().await;
        loop {
            let event = tokio::select! {
                msg = inbox.message() => match msg? {
                    None => return Ok(()),
                    Some(m) => inbox::inbox_event(m),
                },
                msg = peers.message() => match msg? {
                    None => return Ok(()),
                    Some(m) => watch.apply(m),
                },
                _ = refresh.tick() => {
                    self.register_once(Proof::TokenOnly).await?;
                    None
                }
            };
            if let Some(event) = event
                && events.send(event).await.is_err()
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_errors_are_one_line() {
        let err = SignalingError::Rpc(tonic::Status::unavailable("down\nhard"));
        assert_eq!(brief(&err), "down hard (Unavailable)");
        assert_eq!(
            brief(&SignalingError::Timeout),
            SignalingError::Timeout.to_string()
        );
    }
}
