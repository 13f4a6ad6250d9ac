//! The console's rendering and line interpretation, without a terminal.

use super::*;
use crate::engine::Path;

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

fn id(text: &str) -> PeerId {
    PeerId::parse(text).unwrap()
}

fn output(console: Console<Vec<u8>>) -> String {
    String::from_utf8(console.out).unwrap()
}

/// The command a typed line asks for (its request id aside).
fn cmd(c: &mut Console<Vec<u8>>, line: &str) -> Option<Command> {
    c.on_line(line).map(|r| r.command)
}

const NUMBER: &str = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";

fn connected(peer: &str, name: &str, encrypted: bool, number: Option<&str>) -> Event {
    Event::Connected {
        peer_id: id(peer),
        username: name.into(),
        addr: "127.0.0.1:9".into(),
        path: Path::Lan,
        rtt_ms: None,
        reliable: encrypted,
        incoming: false,
        probe_rounds: 1,
        encrypted,
        safety_number: number.map(str::to_owned),
    }
}

fn message(peer: &str, name: &str, text: &str, encrypted: bool) -> Event {
    Event::Message {
        from: id(peer),
        username: name.into(),
        text: text.into(),
        sent_at: 1.0,
        encrypted,
    }
}

#[test]
fn encrypted_sessions_say_so_and_plaintext_lines_are_marked() {
    let mut c = Console::new(Vec::new(), false);
    c.on_event(&connected(BOB, "bob", true, Some(NUMBER)));
    c.on_event(&message(BOB, "bob", "hi", true));
    c.on_event(&connected(ALICE, "seedy", false, None));
    c.on_event(&message(ALICE, "seedy", "plain hi", false));
    let out = output(c);
    assert!(
        out.contains(
            "Connected to bob (end-to-end encrypted; /verify shows the safety number)\n  at 127.0.0.1:9 (lan)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "Connected to seedy (NOT encrypted: seedy speaks the seed protocol; anyone on the path can read and forge these lines)"
        ),
        "{out}"
    );
    // Encrypted lines keep the seed's format exactly.
    assert!(out.contains("\n> [bob]: hi\n"), "{out}");
    assert!(!out.contains("[unencrypted] [bob]"), "{out}");
    assert!(out.contains("> [unencrypted] [seedy]: plain hi\n"), "{out}");
}

#[test]
fn verify_shows_the_number_or_asks_the_engine_first() {
    let mut c = Console::new(Vec::new(), false);
    // Nothing known: ask for a status, answer when it comes.
    let asked = c.on_line("/verify").expect("a status request");
    assert_eq!(asked.command, Command::Status);
    let status = |request, number: Option<&str>| Event::Status {
        id: request,
        server_connected: true,
        sessions: vec![SessionStatus {
            peer_id: id(BOB),
            username: "bob".into(),
            state: SessionState::Connected,
            active: true,
            addr: Some("127.0.0.1:9".into()),
            path: Some(Path::Lan),
            rtt_ms: Some(1.25),
            reliable: true,
            pending: 0,
            encrypted: true,
            safety_number: number.map(str::to_owned),
        }],
    };
    c.on_event(&status(asked.id, Some(NUMBER)));
    // Known now: answered at once.
    assert_eq!(cmd(&mut c, "/verify bob"), None);
    c.on_event(&connected(ALICE, "seedy", false, None));
    assert_eq!(cmd(&mut c, "/verify seedy"), None);
    // Asked for a peer nobody knows: one status, then the answer.
    let asked = c.on_line("/verify carol").expect("a status request");
    c.on_event(&status(asked.id, Some(NUMBER)));
    // A status the user asked for is listed in full.
    c.on_event(&status(None, Some(NUMBER)));
    c.on_event(&status(None, None));
    let out = output(c);
    let verified = "Safety number with bob:\n    11111 22222 33333 44444\n    55555 66666 77777 88888\n    99999 00000 12345 67890\nCompare it with the number bob sees";
    assert_eq!(out.matches(verified).count(), 2, "{out}");
    assert!(out.contains("out of band"), "{out}");
    assert!(
        out.contains("There is no encrypted session with seedy: it speaks the seed protocol"),
        "{out}"
    );
    assert!(
        out.contains("There is no encrypted session with carol; /connect to it first."),
        "{out}"
    );
    assert_eq!(
        out.matches("Signaling server: connected").count(),
        2,
        "the statuses /verify asked for are not listed: {out}"
    );
    assert!(
        out.contains("* bob (connected, lan 127.0.0.1:9, rtt 1.2 ms, end-to-end encrypted)\n      safety number: 11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890"),
        "{out}"
    );
    assert!(out.contains("safety number: not proven yet"), "{out}");
}

#[test]
fn trust_goes_to_the_engine() {
    let mut c = Console::new(Vec::new(), false);
    assert_eq!(
        cmd(&mut c, "/trust bob"),
        Some(Command::Trust("bob".into()))
    );
    assert_eq!(cmd(&mut c, "/trust"), None);
    assert!(output(c).contains("Error: usage: /trust <username>"));
}

#[test]
fn hostile_names_and_text_are_neutralised() {
    let mut c = Console::new(Vec::new(), false);
    c.on_event(&Event::peers(vec![PeerSummary {
        peer_id: id("aaaaaaaa-0000-4000-8000-000000000001"),
        username: "\u{1b}]0;pwned\u{7}mallory".into(),
        via: Via::Rest,
    }]));
    c.on_event(&Event::Message {
        from: id(BOB),
        username: "\u{9b}2J".into(),
        text: "\u{1b}[2Jhi\u{8}\u{8}".into(),
        sent_at: 1.0,
        encrypted: true,
    });
    let out = output(c);
    assert!(
        !out.chars().any(|ch| ch.is_control() && ch != '\n'),
        "{out:?}"
    );
    assert!(
        out.contains(r"\x1b]0;pwned\x07mallory (ID: aaaaaaaa-0000-40...) [seed]"),
        "{out}"
    );
    assert!(out.contains(r"[\x9b2J]: \x1b[2Jhi\x08\x08"), "{out}");
}

