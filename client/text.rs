//! What the front ends say, and how network text is made safe to show: one
//! home for the phrasing the console and the full-screen UI share and for
//! every sanitiser (terminal text and the `--json` stream).
//!
//! The engine's events carry raw network text and no front-end syntax;
//! hints that name commands (`/connect`) are added here.

use crate::engine::{DisconnectReason, ErrorCode, SessionState, SessionStatus};

/// The hint shown when a line is typed with no conversation.
pub const CONNECT_HINT: &str = "use /connect <peer>";

/// The mark of an end-to-end encrypted session (peer list, chat header);
/// an unencrypted one is marked [`crate::input::UNENCRYPTED_MARK`]. Both
/// ASCII, so every terminal shows them one column per character.
pub const ENCRYPTED_MARK: &str = "[e2e]";

/// Safety-number groups (of 5 digits) per row when shown on its own.
pub const SAFETY_GROUPS_PER_ROW: usize = 4;

/// What a new session's protection means, after its peer's name: for an
/// encrypted one where its safety number is; for a plaintext (seed) one a
/// plain warning.
pub fn encryption_note(name: &str, encrypted: bool) -> String {
    if encrypted {
        "end-to-end encrypted; /verify shows the safety number".to_owned()
    } else {
        format!(
            "NOT encrypted: {name} speaks the seed protocol; anyone on the path can read and \
             forge these lines"
        )
    }
}

/// A safety number (12 groups of 5 digits) as rows of
/// [`SAFETY_GROUPS_PER_ROW`] groups, easier to read aloud and compare.
/// Sanitised (it is engine output, but cheap to be sure).
pub fn safety_number_rows(number: &str) -> Vec<String> {
    let groups: Vec<&str> = number.split_whitespace().collect();
    groups
        .chunks(SAFETY_GROUPS_PER_ROW)
        .map(|row| sanitize_display(&row.join(" ")))
        .collect()
}

/// The one line on how to use a safety number shown with `name`.
pub fn verify_howto(name: &str) -> String {
    format!(
        "Compare it with the number {name} sees (/verify on their side) out of band: in person \
         or on a call, not in this chat. The same digits mean no one is in the middle; different \
         digits mean someone may be reading along: do not trust this chat."
    )
}

/// Neutralises text received from the network before it reaches a terminal:
/// control characters (C0, DEL, C1) become visible escapes like `\x1b`, so
/// ANSI/OSC sequences, cursor moves and bells cannot take effect. Tabs
/// become a space. Bidi overrides are escaped too.
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

/// Makes a serialized JSON line safe for a terminal that shows the stream.
/// serde_json escapes C0 controls (ESC included) but writes DEL, the C1
/// controls (e.g. U+009B, a one-character CSI) and bidi overrides as they
/// are. They can only occur inside JSON strings, so writing them as
/// `\uXXXX` escapes changes nothing for a JSON reader.
pub fn escape_json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for ch in json.chars() {
        match ch {
            '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{:04x}", ch as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// An error's message as the user reads it (raw: sanitize before
/// printing): the engine's words plus the front end's hint.
pub fn error_message(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::NotConnected if !message.contains(CONNECT_HINT) => {
            format!("{message}; {CONNECT_HINT}")
        }
        _ => message.to_owned(),
    }
}

/// How a session ended, after the peer's name ("bob is offline ...").
/// `None` for the endings phrased on their own (`local`, `reset`).
pub fn why_ended(reason: DisconnectReason) -> Option<&'static str> {
    match reason {
        DisconnectReason::RemoteDisconnect => Some("disconnected"),
        DisconnectReason::Timeout => Some("is offline (no answer to keep-alive)"),
        DisconnectReason::Left => Some("left (the signaling server reports it offline)"),
        DisconnectReason::Unreachable => Some("could not be reached"),
        DisconnectReason::HandshakeFailed => {
            Some("was refused (its key could not be verified; see the warning above)")
        }
        DisconnectReason::Local | DisconnectReason::Reset => None,
    }
}

/// `name started a new session` (a `reset`).
pub fn restarted(name: &str) -> String {
    format!("{name} started a new session")
}

/// The words after "Lost the signaling server".
pub fn server_lost(error: &str) -> String {
    format!(
        "the signaling server ({}); chat continues, reconnecting in the background",
        sanitize_display(error)
    )
}

/// "connected" or "reconnecting..." for the server line of a status.
pub fn server_state(connected: bool) -> &'static str {
    if connected {
        "connected"
    } else {
        "reconnecting..."
    }
}

/// `, rtt 1.5 ms`, or nothing before the first measurement.
pub fn rtt_suffix(rtt_ms: Option<f64>) -> String {
    rtt_ms
        .map(|r| format!(", rtt {r:.1} ms"))
        .unwrap_or_default()
}

/// A session's details for `/status`: state, path and address, RTT,
/// protocol, encryption, unacknowledged lines. Sanitised. (The safety
/// number is left to the caller: it is long.)
pub fn session_details(st: &SessionStatus) -> String {
    let mut details = vec![st.state.to_string()];
    if let (Some(path), Some(addr)) = (st.path, &st.addr) {
        details.push(format!("{path} {}", sanitize_display(addr)));
    }
    if let Some(rtt) = st.rtt_ms {
        details.push(format!("rtt {rtt:.1} ms"));
    }
    if !st.reliable && st.state == SessionState::Connected {
        details.push("seed protocol".to_owned());
    }
    if st.state == SessionState::Connected {
        details.push(
            if st.encrypted {
                "end-to-end encrypted"
            } else {
                "NOT encrypted"
            }
            .to_owned(),
        );
    }
    if st.pending > 0 {
        details.push(format!("{} unacknowledged", st.pending));
    }
    details.join(", ")
}

/// The first `n` characters of a peer id (ids are plain ASCII).
pub fn short(id: &impl std::fmt::Display, n: usize) -> String {
    id.to_string().chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_are_escaped() {
        assert_eq!(
            sanitize_display("a\u{1b}[2J\tb\u{9b}\u{202e}"),
            r"a\x1b[2J b\x9b\u{202e}"
        );
        assert_eq!(
            escape_json_for_terminal("\"\u{9b}\u{7f}é\""),
            r#""\u009b\u007fé""#
        );
    }

    #[test]
    fn the_connect_hint_is_the_front_ends_and_added_once() {
        let engine_words = "not connected to a peer";
        let shown = error_message(ErrorCode::NotConnected, engine_words);
        assert_eq!(shown, "not connected to a peer; use /connect <peer>");
        assert_eq!(error_message(ErrorCode::NotConnected, &shown), shown);
        assert_eq!(error_message(ErrorCode::SendFailed, "x"), "x");
    }

    #[test]
    fn safety_numbers_are_shown_in_rows_of_four_groups() {
        let number = (0..12)
            .map(|i| format!("{i:05}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            safety_number_rows(&number),
            [
                "00000 00001 00002 00003",
                "00004 00005 00006 00007",
                "00008 00009 00010 00011"
            ]
        );
        assert!(encryption_note("bob", false).starts_with("NOT encrypted: bob speaks the seed"));
        assert!(encryption_note("bob", true).contains("/verify"));
    }
}
