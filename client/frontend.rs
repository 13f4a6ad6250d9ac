//! The loop every front end runs: render engine events, turn input lines
//! into commands. Front ends only implement [`FrontEnd`].
//!
//! Events are always drained while commands wait for room in the engine's
//! command channel, so a fast input (e.g. a file piped into stdin) can never
//! deadlock against a full event channel.

use std::collections::{BTreeMap, VecDeque};

use p2pchat::PeerId;
use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event, Request, SessionState};
use super::text::{safety_number_rows, sanitize_display, verify_howto};

/// Most parsed input commands held while the engine is busy; input is not
/// read further until there is room.
pub const MAX_PENDING_COMMANDS: usize = 64;

/// Requests parsed from input, waiting for room in the engine's command
/// channel (at most [`MAX_PENDING_COMMANDS`]). Shared by every front end's
/// loop.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<Request>,
}

impl Pending {
    /// Whether more input may be read.
    pub fn has_room(&self) -> bool {
        self.queue.len() < MAX_PENDING_COMMANDS
    }

    /// Queues a request.
    pub fn push(&mut self, request: impl Into<Request>) {
        self.queue.push_back(request.into());
    }

    /// Waits for room in `commands` and hands over the oldest request;
    /// never returns while nothing is queued (a select branch).
    pub async fn send_next(&mut self, commands: &mpsc::Sender<Request>) {
        if self.queue.is_empty() {
            return std::future::pending().await;
        }
        match commands.reserve().await {
            Ok(permit) => {
                if let Some(request) = self.queue.pop_front() {
                    permit.send(request);
                }
            }
            // The engine stopped; its event channel closes next.
            Err(_) => self.queue.clear(),
        }
    }
}

/// A user interface on top of the engine.
pub trait FrontEnd {
    /// Shows one event.
    fn on_event(&mut self, event: &Event);
    /// Interprets one input line; returns the request to run, if any (and
    /// shows any local feedback itself). A request with an id gets answers
    /// that echo it.
    fn on_line(&mut self, line: &str) -> Option<Request>;
    /// Called once after the engine stopped.
    fn on_exit(&mut self) {}
}

/// Runs `ui` until the engine stops. `input` yields input lines; its end
/// (EOF) quits like `/quit`.
pub async fn drive(
    handle: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    mut input: mpsc::Receiver<String>,
    ui: &mut impl FrontEnd,
) {
    let commands = handle.commands();
    let mut pending = Pending::default();
    let mut input_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => ui.on_event(&event),
                None => break,
            },
            () = pending.send_next(&commands) => {}
            line = input.recv(), if input_open && pending.has_room() => match line {
                Some(line) => {
                    if let Some(request) = ui.on_line(&line) {
                        pending.push(request);
                    }
                }
                None => {
                    input_open = false;
                    pending.push(Command::Quit);
                }
            },
        }
    }
    ui.on_exit();
    drop(commands);
    handle.join().await;
}

/// One session's protection as a front end last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// The peer's username (raw: sanitize before showing).
    pub username: String,
    /// Whether the session is end-to-end encrypted.
    pub encrypted: bool,
    /// Its safety number, once the handshake proved the peer's key.
    pub safety_number: Option<String>,
}

/// What `/verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The safety number of the session with this peer.
    Number {
        /// The peer's username (raw).
        username: String,
        /// 12 groups of 5 digits.
        safety_number: String,
    },
    /// The session with this peer is plaintext: no number to compare.
    Plaintext {
        /// The peer's username (raw).
        username: String,
    },
    /// An encrypted session whose handshake has not proven the key yet.
    NotYet {
        /// The peer's username (raw).
        username: String,
    },
    /// Several sessions match the name or id prefix given.
    Ambiguous {
        /// What was typed (raw).
        target: String,
    },
    /// No session matches (`None`: no active session).
    Unknown {
        /// What was typed (raw), if anything.
        target: Option<String>,
    },
}

impl Verification {
    /// Whether the engine's `status` may know better (the front end may
    /// have missed the number or the session): ask it before answering.
    pub fn worth_asking(&self) -> bool {
        matches!(
            self,
            Verification::NotYet { .. } | Verification::Unknown { .. }
        )
    }

