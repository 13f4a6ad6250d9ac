//! Render tests: the state driven by engine events and keys, drawn on
//! ratatui's `TestBackend`, read back cell by cell.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::state::{App, MAX_CHAT_ENTRIES};
use super::view;
use crate::engine::{Command, DisconnectReason, ErrorCode, Event, Path, PeerSummary, Via};
use p2pchat::PeerId;

const ME: &str = "0a1b2c3d-0000-4000-8000-00000000000a";
const BOB: &str = "b0b0b0b0-1111-4000-8000-00000000000b";
const CAROL: &str = "ca201ca2-2222-4000-8000-00000000000c";

fn id(text: &str) -> PeerId {
    PeerId::parse(text).unwrap()
}

fn app() -> App {
    App::new(id(ME), "alice", || "12:34".to_owned())
}

/// Draws `app` on a `width` x `height` test terminal; returns its rows.
fn draw(app: &mut App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    let mut info = None;
    terminal
        .draw(|frame| info = Some(view::draw(frame, app)))
        .expect("draw");
    if let Some(info) = info {
        app.set_viewport(info.chat_rows, info.scroll);
    }
    let buffer = terminal.backend().buffer().clone();
    for cell in buffer.content() {
        let symbol = cell.symbol();
        assert!(
            !symbol.chars().any(is_dangerous),
            "cell holds a control or bidi character: {symbol:?}"
        );
    }
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// What must never reach the terminal: C0/DEL/C1 controls and bidi
/// overrides/isolates.
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn screen(rows: &[String]) -> String {
    rows.join("\n")
}

/// The frame is intact: the pane borders sit where the layout puts them on
/// every row, and the status bar is the last row.
fn assert_layout(rows: &[String], width: usize) {
    let height = rows.len();
    let chars = |y: usize| rows[y].chars().collect::<Vec<char>>();
    assert_eq!(chars(0)[0], '┌', "{}", screen(rows));
    assert!(
        rows[height - 1].starts_with(" server: "),
        "status bar last: {}",
        screen(rows)
    );
    for (y, row) in rows.iter().enumerate() {
        assert_eq!(row.chars().count(), width, "row {y} has {width} cells");
    }
    // The chat pane's right border runs down the main area.
    let input_rows = if height >= usize::from(view::BORDERED_INPUT_MIN_HEIGHT) {
        3
    } else {
        1
    };
    for y in 1..height - 2 - input_rows {
        let row = chars(y);
        assert!(
            matches!(row[width - 1], '│' | '┐' | '┘' | '┌' | '└'),
            "right border broken on row {y}: {}",
            screen(rows)
        );
        assert!(
            matches!(row[0], '│' | '┐' | '┘' | '┌' | '└'),
            "left border broken on row {y}: {}",
            screen(rows)
        );
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn type_line(app: &mut App, text: &str) -> Option<Command> {
    for ch in text.chars() {
        app.on_key(key(KeyCode::Char(ch)));
    }
    app.on_key(key(KeyCode::Enter)).map(|r| r.command)
}

fn joined(id: &str, name: &str) -> Event {
    Event::PeerJoined {
        peer_id: self::id(id),
        username: name.into(),
    }
}

const NUMBER: &str = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";

/// A session coming up; an unreliable one is a seed peer's: plaintext.
fn connected(id: &str, name: &str, path: Path, reliable: bool) -> Event {
    Event::Connected {
        peer_id: self::id(id),
        username: name.into(),
        addr: "127.0.0.1:40000".into(),
        path,
        rtt_ms: None,
        reliable,
        incoming: false,
        probe_rounds: 1,
        encrypted: reliable,
        safety_number: reliable.then(|| NUMBER.to_owned()),
    }
}

fn message(id: &str, name: &str, text: &str, encrypted: bool) -> Event {
    Event::Message {
        from: self::id(id),
        username: name.into(),
        text: text.into(),
        sent_at: 1.0,
        encrypted,
    }
}

/// What the engine emits when a session we asked for comes up: the
/// session, then the focus on it.
fn connect(app: &mut App, id: &str, name: &str, path: Path, reliable: bool) {
    app.on_event(&connected(id, name, path, reliable));
    app.on_event(&Event::Focus {
        peer_id: Some(self::id(id)),
    });
}

fn line_with<'a>(rows: &'a [String], needle: &str) -> Option<&'a String> {
    rows.iter().find(|r| r.contains(needle))
}

#[test]
fn peers_appear_and_disappear_live() {
    let mut app = app();
    let rows = draw(&mut app, 100, 30);
    assert!(screen(&rows).contains("peers (0 online)"));
    assert!(screen(&rows).contains("nobody else is online"));
    assert_layout(&rows, 100);

    app.on_event(&Event::Peers {
        id: None,
        peers: vec![PeerSummary {
            peer_id: id(BOB),
            username: "bob".into(),
            via: Via::Grpc,
        }],
    });
    app.on_event(&joined(CAROL, "carol"));
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("peers (2 online)"), "{text}");
    assert!(line_with(&rows, "│  bob").is_some(), "{text}");
    assert!(line_with(&rows, "b0b0b0b0 online").is_some(), "{text}");
    assert!(line_with(&rows, "ca201ca2 online").is_some(), "{text}");
    assert_layout(&rows, 100);

    app.on_event(&Event::PeerLeft {
        peer_id: id(BOB),
        username: "bob".into(),
    });
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("peers (1 online)"), "{text}");
    assert!(!text.contains("b0b0b0b0"), "bob left: {text}");
    assert!(text.contains("carol"), "{text}");
}

