//! The `p2pchat.signaling.v1.Signaling` gRPC service over the shared
//! [`PeerRegistry`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::RemoteAddr;
use super::error::RegistryError;
use super::registry::{
    self, Change, ChangeKind, EndpointKind, LeftReason, PeerInfo, PeerRegistry, RegisteredVia,
    Registration, WatchStart,
};
use super::shutdown::Shutdown;
use super::validate;
use p2pchat::proto;

/// Peers per `PeerSnapshot` message, so a large registry never makes one
/// oversized message.
pub const SNAPSHOT_CHUNK: usize = 256;
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
    registry: PeerRegistry,
    limits: GrpcLimits,
    watch_permits: Arc<Semaphore>,
    shutdown: broadcast::Sender<()>,
}

impl SignalingService {
    /// A service over `registry` whose streams end when `shutdown` fires.
    pub fn new(
        registry: PeerRegistry,
        limits: GrpcLimits,
        shutdown: broadcast::Sender<()>,
    ) -> Self {
        let watch_permits = Arc::new(Semaphore::new(limits.max_watchers));
        Self {
            registry,
            limits,
            watch_permits,
            shutdown,
        }
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

fn endpoint_from_proto(e: &proto::Endpoint) -> Result<registry::Endpoint, RegistryError> {
    let ip = validate::ip("endpoints.ip", &e.ip)?;
    let port = validate::port("endpoints.port", i64::from(e.port))?;
    let kind = match proto::EndpointKind::try_from(e.kind) {
        Ok(proto::EndpointKind::ServerReflexive) => EndpointKind::ServerReflexive,
        Ok(proto::EndpointKind::Observed)
        | Ok(proto::EndpointKind::Local)
        | Ok(proto::EndpointKind::Unspecified)
        | Err(_) => EndpointKind::Local,
    };
    Ok(registry::Endpoint {
        addr: SocketAddr::new(ip, port),
        kind,
    })
}

/// Converts a registry record to its wire form.
pub fn peer_to_proto(p: &PeerInfo) -> proto::Peer {
    proto::Peer {
        peer_id: p.peer_id.to_string(),
        username: p.username.clone(),
        observed_ip: p.observed_ip.to_string(),
        udp_port: u32::from(p.udp_port),
        endpoints: p
            .endpoints
            .iter()
            .map(|e| proto::Endpoint {
                ip: e.addr.ip().to_string(),
                port: u32::from(e.addr.port()),
                kind: match e.kind {
                    EndpointKind::Local => proto::EndpointKind::Local,
                    EndpointKind::ServerReflexive => proto::EndpointKind::ServerReflexive,
                    EndpointKind::Observed => proto::EndpointKind::Observed,
                } as i32,
            })
            .collect(),
        online: p.online,
        last_seen_unix: p.last_seen_unix(),
        registered_via: match p.registered_via {
            RegisteredVia::Grpc => proto::RegisteredVia::Grpc,
            RegisteredVia::Rest => proto::RegisteredVia::Rest,
        } as i32,
        inbox_open: p.inbox_open,
    }
}

fn change_to_proto(c: &Change) -> proto::WatchPeersResponse {
    let (kind, left_reason) = match c.kind {
        ChangeKind::Joined => (
            proto::PeerChangeKind::Joined,
            proto::LeftReason::Unspecified,
        ),
        ChangeKind::Updated => (
            proto::PeerChangeKind::Updated,
            proto::LeftReason::Unspecified,
        ),
        ChangeKind::Left(LeftReason::Unregistered) => {
            (proto::PeerChangeKind::Left, proto::LeftReason::Unregistered)
        }
        ChangeKind::Left(LeftReason::LeaseExpired) => {
            (proto::PeerChangeKind::Left, proto::LeftReason::LeaseExpired)
        }
    };
    proto::WatchPeersResponse {
        update: Some(proto::watch_peers_response::Update::Change(
            proto::PeerChange {
                revision: c.revision,
                kind: kind as i32,
                peer: Some(peer_to_proto(&c.peer)),
                left_reason: left_reason as i32,
            },
        )),
    }
}

/// Converts peers from `start` on until `max_count` peers or `budget`
/// encoded bytes; returns them and the index after the last one taken.
/// Always takes at least one peer, so progress is guaranteed (a single peer
/// is far below any allowed message size).
fn pack_peers(
    peers: &[Arc<PeerInfo>],
    start: usize,
    max_count: usize,
    budget: usize,
) -> (Vec<proto::Peer>, usize) {
    use prost::Message;
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut next = start;
    while next < peers.len() && out.len() < max_count {
        let peer = peer_to_proto(&peers[next]);
        // Field tag + length prefix + body.
        let size = peer.encoded_len() + 4;
        if !out.is_empty() && bytes + size > budget {
            break;
        }
        bytes += size;
        out.push(peer);
        next += 1;
    }
    (out, next)
}

/// Sends a snapshot in chunks of at most [`SNAPSHOT_CHUNK`] peers that each
/// fit the message limit. Returns false when the client went away.
async fn send_snapshot(
    tx: &mpsc::Sender<StreamItem<proto::WatchPeersResponse>>,
    revision: u64,
    peers: &[Arc<PeerInfo>],
    reason: proto::SnapshotReason,
    budget: usize,
) -> bool {
    let mut start = 0;
    let mut first = true;
    loop {
        let (part, next) = pack_peers(peers, start, SNAPSHOT_CHUNK, budget);
        let last = next >= peers.len();
        let msg = proto::WatchPeersResponse {
            update: Some(proto::watch_peers_response::Update::Snapshot(
                proto::PeerSnapshot {
                    revision,
                    peers: part,
                    first_chunk: first,
                    last_chunk: last,
                    reason: reason as i32,
                },
            )),
        };
        if !send(tx, msg).await {
            return false;
        }
        // An empty registry still sends one (empty) chunk so the client
        // knows the snapshot is complete.
        if last {
            return true;
        }
        first = false;
        start = next;
    }
}

type StreamItem<T> = Result<T, Status>;

#[tonic::async_trait]
impl proto::signaling_server::Signaling for SignalingService {
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
        let token = (!req.session_token.is_empty()).then_some(req.session_token);
        let registered = self.registry.register(Registration {
            peer_id,
            username,
            udp_port,
            endpoints,
            token,
            observed_ip,
            via: RegisteredVia::Grpc,
        })?;
        tracing::info!(peer_id = %peer_id, username = %registered.peer.username, "registered over gRPC");
        Ok(Response::new(proto::RegisterResponse {
            session_token: registered.token,
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
        let peer = self.registry.get(&peer_id)?;
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
                return Err(RegistryError::InvalidArgument {
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
        let (mut peers, total) = self
            .registry
            .list(after, page_size + 1, req.include_offline);
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
        let revision = self.registry.unregister(&peer_id, &req.session_token)?;
        tracing::info!(peer_id = %peer_id, "unregistered over gRPC");
        Ok(Response::new(proto::UnregisterResponse { revision }))
    }

    type WatchPeersStream = ReceiverStream<StreamItem<proto::WatchPeersResponse>>;

    async fn watch_peers(
        &self,
        request: Request<proto::WatchPeersRequest>,
    ) -> Result<Response<Self::WatchPeersStream>, Status> {
        let permit = self
            .watch_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| RegistryError::TooManyWatchers {
                limit: self.limits.max_watchers,
            })?;
        let resume = match request.get_ref().resume_from_revision {
            0 => None,
            r => Some(r),
        };
        let watch = self.registry.watch(resume);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let registry = self.registry.clone();
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        let budget = self.limits.peer_budget();
        tokio::spawn(async move {
            run_watch(registry, watch, tx, shutdown, budget).await;
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type OpenInboxStream = ReceiverStream<StreamItem<proto::InboxMessage>>;

    async fn open_inbox(
        &self,
        request: Request<proto::OpenInboxRequest>,
    ) -> Result<Response<Self::OpenInboxStream>, Status> {
        let req = request.into_inner();
        let peer_id = validate::peer_id("peer_id", &req.peer_id)?;
        let inbox = self.registry.open_inbox(&peer_id, &req.session_token)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        tracing::debug!(peer_id = %peer_id, "inbox opened");
        tokio::spawn(run_inbox(inbox, tx, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn request_connect(
        &self,
        request: Request<proto::RequestConnectRequest>,
    ) -> Result<Response<proto::RequestConnectResponse>, Status> {
        let req = request.into_inner();
        let from = validate::peer_id("peer_id", &req.peer_id)?;
        let target = validate::peer_id("target_peer_id", &req.target_peer_id)?;
        let outcome = self
            .registry
            .request_connect(&from, &req.session_token, &target)?;
        tracing::info!(from = %from, target = %target, notified = outcome.target_notified, "connect requested");
        Ok(Response::new(proto::RequestConnectResponse {
            connect_id: outcome.connect_id.to_string(),
            target: Some(peer_to_proto(&outcome.target)),
            target_notified: outcome.target_notified,
        }))
    }
}

/// Sends `msg`, returning false when the client has gone away.
async fn send<T>(tx: &mpsc::Sender<StreamItem<T>>, msg: T) -> bool {
    tx.send(Ok(msg)).await.is_ok()
}

/// Feeds one WatchPeers stream until the client leaves or the server stops.
async fn run_watch(
    registry: PeerRegistry,
    watch: registry::Watch,
    tx: mpsc::Sender<StreamItem<proto::WatchPeersResponse>>,
    mut shutdown: Shutdown,
    budget: usize,
) {
    let mut changes = watch.changes;
    let mut last_revision = match watch.start {
        WatchStart::Snapshot {
            revision,
            peers,
            resume_unavailable,
        } => {
            let reason = if resume_unavailable {
                proto::SnapshotReason::ResumeUnavailable
            } else {
                proto::SnapshotReason::Initial
            };
            if !send_snapshot(&tx, revision, &peers, reason, budget).await {
                return;
            }
            revision
        }
        WatchStart::Replay(replay) => {
            let mut last = 0;
            for change in replay {
                last = change.revision;
                if !send(&tx, change_to_proto(&change)).await {
                    return;
                }
            }
            last
        }
    };
    loop {
        let received = tokio::select! {
            _ = shutdown.recv() => return,
            _ = tx.closed() => return,
            received = changes.recv() => received,
        };
        match received {
            Ok(change) => {
                if change.revision <= last_revision {
                    continue;
                }
                last_revision = change.revision;
                if !send(&tx, change_to_proto(&change)).await {
                    return;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // Never skip silently: start over from a fresh snapshot.
                tracing::debug!(missed, "watcher lagged; sending a fresh snapshot");
                let fresh = registry.watch(None);
                changes = fresh.changes;
                if let WatchStart::Snapshot {
                    revision, peers, ..
                } = fresh.start
                {
                    let reason = proto::SnapshotReason::Resync;
                    if !send_snapshot(&tx, revision, &peers, reason, budget).await {
                        return;
                    }
                    last_revision = revision;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Feeds one inbox stream until the client leaves, a newer inbox replaces
/// it, the peer unregisters, or the server stops.
async fn run_inbox(
    mut inbox: registry::Inbox,
    tx: mpsc::Sender<StreamItem<proto::InboxMessage>>,
    mut shutdown: Shutdown,
) {
    let opened = proto::InboxMessage {
        message: Some(proto::inbox_message::Message::Opened(proto::InboxOpened {
            lease_seconds: u32::try_from(inbox.lease().as_secs()).unwrap_or(u32::MAX),
        })),
    };
    if !send(&tx, opened).await {
        return;
    }
    loop {
        let request = tokio::select! {
            _ = shutdown.recv() => return,
            _ = tx.closed() => return,
            request = inbox.requests.recv() => request,
        };
        let Some(request) = request else {
            return; // unregistered or replaced
        };
        let msg = proto::InboxMessage {
            message: Some(proto::inbox_message::Message::ConnectRequested(
                proto::ConnectRequested {
                    connect_id: request.connect_id.to_string(),
                    from: Some(peer_to_proto(&request.from)),
                },
            )),
        };
        if !send(&tx, msg).await {
            return;
        }
    }
}
