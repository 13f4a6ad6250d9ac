//! The loop every front end runs: render engine events, turn input lines
//! into commands. Front ends only implement [`FrontEnd`].
//!
//! Events are always drained while commands wait for room in the engine's
//! command channel, so a fast input (e.g. a file piped into stdin) can never
//! deadlock against a full event channel.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event, Request};

/// Most parsed input commands held while the engine is busy; input is not
/// read further until there is room.
pub const MAX_PENDING_COMMANDS: usize = 64;

/// Requests parsed from input, waiting for room in the engine's command
/// channel (at most [`MAX_PENDING_COMMANDS`]). Shared by every front end's
/// loop.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<Request>,
}

impl Pending {
    /// Whether more input may be read.
    pub fn has_room(&self) -> bool {
        self.queue.len() < MAX_PENDING_COMMANDS
    }

    /// Queues a request.
    pub fn push(&mut self, request: impl Into<Request>) {
        self.queue.push_back(request.into());
    }

    /// Waits for room in `commands` and hands over the oldest request;
    /// never returns while nothing is queued (a select branch).
    pub async fn send_next(&mut self, commands: &mpsc::Sender<Request>) {
        if self.queue.is_empty() {
            return std::future::pending().await;
        }
        match commands.reserve().await {
            Ok(permit) => {
                if let Some(request) = self.queue.pop_front() {
                    permit.send(request);
                }
            }
            // The engine stopped; its event channel closes next.
            Err(_) => self.queue.clear(),
        }
    }
}

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
    let mut pending = Pending::default();
    let mut input_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => ui.on_event(&event),
                None => break,
            },
            () = pending.send_next(&commands) => {}
            line = input.recv(), if input_open && pending.has_room() => match line {
                Some(line) => {
                    if let Some(command) = ui.on_line(&line) {
                        pending.push(command);
                    }
                }
                None => {
                    input_open = false;
                    pending.push(Command::Quit);
                }
            },
        }
    }
    ui.on_exit();
    drop(commands);
    handle.join().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_commands_stop_input_at_the_limit_and_go_out_in_order() {
        let mut pending = Pending::default();
        for i in 0..MAX_PENDING_COMMANDS {
            assert!(pending.has_room(), "room for command {i}");
            pending.push(Command::Send(format!("line {i}")));
        }
        assert!(!pending.has_room(), "input stops at the limit");
        let (tx, mut rx) = mpsc::channel(1);
        pending.send_next(&tx).await;
        assert!(pending.has_room(), "one handed over makes room");
        let first = rx.recv().await.expect("a request");
        assert_eq!(first.command, Command::Send("line 0".into()));
    }
}
