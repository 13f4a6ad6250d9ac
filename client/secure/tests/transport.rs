//! Sealed datagrams: tampering, replay, reordering, the window edge,
//! rekeying by count and by time, forged epochs and receiver indices.

use std::time::Duration;

use tokio::time::Instant;

use super::{fixed_pair, pair};
use crate::identity::Identity;
use crate::secure::{
    ENVELOPE_OVERHEAD, MAGIC, OpenError, PREVIOUS_EPOCH_GRACE, REJECT_AFTER_MESSAGES,
    REKEY_AFTER_TIME, REPLAY_WINDOW, Transport, receiver_index,
};

fn transports(now: Instant) -> (Transport, Transport) {
    let (a, b) = fixed_pair();
    let (ea, eb) = pair(&a, &b, true, now);
    (ea.transport, eb.transport)
}

#[test]
fn tampering_anywhere_fails_and_leaves_the_state_usable() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    let sealed = a.seal(b"attack at dawn", now).unwrap();
    assert_eq!(sealed.len(), 14 + ENVELOPE_OVERHEAD);
    for i in 0..sealed.len() {
        for bit in [0x01, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= bit;
            let err = b.open(&bad, now).unwrap_err();
            let want = match i {
                0 | 1 => OpenError::Malformed,
                2 => OpenError::UnknownEpoch,
                3..=6 => OpenError::WrongIndex,
                _ => OpenError::Forged,
            };
            // Epoch + 1 is tried under the next key and fails to authenticate.
            let want = if i == 2 && bit == 0x01 {
                OpenError::Forged
            } else {
                want
            };
            assert_eq!(err, want, "byte {i} bit {bit:#x}");
        }
    }
    assert_eq!(
        b.open(&sealed[..sealed.len() - 1], now),
        Err(OpenError::Forged)
    );
    // A counter no sender uses (Noise reserves the last nonces).
    let mut reserved = sealed.clone();
    reserved[7..15].copy_from_slice(&REJECT_AFTER_MESSAGES.to_be_bytes());
    assert_eq!(b.open(&reserved, now), Err(OpenError::Malformed));
    reserved[7..15].copy_from_slice(&(REJECT_AFTER_MESSAGES - 1).to_be_bytes());
    assert_eq!(b.open(&reserved, now), Err(OpenError::Forged));
    assert_eq!(
        b.open(&sealed[..ENVELOPE_OVERHEAD - 1], now),
        Err(OpenError::Malformed)
    );
    assert_eq!(b.recv_epoch(), 0);
    assert_eq!(b.open(&sealed, now).unwrap(), b"attack at dawn");
}

#[test]
fn every_replay_is_refused() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    let sealed: Vec<_> = (0..200u32)
        .map(|i| a.seal(&i.to_be_bytes(), now).unwrap())
        .collect();
    for (i, d) in sealed.iter().enumerate() {
        assert_eq!(b.open(d, now).unwrap(), (i as u32).to_be_bytes());
    }
    for d in &sealed {
        assert_eq!(b.open(d, now), Err(OpenError::Replayed));
    }
}

#[test]
fn reordering_within_the_window_is_accepted_and_the_edge_is_exact() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    let n = REPLAY_WINDOW + 100;
    let sealed: Vec<_> = (0..n).map(|_| a.seal(b"m", now).unwrap()).collect();
    let highest = n - 1;
    b.open(&sealed[highest as usize], now).unwrap();
    let edge = (highest - REPLAY_WINDOW + 1) as usize;
    assert_eq!(b.open(&sealed[edge - 1], now), Err(OpenError::TooOld));
    assert!(b.open(&sealed[edge], now).is_ok());
    // The rest of the window, in a scrambled order, each once.
    let mut order: Vec<usize> = (edge + 1..highest as usize).collect();
    let mut x = 12345u64;
    for i in (1..order.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    for &i in &order {
        assert!(b.open(&sealed[i], now).is_ok(), "{i}");
    }
    for &i in order.iter().take(50) {
        assert_eq!(b.open(&sealed[i], now), Err(OpenError::Replayed));
    }
    for d in &sealed[..edge] {
        assert_eq!(b.open(d, now), Err(OpenError::TooOld));
    }
}

#[test]
fn rekey_after_messages() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    a.set_rekey_limits(5, Duration::from_secs(3600));
    let sealed: Vec<_> = (0..12u8)
        .map(|i| (a.seal(&[i], now).unwrap(), a.send_epoch()))
        .collect();
    let epochs: Vec<u8> = sealed.iter().map(|(_, e)| *e).collect();
    assert_eq!(epochs, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2]);
    for (d, e) in &sealed {
        assert_eq!(d[2], *e);
    }
    // Epoch 1 first, then the late epoch-0 datagrams within grace.
    for (d, _) in &sealed[5..10] {
        b.open(d, now).unwrap();
    }
    assert_eq!(b.recv_epoch(), 1);
    for (i, (d, _)) in sealed[..5].iter().enumerate() {
        assert_eq!(b.open(d, now).unwrap(), [i as u8]);
        assert_eq!(b.open(d, now), Err(OpenError::Replayed));
    }
    // Epoch 2 drops epoch 0 (only the previous one is kept).
    b.open(&sealed[11].0, now).unwrap();
    assert_eq!(b.recv_epoch(), 2);
    assert_eq!(b.open(&sealed[10].0, now).unwrap(), [10]);
    assert_eq!(b.open(&sealed[0].0, now), Err(OpenError::UnknownEpoch));
    // And the other direction is untouched.
    assert_eq!(b.send_epoch(), 0);
    let back = b.seal(b"ok", now).unwrap();
    assert_eq!(a.open(&back, now).unwrap(), b"ok");
}

