//! One connection to one broker: length-framed requests and responses with the
//! `kafka-protocol` codecs, ApiVersions negotiation (highest common version), SASL
//! authentication where configured (SaslHandshake v1 + SaslAuthenticate, KIP-152), a
//! timeout on every request.

use crate::sasl::{fresh_nonce, plain, Mechanism, SaslConfig, SaslError, ScramSha256, ScramSha512};
pub use crate::security::Security;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame accepted (a corrupt length must not allocate gigabytes).
pub const FRAME_BYTES_MAX: i32 = 100 << 20;
const CLIENT_NAME: &str = "kafka-trial-exporter";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: cannot connect: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr}: {api:?} timed out after {timeout:?}")]
    Timeout { addr: String, api: ApiKey, timeout: Duration },
    #[error("{addr}: {api:?}: {source}")]
    Io { addr: String, api: ApiKey, source: std::io::Error },
    #[error("{addr}: {api:?}: {message}")]
    Protocol { addr: String, api: ApiKey, message: String },
    #[error("{addr}: the broker supports no common version of {api:?}")]
    Unsupported { addr: String, api: ApiKey },
    #[error("{addr}: not retried yet after {failures} failed connection(s) (backoff)")]
    Backoff { addr: String, failures: u32 },
    #[error("{addr}: TLS: {message}")]
    Tls { addr: String, message: String },
    /// SASL failed; `message` never holds the password (the broker's text is redacted).
    #[error("{addr}: SASL authentication failed: {message}")]
    Auth { addr: String, message: String },
}

/// A byte stream to a broker: plain TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Connection {
    addr: String,
    stream: Box<dyn Stream>,
    correlation: i32,
    timeout: Duration,
    /// Highest version both sides speak, per API key.
    versions: BTreeMap<i16, i16>,
}

