//! `kafka-trial-exporter`: scrape one Kafka cluster in the background and serve its
//! offsets, consumer-group offsets and lag on `/metrics`. Exit 2 on bad usage.

use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;
use trial_exporter::collect::Collector;
use trial_exporter::render::render;
use trial_exporter::server::{serve, Latest};

#[derive(Parser)]
#[command(
    name = "kafka-trial-exporter",
    version,
    about = "Prometheus exporter for Kafka offsets and consumer-group lag"
)]
struct Cli {
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT…]
    #[arg(long, value_delimiter = ',', required = true)]
    bootstrap_servers: Vec<String>,
    /// Address to serve /metrics on
    #[arg(long, default_value = "127.0.0.1:9308")]
    listen: String,
    /// Value of the `cluster` label
    #[arg(long, default_value = "kafka")]
    cluster_name: String,
    /// Seconds between collections
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seconds each Kafka request may take
    #[arg(long, default_value_t = 5)]
    timeout: u64,
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
    if cli.interval == 0 || cli.timeout == 0 {
        eprintln!("kafka-trial-exporter: --interval and --timeout must be at least 1 second");
        return ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("kafka-trial-exporter: cannot listen on {}: {error}", cli.listen);
            return ExitCode::from(2);
        }
    };
    let latest: Latest = Arc::new(RwLock::new(None));
    let collector = Collector::new(cli.cluster_name, cli.bootstrap_servers, Duration::from_secs(cli.timeout));
    tokio::spawn(collect_forever(collector, Duration::from_secs(cli.interval), latest.clone()));
    match serve(listener, latest).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-trial-exporter: {error}");
            ExitCode::from(1)
        }
    }
}

#[allow(clippy::disallowed_methods)] // the exporter measures real time; only the simulator may not
async fn collect_forever(mut collector: Collector, interval: Duration, latest: Latest) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = std::time::Instant::now();
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut snapshot = collector.collect_at(unix.as_millis() as u64).await;
        snapshot.collection_seconds = started.elapsed().as_secs_f64();
        snapshot.collected_at_unix_seconds = unix.as_secs_f64();
        *latest.write().await = Some(render(&[snapshot]));
    }
}