#[test]
fn rekey_after_time_with_a_grace_for_the_previous_epoch() {
    let t0 = Instant::now();
    let (mut a, mut b) = transports(t0);
    let old: Vec<_> = (0..4).map(|_| a.seal(b"old", t0).unwrap()).collect();
    let t1 = t0 + REKEY_AFTER_TIME - Duration::from_millis(1);
    let still_old = a.seal(b"old", t1).unwrap();
    assert_eq!(a.send_epoch(), 0);
    let t2 = t0 + REKEY_AFTER_TIME;
    let new = a.seal(b"new", t2).unwrap();
    assert_eq!((a.send_epoch(), new[2]), (1, 1));
    assert_eq!(new[7..15], [0; 8], "counter restarts");
    b.open(&new, t2).unwrap();
    assert_eq!(b.recv_epoch(), 1);
    b.open(
        &old[0],
        t2 + PREVIOUS_EPOCH_GRACE - Duration::from_millis(1),
    )
    .unwrap();
    b.open(&still_old, t2 + Duration::from_secs(1)).unwrap();
    assert_eq!(
        b.open(&old[1], t2 + PREVIOUS_EPOCH_GRACE),
        Err(OpenError::UnknownEpoch)
    );
    assert_eq!(
        b.open(&old[2], t2 + PREVIOUS_EPOCH_GRACE * 5),
        Err(OpenError::UnknownEpoch)
    );
    // The current epoch goes on, and the next time limit moves again.
    let t3 = t2 + REKEY_AFTER_TIME;
    let newer = a.seal(b"newer", t3).unwrap();
    assert_eq!(newer[2], 2);
    assert_eq!(b.open(&newer, t3).unwrap(), b"newer");
}

#[test]
fn a_forged_next_epoch_datagram_does_not_advance() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    let first = a.seal(b"one", now).unwrap();
    let second = a.seal(b"two", now).unwrap();
    let mut forged = first.clone();
    forged[2] = 1;
    assert_eq!(b.open(&forged, now), Err(OpenError::Forged));
    let mut forged = vec![MAGIC, 1, 1, 0, 0, 0, 200];
    forged.extend_from_slice(&[0xAB; 40]);
    assert_eq!(b.open(&forged, now), Err(OpenError::Forged));
    assert_eq!(b.recv_epoch(), 0);
    for epoch in [2, 255, 128] {
        let mut bad = first.clone();
        bad[2] = epoch;
        assert_eq!(b.open(&bad, now), Err(OpenError::UnknownEpoch));
    }
    assert_eq!(b.open(&second, now).unwrap(), b"two");
    assert_eq!(b.open(&first, now).unwrap(), b"one");
}

#[test]
fn a_wrong_receiver_index_is_refused() {
    let now = Instant::now();
    let (mut a, mut b) = transports(now);
    let sealed = a.seal(b"x", now).unwrap();
    assert_eq!(receiver_index(&sealed), Some(b.local_index()));
    // a's own datagram names b's index.
    assert_eq!(a.open(&sealed, now), Err(OpenError::WrongIndex));
    let mut other = sealed.clone();
    other[3..7].copy_from_slice(&999u32.to_be_bytes());
    assert_eq!(receiver_index(&other), Some(999));
    assert_eq!(b.open(&other, now), Err(OpenError::WrongIndex));
    assert_eq!(b.open(&sealed, now).unwrap(), b"x");
}

#[test]
fn sealed_bytes_never_contain_the_plaintext() {
    let now = Instant::now();
    let (mut a, _) = transports(now);
    let plain: Vec<u8> = b"the secret plaintext ".repeat(4);
    for _ in 0..20 {
        let sealed = a.seal(&plain, now).unwrap();
        assert!(!sealed.windows(8).any(|w| plain.windows(8).any(|p| p == w)));
    }
    // Equal plaintexts seal differently (fresh nonce each time).
    assert_ne!(
        a.seal(b"same", now).unwrap()[15..],
        a.seal(b"same", now).unwrap()[15..]
    );
}

#[test]
fn receiver_index_on_garbage_is_none() {
    assert_eq!(receiver_index(&[]), None);
    assert_eq!(receiver_index(b"S"), None);
    assert_eq!(receiver_index(&[MAGIC; 30]), None);
    let mut header = vec![MAGIC, 1, 0, 0, 0, 0, 7];
    header.extend_from_slice(&[0; 24]);
    assert_eq!(receiver_index(&header), Some(7));
    header[1] = 2;
    assert_eq!(receiver_index(&header), None);
    header[1] = 1;
    header[0] = b'P';
    assert_eq!(receiver_index(&header), None);
    assert_eq!(
        receiver_index(br#"{"type":"hello","padding":"xxxxxxxxxxxx"}"#),
        None
    );
}

#[test]
fn separate_sessions_do_not_open_each_others_datagrams() {
    let now = Instant::now();
    let (a, b) = (Identity::generate(), Identity::generate());
    let (mut s1a, _) = pair(&a, &b, true, now);
    let (_, mut s2b) = pair(&a, &b, false, now);
    // Same indices in both sessions, other keys.
    let sealed = s1a.transport.seal(b"x", now).unwrap();
    assert_eq!(s2b.transport.open(&sealed, now), Err(OpenError::Forged));
}