#[test]
fn messages_show_senders_times_and_delivery_marks() {
    let mut app = app();
    app.on_event(&joined(BOB, "bob"));
    connect(&mut app, BOB, "bob", Path::Lan, true);
    app.on_event(&Event::Message {
        from: id(BOB),
        username: "bob".into(),
        text: "hello alice".into(),
        sent_at: 1.0,
        encrypted: true,
    });
    for text in ["first", "second", "third", "fourth"] {
        assert_eq!(type_line(&mut app, text), Some(Command::Send(text.into())));
    }
    // The lines' request ids are 1 to 4, in typing order.
    let sent = |line| Event::Sent {
        id: Some(line),
        to: id(BOB),
        line,
        reliable: true,
    };
    app.on_event(&sent(1));
    app.on_event(&sent(2));
    app.on_event(&sent(3));
    app.on_event(&Event::Delivered {
        to: id(BOB),
        line: 1,
    });
    app.on_event(&Event::Undeliverable {
        to: id(BOB),
        line: 2,
    });
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("chat with bob"), "{text}");
    assert!(text.contains("12:34 bob: hello alice"), "{text}");
    assert!(text.contains("12:34 alice: first ✓✓ "), "{text}");
    assert!(
        text.contains("12:34 alice: second ✗ not delivered"),
        "{text}"
    );
    assert!(text.contains("12:34 alice: third ✓ "), "{text}");
    assert!(text.contains("12:34 alice: fourth · "), "{text}");
    assert!(
        text.contains("* connected to bob at 127.0.0.1:40000 (lan)"),
        "{text}"
    );
    // The peer list marks the active peer, and its encryption.
    assert!(line_with(&rows, "│▶ bob [e2e]").is_some(), "{text}");
    assert!(line_with(&rows, "b0b0b0b0 connected").is_some(), "{text}");
    assert_layout(&rows, 100);
}

