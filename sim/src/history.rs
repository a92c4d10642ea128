//! The history of a run: every client operation (invoke / ok / fail / info, Jepsen
//! style), the cluster events and faults, what readers could see, and the final state
//! of every replica. Checkers read only this.

use serde::Serialize;
use trial_model::{
    ClusterEvent, ErrorCode, LogEntry, Millis, NodeId, Offset, TopicId, TopicPartition, WriteId, WriteOutcome,
};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    pub write: WriteId,
    pub producer: u32,
    pub topic: TopicId,
    pub key: Option<u32>,
    pub invoked_at: Millis,
    pub completed: Option<Completion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub at: Millis,
    pub tp: Option<TopicPartition>,
    pub outcome: WriteOutcome,
}

/// Jepsen's classification of a finished operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Ok,
    /// Definitely not written.
    Fail,
    /// Unknown whether written.
    Info,
    /// Never completed.
    Pending,
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self.completed.map(|c| c.outcome) {
            Some(WriteOutcome::Ok { .. }) => OpKind::Ok,
            Some(WriteOutcome::Failed { definite: true, .. }) => OpKind::Fail,
            Some(WriteOutcome::Failed { .. }) => OpKind::Info,
            None => OpKind::Pending,
        }
    }

    pub fn acked(&self) -> bool {
        self.kind() == OpKind::Ok
    }

    pub fn acked_offset(&self) -> Option<(TopicPartition, Option<Offset>)> {
        match self.completed {
            Some(Completion { tp: Some(tp), outcome: WriteOutcome::Ok { offset }, .. }) => Some((tp, offset)),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<ErrorCode> {
        match self.completed.map(|c| c.outcome) {
            Some(WriteOutcome::Failed { error, .. }) => Some(error),
            _ => None,
        }
    }
}

/// Something that happened to the cluster, in time order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Happening {
    Fault {
        fault: String,
        node: Option<NodeId>,
    },
    Phase {
        phase: String,
    },
    Cluster {
        event: ClusterEvent,
    },
    /// An invariant broke at this instant (kept with the events that led to it).
    Invariant {
        property: String,
        detail: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaFinal {
    pub broker: NodeId,
    pub high_watermark: Offset,
    pub log: Vec<LogEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionFinal {
    pub tp: TopicPartition,
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
    pub isr: Vec<NodeId>,
    pub elr: Vec<NodeId>,
    pub replicas: Vec<ReplicaFinal>,
}

impl PartitionFinal {
    /// The log a reader would see at the end: the leader's, up to its high watermark.
    /// With no leader (offline partition), the longest replica log — what an unclean
    /// recovery (KIP-966) would serve — so that records still on a disk are not called lost.
    pub fn committed(&self) -> &[LogEntry] {
        if let Some(replica) = self.leader.and_then(|leader| self.replicas.iter().find(|r| r.broker == leader)) {
            let end = (replica.high_watermark.0 as usize).min(replica.log.len());
            return &replica.log[..end];
        }
        self.replicas.iter().max_by_key(|r| (r.log.len(), std::cmp::Reverse(r.broker))).map_or(&[], |r| &r.log[..])
    }
}

/// One transaction of the transactional workload: its writes and how it ended, as the
/// application that ran it learned (none: it never heard).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TxnOp {
    /// The `transactional.id` of the client that ran it, as the report names it.
    pub client: String,
    pub writes: Vec<WriteId>,
    /// Whether the application meant to commit it (else it aborts it).
    pub commit: bool,
    pub begun_at: Millis,
    pub ended: Option<TxnEnd>,
    /// A `[pipeline]` transaction's: the input record each of `writes` copies (in the
    /// same order); empty for the transactional workload's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

/// The input record a pipeline's output write copies: where the consumer read it and the
/// write it held there. Exactly-once is per input record (per place): two copies of one
/// write at two offsets, an input producer's duplicate, are two records to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub write: WriteId,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TxnEnd {
    pub at: Millis,
    pub outcome: trial_model::txn::TxnOutcome,
    pub error: ErrorCode,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct History {
    /// Indexed by write id (ids are dense from 0).
    pub ops: Vec<Op>,
    pub happenings: Vec<(Millis, Happening)>,
    /// Per partition, the record first seen below a leader's high watermark at each
    /// offset: what a consumer could have read.
    pub readable: trial_model::TpMap<Vec<WriteId>>,
    pub partitions: Vec<PartitionFinal>,
    /// Transactions of the transactional workload, indexed by transaction id.
    pub txns: Vec<TxnOp>,
    /// Whether the healed cluster converged before the liveness phase ran out.
    pub converged: bool,
    pub safety_end: Millis,
}

impl History {
    pub fn push(&mut self, at: Millis, happening: Happening) {
        self.happenings.push((at, happening));
    }

    pub fn invariant_violations(&self) -> impl Iterator<Item = (Millis, &str, &str)> {
        self.happenings.iter().filter_map(|(at, h)| match h {
            Happening::Invariant { property, detail } => Some((*at, property.as_str(), detail.as_str())),
            _ => None,
        })
    }
}
