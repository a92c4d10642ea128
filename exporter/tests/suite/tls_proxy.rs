//! TLS for the tests: certificates made at test time with `rcgen` (a CA, server and client
//! certificates), and a TLS-terminating proxy in front of the real noida-db (which speaks
//! only plaintext). The proxy is Kafka-aware in one point: it rewrites the broker port in
//! Metadata responses to its own, so the exporter's later connections come through it too
//! (as a broker's advertised listener would).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A certificate authority made for one test.
pub struct Ca {
    certificate: Certificate,
    key: KeyPair,
    dir: PathBuf,
}

/// A certificate signed by a [`Ca`], with its PEM files on disk.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
    pub cert_file: String,
    pub key_file: String,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names is valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("test CA {name}"));
        let key = KeyPair::generate().expect("a key pair");
        let certificate = params.self_signed(&key).expect("a CA certificate");
        std::fs::write(dir.join("ca.pem"), certificate.pem()).expect("CA written");
        Ca { certificate, key, dir }
    }

    pub fn file(&self) -> String {
        self.dir.join("ca.pem").to_string_lossy().to_string()
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, file: &str, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("valid names");
        let key = KeyPair::generate().expect("a key pair");
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("signed");
        let cert_file = self.dir.join(format!("{file}.pem"));
        let key_file = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_file, certificate.pem()).expect("certificate written");
        std::fs::write(&key_file, key.serialize_pem()).expect("key written");
        Leaf {
            der: certificate.der().clone(),
            key_der: key.serialize_der(),
            cert_file: cert_file.to_string_lossy().to_string(),
            key_file: key_file.to_string_lossy().to_string(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.certificate.der().clone()
    }
}

pub struct TlsProxy {
    pub addr: String,
    task: JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Serves TLS with `server` in front of `upstream`; with `client_ca`, clients must show
    /// a certificate signed by it (mTLS).
    pub async fn start(upstream: &str, server: &Leaf, client_ca: Option<&Ca>) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("default versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).expect("CA certificate");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(vec![server.der.clone()], server.key()).expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let Ok(broker) = TcpStream::connect(&upstream).await else { return };
                    relay(tls, broker, port).await;
                });
            }
        });
        TlsProxy { addr: format!("127.0.0.1:{port}"), task }
    }
}

async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let length = stream.read_i32().await.ok()?;
    let mut body = vec![0u8; usize::try_from(length).ok()?];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), body: &[u8]) -> Option<()> {
    stream.write_i32(i32::try_from(body.len()).ok()?).await.ok()?;
    stream.write_all(body).await.ok()
}

/// One request, one response, in turn (the exporter never pipelines).
async fn relay(mut client: impl AsyncRead + AsyncWrite + Unpin, mut broker: TcpStream, port: u16) {
    loop {
        let Some(request) = read_frame(&mut client).await else { return };
        let (key, version) =
            (i16::from_be_bytes([request[0], request[1]]), i16::from_be_bytes([request[2], request[3]]));
        if write_frame(&mut broker, &request).await.is_none() {
            return;
        }
        let Some(mut response) = read_frame(&mut broker).await else { return };
        if key == ApiKey::Metadata as i16 {
            let Some(rewritten) = advertise(&response, version, port) else { return };
            response = rewritten;
        }
        if write_frame(&mut client, &response).await.is_none() {
            return;
        }
    }
}

/// The Metadata response with every broker at the proxy's port.
fn advertise(response: &[u8], version: i16, port: u16) -> Option<Vec<u8>> {
    let header_version = ApiKey::Metadata.response_header_version(version);
    let mut bytes = Bytes::copy_from_slice(response);
    let header = ResponseHeader::decode(&mut bytes, header_version).ok()?;
    let mut metadata = MetadataResponse::decode(&mut bytes, version).ok()?;
    for broker in &mut metadata.brokers {
        broker.port = i32::from(port);
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    metadata.encode(&mut out, version).ok()?;
    let mut frame = Vec::with_capacity(out.len());
    frame.put_slice(&out);
    Some(frame)
}
