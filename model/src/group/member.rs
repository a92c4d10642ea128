//! The client side of the classic group protocol: what the Java client's
//! `ConsumerCoordinator` / `AbstractCoordinator` do for one consumer. It joins and syncs,
//! runs the leader's assignor, heartbeats, reacts to the coordinator's errors, leaves
//! when `max.poll.interval.ms` passes without a poll, and sends offset commits with its
//! generation and member id.
//!
//! Sans-IO: the host feeds `subscribe`, `poll`, `commit`, `handle_response` and
//! `handle_timeout`, and carries out `poll_output`: requests for the coordinator, and
//! the rebalance callbacks (`Revoked`, `Assigned`, `Lost`) for the application. Fetching
//! records is not here; it belongs to the consumer that owns this member.
//!
//! Rebalance protocol as in Kafka: with an eager assignor every owned partition is
//! revoked before joining; with a cooperative one (KIP-429) members keep what they own,
//! revoke only what the assignment takes away, and rejoin at once after revoking.

use super::assignor::{
    Assignor, GroupPartition, Member as AssignorMember, MemberId, PartitionsPerTopic, RebalanceProtocol,
};
use super::coordinator::{GroupRequest, GroupResponse, JoinGroup, JoinResponse, LeavingMember, NO_GENERATION};
use crate::error::ErrorCode;
use crate::types::{Millis, Offset, TopicPartition};
use std::collections::{BTreeSet, VecDeque};

/// Bound on commits in flight; beyond it a commit fails at once.
pub const COMMITS_IN_FLIGHT_MAX: usize = 1_000;
/// `AbstractCoordinator.JOIN_GROUP_TIMEOUT_LAPSE`: a JoinGroup may be parked for the whole
/// rebalance timeout, so the client waits that long plus this before giving up on it.
pub const JOIN_GROUP_TIMEOUT_LAPSE_MS: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    pub group: String,
    /// `group.instance.id`: a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (45 s since Kafka 3.0, KIP-735).
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms`, also sent as the rebalance timeout.
    pub max_poll_interval_ms: u64,
    /// `partition.assignment.strategy`, in preference order.
    pub assignors: Vec<Assignor>,
    /// `retry.backoff.ms` before a join is retried after a coordinator error.
    pub retry_backoff_ms: u64,
    /// `request.timeout.ms` for syncs, heartbeats and commits; a JoinGroup waits at least
    /// this long (see [`MemberConfig::join_timeout_ms`]).
    pub request_timeout_ms: u64,
}

impl MemberConfig {
    /// How long a JoinGroup may go unanswered: `max(request.timeout.ms, rebalance timeout +
    /// JOIN_GROUP_TIMEOUT_LAPSE)`, as `sendJoinGroupRequest` sets it, because the coordinator
    /// may hold the join for the whole rebalance timeout.
    pub fn join_timeout_ms(&self) -> u64 {
        self.request_timeout_ms.max(self.max_poll_interval_ms.saturating_add(JOIN_GROUP_TIMEOUT_LAPSE_MS))
    }
}

