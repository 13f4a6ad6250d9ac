//! Word wrapping for the chat pane: styled text cut into rows of a given
//! width at spaces, continuation rows indented, overlong words split, and
//! every grapheme measured in terminal columns (wide ones never halved),
//! cut into the pieces of [`super::cells`].

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::cells::{Piece, piece_spans, pieces};

/// Word-wraps styled text to `width` columns. Rows after the first are
/// indented by `indent` (when that leaves room); a word longer than a row
/// is split. Zero-width graphemes are dropped, as the buffer would.
pub fn wrap(spans: &[(String, Style)], width: u16, indent: u16) -> Vec<Line<'static>> {
    let width = usize::from(width);
    if width == 0 {
        return Vec::new();
    }
    // An indent that leaves less than ten columns would only squeeze the
    // text: narrow panes get none.
    let indent = if width >= usize::from(indent) + 10 {
        usize::from(indent)
    } else {
        0
    };
    let mut rows = Rows::new(width, indent);
    for token in tokens(spans) {
        rows.place(token);
    }
    rows.rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| styled_line(row, if i > 0 { indent } else { 0 }))
        .collect()
}

/// One piece to draw, with its style.
type Cell<'a> = (Piece<'a>, Style);

/// Splits styled text into words and the runs of spaces between them (the
/// units wrapping keeps together), dropping zero-width graphemes.
fn tokens(spans: &[(String, Style)]) -> Vec<Vec<Cell<'_>>> {
    let mut tokens: Vec<Vec<Cell>> = Vec::new();
    let mut last_is_space = None;
    for (text, style) in spans {
        for piece in pieces(text) {
            let space = piece.text == " ";
            if last_is_space != Some(space) {
                tokens.push(Vec::new());
                last_is_space = Some(space);
            }
            if let Some(token) = tokens.last_mut() {
                token.push((piece, *style));
            }
        }
    }
    tokens
}

/// The rows of one wrapped entry as they fill up.
struct Rows<'a> {
    /// Columns of the pane.
    width: usize,
    /// Columns every row after the first gives to its indent.
    indent: usize,
    /// The rows so far; the last one is being filled.
    rows: Vec<Vec<Cell<'a>>>,
    /// Columns used in the last row.
    used: usize,
}

impl<'a> Rows<'a> {
    fn new(width: usize, indent: usize) -> Rows<'a> {
        Rows {
            width,
            indent,
            rows: vec![Vec::new()],
            used: 0,
        }
    }

    /// Columns the current row has for text (the first has no indent).
    fn room(&self) -> usize {
        if self.rows.len() == 1 {
            self.width
        } else {
            self.width - self.indent
        }
    }

    /// Adds one token: on this row if it fits; a run of spaces that does
    /// not fit becomes the break; a word that does not fit starts the next
    /// row, and one longer than a whole row is split cell by cell.
    fn place(&mut self, token: Vec<Cell<'a>>) {
        let token_width: usize = token.iter().map(|t| t.0.width).sum();
        let is_space = token.first().is_some_and(|t| t.0.text == " ");
        if self.used + token_width <= self.room() {
            self.used += token_width;
            if let Some(row) = self.rows.last_mut() {
                row.extend(token);
            }
            return;
        }
        if is_space {
            // A break here: the spaces go.
            self.break_row();
            return;
        }
        if token_width <= self.width - self.indent && self.used > 0 {
            self.break_row();
        }
        for cell in token {
            if self.used + cell.0.width > self.room() && self.used > 0 {
                self.break_row();
            }
            self.used += cell.0.width;
            if let Some(row) = self.rows.last_mut() {
                row.push(cell);
            }
        }
    }

    /// Ends the current row (dropping its trailing spaces) and starts one.
    fn break_row(&mut self) {
        if let Some(row) = self.rows.last_mut() {
            while row.last().is_some_and(|cell| cell.0.text == " ") {
                row.pop();
            }
        }
        self.rows.push(Vec::new());
        self.used = 0;
    }
}

/// One wrapped row as a line: `indent` spaces, then the cells' spans
/// (see [`super::cells::piece_spans`]), one per run of a style.
fn styled_line(row: Vec<Cell>, indent: usize) -> Line<'static> {
    let mut line: Vec<Span<'static>> = Vec::new();
    if indent > 0 {
        line.push(Span::raw(" ".repeat(indent)));
    }
    let mut run: Vec<Piece> = Vec::new();
    let mut style = None;
    for (piece, s) in row {
        if style.is_some_and(|st| st != s) {
            line.extend(piece_spans(&run, style.unwrap_or_default()));
            run.clear();
        }
        style = Some(s);
        run.push(piece);
    }
    line.extend(piece_spans(&run, style.unwrap_or_default()));
    Line::from(line)
}
