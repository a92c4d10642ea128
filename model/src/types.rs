//! Newtypes for Kafka's ids, offsets and epochs, in Kafka's own words.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Simulated time in milliseconds. Hosts pass it in; the model never reads a clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);
    pub const MAX: Millis = Millis(u64::MAX);

    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A node of the simulated cluster: a broker, the controller or a client.
/// Brokers use their broker id as node id; the controller and clients get ids above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// `broker.id` / `node.id` of a broker.
pub type BrokerId = NodeId;

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a topic in the cluster's topic table (names live in the scenario).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub u32);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: TopicId,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: u32, partition: u32) -> Self {
        TopicPartition { topic: TopicId(topic), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}-{}", self.topic.0, self.partition)
    }
}

/// A log offset. Kafka uses -1 as "none"; here absence is `Option<Offset>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offset(pub u64);

impl Offset {
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderEpoch(pub u32);

/// KRaft's partition epoch: bumped on every change of the partition's ISR, ELR or leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionEpoch(pub u32);

/// Epoch a broker gets from the controller at each registration (KIP-631, KIP-903).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerEpoch(pub u64);

/// Identity of one client write: unique per run, carried as the record's value so that
/// checkers can follow a write through every log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WriteId(pub u64);

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// The client that wrote a record (its node id): what the history and the checkers
/// follow. The id an idempotent producer gets from InitProducerId is `Stamp::pid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerId(pub u32);

/// The idempotence fields of a record batch header, per record: producer id and epoch
/// from InitProducerId, the record's sequence number, and its index in the batch (0
/// starts a batch, which is how a replica rebuilds batch boundaries from its log).
/// Kafka's producer id 0 is valid; here ids start at 1, so `None` is "no producer id".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub pid: std::num::NonZeroU32,
    pub epoch: u16,
    pub index: u16,
    pub sequence: u32,
    /// The batch's transactional and control attributes.
    #[serde(default, skip_serializing_if = "BatchKind::is_plain")]
    pub kind: BatchKind,
}

/// The attributes of a producer's batch (`RecordBatch.isTransactional`/`isControlBatch`):
/// a plain idempotent batch, a batch inside a transaction, or the commit or abort marker
/// the transaction coordinator writes to end one (KIP-98 control records; a marker is a
/// batch of its own, one record, `index` 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BatchKind {
    #[default]
    Plain,
    Transactional,
    Commit,
    Abort,
}

impl BatchKind {
    pub fn is_plain(&self) -> bool {
        *self == BatchKind::Plain
    }

    pub fn is_control(self) -> bool {
        matches!(self, BatchKind::Commit | BatchKind::Abort)
    }
}
