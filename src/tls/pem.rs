//! Certificates and keys from PEM files, the form runzeo's `<ssl>` keys
//! name (Python's `load_cert_chain` and `load_verify_locations`).

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

/// Every certificate in `path`, in file order (leaf first for a chain).
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key in `path` (which may also hold certificates).
pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    // Legacy `Proc-Type: 4,ENCRYPTED` headers and PKCS#8
    // `ENCRYPTED PRIVATE KEY` blocks: say so instead of "not PEM".
    if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_path_buf(),
        }),
        Err(err) => Err(pem_error(path)(err)),
    }
}

/// The certificates of a trust location: a PEM file, or a directory whose
/// files are read in name order (OpenSSL's hashed `capath` layout works;
/// files that hold no certificate, like a README, are passed over).
pub(super) fn trust_location(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if !path.is_dir() {
        return certificates(path);
    }
    let entries = std::fs::read_dir(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        match certificates(&file) {
            Ok(certs) => all.extend(certs),
            Err(err) => tracing::debug!(file = %file.display(), %err, "not a certificate file"),
        }
    }
    if all.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(all)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_in_every_form_and_refuses_encrypted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["zeo".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // Certificate and key in one file, as `load_cert_chain(certfile)`.
        let both = dir.path().join("both.pem");
        std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        assert_eq!(certificates(&both).unwrap().len(), 1);
        assert!(matches!(
            private_key(&both).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));

        let only_cert = dir.path().join("cert.pem");
        std::fs::write(&only_cert, cert.pem()).unwrap();
        assert!(matches!(
            private_key(&only_cert),
            Err(TlsError::NoKey { .. })
        ));

        let encrypted = dir.path().join("enc.pem");
        std::fs::write(
            &encrypted,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,769B900D03925712\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = private_key(&encrypted).unwrap_err();
        assert!(matches!(err, TlsError::EncryptedKey { .. }));
        assert!(err.to_string().contains("password"), "{err}");

        assert!(matches!(
            certificates(&dir.path().join("missing.pem")),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn a_trust_directory_skips_files_without_certificates() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
        }
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        assert_eq!(trust_location(dir.path()).unwrap().len(), 2);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            trust_location(empty.path()),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
