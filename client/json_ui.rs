//! The `--json` front end: one JSON object per line for every [`Event`] on
//! the output, chat lines and `/commands` on the input. Meant for scripts
//! and tests.

use std::io::Write;

use super::engine::{Command, Event};
use super::frontend::FrontEnd;
use super::input::{HELP, Input, parse_line};

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
        match serde_json::to_string(event) {
            Ok(line) => {
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
        self.write(event);
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
                self.write(&Event::Error {
                    code: "invalid_command",
                    message,
                });
                None
            }
        }
    }
}
