//! Which engine event changes what: [`App::on_event`] hands each one to
//! the file of its concern, and shows the rest (`registered`, `info`,
//! `error`, and variants added to the engine later) as chat-pane lines.

use p2pchat::PeerId;

use super::{App, Delivery, EntryKind, short_id};
use crate::engine::{ErrorCode, Event, RequestId};
use crate::text::{error_message, sanitize_display};

impl App {
    /// Applies one engine event.
    pub fn on_event(&mut self, event: &Event) {
        let s = sanitize_display;
        self.verifier.on_event(event);
        match event {
            Event::Registered {
                peer_id,
                username,
                public_addr,
                server,
                ..
            } => self.on_registered(*peer_id, username, public_addr, server),
            Event::Peers { id, peers } => self.replace_peers(*id, peers),
            Event::PeerJoined { peer_id, username } => {
                self.upsert_peer(*peer_id, username, true, None);
            }
            Event::PeerLeft { peer_id, .. } => self.on_peer_left(*peer_id),
            Event::Connecting {
                peer_id,
                username,
                attempt,
                ..
            } => self.on_connecting(*peer_id, username, *attempt),
            Event::Connected { .. } => self.on_connected(event),
            Event::Message {
                from,
                username,
                text,
                encrypted,
                ..
            } => {
                let from = self.name_of(*from, username);
                let kind = EntryKind::Incoming {
                    from,
                    encrypted: *encrypted,
                };
                self.push(kind, s(text));
            }
            Event::Sent {
                id,
                to,
                line,
                reliable,
            } => self.on_sent(*id, *to, *line, *reliable),
            Event::Delivered { to, line } => self.settle(*to, *line, Delivery::Delivered),
            Event::Undeliverable { to, line } => self.settle(*to, *line, Delivery::Failed),
            Event::Rtt { peer_id, rtt_ms } => self.on_rtt(*peer_id, *rtt_ms),
            Event::Disconnected {
                peer_id,
                username,
                reason,
            } => self.on_disconnected(*peer_id, username, *reason),
            Event::ServerLost { error } => self.on_server(Some(error)),
            Event::ServerRestored {} => self.on_server(None),
            Event::Status {
                id,
                server_connected,
                sessions,
            } => self.apply_status(*id, *server_connected, sessions),
            Event::Focus { peer_id } => self.focus(*peer_id),
            Event::Info { message } => self.system(&s(message)),
            Event::Error { id, code, message } => self.on_error(*id, *code, message),
            Event::PathChanged {
                peer_id,
                addr,
                path,
            } => self.on_path_changed(*peer_id, addr, *path),
            // Events added to the engine later are shown generically (and a
            // path change is applied), so a new variant needs no change here.
            #[allow(unreachable_patterns)]
            other => self.on_other_event(other),
        }
    }

    /// We (re-)registered: the server may have changed our name.
    fn on_registered(&mut self, peer_id: PeerId, username: &str, public_addr: &str, server: &str) {
        let s = sanitize_display;
        self.me_id = peer_id;
        self.me_name = s(username);
        self.system(&format!(
            "registered with {} as {} ({}), public address {}",
            s(server),
            self.me_name,
            short_id(&peer_id),
            s(public_addr)
        ));
    }

    /// An error, perhaps the answer to one of our requests (`id`): a failed
    /// send marks its line, a failed `/peers` gets no summary later.
    fn on_error(&mut self, id: Option<RequestId>, code: ErrorCode, message: &str) {
        if let Some(id) = id {
            self.fail_send(id);
            self.peers_requested.remove(&id);
        }
        self.error(&sanitize_display(&error_message(code, message)));
    }

    /// Shows an event this UI has no special rendering for as one line of
    /// its fields; a `peer_id` + `path` pair updates that session's path.
    pub(super) fn on_other_event(&mut self, event: &Event) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
            return;
        };
        let text_of = |key: &str| fields.get(key).and_then(|v| v.as_str());
        let peer_of = |key: &str| text_of(key).and_then(|t| PeerId::parse(t).ok());
        if let (Some(peer), Some(path)) = (peer_of("peer_id"), text_of("path"))
            && let Some(session) = self.sessions.get_mut(&peer)
            && session.connected()
        {
            session.path = Some(sanitize_display(path));
        }
        let name = text_of("event").unwrap_or("event").replace('_', " ");
        let details: Vec<String> = fields
            .iter()
            .filter(|(key, _)| key.as_str() != "event")
            .map(|(key, value)| match value {
                serde_json::Value::String(id) if key == "peer_id" => match PeerId::parse(id) {
                    Ok(peer) => format!("peer {}", self.name_of(peer, "")),
                    Err(_) => format!("peer {id}"),
                },
                serde_json::Value::String(text) => format!("{key} {text}"),
                other => format!("{key} {other}"),
            })
            .collect();
        self.system(&sanitize_display(&format!(
            "{name}: {}",
            details.join(", ")
        )));
    }
}