    /// What to show, one entry per line, sanitised.
    pub fn lines(&self) -> Vec<String> {
        let s = sanitize_display;
        match self {
            Verification::Number {
                username,
                safety_number,
            } => {
                let name = s(username);
                let mut lines = vec![format!("Safety number with {name}:")];
                lines.extend(
                    safety_number_rows(safety_number)
                        .into_iter()
                        .map(|r| format!("    {r}")),
                );
                lines.push(verify_howto(&name));
                lines
            }
            Verification::Plaintext { username } => vec![format!(
                "There is no encrypted session with {}: it speaks the seed protocol \
                 (plaintext), so there is no safety number to compare.",
                s(username)
            )],
            Verification::NotYet { username } => vec![format!(
                "The handshake with {} has not proven its key yet; try /verify again in a moment.",
                s(username)
            )],
            Verification::Ambiguous { target } => vec![format!(
                "Several sessions match '{}'; give the full username or peer id.",
                s(target)
            )],
            Verification::Unknown {
                target: Some(target),
            } => vec![format!(
                "There is no encrypted session with {}; /connect to it first.",
                s(target)
            )],
            Verification::Unknown { target: None } => vec![
                "There is no active session to verify; /connect to a peer, or /verify <name>."
                    .to_owned(),
            ],
        }
    }
}

/// What `/verify` needs, kept by every interactive front end: each
/// session's protection and safety number from the last `connected` or
/// `status` seen, and the active peer from `focus`.
#[derive(Debug, Default)]
pub struct Verifier {
    sessions: BTreeMap<PeerId, SessionKeys>,
    active: Option<PeerId>,
}

