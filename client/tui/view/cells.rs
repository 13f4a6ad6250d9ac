//! Text as terminal cells. ratatui measures every grapheme cluster with
//! unicode-width and skips the columns after a wide one; a terminal that
//! draws the cluster wider or narrower (tmux 3.3a draws `👍🏽` as two
//! emoji, four columns) then leaves stray glyphs and pushes the rest of the
//! row, borders included, out of place. So a cluster whose width is not
//! the sum of its scalars' widths (skin tones, ZWJ sequences, `❤️`: where
//! terminals disagree) is drawn scalar by scalar, each its own cell, its
//! zero-width joiners and selectors left out; every other cluster (CJK,
//! combining marks, flags) is drawn whole. Every width here is the one
//! ratatui computes for what it is given, so layout and buffer agree.

use ratatui::style::Style;
use ratatui::text::Span;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// One unit drawn in one go: a whole grapheme cluster, or one scalar of a
/// cluster drawn scalar by scalar (`split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The text of the unit.
    pub text: &'a str,
    /// Its columns, as ratatui's buffer counts them.
    pub width: usize,
    /// Part of a split cluster: it must be its own span, or ratatui would
    /// join it to its neighbour again.
    pub split: bool,
    /// Characters of the text before this piece (for the input cursor).
    pub char_start: usize,
}

/// `text` as the pieces it is drawn with; zero-width units are dropped, as
/// ratatui's buffer drops them.
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut chars_before = 0;
    for cluster in text.graphemes(true) {
        let count = cluster.chars().count();
        let width = cluster.width();
        let sum: usize = cluster.chars().map(|c| c.width().unwrap_or(0)).sum();
        if width == sum || count == 1 {
            if width > 0 {
                out.push(Piece {
                    text: cluster,
                    width,
                    split: false,
                    char_start: chars_before,
                });
            }
        } else {
            for (i, (at, ch)) in cluster.char_indices().enumerate() {
                let scalar = &cluster[at..at + ch.len_utf8()];
                let width = scalar.width();
                if width > 0 {
                    out.push(Piece {
                        text: scalar,
                        width,
                        split: true,
                        char_start: chars_before + i,
                    });
                }
            }
        }
        chars_before += count;
    }
    out
}

/// Columns `text` takes on screen when drawn with [`spans`].
pub fn width(text: &str) -> usize {
    pieces(text).iter().map(|p| p.width).sum()
}

/// Spans that draw `pieces` in `style`: runs of whole clusters share a
/// span, every split piece gets its own.
pub fn piece_spans(pieces: &[Piece], style: Style) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut run = String::new();
    for piece in pieces {
        if piece.split {
            if !run.is_empty() {
                spans.push(Span::styled(std::mem::take(&mut run), style));
            }
            spans.push(Span::styled(piece.text.to_owned(), style));
        } else {
            run.push_str(piece.text);
        }
    }
    if !run.is_empty() {
        spans.push(Span::styled(run, style));
    }
    spans
}

/// Spans that draw `text` in `style` (see the module docs).
pub fn spans(text: &str, style: Style) -> Vec<Span<'static>> {
    piece_spans(&pieces(text), style)
}

#[cfg(test)]
mod tests {
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;
    use ratatui::text::Line;
    use ratatui::widgets::Widget;

    use super::*;

    const TONE: &str = "\u{1f44d}\u{1f3fd}";
    const FLAG: &str = "\u{1f1eb}\u{1f1f7}";
    const FAMILY: &str = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
    const CJK: &str = "\u{4f60}\u{597d}";
    const ACCENT: &str = "e\u{301}";
    const HEART: &str = "\u{2764}\u{fe0f}";

    fn texts(text: &str) -> Vec<(&str, usize, bool)> {
        pieces(text)
            .iter()
            .map(|p| (p.text, p.width, p.split))
            .collect()
    }

    #[test]
    fn clusters_terminals_agree_on_stay_whole() {
        assert_eq!(texts(CJK), [("\u{4f60}", 2, false), ("\u{597d}", 2, false)]);
        assert_eq!(texts(ACCENT), [(ACCENT, 1, false)]);
        assert_eq!(texts(FLAG), [(FLAG, 2, false)]);
        assert_eq!(width(&format!("a{CJK}{ACCENT}{FLAG}")), 8);
        assert_eq!(texts("\u{200b}"), [], "zero width: dropped");
    }

    #[test]
    fn clusters_terminals_disagree_on_are_split_into_scalars() {
        assert_eq!(
            texts(TONE),
            [("\u{1f44d}", 2, true), ("\u{1f3fd}", 2, true)]
        );
        assert_eq!(
            texts(FAMILY),
            [
                ("\u{1f468}", 2, true),
                ("\u{1f469}", 2, true),
                ("\u{1f467}", 2, true)
            ],
            "the joiners go"
        );
        assert_eq!(texts(HEART), [("\u{2764}", 1, true)], "the selector goes");
        assert_eq!(width(&format!("{TONE} {FAMILY}")), 11);
        let starts: Vec<usize> = pieces(&format!("a{TONE}b"))
            .iter()
            .map(|p| p.char_start)
            .collect();
        assert_eq!(starts, [0, 1, 2, 3]);
    }

    #[test]
    fn split_pieces_get_spans_of_their_own() {
        let spans = spans(&format!("a {TONE} b"), Style::new());
        let texts: Vec<&str> = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(texts, ["a ", "\u{1f44d}", "\u{1f3fd}", " b"]);
    }

    /// What ratatui writes to its buffer matches our widths: every piece
    /// at the column we counted, and the text after it right behind.
    #[test]
    fn widths_agree_with_ratatuis_buffer() {
        for text in [TONE, FLAG, FAMILY, CJK, ACCENT, HEART, "plain"] {
            let line = format!("x{text}{text}|");
            let area = Rect::new(0, 0, 40, 1);
            let mut buf = Buffer::empty(area);
            Line::from(spans(&line, Style::new())).render(area, &mut buf);
            let mut col = 0;
            for piece in pieces(&line) {
                let x = u16::try_from(col).unwrap();
                assert_eq!(buf[(x, 0)].symbol(), piece.text, "{line:?} at {col}");
                col += piece.width;
            }
            assert_eq!(col, width(&line));
            assert_eq!(buf[(u16::try_from(col - 1).unwrap(), 0)].symbol(), "|");
        }
    }
}
