//! Validated configuration of the model's actors. Defaults are Kafka's (4.0) unless noted.

use serde::{Deserialize, Serialize};

/// How a follower finds where its log diverges from a new leader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Truncation {
    /// KIP-101/KIP-279/KIP-320: the follower sends its last fetched epoch and truncates to
    /// the leader's end offset for that epoch.
    #[default]
    LeaderEpoch,
    /// Before Kafka 0.11: a follower truncates to its own high watermark when it becomes a
    /// follower, and to the leader's log end offset on OFFSET_OUT_OF_RANGE.
    HighWatermark,
}

/// How the controller treats a restarted broker that registers again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
    /// KRaft: a new incarnation is refused (DUPLICATE_BROKER_REGISTRATION) while the old
    /// one's session is valid, so a restarted broker is fenced — and leaves every ISR —
    /// before it comes back.
    #[default]
    Kraft,
    /// ZooKeeper era: a broker that restarts within its session is accepted at once and
    /// keeps its ISR memberships (the setting of the KIP-101 reports).
    Zookeeper,
}

/// Historical protocol behaviour, selectable so that known anomalies can be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Protocol {
    pub truncation: Truncation,
    /// KIP-966 Eligible Leader Replicas; off by default as in Kafka 3.x.
    pub eligible_leader_replicas: bool,
    pub registration: Registration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfig {
    pub replica_lag_time_max_ms: u64,
    /// How long a leader holds a follower's fetch that found no new data.
    pub replica_fetch_wait_max_ms: u64,
    /// How long a follower waits for a fetch response before it gives up on it
    /// (`replica.socket.timeout.ms`).
    pub replica_socket_timeout_ms: u64,
    pub replica_fetch_backoff_ms: u64,
    /// Most records one fetch response carries per partition (stands in for `replica.fetch.max.bytes`).
    pub replica_fetch_max_records: usize,
    pub broker_heartbeat_interval_ms: u64,
    /// How long a broker in controlled shutdown waits for the controller's grant before
    /// it stops anyway (the `shutdown` timeout of Kafka's `BrokerServer`, 5 minutes).
    #[serde(default = "default_controlled_shutdown_timeout_ms")]
    pub controlled_shutdown_timeout_ms: u64,
    /// `log.flush.interval.messages`; `None` leaves flushing to the OS (Kafka's default).
    pub flush_messages: Option<u64>,
    /// `log.flush.interval.ms`; `None` leaves flushing to the OS (Kafka's default).
    pub flush_ms: Option<u64>,
    /// `replica.high.watermark.checkpoint.interval.ms`: the HW file is written (and synced)
    /// this often; a restarted broker starts from the last checkpoint.
    pub hw_checkpoint_interval_ms: u64,
    /// The OS writes a file's dirty pages back once the file has been dirty this long
    /// (Linux `vm.dirty_expire_centisecs`, 30 s). `None`: never (only Kafka's own
    /// flushes make data durable).
    pub os_dirty_expire_ms: Option<u64>,
    /// How often the OS's flusher looks for such files (Linux
    /// `vm.dirty_writeback_centisecs`, 5 s).
    pub os_writeback_interval_ms: u64,
    pub protocol: Protocol,
    /// Group coordination, when the cluster has an offsets topic.
    pub groups: Option<GroupsConfig>,
    /// Transaction coordination, when the cluster has a transaction state topic.
    #[serde(default)]
    pub txn: Option<TxnConfig>,
}

/// The broker side of transactions: which topic is `__transaction_state`, and the
/// transaction coordinator's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnConfig {
    pub state_topic: crate::types::TopicId,
    /// The coordinator's settings, `transaction.state.log.num.partitions` among them.
    pub coordinator: crate::txn::TxnCoordinatorConfig,
    /// How long a state record or a marker may take to replicate before it fails
    /// (`transaction.state.log` appends and WriteTxnMarkers wait for acks=all).
    pub append_timeout_ms: u64,
    /// How long the coordinator waits before sending a marker again.
    pub marker_retry_ms: u64,
    /// `transaction.partition.verification.enable` (KIP-890 part 1, on since Kafka 3.6):
    /// a leader asks the coordinator whether a transactional batch's partition is in
    /// the producer's ongoing transaction before it takes the producer's first batch of a
    /// transaction there.
    #[serde(default)]
    pub partition_verification: bool,
}