impl Verifier {
    /// Follows one engine event.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Connected {
                peer_id,
                username,
                encrypted,
                safety_number,
                ..
            } => {
                self.sessions.insert(
                    *peer_id,
                    SessionKeys {
                        username: username.clone(),
                        encrypted: *encrypted,
                        safety_number: safety_number.clone(),
                    },
                );
            }
            Event::Disconnected { peer_id, .. } => {
                self.sessions.remove(peer_id);
                if self.active == Some(*peer_id) {
                    self.active = None;
                }
            }
            Event::Focus { peer_id } => self.active = *peer_id,
            Event::Status { sessions, .. } => {
                self.sessions.clear();
                self.active = None;
                for st in sessions {
                    if st.state == SessionState::Closed {
                        continue;
                    }
                    if st.active {
                        self.active = Some(st.peer_id);
                    }
                    self.sessions.insert(
                        st.peer_id,
                        SessionKeys {
                            username: st.username.clone(),
                            encrypted: st.encrypted,
                            safety_number: st.safety_number.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// The session `target` names (a username, a full peer id or a unique
    /// id prefix), or the active one (or the only one) when `None`.
    pub fn find(&self, target: Option<&str>) -> Result<(PeerId, &SessionKeys), Verification> {
        let Some(target) = target else {
            let only = (self.sessions.len() == 1)
                .then(|| self.sessions.keys().next().copied())
                .flatten();
            return self
                .active
                .or(only)
                .and_then(|id| self.sessions.get(&id).map(|keys| (id, keys)))
                .ok_or(Verification::Unknown { target: None });
        };
        let by_name: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, keys)| keys.username == target)
            .collect();
        let matches = if by_name.is_empty() {
            let prefix = target.to_ascii_lowercase();
            self.sessions
                .iter()
                .filter(|(id, _)| id.to_string().starts_with(&prefix))
                .collect()
        } else {
            by_name
        };
        match matches.as_slice() {
            [(id, keys)] => Ok((**id, *keys)),
            [] => Err(Verification::Unknown {
                target: Some(target.to_owned()),
            }),
            _ => Err(Verification::Ambiguous {
                target: target.to_owned(),
            }),
        }
    }

    /// Answers `/verify [target]` from what was last heard.
    pub fn verify(&self, target: Option<&str>) -> Verification {
        match self.find(target) {
            Err(not_found) => not_found,
            Ok((_, keys)) => match (&keys.safety_number, keys.encrypted) {
                (_, false) => Verification::Plaintext {
                    username: keys.username.clone(),
                },
                (Some(number), true) => Verification::Number {
                    username: keys.username.clone(),
                    safety_number: number.clone(),
                },
                (None, true) => Verification::NotYet {
                    username: keys.username.clone(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Path, SessionStatus};

    const NUMBER: &str = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";

    fn peer(tag: &str) -> PeerId {
        PeerId::parse(&format!("{tag:0>8}-0000-4000-8000-000000000000")).unwrap()
    }

    fn connected(tag: &str, name: &str, number: Option<&str>) -> Event {
        Event::Connected {
            peer_id: peer(tag),
            username: name.into(),
            addr: "127.0.0.1:9".into(),
            path: Path::Lan,
            rtt_ms: None,
            reliable: number.is_some(),
            incoming: false,
            probe_rounds: 1,
            encrypted: number.is_some(),
            safety_number: number.map(str::to_owned),
        }
    }

    #[test]
    fn verify_finds_the_active_or_named_session() {
        let mut v = Verifier::default();
        assert_eq!(v.verify(None), Verification::Unknown { target: None });
        assert!(v.verify(None).worth_asking());
        v.on_event(&connected("bbbb", "bob", Some(NUMBER)));
        // The only session counts as the active one.
        let number = Verification::Number {
            username: "bob".into(),
            safety_number: NUMBER.into(),
        };
        assert_eq!(v.verify(None), number);
        v.on_event(&connected("5eed", "seedy", None));
        assert_eq!(v.verify(None), Verification::Unknown { target: None });
        v.on_event(&Event::Focus {
            peer_id: Some(peer("bbbb")),
        });
        assert_eq!(v.verify(None), number);
        assert_eq!(v.verify(Some("bob")), number);
        assert_eq!(v.verify(Some("0000bb")), number, "an id prefix");
        assert_eq!(
            v.verify(Some("seedy")),
            Verification::Plaintext {
                username: "seedy".into()
            }
        );
        assert!(!v.verify(Some("seedy")).worth_asking());
        assert_eq!(
            v.verify(Some("0000")),
            Verification::Ambiguous {
                target: "0000".into()
            }
        );
        assert_eq!(
            v.verify(Some("carol")),
            Verification::Unknown {
                target: Some("carol".into())
            }
        );
        let lines = number.lines();
        assert_eq!(lines[0], "Safety number with bob:");
        assert_eq!(lines[1], "    11111 22222 33333 44444");
        assert_eq!(lines[3], "    99999 00000 12345 67890");
        assert!(lines[4].contains("out of band"), "{lines:?}");
        v.on_event(&Event::Disconnected {
            peer_id: peer("bbbb"),
            username: "bob".into(),
            reason: crate::engine::DisconnectReason::Local,
        });
        assert_eq!(
            v.verify(Some("bob")),
            Verification::Unknown {
                target: Some("bob".into())
            }
        );
    }

    #[test]
    fn a_status_replaces_what_was_known() {
        let mut v = Verifier::default();
        let mut early = connected("bbbb", "bob", Some(NUMBER));
        if let Event::Connected { safety_number, .. } = &mut early {
            *safety_number = None;
        }
        v.on_event(&early);
        assert_eq!(
            v.verify(None),
            Verification::NotYet {
                username: "bob".into()
            }
        );
        v.on_event(&Event::Status {
            id: Some(1),
            server_connected: true,
            sessions: vec![SessionStatus {
                peer_id: peer("bbbb"),
                username: "bob".into(),
                state: SessionState::Connected,
                active: true,
                addr: None,
                path: None,
                rtt_ms: None,
                reliable: true,
                pending: 0,
                encrypted: true,
                safety_number: Some(NUMBER.into()),
            }],
        });
        assert!(matches!(v.verify(None), Verification::Number { .. }));
    }

    #[tokio::test]
    async fn pending_commands_stop_input_at_the_limit_and_go_out_in_order() {
        let mut pending = Pending::default();
        for i in 0..MAX_PENDING_COMMANDS {
            assert!(pending.has_room(), "room for command {i}");
            pending.push(Command::Send(format!("line {i}")));
        }
        assert!(!pending.has_room(), "input stops at the limit");
        let (tx, mut rx) = mpsc::channel(1);
        pending.send_next(&tx).await;
        assert!(pending.has_room(), "one handed over makes room");
        let first = rx.recv().await.expect("a request");
        assert_eq!(first.command, Command::Send("line 0".into()));
    }
}
