//! Consumer groups: Kafka's classic group protocol as pure code.
//!
//! - [`assignor`]: the partition assignors the group leader runs on the members'
//!   subscriptions (range, round-robin, sticky, cooperative-sticky), with the same output
//!   as Kafka's Java client.
//! - [`coordinator`]: the group coordinator a broker runs for the groups of the
//!   `__consumer_offsets` partitions it leads (join, sync, heartbeat, leave, commits).
//! - [`member`]: the client side (the Java client's `ConsumerCoordinator`): join and sync,
//!   the leader's assignment, heartbeats, eager and cooperative rebalancing, the poll
//!   interval, commits under the member's generation.
//!
//! No IO, no clock, no randomness: the same inputs always give the same outputs.

pub mod assignor;
pub mod coordinator;
pub mod member;

use crate::error::ErrorCode;
use crate::types::{Millis, Offset, TopicPartition, WriteId};
use serde::{Deserialize, Serialize};

/// What a coordinator or a consumer did, for the history (never needed to drive the
/// cluster). Partitions are named by topic id, as the rest of the history names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum GroupEvent {
    // ---- the coordinator (a broker) ----
    /// A generation completed its join phase.
    Rebalanced {
        group: String,
        generation: i32,
        members: usize,
    },
    /// A commit is durable and applied (`group_generation` and `validated_at`: when the
    /// coordinator validated it).
    OffsetsStored {
        group: String,
        member_id: String,
        generation: i32,
        group_generation: i32,
        validated_at: Millis,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    /// A member is out of the group (see `CoordinatorOutput::MemberRemoved`).
    MemberRemoved {
        group: String,
        member_id: String,
        generation: i32,
        reason: String,
    },
    /// This broker took over (or gave up) the groups of an offsets partition.
    CoordinatorLoaded {
        partition: u32,
        records: usize,
    },
    CoordinatorUnloaded {
        partition: u32,
    },
    // ---- a consumer ----
    /// The application wrote this record to its sink (the host knows whose group).
    Processed {
        tp: TopicPartition,
        offset: Offset,
        write: WriteId,
    },
    /// The consumer sent a rejoin (a rebalance starts for it).
    Joining {
        group: String,
        member_id: String,
    },
    Assigned {
        group: String,
        member_id: String,
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    Revoked {
        group: String,
        member_id: String,
        partitions: Vec<TopicPartition>,
    },
    Lost {
        group: String,
        member_id: String,
        partitions: Vec<TopicPartition>,
    },
    CommitSent {
        group: String,
        member_id: String,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    CommitDone {
        /// The id `Consumer::app_commit` returned for it (the host's answer key).
        correlation: u64,
        group: String,
        member_id: String,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
        error: ErrorCode,
    },
    /// The position moved by `auto.offset.reset` (no committed offset, or out of range).
    PositionReset {
        group: String,
        tp: TopicPartition,
        from: Option<Offset>,
        to: Offset,
    },
    Fatal {
        group: String,
        error: ErrorCode,
    },
}
