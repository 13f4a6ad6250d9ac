//! Draws an [`App`] onto a ratatui frame: peer list, chat pane, input line
//! and status bar. Pure rendering (any backend, e.g. ratatui's
//! `TestBackend`); all text in the state is already sanitised.
//!
//! A session that is up is marked [`ENCRYPTED_MARK`] (green) or
//! [`UNENCRYPTED_MARK`] (red) in the peer list, the chat and input titles
//! and the status bar, and every line from an unencrypted session carries
//! the unencrypted mark. Both marks are ASCII: one column per character in
//! every terminal.
//!
//! The chat pane wraps its lines itself (word wrap, continuation rows
//! indented past the timestamp; the wrapping is in `wrap.rs`) and only as
//! far back as the rows on screen, so drawing costs the same however long
//! the history is.
//!
//! All text is drawn through [`cells`], so emoji sequences whose width
//! terminals disagree on cannot shift a row or leave stray glyphs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use super::state::{App, ChatEntry, Delivery, EntryKind, PeerState, short_id};
use crate::input::UNENCRYPTED_MARK;
use crate::text::ENCRYPTED_MARK;

pub mod cells;
mod wrap;

pub use wrap::wrap;

/// Narrowest terminal that gets the peer list beside the chat; narrower
/// ones stack it above.
pub const SIDE_BY_SIDE_MIN_WIDTH: u16 = 60;

/// Lowest terminal whose input line gets a border.
pub const BORDERED_INPUT_MIN_HEIGHT: u16 = 12;

/// Width of the peer list beside the chat: a quarter of the screen within
/// these bounds.
const PEER_PANE_WIDTH: (u16, u16) = (24, 36);

/// What the chat pane looked like, for paging and scroll clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewInfo {
    /// Rows of chat text on screen.
    pub chat_rows: usize,
    /// The scroll offset actually used (clamped to the history).
    pub scroll: usize,
}

