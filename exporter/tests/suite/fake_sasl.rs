//! The SASL server side of the fake cluster, written for the tests from RFC 4616 (PLAIN)
//! and RFC 5802 §3 (SCRAM) apart from the exporter's client code: noida-db has no SASL.
//! Answers as Kafka's `SaslServerAuthenticator` does: SaslHandshake names the enabled
//! mechanism, then SaslAuthenticate carries the exchange; a failure is error 58 with
//! Kafka's message text.

use crate::fake::encoded;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::Digest;
use hmac::{Mac, SimpleHmac};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SALT: &[u8] = b"fake-cluster-salt";
const ITERATIONS: u32 = 4096;

#[derive(Clone)]
pub struct Credentials {
    pub mechanism: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    /// A careless broker that quotes what it received in its error text (to show the
    /// client blanks the password out of errors).
    pub echo_on_failure: bool,
}

pub struct Session {
    credentials: Credentials,
    mechanism_ok: bool,
    /// After the client-first message: (client-first-bare, server-first).
    scram: Option<(String, String)>,
    done: bool,
}

fn hmac<D: Digest + BlockSizeUser + Clone>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// (StoredKey, ServerKey) of RFC 5802 §3 for `password`.
fn keys<D: Digest + BlockSizeUser + Clone + Sync>(password: &str) -> (Vec<u8>, Vec<u8>) {
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<SimpleHmac<D>>(password.as_bytes(), SALT, ITERATIONS, &mut salted).expect("any output length");
    let client_key = hmac::<D>(&salted, b"Client Key");
    (D::digest(&client_key).to_vec(), hmac::<D>(&salted, b"Server Key"))
}

/// Checks a client proof; on success returns the server signature.
fn verify<D: Digest + BlockSizeUser + Clone + Sync>(
    password: &str,
    auth_message: &str,
    proof: &[u8],
) -> Option<Vec<u8>> {
    let (stored_key, server_key) = keys::<D>(password);
    let client_signature = hmac::<D>(&stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
    (D::digest(&client_key).to_vec() == stored_key).then(|| hmac::<D>(&server_key, auth_message.as_bytes()))
}

impl Session {
    pub fn new(credentials: Credentials) -> Session {
        Session { credentials, mechanism_ok: false, scram: None, done: false }
    }

    pub fn authenticated(&self) -> bool {
        self.done
    }

    pub fn handle(&mut self, api: ApiKey, version: i16, body: &mut Bytes) -> Option<Bytes> {
        if api == ApiKey::SaslHandshake {
            let request = SaslHandshakeRequest::decode(body, version).ok()?;
            self.mechanism_ok = request.mechanism.as_str() == self.credentials.mechanism;
            let response = SaslHandshakeResponse::default()
                .with_error_code(if self.mechanism_ok { 0 } else { UNSUPPORTED_SASL_MECHANISM })
                .with_mechanisms(vec![StrBytes::from_static_str(self.credentials.mechanism)]);
            return encoded(response, version);
        }
        let request = SaslAuthenticateRequest::decode(body, version).ok()?;
        if !self.mechanism_ok {
            return None;
        }
        let received = String::from_utf8_lossy(&request.auth_bytes).to_string();
        let answer = match self.credentials.mechanism {
            "PLAIN" => self.plain(&received),
            _ => self.scram(&received),
        };
        let response = match answer {
            Some(bytes) => SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes)),
            None => {
                let mut text = format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                    self.credentials.mechanism
                );
                if self.credentials.echo_on_failure {
                    text.push_str(&format!(" (received {received:?})"));
                }
                SaslAuthenticateResponse::default()
                    .with_error_code(SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(text)))
            }
        };
        encoded(response, version)
    }

    fn plain(&mut self, received: &str) -> Option<Vec<u8>> {
        let expected = format!("\0{}\0{}", self.credentials.username, self.credentials.password);
        self.done = received == expected;
        self.done.then(Vec::new)
    }

    fn scram(&mut self, received: &str) -> Option<Vec<u8>> {
        let Some((client_first_bare, server_first)) = self.scram.take() else {
            let bare = received.strip_prefix("n,,")?;
            let user = bare.split(',').find_map(|f| f.strip_prefix("n="))?;
            let nonce = bare.split(',').find_map(|f| f.strip_prefix("r="))?;
            if user != self.credentials.username {
                return None;
            }
            let server_first = format!("r={nonce}fake-server-nonce,s={},i={ITERATIONS}", BASE64.encode(SALT));
            self.scram = Some((bare.to_string(), server_first.clone()));
            return Some(server_first.into_bytes());
        };
        let (without_proof, proof) = received.rsplit_once(",p=")?;
        let proof = BASE64.decode(proof).ok()?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let password = self.credentials.password;
        let signature = match self.credentials.mechanism {
            "SCRAM-SHA-256" => verify::<sha2::Sha256>(password, &auth_message, &proof),
            _ => verify::<sha2::Sha512>(password, &auth_message, &proof),
        }?;
        self.done = true;
        Some(format!("v={}", BASE64.encode(signature)).into_bytes())
    }
}
