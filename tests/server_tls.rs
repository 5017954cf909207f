//! TLS on the ZEO port, end to end in-process: the server's `<ssl>` files,
//! which client certificates `authenticate` lets in (one chained to a CA,
//! one pinned self-signed CA certificate used as a leaf, as ZEO's tests
//! and `openssl req -x509` make them), which it refuses (none, another
//! CA's, an expired pinned one), and `zeod health` over TLS. Certificates
//! are made with rcgen; Python's ZEO client is in tests/python/test_tls.py.

#[path = "server_support/harness.rs"]
mod harness;

#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use zeod::connect::ConnectError;
    use zeod::health::{probe, probe_with, ProbeError};
    use zeod::tls::{server_config, ClientTls, ClientTlsArgs, TlsError, TlsFiles};

    use super::harness::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Pki {
            let pki = Pki {
                dir: tempfile::tempdir().unwrap(),
            };
            let ca_key = KeyPair::generate().unwrap();
            let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.distinguished_name.push(DnType::CommonName, "test CA");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = ca.self_signed(&ca_key).unwrap();
            pki.write("ca.pem", &ca.pem());

            let leaf = |name: &str, purpose, sans: Vec<String>| {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::new(sans).unwrap();
                params.distinguished_name.push(DnType::CommonName, name);
                params.extended_key_usages = vec![purpose];
                let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
                pki.write(&format!("{name}.pem"), &cert.pem());
                pki.write(&format!("{name}.key"), &key.serialize_pem());
            };
            leaf(
                "server",
                ExtendedKeyUsagePurpose::ServerAuth,
                vec!["localhost".into(), "127.0.0.1".into()],
            );
            leaf("client", ExtendedKeyUsagePurpose::ClientAuth, vec![]);

            let self_signed = |name: &str, not_after| {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
                params.distinguished_name.push(DnType::CommonName, name);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                if let Some(date) = not_after {
                    params.not_after = date;
                }
                let cert = params.self_signed(&key).unwrap();
                pki.write(&format!("{name}.pem"), &cert.pem());
                pki.write(&format!("{name}.key"), &key.serialize_pem());
                cert.pem()
            };
            let pinned = self_signed("pinned", None);
            let expired = self_signed("expired", Some(rcgen::date_time_ymd(2001, 1, 1)));
            self_signed("stranger", None);
            pki.write(
                "authenticate.pem",
                &format!("{}{pinned}{expired}", ca.pem()),
            );
            pki
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.path(name), text).unwrap();
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn server_files(&self) -> TlsFiles {
            TlsFiles {
                certificate: self.path("server.pem"),
                key: Some(self.path("server.key")),
                authenticate: Some(self.path("authenticate.pem")),
            }
        }

        /// A client trusting our CA, presenting `name`'s certificate.
        fn client(&self, name: Option<&str>) -> ClientTls {
            ClientTls::from_args(&ClientTlsArgs {
                ca: Some(self.path("ca.pem")),
                certificate: name.map(|n| self.path(&format!("{n}.pem"))),
                key: name.map(|n| self.path(&format!("{n}.key"))),
                server_hostname: None,
            })
            .unwrap()
            .unwrap()
        }
    }

    async fn tls_server(pki: &Pki) -> TestServer {
        let mut config = config();
        config.tls = Some(pki.server_files());
        TestServer::start_with(config).await
    }

    async fn health(
        server: &TestServer,
        client: Option<ClientTls>,
    ) -> Result<zeod::health::Health, ProbeError> {
        let address = server.addr.to_string();
        tokio::task::spawn_blocking(move || {
            probe_with(&address, Duration::from_secs(5), client.as_ref())
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn chained_and_pinned_client_certificates_are_served() {
        let pki = Pki::new();
        let server = tls_server(&pki).await;
        for name in ["client", "pinned"] {
            let ok = health(&server, Some(pki.client(Some(name)))).await.unwrap();
            assert_eq!(ok.greeting, "Z5", "{name}");
            assert_eq!(ok.storages.len(), 1);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn other_certificates_are_refused_and_the_server_goes_on() {
        let pki = Pki::new();
        let server = tls_server(&pki).await;
        for name in [None, Some("stranger"), Some("expired")] {
            let refused = health(&server, Some(pki.client(name))).await;
            assert!(refused.is_err(), "{name:?} was let in");
        }
        // No ZEO byte is sent before the TLS handshake.
        let address = server.addr.to_string();
        let plain = tokio::task::spawn_blocking(move || probe(&address, Duration::from_secs(2)))
            .await
            .unwrap();
        assert!(plain.is_err(), "a plain probe got an answer");
        health(&server, Some(pki.client(Some("client"))))
            .await
            .unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn the_client_checks_the_server_name() {
        let pki = Pki::new();
        let server = tls_server(&pki).await;
        let wrong = ClientTls::from_args(&ClientTlsArgs {
            ca: Some(pki.path("ca.pem")),
            certificate: Some(pki.path("client.pem")),
            key: Some(pki.path("client.key")),
            server_hostname: Some("zeo.example.org".into()),
        })
        .unwrap();
        assert!(matches!(
            health(&server, wrong).await,
            Err(ProbeError::Connect(ConnectError::Tls(TlsError::Handshake(
                _
            ))))
        ));
        server.stop().await;
    }

    #[test]
    fn bad_files_are_named_at_startup() {
        let pki = Pki::new();
        let missing = TlsFiles {
            certificate: pki.path("nope.pem"),
            ..pki.server_files()
        };
        let err = server_config(&missing).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { path, .. } if path == Path::new(&pki.path("nope.pem")))
        );
        let mismatched = TlsFiles {
            key: Some(pki.path("client.key")),
            ..pki.server_files()
        };
        assert!(matches!(
            server_config(&mismatched),
            Err(TlsError::CertifiedKey(_))
        ));
        let no_anchor = TlsFiles {
            authenticate: Some(pki.path("server.key")),
            ..pki.server_files()
        };
        assert!(matches!(
            server_config(&no_anchor),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
