//! The UI state driven by hand: events in, keys in, no terminal.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::engine::{
    Command, DisconnectReason, ErrorCode, Event, Path, PeerSummary, Request, SessionState,
    SessionStatus, Via,
};

/// A peer id from a short hex tag ("bbbb").
fn id(tag: &str) -> PeerId {
    PeerId::parse(&format!("{tag:0>8}-0000-4000-8000-000000000000")).unwrap()
}

fn app() -> App {
    App::new(id("eeee"), "me", || "12:00".to_owned())
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn typed(app: &mut App, text: &str) -> Option<Command> {
    typed_request(app, text).map(|r| r.command)
}

fn typed_request(app: &mut App, text: &str) -> Option<Request> {
    for ch in text.chars() {
        assert_eq!(app.on_key(key(KeyCode::Char(ch))), None);
    }
    app.on_key(key(KeyCode::Enter))
}

fn enter(app: &mut App) -> Option<Command> {
    app.on_key(key(KeyCode::Enter)).map(|r| r.command)
}

fn joined(tag: &str, name: &str) -> Event {
    Event::PeerJoined {
        peer_id: id(tag),
        username: name.into(),
    }
}

fn connected(tag: &str, name: &str, incoming: bool) -> Event {
    Event::Connected {
        peer_id: id(tag),
        username: name.into(),
        addr: "127.0.0.1:9".into(),
        path: Path::Lan,
        rtt_ms: None,
        reliable: true,
        incoming,
        probe_rounds: 1,
        encrypted: true,
        safety_number: None,
    }
}

fn delivery_of(app: &App, text: &str) -> Delivery {
    app.entries()
        .find_map(|e| match &e.kind {
            EntryKind::Outgoing { delivery, .. } if e.text == text => Some(*delivery),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no line {text:?}"))
}

#[test]
fn arrows_select_and_enter_connects_the_selection() {
    let mut app = app();
    assert_eq!(enter(&mut app), None, "nobody to connect to");
    app.on_event(&joined("bbbb", "bob"));
    app.on_event(&joined("aaaa", "alice"));
    app.on_event(&joined("eeee", "me"));
    let names: Vec<&str> = app.peers().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"], "sorted by name, never us");
    assert_eq!(app.selected, Some(id("bbbb")), "first peer selected");
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.selected, Some(id("aaaa")));
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.selected, Some(id("aaaa")), "stops at the top");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.selected, Some(id("bbbb")), "stops at the bottom");
    assert_eq!(
        enter(&mut app),
        Some(Command::Connect(id("bbbb").to_string()))
    );
    app.on_event(&connected("bbbb", "bob", false));
    app.on_event(&focus(Some("bbbb")));
    assert_eq!(enter(&mut app), None, "already chatting");
    // The selected peer leaves: the selection moves to a neighbour.
    app.on_event(&Event::Disconnected {
        peer_id: id("bbbb"),
        username: "bob".into(),
        reason: DisconnectReason::Left,
    });
    app.on_event(&Event::PeerLeft {
        peer_id: id("bbbb"),
        username: "bob".into(),
    });
    assert_eq!(app.selected, Some(id("aaaa")));
    assert_eq!(app.peers().len(), 1);
}

#[test]
fn typed_lines_become_commands_and_marks_follow_receipts() {
    let mut app = app();
    assert_eq!(typed(&mut app, "/peers"), Some(Command::Peers));
    assert_eq!(
        typed(&mut app, "/c bob"),
        Some(Command::Connect("bob".into()))
    );
    assert_eq!(typed(&mut app, "/nope"), None);
    assert_eq!(typed(&mut app, "/help"), None);
    assert!(app.entries().any(|e| e.text == KEYS_HELP));
    assert!(
        app.entries()
            .any(|e| e.kind == EntryKind::Error && e.text.contains("/nope"))
    );
    app.on_event(&connected("bbbb", "bob", false));
    assert_eq!(typed(&mut app, "one"), Some(Command::Send("one".into())));
    assert_eq!(typed(&mut app, "two"), Some(Command::Send("two".into())));
    assert_eq!(
        typed(&mut app, "three"),
        Some(Command::Send("three".into()))
    );
    assert_eq!(delivery_of(&app, "one"), Delivery::Queued);
    // The requests' ids: /peers 1, /c bob 2, then one 3, two 4, three 5.
    let sent = |line| Event::Sent {
        id: Some(line + 2),
        to: id("bbbb"),
        line,
        reliable: true,
    };
    app.on_event(&sent(1));
    app.on_event(&sent(2));
    app.on_event(&Event::Error {
        id: Some(5),
        code: ErrorCode::SendFailed,
        message: "too many lines in flight".into(),
    });
    app.on_event(&Event::Delivered {
        to: id("bbbb"),
        line: 1,
    });
    app.on_event(&Event::Undeliverable {
        to: id("bbbb"),
        line: 2,
    });
    assert_eq!(delivery_of(&app, "one"), Delivery::Delivered);
    assert_eq!(delivery_of(&app, "two"), Delivery::Failed);
    assert_eq!(delivery_of(&app, "three"), Delivery::Failed);
    assert_eq!(typed(&mut app, "/quit"), Some(Command::Quit));
    assert!(app.quitting());
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), None, "one quit is enough");
}

