//! `kafka-trial-exporter`: scrape Kafka clusters in the background and serve their
//! offsets, consumer-group offsets, lag and lag status on `/metrics`.
//! Exit codes: 2 bad usage or config (the message names file, line and key).

use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;
use trial_exporter::collect::Collector;
use trial_exporter::config::{ClusterConfig, Config, Filter, Granularity, LagFrom};
use trial_exporter::security::{RawSasl, Security};
use trial_exporter::server::{serve, Latest, Scrape};
use trial_exporter::snapshot::Snapshot;
use trial_exporter::tls::RawTls;

#[derive(Parser)]
#[command(
    name = "kafka-trial-exporter",
    version,
    about = "Prometheus exporter for Kafka offsets and consumer-group lag"
)]
struct Cli {
    /// Config file (TOML: several clusters, filters, labels); without it the flags below
    /// describe one cluster
    #[arg(long, env = "KAFKA_TRIAL_EXPORTER_CONFIG", conflicts_with = "bootstrap_servers")]
    config: Option<PathBuf>,
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT…]
    #[arg(long, env = "KAFKA_TRIAL_EXPORTER_BOOTSTRAP_SERVERS", value_delimiter = ',')]
    bootstrap_servers: Vec<String>,
    /// Address to serve /metrics on (overrides the config file's)
    #[arg(long, env = "KAFKA_TRIAL_EXPORTER_LISTEN")]
    listen: Option<String>,
    /// Value of the `cluster` label
    #[arg(long, default_value = "kafka")]
    cluster_name: String,
    /// Seconds between collections
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seconds each Kafka request may take
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs a user and a password
    /// source)
    #[arg(long, env = "KAFKA_TRIAL_EXPORTER_SASL_MECHANISM", requires = "sasl_username")]
    sasl_mechanism: Option<String>,
    /// SASL user name
    #[arg(long, env = "KAFKA_TRIAL_EXPORTER_SASL_USERNAME", requires = "sasl_mechanism")]
    sasl_username: Option<String>,
    /// Name of the environment variable that holds the SASL password
    #[arg(long)]
    sasl_password_env: Option<String>,
    /// File that holds the SASL password
    #[arg(long)]
    sasl_password_file: Option<String>,
    /// Connect with TLS (trusting the system's CAs unless --tls-ca-file is given)
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA certificates to trust
    #[arg(long, requires = "tls")]
    tls_ca_file: Option<String>,
    /// PEM client certificate chain for mTLS
    #[arg(long, requires = "tls", requires = "tls_key_file")]
    tls_cert_file: Option<String>,
    /// PEM private key of the client certificate
    #[arg(long, requires = "tls", requires = "tls_cert_file")]
    tls_key_file: Option<String>,
    /// Name to verify broker certificates against instead of each broker's host
    #[arg(long, requires = "tls")]
    tls_server_name: Option<String>,
    /// Accept any broker certificate (no chain or hostname check): for tests only
    #[arg(long, requires = "tls")]
    tls_insecure_skip_verify: bool,
}

