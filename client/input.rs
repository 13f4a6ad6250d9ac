//! Parsing of what the user types, shared by every front end.

use super::engine::Command;

/// What one input line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A command for the engine.
    Command(Command),
    /// A chat line (`//text` sends `/text`).
    Text(String),
    /// `/help`.
    Help,
    /// `/verify [NAME]`: show the safety number of the active session, or
    /// of NAME's (a username, peer id or id prefix). Answered by the front
    /// end from what it last heard (see `crate::frontend::Verifier`).
    Verify(Option<String>),
    /// Nothing to do (an empty line).
    Empty,
    /// `/something` we do not know, or a command missing its argument.
    Invalid(String),
}

/// How lines from an unencrypted (seed-protocol) session are marked, in
/// the console and the full-screen UI alike.
pub const UNENCRYPTED_MARK: &str = "[unencrypted]";

/// The help text listing every command.
pub const HELP: &str = "commands: /connect <peer id, id prefix or username>, /peers, /status, \
/verify [name] (the safety number to compare with the peer out of band), \
/trust <username> (accept a peer's changed key), /leave, /quit, /help; \
any other line is sent to the connected peer (start it with // to send a leading /); \
lines marked [unencrypted] come from a seed-protocol peer in plaintext: anyone on the path \
can read and forge them";

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Input {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Input::Empty;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Input::Text(format!("/{rest}"));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Input::Text(line.to_owned());
    };
    let (name, arg) = match rest.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, arg.trim()),
        None => (rest, ""),
    };
    match (name, arg) {
        ("connect" | "c", "") => {
            Input::Invalid("usage: /connect <peer id, id prefix or username>".into())
        }
        ("connect" | "c", target) => Input::Command(Command::Connect(target.to_owned())),
        ("peers" | "list", _) => Input::Command(Command::Peers),
        ("leave" | "disconnect", _) => Input::Command(Command::Leave),
        ("status", _) => Input::Command(Command::Status),
        ("verify", "") => Input::Verify(None),
        ("verify", target) => Input::Verify(Some(target.to_owned())),
        ("trust", "") => {
            Input::Invalid("usage: /trust <username> (forgets the key pinned for that name)".into())
        }
        ("trust", name) => Input::Command(Command::Trust(name.to_owned())),
        ("quit" | "exit" | "q", _) => Input::Command(Command::Quit),
        ("help" | "h" | "?", _) => Input::Help,
        _ => Input::Invalid(format!("unknown command '/{name}'; try /help")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_text() {
        assert_eq!(parse_line("hello"), Input::Text("hello".into()));
        assert_eq!(parse_line("  "), Input::Empty);
        assert_eq!(parse_line("//etc"), Input::Text("/etc".into()));
        assert_eq!(
            parse_line("/connect  bob "),
            Input::Command(Command::Connect("bob".into()))
        );
        assert!(matches!(parse_line("/connect"), Input::Invalid(_)));
        assert_eq!(parse_line("/peers"), Input::Command(Command::Peers));
        assert_eq!(parse_line("/status"), Input::Command(Command::Status));
        assert_eq!(parse_line("/quit\r"), Input::Command(Command::Quit));
        assert_eq!(parse_line("/help"), Input::Help);
        assert!(matches!(parse_line("/nope"), Input::Invalid(_)));
    }

    #[test]
    fn parses_verify_and_trust() {
        assert_eq!(parse_line("/verify"), Input::Verify(None));
        assert_eq!(parse_line("/verify  "), Input::Verify(None));
        assert_eq!(
            parse_line("/verify bob "),
            Input::Verify(Some("bob".into()))
        );
        assert_eq!(
            parse_line("/trust bob"),
            Input::Command(Command::Trust("bob".into()))
        );
        match parse_line("/trust") {
            Input::Invalid(message) => assert!(message.contains("/trust <username>"), "{message}"),
            other => panic!("a bare /trust is not a command: {other:?}"),
        }
        assert!(HELP.contains("/verify [name]") && HELP.contains("/trust <username>"));
        assert!(HELP.contains(UNENCRYPTED_MARK));
    }
}
