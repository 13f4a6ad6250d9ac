//! Handshakes: both patterns complete; wrong keys, other prologues, stale
//! first messages, lying peers and mixed-up messages are refused.

use p2pchat::PublicKey;
use tokio::time::Instant;

use super::{T0, pair, params};
use crate::identity::Identity;
use crate::secure::{
    Handshake, HandshakeError, MAX_CLOCK_SKEW, MAX_HANDSHAKE_MESSAGE, Pattern, Prologue,
};

fn prologue<'a>(a: &Identity, b: &Identity, ext: &'a [String]) -> Prologue<'a> {
    Prologue {
        initiator: a.peer_id(),
        responder: b.peer_id(),
        extensions: ext,
    }
}

fn skew_ms() -> u64 {
    MAX_CLOCK_SKEW.as_millis() as u64
}

#[test]
fn both_patterns_derive_matching_transports() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let now = Instant::now();
    for ik in [true, false] {
        let (mut ea, mut eb) = pair(&a, &b, ik, now);
        assert_eq!(ea.remote_key, b.public_key());
        assert_eq!(eb.remote_key, a.public_key());
        assert_eq!(ea.remote, params(7, 200));
        assert_eq!(eb.remote, params(7, 100));
        assert_eq!(ea.handshake_hash, eb.handshake_hash);
        assert_eq!(
            (ea.transport.local_index(), ea.transport.remote_index()),
            (100, 200)
        );
        assert_eq!(
            (eb.transport.local_index(), eb.transport.remote_index()),
            (200, 100)
        );
        for i in 0..3u8 {
            let to_b = ea.transport.seal(&[i; 10], now).unwrap();
            assert_eq!(eb.transport.open(&to_b, now).unwrap(), [i; 10]);
            let to_a = eb.transport.seal(b"back", now).unwrap();
            assert_eq!(ea.transport.open(&to_a, now).unwrap(), b"back");
        }
        // Each direction has its own key: a datagram cannot be reflected.
        let mine = ea.transport.seal(b"x", now).unwrap();
        assert!(ea.transport.open(&mine, now).is_err());
    }
}

#[test]
fn message_sizes_and_progress() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let ext = vec!["chat/1".to_owned(), "files/2".to_owned()];
    let p = prologue(&a, &b, &ext);

    let bk = b.public_key();
    let (mut hi, msg1) = Handshake::initiate(&a, Some(&bk), &p, params(1, 2), T0).unwrap();
    assert_eq!(
        (hi.pattern(), hi.is_initiator(), hi.is_finished()),
        (Pattern::IK, true, false)
    );
    assert_eq!(msg1[0], 1);
    let (hr, msg2) = Handshake::respond(&b, &p, &msg1, params(1, 3), T0).unwrap();
    assert_eq!(
        (hr.pattern(), hr.is_initiator(), hr.is_finished()),
        (Pattern::IK, false, true)
    );
    assert_eq!(hr.remote_key(), Some(a.public_key()));
    assert_eq!(hr.remote_params(), Some(params(1, 2)));
    assert_eq!(hi.remote_key(), None);
    assert_eq!(hi.read(&msg2).unwrap(), None);
    assert!(hi.is_finished());
    assert_eq!(hi.remote_params(), Some(params(1, 3)));
    assert_eq!((msg1.len(), msg2.len()), (149, 101));

    let (mut hi, msg1) = Handshake::initiate(&a, None, &p, params(1, 2), T0).unwrap();
    assert_eq!((hi.pattern(), msg1[0]), (Pattern::XX, 2));
    let (mut hr, msg2) = Handshake::respond(&b, &p, &msg1, params(1, 3), T0).unwrap();
    assert!(!hr.is_finished());
    assert_eq!(hr.remote_key(), None);
    let msg3 = hi.read(&msg2).unwrap().unwrap();
    assert!(hi.is_finished());
    assert_eq!(hi.remote_key(), Some(b.public_key()));
    assert_eq!(hr.read(&msg3).unwrap(), None);
    assert!(hr.is_finished());
    assert_eq!(hr.remote_key(), Some(a.public_key()));
    assert_eq!((msg1.len(), msg2.len(), msg3.len()), (33, 149, 117));
    for m in [&msg1, &msg2, &msg3] {
        assert!(m.len() <= MAX_HANDSHAKE_MESSAGE);
    }
}

