//! A real Kafka-protocol broker for the tests: noida-db 0.2.3 from crates.io, installed
//! once into the target directory (`cargo install`, about a minute on 2 cores) and started
//! per test on a free loopback port; plus a small admin client (create topics, produce,
//! commit) built on `kafka-protocol` directly, apart from the exporter's own code paths.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use trial_exporter::client::Connection;

const NOIDA_VERSION: &str = "0.2.3";
static INSTALL: Mutex<()> = Mutex::new(());

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools")
}

/// Path of the noida-db binary, installed on first use.
fn noida_db() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let binary = tools_dir().join("bin").join("noida-db");
    if binary.exists() {
        return binary;
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "install",
            "noida-db",
            "--version",
            NOIDA_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "kafka",
            "--root",
        ])
        .arg(tools_dir())
        .stdout(Stdio::null())
        .status()
        .expect("cargo install runs");
    assert!(status.success(), "cargo install noida-db {NOIDA_VERSION} failed");
    binary
}

fn spawn(port: u16) -> (Child, PathBuf) {
    let binary = noida_db();
    static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("noida-{}-{port}-{start}", std::process::id()));
    std::fs::create_dir_all(&data).expect("data dir");
    let child = Command::new(binary)
        .args(["start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", &port.to_string(), "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("noida-db starts");
    (child, data)
}

pub fn free_port() -> u16 {
    // Binding port 0 asks the OS for a free loopback port; it is released for noida-db.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

pub struct Broker {
    child: Child,
    pub addr: String,
    _data: PathBuf,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    /// Starts noida-db on `port` (a port the test chose, e.g. one an exporter already
    /// points at).
    pub fn start_on(port: u16) -> Broker {
        let addr = format!("127.0.0.1:{port}");
        let (child, data) = spawn(port);
        // From here on Drop kills and waits for the process, whatever happens.
        let broker = Broker { child, addr, _data: data };
        broker.wait_listening();
        broker
    }

    /// Kills the process and starts a new one on the same port. noida-db keeps its Kafka
    /// data in memory, so the new process starts empty.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("addr ends in a port");
        let (child, data) = spawn(port);
        self.child = child;
        self._data = data;
        self.wait_listening();
    }

    fn wait_listening(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("noida-db did not listen on {} within 10 s", self.addr);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn admin(addr: &str) -> Connection {
    Connection::connect(addr, Duration::from_secs(5)).await.expect("connect to the test broker")
}

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

/// Creates a topic; retention is switched off so records are never deleted under the test.
pub async fn create_topic(connection: &mut Connection, topic: &str, partitions: i32) {
    let config = kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
        .with_name(StrBytes::from_static_str("retention.ms"))
        .with_value(Some(StrBytes::from_static_str("-1")));
    let creatable = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(vec![config]);
    let request = CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(5_000);
    let (response, _) = connection.call(&request).await.expect("CreateTopics");
    for result in &response.topics {
        assert_eq!(result.error_code, 0, "CreateTopics {topic}: error {}", result.error_code);
    }
}

/// Produces `count` records to one partition with acks=all, all stamped with the current
/// time, which it returns (ms).
pub async fn produce(connection: &mut Connection, topic: &str, partition: i32, count: i64) -> i64 {
    #[allow(clippy::disallowed_methods)] // test records need current timestamps (retention)
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // The encoder batches records whose offset − sequence is constant; the base
            // sequence stays -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(format!("record {i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode records");
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(batch.freeze()));
    let topic_data = TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![data]);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![topic_data]);
    let (response, _) = connection.call(&request).await.expect("Produce");
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            assert_eq!(partition.error_code, 0, "Produce error {}", partition.error_code);
        }
    }
    now
}

/// Commits `offset` for `group` on one partition, as a consumer outside any generation.
pub async fn commit(connection: &mut Connection, group: &str, topic: &str, partition: i32, offset: i64) {
    let partition =
        OffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(offset);
    send_commit(connection, group, topic, vec![partition]).await;
}

/// Commits `offset` for `group` on partitions 0..`partitions` of `topic` in one request.
pub async fn commit_all(connection: &mut Connection, group: &str, topic: &str, partitions: i32, offset: i64) {
    let partitions = (0..partitions)
        .map(|p| OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(offset))
        .collect();
    send_commit(connection, group, topic, partitions).await;
}

async fn send_commit(
    connection: &mut Connection,
    group: &str,
    topic: &str,
    partitions: Vec<OffsetCommitRequestPartition>,
) {
    let topic = OffsetCommitRequestTopic::default().with_name(name(topic)).with_partitions(partitions);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![topic]);
    let (response, _) = connection.call(&request).await.expect("OffsetCommit");
    for topic in &response.topics {
        for partition in &topic.partitions {
            assert_eq!(partition.error_code, 0, "OffsetCommit error {}", partition.error_code);
        }
    }
}
