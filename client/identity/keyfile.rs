//! The identity key on disk: one Ed25519 private key, PKCS#8 PEM
//! (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey -algorithm
//! ed25519` writes; ours also carries the public key, RFC 8410's v2 form).
//!
//! * Where: [`default_path`], `$XDG_DATA_HOME/p2pchat/identity.pem`, else
//!   `$HOME/.local/share/p2pchat/identity.pem`; `--identity PATH` picks
//!   another.
//! * Created on first run ([`load_or_create`]): the directory with mode
//!   0700 if missing, the file with 0600, written whole to a temporary file
//!   and hard-linked into place, so it never appears half-written and an
//!   existing file is never replaced; when two first runs race, the one
//!   that links second loads the winner's key.
//! * Loaded ([`load`]) only if no group or other permission bit is set
//!   (ssh's rule; the error says `chmod 600 PATH`), if it is a regular file
//!   of at most [`MAX_KEY_FILE_BYTES`], and if it parses. A file that fails
//!   any check is reported and left exactly as it is: p2pchat never
//!   overwrites a key file, so a damaged key can still be recovered.
//! * The file's bytes, the PEM text and the DER inside are held in
//!   zeroizing buffers; the signing key zeroizes itself on drop.

use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use super::{Identity, IdentityError, atomic};

/// The key file's name in the data directory.
pub const KEY_FILE_NAME: &str = "identity.pem";

/// The application's directory under the XDG data directory.
pub const APP_DIR: &str = "p2pchat";

/// The largest key file read (a PEM Ed25519 key is about 120 bytes).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Permission bits a key file must not have: any for group or others.
const FORBIDDEN_MODE: u32 = 0o077;

/// Whether [`load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileStatus {
    /// No file was there: a new key was generated and written.
    Created,
    /// An existing key file was read.
    Loaded,
}