#[test]
fn ik_with_the_wrong_responder_key_fails() {
    let (a, b, c) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let p = prologue(&a, &b, &[]);
    // The key does not own the responder's id: refused up front.
    let ck = c.public_key();
    let err = Handshake::initiate(&a, Some(&ck), &p, params(1, 1), T0).unwrap_err();
    assert_eq!(err, HandshakeError::WrongPeer);
    // Sent anyway: the responder cannot read it.
    let (_, msg1) =
        Handshake::initiate_presenting(&a, a.public_key(), Some(&ck), &p, params(1, 1), T0)
            .unwrap();
    let err = Handshake::respond(&b, &p, &msg1, params(1, 2), T0).unwrap_err();
    assert_eq!(err, HandshakeError::Decrypt);
}

#[test]
fn a_prologue_mismatch_fails() {
    let (a, b, c) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let ext1 = vec!["chat/1".to_owned()];
    let ext2 = vec!["chat/2".to_owned()];
    let ext3 = vec!["chat/1".to_owned(), "x".to_owned()];
    let ours = prologue(&a, &b, &ext1);
    let other_ids = prologue(&c, &b, &ext1);
    let bk = b.public_key();
    for theirs in [
        prologue(&a, &b, &ext2),
        prologue(&a, &b, &ext3),
        prologue(&a, &b, &[]),
    ] {
        // IK: the responder's prologue differs, msg1 does not decrypt.
        let (_, msg1) = Handshake::initiate(&a, Some(&bk), &ours, params(1, 1), T0).unwrap();
        let err = Handshake::respond(&b, &theirs, &msg1, params(1, 2), T0).unwrap_err();
        assert_eq!(err, HandshakeError::Decrypt);
        // XX: msg1 is clear, msg2 fails at the initiator.
        let (mut hi, msg1) = Handshake::initiate(&a, None, &ours, params(1, 1), T0).unwrap();
        let (_, msg2) = Handshake::respond(&b, &theirs, &msg1, params(1, 2), T0).unwrap();
        assert_eq!(hi.read(&msg2).unwrap_err(), HandshakeError::Decrypt);
    }
    // Other ids: the responder expects c as the initiator.
    let (_, msg1) = Handshake::initiate(&a, Some(&bk), &ours, params(1, 1), T0).unwrap();
    let err = Handshake::respond(&b, &other_ids, &msg1, params(1, 2), T0).unwrap_err();
    assert_eq!(err, HandshakeError::Decrypt);
    // The order of the ids matters too.
    assert_ne!(
        prologue(&a, &b, &ext1).to_bytes(),
        prologue(&b, &a, &ext1).to_bytes()
    );
}

#[test]
fn prologue_bytes_are_as_specified() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let ext = vec!["ab".to_owned(), String::new()];
    let bytes = prologue(&a, &b, &ext).to_bytes();
    let mut want = b"p2pchat noise v1\0".to_vec();
    want.push(1);
    want.extend_from_slice(a.peer_id().as_bytes());
    want.extend_from_slice(b.peer_id().as_bytes());
    want.extend_from_slice(&[0, 2, 0, 2, b'a', b'b', 0, 0]);
    assert_eq!(bytes, want);
    // Length prefixes keep ["ab"] and ["a", "b"] apart.
    let (x, y) = (vec!["ab".to_owned()], vec!["a".to_owned(), "b".to_owned()]);
    assert_ne!(
        prologue(&a, &b, &x).to_bytes(),
        prologue(&a, &b, &y).to_bytes()
    );
}

