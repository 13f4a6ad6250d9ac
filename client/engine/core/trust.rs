//! Trust on first use: the first key seen for a username is pinned in the
//! known-peers file; a session whose proven key differs from the pin is
//! closed before the front end hears of it, with an explanation of what a
//! changed key can mean and how to accept it (`/trust NAME`).

use p2pchat::PeerId;
use tokio::time::Instant;

use super::Core;
use crate::engine::api::{ErrorCode, Event, RequestId};
use crate::identity::Pin;
use crate::identity::known_peers::changed_key_explanation;
use crate::wire::unix_now;

impl Core {
    /// Checks a newly connected session's key against the pins; pins a
    /// first key. False: the key changed, the session is being closed.
    pub(super) fn check_pin(&mut self, id: PeerId) -> bool {
        let Some(session) = self.sessions.get(&id) else {
            return true;
        };
        let Some(key) = session.security().remote_key else {
            // A plaintext (seed) session: nothing to pin.
            return true;
        };
        let name = self.display_name(id);
        match self.known_peers.check_name(&name, &key) {
            Pin::Matches => true,
            Pin::New => {
                if let Err(err) = self.known_peers.pin(id, &key, &name, unix_now() as u64) {
                    tracing::warn!(%err, peer = %id, "could not pin the peer's key");
                    self.emit(Event::error(
                        ErrorCode::Refused,
                        format!("could not remember {name}'s key: {err}"),
                    ));
                }
                true
            }
            Pin::Changed { pinned } => {
                let message =
                    changed_key_explanation(&name, &pinned, &key, self.known_peers.path());
                tracing::warn!(peer = %id, "refusing a changed key");
                self.emit(Event::error(ErrorCode::Refused, message));
                self.refused.push(id);
                false
            }
        }
    }

    /// Closes the sessions whose keys were refused (after `flush` reported).
    pub(super) fn close_refused(&mut self, now: Instant) {
        let refused = std::mem::take(&mut self.refused);
        if refused.is_empty() {
            return;
        }
        for id in refused {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.refuse();
            }
        }
        self.flush(now);
    }

    /// `/trust NAME`: forget the pinned key of `name`, so the next session
    /// pins the key it presents.
    pub(super) fn trust(&mut self, id: Option<RequestId>, name: &str) {
        match self.known_peers.forget_name(name) {
            Ok(Some(_)) => self.emit(Event::Info {
                message: format!(
                    "forgot the key pinned for {name}; the next connection pins the key it presents"
                ),
            }),
            Ok(None) => self.emit(Event::Error {
                id,
                code: ErrorCode::UnknownPeer,
                message: format!("no key is pinned for {name}"),
            }),
            Err(err) => self.emit(Event::Error {
                id,
                code: ErrorCode::Refused,
                message: format!("could not update the known-peers file: {err}"),
            }),
        }
    }
}
