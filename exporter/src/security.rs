//! How the exporter authenticates to a cluster: SASL (PLAIN, SCRAM-SHA-256/512) and, in
//! [`crate::tls`], TLS. Secrets come from an environment variable or a file, read once at start-up
//! into [`Secret`]s; config errors name the variable or file, never their content.

use crate::sasl::{Mechanism, SaslConfig, Secret};
use serde::Deserialize;

/// Everything a connection needs beyond an address.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub sasl: Option<SaslConfig>,
    pub tls: Option<crate::tls::TlsClient>,
}

/// `[clusters.sasl]` in the config file; the flags `--sasl-*` say the same.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    pub mechanism: String,
    pub username: String,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Path of a file holding the password (one trailing newline is dropped).
    pub password_file: Option<String>,
}

/// Reads a secret from exactly one of an environment variable or a file.
pub fn read_secret(env: Option<&str>, file: Option<&str>, what: &str) -> Result<Secret, String> {
    match (env, file) {
        (Some(var), None) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("{what}: environment variable `{var}` is not set or not UTF-8")),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Secret::new(text.strip_suffix('\n').unwrap_or(&text).to_string()))
            .map_err(|e| format!("{what}: cannot read `{path}`: {}", e.kind())),
        (Some(_), Some(_)) => Err(format!("{what}: give an environment variable or a file, not both")),
        (None, None) => {
            Err(format!("{what}: give an environment variable (`password_env`) or a file (`password_file`)"))
        }
    }
}

impl RawSasl {
    pub fn resolve(&self) -> Result<SaslConfig, String> {
        let mechanism = Mechanism::parse(&self.mechanism)
            .ok_or_else(|| format!("mechanism `{}`: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", self.mechanism))?;
        if self.username.is_empty() {
            return Err("username is empty".into());
        }
        let password = read_secret(self.password_env.as_deref(), self.password_file.as_deref(), "password")?;
        Ok(SaslConfig { mechanism, username: self.username.clone(), password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shows a password is read from a file (trailing newline dropped) or an environment
    // variable, and that failures name the source but never the content (issue 2: secrets
    // from env vars or files, never in errors).
    #[test]
    fn secrets_from_env_or_file() {
        let path = std::env::temp_dir().join(format!("exporter-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret-from-file\n").expect("temp file written");
        let file = path.to_string_lossy().to_string();
        let raw = RawSasl {
            mechanism: "scram-sha-512".into(),
            username: "u".into(),
            password_file: Some(file.clone()),
            ..RawSasl::default()
        };
        let sasl = raw.resolve().expect("valid");
        assert_eq!((sasl.mechanism, sasl.password.expose()), (Mechanism::ScramSha512, "s3cret-from-file"));
        // PATH is set in every test environment; its value stands in for a secret.
        let raw = RawSasl {
            mechanism: "PLAIN".into(),
            username: "u".into(),
            password_env: Some("PATH".into()),
            ..RawSasl::default()
        };
        assert_eq!(raw.resolve().expect("PATH is set").password.expose(), std::env::var("PATH").expect("PATH is set"));
        let both = RawSasl { password_file: Some(file), ..raw.clone() };
        let error = both.resolve().expect_err("both sources");
        assert!(!error.contains("s3cret") && error.contains("not both"), "{error}");
        let unset = RawSasl { password_env: Some("KAFKA_TRIAL_SURELY_UNSET".into()), ..RawSasl::default() };
        let unset = RawSasl { mechanism: "PLAIN".into(), username: "u".into(), ..unset };
        assert!(unset.resolve().expect_err("unset").contains("KAFKA_TRIAL_SURELY_UNSET"));
        let _ = std::fs::remove_file(path);
    }
}