impl Connection {
    /// Connects and negotiates API versions, without TLS or SASL.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        Connection::connect_secured(addr, timeout, &Security::default()).await
    }

    /// Connects, negotiates API versions and authenticates as `security` says.
    pub async fn connect_secured(
        addr: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.into(), api: ApiKey::ApiVersions, timeout })?
            .map_err(|source| ClientError::Connect { addr: addr.into(), source })?;
        let stream: Box<dyn Stream> = match &security.tls {
            Some(tls) => {
                let tls_error = |message: String| ClientError::Tls { addr: addr.into(), message };
                let name = crate::tls::server_name(tls, addr).map_err(tls_error)?;
                let handshake = tls.connector.connect(name, stream);
                let stream = tokio::time::timeout(timeout, handshake)
                    .await
                    .map_err(|_| tls_error(format!("handshake timed out after {timeout:?}")))?
                    .map_err(|e| tls_error(e.to_string()))?;
                Box::new(stream)
            }
            None => Box::new(stream),
        };
        let mut connection =
            Connection { addr: addr.into(), stream, correlation: 0, timeout, versions: BTreeMap::new() };
        connection.negotiate().await?;
        if let Some(sasl) = &security.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }

    async fn authenticate(&mut self, sasl: &SaslConfig) -> Result<(), ClientError> {
        let name = sasl.mechanism.name();
        // v1: the SASL exchange then travels in SaslAuthenticate requests (KIP-152).
        let version = self
            .version_of::<SaslHandshakeRequest>()
            .filter(|v| *v >= 1)
            .ok_or_else(|| ClientError::Unsupported { addr: self.addr.clone(), api: ApiKey::SaslHandshake })?;
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name));
        let response = self.call_at(&handshake, version).await?;
        if response.error_code != 0 {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(self.auth(format!("the broker does not enable {name} (it offers {offered:?})")));
        }
        let scram = |e: SaslError| e.to_string();
        match sasl.mechanism {
            Mechanism::Plain => {
                self.sasl_step(plain(&sasl.username, &sasl.password), sasl).await?;
            }
            Mechanism::ScramSha256 => {
                let mut exchange = ScramSha256::new(&sasl.username, sasl.password.clone(), &self.nonce()?);
                let first = self.sasl_step(exchange.client_first(), sasl).await?;
                let last = exchange.handle_server_first(&first).map_err(|e| self.auth(scram(e)))?;
                let done = self.sasl_step(last, sasl).await?;
                exchange.handle_server_final(&done).map_err(|e| self.auth(scram(e)))?;
            }
            Mechanism::ScramSha512 => {
                let mut exchange = ScramSha512::new(&sasl.username, sasl.password.clone(), &self.nonce()?);
                let first = self.sasl_step(exchange.client_first(), sasl).await?;
                let last = exchange.handle_server_first(&first).map_err(|e| self.auth(scram(e)))?;
                let done = self.sasl_step(last, sasl).await?;
                exchange.handle_server_final(&done).map_err(|e| self.auth(scram(e)))?;
            }
        }
        Ok(())
    }

    fn nonce(&self) -> Result<String, ClientError> {
        fresh_nonce().map_err(|e| self.auth(format!("no entropy for a nonce: {e}")))
    }

    /// One SaslAuthenticate round trip; the broker's error text is kept, with the password
    /// blanked out should a broker echo it back (PLAIN sends it in the clear).
    async fn sasl_step(&mut self, auth_bytes: Vec<u8>, sasl: &SaslConfig) -> Result<Bytes, ClientError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(auth_bytes));
        let (response, _) = self.call(&request).await?;
        if response.error_code != 0 {
            let text = response.error_message.as_ref().map_or("", |m| m.as_str());
            let password = sasl.password.expose();
            let text = if password.is_empty() { text.to_string() } else { text.replace(password, "***") };
            return Err(self.auth(format!("error code {}: {text}", response.error_code)));
        }
        Ok(response.auth_bytes)
    }

    fn auth(&self, message: String) -> ClientError {
        ClientError::Auth { addr: self.addr.clone(), message }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version this connection uses for `R`, if the broker supports one we speak.
    pub fn version_of<R: Request>(&self) -> Option<i16> {
        self.versions.get(&R::KEY).copied()
    }

    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_NAME))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.call_at(&request, 3).await?;
        if response.error_code != 0 {
            return Err(self.protocol(ApiKey::ApiVersions, format!("error code {}", response.error_code)));
        }
        for api in &response.api_keys {
            let theirs = VersionRange { min: api.min_version, max: api.max_version };
            if let Some(ours) = our_versions(api.api_key) {
                let common = theirs.intersect(&ours);
                if !common.is_empty() {
                    self.versions.insert(api.api_key, common.max);
                }
            }
        }
        Ok(())
    }

    /// Sends `request` at the negotiated version and returns the response.
    pub async fn call<R: Request>(&mut self, request: &R) -> Result<(R::Response, i16), ClientError>
    where
        R::Response: Decodable + HeaderVersion,
    {
        let api = api_key(R::KEY);
        let version =
            self.version_of::<R>().ok_or_else(|| ClientError::Unsupported { addr: self.addr.clone(), api })?;
        let response = self.call_at(request, version).await?;
        Ok((response, version))
    }

    async fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError>
    where
        R::Response: Decodable + HeaderVersion,
    {
        let api = api_key(R::KEY);
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(request, version)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout { addr: self.addr.clone(), api, timeout }),
        }
    }

    async fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError>
    where
        R::Response: Decodable + HeaderVersion,
    {
        let api = api_key(R::KEY);
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_NAME)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        encode_request_header_into_buffer(&mut frame, &header).map_err(|e| self.protocol(api, e.to_string()))?;
        request.encode(&mut frame, version).map_err(|e| self.protocol(api, e.to_string()))?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let io = |source| ClientError::Io { addr: self.addr.clone(), api, source };
        self.stream.write_all(&frame).await.map_err(io)?;
        let length =
            self.stream.read_i32().await.map_err(|source| ClientError::Io { addr: self.addr.clone(), api, source })?;
        if !(0..=FRAME_BYTES_MAX).contains(&length) {
            return Err(self.protocol(api, format!("response frame of {length} bytes")));
        }
        let mut body = vec![0u8; length as usize];
        self.stream.read_exact(&mut body).await.map_err(|source| ClientError::Io {
            addr: self.addr.clone(),
            api,
            source,
        })?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.protocol(api, e.to_string()))?;
        if header.correlation_id != correlation {
            return Err(
                self.protocol(api, format!("correlation id {} for request {correlation}", header.correlation_id))
            );
        }
        R::Response::decode(&mut body, version).map_err(|e| self.protocol(api, e.to_string()))
    }

    fn protocol(&self, api: ApiKey, message: String) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), api, message }
    }
}

fn api_key(key: i16) -> ApiKey {
    ApiKey::try_from(key).unwrap_or(ApiKey::ApiVersions)
}

/// The versions of each request this client can encode (not `ApiKey::valid_versions`,
/// which can exceed what the codec writes).
fn our_versions(key: i16) -> Option<VersionRange> {
    use kafka_protocol::messages::*;
    let key = ApiKey::try_from(key).ok()?;
    Some(match key {
        ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
        ApiKey::Metadata => MetadataRequest::VERSIONS,
        ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
        ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
        ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
        ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
        ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
        ApiKey::Produce => ProduceRequest::VERSIONS,
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
        ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
        ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
        _ => return None,
    })
}

impl Connection {
    /// Every API key the broker advertised with our common version (for diagnostics).
    pub fn negotiated(&self) -> impl Iterator<Item = (i16, i16)> + '_ {
        self.versions.iter().map(|(k, v)| (*k, *v))
    }
}
