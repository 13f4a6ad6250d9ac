//! The `p2pchat.signaling.v1.Signaling` gRPC service: validates requests,
//! calls the [`PeerStore`] and the [`Rendezvous`], and answers in protobuf.
//! The two streaming RPCs hand their work to tasks in [`super::streams`].

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::errors::ApiError;
use super::streams::{StreamItem, WatchResponses, run_inbox};
use super::validate;
use super::view_shelf::ViewShelf;
use super::wire::{endpoint_from_proto, pack_peers, peer_to_proto};
use crate::challenge::{CHALLENGE_TTL, Challenges};
use crate::net::RemoteAddr;
use crate::net::shutdown::Shutdown;
use crate::net::tasks::Tasks;
use crate::quota::{Quota, Rates, SourceKey, Watchers};
use crate::rendezvous::Rendezvous;
use crate::store::{Credential, KEY_MISMATCH, ListQuery, PeerStore, RegisteredVia, Registration};
use p2pchat::keys::registration_message;
use p2pchat::{PeerId, PublicKey, proto};

/// Bytes kept free in every message for the fields around the peer list.
const MESSAGE_ENVELOPE: usize = 512;
/// Messages buffered per stream between its task and the HTTP/2 connection.
const STREAM_BUFFER: usize = 16;

/// Limits of the gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// Most WatchPeers streams open at once.
    pub max_watchers: usize,
    /// ListPeers page size when the request says 0.
    pub default_page_size: usize,
    /// Largest ListPeers page.
    pub max_page_size: usize,
    /// Largest encoded message the server sends; pages and snapshot chunks
    /// hold fewer peers when the peers would not fit.
    pub max_message_bytes: usize,
    /// The STUN + relay UDP port announced in Register responses (0: none).
    pub udp_port: u16,
    /// Most WatchPeers streams one source may have open.
    pub watchers_per_source: usize,
    /// RequestConnect calls per second one source may make.
    pub connects_per_caller: u32,
}

impl GrpcLimits {
    /// Bytes of peers one message may carry, leaving room for the envelope.
    fn peer_budget(&self) -> usize {
        self.max_message_bytes.saturating_sub(MESSAGE_ENVELOPE)
    }
}

/// The gRPC service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SignalingService {
    store: Arc<dyn PeerStore>,
    rendezvous: Rendezvous,
    challenges: Arc<Challenges>,
    limits: GrpcLimits,
    watch_permits: Arc<Semaphore>,
    /// Open WatchPeers streams per source.
    watchers: Watchers,
    /// RequestConnect calls per second per source.
    connects: Rates<SourceKey>,
    /// The snapshot views watchers are sending (bounded, shared).
    views: Arc<ViewShelf>,
    shutdown: broadcast::Sender<()>,
    /// Where the stream tasks are spawned, so shutdown waits for them.
    tasks: Tasks,
}

impl SignalingService {
    /// A service over `store` and `rendezvous`, checking registration
    /// proofs against `challenges`, whose stream tasks run in `tasks` and
    /// end when `shutdown` fires.
    pub fn new(
        store: Arc<dyn PeerStore>,
        rendezvous: Rendezvous,
        challenges: Arc<Challenges>,
        limits: GrpcLimits,
        shutdown: broadcast::Sender<()>,
        tasks: Tasks,
    ) -> Self {
        let watch_permits = Arc::new(Semaphore::new(limits.max_watchers));
        let watchers = Watchers::new(limits.watchers_per_source);
        let connects = Rates::new(Quota::ConnectsPerCaller, limits.connects_per_caller);
        Self {
            store,
            rendezvous,
            challenges,
            limits,
            watch_permits,
            watchers,
            connects,
            views: ViewShelf::new(),
            shutdown,
            tasks,
        }
    }
}

