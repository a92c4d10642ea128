//! TLS to brokers with rustls (ring provider): trust from a CA file or the system's roots,
//! a client certificate for mTLS, hostname verification against the broker's address (or
//! a configured name), and an explicit switch that turns certificate verification off
//! (the binary warns when it is on). The private key file's content never appears in
//! errors or Debug output.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// `[clusters.tls]` in the config file; the flags `--tls-*` say the same.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of the CA certificates to trust (default: the system's roots).
    pub ca_file: Option<String>,
    /// PEM file of the client certificate chain, for mTLS (with `key_file`).
    pub cert_file: Option<String>,
    /// PEM file of the client's private key.
    pub key_file: Option<String>,
    /// Name to verify the broker certificates against, instead of each broker's host.
    pub server_name: Option<String>,
    /// Accept any certificate: no chain and no hostname check. Only for tests.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A ready TLS client configuration.
#[derive(Clone)]
pub struct TlsClient {
    pub connector: TlsConnector,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl RawTls {
    pub fn resolve(&self) -> Result<TlsClient, String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("cert_file and key_file go together".into());
        }
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                // Only the path is ever named: the key is a secret.
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|_| format!("key_file `{key}`: no PEM private key"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("cert_file/key_file: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        if let Some(name) = &self.server_name {
            ServerName::try_from(name.clone()).map_err(|_| format!("server_name `{name}` is not a DNS name or IP"))?;
        }
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for certificate in certificates(path)? {
                    roots.add(certificate).map_err(|e| format!("ca_file `{path}`: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no ca_file given and no system CA certificates found".into());
                }
            }
        }
        Ok(roots)
    }
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("`{path}`: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{path}`: {e}"))?;
    if chain.is_empty() {
        return Err(format!("`{path}`: no PEM certificate"));
    }
    Ok(chain)
}

/// The name a broker's certificate is checked against: the configured one, else the host
/// of its address (an IP address is checked against the certificate's IP entries).
pub fn server_name(client: &TlsClient, addr: &str) -> Result<ServerName<'static>, String> {
    let host = match &client.server_name {
        Some(name) => name.as_str(),
        None => addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_start_matches('[').trim_end_matches(']'),
    };
    ServerName::try_from(host.to_string()).map_err(|_| format!("`{host}` is not a DNS name or IP"))
}

/// `insecure_skip_verify`: any certificate chain and name pass; the handshake signatures
/// are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
