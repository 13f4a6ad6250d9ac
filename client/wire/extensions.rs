//! Extension negotiation: the optional features a peer announces in the
//! `extensions` field of `hello`, `ping` and `pong`, and the rule that a
//! feature is used only when both sides announced it.

/// Most entries in a received `extensions` list; longer lists are truncated.
pub const MAX_EXTENSIONS: usize = 16;

/// Optional protocol features. A feature is used only when both sides
/// announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extension {
    /// Message ids, acks, retransmission, in-order exactly-once delivery.
    Reliable,
    /// Long lines split into several `message` datagrams with a `part` field.
    /// Requires [`Extension::Reliable`] (fragments are ordered by id).
    Fragments,
}

impl Extension {
    /// Every extension this implementation speaks, in announcement order.
    pub const ALL: [Extension; 2] = [Extension::Reliable, Extension::Fragments];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Extension::Reliable => "reliable/1",
            Extension::Fragments => "fragments/1",
        }
    }

    /// Parses a wire name; unknown names are `None` (and ignored).
    pub fn parse(name: &str) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// The wire names of every extension we speak, for `hello`/`ping`/`pong`.
pub fn our_extensions() -> Vec<String> {
    Extension::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect()
}

/// The known extensions among announced wire names (unknown ones dropped).
pub fn parse_announced(names: &[String]) -> Vec<Extension> {
    names.iter().filter_map(|n| Extension::parse(n)).collect()
}

/// What the remote peer speaks, as far as we know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `None` until the remote announced (or visibly used) its extensions.
    remote: Option<Vec<Extension>>,
}

impl Negotiated {
    /// Records an announcement (the known entries of an `extensions` list).
    pub fn announced(&mut self, list: Vec<Extension>) {
        self.remote = Some(list);
    }

    /// A `hello` without any `extensions` field: a seed peer.
    pub fn seed(&mut self) {
        self.remote = Some(Vec::new());
    }

    /// A message with an id arrived before any announcement: the sender
    /// negotiated reliability (and fragments) with us already.
    pub fn implied_by_message_id(&mut self) {
        if self.remote.is_none() {
            self.remote = Some(vec![Extension::Reliable, Extension::Fragments]);
        }
    }

    /// Whether both sides speak `ext`.
    pub fn uses(&self, ext: Extension) -> bool {
        self.remote.as_ref().is_some_and(|list| list.contains(&ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_needs_both_sides() {
        let mut n = Negotiated::default();
        assert!(!n.uses(Extension::Reliable));
        n.announced(parse_announced(&["reliable/1".into(), "warp/9".into()]));
        assert!(n.uses(Extension::Reliable) && !n.uses(Extension::Fragments));
        // Once known, a message id implies nothing more.
        n.implied_by_message_id();
        assert!(!n.uses(Extension::Fragments));
        n.seed();
        assert!(!n.uses(Extension::Reliable));
        let mut n = Negotiated::default();
        n.implied_by_message_id();
        assert!(n.uses(Extension::Reliable) && n.uses(Extension::Fragments));
        assert_eq!(parse_announced(&our_extensions()), Extension::ALL.to_vec());
    }
}