#[test]
fn a_stale_msg1_is_refused() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let p = prologue(&a, &b, &[]);
    let bk = b.public_key();
    let (_, msg1) = Handshake::initiate(&a, Some(&bk), &p, params(1, 1), T0).unwrap();
    for now in [T0 + skew_ms() + 1, T0 - skew_ms() - 1, T0 + 3_600_000] {
        let err = Handshake::respond(&b, &p, &msg1, params(1, 2), now).unwrap_err();
        assert_eq!(err, HandshakeError::ClockSkew);
    }
    // Within the skew (both directions) a fresh responder answers.
    for now in [T0 + skew_ms(), T0 - skew_ms()] {
        assert!(Handshake::respond(&b, &p, &msg1, params(1, 2), now).is_ok());
    }
}

#[test]
fn a_lying_initiator_is_refused() {
    let (a, b, m) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let p = prologue(&a, &b, &[]);
    let bk = b.public_key();
    // m claims a's id: its own key does not own it.
    assert_eq!(
        Handshake::initiate(&m, Some(&bk), &p, params(1, 1), T0).unwrap_err(),
        HandshakeError::NotOurId
    );
    // m presents a's Ed25519 key over its own Noise static.
    let cases = [
        (a.public_key(), HandshakeError::KeyMismatch),
        (m.public_key(), HandshakeError::WrongPeer),
    ];
    for (presented, want) in cases {
        let (_, msg1) =
            Handshake::initiate_presenting(&m, presented, Some(&bk), &p, params(1, 1), T0).unwrap();
        assert_eq!(
            Handshake::respond(&b, &p, &msg1, params(1, 2), T0).unwrap_err(),
            want
        );
        // XX: found in msg3, and the responder's handshake is over.
        let (mut hi, msg1) =
            Handshake::initiate_presenting(&m, presented, None, &p, params(1, 1), T0).unwrap();
        let (mut hr, msg2) = Handshake::respond(&b, &p, &msg1, params(1, 2), T0).unwrap();
        let msg3 = hi.read(&msg2).unwrap().unwrap();
        assert_eq!(hr.read(&msg3).unwrap_err(), want);
        assert_eq!(hr.read(&msg3).unwrap_err(), HandshakeError::Aborted);
        assert!(!hr.is_finished());
        assert_eq!(hr.remote_key(), None);
        assert_eq!(
            hr.into_established(Instant::now()).unwrap_err(),
            HandshakeError::NotFinished
        );
    }
}

