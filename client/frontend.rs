//! The loop every front end runs: render engine events, turn input lines
//! into commands. Front ends only implement [`FrontEnd`].
//!
//! Events are always drained while commands wait for room in the engine's
//! command channel, so a fast input (e.g. a file piped into stdin) can never
//! deadlock against a full event channel.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event};

/// Most parsed input commands held while the engine is busy; input is not
/// read further until there is room.
pub const MAX_PENDING_COMMANDS: usize = 64;

/// A user interface on top of the engine.
pub trait FrontEnd {
    /// Shows one event.
    fn on_event(&mut self, event: &Event);
    /// Interprets one input line; returns the command to run, if any (and
    /// shows any local feedback itself).
    fn on_line(&mut self, line: &str) -> Option<Command>;
    /// Called once after the engine stopped.
    fn on_exit(&mut self) {}
}

/// Runs `ui` until the engine stops. `input` yields input lines; its end
/// (EOF) quits like `/quit`.
pub async fn drive(
    handle: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    mut input: mpsc::Receiver<String>,
    ui: &mut impl FrontEnd,
) {
    let commands = handle.commands();
    let mut pending: VecDeque<Command> = VecDeque::new();
    let mut input_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => ui.on_event(&event),
                None => break,
            },
            permit = commands.reserve(), if !pending.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(command) = pending.pop_front() {
                        permit.send(command);
                    }
                }
                // The engine stopped; its event channel closes next.
                Err(_) => pending.clear(),
            },
            line = input.recv(), if input_open && pending.len() < MAX_PENDING_COMMANDS => match line {
                Some(line) => {
                    if let Some(command) = ui.on_line(&line) {
                        pending.push_back(command);
                    }
                }
                None => {
                    input_open = false;
                    pending.push_back(Command::Quit);
                }
            },
        }
    }
    ui.on_exit();
    drop(commands);
    handle.join().await;
}