/// The broker side of consumer groups: which topic is `__consumer_offsets`, and the
/// coordinator's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsConfig {
    pub offsets_topic: crate::types::TopicId,
    /// `offsets.topic.num.partitions` (50 in Kafka).
    pub offsets_partitions: u32,
    /// `offsets.commit.timeout.ms`: a commit not replicated this long fails.
    pub commit_timeout_ms: u64,
    pub coordinator: crate::group::coordinator::CoordinatorConfig,
}

fn default_controlled_shutdown_timeout_ms() -> u64 {
    300_000
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_socket_timeout_ms: 30_000,
            replica_fetch_backoff_ms: 1_000,
            replica_fetch_max_records: 4_096,
            broker_heartbeat_interval_ms: 2_000,
            controlled_shutdown_timeout_ms: default_controlled_shutdown_timeout_ms(),
            flush_messages: None,
            flush_ms: None,
            hw_checkpoint_interval_ms: 5_000,
            os_dirty_expire_ms: Some(30_000),
            os_writeback_interval_ms: 5_000,
            protocol: Protocol::default(),
            groups: None,
            txn: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker without heartbeat this long is fenced.
    pub broker_session_timeout_ms: u64,
    pub protocol: Protocol,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig { broker_session_timeout_ms: 9_000, protocol: Protocol::default() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    pub unclean_leader_election: bool,
    /// Explicit replicas per partition (`--replica-assignment`); `None` uses Kafka's
    /// placement.
    pub replica_assignment: Option<Vec<Vec<crate::types::NodeId>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn name(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Partitioner for records without a key (keyed records always use murmur2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NullKeyPartitioner {
    /// KIP-480/KIP-794: stick to one partition until its batch is sent.
    #[default]
    Sticky,
    RoundRobin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub request_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
    pub max_in_flight_requests_per_connection: u32,
    pub linger_ms: u64,
    pub batch_size: u64,
    /// Bytes one record adds to a batch (key + value + overhead), for `batch.size`.
    pub record_bytes: u64,
    pub metadata_max_age_ms: u64,
    pub reconnect_backoff_ms: u64,
    pub null_key_partitioner: NullKeyPartitioner,
    /// Bound on records waiting in the accumulator (stands in for `buffer.memory`);
    /// a send beyond it fails at once, as `max.block.ms` expiring would.
    pub buffer_records_max: usize,
    /// `enable.idempotence` (true by default since Kafka 3.0). Kafka requires acks=all,
    /// retries > 0 and at most 5 requests in flight with it; `idempotence_conflict` says
    /// which of these a configuration breaks.
    pub enable_idempotence: bool,
}

impl ProducerConfig {
    /// Why Kafka's producer refuses this configuration with idempotence on
    /// (`ProducerConfig.postProcessAndValidateIdempotenceConfigs`), if it does.
    pub fn idempotence_conflict(&self) -> Option<&'static str> {
        if !self.enable_idempotence {
            None
        } else if self.acks != Acks::All {
            Some("enable_idempotence needs acks = \"all\"")
        } else if self.retries == 0 {
            Some("enable_idempotence needs retries > 0")
        } else if self.max_in_flight_requests_per_connection > 5 {
            Some("enable_idempotence needs max_in_flight <= 5")
        } else {
            None
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            retries: i32::MAX as u32,
            retry_backoff_ms: 100,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            max_in_flight_requests_per_connection: 5,
            linger_ms: 5,
            batch_size: 16_384,
            record_bytes: 100,
            metadata_max_age_ms: 300_000,
            reconnect_backoff_ms: 50,
            null_key_partitioner: NullKeyPartitioner::Sticky,
            buffer_records_max: 100_000,
            enable_idempotence: true,
        }
    }
}
