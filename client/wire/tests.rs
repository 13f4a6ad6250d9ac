//! Wire format tests: seed compatibility, limits, validation.

use super::*;

const ID: PeerId = PeerId::from_uuid(uuid::uuid!("a1b2c3d4-5678-90ab-cdef-1234567890ab"));
const ID_STR: &str = "a1b2c3d4-5678-90ab-cdef-1234567890ab";

fn header() -> Header {
    Header {
        from: ID,
        timestamp: 1.5,
    }
}

fn message(body: &str, id: Option<u64>, part: Option<Part>) -> Message {
    Message {
        header: Header::now(ID),
        body: body.to_owned(),
        id,
        part,
    }
}

#[test]
fn decodes_seed_message() {
    let raw = br#"{"type": "message", "from": "a1b2c3d4-5678-90ab-cdef-1234567890ab", "timestamp": 1234567890.123, "body": "Hello!"}"#;
    let dg = Datagram::decode(raw).unwrap();
    assert_eq!(dg.kind(), Kind::Message);
    assert_eq!(dg.from(), ID);
    let Datagram::Message(m) = &dg else {
        panic!("not a message")
    };
    assert_eq!(m.body, "Hello!");
    assert!(m.id.is_none());
    assert!(dg.announced_extensions().is_none());
}

