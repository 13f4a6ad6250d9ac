//! Our side of rendezvous: the inbox stream (the server pushes connect
//! requests there; holding it open also keeps our lease alive) and
//! RequestConnect, which asks the server to tell another peer about us.

use tonic::Streaming;

use p2pchat::PeerId;
use p2pchat::proto::{self, inbox_message};

use super::{RPC_TIMEOUT, RemotePeer, SignalEvent, Signaling, SignalingError};

impl Signaling {
    /// Opens our inbox; it lasts until the server or the connection ends it.
    pub(super) async fn open_inbox(
        &self,
    ) -> Result<Streaming<proto::InboxMessage>, SignalingError> {
        let mut client = self.client.clone();
        let request = proto::OpenInboxRequest {
            peer_id: self.peer_id().to_string(),
            session_token: self.token(),
        };
        Ok(client.open_inbox(request).await?.into_inner())
    }

    /// Asks the server to set up a rendezvous with `target`. Returns the
    /// target as the server knows it and whether it was notified.
    pub async fn request_connect(
        &self,
        target: PeerId,
    ) -> Result<(RemotePeer, bool), SignalingError> {
        let request = proto::RequestConnectRequest {
            peer_id: self.peer_id().to_string(),
            session_token: self.token(),
            target_peer_id: target.to_string(),
        };
        let mut client = self.client.clone();
        let response = tokio::time::timeout(RPC_TIMEOUT, client.request_connect(request))
            .await
            .map_err(|_| SignalingError::Timeout)??
            .into_inner();
        let target = response
            .target
            .as_ref()
            .and_then(RemotePeer::from_proto)
            .ok_or_else(|| tonic::Status::internal("response without a valid target"))?;
        Ok((target, response.target_notified))
    }
}

/// What an inbox message asks of us: a connect request becomes
/// [`SignalEvent::ConnectRequested`]; the opening ack, an unknown message
/// or a caller the server described badly becomes nothing.
pub(super) fn inbox_event(message: proto::InboxMessage) -> Option<SignalEvent> {
    match message.message? {
        inbox_message::Message::ConnectRequested(req) => {
            let from = req.from.as_ref().and_then(RemotePeer::from_proto)?;
            Some(SignalEvent::ConnectRequested { from })
        }
        inbox_message::Message::Opened(_) => None,
    }
}