impl SignalingService {
    /// The key a registration proves, if it carries a proof: every field
    /// well-formed, the key owning `peer_id`, the challenge this server's,
    /// unexpired and unused, and the signature over
    /// [`registration_message`] verifying strictly. The challenge is spent
    /// only once the signature has verified.
    fn prove(
        &self,
        req: &proto::RegisterRequest,
        peer_id: &PeerId,
    ) -> Result<Option<PublicKey>, ApiError> {
        if req.public_key.is_empty() {
            if !req.challenge.is_empty() || !req.signature.is_empty() {
                return Err(ApiError::InvalidArgument {
                    field: "public_key",
                    message: "public_key is required with a challenge or signature".into(),
                });
            }
            return Ok(None);
        }
        let key = validate::public_key("public_key", &req.public_key)?;
        if req.challenge.is_empty() {
            return Err(ApiError::InvalidArgument {
                field: "challenge",
                message: "challenge (from GetChallenge) is required with public_key".into(),
            });
        }
        validate::signature("signature", &req.signature)?;
        if !key.owns(peer_id) {
            return Err(ApiError::PermissionDenied(KEY_MISMATCH));
        }
        self.challenges.check(&req.challenge)?;
        let message = registration_message(&req.challenge, &key, &req.username);
        key.verify(&message, &req.signature)
            .map_err(|_| ApiError::BadSignature)?;
        self.challenges.redeem(&req.challenge)?;
        Ok(Some(key))
    }
}

