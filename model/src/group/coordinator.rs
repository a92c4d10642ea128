//! The classic group coordinator, as a broker runs it for the groups whose
//! `__consumer_offsets` partition it leads: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit and OffsetFetch; generations; session, rebalance and pending-sync timeouts;
//! static membership (KIP-345); the member id handshake (KIP-394).
//!
//! It is sans-IO like every actor here. Requests come in through `handle_request`,
//! timers through `handle_timeout`; answers and log appends go out through
//! `poll_output`. Offsets and group metadata are made durable by appending
//! [`OffsetsRecord`]s to the group's `__consumer_offsets` partition: the host appends
//! them, waits for the high watermark (acks=all), and reports back with
//! `handle_append_result`. Only then does a commit count and its answer go out, so a
//! coordinator failover, an unclean election or a power loss loses or rolls back exactly
//! what Kafka's would. A new coordinator rebuilds its state with `load`.
//!
//! Transactional offset commits (KIP-98, with KIP-447's group fencing) are appended as
//! the producer's transactional records and stay pending until the transaction's marker
//! reaches the partition (`txn_completed`): a commit marker makes them the group's
//! offsets, an abort drops them. While any is pending for a partition, an OffsetFetch
//! with `require_stable` (what a read_committed consumer sends) is answered
//! UNSTABLE_OFFSET_COMMIT, so a new owner does not start from an offset about to move.
//!
//! `fencing = false` turns off the generation and member checks on commits, to show what
//! they prevent (a zombie's commit accepted).