#[test]
fn status_bar_follows_server_session_path_and_rtt() {
    let mut app = app();
    let status = |app: &mut App| draw(app, 120, 20).last().cloned().unwrap_or_default();
    let bar = status(&mut app);
    assert!(
        bar.starts_with(" server: connected | alice 0a1b2c3d | no chat"),
        "{bar}"
    );
    app.on_event(&joined(BOB, "bob"));
    app.on_event(&Event::Connecting {
        peer_id: id(BOB),
        username: "bob".into(),
        attempt: 2,
        endpoints: vec!["127.0.0.1:1".into()],
    });
    let bar = status(&mut app);
    assert!(bar.contains("| bob: connecting (attempt 2)"), "{bar}");
    connect(&mut app, BOB, "bob", Path::Direct, true);
    let bar = status(&mut app);
    assert!(bar.contains("| bob: connected, direct"), "{bar}");
    app.on_event(&Event::Rtt {
        peer_id: id(BOB),
        rtt_ms: 12.345,
    });
    let bar = status(&mut app);
    assert!(bar.contains("bob: connected, direct, rtt 12.3 ms"), "{bar}");
    app.on_event(&Event::ServerLost {
        error: "connection refused".into(),
    });
    let bar = status(&mut app);
    assert!(bar.starts_with(" server: reconnecting..."), "{bar}");
    app.on_event(&Event::ServerRestored {});
    let bar = status(&mut app);
    assert!(bar.starts_with(" server: connected"), "{bar}");
    // A path the engine reports later ("relayed") is shown as it is.
    app.on_event(&Event::Connected {
        peer_id: id(BOB),
        username: "bob".into(),
        addr: "203.0.113.1:3478".into(),
        path: Path::Relayed,
        rtt_ms: Some(80.0),
        reliable: true,
        incoming: false,
        probe_rounds: 0,
        encrypted: true,
        safety_number: None,
    });
    let bar = status(&mut app);
    assert!(
        bar.contains("bob: connected, relayed, rtt 80.0 ms"),
        "{bar}"
    );
    // The session moves to a direct path in the background.
    app.on_event(&Event::PathChanged {
        peer_id: id(BOB),
        addr: "203.0.113.12:40000".into(),
        path: Path::Direct,
    });
    let bar = status(&mut app);
    assert!(bar.contains("bob: connected, direct"), "{bar}");
    let rows = draw(&mut app, 120, 20);
    assert!(
        screen(&rows).contains("chat with bob now uses the direct path (203.0.113.12:40000)"),
        "{}",
        screen(&rows)
    );
    app.on_event(&Event::Disconnected {
        peer_id: id(BOB),
        username: "bob".into(),
        reason: DisconnectReason::RemoteDisconnect,
    });
    let rows = draw(&mut app, 120, 20);
    assert!(rows[19].contains("| no chat"), "{}", rows[19]);
    assert!(screen(&rows).contains("* bob disconnected"));
    assert_eq!(type_line(&mut app, "/quit"), Some(Command::Quit));
    let bar = status(&mut app);
    assert!(bar.contains("| quitting..."), "{bar}");
}

#[test]
fn hostile_names_and_text_cannot_reach_the_terminal() {
    let hostile_name = "\u{1b}[2J\u{1b}]0;pwned\u{7}mal\rlory\u{202e}\u{9b}31m";
    let hostile_text =
        "hi\u{1b}[31mred\u{1b}[0m\r\u{7}\u{8}\u{8}\u{7f}\u{2066}x\u{2069}\u{200b}\n\u{1b}[H";
    for (width, height) in [(100, 30), (44, 16), (160, 50)] {
        let mut app = app();
        app.on_event(&Event::Peers {
            id: None,
            peers: vec![PeerSummary {
                peer_id: id(BOB),
                username: hostile_name.into(),
                via: Via::Rest,
            }],
        });
        connect(&mut app, BOB, hostile_name, Path::Lan, true);
        app.on_event(&Event::Message {
            from: id(BOB),
            username: hostile_name.into(),
            text: hostile_text.into(),
            sent_at: 1.0,
            encrypted: true,
        });
        app.on_event(&Event::Error {
            id: None,
            code: ErrorCode::UnknownPeer,
            message: hostile_text.into(),
        });
        app.on_event(&Event::ServerLost {
            error: hostile_text.into(),
        });
        // Typed text is shown through the same filter.
        for ch in "\u{1b}[2Jtyped".chars() {
            app.on_key(key(KeyCode::Char(ch)));
        }
        // `draw` fails on any control or bidi character in any cell.
        let rows = draw(&mut app, width, height);
        let text = screen(&rows);
        assert_layout(&rows, usize::from(width));
        assert!(text.contains(r"\x1b[2J\x1b]0;pwned\x07mal"), "{text}");
        assert!(text.contains("> [2Jtyped"), "ESC is not typed: {text}");
        if width >= 100 {
            assert!(
                text.contains(r"hi\x1b[31mred\x1b[0m\x0d\x07\x08\x08\x7f\u{2066}x\u{2069}"),
                "{text}"
            );
        }
    }
}

