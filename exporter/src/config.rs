//! Configuration: a TOML file (several clusters, filters, granularity, static labels) or,
//! without one, the command-line flags for one cluster. Parsed at the edge into validated
//! types; errors name the file, line and key.

use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) if !self.key.is_empty() => write!(f, "{}:{line}: `{}`: {}", self.file, self.key, self.message),
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Series per partition, or only the per-topic roll-ups (to cut the series count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    #[default]
    Partition,
    Topic,
}

/// Where lag is measured to: the high watermark, or the last stable offset (what a
/// read_committed consumer can reach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LagFrom {
    #[default]
    HighWatermark,
    LastStableOffset,
}

/// Allow and deny regexes: a name passes when it matches some allow (or none is given)
/// and no deny.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub allow: Vec<Regex>,
    pub deny: Vec<Regex>,
}

impl Filter {
    pub fn passes(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(name)))
            && !self.deny.iter().any(|r| r.is_match(name))
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub bootstrap_servers: Vec<String>,
    pub granularity: Granularity,
    pub lag_from: LagFrom,
    pub groups: Filter,
    pub topics: Filter,
    pub security: crate::security::Security,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Static labels added to every series.
    pub labels: BTreeMap<String, String>,
    pub clusters: Vec<ClusterConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    interval_seconds: Option<Spanned<u64>>,
    timeout_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    clusters: Spanned<Vec<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Spanned<String>,
    bootstrap_servers: Spanned<Vec<String>>,
    #[serde(default)]
    granularity: Granularity,
    #[serde(default)]
    lag_from: LagFrom,
    #[serde(default)]
    groups_allow: Vec<Spanned<String>>,
    #[serde(default)]
    groups_deny: Vec<Spanned<String>>,
    #[serde(default)]
    topics_allow: Vec<Spanned<String>>,
    #[serde(default)]
    topics_deny: Vec<Spanned<String>>,
    sasl: Option<Spanned<crate::security::RawSasl>>,
    tls: Option<Spanned<crate::tls::RawTls>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let error = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError {
            file: file.into(),
            line: Some(line_of(text, span.start)),
            key: key.into(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.into(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: String::new(),
            message: e.message().trim().to_string(),
        })?;
        let seconds = |value: &Option<Spanned<u64>>, key: &str, default: u64| match value {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > 3_600 => {
                Err(error(v.span(), key, "must be between 1 and 3600".into()))
            }
            Some(v) => Ok(Duration::from_secs(*v.get_ref())),
            None => Ok(Duration::from_secs(default)),
        };
        let interval = seconds(&raw.interval_seconds, "interval_seconds", 10)?;
        let timeout = seconds(&raw.timeout_seconds, "timeout_seconds", 5)?;
        if raw.clusters.get_ref().is_empty() {
            return Err(error(raw.clusters.span(), "clusters", "needs at least one [[clusters]] table".into()));
        }
        let mut clusters: Vec<ClusterConfig> = Vec::new();
        for cluster in raw.clusters.into_inner() {
            let name = cluster.name.get_ref().clone();
            if name.is_empty() || clusters.iter().any(|c| c.name == name) {
                return Err(error(cluster.name.span(), "clusters.name", format!("`{name}` is empty or used twice")));
            }
            if cluster.bootstrap_servers.get_ref().is_empty()
                || cluster.bootstrap_servers.get_ref().iter().any(|s| !s.contains(':'))
            {
                let message = "needs HOST:PORT entries".to_string();
                return Err(error(cluster.bootstrap_servers.span(), "clusters.bootstrap_servers", message));
            }
            let regexes = |list: &[Spanned<String>], key: &str| -> Result<Vec<Regex>, ConfigError> {
                list.iter()
                    .map(|r| Regex::new(r.get_ref()).map_err(|e| error(r.span(), key, format!("not a regex: {e}"))))
                    .collect()
            };
            let sasl = match &cluster.sasl {
                Some(raw) => Some(raw.get_ref().resolve().map_err(|m| error(raw.span(), "clusters.sasl", m))?),
                None => None,
            };
            let tls = match &cluster.tls {
                Some(raw) => Some(raw.get_ref().resolve().map_err(|m| error(raw.span(), "clusters.tls", m))?),
                None => None,
            };
            clusters.push(ClusterConfig {
                security: crate::security::Security { sasl, tls },
                name,
                bootstrap_servers: cluster.bootstrap_servers.into_inner(),
                granularity: cluster.granularity,
                lag_from: cluster.lag_from,
                groups: Filter {
                    allow: regexes(&cluster.groups_allow, "groups_allow")?,
                    deny: regexes(&cluster.groups_deny, "groups_deny")?,
                },
                topics: Filter {
                    allow: regexes(&cluster.topics_allow, "topics_allow")?,
                    deny: regexes(&cluster.topics_deny, "topics_deny")?,
                },
            });
        }
        Ok(Config {
            listen: raw.listen.unwrap_or_else(|| "127.0.0.1:9308".into()),
            interval,
            timeout,
            labels: raw.labels,
            clusters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shows a full config parses into validated types (issue 2, "Operation": several
    // clusters, allow/deny regexes, granularity, static labels).
    #[test]
    fn parses_several_clusters_with_filters() {
        let text = r#"
listen = "0.0.0.0:9308"
interval_seconds = 15
[labels]
env = "prod"
[[clusters]]
name = "a"
bootstrap_servers = ["k1:9092", "k2:9092"]
granularity = "topic"
groups_deny = ["^console-consumer-"]
[[clusters]]
name = "b"
bootstrap_servers = ["k3:9092"]
lag_from = "last-stable-offset"
topics_allow = ["^orders"]
"#;
        let config = Config::parse(text, "exporter.toml").expect("valid");
        assert_eq!(config.clusters.len(), 2);
        assert_eq!(config.interval, Duration::from_secs(15));
        assert_eq!(config.labels["env"], "prod");
        assert_eq!(config.clusters[0].granularity, Granularity::Topic);
        assert!(!config.clusters[0].groups.passes("console-consumer-1"));
        assert!(config.clusters[0].groups.passes("billing"));
        assert!(config.clusters[1].topics.passes("orders-eu") && !config.clusters[1].topics.passes("payments"));
        assert_eq!(config.clusters[1].lag_from, LagFrom::LastStableOffset);
    }

    // Shows bad config is refused with the file, line and key named.
    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            ("[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\ncolour = 1\n", 4, ""),
            ("[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\ngroups_allow = [\"(\"]\n", 4, "groups_allow"),
            (
                "interval_seconds = 0\n[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\n",
                1,
                "interval_seconds",
            ),
            ("[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"nohost\"]\n", 3, "clusters.bootstrap_servers"),
        ];
        for (text, line, key) in cases {
            let error = Config::parse(text, "x.toml").expect_err(text);
            assert_eq!(error.line, Some(line), "{error}");
            assert_eq!(error.key, key, "{error}");
            assert!(error.to_string().starts_with(&format!("x.toml:{line}:")), "{error}");
        }
    }

    // Shows a cluster's `[clusters.sasl]` table is read at load time, and a password
    // source that does not exist is refused naming the line, the key and the variable
    // (issue 2: secrets from environment variables or files; bad config names the key).
    #[test]
    fn sasl_table_and_missing_secret() {
        let text = "[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\n[clusters.sasl]\n\
                    mechanism = \"SCRAM-SHA-256\"\nusername = \"u\"\npassword_env = \"KAFKA_TRIAL_SURELY_UNSET\"\n";
        let error = Config::parse(text, "x.toml").expect_err("the variable is unset");
        assert_eq!((error.line, error.key.as_str()), (Some(4), "clusters.sasl"), "{error}");
        assert!(error.message.contains("KAFKA_TRIAL_SURELY_UNSET"), "{error}");
        let text = text.replace("KAFKA_TRIAL_SURELY_UNSET", "PATH");
        let config = Config::parse(&text, "x.toml").expect("PATH is set");
        let sasl = config.clusters[0].security.sasl.as_ref().expect("sasl configured");
        assert_eq!((sasl.mechanism, sasl.username.as_str()), (crate::sasl::Mechanism::ScramSha256, "u"));
    }

    // Shows `[clusters.tls]` is resolved at load time: a CA file that does not exist is
    // refused naming the line, key and path; `insecure_skip_verify` needs no files and is
    // kept so the binary can warn about it.
    #[test]
    fn tls_table() {
        let base = "[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\n[clusters.tls]\n";
        let error =
            Config::parse(&format!("{base}ca_file = \"/nonexistent/ca.pem\"\n"), "x.toml").expect_err("no file");
        assert_eq!((error.line, error.key.as_str()), (Some(4), "clusters.tls"), "{error}");
        assert!(error.message.contains("/nonexistent/ca.pem"), "{error}");
        let config = Config::parse(&format!("{base}insecure_skip_verify = true\n"), "x.toml").expect("valid");
        let tls = config.clusters[0].security.tls.as_ref().expect("tls configured");
        assert!(tls.insecure_skip_verify);
        let error = Config::parse(&format!("{base}cert_file = \"c.pem\"\n"), "x.toml").expect_err("no key");
        assert!(error.message.contains("go together"), "{error}");
    }
}
