//! What one collection saw of one cluster: plain data, testable without a broker.

use std::collections::BTreeMap;
pub use trial_model::lag::LagStatus;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: usize,
    pub in_sync_replicas: usize,
    /// Earliest offset (log start); `None` when the leader did not answer.
    pub low_watermark: Option<i64>,
    pub high_watermark: Option<i64>,
    pub last_stable_offset: Option<i64>,
    /// Record time (ms) of the partition's newest record by timestamp; `None` when the
    /// leader is older than ListOffsets v7 or the partition is empty.
    pub max_timestamp_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// How long ago the first unconsumed record was written; `None` without enough history.
    pub lag_seconds: Option<f64>,
    /// Burrow-style status over the recent commits.
    pub status: LagStatus,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberInfo {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupInfo {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub coordinator: i32,
    pub members: usize,
    /// Who the members are (kept off the lag series, on their own info series).
    pub member_info: Vec<MemberInfo>,
    pub offsets: Vec<GroupOffset>,
    /// The worst status of its partitions.
    pub status: LagStatus,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub cluster: String,
    pub granularity: crate::config::Granularity,
    pub lag_from: crate::config::LagFrom,
    /// Whether every request of the collection succeeded.
    pub up: bool,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub partitions: Vec<PartitionInfo>,
    pub groups: Vec<GroupInfo>,
    pub collection_seconds: f64,
    pub collected_at_unix_seconds: f64,
    /// Requests sent since the exporter started, per (api, broker id).
    pub requests: BTreeMap<(String, i32), u64>,
    /// Failed requests since the exporter started, per (api, error).
    pub errors: BTreeMap<(String, String), u64>,
    /// Requests this collection sent (what the minimal request plan is judged by).
    pub requests_this_collection: u64,
}

impl Snapshot {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.topic == topic && p.partition == partition)
    }

    /// The end lag is measured to on a partition: the HW, or the LSO when configured.
    pub fn readable_end(&self, partition: &PartitionInfo) -> Option<i64> {
        match self.lag_from {
            crate::config::LagFrom::HighWatermark => partition.high_watermark,
            crate::config::LagFrom::LastStableOffset => partition.last_stable_offset.or(partition.high_watermark),
        }
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Adds this collection's counts to running totals and keeps the totals in the
    /// snapshot, so the `_total` series only ever grow.
    pub fn accumulate(
        &mut self,
        requests: &mut BTreeMap<(String, i32), u64>,
        errors: &mut BTreeMap<(String, String), u64>,
    ) {
        self.requests_this_collection = self.requests.values().sum();
        for (key, count) in std::mem::take(&mut self.requests) {
            *requests.entry(key).or_default() += count;
        }
        for (key, count) in std::mem::take(&mut self.errors) {
            *errors.entry(key).or_default() += count;
        }
        self.requests = requests.clone();
        self.errors = errors.clone();
    }
}

impl Default for GroupInfo {
    fn default() -> Self {
        GroupInfo {
            group: String::new(),
            state: String::new(),
            protocol_type: String::new(),
            protocol: String::new(),
            coordinator: -1,
            members: 0,
            member_info: Vec::new(),
            offsets: Vec::new(),
            status: LagStatus::Ok,
        }
    }
}