#[test]
fn long_lines_wrap_and_page_keys_scroll() {
    let mut app = app();
    app.on_event(&joined(BOB, "bob"));
    connect(&mut app, BOB, "bob", Path::Lan, true);
    let words: Vec<String> = (0..400).map(|i| format!("w{i:03}")).collect();
    app.on_event(&Event::Message {
        from: id(BOB),
        username: "bob".into(),
        text: words.join(" "),
        sent_at: 1.0,
        encrypted: true,
    });
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("w399"), "newest at the bottom: {text}");
    assert!(!text.contains("w000"), "too long to show whole: {text}");
    // Continuation rows are indented past the time stamp.
    assert!(line_with(&rows, "│      w1").is_some(), "{text}");
    app.on_key(key(KeyCode::PageUp));
    app.on_key(key(KeyCode::PageUp));
    app.on_key(key(KeyCode::PageUp));
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("bob: w000"), "scrolled to the top: {text}");
    assert!(text.contains("scrolled up"), "{text}");
    // Scrolling past the top stops there.
    for _ in 0..10 {
        app.on_key(key(KeyCode::PageUp));
    }
    let rows = draw(&mut app, 100, 30);
    assert!(screen(&rows).contains("bob: w000"));
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageDown));
    }
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(
        text.contains("w399") && !text.contains("scrolled up"),
        "{text}"
    );
}

#[test]
fn resizing_reflows_narrow_wide_and_tiny() {
    let mut app = app();
    for i in 0..5 {
        app.on_event(&joined(
            &format!("{i:08}-0000-4000-8000-000000000000"),
            &format!("peer{i}"),
        ));
    }
    app.on_event(&Event::Message {
        from: id("00000001-0000-4000-8000-000000000000"),
        username: "peer1".into(),
        text: "a fairly long line that needs wrapping on a narrow terminal".into(),
        sent_at: 1.0,
        encrypted: true,
    });
    let wide = draw(&mut app, 160, 50);
    assert_layout(&wide, 160);
    let text = screen(&wide);
    assert!(text.contains("peer1: a fairly long line that needs wrapping on a narrow terminal"));
    // Side by side: the peer list and the chat share the top row.
    assert!(wide[0].contains("peers (5 online)") && wide[0].contains("chat"));

    let narrow = draw(&mut app, 40, 24);
    assert_layout(&narrow, 40);
    let text = screen(&narrow);
    // Stacked: the peer list above the chat, one row per peer.
    assert!(narrow[0].contains("peers (5 online)"), "{text}");
    assert!(!narrow[0].contains("chat"), "{text}");
    assert!(
        line_with(&narrow, "peer0 00000000 online").is_some(),
        "{text}"
    );
    assert!(text.contains("peer1: a fairly long line"), "{text}");
    assert!(text.contains("      needs wrapping on a narrow"), "{text}");

    // Too small to be useful, but never a panic.
    for (w, h) in [(1, 1), (0, 0), (5, 3), (200, 2), (12, 40)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        terminal
            .draw(|frame| {
                view::draw(frame, &app);
            })
            .expect("draw");
    }
}

#[test]
fn a_full_history_draws_quickly_enough_and_bounded() {
    let mut app = app();
    let long = "x".repeat(16 * 1024);
    for _ in 0..MAX_CHAT_ENTRIES + 10 {
        app.on_event(&Event::Info {
            message: long.clone(),
        });
    }
    assert_eq!(app.entries().len(), MAX_CHAT_ENTRIES);
    // Only the rows on screen are wrapped: drawing stays cheap.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        draw(&mut app, 100, 30);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "drawing took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_directory_at_its_limit_is_listed_and_follows_the_selection() {
    let mut app = app();
    let peers: Vec<PeerSummary> = (0..crate::signaling::MAX_DIRECTORY_PEERS)
        .map(|i| PeerSummary {
            peer_id: id(&format!("{i:08x}-0000-4000-8000-000000000000")),
            username: format!("user{i:05}"),
            via: Via::Grpc,
        })
        .collect();
    app.on_event(&Event::peers(peers));
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("peers (10000 online)"), "{text}");
    assert!(text.contains("user00000"), "{text}");
    for _ in 0..50 {
        app.on_key(key(KeyCode::Down));
    }
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(
        text.contains("user00050"),
        "the list scrolls to the selection: {text}"
    );
    assert!(!text.contains("user00000"), "{text}");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)).map(|r| r.command),
        Some(Command::Connect(
            "00000032-0000-4000-8000-000000000000".into()
        ))
    );
}