fn config_from(cli: Cli) -> Result<Config, String> {
    if let Some(path) = &cli.config {
        let mut config = Config::load(path).map_err(|e| e.to_string())?;
        if let Some(listen) = cli.listen {
            config.listen = listen;
        }
        return Ok(config);
    }
    if cli.bootstrap_servers.is_empty() {
        return Err("give --bootstrap-servers HOST:PORT[,HOST:PORT] or --config FILE".into());
    }
    if cli.interval == 0 || cli.timeout == 0 {
        return Err("--interval and --timeout must be at least 1 second".into());
    }
    let sasl = match (cli.sasl_mechanism, cli.sasl_username) {
        (Some(mechanism), Some(username)) => {
            let raw = RawSasl {
                mechanism,
                username,
                password_env: cli.sasl_password_env,
                password_file: cli.sasl_password_file,
            };
            Some(raw.resolve().map_err(|m| format!("--sasl-*: {m}"))?)
        }
        _ => None,
    };
    let tls = match cli.tls {
        true => {
            let raw = RawTls {
                ca_file: cli.tls_ca_file,
                cert_file: cli.tls_cert_file,
                key_file: cli.tls_key_file,
                server_name: cli.tls_server_name,
                insecure_skip_verify: cli.tls_insecure_skip_verify,
            };
            Some(raw.resolve().map_err(|m| format!("--tls-*: {m}"))?)
        }
        false => None,
    };
    let cluster = ClusterConfig {
        security: Security { sasl, tls },
        name: cli.cluster_name,
        bootstrap_servers: cli.bootstrap_servers,
        granularity: Granularity::Partition,
        lag_from: LagFrom::HighWatermark,
        groups: Filter::default(),
        topics: Filter::default(),
    };
    Ok(Config {
        listen: cli.listen.unwrap_or_else(|| "127.0.0.1:9308".into()),
        interval: Duration::from_secs(cli.interval),
        timeout: Duration::from_secs(cli.timeout),
        labels: BTreeMap::new(),
        clusters: vec![cluster],
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let config = match config_from(cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("kafka-trial-exporter: {message}");
            return ExitCode::from(2);
        }
    };
    for cluster in &config.clusters {
        if cluster.security.tls.as_ref().is_some_and(|tls| tls.insecure_skip_verify) {
            eprintln!(
                "kafka-trial-exporter: WARNING: cluster `{}`: TLS certificate verification is off \
                 (insecure_skip_verify): any server can pose as its brokers",
                cluster.name
            );
        }
    }
    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("kafka-trial-exporter: cannot listen on {}: {error}", config.listen);
            return ExitCode::from(2);
        }
    };
    let latest: Latest = Arc::new(RwLock::new(None));
    let snapshots: Latests = Arc::new(RwLock::new(BTreeMap::new()));
    let labels = Arc::new(config.labels.clone());
    let clusters = config.clusters.len();
    for cluster in config.clusters {
        let collector = Collector::new(cluster, config.timeout);
        let shared = Shared { snapshots: snapshots.clone(), latest: latest.clone(), labels: labels.clone(), clusters };
        tokio::spawn(collect_forever(collector, config.interval, shared));
    }
    match serve(listener, latest).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-trial-exporter: {error}");
            ExitCode::from(1)
        }
    }
}

/// Per cluster: the latest snapshot, and whether the cluster ever answered.
type Latests = Arc<RwLock<BTreeMap<String, (Arc<Snapshot>, bool)>>>;

struct Shared {
    snapshots: Latests,
    latest: Latest,
    labels: Arc<BTreeMap<String, String>>,
    clusters: usize,
}

#[allow(clippy::disallowed_methods)] // the exporter measures real time; only the simulator may not
async fn collect_forever(mut collector: Collector, interval: Duration, shared: Shared) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = std::time::Instant::now();
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut snapshot = collector.collect_at(unix.as_millis() as u64).await;
        snapshot.collection_seconds = started.elapsed().as_secs_f64();
        snapshot.collected_at_unix_seconds = unix.as_secs_f64();
        let mut snapshots = shared.snapshots.write().await;
        // A snapshot with brokers came from an answered Metadata request.
        let answered = !snapshot.brokers.is_empty() || snapshots.get(&snapshot.cluster).is_some_and(|(_, a)| *a);
        snapshots.insert(snapshot.cluster.clone(), (Arc::new(snapshot), answered));
        // Served once every cluster was collected once; ready once every cluster answered.
        // Scrapes render from these snapshots; no page is kept between scrapes.
        if snapshots.len() == shared.clusters {
            let scrape = Scrape {
                snapshots: snapshots.values().map(|(s, _)| s.clone()).collect(),
                labels: shared.labels.clone(),
                ready: snapshots.values().all(|(_, answered)| *answered),
            };
            *shared.latest.write().await = Some(Arc::new(scrape));
        }
    }
}
