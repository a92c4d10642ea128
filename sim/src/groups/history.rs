//! The consumer-group half of a run's history: what each member of one group did and what
//! its coordinator accepted, in time order. The engine fills it; the group checkers read
//! only this, plus the committed logs for the records the group was owed.

use crate::history::History;
use serde::Serialize;
use std::fmt::Write as _;
use trial_model::group::assignor::RebalanceProtocol;
use trial_model::{ErrorCode, Millis, NodeId, Offset, TopicId, TopicPartition, WriteId};

/// The rebalance protocol a group runs (`ConsumerPartitionAssignor.RebalanceProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// Every member revokes everything before it rejoins.
    Eager,
    /// KIP-429: a partition changing owner is revoked first and handed over in the
    /// follow-up rebalance, so no two members ever own it at once.
    Cooperative,
}

impl GroupProtocol {
    pub fn name(self) -> &'static str {
        match self {
            GroupProtocol::Eager => "eager",
            GroupProtocol::Cooperative => "cooperative",
        }
    }
}

impl From<RebalanceProtocol> for GroupProtocol {
    fn from(protocol: RebalanceProtocol) -> Self {
        match protocol {
            RebalanceProtocol::Eager => GroupProtocol::Eager,
            RebalanceProtocol::Cooperative => GroupProtocol::Cooperative,
        }
    }
}

/// Who made the coordinator store a committed offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Committer {
    /// An OffsetCommit from a member, under the member id and generation it sent, and
    /// when the coordinator validated it.
    Member { consumer: u32, member_id: String, generation: i32, validated_at: Millis },
    /// An explicit reset (`kafka-consumer-groups.sh --reset-offsets`,
    /// `Admin.alterConsumerGroupOffsets`): the one way a committed offset may move back.
    Reset,
}

