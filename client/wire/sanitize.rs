//! Display hygiene for text that came from the network.

/// Neutralises text received from the network before it reaches a terminal:
/// control characters (C0, DEL, C1) become U+FFFD-free visible escapes like
/// `\x1b`, so ANSI/OSC sequences, cursor moves and bells cannot take effect.
/// Tabs become a space. Also used for usernames.
pub fn sanitize_display(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\t' => out.push(' '),
            c if c.is_control() => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{code:x}}}"));
                }
            }
            // Bidi overrides can visually reorder a line; show them escaped.
            c @ ('\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_neutralises_escapes() {
        let evil = "hi\u{1b}[2J\u{7}\r\n\u{9b}31m\u{202e}x\ty";
        let clean = sanitize_display(evil);
        assert!(!clean.chars().any(|c| c.is_control()));
        assert_eq!(clean, "hi\\x1b[2J\\x07\\x0d\\x0a\\x9b31m\\u{202e}x y");
        assert_eq!(sanitize_display("plain ünïcode"), "plain ünïcode");
    }
}