#[test]
fn sent_and_errors_pair_with_lines_by_request_id_not_arrival_order() {
    let mut app = app();
    app.on_event(&connected("bbbb", "bob", false));
    app.on_event(&focus(Some("bbbb")));
    let one = typed_request(&mut app, "one").and_then(|r| r.id).unwrap();
    let two = typed_request(&mut app, "two").and_then(|r| r.id).unwrap();
    assert_ne!(one, two);
    // The answers come the other way round: two went out, one failed.
    app.on_event(&Event::Sent {
        id: Some(two),
        to: id("bbbb"),
        line: 1,
        reliable: true,
    });
    app.on_event(&Event::Error {
        id: Some(one),
        code: ErrorCode::SendFailed,
        message: "line too long".into(),
    });
    // An error that answers no line of ours leaves them alone.
    app.on_event(&Event::error(ErrorCode::UnknownPeer, "no such peer"));
    assert_eq!(delivery_of(&app, "one"), Delivery::Failed);
    assert_eq!(delivery_of(&app, "two"), Delivery::Sent);
}

#[test]
fn ctrl_c_quits_and_editing_keys_edit() {
    let mut app = app();
    for ch in "hllo".chars() {
        app.on_key(key(KeyCode::Char(ch)));
    }
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::Right));
    app.on_key(key(KeyCode::Char('e')));
    app.on_key(key(KeyCode::End));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::Delete));
    assert_eq!(app.input, "ell");
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    assert_eq!(app.input, "");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), Some(Command::Quit.into()));
}

#[test]
fn input_stops_at_its_byte_limit() {
    let mut app = app();
    app.input = "x".repeat(MAX_INPUT_BYTES - 1);
    app.cursor = MAX_INPUT_BYTES - 1;
    app.on_key(key(KeyCode::Char('é')));
    assert_eq!(
        app.input.len(),
        MAX_INPUT_BYTES - 1,
        "a 2-byte char does not fit"
    );
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(app.input.len(), MAX_INPUT_BYTES);
    app.on_key(key(KeyCode::Char('z')));
    assert_eq!(app.input.len(), MAX_INPUT_BYTES);
}

#[test]
fn history_keeps_the_newest_entries() {
    let mut app = app();
    for i in 0..MAX_CHAT_ENTRIES + 5 {
        app.on_event(&Event::Info {
            message: format!("n{i}"),
        });
    }
    assert_eq!(app.entries().len(), MAX_CHAT_ENTRIES);
    assert_eq!(
        app.entries().last().map(|e| e.text.clone()),
        Some(format!("n{}", MAX_CHAT_ENTRIES + 4))
    );
}

#[test]
fn peer_list_follows_snapshots_and_keeps_session_peers() {
    let mut app = app();
    let summary = |tag: &str, name: &str| PeerSummary {
        peer_id: id(tag),
        username: name.into(),
        via: Via::Grpc,
    };
    app.on_event(&Event::peers(vec![
        summary("aaaa", "alice"),
        summary("bbbb", "bob"),
    ]));
    app.on_event(&connected("bbbb", "bob", true));
    app.on_event(&focus(Some("bbbb")));
    assert_eq!(
        app.active,
        Some(id("bbbb")),
        "incoming, nothing else active"
    );
    // A resync after a server restart: bob has not re-registered yet.
    app.on_event(&Event::peers(vec![summary("cccc", "carol")]));
    let rows: Vec<(&str, PeerState)> = app
        .peers()
        .iter()
        .map(|p| (p.name.as_str(), app.peer_state(p)))
        .collect();
    assert_eq!(
        rows,
        [("bob", PeerState::Connected), ("carol", PeerState::Online)]
    );
    app.on_event(&Event::Disconnected {
        peer_id: id("bbbb"),
        username: "bob".into(),
        reason: DisconnectReason::Timeout,
    });
    app.on_event(&focus(None));
    assert_eq!(app.peers().len(), 1, "bob is gone with its session");
    assert!(app.active.is_none());
}

