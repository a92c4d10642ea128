//! The Prometheus side with real parts: `promtool` checks the rendered metrics and the
//! shipped alert rules, and a real Prometheus server (Debian's `prometheus` package,
//! installed by the tests if missing) scrapes the exporter; the test reads the lag back
//! through Prometheus's HTTP API (issue 2, "Tests against real parts").

use crate::broker::{admin, commit, create_topic, produce, Broker};
use crate::debian::ensure_package;
use crate::http::get_ok;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Makes sure `prometheus` and `promtool` are on the PATH, installing Debian's package.
fn ensure_prometheus() {
    ensure_package("prometheus", &["promtool", "prometheus"], "--version");
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("bound").to_string()
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exporter(bootstrap: &str, listen: &str) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .args(["--bootstrap-servers", bootstrap, "--listen", listen, "--cluster-name", "prom", "--interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exporter starts");
    Killed(child)
}

/// A broker whose `topic` has `produced` records on partition 0 and a group that committed
/// `committed` there, and an exporter scraping it every second on the returned address.
async fn lagging(topic: &str, partitions: i32, produced: i64, group: &str, committed: i64) -> (Broker, Killed, String) {
    let broker = Broker::start();
    let mut client = admin(&broker.addr).await;
    create_topic(&mut client, topic, partitions).await;
    produce(&mut client, topic, 0, produced).await;
    commit(&mut client, group, topic, 0, committed).await;
    let listen = free_addr();
    let exporter = exporter(&broker.addr, &listen);
    (broker, exporter, listen)
}

async fn page(listen: &str) -> String {
    for _ in 0..100 {
        if let Some(body) = get_ok(listen, "/metrics") {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no /metrics page from the exporter");
}

// Shows the rendered page (from a real broker, with a group and lag) and the shipped alert
// rules pass promtool's checks (issue 2: "pass `promtool check metrics`", "alerting rules
// that pass `promtool check rules`").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics_and_rules() {
    ensure_prometheus();
    let (_broker, _exporter, listen) = lagging("audit", 2, 4, "auditor", 1).await;
    let body = page(&listen).await;
    assert!(body.contains("kafka_consumergroup_partition_lag"), "{body}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("page written");
    let output = check.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alerts.yml");
    let output = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().expect("promtool runs");
    assert!(output.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&output.stdout));
}

// Shows a real Prometheus server scrapes the exporter and answers a query for the lag
// series with the value the test produced and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_lag() {
    ensure_prometheus();
    let (_broker, _exporter, listen) = lagging("ledger", 1, 12, "reconciler", 5).await;
    page(&listen).await;
    let web = free_addr();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kafka\n    static_configs:\n      - targets: ['{listen}']\n"),
    )
    .expect("config written");
    let server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let _server = Killed(server);
    let query = "/api/v1/query?query=kafka_consumergroup_partition_lag%7Bgroup%3D%22reconciler%22%7D";
    let mut answer = String::new();
    for _ in 0..300 {
        if let Some(body) = get_ok(&web, query) {
            if body.contains("\"reconciler\"") {
                answer = body;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer.contains("\"topic\":\"ledger\""), "Prometheus never returned the series: {answer}");
    assert!(answer.contains(",\"7\"]"), "lag should be 12 − 5 = 7: {answer}");
}
