//! The `kafka-trial-exporter` binary as users run it: bad usage exits 2; against a real
//! broker it becomes ready and serves the metrics on /metrics.

use crate::broker::{admin, create_topic, produce, Broker};
use crate::http::get;
use std::process::{Command, Stdio};
use std::time::Duration;

// Shows bad usage is refused with exit code 2 and a message (issue 2, "Operation").
#[test]
fn bad_usage_exits_two() {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter")).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .args(["--bootstrap-servers", "127.0.0.1:1", "--interval", "0"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--interval"));
}

// Shows the binary collects in the background, answers /healthz at once, /readyz once the
// first collection is done, and serves the partition and exporter series on /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_from_a_real_broker() {
    let broker = Broker::start();
    let mut client = admin(&broker.addr).await;
    create_topic(&mut client, "events", 2).await;
    produce(&mut client, "events", 1, 7).await;
    let listen = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("bound").to_string()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .args(["--bootstrap-servers", &broker.addr, "--listen", &listen, "--cluster-name", "e2e", "--interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exporter starts");
    let mut ready = false;
    for _ in 0..100 {
        if get(&listen, "/readyz").is_some_and(|(status, _)| status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(&listen, "/metrics");
    let health = get(&listen, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "/readyz never became 200");
    assert_eq!(health.map(|(s, _)| s), Some(200));
    let (status, body) = metrics.expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(body.contains("kafka_exporter_up{cluster=\"e2e\"} 1"), "{body}");
    assert!(
        body.contains("kafka_partition_high_watermark{cluster=\"e2e\",partition=\"1\",topic=\"events\"} 7"),
        "{body}"
    );
    assert!(body.contains("kafka_topic_partitions{cluster=\"e2e\",topic=\"events\"} 2"), "{body}");
}

// Shows one exporter process scrapes two clusters from a config file (two brokers on two
// ports), labels each series with its cluster and the static labels, and filters groups
// (issue 2, "several clusters in one process", "allow/deny regexes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_two_clusters_from_a_config_file() {
    let (a, b) = (Broker::start(), Broker::start());
    for (broker, topic) in [(&a, "alpha"), (&b, "beta")] {
        let mut client = admin(&broker.addr).await;
        create_topic(&mut client, topic, 1).await;
        produce(&mut client, topic, 0, 3).await;
        crate::broker::commit(&mut client, "kept", topic, 0, 1).await;
        crate::broker::commit(&mut client, "dropped-by-deny", topic, 0, 1).await;
    }
    let listen = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("bound").to_string()
    };
    let text = format!(
        "listen = \"{listen}\"\ninterval_seconds = 1\n[labels]\nenv = \"test\"\n\
         [[clusters]]\nname = \"a\"\nbootstrap_servers = [\"{}\"]\ngroups_deny = [\"^dropped\"]\n\
         [[clusters]]\nname = \"b\"\nbootstrap_servers = [\"{}\"]\ngroups_deny = [\"^dropped\"]\n",
        a.addr, b.addr
    );
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("exporter-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("config written");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exporter starts");
    let mut page = None;
    for _ in 0..100 {
        if let Some((200, body)) = get(&listen, "/metrics") {
            page = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let page = page.expect("/metrics served");
    for cluster in ["a", "b"] {
        let up = page
            .lines()
            .find(|l| l.starts_with("kafka_exporter_up{") && l.contains(&format!("cluster=\"{cluster}\"")))
            .expect("up series");
        assert!(up.contains("env=\"test\"") && up.ends_with(" 1"), "{up}");
    }
    let lag_lines: Vec<&str> = page.lines().filter(|l| l.starts_with("kafka_consumergroup_partition_lag{")).collect();
    assert_eq!(lag_lines.len(), 2, "{lag_lines:?}");
    assert!(lag_lines.iter().all(|l| l.contains("group=\"kept\"") && l.ends_with(" 2")), "{lag_lines:?}");
}

// Shows a bad config file is refused with exit 2 and its line and key named.
#[test]
fn bad_config_exits_two_naming_the_line() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[[clusters]]\nname = \"a\"\nbootstrap_servers = [\"k:1\"]\ntopics_deny = [\"(\"]\n")
        .expect("written");
    let output =
        Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter")).arg("--config").arg(&path).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}:4:", path.display())) && stderr.contains("topics_deny"), "{stderr}");
}