fn focus(tag: Option<&str>) -> Event {
    Event::Focus {
        peer_id: tag.map(id),
    }
}

#[test]
fn the_active_peer_is_the_one_the_engine_reports() {
    // With C active, the user asks for A, then B; A comes up first. The
    // engine keeps typed lines going to C (B is the one wanted), so the
    // UI must show C, not guess from `connected`.
    let mut app = app();
    app.on_event(&connected("cccc", "carol", false));
    app.on_event(&focus(Some("cccc")));
    assert_eq!(
        typed(&mut app, "/c alice"),
        Some(Command::Connect("alice".into()))
    );
    assert_eq!(
        typed(&mut app, "/c bob"),
        Some(Command::Connect("bob".into()))
    );
    app.on_event(&connected("aaaa", "alice", false));
    assert_eq!(app.active, Some(id("cccc")));
    assert_eq!(app.active_session().map(|s| s.name.as_str()), Some("carol"));
    app.on_event(&connected("bbbb", "bob", false));
    app.on_event(&focus(Some("bbbb")));
    assert_eq!(app.active, Some(id("bbbb")));
    app.on_event(&Event::Disconnected {
        peer_id: id("bbbb"),
        username: "bob".into(),
        reason: DisconnectReason::RemoteDisconnect,
    });
    app.on_event(&focus(None));
    assert!(app.active.is_none());
}

#[test]
fn the_highlighted_row_follows_the_active_peer() {
    let mut app = app();
    app.on_event(&joined("aaaa", "alice"));
    app.on_event(&joined("bbbb", "bob"));
    app.on_event(&joined("cccc", "carol"));
    assert_eq!(app.selected, Some(id("aaaa")));
    // An incoming session becomes active: highlight and ▶ agree.
    app.on_event(&connected("cccc", "carol", true));
    app.on_event(&focus(Some("cccc")));
    assert_eq!(app.selected, app.active);
    let marked = app.peers().iter().position(|p| Some(p.id) == app.active);
    assert_eq!(app.selected_index(), marked);
    // Arrows still move the highlight to pick another peer.
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.selected, Some(id("bbbb")));
}

#[test]
fn unknown_events_are_shown_generically() {
    let mut app = app();
    app.on_event(&connected("bbbb", "bob", false));
    app.on_event(&focus(Some("bbbb")));
    app.on_other_event(&Event::Rtt {
        peer_id: id("bbbb"),
        rtt_ms: 2.5,
    });
    let last = app.entries().last().map(|e| e.text.clone());
    assert_eq!(last.as_deref(), Some("rtt: peer bob, rtt_ms 2.5"));
    // Any event naming a peer and a path moves that session's path.
    let mut moved = connected("bbbb", "bob", false);
    if let Event::Connected { path, .. } = &mut moved {
        *path = Path::Relayed;
    }
    app.on_other_event(&moved);
    let path = app.active_session().and_then(|s| s.path.clone());
    assert_eq!(path.as_deref(), Some("relayed"));
}

const NUMBER: &str = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";

fn seed_connected(tag: &str, name: &str) -> Event {
    let mut event = connected(tag, name, true);
    if let Event::Connected {
        reliable,
        encrypted,
        safety_number,
        ..
    } = &mut event
    {
        *reliable = false;
        *encrypted = false;
        *safety_number = None;
    }
    event
}

fn status(id: Option<u64>, sessions: Vec<SessionStatus>) -> Event {
    Event::Status {
        id,
        server_connected: true,
        sessions,
    }
}

fn session(tag: &str, name: &str, encrypted: bool, number: Option<&str>) -> SessionStatus {
    SessionStatus {
        peer_id: id(tag),
        username: name.into(),
        state: SessionState::Connected,
        active: true,
        addr: Some("127.0.0.1:9".into()),
        path: Some(Path::Lan),
        rtt_ms: None,
        reliable: encrypted,
        pending: 0,
        encrypted,
        safety_number: number.map(str::to_owned),
    }
}

fn texts(app: &App) -> Vec<String> {
    app.entries().map(|e| e.text.clone()).collect()
}

