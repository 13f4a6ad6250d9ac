//! The `--json` front end: one JSON object per line for every [`Event`] on
//! the output, chat lines and `/commands` on the input. Meant for scripts
//! and tests.
//!
//! Encryption is in the events themselves: `connected` carries `encrypted`
//! and `safety_number`, `message` carries `encrypted`, and every session of
//! a `status` both. `/verify` therefore asks for a `status` (the numbers of
//! every session, structured); `/trust NAME` is the engine's command.

use std::io::Write;

use super::engine::{Command, ErrorCode, Event, Request};
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

    fn on_line(&mut self, line: &str) -> Option<Request> {
        // No request ids: the stream stays what scripts have always read.
        match parse_line(line) {
            Input::Command(command) => Some(command.into()),
            Input::Text(text) => Some(Command::Send(text).into()),
            Input::Verify(_) => Some(Command::Status.into()),
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
        assert_eq!(ui.on_line("hi"), Some(Command::Send("hi".into()).into()));
        assert_eq!(ui.on_line("/quit"), Some(Command::Quit.into()));
        assert_eq!(
            ui.on_line("/trust bob"),
            Some(Command::Trust("bob".into()).into())
        );
        assert_eq!(ui.on_line("/verify bob"), Some(Command::Status.into()));
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

    #[test]
    fn encryption_fields_are_in_connected_message_and_status_events() {
        let peer = p2pchat::PeerId::parse("0000beef-0000-4000-8000-000000000001").unwrap();
        let number = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";
        let mut ui = JsonUi::new(Vec::new());
        ui.on_event(&Event::Connected {
            peer_id: peer,
            username: "bob".into(),
            addr: "127.0.0.1:9".into(),
            path: crate::engine::Path::Lan,
            rtt_ms: None,
            reliable: true,
            incoming: false,
            probe_rounds: 1,
            encrypted: true,
            safety_number: Some(number.into()),
        });
        ui.on_event(&Event::Connected {
            peer_id: peer,
            username: "seedy".into(),
            addr: "127.0.0.1:9".into(),
            path: crate::engine::Path::Lan,
            rtt_ms: None,
            reliable: false,
            incoming: true,
            probe_rounds: 0,
            encrypted: false,
            safety_number: None,
        });
        for encrypted in [true, false] {
            ui.on_event(&Event::Message {
                from: peer,
                username: "bob".into(),
                text: "hi".into(),
                sent_at: 1.0,
                encrypted,
            });
        }
        ui.on_event(&Event::Status {
            id: None,
            server_connected: true,
            sessions: vec![crate::engine::SessionStatus {
                peer_id: peer,
                username: "bob".into(),
                state: crate::engine::SessionState::Connected,
                active: true,
                addr: Some("127.0.0.1:9".into()),
                path: Some(crate::engine::Path::Lan),
                rtt_ms: None,
                reliable: true,
                pending: 0,
                encrypted: true,
                safety_number: Some(number.into()),
            }],
        });
        let out = String::from_utf8(ui.out).unwrap();
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 5, "{out}");
        assert_eq!(events[0]["event"], "connected");
        assert_eq!(events[0]["encrypted"], true);
        assert_eq!(events[0]["safety_number"], number);
        assert_eq!(events[1]["encrypted"], false);
        assert!(
            events[1]["safety_number"].is_null(),
            "present and null for a plaintext session: {out}"
        );
        assert!(events[1].get("safety_number").is_some(), "{out}");
        assert_eq!(events[2]["event"], "message");
        assert_eq!(events[2]["encrypted"], true);
        assert_eq!(events[3]["encrypted"], false);
        assert_eq!(events[4]["sessions"][0]["encrypted"], true);
        assert_eq!(events[4]["sessions"][0]["safety_number"], number);
    }
}