use crate::error::ErrorCode;
use crate::types::{Millis, NodeId, Offset, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;

/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_PARTITIONS_DEFAULT: u32 = 50;
/// Bound on members per group (`group.max.size` defaults to unbounded; a simulation
/// needs a limit).
pub const GROUP_MEMBERS_MAX: usize = 1_000;
/// Bound on appends waiting for the log (commits and group metadata).
pub const PENDING_APPENDS_MAX: usize = 10_000;

/// Generation of a group with no completed rebalance, and of a commit made outside any
/// group membership (an admin or `assign()` commit).
pub const NO_GENERATION: i32 = -1;

/// The `__consumer_offsets` partition that holds `group`: Kafka's
/// `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, with Java's
/// `String.hashCode` over UTF-16 code units.
pub fn offsets_partition_for(group: &str, partitions: u32) -> u32 {
    let hash = group.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive as u32 % partitions.max(1)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members; each new member in that wait extends it by as much again,
    /// up to the group's rebalance timeout (Kafka's InitialDelayedJoin).
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// Commit fencing by generation and member id (on in Kafka).
    pub fencing: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            fencing: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroup {
    pub group: String,
    /// Empty for a member that has none yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in the member's preference order.
    pub protocols: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRequest {
    Join(JoinGroup),
    Sync {
        group: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
        /// Non-empty only from the leader: every member's assignment.
        assignments: Vec<(String, Vec<u8>)>,
    },
    Heartbeat {
        group: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
    },
    /// LeaveGroup v3+: a batch of member identities (KIP-345).
    Leave {
        group: String,
        members: Vec<LeavingMember>,
    },
    OffsetCommit {
        group: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    OffsetFetch {
        group: String,
        partitions: Vec<TopicPartition>,
        /// KIP-447: fail with UNSTABLE_OFFSET_COMMIT while a transactional commit of a
        /// named partition is pending (the Java consumer sets it for read_committed).
        #[serde(default)]
        require_stable: bool,
    },
    /// TxnOffsetCommit, from a transactional producer: offsets that count only if its
    /// transaction commits. KIP-447 adds the consumer's group metadata, checked as an
    /// OffsetCommit's is.
    TxnOffsetCommit {
        group: String,
        transactional_id: String,
        producer_id: NonZeroU32,
        epoch: u16,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
    },
}

/// One member a LeaveGroup names (`MemberIdentity`). A static member gives its instance id,
/// which must map to its member id. An empty member id with an instance id removes that
/// static member whatever its member id (the admin client's `removeMembersFromConsumerGroup`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's (id, instance id, metadata), for the leader only.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

impl JoinResponse {
    /// A JoinGroup answered with `error` only (no generation, protocol or members).
    pub fn failed(member_id: &str, error: ErrorCode) -> JoinResponse {
        JoinResponse {
            error,
            generation: NO_GENERATION,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    Join(JoinResponse),
    Sync {
        error: ErrorCode,
        assignment: Vec<u8>,
    },
    Heartbeat {
        error: ErrorCode,
    },
    /// `error` is for the whole request (UNKNOWN_MEMBER_ID for a group that does not
    /// exist); each named member gets its own error.
    Leave {
        error: ErrorCode,
        members: Vec<(LeavingMember, ErrorCode)>,
    },
    OffsetCommit {
        error: ErrorCode,
        partitions: Vec<(TopicPartition, ErrorCode)>,
    },
    /// `None`: no committed offset for the partition.
    OffsetFetch {
        error: ErrorCode,
        offsets: Vec<(TopicPartition, Option<Offset>)>,
    },
    TxnOffsetCommit {
        error: ErrorCode,
        partitions: Vec<(TopicPartition, ErrorCode)>,
    },
}

/// What the coordinator writes to `__consumer_offsets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetsRecord {
    Commit {
        group: String,
        tp: TopicPartition,
        offset: Offset,
    },
    /// The group after a rebalance: generation, protocol, leader and members.
    Group {
        group: String,
        generation: i32,
        protocol: Option<String>,
        leader: Option<String>,
        members: Vec<MemberRecord>,
    },
}

/// One record of an offsets partition as a loading coordinator reads it: the
/// coordinator's own, a producer's transactional one, or a transaction's marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadedRecord {
    Plain(OffsetsRecord),
    Txn(NonZeroU32, OffsetsRecord),
    Marker { producer_id: NonZeroU32, commit: bool },
}

/// One member as the group metadata record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorOutput {
    Respond {
        to: NodeId,
        correlation: u64,
        response: GroupResponse,
    },
    /// Append `records` to the group's offsets partition and report the result with
    /// `handle_append_result(token, …)` once it is committed (or failed).
    Append {
        token: u64,
        group: String,
        records: Vec<OffsetsRecord>,
        /// A TxnOffsetCommit's: the records go in as this producer's (id, epoch)
        /// transactional batch.
        txn: Option<(NonZeroU32, u16)>,
    },
    /// A commit is durable and applied (what the checkers of fencing and of committed
    /// offsets read): who sent it under which generation, and the group's generation
    /// when the coordinator validated it, at `validated_at`.
    OffsetsStored {
        group: String,
        member_id: String,
        generation: i32,
        group_generation: i32,
        validated_at: Millis,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    /// A member is out of the group (its later commits must fail): session expiry,
    /// LeaveGroup, a missed join or sync, or a static member replaced (KIP-345).
    MemberRemoved {
        group: String,
        member_id: String,
        generation: i32,
        reason: &'static str,
    },
    /// A generation completed (the report's rebalance figures read these).
    Rebalanced {
        group: String,
        generation: i32,
        members: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A request parked until the group moves on (a join waiting for the rebalance, a sync
/// waiting for the leader's assignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    from: NodeId,
    correlation: u64,
}

#[derive(Clone, Debug)]
struct Member {
    instance_id: Option<String>,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    /// Session deadline; heartbeats, joins and syncs push it on.
    expires_at: Millis,
    awaiting_join: Option<Waiter>,
    awaiting_sync: Option<Waiter>,
}

#[derive(Clone, Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used (KIP-394).
    pending_members: BTreeMap<String, Millis>,
    /// Static members: instance id → member id.
    static_members: BTreeMap<String, String>,
    /// When the join phase of the current rebalance ends at the latest.
    join_deadline: Option<Millis>,
    /// Set while the first rebalance of an empty group waits (`group.initial.rebalance.delay.ms`):
    /// the join phase then waits for its deadline even when every member joined.
    initial_join: Option<InitialJoin>,
    /// Members that got their JoinGroup answer and have not sent SyncGroup yet; those still
    /// here at `sync_deadline` are removed and the group rebalances (Kafka's pending sync).
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Millis>,
    /// Committed offsets, each with the place in the offsets partition of the record that
    /// set it (Kafka's `CommitRecordMetadataAndOffset.appendedBatchOffset`), as the order
    /// of this coordinator's appends: a committed transaction's offsets replace only older
    /// ones (`olderThan`).
    offsets: BTreeMap<TopicPartition, (Offset, u64)>,
    /// Transactional offset commits per producer, until their transaction ends.
    pending_txn: BTreeMap<NonZeroU32, PendingTxnOffsets>,
}

/// A producer's transactional offsets in one group: appended ones, and partitions whose
/// append is still in flight (both make an OffsetFetch with `require_stable` wait).
#[derive(Clone, Debug, Default)]
struct PendingTxnOffsets {
    /// Appended offsets and where they were appended (as in `Group::offsets`).
    stored: BTreeMap<TopicPartition, (Offset, u64)>,
    in_flight: BTreeMap<TopicPartition, u32>,
    /// Who committed them, for the history (the last TxnOffsetCommit's sender).
    member_id: String,
    generation: i32,
    group_generation: i32,
    /// When the coordinator took that TxnOffsetCommit (`Millis(0)` for offsets a
    /// predecessor took, loaded from the log).
    validated_at: Millis,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            join_deadline: None,
            initial_join: None,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            offsets: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
        }
    }

    /// Kafka's `onOffsetCommitAppend`/`completePendingTxnOffsetCommit`: `offset`, whose
    /// record was appended at `at`, becomes the committed offset of `tp` unless a record
    /// appended later already set it. True if it did.
    fn store_offset(&mut self, tp: TopicPartition, offset: Offset, at: u64) -> bool {
        if self.offsets.get(&tp).is_some_and(|(_, current)| *current > at) {
            return false;
        }
        self.offsets.insert(tp, (offset, at));
        true
    }

    /// A transactional commit of `tp` is pending (KIP-447's unstable offset).
    fn unstable(&self, tp: &TopicPartition) -> bool {
        self.pending_txn.values().any(|p| p.stored.contains_key(tp) || p.in_flight.contains_key(tp))
    }
}

/// Kafka's InitialDelayedJoin: the wait now running and what is left of the rebalance
/// timeout after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InitialJoin {
    delay_ms: u64,
    remaining_ms: u64,
    /// A member was added during this wait: wait once more (if time is left).
    new_member_added: bool,
}

#[derive(Clone, Debug)]
enum PendingAppend {
    Commit {
        from: NodeId,
        correlation: u64,
        offsets: Vec<(TopicPartition, Offset)>,
        member_id: String,
        generation: i32,
        /// The group's generation and the time when the commit was validated: Kafka
        /// stores a validated commit once its append is durable, whatever happened since.
        group_generation: i32,
        validated_at: Millis,
    },
    /// The group metadata written after the leader's SyncGroup; the syncs wait for it.
    Group {
        generation: i32,
    },
    /// A static member's replacement in a stable group (KIP-345): the new member id is
    /// answered only once the group record naming it is durable, and undone if it fails
    /// (GroupCoordinator's `updateStaticMemberAndRebalance`).
    StaticReplacement {
        waiter: Waiter,
        generation: i32,
        new_id: String,
        old_id: String,
        instance: String,
    },
    TxnCommit {
        waiter: Waiter,
        producer_id: NonZeroU32,
        offsets: Vec<(TopicPartition, Offset)>,
    },
}

pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    pending_appends: BTreeMap<u64, (String, PendingAppend)>,
    next_token: u64,
    next_member: u64,
    /// Makes member ids unique across coordinator lives (a broker's incarnation).
    incarnation: u64,
    /// The broker this coordinator runs on, so that two brokers' coordinators never hand
    /// out the same member id (Kafka's ids carry a UUID).
    node: Option<u32>,
    outbox: VecDeque<CoordinatorOutput>,
}

mod membership;
mod offsets;

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig, incarnation: u64) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            pending_appends: BTreeMap::new(),
            next_token: 0,
            next_member: 0,
            incarnation,
            node: None,
            outbox: VecDeque::new(),
        }
    }

    /// The same coordinator, on broker `node` (its member ids name the broker).
    pub fn on_broker(mut self, node: u32) -> GroupCoordinator {
        self.node = Some(node);
        self
    }

    // ---- getters ----

    pub fn state(&self, group: &str) -> Option<GroupState> {
        self.groups.get(group).map(|g| g.state)
    }

    pub fn generation(&self, group: &str) -> Option<i32> {
        self.groups.get(group).map(|g| g.generation)
    }

    pub fn members(&self, group: &str) -> Vec<String> {
        self.groups.get(group).map(|g| g.members.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn committed(&self, group: &str, tp: TopicPartition) -> Option<Offset> {
        self.groups.get(group)?.offsets.get(&tp).map(|(offset, _)| *offset)
    }

    // ---- outputs ----

    pub fn poll_output(&mut self) -> Option<CoordinatorOutput> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |at: Millis| next = Some(next.map_or(at, |n| n.min(at)));
        for group in self.groups.values() {
            for at in group.join_deadline.into_iter().chain(group.sync_deadline) {
                consider(at);
            }
            for member in group.members.values() {
                if member.awaiting_join.is_none() {
                    consider(member.expires_at);
                }
            }
            for at in group.pending_members.values() {
                consider(*at);
            }
        }
        next
    }

    // ---- inputs ----

    pub fn handle_request(&mut self, now: Millis, from: NodeId, correlation: u64, request: GroupRequest) {
        let waiter = Waiter { from, correlation };
        match request {
            GroupRequest::Join(join) => self.handle_join(now, waiter, join),
            GroupRequest::Sync { group, member_id, group_instance_id, generation, assignments } => {
                self.handle_sync(now, waiter, &group, &member_id, group_instance_id.as_deref(), generation, assignments)
            }
            GroupRequest::Heartbeat { group, member_id, group_instance_id, generation } => {
                let error = self.heartbeat(now, &group, &member_id, group_instance_id.as_deref(), generation);
                self.respond(waiter, GroupResponse::Heartbeat { error });
            }
            GroupRequest::Leave { group, members } => self.handle_leave(now, waiter, &group, members),
            GroupRequest::OffsetCommit { group, member_id, group_instance_id, generation, offsets } => {
                self.handle_commit(now, waiter, &group, &member_id, group_instance_id.as_deref(), generation, offsets)
            }
            GroupRequest::OffsetFetch { group, partitions, require_stable } => {
                self.handle_offset_fetch(waiter, &group, partitions, require_stable)
            }
            GroupRequest::TxnOffsetCommit {
                group,
                producer_id,
                epoch,
                member_id,
                group_instance_id,
                generation,
                offsets,
                ..
            } => {
                let member = (member_id.as_str(), group_instance_id.as_deref(), generation);
                self.handle_txn_commit(now, waiter, &group, (producer_id, epoch), member, offsets)
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.expire_pending_members(now, &name);
            self.expire_sessions(now, &name);
            let sync_due = self.groups.get(&name).and_then(|g| g.sync_deadline).is_some_and(|at| now >= at);
            if sync_due {
                self.expire_pending_sync(now, &name);
            }
            let join_due = self.groups.get(&name).and_then(|g| g.join_deadline).is_some_and(|at| now >= at);
            if join_due && !self.extend_initial_join(now, &name) {
                self.complete_join(now, &name);
            }
            self.forget_if_unused(&name);
        }
    }

    /// A group with no members, no offsets and nothing in flight is dropped, so that
    /// failed joins under ever new names cannot grow the table.
    fn forget_if_unused(&mut self, name: &str) {
        let unused = self.groups.get(name).is_some_and(|g| {
            g.state == GroupState::Empty
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && g.offsets.is_empty()
                && g.pending_txn.is_empty()
        });
        if unused && !self.pending_appends.values().any(|(g, _)| g == name) {
            self.groups.remove(name);
        }
    }

    fn respond(&mut self, waiter: Waiter, response: GroupResponse) {
        self.outbox.push_back(CoordinatorOutput::Respond {
            to: waiter.from,
            correlation: waiter.correlation,
            response,
        });
    }

    fn append(&mut self, group: &str, records: Vec<OffsetsRecord>, pending: PendingAppend) -> Option<u64> {
        self.append_as(group, records, pending, None)
    }

    fn append_as(
        &mut self,
        group: &str,
        records: Vec<OffsetsRecord>,
        pending: PendingAppend,
        txn: Option<(NonZeroU32, u16)>,
    ) -> Option<u64> {
        if self.pending_appends.len() >= PENDING_APPENDS_MAX {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.pending_appends.insert(token, (group.to_string(), pending));
        self.outbox.push_back(CoordinatorOutput::Append { token, group: group.to_string(), records, txn });
        Some(token)
    }
}

#[cfg(test)]
mod tests;
