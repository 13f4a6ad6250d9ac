//! The `--json` front end: one JSON object per line for every [`Event`] on
//! the output, chat lines and `/commands` on the input. Meant for scripts
//! and tests.

use std::io::Write;

use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event};
use super::input::{HELP, Input, parse_line};

/// Runs until the engine stops. `input` yields stdin lines; its end (EOF)
/// quits like `/quit`.
pub async fn run(
    handle: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    mut input: mpsc::Receiver<String>,
    mut out: impl Write,
) {
    let mut input_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => write_event(&mut out, &event),
                None => break,
            },
            line = input.recv(), if input_open => match line {
                Some(line) => match parse_line(&line) {
                    Input::Command(command) => {
                        handle.command(command).await;
                    }
                    Input::Text(text) => {
                        handle.command(Command::Send(text)).await;
                    }
                    Input::Help => write_event(&mut out, &Event::Info { message: HELP.into() }),
                    Input::Empty => {}
                    Input::Invalid(message) => {
                        write_event(&mut out, &Event::Error { code: "invalid_command", message });
                    }
                },
                None => {
                    input_open = false;
                    handle.command(Command::Quit).await;
                }
            },
        }
    }
    handle.join().await;
}

fn write_event(out: &mut impl Write, event: &Event) {
    match serde_json::to_string(event) {
        Ok(line) => {
            // A closed stdout (e.g. the reader went away) is not worth dying for.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(err) => tracing::error!(%err, "cannot encode event"),
    }
}
