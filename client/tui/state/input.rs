//! Key presses: editing the input line (bounded, cursor in characters),
//! moving the selection, paging the chat, and what Enter sends. Every
//! request gets a fresh id, so the answers (`sent`, `error`, a `/peers`
//! list) are paired with what asked for them, not with arrival order.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{App, SessionView};
use crate::engine::{Command, Request};
use crate::input::{HELP, Input, parse_line};
use crate::session::MAX_LINE_BYTES;
use crate::text::sanitize_display;

/// Most bytes the input line holds: a longer line could not be sent anyway
/// (the session's line limit).
pub const MAX_INPUT_BYTES: usize = MAX_LINE_BYTES;

/// Key bindings, shown by `/help` and in the README.
pub const KEYS_HELP: &str = "keys: Up/Down select a peer, Enter (empty input) connects to it, \
PageUp/PageDown scroll the chat, Left/Right/Home/End/Backspace/Delete edit, Esc clears the input, \
Ctrl+C quits; marks on your lines: \u{b7} queued, \u{2713} sent, \u{2713}\u{2713} delivered, \
\u{2717} failed; marks on sessions: [e2e] end-to-end encrypted (/verify shows the safety number), \
[unencrypted] a seed-protocol peer in plaintext (its lines carry the mark too)";

impl App {
    /// Applies one key press; returns the command it asks for, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Request> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return self.quit(),
            KeyCode::Char('u') if ctrl => self.clear_input(),
            KeyCode::Char(ch)
                if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) && !ch.is_control() =>
            {
                self.insert(ch)
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.remove_at_cursor();
            }
            KeyCode::Delete => self.remove_at_cursor(),
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.chars().count()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.chars().count(),
            KeyCode::Esc => self.clear_input(),
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::PageUp => self.scroll += self.step(),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(self.step()),
            _ => {}
        }
        None
    }

    /// Rows one PageUp/PageDown moves: a page, keeping one row of context.
    fn step(&self) -> usize {
        self.page.saturating_sub(1).max(1)
    }

    /// `/verify [target]`: shows the safety number if the last events
    /// told it; else asks the engine for a `status` and answers when it
    /// comes (see `apply_status`).
    fn verify(&mut self, target: Option<String>) -> Option<Request> {
        if !self.verifier.verify(target.as_deref()).worth_asking() {
            self.show_verification(target.as_deref());
            return None;
        }
        let request = self.request(Command::Status);
        if let Some(id) = request.id {
            self.verifying.insert(id, target);
        }
        Some(request)
    }

    fn quit(&mut self) -> Option<Request> {
        if self.quitting {
            return None;
        }
        self.quitting = true;
        Some(Command::Quit.into())
    }

    /// `command` with a fresh request id.
    fn request(&mut self, command: Command) -> Request {
        let id = self.next_request;
        self.next_request += 1;
        command.with_id(id)
    }

    /// Enter: runs the input line, or connects to the selected peer when
    /// the line is empty.
    fn submit(&mut self) -> Option<Request> {
        let line = std::mem::take(&mut self.input);
        self.cursor = 0;
        match parse_line(&line) {
            Input::Empty => {
                let id = self.selected?;
                let up = self.sessions.get(&id).is_some_and(SessionView::connected);
                if up && self.active == Some(id) {
                    return None;
                }
                Some(self.request(Command::Connect(id.to_string())))
            }
            Input::Help => {
                self.system(HELP);
                self.system(KEYS_HELP);
                None
            }
            Input::Invalid(message) => {
                self.error(&message);
                None
            }
            Input::Verify(target) => self.verify(target),
            Input::Command(Command::Quit) => self.quit(),
            Input::Command(command) => {
                let request = self.request(command);
                if let (Some(id), Command::Peers) = (request.id, &request.command) {
                    self.peers_requested.insert(id);
                }
                Some(request)
            }
            Input::Text(text) => {
                let shown = sanitize_display(&text);
                let request = self.request(Command::Send(text));
                self.push_outgoing(shown, request.id);
                self.scroll = 0;
                Some(request)
            }
        }
    }

    fn insert(&mut self, ch: char) {
        if self.input.len() + ch.len_utf8() > MAX_INPUT_BYTES {
            return;
        }
        let at = self.byte_at(self.cursor);
        self.input.insert(at, ch);
        self.cursor += 1;
    }

    fn remove_at_cursor(&mut self) {
        if self.cursor < self.input.chars().count() {
            let at = self.byte_at(self.cursor);
            self.input.remove(at);
        }
    }

    fn clear_input(&mut self) {
        self.input.clear();
        self.cursor = 0;
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.input
            .char_indices()
            .nth(chars)
            .map_or(self.input.len(), |(i, _)| i)
    }
}