/// `$XDG_DATA_HOME/p2pchat/identity.pem`, else
/// `$HOME/.local/share/p2pchat/identity.pem`. An empty or relative
/// `XDG_DATA_HOME` is ignored, as the XDG spec asks.
pub fn default_path() -> Result<PathBuf, IdentityError> {
    default_path_from(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn default_path_from(
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, IdentityError> {
    let data = match (xdg_data_home, home) {
        (Some(xdg), _) if xdg.is_absolute() => xdg,
        (_, Some(home)) if !home.as_os_str().is_empty() => home.join(".local").join("share"),
        _ => return Err(IdentityError::NoDataDir),
    };
    Ok(data.join(APP_DIR).join(KEY_FILE_NAME))
}

/// Loads the key at `path`, or creates one there if there is no file.
/// Any other failure (permissions, corruption, I/O) is an error and leaves
/// the file alone.
pub fn load_or_create(path: &Path) -> Result<(Identity, KeyFileStatus), IdentityError> {
    match load(path) {
        Ok(identity) => return Ok((identity, KeyFileStatus::Loaded)),
        Err(IdentityError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        atomic::create_private_dir(dir)?;
    }
    let identity = Identity::generate();
    let pem = encode(path, &identity)?;
    if atomic::write_new(path, pem.as_bytes())? {
        Ok((identity, KeyFileStatus::Created))
    } else {
        // Another process created it since we looked: theirs wins.
        load(path).map(|identity| (identity, KeyFileStatus::Loaded))
    }
}

/// Loads the key at `path`: [`IdentityError::NotFound`] if there is none.
pub fn load(path: &Path) -> Result<Identity, IdentityError> {
    let file = atomic::open_checked(path, FORBIDDEN_MODE, MAX_KEY_FILE_BYTES)?;
    // A fixed buffer one byte larger than the bound: never reallocated, so
    // no copy of the secret is left behind unzeroized.
    let mut buf = Zeroizing::new(vec![0u8; MAX_KEY_FILE_BYTES as usize + 1]);
    let mut len = 0;
    let mut reader = file.take(MAX_KEY_FILE_BYTES + 1);
    loop {
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IdentityError::io("read", path, e)),
        }
    }
    if len as u64 > MAX_KEY_FILE_BYTES {
        // It grew after we checked its size.
        return Err(IdentityError::TooLarge {
            path: path.to_path_buf(),
            size: len as u64,
            max: MAX_KEY_FILE_BYTES,
        });
    }
    decode(path, &buf[..len])
}

/// Parses PKCS#8 PEM bytes.
fn decode(path: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
    let corrupt = |reason: String| IdentityError::CorruptKey {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not text".to_owned()))?;
    if text.trim().is_empty() {
        return Err(corrupt("the file is empty".to_owned()));
    }
    if !text.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(corrupt(
            "no \"-----BEGIN PRIVATE KEY-----\" line, PKCS#8 PEM expected".to_owned(),
        ));
    }
    let signing = SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|e| corrupt(format!("not a PKCS#8 Ed25519 key: {e}")))?;
    Ok(Identity::from_signing_key(signing))
}

/// The key as PKCS#8 PEM (LF line endings). Cannot fail for an Ed25519
/// key; an error names `path`, where it was to be written.
fn encode(path: &Path, identity: &Identity) -> Result<Zeroizing<String>, IdentityError> {
    identity
        .signing_key()
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| IdentityError::Io {
            action: "encode a new key for",
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_dir::TestDir;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn default_path_prefers_an_absolute_xdg_data_home() {
        let p = |x: Option<&str>, h: Option<&str>| {
            default_path_from(x.map(PathBuf::from), h.map(PathBuf::from))
        };
        assert_eq!(
            p(Some("/x/data"), Some("/home/a")).unwrap(),
            Path::new("/x/data/p2pchat/identity.pem")
        );
        for xdg in [None, Some(""), Some("relative/dir")] {
            assert_eq!(
                p(xdg, Some("/home/a")).unwrap(),
                Path::new("/home/a/.local/share/p2pchat/identity.pem")
            );
        }
        assert!(matches!(p(None, None), Err(IdentityError::NoDataDir)));
        assert!(matches!(
            p(Some("rel"), Some("")),
            Err(IdentityError::NoDataDir)
        ));
        let msg = p(None, None).unwrap_err().to_string();
        assert!(msg.contains("--identity PATH"), "{msg}");
    }

    #[test]
    fn first_run_creates_a_private_key_the_second_loads_it() {
        let dir = TestDir::new("create");
        let path = dir.path().join("sub/dir/identity.pem");
        let (created, status) = load_or_create(&path).unwrap();
        assert_eq!(status, KeyFileStatus::Created);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        let (loaded, status) = load_or_create(&path).unwrap();
        assert_eq!(status, KeyFileStatus::Loaded);
        assert_eq!(loaded.public_key(), created.public_key());
        assert_eq!(loaded.peer_id(), created.peer_id());
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(load(&path).unwrap().public_key(), created.public_key());
    }

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = TestDir::new("existing-dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("identity.pem");
        load_or_create(&path).unwrap();
        assert_eq!(mode(dir.path()), 0o755);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_openssl_style_v1_key_loads() {
        // RFC 8410 section 10.3's example private key (PKCS#8 v1, no
        // public key inside).
        let dir = TestDir::new("rfc8410");
        let path = dir.path().join("identity.pem");
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        fs::write(&path, pem).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let identity = load(&path).unwrap();
        assert_eq!(
            identity.public_key().to_base64(),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
        );
    }

    #[test]
    fn a_group_or_world_accessible_key_is_refused() {
        let dir = TestDir::new("perms");
        let path = dir.path().join("identity.pem");
        load_or_create(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        for bad in [0o640, 0o604, 0o620, 0o602, 0o644, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
            let err = load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::InsecurePermissions { mode, .. } if mode == bad),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert_eq!(fs::read(&path).unwrap(), bytes);
            assert_eq!(mode(&path), bad, "the mode is the user's to fix");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load(&path).is_ok(), "read-only for the owner is fine");
    }

    #[test]
    fn a_corrupt_key_is_refused_and_never_overwritten() {
        let dir = TestDir::new("corrupt");
        let path = dir.path().join("identity.pem");
        let valid = encode(&path, &Identity::generate()).unwrap();
        let truncated = valid.as_bytes()[..valid.len() / 2].to_vec();
        let mut flipped = valid.as_bytes().to_vec();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("garbage", b"hello world\n".to_vec()),
            ("binary", vec![0xff, 0xfe, 0x00, 0x80]),
            ("truncated", truncated),
            ("flipped", flipped),
            (
                "wrong type",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
            ),
        ];
        for (what, bytes) in cases {
            fs::write(&path, &bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::CorruptKey { .. }),
                "{what}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("left untouched"), "{msg}");
            assert_eq!(fs::read(&path).unwrap(), bytes, "{what}: file unchanged");
        }
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let dir = TestDir::new("large");
        let path = dir.path().join("identity.pem");
        let bytes = vec![b'A'; MAX_KEY_FILE_BYTES as usize + 1];
        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, IdentityError::TooLarge { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
        // At the bound it is read (and refused as corrupt, not as large).
        fs::write(&path, &bytes[1..]).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::CorruptKey { .. }), "{err:?}");
    }

    #[test]
    fn a_directory_or_fifo_at_the_path_is_refused() {
        let dir = TestDir::new("isdir");
        let path = dir.path().join("identity.pem");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, IdentityError::NotAFile { .. }), "{err:?}");
        // A FIFO is refused without blocking in open().
        let fifo = dir.path().join("fifo.pem");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let err = load_or_create(&fifo).unwrap_err();
        assert!(matches!(err, IdentityError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn an_unreadable_key_is_a_clear_error() {
        let dir = TestDir::new("unreadable");
        let path = dir.path().join("identity.pem");
        load_or_create(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let result = load_or_create(&path);
        if crate::identity::test_dir::can_read_mode_000(dir.path()) {
            // Root (or CAP_DAC_OVERRIDE) reads it anyway: then it loads, as
            // it should; the refusal cannot be observed here.
            let (_, status) = result.unwrap();
            assert_eq!(status, KeyFileStatus::Loaded);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, IdentityError::PermissionDenied { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("permission denied"), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_identity() {
        for round in 0..10 {
            let dir = TestDir::new(&format!("race-{round}"));
            let path = Arc::new(dir.path().join("p2pchat/identity.pem"));
            let barrier = Arc::new(Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        load_or_create(&path).unwrap()
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let created = results
                .iter()
                .filter(|(_, s)| *s == KeyFileStatus::Created)
                .count();
            assert_eq!(created, 1, "exactly one thread created the key");
            let on_disk = load(&path).unwrap().public_key();
            for (identity, _) in &results {
                assert_eq!(identity.public_key(), on_disk);
            }
            // Only the key itself: every temporary file was removed.
            assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        }
    }
}
