//! The full-screen terminal UI (ratatui on crossterm): a live peer list,
//! the chat, an input line and a status bar. Chosen when stdin and stdout
//! are terminals and neither `--plain` nor `--json` is given.
//!
//! * [`state`]: what is shown, changed by engine events and key presses
//!   (pure, tested without a terminal); the active peer is the one the
//!   engine reports (`focus`), and our lines are paired with `sent`/`error`
//!   by request id.
//! * [`view`]: draws the state on any ratatui backend.
//! * this module: the terminal itself (raw mode, alternate screen, always
//!   restored: on return, on error and on panic) and the loop that feeds
//!   the state. Like [`super::frontend::drive`], it always drains engine
//!   events while commands wait for room in the engine's channel, and it
//!   applies every terminal event already read (a paste's burst of keys,
//!   or one bracketed `Paste`) before drawing again.

pub mod state;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::{self, IsTerminal, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::cursor::Show;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event, Request};
use super::frontend::Pending;
pub use state::App;

/// Terminal events (keys, resizes) buffered between the reader thread and
/// the loop.
pub const TERMINAL_EVENT_BUFFER: usize = 256;

/// Most engine events applied between two redraws: a flood is drawn in
/// batches, and keys still get their turn in between.
pub const MAX_EVENTS_PER_FRAME: usize = 256;

/// Most terminal events (keys of a paste, say) applied between two
/// redraws; the buffer's size, so a full buffer is drained in one go.
pub const MAX_TERMINAL_EVENTS_PER_FRAME: usize = TERMINAL_EVENT_BUFFER;

/// How long the reader thread waits for a terminal event before checking
/// whether the UI is gone.
const READER_POLL: Duration = Duration::from_millis(100);

/// Whether the full-screen UI should run: stdin and stdout are terminals
/// and neither `--plain` nor `--json` was given.
pub fn wanted(plain: bool, json: bool) -> bool {
    !plain && !json && io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Runs the full-screen UI until the engine stops (after `/quit`, Ctrl+C
/// or a signal's [`Command::Quit`]). The terminal is restored before this
/// returns, also on error; on error the engine is still asked to quit
/// cleanly (disconnect, unregister) before the error is returned.
pub async fn run(handle: EngineHandle, mut events: mpsc::Receiver<Event>) -> io::Result<()> {
    let started = handle.started().clone();
    let mut app = App::new(started.peer_id, &started.username, state::local_clock);
    let commands = handle.commands();
    let result = match TerminalGuard::enter() {
        Ok(guard) => {
            let result = async {
                let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
                let mut input = spawn_terminal_reader();
                event_loop(&mut terminal, &mut app, &commands, &mut events, &mut input).await
            }
            .await;
            drop(guard);
            result
        }
        Err(err) => Err(err),
    };
    if result.is_err() {
        let quit = async {
            let _ = commands.send(Command::Quit.into()).await;
        };
        let drain = async { while events.recv().await.is_some() {} };
        tokio::join!(quit, drain);
    }
    drop(commands);
    handle.join().await;
    result
}

/// Draws, then waits for whichever comes first: engine events, room for a
/// pending command, or a terminal event. Returns when the engine stops.
async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    commands: &mpsc::Sender<Request>,
    events: &mut mpsc::Receiver<Event>,
    input: &mut mpsc::Receiver<TermEvent>,
) -> io::Result<()> {
    let mut pending = Pending::default();
    let mut input_open = true;
    let mut dirty = true;
    loop {
        if dirty {
            let mut info = None;
            terminal.draw(|frame| info = Some(view::draw(frame, app)))?;
            if let Some(info) = info {
                app.set_viewport(info.chat_rows, info.scroll);
            }
            dirty = false;
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    app.on_event(&event);
                    for _ in 1..MAX_EVENTS_PER_FRAME {
                        match events.try_recv() {
                            Ok(event) => app.on_event(&event),
                            Err(_) => break,
                        }
                    }
                    dirty = true;
                }
                None => break,
            },
            () = pending.send_next(commands) => {}
            term = input.recv(), if input_open && pending.has_room() => match term {
                Some(term) => {
                    apply_burst(app, &mut pending, term, input);
                    dirty = true;
                }
                None => {
                    // The terminal is gone (read error): quit like EOF.
                    input_open = false;
                    pending.push(Command::Quit);
                }
            },
        }
    }
    Ok(())
}

/// Applies `first` and the terminal events already read after it (up to
/// [`MAX_TERMINAL_EVENTS_PER_FRAME`], while commands have room): a paste
/// without bracketed paste is a burst of keys, and drawing once per key
/// would fall behind it.
fn apply_burst(
    app: &mut App,
    pending: &mut Pending,
    first: TermEvent,
    input: &mut mpsc::Receiver<TermEvent>,
) {
    apply_terminal(app, pending, first);
    for _ in 1..MAX_TERMINAL_EVENTS_PER_FRAME {
        if !pending.has_room() {
            break;
        }
        match input.try_recv() {
            Ok(term) => apply_terminal(app, pending, term),
            Err(_) => break,
        }
    }
}

/// Applies one terminal event to the state, queueing what it asks for.
fn apply_terminal(app: &mut App, pending: &mut Pending, term: TermEvent) {
    match term {
        TermEvent::Key(key) => {
            if let Some(request) = app.on_key(key) {
                pending.push(request);
            }
        }
        TermEvent::Paste(text) => {
            for request in app.on_paste(&text) {
                pending.push(request);
            }
        }
        // A resize only needs the redraw every event gets.
        _ => {}
    }
}

/// Reads terminal events on a plain thread (crossterm's reads block) until
/// the loop drops its receiver or the terminal fails.
fn spawn_terminal_reader() -> mpsc::Receiver<TermEvent> {
    let (tx, rx) = mpsc::channel(TERMINAL_EVENT_BUFFER);
    std::thread::spawn(move || {
        while !tx.is_closed() {
            match crossterm::event::poll(READER_POLL) {
                Ok(false) => {}
                Ok(true) => match crossterm::event::read() {
                    Ok(event) => {
                        if tx.blocking_send(event).is_err() {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "cannot read the terminal");
                        break;
                    }
                },
                Err(err) => {
                    tracing::warn!(%err, "cannot poll the terminal");
                    break;
                }
            }
        }
    });
    rx
}

/// Whether raw mode and the alternate screen are ours to undo.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Holds the terminal in raw mode on the alternate screen; dropping it (on
/// return, on error, or while a panic unwinds) gives the terminal back.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        // From here on the guard's drop undoes whatever succeeded.
        let guard = TerminalGuard;
        // Bracketed paste: a paste comes as one `Paste` event, and its
        // newlines do not press Enter one by one.
        execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once;
/// later calls do nothing.
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            io::stdout(),
            DisableBracketedPaste,
            LeaveAlternateScreen,
            Show
        );
        let _ = disable_raw_mode();
    }
}

/// Restores the terminal before the panic message is printed, so it is
/// readable and the shell is usable (the guard's drop would come after the
/// message, on the alternate screen).
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}
