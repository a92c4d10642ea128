//! Outputs of the state machines, drained by the host with `poll_action`.

use crate::error::ErrorCode;
use crate::messages::Message;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch, TopicPartition, WriteId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand `msg` to the network, addressed to `to`.
    Send { to: NodeId, msg: Message },
    /// The outcome of a client write, as the application sees it.
    Ack { write: WriteId, tp: Option<TopicPartition>, outcome: WriteOutcome },
    /// Something the history should record (not needed to drive the cluster).
    Event(ClusterEvent),
    /// A consumer-group happening for the history (coordinator or consumer side).
    Group(Box<crate::group::GroupEvent>),
    /// `GroupEvent::Processed`, the most frequent group happening, unboxed: a consumer
    /// processed the record at `offset` of `tp`.
    Processed { tp: TopicPartition, offset: Offset, write: WriteId },
    /// A transaction coordinator happening for the history.
    Txn(Box<crate::txn::TxnEvent>),
    /// The process exits after a graceful shutdown, its logs flushed and its
    /// clean-shutdown marker written; the host takes it down (its last action).
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum WriteOutcome {
    /// Acknowledged at this offset (None for acks=0, which learns no offset).
    Ok { offset: Option<Offset> },
    /// The client gave up. `definite` when the broker said the write was not appended.
    Failed { error: ErrorCode, definite: bool },
}

/// Cluster events for the history and the invariant monitors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ClusterEvent {
    /// The controller changed a partition's leader, ISR or ELR.
    PartitionChange {
        tp: TopicPartition,
        leader: Option<NodeId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        isr: Vec<NodeId>,
        elr: Vec<NodeId>,
        unclean: bool,
    },
    BrokerFenced {
        broker: NodeId,
    },
    BrokerUnfenced {
        broker: NodeId,
        broker_epoch: BrokerEpoch,
    },
    BrokerRegistered {
        broker: NodeId,
        broker_epoch: BrokerEpoch,
        clean_shutdown: bool,
    },
    /// The controller took a broker that asked to shut down into controlled shutdown.
    ControlledShutdown {
        broker: NodeId,
    },
    /// A broker stopped after a graceful shutdown: `granted` by the controller (or with
    /// nothing to hand over, unregistered), or after waiting `controlled_shutdown_timeout_ms`.
    BrokerStopped {
        broker: NodeId,
        granted: bool,
    },
    /// A broker started acting as leader of `tp` in `leader_epoch`.
    BecameLeader {
        broker: NodeId,
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
    },
    BecameFollower {
        broker: NodeId,
        tp: TopicPartition,
        leader: Option<NodeId>,
        leader_epoch: LeaderEpoch,
    },
    /// A replica's high watermark changed (it may move back only on an anomaly).
    HighWatermark {
        broker: NodeId,
        tp: TopicPartition,
        leader: bool,
        high_watermark: Offset,
    },
    Truncated {
        broker: NodeId,
        tp: TopicPartition,
        from: Offset,
        to: Offset,
        reason: TruncationReason,
    },
    IsrChangeRequested {
        broker: NodeId,
        tp: TopicPartition,
        new_isr: Vec<NodeId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TruncationReason {
    /// Pre-KIP-101: to the follower's own high watermark on becoming follower.
    HighWatermark,
    /// Pre-KIP-101: to the leader's log end after OFFSET_OUT_OF_RANGE.
    OffsetOutOfRange,
    /// KIP-320: to the leader's end offset of the diverging epoch.
    DivergingEpoch,
}