#[test]
fn before_a_chat_a_line_picks_a_peer() {
    let mut c = Console::new(Vec::new(), false);
    let peer = |peer_id: &str, name: &str| PeerSummary {
        peer_id: id(peer_id),
        username: name.into(),
        via: Via::Grpc,
    };
    c.on_event(&Event::peers(vec![peer(ALICE, "alice"), peer(BOB, "bob")]));
    assert_eq!(cmd(&mut c, "2"), Some(Command::Connect(BOB.into())));
    assert_eq!(cmd(&mut c, "7"), Some(Command::Connect("7".into())));
    assert_eq!(cmd(&mut c, "bob"), Some(Command::Connect("bob".into())));
    assert_eq!(cmd(&mut c, "q"), Some(Command::Quit));
    c.on_event(&connected(BOB, "bob", true, None));
    assert_eq!(cmd(&mut c, "2"), Some(Command::Send("2".into())));
    c.on_event(&Event::Disconnected {
        peer_id: id(BOB),
        username: "bob".into(),
        reason: DisconnectReason::Timeout,
    });
    // The chat ended: a plain line is not a peer name any more...
    assert_eq!(cmd(&mut c, "alice"), None);
    // ...until the peer list asks for one again.
    c.on_event(&Event::peers(vec![peer(ALICE, "alice")]));
    assert_eq!(cmd(&mut c, "alice"), Some(Command::Connect("alice".into())));
    let out = output(c);
    assert!(
        out.contains("No chat is open: pick a peer with /connect <number, id or name>"),
        "{out}"
    );
    assert!(
        out.contains("bob is offline (no answer to keep-alive)"),
        "{out}"
    );
    assert!(out.contains("--- Chat started."), "{out}");
}

#[test]
fn after_leave_a_chat_line_says_no_chat_is_open() {
    let mut c = Console::new(Vec::new(), false);
    c.on_event(&connected(BOB, "bob", true, None));
    assert_eq!(cmd(&mut c, "/leave"), Some(Command::Leave));
    c.on_event(&Event::Disconnected {
        peer_id: id(BOB),
        username: "bob".into(),
        reason: DisconnectReason::Local,
    });
    assert_eq!(cmd(&mut c, "after leave"), None);
    assert_eq!(cmd(&mut c, "q"), Some(Command::Quit));
    let out = output(c);
    assert!(
        out.contains("> No chat is open: pick a peer with /connect <number, id or name>, or /peers to list who is online.\n> "),
        "{out}"
    );
}

#[test]
fn the_prompt_is_never_doubled() {
    // Piped input: nothing echoes, the pending prompt stays.
    let mut c = Console::new(Vec::new(), false);
    c.on_event(&Event::peers(vec![]));
    for line in ["", "/leave", "", "/connect"] {
        c.on_line(line);
    }
    c.on_event(&connected(BOB, "bob", true, None));
    c.on_line("hi");
    c.on_event(&message(BOB, "bob", "hello", true));
    c.on_exit();
    let out = output(c);
    assert!(!out.contains("> > "), "{out}");
    assert!(out.contains("> Error: usage: /connect"), "{out}");
    assert!(out.contains("\n> [bob]: hello\n> \nBye."), "{out}");

    // A terminal echoes the typed line (and its newline): the prompt comes
    // back at once, and a reply follows it like every other line.
    let mut c = Console::new(Vec::new(), true);
    c.on_event(&Event::peers(vec![]));
    c.on_line("/connect");
    c.on_line("");
    let out = output(c);
    assert!(
        out.ends_with("Waiting for connection...\n> > Error: usage: /connect <peer id, id prefix or username>\n> > "),
        "the first two prompts sit on the typed lines: {out:?}"
    );
}

#[test]
fn only_a_new_kind_of_path_is_said_with_the_name() {
    let mut c = Console::new(Vec::new(), false);
    // Incoming: the peer list never showed bob; the name comes with the
    // connect.
    c.on_event(&connected(BOB, "bob", true, None));
    let changed = |addr: &str, path| Event::PathChanged {
        peer_id: id(BOB),
        addr: addr.into(),
        path,
    };
    // The first path settles on a better lan address: nothing to say.
    c.on_event(&changed("127.0.0.1:10", Path::Lan));
    c.on_event(&changed("203.0.113.5:10", Path::Relayed));
    c.on_event(&changed("203.0.113.5:10", Path::Relayed));
    let out = output(c);
    assert!(!out.contains("lan path"), "{out}");
    assert_eq!(
        out.matches("* Chat with bob now uses the relayed path (203.0.113.5:10)")
            .count(),
        1,
        "{out}"
    );
    assert!(!out.contains("b0b00000"), "{out}");
}

#[test]
fn a_probing_session_replaced_is_not_news() {
    let mut c = Console::new(Vec::new(), false);
    let reset = Event::Disconnected {
        peer_id: id(BOB),
        username: "bob".into(),
        reason: DisconnectReason::Reset,
    };
    c.on_event(&reset);
    c.on_event(&connected(BOB, "bob", true, None));
    c.on_event(&reset);
    let out = output(c);
    assert_eq!(out.matches("bob started a new session").count(), 1, "{out}");
    assert!(
        out.find("Connected to bob") < out.find("started a new session"),
        "{out}"
    );
}