/// One thing that happened in a group. Consumers are numbered as the scenario numbers them
/// (like `Op::producer`); a restarted process keeps its number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GroupEvent {
    // The consumers (client side).
    /// The application finished processing the record at `tp`/`offset` (which carries
    /// `write`) and its effect is visible: its sink write is made, or, under exactly-once
    /// (KIP-447), the transaction that carries it committed. Aborted work is not recorded.
    Processed {
        consumer: u32,
        generation: i32,
        tp: TopicPartition,
        offset: Offset,
        write: WriteId,
    },
    /// An OffsetCommit left the consumer (offsets are the next offsets to read).
    CommitSent {
        consumer: u32,
        member_id: String,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    /// Its answer as the consumer saw it (`error` is the first partition error, if any).
    CommitResult {
        consumer: u32,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
        error: ErrorCode,
    },
    /// A SyncGroup of `generation` succeeded and `onPartitionsAssigned` ran with the
    /// partitions it added. Pushed after every successful sync, even with none added, as
    /// the Java client calls the callback: from here on every partition the consumer owns
    /// is owned under `generation` and `member_id`.
    Assigned {
        consumer: u32,
        member_id: String,
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    /// `onPartitionsRevoked`: the consumer stopped processing these.
    Revoked {
        consumer: u32,
        partitions: Vec<TopicPartition>,
    },
    /// `onPartitionsLost`: the consumer learnt its membership is gone.
    Lost {
        consumer: u32,
        partitions: Vec<TopicPartition>,
    },
    /// The fetch position moved other than by fetching: `seek`, `auto.offset.reset`, or a
    /// rewind to the committed offset after an aborted transaction. A new run of
    /// processing order starts here.
    PositionReset {
        consumer: u32,
        tp: TopicPartition,
        from: Option<Offset>,
        to: Offset,
    },
    /// The consumer got ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID: it
    /// is no member any more, whatever it still owns.
    Fenced {
        consumer: u32,
        error: ErrorCode,
    },
    ConsumerCrashed {
        consumer: u32,
    },
    ConsumerRestarted {
        consumer: u32,
    },
    /// A GC-like pause: the process keeps its state and becomes a zombie if it outlasts
    /// its session.
    ConsumerPaused {
        consumer: u32,
    },
    ConsumerResumed {
        consumer: u32,
    },

    // The group coordinator.
    /// The group left Stable/Empty for PreparingRebalance; `generation` is the one being
    /// left, `reason` Kafka's log wording (KIP-800 join/leave reasons).
    RebalanceStarted {
        generation: i32,
        reason: String,
    },
    /// The group is Stable in `generation` (the leader's assignment is stored).
    Stable {
        generation: i32,
        members: u32,
    },
    /// A rebalance ended with no member left.
    Empty {
        generation: i32,
    },
    /// The coordinator dropped a member: session timeout, LeaveGroup, missed join, or a
    /// static member replaced by a new instance (KIP-345). Its later commits to that
    /// coordinator must fail (a successor loads the group from the log instead).
    MemberRemoved {
        consumer: u32,
        member_id: String,
        generation: i32,
        reason: String,
        coordinator: NodeId,
    },
    /// The coordinator accepted a committed offset and stored it (its append to
    /// `__consumer_offsets` committed). `group_generation` is the group's generation when
    /// the coordinator validated the commit (Kafka checks a commit once, when it comes,
    /// and stores it once its append is durable, whatever the group did meanwhile).
    OffsetStored {
        tp: TopicPartition,
        offset: Offset,
        by: Committer,
        group_generation: i32,
    },
    /// A coordinator (after a failover) loaded the group's committed offset for `tp` from
    /// `__consumer_offsets`.
    OffsetLoaded {
        tp: TopicPartition,
        offset: Option<Offset>,
        coordinator: NodeId,
    },
}

impl GroupEvent {
    /// The consumer the event is about, for client-side events and member removal.
    pub fn consumer(&self) -> Option<u32> {
        match self {
            GroupEvent::Processed { consumer, .. }
            | GroupEvent::CommitSent { consumer, .. }
            | GroupEvent::CommitResult { consumer, .. }
            | GroupEvent::Assigned { consumer, .. }
            | GroupEvent::Revoked { consumer, .. }
            | GroupEvent::Lost { consumer, .. }
            | GroupEvent::PositionReset { consumer, .. }
            | GroupEvent::Fenced { consumer, .. }
            | GroupEvent::ConsumerCrashed { consumer }
            | GroupEvent::ConsumerRestarted { consumer }
            | GroupEvent::ConsumerPaused { consumer }
            | GroupEvent::ConsumerResumed { consumer }
            | GroupEvent::MemberRemoved { consumer, .. } => Some(*consumer),
            GroupEvent::OffsetStored { by: Committer::Member { consumer, .. }, .. } => Some(*consumer),
            _ => None,
        }
    }
}

/// Everything one consumer group went through in a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupHistory {
    /// `group.id`.
    pub group: String,
    pub protocol: GroupProtocol,
    /// The subscribed topics: their acknowledged records are what the group is owed.
    pub topics: Vec<TopicId>,
    pub events: Vec<(Millis, GroupEvent)>,
    /// When the run ended (the figures count unowned time up to here).
    pub end: Millis,
}

impl GroupHistory {
    pub fn new(group: impl Into<String>, protocol: GroupProtocol, topics: Vec<TopicId>) -> Self {
        GroupHistory { group: group.into(), protocol, topics, events: Vec::new(), end: Millis::ZERO }
    }

    pub fn push(&mut self, at: Millis, event: GroupEvent) {
        debug_assert!(self.events.last().is_none_or(|(last, _)| *last <= at), "group events go in time order");
        self.events.push((at, event));
    }

    /// The run ended at `end`.
    pub fn finish(&mut self, end: Millis) {
        self.end = end;
    }

    /// The end of the history: `end`, or the last event if that is later (not finished).
    pub fn end(&self) -> Millis {
        self.events.last().map_or(self.end, |(at, _)| self.end.max(*at))
    }
}

/// A record the group was owed: acknowledged, and in the committed log of a subscribed
/// partition at the end of the run. Processed zero times it is lost, twice duplicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ExpectedRecord {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub write: WriteId,
}

/// The records owed to a group subscribed to `topics`, in partition and offset order.
pub fn expected_records(history: &History, topics: &[TopicId]) -> Vec<ExpectedRecord> {
    let mut expected = Vec::new();
    for partition in history.partitions.iter().filter(|p| topics.contains(&p.tp.topic)) {
        for (offset, entry) in partition.committed().iter().enumerate() {
            let write = entry.record.write;
            // Ops are indexed by write id (dense from 0).
            if history.ops.get(write.0 as usize).is_some_and(|op| op.acked()) {
                expected.push(ExpectedRecord { tp: partition.tp, offset: Offset(offset as u64), write });
            }
        }
    }
    expected.sort();
    expected
}

