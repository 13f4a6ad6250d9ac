//! Pastes and editing by grapheme cluster, driven by hand.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::engine::Command;

fn app() -> App {
    let id = PeerId::parse("0000eeee-0000-4000-8000-000000000000").unwrap();
    App::new(id, "me", || "12:00".to_owned())
}

fn key(app: &mut App, code: KeyCode) -> Option<crate::engine::Request> {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn sent(requests: Vec<crate::engine::Request>) -> Vec<String> {
    requests
        .into_iter()
        .map(|r| match r.command {
            Command::Send(text) => text,
            other => panic!("not a message: {other:?}"),
        })
        .collect()
}

#[test]
fn a_long_paste_is_held_whole_and_sent_by_enter() {
    let mut app = app();
    let text: String = (0..3_600)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert!(
        app.on_paste(&text).is_empty(),
        "no line break: nothing sent"
    );
    assert_eq!(app.input, text);
    assert_eq!(app.cursor, 3_600);
    let request = key(&mut app, KeyCode::Enter).expect("Enter sends");
    assert_eq!(request.command, Command::Send(text));
    assert!(app.input.is_empty());
}

#[test]
fn a_burst_of_keys_is_held_whole() {
    // What a terminal without bracketed paste delivers: one key per char.
    let mut app = app();
    let text: String = "0123456789".repeat(360);
    for ch in text.chars() {
        assert_eq!(key(&mut app, KeyCode::Char(ch)), None);
    }
    assert_eq!(app.input, text);
}

#[test]
fn a_multi_line_paste_sends_one_message_per_line() {
    let mut app = app();
    app.on_paste("draft: ");
    let requests = app.on_paste("one\r\ntwo\n\n  \nthree\rfour");
    assert_eq!(sent(requests), ["draft: one", "two", "three"]);
    assert_eq!(app.input, "four", "the last line stays to edit");
    // Control characters are dropped, the paste is capped at the limit.
    app.on_paste("\u{1b}[2J\t!");
    assert_eq!(app.input, "four[2J!");
    app.on_paste(&"x".repeat(MAX_INPUT_BYTES));
    assert_eq!(app.input.len(), MAX_INPUT_BYTES);
}

#[test]
fn a_paste_goes_in_at_the_cursor() {
    let mut app = app();
    app.on_paste("ad");
    key(&mut app, KeyCode::Left);
    app.on_paste("bc");
    assert_eq!((app.input.as_str(), app.cursor), ("abcd", 3));
}

#[test]
fn cursor_keys_move_and_delete_whole_graphemes() {
    let mut app = app();
    let tone = "\u{1f44d}\u{1f3fd}";
    let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
    let flag = "\u{1f1eb}\u{1f1f7}";
    app.on_paste(&format!("a{tone}{family}{flag}e\u{301}"));
    key(&mut app, KeyCode::Backspace);
    assert_eq!(
        app.input,
        format!("a{tone}{family}{flag}"),
        "e and its accent"
    );
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Left);
    assert_eq!(app.cursor, 3, "before the family, after the tone");
    key(&mut app, KeyCode::Delete);
    assert_eq!(app.input, format!("a{tone}{flag}"));
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.input, format!("a{flag}"));
    key(&mut app, KeyCode::Right);
    assert_eq!(app.cursor, 3, "past both regional indicators");
    key(&mut app, KeyCode::Right);
    assert_eq!(app.cursor, 3, "the end");
}

#[test]
fn a_burst_of_terminal_events_is_applied_before_the_next_frame() {
    use crate::tui::{MAX_TERMINAL_EVENTS_PER_FRAME, TERMINAL_EVENT_BUFFER, apply_burst};
    use crossterm::event::Event as TermEvent;
    let mut app = app();
    let mut pending = crate::frontend::Pending::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(TERMINAL_EVENT_BUFFER);
    // A full buffer of keys, then what is left for the next frame.
    for _ in 0..TERMINAL_EVENT_BUFFER {
        let key = KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE);
        tx.try_send(TermEvent::Key(key)).unwrap();
    }
    let first = TermEvent::Paste("p".repeat(3_600));
    apply_burst(&mut app, &mut pending, first, &mut rx);
    assert_eq!(app.input.len(), 3_600 + MAX_TERMINAL_EVENTS_PER_FRAME - 1);
    assert!(rx.try_recv().is_ok(), "the rest waits for the next frame");
    assert!(pending.has_room());
}