/// Draws the whole UI.
pub fn draw(frame: &mut Frame, app: &App) -> ViewInfo {
    let area = frame.area();
    let input_height = if area.height >= BORDERED_INPUT_MIN_HEIGHT {
        3
    } else {
        1
    };
    let [main, input, status] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(input_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let (peers, chat) = if area.width >= SIDE_BY_SIDE_MIN_WIDTH {
        let width = (area.width / 4).clamp(PEER_PANE_WIDTH.0, PEER_PANE_WIDTH.1);
        let [peers, chat] =
            Layout::horizontal([Constraint::Length(width), Constraint::Min(0)]).areas(main);
        (peers, chat)
    } else {
        // Stacked: the list takes what it needs, at most a third.
        let wanted = u16::try_from(app.peers().len().max(1)).unwrap_or(u16::MAX);
        let height = wanted
            .saturating_add(2)
            .min((main.height / 3).max(3))
            .min(main.height);
        let [peers, chat] =
            Layout::vertical([Constraint::Length(height), Constraint::Min(0)]).areas(main);
        (peers, chat)
    };
    draw_peers(frame, app, peers, area.width >= SIDE_BY_SIDE_MIN_WIDTH);
    let info = draw_chat(frame, app, chat);
    draw_input(frame, app, input, input_height > 1);
    draw_status(frame, app, status);
    info
}

fn draw_peers(frame: &mut Frame, app: &App, area: Rect, two_line: bool) {
    let online = app.peers().iter().filter(|p| p.online).count();
    let block = Block::bordered().title(format!(" peers ({online} online) "));
    if app.peers().is_empty() {
        let empty = Paragraph::new(Line::styled("nobody else is online", dim())).block(block);
        frame.render_widget(empty, area);
        return;
    }
    let items: Vec<ListItem> = app
        .peers()
        .iter()
        .map(|row| {
            let state = app.peer_state(row);
            let active = app.active == Some(row.id);
            let marker = Span::styled(
                if active { "\u{25b6} " } else { "  " },
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            );
            let mut name_style = Style::new();
            if state == PeerState::Connected {
                name_style = name_style.add_modifier(Modifier::BOLD);
            }
            let name = cells::spans(&row.name, name_style);
            let protection = protection_span(app.encrypted(row));
            let id = Span::styled(short_id(&row.id), dim());
            let label = Span::styled(state.label(), state_style(state));
            let seed = Span::styled(if row.seed { " seed" } else { "" }, dim());
            if two_line {
                ListItem::new(vec![
                    Line::from([vec![marker], name, vec![protection]].concat()),
                    Line::from(vec![Span::raw("  "), id, Span::raw(" "), label, seed]),
                ])
            } else {
                ListItem::new(Line::from(
                    [
                        vec![marker],
                        name,
                        vec![protection, Span::raw(" "), id, Span::raw(" "), label, seed],
                    ]
                    .concat(),
                ))
            }
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(list, area, &mut state);
}

/// ` [e2e]` (green) for an encrypted session, ` [unencrypted]` (red,
/// bold) for a plaintext one, nothing without a session up.
fn protection_span(encrypted: Option<bool>) -> Span<'static> {
    match encrypted {
        Some(true) => Span::styled(format!(" {ENCRYPTED_MARK}"), Style::new().fg(Color::Green)),
        Some(false) => Span::styled(format!(" {UNENCRYPTED_MARK}"), warning()),
        None => Span::raw(""),
    }
}

/// How the unencrypted mark stands out.
fn warning() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

fn state_style(state: PeerState) -> Style {
    match state {
        PeerState::Connected => Style::new().fg(Color::Green),
        PeerState::Connecting => Style::new().fg(Color::Yellow),
        PeerState::Online => Style::new(),
        PeerState::Offline => dim(),
    }
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

fn draw_chat(frame: &mut Frame, app: &App, area: Rect) -> ViewInfo {
    let mut title = match app.active_session() {
        Some(s) => [
            cells::spans(&format!(" chat with {}", s.name), Style::new()),
            vec![protection_span(s.encrypted()), Span::raw(" ")],
        ]
        .concat(),
        None => vec![Span::raw(" chat ")],
    };
    let block = Block::bordered();
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let (rows, scroll) = chat_rows(app, inner.width, height, app.scroll);
    if scroll > 0 {
        title.push(Span::raw(format!(
            "- scrolled up {scroll} rows (PageDown) "
        )));
    }
    frame.render_widget(
        Paragraph::new(rows).block(block.title(Line::from(title))),
        area,
    );
    ViewInfo {
        chat_rows: height,
        scroll,
    }
}

/// The rows the chat pane shows: wraps entries from the newest back until
/// the screen plus `scroll` rows are filled. Returns them and the scroll
/// offset clamped to the history.
fn chat_rows(app: &App, width: u16, height: usize, scroll: usize) -> (Vec<Line<'static>>, usize) {
    if width == 0 || height == 0 {
        return (Vec::new(), scroll);
    }
    let mut chunks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut total = 0;
    let mut exhausted = true;
    for entry in app.entries().rev() {
        let rows = wrap(&entry_spans(app, entry), width, TIME_WIDTH);
        total += rows.len();
        chunks.push(rows);
        if total >= height + scroll {
            exhausted = false;
            break;
        }
    }
    let scroll = if exhausted {
        scroll.min(total.saturating_sub(height))
    } else {
        scroll
    };
    let all: Vec<Line<'static>> = chunks.into_iter().rev().flatten().collect();
    let end = all.len().saturating_sub(scroll);
    let start = end.saturating_sub(height);
    (all[start..end].to_vec(), scroll)
}

/// Columns of `HH:MM ` before each entry; continuation rows indent by it.
const TIME_WIDTH: u16 = 6;

fn entry_spans(app: &App, entry: &ChatEntry) -> Vec<(String, Style)> {
    let mut spans = vec![(format!("{} ", entry.time), dim())];
    match &entry.kind {
        EntryKind::System => {
            spans.push((format!("* {}", entry.text), Style::new().fg(Color::Cyan)));
        }
        EntryKind::Error => {
            spans.push((format!("! {}", entry.text), Style::new().fg(Color::Red)));
        }
        EntryKind::Incoming { from, encrypted } => {
            if !encrypted {
                spans.push((format!("{UNENCRYPTED_MARK} "), warning()));
            }
            let style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
            spans.push((from.clone(), style));
            spans.push((format!(": {}", entry.text), Style::new()));
        }
        EntryKind::Outgoing { to, delivery } => {
            let style = Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD);
            spans.push((app.me_name.clone(), style));
            if let Some(to) = to {
                spans.push((format!(" \u{2192} {to}"), dim()));
            }
            spans.push((format!(": {}", entry.text), Style::new()));
            let (mark, style) = match delivery {
                Delivery::Queued => (" \u{b7}", dim()),
                Delivery::Sent => (" \u{2713}", dim()),
                Delivery::Delivered => (" \u{2713}\u{2713}", Style::new().fg(Color::Green)),
                Delivery::Failed => (" \u{2717} not delivered", Style::new().fg(Color::Red)),
            };
            spans.push((mark.to_owned(), style));
        }
    }
    spans
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect, bordered: bool) {
    let block = if bordered {
        let title = match app.active_session() {
            Some(s) if s.connected() => Line::from(
                [
                    cells::spans(&format!(" message to {}", s.name), Style::new()),
                    vec![protection_span(s.encrypted()), Span::raw(" ")],
                ]
                .concat(),
            ),
            _ => Line::from(" message "),
        };
        Block::bordered().title(title)
    } else {
        Block::new()
    };
    let inner = block.inner(area);
    let prompt = "> ";
    let room = usize::from(inner.width).saturating_sub(prompt.len() + 1);
    let line = if app.input.is_empty() {
        let hint = if app.active_session().is_some_and(|s| s.connected()) {
            "type a message and press Enter; /help for commands"
        } else {
            "Enter connects to the selected peer; /help for commands"
        };
        Line::from(vec![Span::raw(prompt), Span::styled(hint, dim())])
    } else {
        let (visible, cursor_col) = input_window(&app.input, app.cursor, room);
        if inner.width > 0 && inner.height > 0 {
            let x = inner.x + u16::try_from(prompt.len() + cursor_col).unwrap_or(u16::MAX);
            frame.set_cursor_position(Position::new(x.min(inner.right() - 1), inner.y));
        }
        Line::from([vec![Span::raw(prompt)], visible].concat())
    };
    if app.input.is_empty() && inner.width > 0 && inner.height > 0 && !app.quitting() {
        let x = inner.x + u16::try_from(prompt.len()).unwrap_or(0);
        frame.set_cursor_position(Position::new(x.min(inner.right() - 1), inner.y));
    }
    frame.render_widget(Paragraph::new(line).block(block), area);
}

/// The part of the input that fits in `room` columns with the cursor in
/// view (as spans of [`cells`]), and the cursor's column within it. The
/// cursor counts characters; inside a piece it stands after it.
fn input_window(input: &str, cursor: usize, room: usize) -> (Vec<Span<'static>>, usize) {
    let pieces = cells::pieces(input);
    // The piece the cursor stands before.
    let at = pieces
        .iter()
        .position(|p| p.char_start >= cursor)
        .unwrap_or(pieces.len());
    // Take pieces left of the cursor while they fit, then fill right.
    let mut start = at;
    let mut used = 0;
    while start > 0 && used + pieces[start - 1].width <= room {
        start -= 1;
        used += pieces[start].width;
    }
    let cursor_col = used;
    let mut end = at;
    while end < pieces.len() && used + pieces[end].width <= room {
        used += pieces[end].width;
        end += 1;
    }
    (
        cells::piece_spans(&pieces[start..end], Style::new()),
        cursor_col,
    )
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let server = if app.server_connected {
        "server: connected"
    } else {
        "server: reconnecting..."
    };
    let me = format!("{} {}", app.me_name, short_id(&app.me_id));
    let session = if app.quitting() {
        "quitting...".to_owned()
    } else if let Some(s) = app.active_session() {
        session_text(s)
    } else if let Some(s) = app.connecting.as_ref().and_then(|id| app.sessions.get(id)) {
        session_text(s)
    } else {
        "no chat".to_owned()
    };
    let text = format!(" {server} | {me} | {session}");
    let bar = Paragraph::new(Line::from(cells::spans(&text, Style::new())))
        .style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(bar, area);
}

fn session_text(s: &super::state::SessionView) -> String {
    match &s.path {
        Some(path) => {
            let mut text = format!("{}: connected, {path}", s.name);
            if let Some(rtt) = s.rtt_ms {
                text.push_str(&format!(", rtt {rtt:.1} ms"));
            }
            if !s.reliable {
                text.push_str(", seed protocol");
            }
            match s.encrypted() {
                Some(true) => text.push_str(", end-to-end encrypted"),
                Some(false) => text.push_str(", NOT encrypted"),
                None => {}
            }
            text
        }
        None => format!("{}: connecting (attempt {})", s.name, s.attempt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn wraps_words_indents_continuations_and_splits_long_words() {
        let plain = |t: &str| vec![(t.to_owned(), Style::new())];
        assert_eq!(
            text_of(&wrap(&plain("12:00 the quick brown fox jumps"), 15, 6)),
            ["12:00 the quick", "brown fox jumps"],
            "too narrow for the indent: none"
        );
        assert_eq!(
            text_of(&wrap(&plain("12:00 the quick brown fox jumps over"), 20, 6)),
            ["12:00 the quick", "      brown fox", "      jumps over"]
        );
        assert_eq!(
            text_of(&wrap(&plain("ab abcdefghijklmnopqrstuvwxyz"), 12, 0)),
            ["ab abcdefghi", "jklmnopqrstu", "vwxyz"],
            "a word longer than a row starts where it is and is split"
        );
        // Wide characters count two columns and are never cut in half.
        assert_eq!(
            text_of(&wrap(
                &plain("\u{4f60}\u{597d}\u{4f60}\u{597d}\u{4f60}"),
                5,
                0
            )),
            ["\u{4f60}\u{597d}", "\u{4f60}\u{597d}", "\u{4f60}"]
        );
        assert!(wrap(&plain("x"), 0, 0).is_empty());
    }

    #[test]
    fn input_window_keeps_the_cursor_in_view() {
        let window = |input: &str, cursor, room| {
            let (spans, col) = input_window(input, cursor, room);
            (Line::from(spans).to_string(), col)
        };
        assert_eq!(window("hello", 5, 10), ("hello".into(), 5));
        assert_eq!(window("hello world", 11, 5), ("world".into(), 5));
        assert_eq!(window("hello world", 0, 5), ("hello".into(), 0));
        assert_eq!(window("hello world", 3, 2), ("el".into(), 2));
        // Clusters count their real columns: a ZWJ family drawn scalar by
        // scalar takes six, CJK two each, e + combining acute one.
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
        assert_eq!(
            window(&format!("a{family}b"), 7, 20),
            ("a\u{1f468}\u{1f469}\u{1f467}b".into(), 8)
        );
        assert_eq!(window("\u{4f60}\u{597d}x", 2, 3), ("\u{597d}x".into(), 2));
        assert_eq!(window("e\u{301}x", 2, 5), ("e\u{301}x".into(), 1));
    }
}
