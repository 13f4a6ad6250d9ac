//! Sessions as the UI shows them: one [`SessionView`] per peer with a
//! session (probing or up: path, attempt, RTT), the active peer the engine
//! reports (`focus`), the signaling server's state, and what `/status`
//! reports, which replaces all of them at once.

use p2pchat::PeerId;

use super::App;
use crate::engine::{DisconnectReason, Event, Path, RequestId, SessionState, SessionStatus};
use crate::text::{
    encryption_note, restarted, rtt_suffix, sanitize_display, server_lost, server_state,
    session_details, why_ended,
};

/// A session as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// Peer's display name, sanitised.
    pub name: String,
    /// `None` while probing, else the path the engine reports (`lan`,
    /// `direct`, `relayed`, ...), sanitised.
    pub path: Option<String>,
    /// Connect attempt while probing.
    pub attempt: u32,
    /// Smoothed RTT in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Whether delivery receipts come.
    pub reliable: bool,
    /// Whether it is end-to-end encrypted; `None` while probing (the
    /// engine says when it comes up).
    pub encrypted: Option<bool>,
}

impl SessionView {
    /// Whether the session is up (not probing).
    pub fn connected(&self) -> bool {
        self.path.is_some()
    }

    /// Whether the session, once up, is end-to-end encrypted (`None`:
    /// not up, nothing to mark).
    pub fn encrypted(&self) -> Option<bool> {
        self.encrypted.filter(|_| self.connected())
    }
}

impl App {
    /// The session with `peer_id` moved to another path (e.g. from the
    /// relay to a direct one).
    pub(super) fn on_path_changed(&mut self, peer_id: PeerId, addr: &str, path: Path) {
        if let Some(session) = self.sessions.get_mut(&peer_id)
            && session.connected()
        {
            session.path = Some(path.to_string());
        }
        let name = self.name_of(peer_id, "");
        self.system(&format!(
            "chat with {name} now uses the {path} path ({})",
            sanitize_display(addr)
        ));
    }

    /// A connect attempt to `peer_id` started: it gets a probing session
    /// and is shown while no session is active.
    pub(super) fn on_connecting(&mut self, peer_id: PeerId, username: &str, attempt: u32) {
        self.upsert_peer(peer_id, username, false, None);
        let name = self.name_of(peer_id, username);
        let session = self.sessions.entry(peer_id).or_insert_with(|| SessionView {
            name: name.clone(),
            path: None,
            attempt: 0,
            rtt_ms: None,
            reliable: true,
            encrypted: None,
        });
        session.attempt = attempt;
        self.connecting = Some(peer_id);
        self.system(&format!("connecting to {name} (attempt {attempt})..."));
    }

    /// A session came up (`event` is an [`Event::Connected`]).
    pub(super) fn on_connected(&mut self, event: &Event) {
        let Event::Connected {
            peer_id,
            username,
            addr,
            path,
            rtt_ms,
            reliable,
            incoming,
            encrypted,
            ..
        } = event
        else {
            return;
        };
        self.upsert_peer(*peer_id, username, false, None);
        let name = self.name_of(*peer_id, username);
        self.sessions.insert(
            *peer_id,
            SessionView {
                name: name.clone(),
                path: Some(path.to_string()),
                attempt: 0,
                rtt_ms: *rtt_ms,
                reliable: *reliable,
                encrypted: Some(*encrypted),
            },
        );
        if self.connecting == Some(*peer_id) {
            self.connecting = None;
        }
        let seed = if *reliable {
            ""
        } else {
            "; seed protocol, no delivery receipts"
        };
        let how = if *incoming {
            format!("{name} connected to you from")
        } else {
            format!("connected to {name} at")
        };
        let protection = if *encrypted {
            format!("; {}", encryption_note(&name, true))
        } else {
            String::new()
        };
        self.system(&format!(
            "{how} {} ({path}{}){seed}{protection}",
            sanitize_display(addr),
            rtt_suffix(*rtt_ms)
        ));
        if !*encrypted {
            // A warning of its own, in the error colour: hard to miss.
            self.error(&encryption_note(&name, false));
        }
    }

    /// A session ended; the peer's row goes too unless it is online.
    pub(super) fn on_disconnected(
        &mut self,
        peer_id: PeerId,
        username: &str,
        reason: DisconnectReason,
    ) {
        let name = self.name_of(peer_id, username);
        self.sessions.remove(&peer_id);
        if self.connecting == Some(peer_id) {
            self.connecting = None;
        }
        self.prune_peer(peer_id);
        let text = match (reason, why_ended(reason)) {
            (DisconnectReason::Reset, _) => restarted(&name),
            (_, Some(why)) => format!("{name} {why}"),
            (_, None) => format!("disconnected from {name}"),
        };
        self.system(&text);
    }

    /// A new RTT measurement for the session with `peer_id`.
    pub(super) fn on_rtt(&mut self, peer_id: PeerId, rtt_ms: f64) {
        if let Some(session) = self.sessions.get_mut(&peer_id) {
            session.rtt_ms = Some(rtt_ms);
        }
    }

    /// The engine lost (`error`) or regained (`None`) the signaling server.
    pub(super) fn on_server(&mut self, error: Option<&str>) {
        self.server_connected = error.is_none();
        match error {
            Some(error) => self.error(&format!("lost {}", server_lost(error))),
            None => self.system("reconnected to the signaling server"),
        }
    }

    /// The engine moved the conversation: show it as active, and move the
    /// highlighted row to it so the highlight and the ▶ mark agree.
    pub(super) fn focus(&mut self, peer: Option<PeerId>) {
        if let Some(id) = peer
            && self.peers.iter().any(|p| p.id == id)
        {
            self.selected = Some(id);
        }
        self.active = peer;
    }

    /// `/status` answered: its session list replaces ours (the engine's
    /// view wins), and one line sums it up; or, when `/verify` asked for
    /// it (request `id`), the verification is shown instead.
    pub(super) fn apply_status(
        &mut self,
        id: Option<RequestId>,
        server_connected: bool,
        sessions: &[SessionStatus],
    ) {
        self.server_connected = server_connected;
        let old = std::mem::take(&mut self.sessions);
        self.active = None;
        let mut text = format!("signaling server: {}", server_state(server_connected));
        if sessions.is_empty() {
            text.push_str("; no sessions");
        }
        for st in sessions {
            let name = self.name_of(st.peer_id, &st.username);
            let connected = st.state == SessionState::Connected;
            let view = SessionView {
                name: name.clone(),
                path: if connected {
                    Some(st.path.map_or_else(|| "?".to_owned(), |p| p.to_string()))
                } else {
                    None
                },
                attempt: old.get(&st.peer_id).map_or(0, |v| v.attempt),
                rtt_ms: st.rtt_ms,
                reliable: st.reliable,
                encrypted: Some(st.encrypted),
            };
            if st.active {
                self.active = Some(st.peer_id);
            }
            self.sessions.insert(st.peer_id, view);
            self.upsert_peer(st.peer_id, &st.username, false, None);
            text.push_str(&format!(
                "; {}{} ({})",
                if st.active { "active: " } else { "" },
                name,
                session_details(st)
            ));
        }
        for id in old.keys() {
            self.prune_peer(*id);
        }
        match id.and_then(|id| self.verifying.remove(&id)) {
            Some(target) => self.show_verification(target.as_deref()),
            None => self.system(&text),
        }
    }

    /// Shows what `/verify [target]` finds in what the engine reported.
    pub(super) fn show_verification(&mut self, target: Option<&str>) {
        for line in self.verifier.verify(target).lines() {
            self.system(&line);
        }
    }
}
