//! The `--json` front end: one JSON object per line for every [`Event`] on
//! the output, chat lines and `/commands` on the input. Meant for scripts
//! and tests.

use std::io::Write;

use super::engine::{Command, ErrorCode, Event};
use super::frontend::FrontEnd;
use super::input::{HELP, Input, parse_line};
use super::text::{error_message, escape_json_for_terminal};

/// Writes events as JSON lines to `out`.
#[derive(Debug)]
pub struct JsonUi<W: Write> {
    out: W,
}

impl<W: Write> JsonUi<W> {
    /// A JSON front end writing to `out` (normally stdout).
    pub fn new(out: W) -> Self {
        JsonUi { out }
    }

    fn write(&mut self, event: &Event) {
        // The front end's hint goes into the message, as it always did.
        let hinted;
        let event = match event {
            Event::Error { id, code, message } => {
                hinted = Event::Error {
                    id: *id,
                    code: *code,
                    message: error_message(*code, message),
                };
                &hinted
            }
            other => other,
        };
        match serde_json::to_string(event) {
            Ok(line) => {
                let line = escape_json_for_terminal(&line);
                // A closed stdout (the reader went away) is not worth dying for.
                let _ = writeln!(self.out, "{line}");
                let _ = self.out.flush();
            }
            Err(err) => tracing::error!(%err, "cannot encode event"),
        }
    }
}

impl<W: Write> FrontEnd for JsonUi<W> {
    fn on_event(&mut self, event: &Event) {
        // Focus is for interactive front ends; the `--json` stream keeps its
        // schema (a script knows whom it talks to from `connected`).
        if !matches!(event, Event::Focus { .. }) {
            self.write(event);
        }
    }

    fn on_line(&mut self, line: &str) -> Option<Command> {
        match parse_line(line) {
            Input::Command(command) => Some(command),
            Input::Text(text) => Some(Command::Send(text)),
            Input::Help => {
                self.write(&Event::Info {
                    message: HELP.into(),
                });
                None
            }
            Input::Empty => None,
            Input::Invalid(message) => {
                self.write(&Event::error(ErrorCode::InvalidCommand, message));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_lossless_json_without_raw_controls() {
        let text = "a\u{1b}[2J\u{7}\u{7f}\u{9b}31m\u{202e}z\n\"é";
        let mut ui = JsonUi::new(Vec::new());
        ui.on_event(&Event::Message {
            from: p2pchat::PeerId::parse("0000beef-0000-4000-8000-000000000001").unwrap(),
            username: "\u{9b}evil".into(),
            text: text.into(),
            sent_at: 1.5,
            encrypted: true,
        });
        let out = String::from_utf8(ui.out).unwrap();
        assert_eq!(out.lines().count(), 1);
        assert!(!out.trim_end().chars().any(|c| c.is_control()), "{out:?}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["event"], "message");
        assert_eq!(back["text"], text);
        assert_eq!(back["username"], "\u{9b}evil");
    }

    #[test]
    fn lines_become_commands() {
        let mut ui = JsonUi::new(Vec::new());
        assert_eq!(ui.on_line("hi"), Some(Command::Send("hi".into())));
        assert_eq!(ui.on_line("/quit"), Some(Command::Quit));
        assert_eq!(ui.on_line("/nope"), None);
        assert_eq!(ui.on_line("/help"), None);
        let out = String::from_utf8(ui.out).unwrap();
        assert!(out.contains(r#""code":"invalid_command""#), "{out}");
        assert!(out.contains(r#""event":"info""#), "{out}");
    }

    #[test]
    fn focus_is_not_part_of_the_stream_and_errors_keep_their_hint() {
        let mut ui = JsonUi::new(Vec::new());
        ui.on_event(&Event::Focus { peer_id: None });
        ui.on_event(&Event::error(
            ErrorCode::NotConnected,
            "not connected to a peer",
        ));
        let out = String::from_utf8(ui.out).unwrap();
        assert_eq!(
            out,
            "{\"event\":\"error\",\"code\":\"not_connected\",\"message\":\"not connected to a peer; use /connect <peer>\"}\n"
        );
    }
}