#[test]
fn a_lying_responder_is_refused() {
    let (a, b, m) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let p = prologue(&a, &b, &[]);
    assert_eq!(
        Handshake::respond(&m, &p, &[2; 33], params(1, 2), T0).unwrap_err(),
        HandshakeError::NotOurId
    );
    let cases = [
        (b.public_key(), HandshakeError::KeyMismatch),
        (m.public_key(), HandshakeError::WrongPeer),
    ];
    for (presented, want) in cases {
        let (mut hi, msg1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
        let (_, msg2) =
            Handshake::respond_presenting(&m, presented, &p, &msg1, params(1, 2), T0).unwrap();
        assert_eq!(hi.read(&msg2).unwrap_err(), want);
        assert_eq!(hi.read(&msg2).unwrap_err(), HandshakeError::Aborted);
        assert_eq!(hi.remote_key(), None);
    }
}

#[test]
fn stray_and_mixed_up_messages_leave_the_handshake_usable() {
    let (a, b, c) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let p = prologue(&a, &b, &[]);
    let bk = b.public_key();
    let (mut hi, msg1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
    let (mut hr, msg2) = Handshake::respond(&b, &p, &msg1, params(1, 2), T0).unwrap();
    // Another responder's msg2 and an IK msg2 for the same initiator.
    let (_, other2) =
        Handshake::respond(&c, &prologue(&a, &c, &[]), &msg1, params(1, 3), T0).unwrap();
    let (_, ik1) = Handshake::initiate(&a, Some(&bk), &p, params(1, 1), T0).unwrap();
    let (_, ik2) = Handshake::respond(&b, &p, &ik1, params(1, 2), T0).unwrap();
    let mut tampered = msg2.clone();
    tampered[40] ^= 1;
    assert_eq!(hi.read(&other2).unwrap_err(), HandshakeError::Decrypt);
    assert_eq!(hi.read(&tampered).unwrap_err(), HandshakeError::Decrypt);
    assert_eq!(
        hi.read(&ik2).unwrap_err(),
        HandshakeError::UnexpectedMessage
    );
    assert_eq!(
        hi.read(&msg1).unwrap_err(),
        HandshakeError::UnexpectedMessage
    );
    assert_eq!(hi.read(&[]).unwrap_err(), HandshakeError::Malformed);
    assert_eq!(hi.read(&[0x12; 401]).unwrap_err(), HandshakeError::TooLarge);
    assert_eq!(
        hr.read(&msg2).unwrap_err(),
        HandshakeError::UnexpectedMessage
    );
    assert_eq!(
        Handshake::respond(&b, &p, &msg2, params(1, 2), T0).unwrap_err(),
        HandshakeError::UnexpectedMessage
    );
    assert_eq!(
        Handshake::respond(&b, &p, &[1; 401], params(1, 2), T0).unwrap_err(),
        HandshakeError::TooLarge
    );
    // The real messages still complete it.
    let msg3 = hi.read(&msg2).unwrap().unwrap();
    let mut bad3 = msg3.clone();
    bad3[5] ^= 0x80;
    assert_eq!(hr.read(&bad3).unwrap_err(), HandshakeError::Decrypt);
    assert_eq!(hr.read(&msg3).unwrap(), None);
    assert_eq!(
        hi.read(&msg2).unwrap_err(),
        HandshakeError::UnexpectedMessage
    );
    let now = Instant::now();
    let (mut ea, mut eb) = (
        hi.into_established(now).unwrap(),
        hr.into_established(now).unwrap(),
    );
    let sealed = ea.transport.seal(b"hi", now).unwrap();
    assert_eq!(eb.transport.open(&sealed, now).unwrap(), b"hi");
    let _: PublicKey = eb.remote_key;
}

#[test]
fn wrong_sizes_never_reach_noise() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let p = prologue(&a, &b, &[]);
    let bk = b.public_key();
    let (_, ik1) = Handshake::initiate(&a, Some(&bk), &p, params(1, 1), T0).unwrap();
    let (mut hi, xx1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
    let (mut hr, xx2) = Handshake::respond(&b, &p, &xx1, params(1, 2), T0).unwrap();
    for msg in [&ik1, &xx1] {
        let mut long = msg.clone();
        long.push(0);
        let short = &msg[..msg.len() - 1];
        for bad in [&long[..], short] {
            let err = Handshake::respond(&b, &p, bad, params(1, 2), T0).unwrap_err();
            assert_eq!(err, HandshakeError::Malformed);
        }
    }
    let mut long = xx2.clone();
    long.push(0);
    assert_eq!(hi.read(&long).unwrap_err(), HandshakeError::Malformed);
    assert_eq!(hi.read(&xx2[..100]).unwrap_err(), HandshakeError::Malformed);
    let msg3 = hi.read(&xx2).unwrap().unwrap();
    assert_eq!(
        hr.read(&msg3[..msg3.len() - 1]).unwrap_err(),
        HandshakeError::Malformed
    );
    assert_eq!(hr.read(&msg3).unwrap(), None);
}

#[test]
fn a_msg3_altered_past_its_static_key_aborts_the_responder() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let p = prologue(&a, &b, &[]);
    let (mut hi, xx1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
    let (mut hr, xx2) = Handshake::respond(&b, &p, &xx1, params(1, 2), T0).unwrap();
    let msg3 = hi.read(&xx2).unwrap().unwrap();
    // In the static key (bytes 1..49): refused, nothing changed.
    let mut bad = msg3.clone();
    bad[10] ^= 4;
    assert_eq!(hr.read(&bad).unwrap_err(), HandshakeError::Decrypt);
    // In the payload: Noise already moved its cipher state on, so the
    // handshake is over rather than silently unable to finish.
    let mut bad = msg3.clone();
    bad[60] ^= 4;
    assert_eq!(hr.read(&bad).unwrap_err(), HandshakeError::Decrypt);
    assert_eq!(hr.read(&msg3).unwrap_err(), HandshakeError::Aborted);
}
