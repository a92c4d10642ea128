//! An independent client: Debian's `kcat` (librdkafka), installed by the test set-up when
//! missing, produces the records and consumes as a real consumer group against noida-db;
//! the exporter's numbers are checked against kcat's own view (`kcat -Q` offsets,
//! `kcat -L -J` metadata, the records its group consumer printed).

use crate::broker::{admin, create_topic, Broker};
use crate::debian::ensure_package;
use crate::faults::collector;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use trial_exporter::render::render;

fn ensure_kcat() {
    ensure_package("kcat", &["kcat"], "-V");
}

fn kcat(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("timeout")
        .arg("30")
        .arg("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.unwrap_or("").as_bytes()).expect("kcat reads stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("kcat ends");
    assert!(output.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// kcat's answer to `-Q -t topic:partition:timestamp`: "topic [p] offset N".
fn kcat_offset(bootstrap: &str, topic: &str, partition: i32, timestamp: i64) -> i64 {
    let query = format!("{topic}:{partition}:{timestamp}");
    let text = kcat(&["-Q", "-b", bootstrap, "-t", &query], None);
    text.lines()
        .find_map(|l| l.split_once(" offset ").and_then(|(_, n)| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("kcat -Q said: {text}"))
}

// Shows the exporter agrees with librdkafka's view of a real broker: log end and start
// offsets equal `kcat -Q` (-1 latest, -2 earliest), brokers and partition counts equal
// `kcat -L -J`, and after kcat's consumer group read 7 of 12 records and left (committing
// on close), committed offset 7 and lag 5 (issue 2, "an independent client, e.g.
// Debian's kcat").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_agrees_with_kcat() {
    ensure_kcat();
    let broker = Broker::start();
    let b = broker.addr.as_str();
    let mut client = admin(b).await;
    create_topic(&mut client, "two", 2).await;
    create_topic(&mut client, "one", 1).await;
    let lines = |n: usize| (1..=n).map(|i| format!("record-{i}\n")).collect::<String>();
    kcat(&["-P", "-b", b, "-t", "two", "-p", "0"], Some(&lines(12)));
    kcat(&["-P", "-b", b, "-t", "two", "-p", "1"], Some(&lines(5)));
    kcat(&["-P", "-b", b, "-t", "one", "-p", "0"], Some(&lines(12)));
    let consumed = kcat(&["-b", b, "-G", "kcat-group", "-o", "beginning", "-c", "7", "one"], None);
    assert_eq!(consumed.lines().count(), 7, "kcat consumed: {consumed}");

    let snapshot = collector(b, Duration::from_secs(5)).collect().await;
    assert!(snapshot.up, "{:?}", snapshot.errors);
    for (topic, partition) in [("two", 0), ("two", 1), ("one", 0)] {
        let info = snapshot.partition(topic, partition).expect("partition listed");
        assert_eq!(info.high_watermark, Some(kcat_offset(b, topic, partition, -1)), "{topic}/{partition}");
        assert_eq!(info.low_watermark, Some(kcat_offset(b, topic, partition, -2)), "{topic}/{partition}");
    }
    let metadata: serde_json::Value =
        serde_json::from_str(&kcat(&["-L", "-J", "-b", b], None)).expect("kcat -L -J prints JSON");
    let ids: Vec<i64> =
        metadata["brokers"].as_array().expect("brokers").iter().filter_map(|x| x["id"].as_i64()).collect();
    assert_eq!(snapshot.brokers.iter().map(|x| i64::from(x.id)).collect::<Vec<_>>(), ids);
    for topic in metadata["topics"].as_array().expect("topics") {
        let name = topic["topic"].as_str().expect("a topic name");
        let count = topic["partitions"].as_array().expect("partitions").len();
        assert_eq!(snapshot.partitions.iter().filter(|p| p.topic == name).count(), count, "{name}");
    }
    let group = snapshot.groups.iter().find(|g| g.group == "kcat-group").expect("kcat's group listed");
    assert_eq!(group.protocol_type, "consumer");
    assert_eq!(
        group.offsets.iter().map(|o| (o.topic.as_str(), o.partition, o.committed)).collect::<Vec<_>>(),
        [("one", 0, 7)]
    );
    let page = render(&[snapshot], &Default::default());
    let series =
        "kafka_consumergroup_partition_lag{cluster=\"test\",group=\"kcat-group\",partition=\"0\",topic=\"one\"} 5\n";
    assert!(page.contains(series), "{page}");
}
