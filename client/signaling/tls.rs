//! How the peer reaches the signaling server: an `https://` URL speaks TLS
//! (rustls on ring, through tonic), trusting the system's root certificates
//! or only the CA of `--ca`; it never falls back to plaintext (tonic refuses
//! an `https://` URL it cannot speak TLS to). An `http://` URL is plaintext
//! h2c, and when its host is not loopback the peer warns once that the
//! session token crosses the network in clear.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Which certificates the peer accepts from an `https://` server.
#[derive(Debug, Clone, Default)]
pub enum ServerTrust {
    /// The operating system's root store (what browsers and curl trust).
    #[default]
    SystemRoots,
    /// Only this CA (`--ca`): e.g. a test deployment's own CA.
    Ca(CaBundle),
}

/// A PEM file of one or more CA certificates, checked when loaded.
#[derive(Debug, Clone)]
pub struct CaBundle {
    path: PathBuf,
    pem: Vec<u8>,
}

/// Why a `--ca` file cannot be used.
#[derive(Debug, Error)]
pub enum CaError {
    /// It cannot be read.
    #[error("cannot read the CA file {}: {source}", path.display())]
    Read {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not PEM certificates.
    #[error("the CA file {} is not PEM certificates: {source}", path.display())]
    Pem {
        /// Its path.
        path: PathBuf,
        /// What the parser said.
        source: pem::Error,
    },
    /// It holds no certificate.
    #[error("the CA file {} holds no certificate (expected PEM 'BEGIN CERTIFICATE' blocks)", path.display())]
    Empty {
        /// Its path.
        path: PathBuf,
    },
}

impl CaBundle {
    /// Reads and checks the PEM file at `path`.
    pub fn load(path: &Path) -> Result<CaBundle, CaError> {
        let pem = std::fs::read(path).map_err(|source| CaError::Read {
            path: path.to_owned(),
            source,
        })?;
        let count = CertificateDer::pem_slice_iter(&pem)
            .try_fold(0usize, |n, cert| cert.map(|_| n + 1))
            .map_err(|source| CaError::Pem {
                path: path.to_owned(),
                source,
            })?;
        if count == 0 {
            return Err(CaError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(CaBundle {
            path: path.to_owned(),
            pem,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `endpoint` for `url`, with TLS set up for an `https://` URL.
pub(super) fn with_trust(
    endpoint: Endpoint,
    url: &str,
    trust: &ServerTrust,
) -> Result<Endpoint, tonic::transport::Error> {
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let config = match trust {
        ServerTrust::SystemRoots => ClientTlsConfig::new().with_native_roots(),
        ServerTrust::Ca(ca) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem))
        }
    };
    endpoint.tls_config(config)
}

/// The server URL's host (without brackets for IPv6), if it has one.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `url` is plaintext to a host other than this machine, so the
/// session token would cross a network in clear.
pub fn is_cleartext_remote(url: &str) -> bool {
    if !url.starts_with("http://") {
        return false;
    }
    match url_host(url) {
        Some(host) if host.eq_ignore_ascii_case("localhost") => false,
        Some(host) => !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// `brief`'s text of a failed call, made plain for TLS failures: tonic
/// repeats the rustls cause ("X: X"), and an untrusted certificate gets the
/// remedy.
pub(super) fn describe(brief: String) -> String {
    let half = brief.len().saturating_sub(2) / 2;
    let repeated = brief.get(..half).is_some_and(|head| {
        brief.get(half..half + 2) == Some(": ") && brief.get(half + 2..) == Some(head)
    });
    let text = if repeated {
        brief[..half].to_owned()
    } else {
        brief
    };
    if text.contains("invalid peer certificate") {
        return format!(
            "{text} (the server's TLS certificate is not trusted: pass --ca with the CA that signed it)"
        );
    }
    text
}

/// The one-line warning for a plaintext server off this machine.
pub fn cleartext_warning(url: &str) -> String {
    format!(
        "warning: {url} is plaintext (http://): the session token and peer list travel in clear; \
         use https:// (and --ca for a private CA)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_plaintext_is_fine_and_remote_plaintext_is_not() {
        assert!(!is_cleartext_remote("http://localhost:8000"));
        assert!(!is_cleartext_remote("http://127.0.0.1:8000"));
        assert!(!is_cleartext_remote("http://127.1.2.3:8000/"));
        assert!(!is_cleartext_remote("http://[::1]:8000"));
        assert!(is_cleartext_remote("http://chat.example.org:8000"));
        assert!(is_cleartext_remote("http://192.0.2.1:8000"));
        assert!(is_cleartext_remote("http://[2001:db8::1]:8000"));
        assert!(!is_cleartext_remote("https://chat.example.org:8443"));
    }

    #[test]
    fn certificate_failures_say_what_to_do() {
        let text = describe(
            "invalid peer certificate: UnknownIssuer: invalid peer certificate: UnknownIssuer"
                .to_owned(),
        );
        assert!(
            text.starts_with("invalid peer certificate: UnknownIssuer (the server's"),
            "{text}"
        );
        assert_eq!(
            describe("refused: connection refused".into()),
            "refused: connection refused"
        );
    }

    #[test]
    fn hosts_come_out_of_urls() {
        assert_eq!(url_host("https://a.example:1/x"), Some("a.example"));
        assert_eq!(url_host("http://[::1]:8000"), Some("::1"));
        assert_eq!(url_host("http://u@h:1"), Some("h"));
        assert_eq!(url_host("http://"), None);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("p2pchat-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(CaBundle::load(&empty), Err(CaError::Empty { .. })));
        let missing = dir.join("missing.pem");
        assert!(matches!(
            CaBundle::load(&missing),
            Err(CaError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