#[test]
fn encryption_is_marked_in_the_list_titles_status_bar_and_lines() {
    let mut app = app();
    app.on_event(&joined(BOB, "bob"));
    app.on_event(&joined(CAROL, "seedy"));
    connect(&mut app, CAROL, "seedy", Path::Lan, false);
    connect(&mut app, BOB, "bob", Path::Lan, true);
    app.on_event(&message(BOB, "bob", "sealed hello", true));
    app.on_event(&message(CAROL, "seedy", "plain hello", false));
    let rows = draw(&mut app, 160, 30);
    let text = screen(&rows);
    assert_layout(&rows, 160);
    assert!(line_with(&rows, "│▶ bob [e2e]").is_some(), "{text}");
    assert!(
        line_with(&rows, "│  seedy [unencrypted]").is_some(),
        "{text}"
    );
    assert!(text.contains("chat with bob [e2e]"), "{text}");
    assert!(text.contains("message to bob [e2e]"), "{text}");
    assert!(
        rows[29].contains("bob: connected, lan, end-to-end encrypted"),
        "{}",
        rows[29]
    );
    // An encrypted line looks as it always did; a plaintext one is marked
    // before anything its sender controls.
    assert!(text.contains("12:34 bob: sealed hello"), "{text}");
    assert!(!text.contains("[unencrypted] bob"), "{text}");
    assert!(
        text.contains("12:34 [unencrypted] seedy: plain hello"),
        "{text}"
    );
    assert!(
        text.contains(
            "* connected to bob at 127.0.0.1:40000 (lan); end-to-end encrypted; /verify shows the safety number"
        ),
        "{text}"
    );
    assert!(
        text.contains("! NOT encrypted: seedy speaks the seed protocol; anyone on the path"),
        "{text}"
    );

    // The plaintext session in front: every header says so.
    app.on_event(&Event::Focus {
        peer_id: Some(id(CAROL)),
    });
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("chat with seedy [unencrypted]"), "{text}");
    assert!(text.contains("message to seedy [unencrypted]"), "{text}");
    assert!(
        rows[29].contains("seedy: connected, lan, seed protocol, NOT encrypted"),
        "{}",
        rows[29]
    );
    // Narrow: the list stacks above the chat and keeps the marks.
    let rows = draw(&mut app, 50, 24);
    assert_layout(&rows, 50);
    let text = screen(&rows);
    assert!(
        line_with(&rows, "bob [e2e] b0b0b0b0 connected").is_some(),
        "{text}"
    );
    assert!(
        line_with(&rows, "seedy [unencrypted] ca201ca2").is_some(),
        "{text}"
    );
}

#[test]
fn verify_shows_the_safety_number_in_the_chat_pane() {
    let mut app = app();
    app.on_event(&joined(BOB, "bob"));
    connect(&mut app, BOB, "bob", Path::Lan, true);
    assert_eq!(type_line(&mut app, "/verify"), None, "known: no request");
    let rows = draw(&mut app, 100, 30);
    let text = screen(&rows);
    assert!(text.contains("* Safety number with bob:"), "{text}");
    assert!(text.contains("*     11111 22222 33333 44444"), "{text}");
    assert!(text.contains("*     55555 66666 77777 88888"), "{text}");
    assert!(text.contains("*     99999 00000 12345 67890"), "{text}");
    assert!(
        text.contains("* Compare it with the number bob sees"),
        "{text}"
    );
    assert_layout(&rows, 100);
    assert_eq!(
        type_line(&mut app, "/trust bob"),
        Some(Command::Trust("bob".into()))
    );
    app.on_event(&Event::Info {
        message: "forgot the key pinned for bob; the next connection pins the key it presents"
            .into(),
    });
    let text = screen(&draw(&mut app, 100, 30));
    assert!(text.contains("* forgot the key pinned for bob"), "{text}");
}