impl Default for MemberConfig {
    fn default() -> Self {
        MemberConfig {
            group: "group".into(),
            group_instance_id: None,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            // Kafka 3.x's default list.
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            retry_backoff_ms: 100,
            request_timeout_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOutput {
    /// A request for the group coordinator; its answer comes back with `correlation`.
    Send { correlation: u64, request: GroupRequest },
    /// `onPartitionsRevoked`: stop processing these, commit what was processed.
    Revoked(Vec<GroupPartition>),
    /// `onPartitionsAssigned`.
    Assigned(Vec<GroupPartition>),
    /// `onPartitionsLost`: the membership is gone; another member may own these already.
    Lost(Vec<GroupPartition>),
    /// The answer to `commit(…)` with that correlation id.
    CommitDone { correlation: u64, error: ErrorCode },
    /// FENCED_INSTANCE_ID and the like: the consumer cannot go on.
    Fatal(ErrorCode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Unjoined,
    Joining,
    Syncing,
    Stable,
    Fatal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    Join(u64),
    Sync(u64),
}

pub struct GroupMember {
    config: MemberConfig,
    topics: Vec<String>,
    partitions: PartitionsPerTopic,
    member_id: String,
    generation: i32,
    state: MemberState,
    in_flight: Option<(InFlight, Millis)>,
    heartbeat_in_flight: Option<(u64, Millis)>,
    /// Commits sent and not answered: (correlation, sent at). A join waits for them, as
    /// `onJoinPrepare` waits for pending commits.
    commits_in_flight: Vec<(u64, Millis)>,
    /// `close()` was called: the LeaveGroup goes once the revoke-time commits are answered.
    closing: bool,
    is_leader: bool,
    /// Partitions owned now (what the application may process).
    owned: BTreeSet<GroupPartition>,
    /// Bumped at every change of `owned`, so a client can keep what it derives from it.
    owned_version: u64,
    /// A rebalance was asked for; the join goes out at the next `poll` (as the Java
    /// client joins only from inside `poll`).
    rejoin_needed: bool,
    join_not_before: Millis,
    next_heartbeat: Millis,
    last_poll: Millis,
    next_correlation: u64,
    outbox: VecDeque<MemberOutput>,
}

mod join;

impl GroupMember {
    pub fn new(config: MemberConfig, now: Millis) -> GroupMember {
        GroupMember {
            config,
            topics: Vec::new(),
            partitions: PartitionsPerTopic::new(),
            member_id: String::new(),
            generation: NO_GENERATION,
            state: MemberState::Unjoined,
            in_flight: None,
            heartbeat_in_flight: None,
            commits_in_flight: Vec::new(),
            closing: false,
            is_leader: false,
            owned: BTreeSet::new(),
            owned_version: 0,
            rejoin_needed: false,
            join_not_before: now,
            next_heartbeat: Millis::MAX,
            last_poll: now,
            next_correlation: 0,
            outbox: VecDeque::new(),
        }
    }

    // ---- getters ----

    pub fn state(&self) -> MemberState {
        self.state
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn owned(&self) -> Vec<GroupPartition> {
        self.owned.iter().cloned().collect()
    }

    /// Changes whenever the owned partitions change.
    pub fn owned_version(&self) -> u64 {
        self.owned_version
    }

    /// See [`MemberConfig::join_timeout_ms`].
    pub fn join_timeout_ms(&self) -> u64 {
        self.config.join_timeout_ms()
    }

    /// The request timeout of what is in flight: a join's is longer than the rest.
    fn in_flight_timeout_ms(&self, in_flight: InFlight) -> u64 {
        match in_flight {
            InFlight::Join(_) => self.join_timeout_ms(),
            InFlight::Sync(_) => self.config.request_timeout_ms,
        }
    }

    fn protocol(&self) -> RebalanceProtocol {
        // Cooperative only when every configured assignor supports it (as the Java client).
        let all_cooperative =
            self.config.assignors.iter().all(|a| a.supported_protocols().contains(&RebalanceProtocol::Cooperative));
        if all_cooperative {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }

    // ---- outputs ----

    pub fn poll_output(&mut self) -> Option<MemberOutput> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.next_heartbeat.min(self.last_poll.plus(self.config.max_poll_interval_ms));
        if let Some((in_flight, sent)) = self.in_flight {
            next = next.min(sent.plus(self.in_flight_timeout_ms(in_flight)));
        }
        let sent_times = self.heartbeat_in_flight.map(|(_, sent)| sent).into_iter();
        for sent in sent_times.chain(self.commits_in_flight.iter().map(|(_, sent)| *sent)) {
            next = next.min(sent.plus(self.config.request_timeout_ms));
        }
        (next < Millis::MAX).then_some(next)
    }

    // ---- inputs ----

    pub fn subscribe(&mut self, topics: Vec<String>) {
        self.topics = topics;
        self.rejoin_needed = true;
    }

    /// Partition counts of every topic the group subscribes to (the leader assigns them
    /// all). The leader rebalances when they change, as the Java client's leader does.
    pub fn update_metadata(&mut self, partitions: PartitionsPerTopic) {
        if partitions != self.partitions && self.is_leader && self.state != MemberState::Unjoined {
            self.rejoin_needed = true;
        }
        self.partitions = partitions;
    }

    /// The application's `poll()`: resets the poll timer and, when a rebalance is due,
    /// prepares it from here (`onJoinPrepare`). Under the eager protocol the first such poll
    /// revokes everything; under the cooperative one it revokes the partitions of topics no
    /// longer subscribed to. The host commits in its `Revoked` handler, as
    /// `onPartitionsRevoked` does, and the join goes out at a later poll, once no commit is
    /// in flight.
    pub fn poll(&mut self, now: Millis) {
        self.last_poll = now;
        if self.state == MemberState::Fatal {
            return;
        }
        if self.closing {
            return self.maybe_leave();
        }
        let due = self.in_flight.is_none()
            && (self.rejoin_needed || self.state == MemberState::Unjoined)
            && now >= self.join_not_before
            && !self.topics.is_empty();
        if !due {
            return;
        }
        if self.protocol() == RebalanceProtocol::Eager && !self.owned.is_empty() {
            return self.revoke_all();
        }
        if self.protocol() == RebalanceProtocol::Cooperative && self.revoke_unsubscribed() {
            return;
        }
        if self.commits_in_flight.is_empty() {
            self.start_join(now);
        }
    }

    /// Resets the poll timer only (`max.poll.interval.ms`), without the rebalance steps a
    /// `poll` takes: a poll that first runs the application's rebalance callbacks.
    pub fn poll_timer_reset(&mut self, now: Millis) {
        self.last_poll = now;
    }

    /// Sends an OffsetCommit for `offsets` under the current generation; the answer comes
    /// as `CommitDone` with the returned correlation id. Like the Java client, a member
    /// that is not stable does not send: the commit fails at once (REBALANCE_IN_PROGRESS
    /// while it rejoins, ILLEGAL_GENERATION when it is out of the group).
    pub fn commit(&mut self, now: Millis, offsets: Vec<(TopicPartition, Offset)>) -> u64 {
        let correlation = self.next_id();
        let local_error = match self.state {
            MemberState::Stable if self.commits_in_flight.len() < COMMITS_IN_FLIGHT_MAX => None,
            MemberState::Stable => Some(ErrorCode::RequestTimedOut),
            MemberState::Joining | MemberState::Syncing => Some(ErrorCode::RebalanceInProgress),
            MemberState::Unjoined | MemberState::Fatal => Some(ErrorCode::IllegalGeneration),
        };
        if let Some(error) = local_error {
            self.outbox.push_back(MemberOutput::CommitDone { correlation, error });
            return correlation;
        }
        let request = GroupRequest::OffsetCommit {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            generation: self.generation,
            offsets,
        };
        self.commits_in_flight.push((correlation, now));
        self.outbox.push_back(MemberOutput::Send { correlation, request });
        correlation
    }

    /// `close()`: revokes everything first (`onLeavePrepare`, where the host commits),
    /// then — at the next `poll` or timeout, once those commits are answered — a dynamic
    /// member leaves the group; a static one just stops (its session expires, or its
    /// restart takes its place — KIP-345).
    pub fn close(&mut self) {
        self.revoke_all();
        self.closing = true;
        self.rejoin_needed = false;
    }

    fn maybe_leave(&mut self) {
        if !self.commits_in_flight.is_empty() || self.state == MemberState::Unjoined {
            return;
        }
        if self.state != MemberState::Fatal && self.config.group_instance_id.is_none() && !self.member_id.is_empty() {
            self.send_leave();
        }
        self.state = MemberState::Unjoined;
        self.in_flight = None;
        self.next_heartbeat = Millis::MAX;
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.state == MemberState::Fatal {
            return;
        }
        if let Some((in_flight, sent)) = self.in_flight {
            // No answer in time (a JoinGroup only after join_timeout_ms): the request is
            // given up as a disconnect and the member rejoins after retry.backoff.ms, keeping
            // its member id and generation (joinGroupIfNeeded's retriable-failure path).
            if now.since(sent) >= self.in_flight_timeout_ms(in_flight) {
                self.in_flight = None;
                self.back_off_and_rejoin(now);
            }
        }
        self.expire_commits(now);
        if self.closing {
            self.maybe_leave();
        }
        let in_group = matches!(self.state, MemberState::Stable | MemberState::Syncing);
        if in_group && !self.closing && now.since(self.last_poll) > self.config.max_poll_interval_ms {
            self.poll_interval_exceeded(now);
        }
        // A heartbeat (or its answer) lost on the way is given up after the request
        // timeout, so the next one goes; otherwise the session would quietly expire.
        if self.heartbeat_in_flight.is_some_and(|(_, sent)| now.since(sent) >= self.config.request_timeout_ms) {
            self.heartbeat_in_flight = None;
        }
        if now >= self.next_heartbeat && self.heartbeat_in_flight.is_none() && self.member_id_known() {
            self.send_heartbeat(now);
        }
    }

    pub fn handle_response(&mut self, now: Millis, correlation: u64, response: GroupResponse) {
        match response {
            GroupResponse::Join(join) => self.handle_join_response(now, correlation, join),
            GroupResponse::Sync { error, assignment } => self.handle_sync_response(now, correlation, error, assignment),
            GroupResponse::Heartbeat { error } => self.handle_heartbeat_response(now, correlation, error),
            GroupResponse::OffsetCommit { error, .. } => self.handle_commit_response(correlation, error),
            GroupResponse::Leave { .. } | GroupResponse::OffsetFetch { .. } | GroupResponse::TxnOffsetCommit { .. } => {
            }
        }
    }

    // ---- helpers ----

    fn next_id(&mut self) -> u64 {
        self.next_correlation += 1;
        self.next_correlation
    }

    fn member_id_known(&self) -> bool {
        !self.member_id.is_empty() && matches!(self.state, MemberState::Stable | MemberState::Syncing)
    }

    /// LeaveGroup v3+ names the member by member id and instance id (`maybeLeaveGroup`).
    fn send_leave(&mut self) {
        let correlation = self.next_id();
        let leaving = LeavingMember {
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        };
        let request = GroupRequest::Leave { group: self.config.group.clone(), members: vec![leaving] };
        self.outbox.push_back(MemberOutput::Send { correlation, request });
    }

    fn send_heartbeat(&mut self, now: Millis) {
        let correlation = self.next_id();
        let request = GroupRequest::Heartbeat {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            generation: self.generation,
        };
        self.heartbeat_in_flight = Some((correlation, now));
        self.next_heartbeat = now.plus(self.config.heartbeat_interval_ms);
        self.outbox.push_back(MemberOutput::Send { correlation, request });
    }

    fn handle_heartbeat_response(&mut self, now: Millis, correlation: u64, error: ErrorCode) {
        if self.heartbeat_in_flight.map(|(c, _)| c) != Some(correlation) {
            return;
        }
        self.heartbeat_in_flight = None;
        match error {
            ErrorCode::None => {}
            // The join waits for the application's next poll; only a stable member acts
            // on it (a joining one is rebalancing already).
            ErrorCode::RebalanceInProgress if self.state == MemberState::Stable => self.rejoin_needed = true,
            ErrorCode::RebalanceInProgress => {}
            // `generationUnchanged()`: an answer about a membership already given up (a
            // rejoin is under way) must not undo the new join.
            ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId if !self.member_id_known() => {}
            ErrorCode::IllegalGeneration => self.lose_generation(false),
            ErrorCode::UnknownMemberId => self.lose_generation(true),
            ErrorCode::FencedInstanceId | ErrorCode::GroupMaxSizeReached => self.fatal(error),
            // NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, timeouts: the coordinator moved
            // or is away; keep the generation and heartbeat again after a backoff (a
            // coordinator failover costs no rebalance).
            _ => self.next_heartbeat = now.plus(self.config.retry_backoff_ms),
        }
    }

    fn expire_commits(&mut self, now: Millis) {
        let timeout = self.config.request_timeout_ms;
        while let Some(index) = self.commits_in_flight.iter().position(|(_, sent)| now.since(*sent) >= timeout) {
            let (correlation, _) = self.commits_in_flight.remove(index);
            self.outbox.push_back(MemberOutput::CommitDone { correlation, error: ErrorCode::RequestTimedOut });
        }
    }

    fn handle_commit_response(&mut self, correlation: u64, error: ErrorCode) {
        let Some(index) = self.commits_in_flight.iter().position(|(c, _)| *c == correlation) else {
            // Answered already (timed out locally).
            return;
        };
        self.commits_in_flight.remove(index);
        self.outbox.push_back(MemberOutput::CommitDone { correlation, error });
        match error {
            // CommitFailedException: the member is out of the group and must rejoin — unless
            // it already knows and rejoins (generationUnchanged()).
            ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId if !self.member_id_known() => {}
            ErrorCode::IllegalGeneration => self.lose_generation(false),
            ErrorCode::UnknownMemberId => self.lose_generation(true),
            ErrorCode::RebalanceInProgress => self.rejoin_needed = true,
            ErrorCode::FencedInstanceId => self.fatal(error),
            _ => {}
        }
    }

    /// `max.poll.interval.ms` passed without a poll: the member leaves (a dynamic one
    /// tells the coordinator), and its partitions are lost.
    fn poll_interval_exceeded(&mut self, now: Millis) {
        if self.config.group_instance_id.is_none() {
            self.send_leave();
        }
        // resetGenerationOnLeaveGroup: a static member too comes back without a member id
        // and takes its own place as a replacement.
        self.lose_generation(true);
        self.join_not_before = now;
    }

    /// The generation is gone: the owned partitions are lost, and (for an unknown
    /// member) the member id too.
    fn lose_generation(&mut self, forget_member_id: bool) {
        if !self.owned.is_empty() {
            let lost: Vec<GroupPartition> = self.take_owned().into_iter().collect();
            self.outbox.push_back(MemberOutput::Lost(lost));
        }
        self.generation = NO_GENERATION;
        self.is_leader = false;
        if forget_member_id {
            self.member_id.clear();
        }
        self.state = MemberState::Unjoined;
        self.in_flight = None;
        // A heartbeat still on the way is about the old membership.
        self.heartbeat_in_flight = None;
        self.next_heartbeat = Millis::MAX;
        self.rejoin_needed = true;
    }

    fn back_off_and_rejoin(&mut self, now: Millis) {
        if self.state != MemberState::Stable {
            self.state = MemberState::Unjoined;
        }
        self.rejoin_needed = true;
        self.join_not_before = now.plus(self.config.retry_backoff_ms);
    }

    fn fatal(&mut self, error: ErrorCode) {
        // onLeavePrepare on a fatal error reports the partitions lost, not revoked.
        if !self.owned.is_empty() {
            let lost: Vec<GroupPartition> = self.take_owned().into_iter().collect();
            self.outbox.push_back(MemberOutput::Lost(lost));
        }
        self.state = MemberState::Fatal;
        self.in_flight = None;
        self.next_heartbeat = Millis::MAX;
        self.outbox.push_back(MemberOutput::Fatal(error));
    }

    fn take_owned(&mut self) -> BTreeSet<GroupPartition> {
        self.owned_version += 1;
        std::mem::take(&mut self.owned)
    }

    fn revoke_all(&mut self) {
        if !self.owned.is_empty() {
            let revoked: Vec<GroupPartition> = self.take_owned().into_iter().collect();
            self.outbox.push_back(MemberOutput::Revoked(revoked));
        }
    }

    /// Cooperative `onJoinPrepare`: partitions of topics the member no longer subscribes to
    /// are revoked before it rejoins, so the join does not claim them and another member can
    /// be given them in this rebalance. True if something was revoked.
    fn revoke_unsubscribed(&mut self) -> bool {
        let gone: Vec<GroupPartition> =
            self.owned.iter().filter(|p| !self.topics.contains(&p.topic)).cloned().collect();
        if gone.is_empty() {
            return false;
        }
        for partition in &gone {
            self.owned.remove(partition);
        }
        self.owned_version += 1;
        self.outbox.push_back(MemberOutput::Revoked(gone));
        true
    }

    fn join_request(&self) -> GroupRequest {
        let owned: Vec<GroupPartition> = self.owned.iter().cloned().collect();
        let metadata = encode_subscription(&self.topics, &owned, self.generation);
        GroupRequest::Join(JoinGroup {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.max_poll_interval_ms,
            protocol_type: "consumer".into(),
            protocols: self.config.assignors.iter().map(|a| (a.name().to_string(), metadata.clone())).collect(),
        })
    }

    fn handle_join_response(&mut self, now: Millis, correlation: u64, join: JoinResponse) {
        if self.in_flight.map(|(f, _)| f) != Some(InFlight::Join(correlation)) {
            return;
        }
        self.in_flight = None;
        self.on_join(now, join);
    }
}

/// Subscription metadata as this simulator's members send it (Kafka's
/// `ConsumerProtocolSubscription` carries the same three things): topics, owned
/// partitions and their generation. Topic names never hold `,` `:` or `|`.
pub fn encode_subscription(topics: &[String], owned: &[GroupPartition], generation: i32) -> Vec<u8> {
    let owned: Vec<String> = owned.iter().map(|p| format!("{}:{}", p.topic, p.partition)).collect();
    format!("{}|{}|{}", topics.join(","), owned.join(","), generation).into_bytes()
}

/// The inverse of [`encode_subscription`]; anything unreadable reads as empty.
pub fn decode_subscription(member_id: &str, instance: Option<String>, metadata: &[u8]) -> AssignorMember {
    let text = String::from_utf8_lossy(metadata);
    let mut parts = text.split('|');
    let topics = parts.next().unwrap_or("").split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
    let owned = decode_partitions(parts.next().unwrap_or(""));
    let generation = parts.next().and_then(|g| g.parse::<i32>().ok()).filter(|g| *g >= 0);
    AssignorMember { member_id: MemberId::new(member_id), group_instance_id: instance, topics, owned, generation }
}

pub fn encode_assignment(partitions: &[GroupPartition]) -> Vec<u8> {
    let items: Vec<String> = partitions.iter().map(|p| format!("{}:{}", p.topic, p.partition)).collect();
    items.join(",").into_bytes()
}

pub fn decode_partitions(text: &str) -> Vec<GroupPartition> {
    text.split(',')
        .filter_map(|item| {
            let (topic, partition) = item.rsplit_once(':')?;
            Some(GroupPartition::new(topic, partition.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
