//! Registration challenges, stateless until spent.
//!
//! A peer proves it holds the key its id derives from by signing a
//! one-time challenge (`GetChallenge`, then `Register`). The server keeps
//! nothing per challenge it hands out: a challenge is
//!
//! ```text
//! nonce (16 random bytes) || expiry (unix seconds, u64 big-endian)
//!     || HMAC-SHA256(secret, domain || nonce || expiry || server identity)
//! ```
//!
//! where `secret` is drawn from the OS when the server starts and never
//! leaves the process, and the server identity is its listen address. So a
//! challenge is good only on the server process that made it, only until
//! its expiry ([`CHALLENGE_TTL`] after it was issued) and, because
//! [`Challenges`] remembers each spent nonce until its expiry, only once.
//! The memory of spent nonces is bounded ([`MAX_OUTSTANDING_CHALLENGES`]):
//! when it is full the server refuses (RESOURCE_EXHAUSTED) instead of
//! growing, until enough spent challenges have expired.
//!
//! Every method has an `_at` form taking the current time explicitly, so
//! expiry is tested without waiting.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

/// How long a challenge is valid after it was issued.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// Most spent challenges that have not expired yet which the server
/// remembers (to refuse a replay) at once. Each is remembered until its
/// expiry, at most [`CHALLENGE_TTL`]; while the set is full, `GetChallenge`
/// and a `Register` with a proof fail with RESOURCE_EXHAUSTED rather than
/// the set growing. 100,000 (the default `--max-peers`) lets a full
/// registry's worth of peers register with a proof within one TTL; about
/// 4 MB at most.
pub const MAX_OUTSTANDING_CHALLENGES: usize = 100_000;

/// Random bytes per challenge.
const NONCE_BYTES: usize = 16;

/// Length of the expiry field.
const EXPIRY_BYTES: usize = 8;

/// Length of the HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;

/// Length of a challenge.
pub const CHALLENGE_BYTES: usize = NONCE_BYTES + EXPIRY_BYTES + TAG_BYTES;

/// Domain separation of the challenge tag.
const DOMAIN: &[u8] = b"p2pchat challenge v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Why a challenge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Not [`CHALLENGE_BYTES`] long: not a challenge at all.
    #[error("challenge must be {CHALLENGE_BYTES} bytes from GetChallenge")]
    Malformed,
    /// The tag does not check out: made by another server (or process), or
    /// altered.
    #[error("challenge was not issued by this server")]
    NotOurs,
    /// Its time is up.
    #[error("challenge has expired; ask for a new one")]
    Expired,
    /// It was spent by an earlier registration.
    #[error("challenge was already used")]
    Used,
    /// The server remembers as many spent challenges as it may.
    #[error("too many registrations in progress: at most {limit} recent challenges; retry later")]
    Exhausted {
        /// [`MAX_OUTSTANDING_CHALLENGES`], or the limit given to
        /// [`Challenges::with_limit`].
        limit: usize,
    },
}

/// A challenge checked to be ours and unexpired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    nonce: [u8; NONCE_BYTES],
    expiry: u64,
}

/// Issues and redeems challenges for one server process.
pub struct Challenges {
    secret: [u8; 32],
    server_id: String,
    limit: usize,
    /// Spent challenges not yet expired, as (expiry, nonce): ordered by
    /// expiry, so expired ones are dropped from the front.
    spent: Mutex<BTreeSet<(u64, [u8; NONCE_BYTES])>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Challenges")
            .field("server_id", &self.server_id)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The current time in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Challenges {
    /// Challenges bound to `server_id` (the listen address) with a fresh
    /// secret, remembering at most [`MAX_OUTSTANDING_CHALLENGES`].
    pub fn new(server_id: impl Into<String>) -> Challenges {
        Challenges::with_limit(server_id, MAX_OUTSTANDING_CHALLENGES)
    }

    /// Like [`Challenges::new`] with another bound on spent challenges.
    pub fn with_limit(server_id: impl Into<String>, limit: usize) -> Challenges {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Challenges {
            secret,
            server_id: server_id.into(),
            limit,
            spent: Mutex::new(BTreeSet::new()),
        }
    }

    /// A fresh challenge, valid for [`CHALLENGE_TTL`] from now.
    pub fn issue(&self) -> Result<Vec<u8>, ChallengeError> {
        self.issue_at(unix_now())
    }

    /// A fresh challenge valid until `now` + [`CHALLENGE_TTL`]. Refused
    /// while the memory of spent challenges is full (it could not be
    /// redeemed anyway).
    pub fn issue_at(&self, now: u64) -> Result<Vec<u8>, ChallengeError> {
        {
            let mut spent = self.spent();
            forget_expired(&mut spent, now);
            if spent.len() >= self.limit {
                return Err(ChallengeError::Exhausted { limit: self.limit });
            }
        }
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let expiry = now.saturating_add(CHALLENGE_TTL.as_secs());
        let mut out = Vec::with_capacity(CHALLENGE_BYTES);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&expiry.to_be_bytes());
        out.extend_from_slice(&self.mac(&nonce, expiry).finalize().into_bytes());
        Ok(out)
    }

