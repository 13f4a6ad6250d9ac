use super::*;
use crate::identity::test_dir::TestDir;
use ed25519_dalek::SigningKey;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn key(seed: u64) -> PublicKey {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    PublicKey::from(&SigningKey::from_bytes(&bytes).verifying_key())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn path_is_beside_the_identity_key() {
    assert_eq!(
        path_next_to(Path::new("/a/b/identity.pem")),
        Path::new("/a/b/known_peers")
    );
}

#[test]
fn check_pin_and_forget_by_id_and_by_name() {
    let mut known = KnownPeers::in_memory();
    let (bob, mallory) = (key(1), key(2));
    assert_eq!(known.check(bob.peer_id(), &bob), Pin::New);
    assert_eq!(known.check_name("Bob", &bob), Pin::New);
    known.pin(bob.peer_id(), &bob, "Bob", 100).unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(known.check(bob.peer_id(), &bob), Pin::Matches);
    assert_eq!(known.check_name("Bob", &bob), Pin::Matches);
    // Someone else calling himself Bob: a new id, but a changed name.
    assert_eq!(known.check(mallory.peer_id(), &mallory), Pin::New);
    assert_eq!(
        known.check_name("Bob", &mallory),
        Pin::Changed { pinned: bob }
    );
    // Names are exact: a look-alike is a different, new name.
    assert_eq!(known.check_name("bob", &mallory), Pin::New);
    assert_eq!(known.check_name("", &mallory), Pin::New);
    // Never replaced implicitly.
    let err = known
        .pin(mallory.peer_id(), &mallory, "Bob", 200)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::NameAlreadyPinned { .. }),
        "{err:?}"
    );
    assert_eq!(known.len(), 1);
    // Pinning again keeps the first sighting.
    known.pin(bob.peer_id(), &bob, "Bob", 300).unwrap();
    assert_eq!(known.pinned_name("Bob").unwrap().first_seen, 100);
    // A rename adds a name to the same key.
    known.pin(bob.peer_id(), &bob, "Robert", 400).unwrap();
    assert_eq!(known.len(), 2);
    assert_eq!(
        known.check_name("Robert", &mallory),
        Pin::Changed { pinned: bob }
    );
    // /trust Bob: forget the name, pin the new key.
    let old = known.forget_name("Bob").unwrap().unwrap();
    assert_eq!(old.key, bob);
    assert_eq!(known.forget_name("Bob").unwrap(), None);
    known.pin(mallory.peer_id(), &mallory, "Bob", 500).unwrap();
    assert_eq!(known.check_name("Bob", &mallory), Pin::Matches);
    assert_eq!(known.check_name("Robert", &bob), Pin::Matches);
    // forget(id) drops every name of that key.
    assert_eq!(known.forget(bob.peer_id()).unwrap(), 1);
    assert_eq!(known.forget(bob.peer_id()).unwrap(), 0);
    assert_eq!(known.check_name("Robert", &bob), Pin::New);
    assert_eq!(known.check(bob.peer_id(), &bob), Pin::New);
    assert_eq!(known.len(), 1);
}

#[test]
fn an_id_pin_catches_a_key_that_does_not_own_it() {
    let mut known = KnownPeers::in_memory();
    let (a, b) = (key(1), key(2));
    known.pin(a.peer_id(), &a, "", 1).unwrap();
    assert_eq!(known.check(a.peer_id(), &b), Pin::Changed { pinned: a });
    let err = known.pin(a.peer_id(), &b, "x", 1).unwrap_err();
    assert!(
        matches!(err, IdentityError::KeyDoesNotOwnId { .. }),
        "{err:?}"
    );
    // A nameless pin gives way to a named one for the same key.
    known.pin(a.peer_id(), &a, "", 2).unwrap();
    assert_eq!(known.len(), 1);
    known.pin(a.peer_id(), &a, "Alice", 3).unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(
        known.iter().next().unwrap().username.as_deref(),
        Some("Alice")
    );
    let long = "x".repeat(MAX_PINNED_USERNAME_BYTES + 1);
    let err = known.pin(a.peer_id(), &a, &long, 4).unwrap_err();
    assert!(
        matches!(err, IdentityError::UsernameTooLong { .. }),
        "{err:?}"
    );
}

