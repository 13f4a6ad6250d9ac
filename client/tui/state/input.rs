//! Key presses and pastes: editing the input line (bounded, cursor in
//! characters, moving and deleting by grapheme cluster),
//! moving the selection, paging the chat, and what Enter sends. Every
//! request gets a fresh id, so the answers (`sent`, `error`, a `/peers`
//! list) are paired with what asked for them, not with arrival order.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use unicode_segmentation::UnicodeSegmentation;

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
PageUp/PageDown scroll the chat, Left/Right/Home/End/Backspace/Delete edit, Esc or Ctrl+U clears the input, \
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
            KeyCode::Char(ch) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                self.insert_typed(ch)
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor = self.boundary_before(self.cursor);
                self.remove_at_cursor();
            }
            KeyCode::Delete => self.remove_at_cursor(),
            KeyCode::Left => self.cursor = self.boundary_before(self.cursor),
            KeyCode::Right => self.cursor = self.boundary_after(self.cursor),
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

    /// Applies a bracketed paste in one go: its text goes into the input
    /// line at the cursor, and each line break sends the line so far, as
    /// Enter would (one message per pasted line; blank lines are skipped,
    /// so a paste never connects to the selected peer). The last line
    /// stays in the input to edit. Control characters are dropped, like
    /// typed ones.
    pub fn on_paste(&mut self, text: &str) -> Vec<Request> {
        let mut requests = Vec::new();
        // CRLF, LF and a lone CR (what a terminal's Enter sends) all break.
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            self.insert_str(line);
            if lines.peek().is_none() {
                break;
            }
            if self.input.trim().is_empty() {
                self.clear_input();
            } else {
                requests.extend(self.submit());
            }
        }
        requests
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

    /// Inserts a typed or pasted character; control characters are not
    /// text and are dropped.
    fn insert_typed(&mut self, ch: char) {
        if !ch.is_control() {
            self.insert(ch);
        }
    }

    /// Inserts text at the cursor in one go (a paste: one pass, not one
    /// per character), as much as fits in [`MAX_INPUT_BYTES`].
    fn insert_str(&mut self, text: &str) {
        let mut room = MAX_INPUT_BYTES.saturating_sub(self.input.len());
        let mut added = String::new();
        let mut count = 0;
        for ch in text.chars().filter(|ch| !ch.is_control()) {
            if ch.len_utf8() > room {
                break;
            }
            room -= ch.len_utf8();
            added.push(ch);
            count += 1;
        }
        let at = self.byte_at(self.cursor);
        self.input.insert_str(at, &added);
        self.cursor += count;
    }

    fn insert(&mut self, ch: char) {
        if self.input.len() + ch.len_utf8() > MAX_INPUT_BYTES {
            return;
        }
        let at = self.byte_at(self.cursor);
        self.input.insert(at, ch);
        self.cursor += 1;
    }

    /// Removes the grapheme cluster after the cursor (an emoji with its
    /// skin tone, a letter with its accents: what the user sees as one).
    fn remove_at_cursor(&mut self) {
        let end = self.boundary_after(self.cursor);
        let (from, to) = (self.byte_at(self.cursor), self.byte_at(end));
        self.input.replace_range(from..to, "");
    }

    /// Character offsets where grapheme clusters of the input start, and
    /// its end: the cursor's stops.
    fn boundaries(&self) -> impl Iterator<Item = usize> + '_ {
        let mut chars = 0;
        self.input
            .graphemes(true)
            .map(move |g| {
                let start = chars;
                chars += g.chars().count();
                start
            })
            .chain(std::iter::once(self.input.chars().count()))
    }

    fn boundary_before(&self, cursor: usize) -> usize {
        self.boundaries()
            .take_while(|&b| b < cursor)
            .last()
            .unwrap_or(0)
    }

    fn boundary_after(&self, cursor: usize) -> usize {
        let end = self.input.chars().count();
        self.boundaries().find(|&b| b > cursor).unwrap_or(end)
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
