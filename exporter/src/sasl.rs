//! SASL client messages, sans-IO: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
//! RFC 7677; Kafka's KIP-84). The connection carries them in SaslAuthenticate requests
//! after a SaslHandshake v1 (KIP-152). Entropy (the client nonce) comes in from outside.
//!
//! Secrets: the password lives in a [`Secret`], whose `Debug` prints no content and which
//! has no `Display`; no error here quotes a password or a proof.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::Digest;
use hmac::{Mac, SimpleHmac};
use std::fmt;

/// A secret (password, key): readable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// The name SaslHandshake carries.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the server's SCRAM message is malformed ({0})")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    Nonce,
    #[error("the server's signature is wrong: it does not know the password")]
    ServerSignature,
}

/// PLAIN's single message: authorization id (empty), user, password, NUL-separated.
pub fn plain(username: &str, password: &Secret) -> Vec<u8> {
    let mut message = Vec::with_capacity(username.len() + password.expose().len() + 2);
    message.push(0);
    message.extend_from_slice(username.as_bytes());
    message.push(0);
    message.extend_from_slice(password.expose().as_bytes());
    message
}

/// One SCRAM exchange (RFC 5802 §5): `client_first`, then `handle_server_first` gives the
/// client-final message, then `handle_server_final` checks the server knew the password.
pub struct Scram<D> {
    password: Secret,
    client_first_bare: String,
    nonce: String,
    /// HMAC(SaltedPassword, "Server Key") and the AuthMessage, once the server spoke.
    expected_server_signature: Option<Vec<u8>>,
    _digest: std::marker::PhantomData<D>,
}

pub type ScramSha256 = Scram<sha2::Sha256>;
pub type ScramSha512 = Scram<sha2::Sha512>;

/// `=` and `,` are escaped in SCRAM user names (RFC 5802 §5.1, "saslname").
fn saslname(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

fn hmac<D: Digest + BlockSizeUser + Clone>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // SimpleHmac takes keys of any length.
    let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl<D: Digest + BlockSizeUser + Clone + Sync> Scram<D> {
    /// `nonce`: printable ASCII without commas, fresh per exchange (see [`fresh_nonce`]).
    pub fn new(username: &str, password: Secret, nonce: &str) -> Scram<D> {
        Scram {
            password,
            client_first_bare: format!("n={},r={nonce}", saslname(username)),
            nonce: nonce.to_string(),
            expected_server_signature: None,
            _digest: std::marker::PhantomData,
        }
    }

    /// No channel binding ("n,,"), no authorization id.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let field = |key: &str| text.split(',').find_map(|part| part.strip_prefix(key));
        let nonce = field("r=").ok_or(SaslError::Malformed("no nonce"))?;
        let salt = field("s=").ok_or(SaslError::Malformed("no salt"))?;
        let salt = BASE64.decode(salt).map_err(|_| SaslError::Malformed("salt is not base64"))?;
        let iterations: u32 =
            field("i=").and_then(|i| i.parse().ok()).ok_or(SaslError::Malformed("no iteration count"))?;
        // Kafka's minimum is 4096 (ScramMechanism); below 1 there is no key.
        if iterations == 0 {
            return Err(SaslError::Malformed("iteration count 0"));
        }
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(SaslError::Nonce);
        }
        let mut salted = vec![0u8; <D as Digest>::output_size()];
        pbkdf2::pbkdf2::<SimpleHmac<D>>(self.password.expose().as_bytes(), &salt, iterations, &mut salted)
            .map_err(|_| SaslError::Malformed("key derivation"))?;
        let client_key = hmac::<D>(&salted, b"Client Key");
        let stored_key = D::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = hmac::<D>(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::<D>(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac::<D>(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    pub fn handle_server_final(&self, message: &[u8]) -> Result<(), SaslError> {
        let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let signature = text.split(',').find_map(|part| part.strip_prefix("v=")).ok_or(SaslError::ServerSignature)?;
        let signature = BASE64.decode(signature).map_err(|_| SaslError::Malformed("signature is not base64"))?;
        match &self.expected_server_signature {
            Some(expected) if *expected == signature => Ok(()),
            _ => Err(SaslError::ServerSignature),
        }
    }
}

/// A client nonce: 24 random bytes from the OS, base64 (no commas in base64).
pub fn fresh_nonce() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(BASE64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange<D: Digest + BlockSizeUser + Clone + Sync>(
        nonce: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        let mut scram = Scram::<D>::new("user", Secret::new("pencil".into()), nonce);
        assert_eq!(scram.client_first(), format!("n,,n=user,r={nonce}").into_bytes());
        let answer = scram.handle_server_first(server_first.as_bytes()).expect("a valid server-first message");
        assert_eq!(String::from_utf8_lossy(&answer), client_final);
        assert_eq!(scram.handle_server_final(server_final.as_bytes()), Ok(()));
        assert_eq!(scram.handle_server_final(b"v=AAAA"), Err(SaslError::ServerSignature));
    }

    // Shows the SCRAM client reproduces RFC 5802 §5's example exchange (SCRAM-SHA-1,
    // user "user", password "pencil"): same client-final proof, accepts the server's
    // signature and refuses another. Proves the generic SCRAM code; Kafka uses it with
    // SHA-256 and SHA-512.
    #[test]
    fn rfc_5802_example() {
        exchange::<sha1::Sha1>(
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    // Shows the SCRAM-SHA-256 client reproduces RFC 7677 §3's example exchange.
    #[test]
    fn rfc_7677_example() {
        exchange::<sha2::Sha256>(
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    // Shows a server nonce that does not extend the client's is refused (RFC 5802 §5.1:
    // the server appends to the client nonce), user names are escaped ("saslname"), and
    // PLAIN is "\0user\0password" (RFC 4616 §2).
    #[test]
    fn nonce_check_escaping_and_plain() {
        let mut scram = ScramSha256::new("a=b,c", Secret::new("p".into()), "abc");
        assert_eq!(scram.client_first(), b"n,,n=a=3Db=2Cc,r=abc".to_vec());
        assert_eq!(scram.handle_server_first(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"), Err(SaslError::Nonce));
        assert_eq!(scram.handle_server_first(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096"), Err(SaslError::Nonce));
        assert_eq!(plain("u", &Secret::new("pw".into())), b"\0u\0pw".to_vec());
    }

    // Shows a secret never shows in Debug output (issue 2: secrets never in logs/errors).
    #[test]
    fn secrets_do_not_print() {
        let config = SaslConfig {
            mechanism: Mechanism::ScramSha512,
            username: "u".into(),
            password: Secret::new("hunter2-do-not-print".into()),
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
