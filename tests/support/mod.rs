//! Helpers shared by the server integration tests: an in-process server on
//! 127.0.0.1:0 and a connected tonic client.
#![allow(dead_code)]

use std::time::Duration;

use p2pchat::keys::registration_message;
use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat::proto::{self, RegisterRequest};
use p2pchat_client::identity::Identity;
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use tonic::transport::Channel;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn start(config: ServerConfig) -> RunningServer {
    server::start(config).await.expect("server starts")
}

pub async fn start_default() -> RunningServer {
    start(ServerConfig::default()).await
}

pub async fn client(server: &RunningServer) -> SignalingClient<Channel> {
    SignalingClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("client connects")
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Registers a fresh peer and returns (peer_id, token).
pub async fn register(
    client: &mut SignalingClient<Channel>,
    username: &str,
    port: u32,
) -> (String, String) {
    let peer_id = new_id();
    let resp = client
        .register(RegisterRequest {
            peer_id: peer_id.clone(),
            username: username.into(),
            udp_port: port,
            ..Default::default()
        })
        .await
        .expect("register succeeds")
        .into_inner();
    (peer_id, resp.session_token)
}

/// A fresh challenge from `client`'s server.
pub async fn challenge(client: &mut SignalingClient<Channel>) -> Vec<u8> {
    client
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .expect("challenge")
        .into_inner()
        .challenge
}

/// A Register of `identity`'s peer id with a proof over `challenge`.
pub fn signed_request(
    identity: &Identity,
    challenge: Vec<u8>,
    username: &str,
    port: u32,
) -> RegisterRequest {
    let key = identity.public_key();
    let signature = identity.sign(&registration_message(&challenge, &key, username));
    RegisterRequest {
        peer_id: identity.peer_id().to_string(),
        username: username.into(),
        udp_port: port,
        public_key: key.as_bytes().to_vec(),
        challenge,
        signature: signature.to_vec(),
        ..Default::default()
    }
}

/// Registers `identity`'s peer id with a fresh proof; returns (peer_id,
/// token).
pub async fn register_keyed(
    client: &mut SignalingClient<Channel>,
    identity: &Identity,
    username: &str,
    port: u32,
) -> (String, String) {
    let challenge = challenge(client).await;
    let resp = client
        .register(signed_request(identity, challenge, username, port))
        .await
        .expect("register with a proof succeeds")
        .into_inner();
    (identity.peer_id().to_string(), resp.session_token)
}

/// Next message of a stream, failing the test after [`WAIT`].
pub async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("stream message in time")
        .expect("stream not failed")
        .expect("stream not ended")
}

/// Reads a whole snapshot (all chunks) and returns its peers and revision.
pub async fn read_snapshot(
    stream: &mut tonic::Streaming<proto::WatchPeersResponse>,
) -> (Vec<proto::Peer>, u64, i32) {
    let mut peers = Vec::new();
    loop {
        match next(stream).await.update {
            Some(proto::watch_peers_response::Update::Snapshot(s)) => {
                peers.extend(s.peers);
                if s.last_chunk {
                    return (peers, s.revision, s.reason);
                }
            }
            other => panic!("expected a snapshot chunk, got {other:?}"),
        }
    }
}

/// Reads the next change (panics on a snapshot).
pub async fn next_change(
    stream: &mut tonic::Streaming<proto::WatchPeersResponse>,
) -> proto::PeerChange {
    match next(stream).await.update {
        Some(proto::watch_peers_response::Update::Change(c)) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}
