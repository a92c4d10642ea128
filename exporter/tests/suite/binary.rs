//! The `kafka-trial-exporter` binary as users run it: bad usage exits 2; against a real
//! broker it becomes ready and serves the metrics on /metrics.

use crate::broker::{admin, create_topic, produce, Broker};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

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
