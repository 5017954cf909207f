//! The client end, for zeod's own tools that talk to a TLS server
//! (`zeod health`, `zeod status`): the `--ssl-*` options (also read from
//! `ZEOD_CLIENT_SSL_*`, so the image's argument-less HEALTHCHECK can use
//! them) and connecting with them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::verify::{ServerCertificates, Trust};
use super::{pem, provider, TlsError};

/// How to reach a server whose zeo.conf has `<ssl>`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// Connect over TLS, trusting the server certificates (or the CAs) in
    /// this PEM file or directory.
    #[arg(long = "ssl-ca", value_name = "PEM", env = "ZEOD_CLIENT_SSL_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one
    /// (`authenticate`); its key is in --ssl-key or the same file.
    #[arg(
        long = "ssl-certificate",
        value_name = "PEM",
        env = "ZEOD_CLIENT_SSL_CERTIFICATE"
    )]
    pub certificate: Option<PathBuf>,
    /// Private key of --ssl-certificate (PEM, unencrypted).
    #[arg(long = "ssl-key", value_name = "PEM", env = "ZEOD_CLIENT_SSL_KEY")]
    pub key: Option<PathBuf>,
    /// Name the server certificate must carry (default: the address's
    /// host). Not checked for a certificate listed in --ssl-ca itself.
    #[arg(
        long = "ssl-server-hostname",
        value_name = "NAME",
        env = "ZEOD_CLIENT_SSL_SERVER_HOSTNAME"
    )]
    pub server_hostname: Option<String>,
}

/// A ready client TLS configuration.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_hostname: Option<String>,
}

impl ClientTls {
    /// `None` when no `--ssl-*` option is given (plain TCP).
    pub fn from_args(args: &ClientTlsArgs) -> Result<Option<ClientTls>, TlsError> {
        let Some(ca) = &args.ca else {
            if args.certificate.is_some() || args.key.is_some() {
                return Err(TlsError::NoCa);
            }
            return Ok(None);
        };
        let provider = provider();
        let verifier = ServerCertificates::new(Trust::load(ca)?, provider.clone())?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &args.certificate {
            Some(certificate) => {
                let chain = pem::certificates(certificate)?;
                let key = pem::private_key(args.key.as_deref().unwrap_or(certificate))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsError::CertifiedKey)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Some(ClientTls {
            config: Arc::new(config),
            server_hostname: args.server_hostname.clone(),
        }))
    }

    /// The name sent (SNI) and checked: `--ssl-server-hostname`, else the
    /// host part of `address` (`HOST:PORT`, `PORT`, or a socket path).
    pub fn server_name(&self, address: &str) -> Result<ServerName<'static>, TlsError> {
        let host = match &self.server_hostname {
            Some(name) => name.as_str(),
            None => host_of(address),
        };
        ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
    }

    /// Runs the handshake over a blocking stream (its timeouts apply).
    pub fn connect_blocking<S: Read + Write>(
        &self,
        address: &str,
        mut stream: S,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, S>, TlsError> {
        let mut connection =
            rustls::ClientConnection::new(self.config.clone(), self.server_name(address)?)
                .map_err(TlsError::Setup)?;
        while connection.is_handshaking() {
            connection
                .complete_io(&mut stream)
                .map_err(TlsError::Handshake)?;
        }
        Ok(rustls::StreamOwned::new(connection, stream))
    }

    /// Runs the handshake over an async stream.
    pub async fn connect<S>(
        &self,
        address: &str,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self
            .server_name(address)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

/// `zeo:8100` → `zeo`, `[::1]:8100` → `::1`, `8100` and socket paths →
/// `localhost`.
fn host_of(address: &str) -> &str {
    if address.contains('/') {
        return "localhost";
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
        _ => "localhost",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_of("zeo:8100"), "zeo");
        assert_eq!(host_of("[::1]:8100"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("8100"), "localhost");
        assert_eq!(host_of(":8100"), "localhost");
        assert_eq!(host_of("/run/zeo.sock"), "localhost");
    }

    #[test]
    fn a_client_certificate_needs_a_ca() {
        let args = ClientTlsArgs {
            certificate: Some("client.pem".into()),
            ..ClientTlsArgs::default()
        };
        assert!(matches!(ClientTls::from_args(&args), Err(TlsError::NoCa)));
        assert!(ClientTls::from_args(&ClientTlsArgs::default())
            .unwrap()
            .is_none());
    }
}