#[test]
fn pins_round_trip_through_the_file() {
    let dir = TestDir::new("known-round-trip");
    let path = dir.path().join("p2pchat").join(KNOWN_PEERS_FILE_NAME);
    let mut known = KnownPeers::load(&path).unwrap();
    assert!(known.is_empty(), "a missing file is no pins");
    assert!(!path.exists(), "loading writes nothing");
    let names = [
        "Bob",
        "Bob Smith",
        "-",
        "%41 #x",
        "Jörg 日本",
        "tab\there",
        "\u{202e}evil",
        "",
    ];
    for (i, name) in names.iter().enumerate() {
        let k = key(i as u64 + 10);
        known
            .pin(k.peer_id(), &k, name, 1_700_000_000 + i as u64)
            .unwrap();
    }
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(" Bob%20Smith\n"), "{text}");
    assert!(text.contains(" J\u{f6}rg%20\u{65e5}\u{672c}\n"), "{text}");
    assert!(text.contains(" %2D\n") && text.contains(" -\n"), "{text}");
    let reloaded = KnownPeers::load(&path).unwrap();
    assert_eq!(
        reloaded.iter().collect::<Vec<_>>(),
        known.iter().collect::<Vec<_>>()
    );
    for (i, name) in names.iter().enumerate() {
        let k = key(i as u64 + 10);
        assert_eq!(reloaded.check(k.peer_id(), &k), Pin::Matches);
        if !name.is_empty() {
            assert_eq!(reloaded.check_name(name, &k), Pin::Matches, "{name:?}");
        }
    }
    // Comments, blank lines and CRLF are accepted.
    fs::write(&path, format!("# hi\n\n{}", text.replace('\n', "\r\n"))).unwrap();
    assert_eq!(KnownPeers::load(&path).unwrap().len(), names.len());
    // In-memory pins never touch the disk.
    let mut memory = KnownPeers::in_memory();
    memory.pin(key(1).peer_id(), &key(1), "Bob", 1).unwrap();
    assert_eq!(memory.path(), None);
}