/// The caller's IP as seen by the listener.
fn observed_ip<T>(request: &Request<T>) -> IpAddr {
    request
        .extensions()
        .get::<RemoteAddr>()
        .map(|r| r.0.ip().to_canonical())
        .or_else(|| request.remote_addr().map(|a| a.ip().to_canonical()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[tonic::async_trait]
impl proto::signaling_server::Signaling for SignalingService {
    async fn get_challenge(
        &self,
        _request: Request<proto::GetChallengeRequest>,
    ) -> Result<Response<proto::GetChallengeResponse>, Status> {
        let challenge = self.challenges.issue().map_err(ApiError::from)?;
        Ok(Response::new(proto::GetChallengeResponse {
            challenge,
            expires_in_seconds: u32::try_from(CHALLENGE_TTL.as_secs()).unwrap_or(u32::MAX),
        }))
    }

    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let observed_ip = observed_ip(&request);
        let req = request.into_inner();
        let peer_id = validate::peer_id("peer_id", &req.peer_id)?;
        let username = validate::username(&req.username)?;
        let udp_port = validate::port("udp_port", i64::from(req.udp_port))?;
        let endpoints = req
            .endpoints
            .iter()
            .map(endpoint_from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let token = (!req.session_token.is_empty()).then(|| Credential::parse(&req.session_token));
        let public_key = self.prove(&req, &peer_id)?;
        let registered = self
            .store
            .register(Registration {
                peer_id,
                username,
                udp_port,
                endpoints,
                token,
                public_key,
                observed_ip,
                via: RegisteredVia::Grpc,
            })
            .await?;
        if registered.took_over {
            // The previous holder's inbox stops receiving connect requests.
            self.rendezvous.taken_over(&peer_id, registered.revision);
            tracing::debug!(peer_id = %peer_id, "registration taken over with a proof of the key");
        }
        tracing::debug!(peer_id = %peer_id, username = %registered.peer.username, keyed = public_key.is_some(), "registered over gRPC");
        Ok(Response::new(proto::RegisterResponse {
            session_token: registered.token.to_hex(),
            observed_ip: observed_ip.to_string(),
            lease_seconds: u32::try_from(registered.lease.as_secs()).unwrap_or(u32::MAX),
            peer: Some(peer_to_proto(&registered.peer)),
            revision: registered.revision,
            udp_port: u32::from(self.limits.udp_port),
        }))
    }

    async fn get_peer(
        &self,
        request: Request<proto::GetPeerRequest>,
    ) -> Result<Response<proto::GetPeerResponse>, Status> {
        let peer_id = validate::peer_id("peer_id", &request.get_ref().peer_id)?;
        let peer = self.store.get(&peer_id).await?;
        Ok(Response::new(proto::GetPeerResponse {
            peer: Some(peer_to_proto(&peer)),
        }))
    }

    async fn list_peers(
        &self,
        request: Request<proto::ListPeersRequest>,
    ) -> Result<Response<proto::ListPeersResponse>, Status> {
        let req = request.into_inner();
        let page_size = match req.page_size as usize {
            0 => self.limits.default_page_size,
            n if n > self.limits.max_page_size => {
                return Err(ApiError::InvalidArgument {
                    field: "page_size",
                    message: format!(
                        "page_size must be at most {}, got {n}",
                        self.limits.max_page_size
                    ),
                }
                .into());
            }
            n => n,
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(
                validate::peer_id("page_token", &req.page_token).map_err(|_| {
                    Status::invalid_argument("page_token is not one this server handed out")
                })?,
            )
        };
        // Fetch one extra to know whether another page follows.
        let query = ListQuery {
            after,
            limit: page_size + 1,
            include_offline: req.include_offline,
        };
        let page = self.store.list(query).await?;
        let (mut peers, total) = (page.peers, page.total);
        let more_in_registry = peers.len() > page_size;
        peers.truncate(page_size);
        // A page also ends early when more peers would not fit one message.
        let (page, taken) = pack_peers(&peers, 0, page_size, self.limits.peer_budget());
        let next_page_token = if more_in_registry || taken < peers.len() {
            page.last().map(|p| p.peer_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListPeersResponse {
            peers: page,
            next_page_token,
            total_count: total as u64,
        }))
    }

    async fn unregister(
        &self,
        request: Request<proto::UnregisterRequest>,
    ) -> Result<Response<proto::UnregisterResponse>, Status> {
        let req = request.into_inner();
        let peer_id = validate::peer_id("peer_id", &req.peer_id)?;
        let token = Credential::parse(&req.session_token);
        let revision = self.store.unregister(&peer_id, &token).await?;
        tracing::debug!(peer_id = %peer_id, "unregistered over gRPC");
        Ok(Response::new(proto::UnregisterResponse { revision }))
    }

    type WatchPeersStream = WatchResponses;

    async fn watch_peers(
        &self,
        request: Request<proto::WatchPeersRequest>,
    ) -> Result<Response<Self::WatchPeersStream>, Status> {
        let source = SourceKey::from(observed_ip(&request));
        // The source's own quota first: one source alone cannot take the
        // global slots from everyone else.
        let slot = self.watchers.open(source).map_err(|err| {
            tracing::debug!(%source, "watcher refused: source quota");
            ApiError::from(err)
        })?;
        let permit = self
            .watch_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyWatchers {
                limit: self.limits.max_watchers,
            })?;
        let resume = match request.get_ref().resume_from_revision {
            0 => None,
            r => Some(r),
        };
        let feed = self.store.watch(resume).await?;
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        let budget = self.limits.peer_budget();
        let views = self.views.clone();
        Ok(Response::new(WatchResponses::new(
            feed,
            shutdown,
            budget,
            (permit, slot),
            views,
        )))
    }

    type OpenInboxStream = ReceiverStream<StreamItem<proto::InboxMessage>>;

    async fn open_inbox(
        &self,
        request: Request<proto::OpenInboxRequest>,
    ) -> Result<Response<Self::OpenInboxStream>, Status> {
        let req = request.into_inner();
        let peer_id = validate::peer_id("peer_id", &req.peer_id)?;
        let token = Credential::parse(&req.session_token);
        let inbox = self.rendezvous.open(&peer_id, &token).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        tracing::debug!(peer_id = %peer_id, "inbox opened");
        self.tasks
            .spawn(run_inbox(self.rendezvous.clone(), inbox, tx, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn request_connect(
        &self,
        request: Request<proto::RequestConnectRequest>,
    ) -> Result<Response<proto::RequestConnectResponse>, Status> {
        let source = SourceKey::from(observed_ip(&request));
        // Before any lookup: a flood costs the server one bucket check.
        self.connects.check(source).map_err(|err| {
            tracing::debug!(%source, "RequestConnect refused: caller rate");
            ApiError::from(err)
        })?;
        let req = request.into_inner();
        let from = validate::peer_id("peer_id", &req.peer_id)?;
        let target = validate::peer_id("target_peer_id", &req.target_peer_id)?;
        let token = Credential::parse(&req.session_token);
        let outcome = self
            .rendezvous
            .request_connect(&from, &token, &target)
            .await?;
        tracing::debug!(from = %from, target = %target, notified = outcome.target_notified, "connect requested");
        Ok(Response::new(proto::RequestConnectResponse {
            connect_id: outcome.connect_id.to_string(),
            target: Some(peer_to_proto(&outcome.target)),
            target_notified: outcome.target_notified,
        }))
    }
}
