//! Requests and responses between actors, as plain Rust values moved by the host.
//! Names follow Kafka's APIs (Fetch, Produce, AlterPartition, BrokerHeartbeat …).

use crate::config::Acks;
use crate::error::ErrorCode;
use crate::group::coordinator::{GroupRequest, GroupResponse};
use crate::log::{AbortedTxn, LogEntry, Payload, Record};
use crate::txn::{TxnRequest, TxnResponse};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch, TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The controller's view of one partition (KRaft `PartitionRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub tp: TopicPartition,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// KIP-966 Eligible Leader Replicas (empty when the feature is off).
    pub elr: Vec<NodeId>,
    /// KIP-966's `LastKnownElr` as Kafka's controller keeps it
    /// (`useLastKnownLeaderInBalancedRecovery`, on by default): the leader when the ISR
    /// became empty, kept until a leader is elected (ELR on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_leader: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: TopicId,
    /// As Metadata responses carry it: a group leader assigns topics that only other
    /// members subscribe to by name.
    pub name: String,
    pub partitions: u32,
    pub min_insync_replicas: u32,
}

/// Metadata the controller publishes: the changed partitions, or all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataDelta {
    /// Version of the controller's metadata after this delta (its metadata log offset).
    pub version: u64,
    pub topics: Vec<TopicMeta>,
    pub partitions: Vec<PartitionState>,
    /// Brokers the controller has fenced or holds in controlled shutdown (KRaft's
    /// `BrokerRegistrationChangeRecord`, fenced or in controlled shutdown): a leader neither
    /// proposes them for the ISR nor counts them as caught up (KIP-841's
    /// `Partition.isReplicaIsrEligible`).
    pub ineligible_brokers: Vec<NodeId>,
    /// A delta's: the version it follows (a broker that has not seen that version missed
    /// a push). None for a snapshot of everything.
    #[serde(default)]
    pub base: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionItem {
    pub tp: TopicPartition,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    pub fetch_offset: Offset,
    /// KIP-320: epoch of the follower's last record, for divergence detection.
    pub last_fetched_epoch: Option<LeaderEpoch>,
    pub current_leader_epoch: LeaderEpoch,
    /// The follower's high watermark. What KIP-227's fetch session cache gives Kafka's
    /// leader: a partition with no records, no error and no higher HW for the follower
    /// stays out of the answer (an incremental fetch response).
    pub high_watermark: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPartitionResponse {
    pub tp: TopicPartition,
    pub error: ErrorCode,
    pub high_watermark: Offset,
    pub log_end_offset: Offset,
    /// KIP-320: where the follower's log diverges (epoch, end offset of that epoch).
    pub diverging_epoch: Option<(LeaderEpoch, Offset)>,
    pub records: Vec<LogEntry>,
    /// Contents of the internal-topic records among `records` (`__consumer_offsets`,
    /// `__transaction_state`),
    /// by offset; empty for every other topic.
    pub payloads: Vec<(Offset, Arc<Payload>)>,
}

/// One partition of a consumer's fetch (Fetch with replica id -1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerFetchPartition {
    pub tp: TopicPartition,
    pub fetch_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerFetchPartitionResponse {
    pub tp: TopicPartition,
    pub fetch_offset: Offset,
    pub error: ErrorCode,
    pub high_watermark: Offset,
    /// The partition's last stable offset (KIP-98); a read_committed fetch returns
    /// records below it only.
    #[serde(default)]
    pub last_stable_offset: Offset,
    /// Records from the fetch offset, below the high watermark (read_uncommitted) or the
    /// last stable offset (read_committed) only.
    pub records: Vec<LogEntry>,
    /// For read_committed: the aborted transactions among `records`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted: Vec<AbortedTxn>,
}

/// A batch's records, up to two of them inline: most batches hold one or two at the
/// rates simulated, so a batch with its `Arc` is one allocation, not two.
pub type BatchRecords = smallvec::SmallVec<[Record; 2]>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceBatch {
    pub tp: TopicPartition,
    /// Shared with the producer's batch (it keeps it for retries): no copy per send.
    pub records: std::sync::Arc<BatchRecords>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducePartitionResponse {
    pub tp: TopicPartition,
    pub error: ErrorCode,
    pub base_offset: Option<Offset>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLeader {
    pub tp: TopicPartition,
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
}

impl PartitionLeader {
    /// KIP-320's rule for a client's metadata (`Metadata.updateLatestMetadata`): a
    /// partition's metadata with a leader epoch older than one the client has seen comes
    /// from a broker that missed the change, and the client keeps what it had. Returns
    /// whether this is fresh, and records its epoch in `seen` if so.
    pub fn is_fresh(&self, seen: &mut crate::tpmap::TpMap<LeaderEpoch>) -> bool {
        if seen.get(&self.tp).is_some_and(|known| self.leader_epoch < *known) {
            return false;
        }
        seen.insert(self.tp, self.leader_epoch);
        true
    }

    /// The leaders a client keeps from a metadata answer: a fresh partition's as the
    /// answer names it, a stale one's as the client had it (`had`), by `is_fresh`.
    pub fn leaders_kept<'a>(
        partitions: Vec<PartitionLeader>,
        seen: &'a mut crate::tpmap::TpMap<LeaderEpoch>,
        had: impl Fn(&TopicPartition) -> Option<NodeId> + 'a,
    ) -> impl Iterator<Item = (TopicPartition, NodeId)> + 'a {
        partitions.into_iter().filter_map(move |p| {
            let leader = if p.is_fresh(seen) { p.leader } else { had(&p.tp) };
            leader.map(|leader| (p.tp, leader))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    // broker → controller
    BrokerRegistration {
        incarnation: u64,
        previous_broker_epoch: Option<BrokerEpoch>,
    },
    BrokerHeartbeat {
        broker_epoch: BrokerEpoch,
        metadata_version: u64,
        /// Set by a broker in controlled shutdown (Kafka's `WantShutDown`).
        want_shutdown: bool,
    },
    AlterPartition {
        broker_epoch: BrokerEpoch,
        items: Vec<AlterPartitionItem>,
    },
    // controller → broker
    BrokerRegistrationResponse {
        error: ErrorCode,
        broker_epoch: BrokerEpoch,
        /// Boxed, as in the other two controller pushes: the largest payload would make
        /// every message as large, and messages are moved several times each.
        metadata: Box<MetadataDelta>,
    },
    BrokerHeartbeatResponse {
        error: ErrorCode,
        fenced: bool,
        metadata: Option<Box<MetadataDelta>>,
        /// The controller grants a controlled shutdown (Kafka's `ShouldShutDown`).
        should_shutdown: bool,
    },
    AlterPartitionResponse {
        items: Vec<(TopicPartition, ErrorCode, Option<PartitionState>)>,
    },
    MetadataUpdate(Box<MetadataDelta>),
    // follower → leader and back
    Fetch {
        correlation: u64,
        broker_epoch: BrokerEpoch,
        max_wait_ms: u64,
        partitions: Vec<FetchPartition>,
    },
    FetchResponse {
        correlation: u64,
        partitions: Vec<FetchPartitionResponse>,
    },
    // client ↔ broker
    Metadata {
        correlation: u64,
    },
    MetadataResponse {
        correlation: u64,
        topics: Vec<TopicMeta>,
        partitions: Vec<PartitionLeader>,
    },
    Produce {
        correlation: u64,
        acks: Acks,
        timeout_ms: u64,
        batches: Vec<ProduceBatch>,
        /// A transactional producer's id (Produce v3+), which a leader verifying the
        /// partition with the coordinator needs (KIP-890 part 1).
        transactional_id: Option<std::sync::Arc<str>>,
    },
    ProduceResponse {
        correlation: u64,
        partitions: Vec<ProducePartitionResponse>,
    },
    /// InitProducerId without a transactional id: any broker hands out a fresh producer
    /// id with epoch 0 (`TransactionCoordinator.handleInitProducerId`).
    InitProducerId {
        correlation: u64,
    },
    InitProducerIdResponse {
        correlation: u64,
        error: ErrorCode,
        producer: Option<(std::num::NonZeroU32, u16)>,
    },
    // consumer ↔ broker
    /// FindCoordinator (key type GROUP): any broker answers with the leader of the
    /// group's `__consumer_offsets` partition.
    FindCoordinator {
        correlation: u64,
        group: String,
    },
    FindCoordinatorResponse {
        correlation: u64,
        error: ErrorCode,
        coordinator: Option<NodeId>,
    },
    /// A request of the classic group protocol, for the group coordinator.
    Group {
        correlation: u64,
        request: Box<GroupRequest>,
    },
    GroupResponse {
        correlation: u64,
        response: Box<GroupResponse>,
    },
    ConsumerFetch {
        correlation: u64,
        max_wait_ms: u64,
        /// `isolation.level=read_committed`.
        #[serde(default)]
        read_committed: bool,
        partitions: Vec<ConsumerFetchPartition>,
    },
    ConsumerFetchResponse {
        correlation: u64,
        partitions: Vec<ConsumerFetchPartitionResponse>,
    },
    /// ListOffsets: the earliest offset (`latest == false`) or the high watermark.
    ListOffsets {
        correlation: u64,
        partitions: Vec<(TopicPartition, bool)>,
    },
    ListOffsetsResponse {
        correlation: u64,
        partitions: Vec<(TopicPartition, ErrorCode, Offset)>,
    },
    // transactions
    /// FindCoordinator with key type TRANSACTION: any broker answers with the leader of
    /// the transactional id's `__transaction_state` partition.
    FindTxnCoordinator {
        correlation: u64,
        transactional_id: String,
    },
    /// A request for the transaction coordinator (InitProducerId with a transactional
    /// id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn).
    Txn {
        correlation: u64,
        request: Box<TxnRequest>,
    },
    TxnResponse {
        correlation: u64,
        response: Box<TxnResponse>,
    },
    /// WriteTxnMarkers, coordinator → partition leader: append the commit or abort marker
    /// of the producer's transaction to each partition (acks=all).
    WriteTxnMarkers {
        correlation: u64,
        producer_id: std::num::NonZeroU32,
        epoch: u16,
        commit: bool,
        partitions: Vec<TopicPartition>,
        /// The transaction version the marker was written under (WriteTxnMarkers v2,
        /// KIP-1228, Kafka 4.2); 0 from a coordinator that does not send it (v1).
        transaction_version: u8,
    },
    WriteTxnMarkersResponse {
        correlation: u64,
        partitions: Vec<(TopicPartition, ErrorCode)>,
    },
    /// From the host: the connection to `from` was refused or reset (its process is gone
    /// but its machine answers). A host down by power loss or a partition sends nothing.
    ConnectionClosed,
}

impl Message {
    /// Stable name of the message kind, for traces and for faults that drop one kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::BrokerRegistration { .. } => MessageKind::BrokerRegistration,
            Message::BrokerHeartbeat { .. } => MessageKind::BrokerHeartbeat,
            Message::AlterPartition { .. } => MessageKind::AlterPartition,
            Message::BrokerRegistrationResponse { .. } => MessageKind::BrokerRegistrationResponse,
            Message::BrokerHeartbeatResponse { .. } => MessageKind::BrokerHeartbeatResponse,
            Message::AlterPartitionResponse { .. } => MessageKind::AlterPartitionResponse,
            Message::MetadataUpdate(_) => MessageKind::MetadataUpdate,
            Message::Fetch { .. } => MessageKind::Fetch,
            Message::FetchResponse { .. } => MessageKind::FetchResponse,
            Message::Metadata { .. } => MessageKind::Metadata,
            Message::MetadataResponse { .. } => MessageKind::MetadataResponse,
            Message::Produce { .. } => MessageKind::Produce,
            Message::ProduceResponse { .. } => MessageKind::ProduceResponse,
            Message::FindCoordinator { .. } => MessageKind::FindCoordinator,
            Message::FindCoordinatorResponse { .. } => MessageKind::FindCoordinatorResponse,
            Message::Group { .. } => MessageKind::Group,
            Message::GroupResponse { .. } => MessageKind::GroupResponse,
            Message::ConsumerFetch { .. } => MessageKind::ConsumerFetch,
            Message::ConsumerFetchResponse { .. } => MessageKind::ConsumerFetchResponse,
            Message::ListOffsets { .. } => MessageKind::ListOffsets,
            Message::ListOffsetsResponse { .. } => MessageKind::ListOffsetsResponse,
            Message::ConnectionClosed => MessageKind::ConnectionClosed,
            Message::InitProducerId { .. } => MessageKind::InitProducerId,
            Message::InitProducerIdResponse { .. } => MessageKind::InitProducerIdResponse,
            Message::FindTxnCoordinator { .. } => MessageKind::FindTxnCoordinator,
            Message::Txn { .. } => MessageKind::Txn,
            Message::TxnResponse { .. } => MessageKind::TxnResponse,
            Message::WriteTxnMarkers { .. } => MessageKind::WriteTxnMarkers,
            Message::WriteTxnMarkersResponse { .. } => MessageKind::WriteTxnMarkersResponse,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    BrokerRegistration,
    BrokerHeartbeat,
    AlterPartition,
    BrokerRegistrationResponse,
    BrokerHeartbeatResponse,
    AlterPartitionResponse,
    MetadataUpdate,
    Fetch,
    FetchResponse,
    Metadata,
    MetadataResponse,
    Produce,
    ProduceResponse,
    ConnectionClosed,
    FindCoordinator,
    FindCoordinatorResponse,
    Group,
    GroupResponse,
    ConsumerFetch,
    ConsumerFetchResponse,
    ListOffsets,
    ListOffsetsResponse,
    InitProducerId,
    InitProducerIdResponse,
    FindTxnCoordinator,
    Txn,
    TxnResponse,
    WriteTxnMarkers,
    WriteTxnMarkersResponse,
}

impl MessageKind {
    pub const ALL: [MessageKind; 29] = [
        MessageKind::BrokerRegistration,
        MessageKind::BrokerHeartbeat,
        MessageKind::AlterPartition,
        MessageKind::BrokerRegistrationResponse,
        MessageKind::BrokerHeartbeatResponse,
        MessageKind::AlterPartitionResponse,
        MessageKind::MetadataUpdate,
        MessageKind::Fetch,
        MessageKind::FetchResponse,
        MessageKind::Metadata,
        MessageKind::MetadataResponse,
        MessageKind::Produce,
        MessageKind::ProduceResponse,
        MessageKind::ConnectionClosed,
        MessageKind::FindCoordinator,
        MessageKind::FindCoordinatorResponse,
        MessageKind::Group,
        MessageKind::GroupResponse,
        MessageKind::ConsumerFetch,
        MessageKind::ConsumerFetchResponse,
        MessageKind::ListOffsets,
        MessageKind::ListOffsetsResponse,
        MessageKind::InitProducerId,
        MessageKind::InitProducerIdResponse,
        MessageKind::FindTxnCoordinator,
        MessageKind::Txn,
        MessageKind::TxnResponse,
        MessageKind::WriteTxnMarkers,
        MessageKind::WriteTxnMarkersResponse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MessageKind::BrokerRegistration => "broker-registration",
            MessageKind::BrokerHeartbeat => "broker-heartbeat",
            MessageKind::AlterPartition => "alter-partition",
            MessageKind::BrokerRegistrationResponse => "broker-registration-response",
            MessageKind::BrokerHeartbeatResponse => "broker-heartbeat-response",
            MessageKind::AlterPartitionResponse => "alter-partition-response",
            MessageKind::MetadataUpdate => "metadata-update",
            MessageKind::Fetch => "fetch",
            MessageKind::FetchResponse => "fetch-response",
            MessageKind::Metadata => "metadata",
            MessageKind::MetadataResponse => "metadata-response",
            MessageKind::Produce => "produce",
            MessageKind::ProduceResponse => "produce-response",
            MessageKind::ConnectionClosed => "connection-closed",
            MessageKind::FindCoordinator => "find-coordinator",
            MessageKind::FindCoordinatorResponse => "find-coordinator-response",
            MessageKind::Group => "group",
            MessageKind::GroupResponse => "group-response",
            MessageKind::ConsumerFetch => "consumer-fetch",
            MessageKind::ConsumerFetchResponse => "consumer-fetch-response",
            MessageKind::ListOffsets => "list-offsets",
            MessageKind::ListOffsetsResponse => "list-offsets-response",
            MessageKind::InitProducerId => "init-producer-id",
            MessageKind::InitProducerIdResponse => "init-producer-id-response",
            MessageKind::FindTxnCoordinator => "find-txn-coordinator",
            MessageKind::Txn => "txn",
            MessageKind::TxnResponse => "txn-response",
            MessageKind::WriteTxnMarkers => "write-txn-markers",
            MessageKind::WriteTxnMarkersResponse => "write-txn-markers-response",
        }
    }

    pub fn parse(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}