    /// Checks that `challenge` is ours, unexpired and unspent, without
    /// spending it (so a registration whose signature fails does not burn
    /// it).
    pub fn check(&self, challenge: &[u8]) -> Result<(), ChallengeError> {
        self.check_at(challenge, unix_now())
    }

    /// [`Challenges::check`] at `now`.
    pub fn check_at(&self, challenge: &[u8], now: u64) -> Result<(), ChallengeError> {
        let checked = self.verify(challenge, now)?;
        if self.spent().contains(&(checked.expiry, checked.nonce)) {
            return Err(ChallengeError::Used);
        }
        Ok(())
    }

    /// Spends `challenge`: it must be ours, unexpired and unspent; after
    /// this it is refused as [`ChallengeError::Used`] until it expires.
    pub fn redeem(&self, challenge: &[u8]) -> Result<(), ChallengeError> {
        self.redeem_at(challenge, unix_now())
    }

    /// [`Challenges::redeem`] at `now`.
    pub fn redeem_at(&self, challenge: &[u8], now: u64) -> Result<(), ChallengeError> {
        let checked = self.verify(challenge, now)?;
        let mut spent = self.spent();
        let key = (checked.expiry, checked.nonce);
        if spent.contains(&key) {
            return Err(ChallengeError::Used);
        }
        forget_expired(&mut spent, now);
        if spent.len() >= self.limit {
            return Err(ChallengeError::Exhausted { limit: self.limit });
        }
        spent.insert(key);
        Ok(())
    }

    /// How many spent, unexpired challenges are remembered (as of the last
    /// call that looked at the clock).
    pub fn outstanding(&self) -> usize {
        self.spent().len()
    }

    /// The tag and expiry of `challenge` at `now`.
    fn verify(&self, challenge: &[u8], now: u64) -> Result<Checked, ChallengeError> {
        if challenge.len() != CHALLENGE_BYTES {
            return Err(ChallengeError::Malformed);
        }
        let (nonce, rest) = challenge.split_at(NONCE_BYTES);
        let (expiry, tag) = rest.split_at(EXPIRY_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| ChallengeError::Malformed)?;
        let expiry = u64::from_be_bytes(expiry.try_into().map_err(|_| ChallengeError::Malformed)?);
        // Constant-time comparison of the tag.
        self.mac(&nonce, expiry)
            .verify_slice(tag)
            .map_err(|_| ChallengeError::NotOurs)?;
        // Valid while now < expiry; an expiry further away than one TTL
        // (our clock went back) is not honoured either, so nothing stays
        // in the spent set longer than a TTL.
        if now >= expiry || expiry - now > CHALLENGE_TTL.as_secs() {
            return Err(ChallengeError::Expired);
        }
        Ok(Checked { nonce, expiry })
    }