#[test]
fn encoding_is_byte_identical_to_the_flat_format() {
    // The exact bytes earlier versions (and the seed, for its fields) send:
    // fixed field order, `body` always present, absent options omitted.
    let announce = Announce::ours(7);
    let cases: Vec<(Datagram, String)> = vec![
        (
            Hello {
                header: header(),
                announce: announce.clone(),
                username: Some("alice".into()),
            }
            .into(),
            format!(
                r#"{{"type":"hello","from":"{ID_STR}","timestamp":1.5,"body":"","extensions":["reliable/1","fragments/1"],"session":7,"username":"alice"}}"#
            ),
        ),
        (
            Message {
                header: header(),
                body: "hé \"x\"".into(),
                id: Some(5),
                part: Some(Part { index: 1, count: 3 }),
            }
            .into(),
            format!(
                r#"{{"type":"message","from":"{ID_STR}","timestamp":1.5,"body":"hé \"x\"","id":5,"part":{{"index":1,"count":3}}}}"#
            ),
        ),
        (
            Message {
                header: header(),
                body: "plain".into(),
                id: None,
                part: None,
            }
            .into(),
            format!(r#"{{"type":"message","from":"{ID_STR}","timestamp":1.5,"body":"plain"}}"#),
        ),
        (
            Ping {
                header: header(),
                nonce: Some(2),
                announce: announce.clone(),
            }
            .into(),
            format!(
                r#"{{"type":"ping","from":"{ID_STR}","timestamp":1.5,"body":"","extensions":["reliable/1","fragments/1"],"nonce":2,"session":7}}"#
            ),
        ),
        (
            Pong {
                header: header(),
                nonce: None,
                announce,
            }
            .into(),
            format!(
                r#"{{"type":"pong","from":"{ID_STR}","timestamp":1.5,"body":"","extensions":["reliable/1","fragments/1"],"session":7}}"#
            ),
        ),
        (
            Ack {
                header: header(),
                id: Some(3),
                upto: Some(2),
            }
            .into(),
            format!(
                r#"{{"type":"ack","from":"{ID_STR}","timestamp":1.5,"body":"","id":3,"upto":2}}"#
            ),
        ),
        (
            Disconnect { header: header() }.into(),
            format!(r#"{{"type":"disconnect","from":"{ID_STR}","timestamp":1.5,"body":""}}"#),
        ),
    ];
    for (dg, want) in cases {
        let bytes = dg.encode().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        assert_eq!(Datagram::decode(&bytes).unwrap(), dg);
    }
}

#[test]
fn fields_of_another_kind_are_checked_and_dropped() {
    // A hello carrying message fields: still a valid hello, fields dropped.
    let raw = format!(r#"{{"type":"hello","from":"{ID_STR}","id":4,"body":"x","nonce":1}}"#);
    let dg = Datagram::decode(raw.as_bytes()).unwrap();
    assert_eq!(
        dg,
        Datagram::Hello(Hello {
            header: Header {
                from: ID,
                timestamp: 0.0
            },
            announce: Announce::default(),
            username: None,
        })
    );
    // A message does not announce, whatever it carries.
    let raw = format!(r#"{{"type":"message","from":"{ID_STR}","extensions":["reliable/1"]}}"#);
    assert!(
        Datagram::decode(raw.as_bytes())
            .unwrap()
            .announced_extensions()
            .is_none()
    );
    // Still type-checked, as before.
    let raw = format!(r#"{{"type":"ping","from":"{ID_STR}","id":-1}}"#);
    assert!(Datagram::decode(raw.as_bytes()).is_err());
}

#[test]
fn ignores_unknown_fields_and_extensions() {
    let raw = br#"{"type":"hello","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","timestamp":1,"body":"","future":[1,2],"extensions":["reliable/1","warp/9"]}"#;
    let dg = Datagram::decode(raw).unwrap();
    assert_eq!(dg.announced_extensions(), Some(vec![Extension::Reliable]));
}

#[test]
fn extension_list_is_truncated_at_the_limit() {
    let names: Vec<String> = (0..MAX_EXTENSIONS + 5).map(|i| format!("x{i}")).collect();
    let hello = |extensions| -> Datagram {
        Hello {
            header: Header::now(ID),
            announce: Announce {
                extensions,
                session: None,
                handshake: None,
            },
            username: None,
        }
        .into()
    };
    let raw = hello(Some(names)).encode().unwrap();
    let back = Datagram::decode(&raw).unwrap();
    let kept = back.announce().and_then(|a| a.extensions.clone()).unwrap();
    assert_eq!(kept.len(), MAX_EXTENSIONS);
    let names: Vec<String> = (0..MAX_EXTENSIONS).map(|i| format!("x{i}")).collect();
    let back = Datagram::decode(&hello(Some(names.clone())).encode().unwrap()).unwrap();
    assert_eq!(back.announce().unwrap().extensions, Some(names));
    // Our own extensions are within the limit and all understood.
    assert!(our_extensions().len() <= MAX_EXTENSIONS);
    let ours = hello(Some(our_extensions()));
    assert_eq!(ours.announced_extensions(), Some(Extension::ALL.to_vec()));
}

#[test]
fn seed_fields_are_optional_except_type_and_from() {
    let dg = Datagram::decode(br#"{"type":"ping","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#)
        .unwrap();
    assert_eq!(dg.kind(), Kind::Ping);
    assert_eq!(dg.header().timestamp, 0.0);
    assert!(Datagram::decode(br#"{"type":"ping"}"#).is_err());
    assert!(Datagram::decode(br#"{"from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#).is_err());
}

#[test]
fn rejects_bad_input() {
    for raw in [
        &b"not json"[..],
        b"[]",
        b"42",
        br#"{"type":"shout","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#,
        br#"{"type":"message","from":7}"#,
        br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":3}"#,
        br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","timestamp":"now"}"#,
        br#"{"type":"message","from":""}"#,
        br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","id":-1}"#,
        br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","part":{"index":2,"count":2}}"#,
        br#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","part":{"index":0,"count":0}}"#,
        br#"{"type":"ack","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab"}"#,
        b"\xff\xfe",
    ] {
        assert!(Datagram::decode(raw).is_err(), "accepted {raw:?}");
    }
    // `from` must be a peer id (a UUID).
    for from in [
        "\"x\"",
        "\"\"",
        "7",
        "\"a1b2c3d4-5678-90ab-cdef-1234567890ab0\"",
    ] {
        let raw = format!(r#"{{"type":"ping","from":{from}}}"#);
        assert!(Datagram::decode(raw.as_bytes()).is_err(), "accepted {raw}");
    }
    let upper = br#"{"type":"ping","from":"A1B2C3D4-5678-90AB-CDEF-1234567890AB"}"#;
    assert_eq!(Datagram::decode(upper).unwrap().from(), ID);
}

#[test]
fn oversized_limit_edge() {
    let pad = |total: usize| {
        let base = r#"{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":""}"#;
        let body = "a".repeat(total - base.len());
        format!(
            r#"{{"type":"message","from":"a1b2c3d4-5678-90ab-cdef-1234567890ab","body":"{body}"}}"#
        )
    };
    assert_eq!(pad(MAX_RECV_DATAGRAM_BYTES).len(), MAX_RECV_DATAGRAM_BYTES);
    assert!(Datagram::decode(pad(MAX_RECV_DATAGRAM_BYTES).as_bytes()).is_ok());
    assert!(matches!(
        Datagram::decode(pad(MAX_RECV_DATAGRAM_BYTES + 1).as_bytes()),
        Err(DecodeError::Oversized(_))
    ));
}

#[test]
fn encode_refuses_over_send_limit() {
    let mut m = message("", None, None);
    let overhead = Datagram::Message(m.clone()).encode().unwrap().len();
    m.body = "a".repeat(MAX_SEND_DATAGRAM_BYTES - overhead);
    assert_eq!(
        Datagram::Message(m.clone()).encode().unwrap().len(),
        MAX_SEND_DATAGRAM_BYTES
    );
    m.body.push('a');
    assert!(matches!(
        Datagram::Message(m).encode(),
        Err(EncodeError::TooLarge(_))
    ));
}

#[test]
fn roundtrip_with_extensions() {
    let dg: Datagram = message("hé \"x\"\n", Some(5), Some(Part { index: 1, count: 3 })).into();
    let back = Datagram::decode(&dg.encode().unwrap()).unwrap();
    assert_eq!(back, dg);
}

#[test]
fn disconnect_and_accessors() {
    let dg = Datagram::disconnect(ID);
    assert_eq!(dg.kind(), Kind::Disconnect);
    assert_eq!(dg.from(), ID);
    assert_eq!(dg.session_id(), None);
    let ping: Datagram = Ping {
        header: Header::now(ID),
        nonce: Some(1),
        announce: Announce::ours(99),
    }
    .into();
    assert_eq!(ping.session_id(), Some(99));
}
