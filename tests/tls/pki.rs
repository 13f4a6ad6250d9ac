//! A throw-away PKI per test: a CA and a server certificate for
//! `localhost` and 127.0.0.1 signed by it (rcgen, ring), written as PEM
//! files into a fresh temporary directory that is removed on drop; and the
//! CI-aware check for the external tools the TLS tests drive.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM files of one test's PKI.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate clients trust (`--ca`, `-cacert`, `verify=`).
    pub ca: PathBuf,
    /// The server's certificate chain (leaf only).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

impl Pki {
    /// A CA and a server certificate for `localhost` and 127.0.0.1.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "p2pchat-tls-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_pem, issuer) = ca();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca_pem).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }

    /// Another CA's certificate (one that did not sign the server's), as a
    /// file in this PKI's directory.
    pub fn other_ca(&self) -> PathBuf {
        let path = self.dir.join("other-ca.pem");
        std::fs::write(&path, ca().0).unwrap();
        path
    }

    /// A file in this PKI's directory with `contents`.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The path as a `&str` for command lines.
    pub fn arg(path: &Path) -> &str {
        path.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh CA: its certificate's PEM and the issuer that signs with it.
fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "p2pchat test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// True when `program args` runs and exits 0 (e.g. `python3 -c "import
/// requests"`). When it does not: panics under CI (a CI run must never
/// skip these), otherwise says on stderr that the test is skipped.
pub fn tool_available(program: &str, args: &[&str], install: &str) -> bool {
    let works = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return true;
    }
    let ci = std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false);
    assert!(
        !ci,
        "`{program} {args:?}` does not work but CI is set: this test must run in CI ({install})"
    );
    // Written to stderr directly so the harness's capture does not hide it.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: `{program}` not usable ({install})"
    );
    false
}
