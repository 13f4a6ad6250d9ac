//! Which conversation typed lines go to. The engine alone decides it and
//! reports every change ([`super::Event::Focus`]); front ends only show it.

use std::collections::HashSet;

use p2pchat::PeerId;

/// The active peer and what the user asked for.
#[derive(Debug, Default)]
pub struct Focus {
    /// The peer typed lines go to.
    active: Option<PeerId>,
    /// The peer the user last asked to connect to (becomes active when up).
    wanted: Option<PeerId>,
    /// Peers the user asked to connect to (their sessions are not
    /// "incoming"); forgotten when the session ends.
    outgoing: HashSet<PeerId>,
}

impl Focus {
    /// The active peer.
    pub fn active(&self) -> Option<PeerId> {
        self.active
    }

    /// The user asked to connect to `peer`.
    pub fn asked(&mut self, peer: PeerId) {
        self.wanted = Some(peer);
        self.outgoing.insert(peer);
    }

    /// Whether the session with `peer` was started by the other side.
    pub fn is_incoming(&self, peer: PeerId) -> bool {
        !self.outgoing.contains(&peer)
    }

    /// A session came up: it becomes active if the user asked for it last
    /// or nothing else is. Returns the new active peer when it changed.
    pub fn came_up(&mut self, peer: PeerId) -> Option<Option<PeerId>> {
        if self.active.is_none() || self.wanted == Some(peer) {
            return self.set(Some(peer));
        }
        None
    }

    /// The user picked a session that is already up.
    pub fn chose(&mut self, peer: PeerId) -> Option<Option<PeerId>> {
        self.set(Some(peer))
    }

    /// The user left the active conversation; returns whom they left.
    pub fn leave(&mut self) -> Option<PeerId> {
        self.active.take()
    }

    /// The session with `peer` ended. Returns `Some(None)` when it was the
    /// active one.
    pub fn ended(&mut self, peer: PeerId) -> Option<Option<PeerId>> {
        self.outgoing.remove(&peer);
        if self.wanted == Some(peer) {
            self.wanted = None;
        }
        if self.active == Some(peer) {
            return self.set(None);
        }
        None
    }

    fn set(&mut self, peer: Option<PeerId>) -> Option<Option<PeerId>> {
        (self.active != peer).then(|| {
            self.active = peer;
            peer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02}")).unwrap()
    }

    #[test]
    fn what_was_asked_last_wins_and_others_do_not_steal_the_focus() {
        let (a, b, c) = (id(1), id(2), id(3));
        let mut focus = Focus::default();
        assert_eq!(focus.came_up(c), Some(Some(c)), "incoming, nothing active");
        focus.asked(a);
        focus.asked(b);
        assert_eq!(focus.came_up(a), None, "A is not the one asked for last");
        assert_eq!(focus.active(), Some(c));
        assert!(!focus.is_incoming(a));
        assert!(focus.is_incoming(c));
        assert_eq!(focus.came_up(b), Some(Some(b)));
        assert_eq!(focus.ended(a), None);
        assert_eq!(focus.ended(b), Some(None));
        assert_eq!(focus.active(), None);
        assert_eq!(focus.chose(c), Some(Some(c)));
        assert_eq!(focus.chose(c), None, "no change, no report");
        assert_eq!(focus.leave(), Some(c));
    }
}
