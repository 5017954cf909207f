//! Certificate trust as OpenSSL gives it to Python's ZEO, for both ends.
//!
//! runzeo's `authenticate` (and a client's `authenticate`) names PEM
//! certificates. OpenSSL accepts a peer whose certificate *is* one of them
//! (ZEO's own test certificates and `openssl req -x509` ones are
//! self-signed CA certificates used as leaves, with SHA-1 signatures that
//! webpki refuses), or whose chain ends in one of them. [`Trust`] does the
//! same: an exact match is pinned (only its validity dates are checked; the
//! handshake signature still proves the peer holds its key), anything else
//! goes to webpki's chain verification with those certificates as roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{pem, validity, TlsError};

/// The handshake-signature half of both verifier traits: whoever the peer
/// is, its signature is checked with the crypto provider's algorithms.
macro_rules! handshake_signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// The certificates of one trust location (`authenticate`, `--ssl-ca`).
#[derive(Debug)]
pub(super) struct Trust {
    pinned: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
}

impl Trust {
    pub(super) fn load(path: &std::path::Path) -> Result<Trust, TlsError> {
        let pinned = pem::trust_location(path)?;
        let mut roots = RootCertStore::empty();
        let (_, unusable) = roots.add_parsable_certificates(pinned.iter().cloned());
        if unusable > 0 {
            tracing::debug!(path = %path.display(), unusable, "certificates usable only as pinned peers, not as CAs");
        }
        Ok(Trust {
            pinned,
            roots: Arc::new(roots),
        })
    }

    /// `None` if `end_entity` is not pinned; otherwise whether its dates
    /// hold at `now`.
    fn pinned(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Option<Result<(), Error>> {
        if !self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return None;
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        Some(match validity::validity(end_entity) {
            Some((from, _)) if now < from => Err(CertificateError::NotValidYet.into()),
            Some((_, to)) if now > to => Err(CertificateError::Expired.into()),
            Some(_) => Ok(()),
            None => Err(CertificateError::BadEncoding.into()),
        })
    }
}

/// The server's check of client certificates: required, pinned or chained.
#[derive(Debug)]
pub(super) struct ClientCertificates {
    trust: Trust,
    chained: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertificates {
    pub(super) fn new(trust: Trust, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let chained = if trust.roots.is_empty() {
            None
        } else {
            Some(
                WebPkiClientVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                    .build()?,
            )
        };
        Ok(ClientCertificates {
            trust,
            chained,
            provider,
        })
    }
}

impl ClientCertVerifier for ClientCertificates {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.chained {
            Some(chained) => chained.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if let Some(pinned) = self.trust.pinned(end_entity, now) {
            return pinned.map(|()| ClientCertVerified::assertion());
        }
        match &self.chained {
            Some(chained) => chained.verify_client_cert(end_entity, intermediates, now),
            None => Err(CertificateError::UnknownIssuer.into()),
        }
    }

    handshake_signatures_by_provider!();
}

/// A client's check of the server certificate: pinned, or chained and
/// carrying the expected name.
#[derive(Debug)]
pub(super) struct ServerCertificates {
    trust: Trust,
    chained: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertificates {
    pub(super) fn new(trust: Trust, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let chained = if trust.roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                    .build()?,
            )
        };
        Ok(ServerCertificates {
            trust,
            chained,
            provider,
        })
    }
}

impl ServerCertVerifier for ServerCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(pinned) = self.trust.pinned(end_entity, now) {
            return pinned.map(|()| ServerCertVerified::assertion());
        }
        match &self.chained {
            Some(chained) => chained.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(CertificateError::UnknownIssuer.into()),
        }
    }

    handshake_signatures_by_provider!();
}
