//! Connect targets: naming ourselves is said as such, and a start-up
//! connect (`--connect`) to a peer that is not online yet waits for it:
//! retried when any peer joins and once per attempt duration, up to the
//! connect-attempt limit (the same budget a connect gets to answer).

use tokio::time::Instant;

use super::{Core, MAX_DEFERRED_CONNECTS};
use crate::engine::api::{ErrorCode, Event, RequestId};
use crate::engine::directory::ResolveError;
use crate::signaling::RemotePeer;

/// A connect waiting for its peer to come online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Awaited {
    id: Option<RequestId>,
    target: String,
    /// Lookups made so far (the first one included).
    tries: u32,
    /// When the next lookup is due without a join.
    next: Instant,
}

impl Core {
    /// The peer `target` names; naming ourselves (by id, id prefix or
    /// username) is [`ResolveError::Myself`], not "no online peer".
    pub(super) fn resolve_target(&self, target: &str) -> Result<RemotePeer, ResolveError> {
        match self.directory.resolve(target) {
            Ok(peer) => Ok(peer.clone()),
            Err(ResolveError::Unknown(input)) if self.is_me(&input) => {
                Err(ResolveError::Myself(input))
            }
            Err(err) => Err(err),
        }
    }

    fn is_me(&self, input: &str) -> bool {
        let lower = input.trim().to_lowercase();
        !lower.is_empty()
            && (self.username.to_lowercase() == lower
                || (lower.len() >= 4 && self.me.to_string().starts_with(&lower)))
    }

    /// A connect (`wait`: one that waits for its peer), held until the
    /// first peer list arrives ([`MAX_DEFERRED_CONNECTS`]).
    pub(super) fn connect_or_defer(
        &mut self,
        id: Option<RequestId>,
        target: String,
        wait: bool,
        now: Instant,
    ) {
        if !self.directory.has_snapshot() {
            if self.deferred.len() < MAX_DEFERRED_CONNECTS {
                self.deferred.push((id, target, wait));
            } else {
                self.emit(Event::Error {
                    id,
                    code: ErrorCode::UnknownPeer,
                    message: "the peer list has not arrived yet".into(),
                });
            }
        } else if wait {
            self.connect_when_online(id, &target, now);
        } else {
            // The user picked a peer: a start-up connect stops waiting.
            self.awaited = None;
            self.connect(id, &target);
        }
    }

    /// A connect that waits for its peer to come online (see the module).
    pub(super) fn connect_when_online(
        &mut self,
        id: Option<RequestId>,
        target: &str,
        now: Instant,
    ) {
        match self.resolve_target(target) {
            Err(ResolveError::Unknown(_)) => {
                let attempts = self.session_config.connect_attempts;
                self.emit(Event::Info {
                    message: format!(
                        "{target} is not online yet; waiting for it to come online \
                         (up to {attempts} attempts of {:.0?})...",
                        self.session_config.attempt_duration
                    ),
                });
                self.awaited = Some(Awaited {
                    id,
                    target: target.to_owned(),
                    tries: 1,
                    next: now + self.session_config.attempt_duration,
                });
            }
            _ => self.connect(id, target),
        }
    }

    /// When the waiting connect looks again.
    pub(super) fn awaited_deadline(&self) -> Option<Instant> {
        self.awaited.as_ref().map(|a| a.next)
    }

    /// Looks for the awaited peer again: `joined` after a peer came online
    /// (looked up at once), else only once its next lookup is due.
    pub(super) fn retry_awaited(&mut self, joined: bool, now: Instant) {
        let Some(mut awaited) = self.awaited.take() else {
            return;
        };
        let due = now >= awaited.next;
        if !joined && !due {
            self.awaited = Some(awaited);
            return;
        }
        let found = !matches!(
            self.resolve_target(&awaited.target),
            Err(ResolveError::Unknown(_))
        );
        if found {
            self.connect(awaited.id, &awaited.target);
            return;
        }
        if !due {
            self.awaited = Some(awaited);
            return;
        }
        awaited.tries += 1;
        if awaited.tries <= self.session_config.connect_attempts {
            awaited.next = now + self.session_config.attempt_duration;
            self.awaited = Some(awaited);
            return;
        }
        let message = format!(
            "no online peer matches '{}' (waited {} attempts of {:.0?})",
            awaited.target,
            self.session_config.connect_attempts,
            self.session_config.attempt_duration
        );
        self.emit(Event::Error {
            id: awaited.id,
            code: ErrorCode::UnknownPeer,
            message,
        });
    }
}
