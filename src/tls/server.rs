//! The server end: a rustls configuration from [`TlsFiles`], and the
//! handshake of each accepted stream, bounded in time, before any ZEO byte
//! (the `Z5`/`M5` greeting travels inside TLS, as with runzeo).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::verify::{ClientCertificates, Trust};
use super::{pem, provider, TlsError, TlsFiles};

/// The server's rustls configuration; every file is read now, so a bad
/// path or key stops the server at startup, naming the file.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let chain = pem::certificates(&files.certificate)?;
    let key = pem::private_key(files.key.as_deref().unwrap_or(&files.certificate))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = match &files.authenticate {
        Some(path) => {
            let verifier = ClientCertificates::new(Trust::load(path)?, provider)?;
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::CertifiedKey)?;
    Ok(Arc::new(config))
}

/// Runs the TLS handshake on an accepted stream. `None` (logged) if the
/// peer does not complete it within `timeout` (the server's
/// handshake-timeout: a plain ZEO client waits for a greeting that never
/// comes), offers no TLS, or presents a refused certificate.
pub async fn handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    peer: &str,
    conn: u64,
    timeout: Duration,
) -> Option<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            tracing::debug!(
                conn,
                %peer,
                version = ?session.protocol_version(),
                client_certificate = session.peer_certificates().is_some(),
                "TLS established"
            );
            Some(stream)
        }
        Ok(Err(err)) => {
            use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
            if matches!(
                err.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted
            ) {
                // Port probes connect and close.
                tracing::debug!(conn, %peer, %err, "connection closed during the TLS handshake");
            } else {
                tracing::warn!(conn, %peer, %err, "TLS handshake refused");
            }
            None
        }
        Err(_) => {
            tracing::info!(conn, %peer, "no TLS handshake within {timeout:?} (a client without TLS?)");
            None
        }
    }
}