    fn mac(&self, nonce: &[u8; NONCE_BYTES], expiry: u64) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes never fails.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac.update(nonce);
        mac.update(&expiry.to_be_bytes());
        mac.update(self.server_id.as_bytes());
        mac
    }

    fn spent(&self) -> MutexGuard<'_, BTreeSet<(u64, [u8; NONCE_BYTES])>> {
        // A set of nonces cannot be left inconsistent by a panic.
        self.spent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops the spent challenges that expired at or before `now` (a replay of
/// one is refused as expired).
fn forget_expired(spent: &mut BTreeSet<(u64, [u8; NONCE_BYTES])>, now: u64) {
    while spent.first().is_some_and(|(expiry, _)| *expiry <= now) {
        spent.pop_first();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_challenge_is_redeemed_once() {
        let c = Challenges::new("127.0.0.1:8000");
        let ch = c.issue_at(T0).unwrap();
        assert_eq!(ch.len(), CHALLENGE_BYTES);
        assert_eq!(c.check_at(&ch, T0), Ok(()));
        // Checking does not spend.
        assert_eq!(c.check_at(&ch, T0 + 1), Ok(()));
        assert_eq!(c.redeem_at(&ch, T0 + 1), Ok(()));
        assert_eq!(c.check_at(&ch, T0 + 2), Err(ChallengeError::Used));
        assert_eq!(c.redeem_at(&ch, T0 + 2), Err(ChallengeError::Used));
        assert_eq!(c.outstanding(), 1);
        // Two challenges are never the same.
        assert_ne!(c.issue_at(T0).unwrap(), c.issue_at(T0).unwrap());
    }

    #[test]
    fn challenges_expire_after_the_ttl() {
        let c = Challenges::new("127.0.0.1:8000");
        let ch = c.issue_at(T0).unwrap();
        let ttl = CHALLENGE_TTL.as_secs();
        assert_eq!(ttl, 60);
        assert_eq!(c.check_at(&ch, T0 + ttl - 1), Ok(()));
        assert_eq!(c.check_at(&ch, T0 + ttl), Err(ChallengeError::Expired));
        assert_eq!(c.redeem_at(&ch, T0 + ttl), Err(ChallengeError::Expired));
        // Redeemed in time, then replayed after its expiry: still refused,
        // and no longer remembered.
        let ch = c.issue_at(T0).unwrap();
        assert_eq!(c.redeem_at(&ch, T0 + ttl - 1), Ok(()));
        assert_eq!(c.redeem_at(&ch, T0 + ttl), Err(ChallengeError::Expired));
        c.issue_at(T0 + ttl).unwrap();
        assert_eq!(c.outstanding(), 0);
        // A clock that went back does not stretch a challenge's life.
        let ch = c.issue_at(T0).unwrap();
        assert_eq!(c.check_at(&ch, T0 - 1), Err(ChallengeError::Expired));
    }

    #[test]
    fn challenges_are_bound_to_the_server_instance() {
        let a = Challenges::new("127.0.0.1:8000");
        let restarted = Challenges::new("127.0.0.1:8000");
        let ch = a.issue_at(T0).unwrap();
        assert_eq!(restarted.check_at(&ch, T0), Err(ChallengeError::NotOurs));
        assert_eq!(restarted.redeem_at(&ch, T0), Err(ChallengeError::NotOurs));
        // Same secret, other identity: refused too.
        let other = Challenges {
            secret: a.secret,
            server_id: "127.0.0.1:8001".into(),
            limit: MAX_OUTSTANDING_CHALLENGES,
            spent: Mutex::new(BTreeSet::new()),
        };
        assert_eq!(other.check_at(&ch, T0), Err(ChallengeError::NotOurs));
        // Altered expiry or nonce.
        for i in [0, NONCE_BYTES + EXPIRY_BYTES - 1, CHALLENGE_BYTES - 1] {
            let mut bad = ch.clone();
            bad[i] ^= 1;
            assert_eq!(a.check_at(&bad, T0), Err(ChallengeError::NotOurs), "{i}");
        }
        assert_eq!(a.check_at(&ch[1..], T0), Err(ChallengeError::Malformed));
        assert_eq!(a.check_at(&[], T0), Err(ChallengeError::Malformed));
        assert_eq!(a.redeem_at(&ch, T0), Ok(()));
    }

    #[test]
    fn the_spent_set_is_bounded_at_its_edge() {
        let limit = 4;
        let c = Challenges::with_limit("s", limit);
        let first: Vec<Vec<u8>> = (0..limit).map(|_| c.issue_at(T0).unwrap()).collect();
        let late = c.issue_at(T0 + 10).unwrap();
        for ch in &first {
            assert_eq!(c.redeem_at(ch, T0 + 1), Ok(()));
        }
        assert_eq!(c.outstanding(), limit);
        // Full: a further redemption and new challenges are refused, and
        // the set does not grow.
        assert_eq!(
            c.redeem_at(&late, T0 + 11),
            Err(ChallengeError::Exhausted { limit })
        );
        assert_eq!(
            c.issue_at(T0 + 11),
            Err(ChallengeError::Exhausted { limit })
        );
        assert_eq!(c.outstanding(), limit);
        // A replay while full is still a replay.
        assert_eq!(c.redeem_at(&first[0], T0 + 11), Err(ChallengeError::Used));
        // Once the first ones expire there is room again.
        let expiry = T0 + CHALLENGE_TTL.as_secs();
        assert_eq!(c.redeem_at(&late, expiry), Ok(()));
        assert_eq!(c.outstanding(), 1);
        assert!(c.issue_at(expiry).is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Challenges::new("127.0.0.1:1");
        let text = format!("{c:?}");
        assert!(
            text.contains("127.0.0.1:1") && !text.contains("secret"),
            "{text}"
        );
    }
}