#[test]
fn a_corrupt_line_is_an_error_naming_it() {
    let dir = TestDir::new("known-corrupt");
    let path = dir.path().join(KNOWN_PEERS_FILE_NAME);
    let (a, b) = (key(1), key(2));
    let good = format!("{} {} 5 Alice\n", a.peer_id(), a);
    let cases = [
        (format!("{good}garbage\n"), 2, "expected 4 fields"),
        (
            format!("# c\n{good}not-an-id {a} 5 x\n"),
            3,
            "not a peer id",
        ),
        (format!("{} AAAA 5 x\n", a.peer_id()), 1, "not a base64"),
        (format!("{} {b} 5 x\n", a.peer_id()), 1, "does not derive"),
        (
            format!("{} {a} soon x\n", a.peer_id()),
            1,
            "not a unix time",
        ),
        (format!("{} {a} 5 bad%4\n", a.peer_id()), 1, "%-escape"),
        (format!("{} {a} 5 bad%+F\n", a.peer_id()), 1, "%-escape"),
        (format!("{} {a} 5 %FF\n", a.peer_id()), 1, "not UTF-8"),
        (
            format!("{good}{} {b} 6 Alice\n", b.peer_id()),
            2,
            "pinned twice",
        ),
    ];
    for (text, line, what) in cases {
        fs::write(&path, &text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = KnownPeers::load(&path).unwrap_err();
        assert!(
            matches!(&err, IdentityError::KnownPeersLine { line: l, .. } if *l == line),
            "{text:?}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(what), "{msg}");
        assert!(
            msg.contains(&format!("{} line {line}", path.display())),
            "{msg}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "never rewritten");
    }
    // Raw invalid UTF-8 on a line.
    let mut bytes = good.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\n");
    fs::write(&path, &bytes).unwrap();
    let err = KnownPeers::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::KnownPeersLine { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn a_file_others_can_write_or_too_large_is_refused() {
    let dir = TestDir::new("known-perms");
    let path = dir.path().join(KNOWN_PEERS_FILE_NAME);
    let mut known = KnownPeers::load(&path).unwrap();
    known.pin(key(1).peer_id(), &key(1), "Bob", 1).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
    let err = KnownPeers::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::InsecurePermissions { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        KnownPeers::load(&path).unwrap().len(),
        1,
        "readable is fine"
    );
    let big = vec![b'#'; MAX_KNOWN_PEERS_FILE_BYTES as usize + 1];
    fs::write(&path, &big).unwrap();
    let err = KnownPeers::load(&path).unwrap_err();
    assert!(matches!(err, IdentityError::TooLarge { .. }), "{err:?}");
}

#[test]
fn the_pin_limit_holds_at_its_edge() {
    let dir = TestDir::new("known-limit");
    let path = dir.path().join(KNOWN_PEERS_FILE_NAME);
    // Written as a file (one write, not 10,000), then loaded and extended;
    // one key under many names keeps it fast (a pin is a name).
    let k = key(1000);
    let mut text = String::new();
    for i in 0..MAX_KNOWN_PEERS as u64 - 1 {
        text.push_str(&format!("{} {k} {i} user{i}\n", k.peer_id()));
    }
    fs::write(&path, &text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut known = KnownPeers::load(&path).unwrap();
    assert_eq!(known.len(), MAX_KNOWN_PEERS - 1);
    let last = key(1);
    known.pin(last.peer_id(), &last, "last", 1).unwrap();
    assert_eq!(known.len(), MAX_KNOWN_PEERS);
    let reloaded = KnownPeers::load(&path).unwrap();
    assert_eq!(reloaded.len(), MAX_KNOWN_PEERS);
    let one_more = key(2);
    let err = known
        .pin(one_more.peer_id(), &one_more, "one more", 2)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::TooManyKnownPeers { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("10000 known peers") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    assert_eq!(known.len(), MAX_KNOWN_PEERS);
    assert_eq!(known.check_name("one more", &one_more), Pin::New);
    // Already-pinned keys still pin (a no-op) at the limit.
    known.pin(last.peer_id(), &last, "last", 3).unwrap();
    // One line more than the limit in the file is refused, naming it.
    let k = key(3);
    let full = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{full}{} {k} 1 extra\n", k.peer_id())).unwrap();
    let err = KnownPeers::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::KnownPeersLine { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("more than 10000 pins"), "{err}");
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = TestDir::new("known-rofs");
    let path = dir
        .path()
        .join("missing-parent-is-a-file")
        .join(KNOWN_PEERS_FILE_NAME);
    fs::write(dir.path().join("missing-parent-is-a-file"), b"").unwrap();
    let mut known = KnownPeers::load(&path).unwrap_or_else(|_| KnownPeers::in_memory());
    known.path = Some(path);
    assert!(known.pin(key(1).peer_id(), &key(1), "Bob", 1).is_err());
    assert!(known.is_empty());
    assert_eq!(known.check_name("Bob", &key(1)), Pin::New);
}

#[test]
fn the_changed_key_explanation_says_what_to_do() {
    let (old, new) = (key(1), key(2));
    let text = changed_key_explanation("Bob", &old, &new, Some(Path::new("/d/known_peers")));
    for needle in [
        "Bob",
        "reinstalled",
        "new device",
        "impersonating",
        "safety number",
        "/trust Bob",
        "/d/known_peers",
        &old.to_base64(),
        &new.to_base64(),
        &new.peer_id().to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} missing in {text}");
    }
    let text = changed_key_explanation("Bob", &old, &new, None);
    assert!(!text.contains("delete the line"), "{text}");
    // Network text cannot reach the terminal raw.
    let text = changed_key_explanation("B\u{1b}[2Jo b", &old, &new, Some(Path::new("/k")));
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("B\\x1b[2Jo b"), "{text}");
    assert!(
        text.contains("line ending in B%1B[2Jo%20b from /k"),
        "{text}"
    );
}