#[test]
fn sessions_know_their_protection_and_lines_are_marked() {
    let mut app = app();
    app.on_event(&joined("bbbb", "bob"));
    app.on_event(&joined("5eed", "seedy"));
    app.on_event(&Event::Connecting {
        peer_id: id("bbbb"),
        username: "bob".into(),
        attempt: 1,
        endpoints: vec![],
    });
    let row = |app: &App, name: &str| {
        app.peers()
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(app.encrypted(&row(&app, "bob")), None, "probing: no mark");
    app.on_event(&connected("bbbb", "bob", false));
    app.on_event(&seed_connected("5eed", "seedy"));
    assert_eq!(app.encrypted(&row(&app, "bob")), Some(true));
    assert_eq!(app.encrypted(&row(&app, "seedy")), Some(false));
    // The plaintext warning is an error line of its own.
    assert!(app.entries().any(|e| e.kind == EntryKind::Error
        && e.text
            == "NOT encrypted: seedy speaks the seed protocol; anyone on the path can read and forge these lines"));
    for (tag, name, encrypted) in [("bbbb", "bob", true), ("5eed", "seedy", false)] {
        app.on_event(&Event::Message {
            from: id(tag),
            username: name.into(),
            text: format!("from {name}"),
            sent_at: 1.0,
            encrypted,
        });
    }
    let kinds: Vec<&EntryKind> = app
        .entries()
        .filter(|e| e.text.starts_with("from "))
        .map(|e| &e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            &EntryKind::Incoming {
                from: "bob".into(),
                encrypted: true
            },
            &EntryKind::Incoming {
                from: "seedy".into(),
                encrypted: false
            }
        ]
    );
    // A status says it too (and replaces what connected said).
    app.on_event(&status(None, vec![session("bbbb", "bob", false, None)]));
    assert_eq!(app.encrypted(&row(&app, "bob")), Some(false));
    assert!(
        texts(&app).last().is_some_and(
            |t| t.contains("bob (connected, lan 127.0.0.1:9, seed protocol, NOT encrypted)")
        ),
        "{:?}",
        texts(&app)
    );
}

#[test]
fn verify_answers_from_events_or_asks_for_a_status_first() {
    let mut app = app();
    // Nothing known yet: a status request, answered with the number only.
    let asked = typed_request(&mut app, "/verify").expect("a status request");
    assert_eq!(asked.command, Command::Status);
    let before = app.entries().len();
    app.on_event(&status(
        asked.id,
        vec![session("bbbb", "bob", true, Some(NUMBER))],
    ));
    let shown: Vec<String> = texts(&app)[before..].to_vec();
    assert_eq!(
        shown[..4],
        [
            "Safety number with bob:",
            "    11111 22222 33333 44444",
            "    55555 66666 77777 88888",
            "    99999 00000 12345 67890"
        ]
    );
    assert!(shown[4].contains("out of band"), "{shown:?}");
    assert_eq!(shown.len(), 5, "no status summary: {shown:?}");
    // Known now: answered without asking.
    assert_eq!(typed(&mut app, "/verify bob"), None);
    assert_eq!(
        texts(&app)
            .iter()
            .filter(|t| *t == "Safety number with bob:")
            .count(),
        2
    );
    // A plaintext session has no number, and says why.
    app.on_event(&seed_connected("5eed", "seedy"));
    assert_eq!(typed(&mut app, "/verify seedy"), None);
    assert!(texts(&app).last().is_some_and(|t| {
        t.starts_with("There is no encrypted session with seedy: it speaks the seed protocol")
    }));
    // Nobody by that name even after asking.
    let asked = typed_request(&mut app, "/verify carol").expect("a status request");
    app.on_event(&status(
        asked.id,
        vec![session("bbbb", "bob", true, Some(NUMBER))],
    ));
    assert_eq!(
        texts(&app).last().map(String::as_str),
        Some("There is no encrypted session with carol; /connect to it first.")
    );
    // A status the user asked for still gets its summary.
    assert_eq!(typed(&mut app, "/status"), Some(Command::Status));
    app.on_event(&status(
        None,
        vec![session("bbbb", "bob", true, Some(NUMBER))],
    ));
    assert!(
        texts(&app)
            .last()
            .is_some_and(|t| t.starts_with("signaling server: connected"))
    );
    assert_eq!(
        typed(&mut app, "/trust bob"),
        Some(Command::Trust("bob".into()))
    );
    assert_eq!(typed(&mut app, "/trust"), None);
    assert!(
        app.entries()
            .last()
            .is_some_and(|e| e.kind == EntryKind::Error)
    );
}
