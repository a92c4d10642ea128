//! One collection of one cluster with the minimal request plan: Metadata; per partition
//! leader one ListOffsets each for the earliest, latest and last stable offsets, and the
//! newest record's time where the leader speaks ListOffsets v7+ (KIP-734);
//! ListGroups to every broker; one batched FindCoordinator; per coordinator one
//! DescribeGroups and one OffsetFetch for all its groups ([`groups`]). Requests do not grow
//! with the number of groups, except against brokers too old for the batched versions
//! (FindCoordinator < v4, OffsetFetch < v8), which get one request per group. A broker
//! that fails leaves its part of the snapshot empty and counts an error; the rest still
//! comes.

mod groups;

use crate::client::{ClientError, Connection};
use crate::config::ClusterConfig;
use crate::history::LagHistory;
use crate::snapshot::{BrokerInfo, PartitionInfo, Snapshot};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use std::collections::BTreeMap;
use std::time::Duration;

/// ListOffsets timestamps (Kafka's `ListOffsetsRequest`).
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// The offset and time of the record with the largest timestamp (KIP-734, v7+).
const MAX_TIMESTAMP: i64 = -3;
const MAX_TIMESTAMP_VERSION: i16 = 7;

pub struct Collector {
    pub config: ClusterConfig,
    pub timeout: Duration,
    connections: BTreeMap<i32, Connection>,
    history: LagHistory,
    requests_total: BTreeMap<(String, i32), u64>,
    errors_total: BTreeMap<(String, String), u64>,
    /// Per broker: failed connections in a row and when to try again.
    backoff: BTreeMap<i32, (u32, tokio::time::Instant)>,
}

