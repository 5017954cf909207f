//! TLS on the ZEO port, with rustls (ring): what zeo.conf's `<ssl>` section
//! means to runzeo, for both ends of a connection.
//!
//! - [`server`]: the server's certificate chain and key, the client
//!   certificate policy (`authenticate`), and the handshake of an accepted
//!   stream.
//! - [`client`]: the client side for zeod's own tools (`health`,
//!   `status`): which server certificates to trust, which certificate to
//!   present.
//! - [`pem`]: reading certificates and keys from PEM files and directories.
//! - [`verify`]: trust as OpenSSL gives it to Python's ZEO — a certificate
//!   listed in the trust file is trusted as itself (pinned), any other must
//!   chain to one of them.
//! - [`validity`]: the validity period of a pinned certificate.
//!
//! Only TLS 1.2 and 1.3 with rustls' safe defaults are offered; Python's
//! `ssl.create_default_context` (what ZEO clients use) speaks both.

mod client;
mod pem;
mod server;
mod validity;
mod verify;

use std::path::PathBuf;

pub use client::{ClientTls, ClientTlsArgs};
pub use server::{handshake, server_config};

/// Where the server's TLS material is: `<zeo><ssl>` in zeo.conf,
/// `--ssl-*` on the command line, `ZEOD_SSL_*` in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its intermediates.
    pub certificate: PathBuf,
    /// PEM private key; `None`: it is in the certificate file (as Python's
    /// `load_cert_chain` allows).
    pub key: Option<PathBuf>,
    /// PEM certificates (a file, or a directory of files) a client
    /// certificate must be one of or be signed by; clients without one are
    /// refused. `None` (zeod only; runzeo requires it): no client
    /// certificates asked for.
    pub authenticate: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not PEM: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error(
        "the private key in {path} is encrypted; zeod cannot ask for a password \
         (runzeo's password-function is Python): store it decrypted \
         (`openssl pkey -in KEY -out PLAIN`) in a file only zeod can read"
    )]
    EncryptedKey { path: PathBuf },
    #[error("server certificate and key: {0}")]
    CertifiedKey(rustls::Error),
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("server name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("--ssl-certificate and --ssl-key need --ssl-ca (the server certificates to trust)")]
    NoCa,
}

/// The one crypto provider zeod uses (ring: builds with a plain C compiler,
/// statically linkable, no cmake).
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
