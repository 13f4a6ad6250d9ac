//! Safety numbers: 60 digits two users compare out of band (read aloud,
//! in person) to check that each holds the other's real key, i.e. that no
//! one sits in the middle. Built like Signal's numeric fingerprints.
//!
//! # Construction
//!
//! For each of the two public keys `K` (its 32 raw Ed25519 bytes):
//!
//! ```text
//! h_0 = ""                                          (empty)
//! h_i = SHA-512(VERSION || K || h_{i-1})            for i = 1 ..= 5200
//! fingerprint(K) = for j in 0..6: (h_5200[5j .. 5j+5] as a big-endian
//!                  40-bit integer) mod 100000, as 5 zero-padded digits
//! ```
//!
//! where `VERSION` is the 2 bytes `00 01`. That gives 30 digits per key;
//! the safety number is the two fingerprints concatenated, the smaller
//! (as a string) first, so both users see the same 60 digits whichever
//! side computes it. It is shown as 12 groups of 5 digits.
//!
//! # Security level
//!
//! Each half is 30 decimal digits: 10^30 ≈ 2^99.7 values (the bias of
//! reducing 40 bits mod 10^5 is below 10^-7 and costs nothing measurable).
//! A man in the middle between Alice and Bob shows each of them his own
//! key, so for the two numbers they compare to agree he needs a key whose
//! fingerprint equals Bob's (towards Alice) *and* one equal to Alice's
//! (towards Bob): a second preimage of 30 digits per side, about 2^99.7
//! key generations each, every one costing 5,200 SHA-512 compressions
//! (about 2^12.3 more work): about 100 bits of security per side, about
//! 112 bits counted in hash work. An attacker content to impersonate *any*
//! one of `N` users gains log2(N) bits on one side. Users who compare only
//! some of the groups get proportionally less: each group of 5 digits is
//! about 16.6 bits.

use std::fmt;

use p2pchat::PublicKey;
use sha2::{Digest, Sha512};

/// The version prefixed to every hash of the construction.
pub const VERSION: [u8; 2] = [0x00, 0x01];

/// SHA-512 iterations per key.
pub const ITERATIONS: usize = 5200;

/// Digits per key.
const HALF_DIGITS: usize = 30;

/// Digits in a safety number.
pub const DIGITS: usize = 2 * HALF_DIGITS;

/// The safety number of a pair of keys (order does not matter).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    /// 60 ASCII digits.
    digits: String,
}

impl SafetyNumber {
    /// The number both `ours` and `theirs` see for their conversation.
    pub fn new(ours: &PublicKey, theirs: &PublicKey) -> SafetyNumber {
        combine(fingerprint(ours), fingerprint(theirs))
    }

    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

/// 12 groups of 5 digits separated by single spaces.
impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            // ASCII digits only, by construction.
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// The number of two fingerprints: the smaller first.
fn combine(a: String, b: String) -> SafetyNumber {
    let digits = if a <= b { a + &b } else { b + &a };
    SafetyNumber { digits }
}

/// One key's 30 digits.
fn fingerprint(key: &PublicKey) -> String {
    let mut hash = [0u8; 64];
    for i in 0..ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(VERSION);
        hasher.update(key.as_bytes());
        if i > 0 {
            hasher.update(hash);
        }
        hash.copy_from_slice(&hasher.finalize());
    }
    let mut digits = String::with_capacity(HALF_DIGITS);
    for chunk in hash[..30].chunks(5) {
        let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        digits.push_str(&format!("{:05}", value % 100_000));
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> PublicKey {
        PublicKey::from(&SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    #[test]
    fn both_sides_see_the_same_sixty_digits() {
        let (a, b) = (key(1), key(2));
        let ours = SafetyNumber::new(&a, &b);
        let theirs = SafetyNumber::new(&b, &a);
        assert_eq!(ours, theirs);
        assert_eq!(ours.digits().len(), DIGITS);
        assert!(ours.digits().bytes().all(|c| c.is_ascii_digit()));
        let shown = ours.to_string();
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 5));
        assert_eq!(shown.replace(' ', ""), ours.digits());
    }

    #[test]
    fn a_changed_key_changes_the_number() {
        // (Hashing is slow unoptimised: each fingerprint is computed once.)
        let (a, c) = (key(1), key(3));
        let (fa, fb, fc) = (fingerprint(&a), fingerprint(&key(2)), fingerprint(&c));
        assert_eq!(fa.len(), 30);
        let ab = combine(fa.clone(), fb.clone());
        let ac = SafetyNumber::new(&a, &c);
        assert_eq!(ac, combine(fc.clone(), fa.clone()));
        assert_ne!(ab, ac);
        assert_ne!(ab, combine(fc.clone(), fb.clone()));
        // Each key contributes one half: the one both numbers share.
        assert!(ab.digits().contains(&fa) && ab.digits().contains(&fb));
        assert!(!ab.digits().contains(&fc));
        // Talking to oneself is well defined too.
        assert_eq!(combine(fa.clone(), fa.clone()).digits(), fa.clone() + &fa);
    }

    #[test]
    fn a_fixed_vector_is_stable() {
        // Pinned: the construction is part of what users compare, across
        // versions and machines. Cross-checked against an independent
        // implementation of the construction above (Python's hashlib).
        let (a, b) = (key(1), key(2));
        assert_eq!(
            a.to_base64(),
            "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
        assert_eq!(
            b.to_base64(),
            "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="
        );
        let number = SafetyNumber::new(&a, &b);
        assert_eq!(
            number.to_string(),
            "66384 53358 46554 64071 49880 25751 99549 63901 24202 42558 88404 75025"
        );
        assert_eq!(
            number.digits(),
            "663845335846554640714988025751995496390124202425588840475025"
        );
    }
}