/// One readable line for an event, as violation examples and reports cite it.
pub fn describe(at: Millis, event: &GroupEvent) -> String {
    let t = at.0;
    match event {
        GroupEvent::Processed { consumer, generation, tp, offset, write } => {
            format!("c{consumer} (gen {generation}) processed {tp} offset {offset} ({write}) at t={t}ms")
        }
        GroupEvent::CommitSent { consumer, generation, offsets, .. } => {
            format!("c{consumer} (gen {generation}) sent a commit of {} at t={t}ms", offsets_text(offsets))
        }
        GroupEvent::CommitResult { consumer, offsets, error, .. } => {
            format!("c{consumer}'s commit of {} answered {} at t={t}ms", offsets_text(offsets), error.name())
        }
        GroupEvent::Assigned { consumer, generation, partitions, .. } => {
            format!("c{consumer} was assigned {} in gen {generation} at t={t}ms", partitions_text(partitions))
        }
        GroupEvent::Revoked { consumer, partitions } => {
            format!("c{consumer} revoked {} at t={t}ms", partitions_text(partitions))
        }
        GroupEvent::Lost { consumer, partitions } => {
            format!("c{consumer} lost {} at t={t}ms", partitions_text(partitions))
        }
        GroupEvent::PositionReset { consumer, tp, from, to } => {
            let from = from.map_or("none".to_string(), |o| o.to_string());
            format!("c{consumer}'s position on {tp} was reset from {from} to {to} at t={t}ms")
        }
        GroupEvent::Fenced { consumer, error } => format!("c{consumer} was fenced ({}) at t={t}ms", error.name()),
        GroupEvent::ConsumerCrashed { consumer } => format!("c{consumer} crashed at t={t}ms"),
        GroupEvent::ConsumerRestarted { consumer } => format!("c{consumer} restarted at t={t}ms"),
        GroupEvent::ConsumerPaused { consumer } => format!("c{consumer} paused at t={t}ms"),
        GroupEvent::ConsumerResumed { consumer } => format!("c{consumer} resumed at t={t}ms"),
        GroupEvent::RebalanceStarted { generation, reason } => {
            format!("a rebalance from gen {generation} started at t={t}ms ({reason})")
        }
        GroupEvent::Stable { generation, members } => {
            format!("the group was stable in gen {generation} with {members} member(s) at t={t}ms")
        }
        GroupEvent::Empty { generation } => format!("the group was empty in gen {generation} at t={t}ms"),
        GroupEvent::MemberRemoved { consumer, member_id, reason, .. } => {
            format!("the coordinator removed c{consumer} (member {member_id}) at t={t}ms ({reason})")
        }
        GroupEvent::OffsetStored { tp, offset, by: Committer::Member { consumer, generation, .. }, .. } => {
            format!("{tp} offset {offset} committed by c{consumer} (gen {generation}) at t={t}ms")
        }
        GroupEvent::OffsetStored { tp, offset, by: Committer::Reset, .. } => {
            format!("{tp} reset to offset {offset} at t={t}ms")
        }
        GroupEvent::OffsetLoaded { tp, offset, coordinator } => {
            let offset = offset.map_or("none".to_string(), |o| o.to_string());
            format!("coordinator {coordinator} loaded {tp} offset {offset} at t={t}ms")
        }
    }
}

pub(crate) fn partitions_text(partitions: &[TopicPartition]) -> String {
    let mut out = String::from("[");
    for (i, tp) in partitions.iter().enumerate() {
        let _ = write!(out, "{}{tp}", if i == 0 { "" } else { ", " });
    }
    out.push(']');
    out
}

fn offsets_text(offsets: &[(TopicPartition, Offset)]) -> String {
    let mut out = String::from("[");
    for (i, (tp, offset)) in offsets.iter().enumerate() {
        let _ = write!(out, "{}{tp}@{offset}", if i == 0 { "" } else { ", " });
    }
    out.push(']');
    out
}