/// Longest pause before reconnecting to a broker that failed.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Collector {
    pub fn new(config: ClusterConfig, timeout: Duration) -> Collector {
        Collector {
            config,
            timeout,
            connections: BTreeMap::new(),
            history: LagHistory::default(),
            requests_total: BTreeMap::new(),
            errors_total: BTreeMap::new(),
            backoff: BTreeMap::new(),
        }
    }

    /// Collects once; `now_ms` (wall clock, from the caller) dates the offsets for lag in
    /// seconds.
    pub async fn collect_at(&mut self, now_ms: u64) -> Snapshot {
        let mut snapshot = self.collect().await;
        self.history.annotate(&mut snapshot, trial_model::Millis(now_ms));
        snapshot
    }

    /// One collection whose request and error counts are added to the running totals.
    pub async fn collect(&mut self) -> Snapshot {
        let mut snapshot = self.collect_once().await;
        snapshot.accumulate(&mut self.requests_total, &mut self.errors_total);
        snapshot
    }

    async fn collect_once(&mut self) -> Snapshot {
        let mut snapshot = Snapshot {
            cluster: self.config.name.clone(),
            granularity: self.config.granularity,
            lag_from: self.config.lag_from,
            up: true,
            ..Snapshot::default()
        };
        let Some(metadata) = self.metadata(&mut snapshot).await else {
            snapshot.up = false;
            return snapshot;
        };
        snapshot.cluster_id = metadata.cluster_id.as_ref().map(|id| id.to_string());
        snapshot.controller_id = *metadata.controller_id;
        let mut addresses = BTreeMap::new();
        for broker in &metadata.brokers {
            let id = *broker.node_id;
            addresses.insert(id, format!("{}:{}", broker.host, broker.port));
            snapshot.brokers.push(BrokerInfo {
                id,
                host: broker.host.to_string(),
                port: broker.port,
                rack: broker.rack.as_ref().map(|r| r.to_string()),
            });
        }
        for topic in &metadata.topics {
            let Some(name) = &topic.name else { continue };
            if !self.config.topics.passes(name) {
                continue;
            }
            for partition in &topic.partitions {
                snapshot.partitions.push(PartitionInfo {
                    topic: name.to_string(),
                    partition: partition.partition_index,
                    leader: *partition.leader_id,
                    replicas: partition.replica_nodes.len(),
                    in_sync_replicas: partition.isr_nodes.len(),
                    ..PartitionInfo::default()
                });
            }
        }
        self.offsets(&mut snapshot, &addresses).await;
        self.groups(&mut snapshot, &addresses).await;
        snapshot
    }

    fn count(snapshot: &mut Snapshot, api: &str, broker: i32) {
        *snapshot.requests.entry((api.to_string(), broker)).or_default() += 1;
    }

    fn fail(snapshot: &mut Snapshot, api: &str, error: &str) {
        snapshot.up = false;
        Self::count_error(snapshot, api, error);
    }

    fn count_error(snapshot: &mut Snapshot, api: &str, error: &str) {
        *snapshot.errors.entry((api.to_string(), error.to_string())).or_default() += 1;
    }

    /// Sends `request` to `broker`, counting it, and on failure drops the connection and
    /// counts the error. A connection kept from an earlier collection that breaks (the
    /// broker restarted in between) is replaced once at once, so a restart costs no
    /// collection; the broken try still counts as a request and an error.
    async fn call<R: Request>(
        &mut self,
        snapshot: &mut Snapshot,
        api: &str,
        broker: i32,
        addr: &str,
        request: &R,
    ) -> Result<(R::Response, i16), ClientError>
    where
        R::Response: Decodable + HeaderVersion,
    {
        let reused = self.connections.contains_key(&broker);
        let result = match self.attempt(snapshot, api, broker, addr, request).await {
            Err(error @ ClientError::Io { .. }) if reused => {
                Self::count_error(snapshot, api, error_kind(&error));
                self.attempt(snapshot, api, broker, addr, request).await
            }
            other => other,
        };
        result.inspect_err(|error| Self::fail(snapshot, api, error_kind(error)))
    }

    async fn attempt<R: Request>(
        &mut self,
        snapshot: &mut Snapshot,
        api: &str,
        broker: i32,
        addr: &str,
        request: &R,
    ) -> Result<(R::Response, i16), ClientError>
    where
        R::Response: Decodable + HeaderVersion,
    {
        Self::count(snapshot, api, broker);
        let result = match self.connection(broker, addr).await {
            Ok(connection) => connection.call(request).await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            self.connections.remove(&broker);
        }
        result
    }

    /// The version of `R` negotiated with `broker`, if a connection is open (callers ask
    /// after an earlier request of the collection opened it; never connecting here keeps
    /// connection errors on the request that meets them).
    fn version_known<R: Request>(&self, broker: i32) -> Option<i16> {
        self.connections.get(&broker)?.version_of::<R>()
    }

    async fn connection(&mut self, broker: i32, addr: &str) -> Result<&mut Connection, ClientError> {
        if !self.connections.contains_key(&broker) {
            // A broker that refused or timed out is retried after a growing pause (1 s,
            // 2 s, … 60 s), so a dead broker does not cost a timeout every collection.
            if let Some((failures, retry_at)) = self.backoff.get(&broker) {
                if tokio::time::Instant::now() < *retry_at {
                    return Err(ClientError::Backoff { addr: addr.into(), failures: *failures });
                }
            }
            match Connection::connect_secured(addr, self.timeout, &self.config.security).await {
                Ok(connection) => {
                    self.backoff.remove(&broker);
                    self.connections.insert(broker, connection);
                }
                Err(error) => {
                    let failures = self.backoff.get(&broker).map_or(0, |(f, _)| *f) + 1;
                    let pause = Duration::from_secs(1u64 << failures.min(6)).min(BACKOFF_MAX);
                    self.backoff.insert(broker, (failures, tokio::time::Instant::now() + pause));
                    return Err(error);
                }
            }
        }
        // Inserted just above when missing.
        self.connections
            .get_mut(&broker)
            .ok_or_else(|| ClientError::Unsupported { addr: addr.into(), api: ApiKey::ApiVersions })
    }

    async fn metadata(&mut self, snapshot: &mut Snapshot) -> Option<MetadataResponse> {
        let request = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
        for addr in self.config.bootstrap_servers.clone() {
            Self::count(snapshot, "Metadata", -1);
            let result = match Connection::connect_secured(&addr, self.timeout, &self.config.security).await {
                Ok(mut connection) => connection.call(&request).await,
                Err(error) => Err(error),
            };
            match result {
                Ok((response, _)) => return Some(response),
                Err(error) => Self::fail(snapshot, "Metadata", error_kind(&error)),
            }
        }
        None
    }

    async fn offsets(&mut self, snapshot: &mut Snapshot, addresses: &BTreeMap<i32, String>) {
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        // Where each partition sits in the snapshot: answers are matched by lookup, not by
        // a scan per partition (clusters have tens of thousands).
        let position: BTreeMap<(String, i32), usize> =
            snapshot.partitions.iter().enumerate().map(|(i, p)| ((p.topic.clone(), p.partition), i)).collect();
        for p in &snapshot.partitions {
            if p.leader >= 0 {
                by_leader.entry(p.leader).or_default().entry(p.topic.clone()).or_default().push(p.partition);
            }
        }
        for (leader, topics) in by_leader {
            let Some(addr) = addresses.get(&leader) else { continue };
            for (timestamp, isolation) in [(EARLIEST, 0i8), (LATEST, 0), (LATEST, 1), (MAX_TIMESTAMP, 0)] {
                let max_timestamp_known =
                    self.version_known::<ListOffsetsRequest>(leader).is_some_and(|v| v >= MAX_TIMESTAMP_VERSION);
                if timestamp == MAX_TIMESTAMP && !max_timestamp_known {
                    continue;
                }
                let request = list_offsets(&topics, timestamp, isolation);
                let Ok((response, _)) = self.call(snapshot, "ListOffsets", leader, addr, &request).await else {
                    continue;
                };
                for topic in &response.topics {
                    for partition in &topic.partitions {
                        if partition.error_code != 0 {
                            Self::fail(snapshot, "ListOffsets", &format!("code {}", partition.error_code));
                            continue;
                        }
                        let name = topic.name.as_str();
                        let Some(&at) = position.get(&(name.to_string(), partition.partition_index)) else {
                            continue;
                        };
                        let info = &mut snapshot.partitions[at];
                        match (timestamp, isolation) {
                            // An empty partition has no such record: offset and time -1.
                            (MAX_TIMESTAMP, _) => {
                                info.max_timestamp_ms =
                                    (partition.offset >= 0 && partition.timestamp >= 0).then_some(partition.timestamp)
                            }
                            (EARLIEST, _) => info.low_watermark = Some(partition.offset),
                            (_, 0) => info.high_watermark = Some(partition.offset),
                            _ => info.last_stable_offset = Some(partition.offset),
                        }
                    }
                }
            }
        }
    }
}

fn list_offsets(topics: &BTreeMap<String, Vec<i32>>, timestamp: i64, isolation: i8) -> ListOffsetsRequest {
    let topics = topics
        .iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .iter()
                .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(timestamp))
                .collect();
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.clone())))
                .with_partitions(partitions)
        })
        .collect();
    // replica_id -1: a normal consumer, not a follower (the crate's default is 0).
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation).with_topics(topics)
}

fn error_kind(error: &ClientError) -> &'static str {
    match error {
        ClientError::Connect { .. } => "connect",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Io { .. } => "io",
        ClientError::Protocol { .. } => "protocol",
        ClientError::Unsupported { .. } => "unsupported_version",
        ClientError::Backoff { .. } => "backoff",
        ClientError::Auth { .. } => "auth",
        ClientError::Tls { .. } => "tls",
    }
}
