//! TLS for the one listener: the certificate chain and key (PEM files) are
//! loaded into a rustls [`ServerConfig`] on the `ring` provider (the one
//! crypto provider the workspace links), offering ALPN `h2` (gRPC, and REST
//! over HTTP/2) and `http/1.1` (REST), so both APIs share the TLS port as
//! they share the plaintext one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The ALPN protocols offered, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the server's certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Which of the two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain.
    Certificate,
    /// The private key.
    Key,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Certificate => "certificate",
            TlsFile::Key => "key",
        })
    }
}

/// Why the TLS files cannot be served with.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// The file cannot be read.
    #[error("cannot read the TLS {file} file {}: {source}", path.display())]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not PEM of the expected kind.
    #[error("the TLS {file} file {} is not usable PEM: {source}", path.display())]
    Pem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What the PEM parser said.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("the TLS certificate file {} holds no certificate (expected PEM 'BEGIN CERTIFICATE' blocks)", path.display())]
    NoCertificate {
        /// Its path.
        path: PathBuf,
    },
    /// rustls refused the pair (e.g. the key does not match the
    /// certificate, or its algorithm is not supported).
    #[error("the TLS certificate {} and key {} cannot be served: {source}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// Loads `files` into an acceptor for the listener.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsSetupError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(files)?)))
}

/// The rustls configuration for `files`: TLS 1.2 and 1.3 (rustls' safe
/// defaults) on `ring`, no client certificates, ALPN `h2` + `http/1.1`.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsSetupError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let refused = |source| TlsSetupError::Refused {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(refused)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(refused)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        file,
        path: path.to_owned(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(TlsFile::Certificate, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Pem {
            file: TlsFile::Certificate,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read(TlsFile::Key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsSetupError::Pem {
        file: TlsFile::Key,
        path: path.to_owned(),
        source,
    })
}
