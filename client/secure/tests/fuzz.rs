//! Garbage never panics and never authenticates: deterministic
//! pseudo-random inputs and bit-flipped real messages through every entry
//! point that reads bytes.

use tokio::time::Instant;

use super::{T0, fixed_pair, pair, params};
use crate::secure::{Handshake, MAGIC, Prologue, Transport, receiver_index};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        let mut out: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        // Often start like a real message so parsing goes deeper.
        if let Some(first) = out.first_mut() {
            let leads = [MAGIC, 0x01, 0x02, 0x11, 0x12, 0x22];
            if !self.next().is_multiple_of(4) {
                *first = leads[(self.next() % leads.len() as u64) as usize];
            }
        }
        if out.len() > 1 && out[0] == MAGIC && self.next().is_multiple_of(2) {
            out[1] = 1;
        }
        out
    }
}

/// One of everything that reads bytes, mid-handshake or established.
struct Targets {
    ik_initiator: Handshake,
    xx_initiator: Handshake,
    xx_responder: Handshake,
    transport: Transport,
}

fn targets(now: Instant) -> (Targets, Vec<Vec<u8>>) {
    let (a, b) = fixed_pair();
    let p = Prologue {
        initiator: a.peer_id(),
        responder: b.peer_id(),
        extensions: &[],
    };
    let bk = b.public_key();
    let (ik_initiator, ik1) = Handshake::initiate(&a, Some(&bk), &p, params(1, 1), T0).unwrap();
    let (_, ik2) = Handshake::respond(&b, &p, &ik1, params(1, 2), T0).unwrap();
    // One XX run left waiting for msg2, another for msg3.
    let (xx_initiator, xx1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
    let (_, xx2) = Handshake::respond(&b, &p, &xx1, params(1, 2), T0).unwrap();
    let (mut other, other1) = Handshake::initiate(&a, None, &p, params(1, 1), T0).unwrap();
    let (xx_responder, other2) = Handshake::respond(&b, &p, &other1, params(1, 2), T0).unwrap();
    let xx3 = other.read(&other2).unwrap().unwrap();
    let (mut sender, receiver) = pair(&a, &b, true, now);
    let sealed = sender.transport.seal(b"a real datagram", now).unwrap();
    let transport = receiver.transport;
    let t = Targets {
        ik_initiator,
        xx_initiator,
        xx_responder,
        transport,
    };
    (t, vec![ik1, ik2, xx1, xx2, xx3, sealed])
}

fn feed(t: &mut Targets, input: &[u8], now: Instant) {
    let (a, b) = fixed_pair();
    let p = Prologue {
        initiator: a.peer_id(),
        responder: b.peer_id(),
        extensions: &[],
    };
    let _ = receiver_index(input);
    assert!(t.transport.open(input, now).is_err());
    // An XX msg1 is an unauthenticated ephemeral key: any 33 bytes tagged 2
    // are one (answering costs a DH; nothing authenticates until msg3).
    let xx_msg1 = input.len() == 33 && input[0] == 0x02;
    assert_eq!(
        Handshake::respond(&b, &p, input, params(1, 2), T0).is_ok(),
        xx_msg1
    );
    assert!(t.ik_initiator.read(input).is_err());
    assert!(t.xx_initiator.read(input).is_err());
    assert!(t.xx_responder.read(input).is_err());
}

#[test]
fn random_inputs_never_panic_nor_pass() {
    let now = Instant::now();
    let (mut t, _) = targets(now);
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for _ in 0..3000 {
        let input = rng.bytes(64);
        feed(&mut t, &input, now);
    }
    for _ in 0..300 {
        let input = rng.bytes(450);
        feed(&mut t, &input, now);
    }
    // Nothing above moved any state: the real messages still work.
    assert!(!t.ik_initiator.is_finished() && !t.xx_responder.is_finished());
}

#[test]
fn bit_flipped_real_messages_never_pass() {
    let now = Instant::now();
    let (mut t, real) = targets(now);
    let mut rng = Rng(42);
    for msg in &real {
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 1 << (rng.next() % 8);
            feed(&mut t, &bad, now);
            feed(&mut t, &msg[..i], now);
        }
    }
    // The untouched messages still complete the initiators (a msg3 altered
    // past its static key aborts the responder: see the handshake tests).
    assert_eq!(t.ik_initiator.read(&real[1]).unwrap(), None);
    assert!(t.xx_initiator.read(&real[3]).unwrap().is_some());
    assert_eq!(t.transport.open(&real[5], now).unwrap(), b"a real datagram");
}
