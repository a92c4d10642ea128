//! The consumer client and the application loop around it: subscribe, the poll loop
//! with `max.poll.records` and a processing time per record, the commit modes users
//! really use, `auto.offset.reset`, fetching up to the high watermark, and a sink that
//! records what the application processed.
//!
//! Group membership is the [`GroupMember`] state machine (the Java client's
//! `ConsumerCoordinator`); this actor finds the coordinator, moves the member's requests,
//! keeps fetch positions and runs the application: poll, process each record, commit as
//! the configured mode says. Call order as for every actor: `handle_*`, then drain
//! `poll_action`, then arm a timer for `poll_timeout`.

use crate::action::Action;
use crate::broker::groups::error_response;
use crate::error::ErrorCode;
use crate::group::assignor::{GroupPartition, PartitionsPerTopic};
use crate::group::coordinator::{GroupRequest, GroupResponse};
use crate::group::member::{GroupMember, MemberConfig, MemberOutput, MemberState};
use crate::group::GroupEvent;
use crate::log::{committed_records, LogEntry};
use crate::messages::{ConsumerFetchPartition, ConsumerFetchPartitionResponse, Message, PartitionLeader, TopicMeta};
use crate::tpmap::TpMap;
use crate::types::{Millis, NodeId, Offset, TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Correlation ids of the consumer's own requests carry this bit; the member's do not.
const OWN: u64 = 1 << 48;
/// Bound on member requests held while no coordinator is known.
const HELD_MAX: usize = 64;
/// Records buffered per partition at most (`fetch.max.bytes` stands behind it).
const BUFFER_MAX: usize = 2_000;
/// `reconnect.backoff.ms`.
const RECONNECT_BACKOFF_MS: u64 = 50;

/// When the application commits, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum CommitMode {
    /// `enable.auto.commit` as librdkafka-based clients do it: a background timer commits
    /// the consumed position (records handed to the application, processed or not).
    Auto { interval_ms: u64 },
    /// `enable.auto.commit` as the Java client does it: each `poll()` commits, once the
    /// interval passed, the position of the records earlier polls returned.
    AutoInPoll { interval_ms: u64 },
    /// `commitSync()` after processing each batch.
    SyncAfter,
    /// `commitSync()` of the batch's end before processing it.
    SyncBefore,
    /// `commitAsync()` after processing each batch.
    AsyncAfter,
    /// The application drives the consumer itself (the madsim host's async API): it
    /// subscribes, polls, processes, commits and seeks when its own code says so, and
    /// its rebalance listener decides what is committed on a revoke.
    Manual,
}

/// A record `poll()` returned to an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolledRecord {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub write: crate::types::WriteId,
    pub key: Option<u32>,
}

/// A rebalance callback for an application's listener, in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebalance {
    /// `onPartitionsRevoked`.
    Revoked(Vec<TopicPartition>),
    /// `onPartitionsAssigned` (the partitions this sync added; may be none).
    Assigned(Vec<TopicPartition>),
    /// `onPartitionsLost`: the membership is gone; another member may own these.
    Lost(Vec<TopicPartition>),
}

/// What one application `poll()` got: the callbacks to run first, then the records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub rebalances: Vec<Rebalance>,
    pub records: Vec<PolledRecord>,
}

/// `auto.offset.reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
    None,
}

/// `isolation.level`: what a fetch returns of transactional data (KIP-98), spelt as
/// Kafka spells it (`read_committed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Everything below the high watermark, aborted transactions included (the default).
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, and nothing of an aborted transaction.
    ReadCommitted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub member: MemberConfig,
    /// Subscribed topics by name and id.
    pub topics: Vec<(String, TopicId)>,
    pub commit: CommitMode,
    /// `max.poll.records`.
    pub max_poll_records: usize,
    /// Time the application spends on each record.
    pub processing_ms: u64,
    pub auto_offset_reset: OffsetReset,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait_ms: u64,
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// The application's `poll(timeout)`: how long one poll waits for records.
    pub poll_timeout_ms: u64,
    /// `metadata.max.age.ms`.
    pub metadata_max_age_ms: u64,
    pub isolation_level: IsolationLevel,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            member: MemberConfig::default(),
            topics: Vec::new(),
            commit: CommitMode::AutoInPoll { interval_ms: 5_000 },
            max_poll_records: 500,
            processing_ms: 1,
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait_ms: 500,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            poll_timeout_ms: 100,
            metadata_max_age_ms: 300_000,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct PartitionState {
    /// Next offset to hand to the application; `None` until known.
    position: Option<Offset>,
    /// Next offset after the last record the application processed.
    processed: Option<Offset>,
    /// Fetched records from `position` on, each with whether the application gets it
    /// (markers and, for read_committed, aborted records take an offset but are skipped).
    buffer: VecDeque<(LogEntry, bool)>,
    /// Skipped entries that follow a record handed to the application: once that record
    /// (the key) is processed, the processed offset moves past them (the value), as the
    /// position does, so a commit after processing covers trailing markers.
    skip_through: BTreeMap<Offset, Offset>,
    /// A position lookup is in flight (OffsetFetch or ListOffsets).
    looking_up: bool,
}

#[derive(Clone, Debug)]
enum App {
    /// Ready to call `poll()` at this time.
    Idle {
        at: Millis,
    },
    /// In `poll()`, waiting for records until `until`.
    Polling {
        until: Millis,
    },
    /// Processing a batch: record `index` completes at `done_at`.
    Processing {
        batch: Vec<(TopicPartition, Offset, LogEntry)>,
        index: usize,
        done_at: Millis,
    },
    /// Waiting for a `commitSync` to be answered; then process `batch` (or poll).
    Committing {
        correlation: u64,
        batch: Option<Vec<(TopicPartition, Offset, LogEntry)>>,
    },
    Stopped,
    /// `CommitMode::Manual`: the application's own code calls in.
    External,
}

#[derive(Clone, Debug)]
enum Own {
    Metadata,
    FindCoordinator,
    OffsetFetch,
    ListOffsets,
    Fetch { broker: NodeId },
}

pub struct Consumer {
    id: NodeId,
    config: ConsumerConfig,
    bootstrap: Vec<NodeId>,
    next_bootstrap: usize,
    member: GroupMember,
    coordinator: Option<NodeId>,
    /// Member requests waiting for a coordinator, and those in flight to it.
    held: VecDeque<(u64, GroupRequest)>,
    member_in_flight: BTreeMap<u64, GroupRequest>,
    /// The consumer's own requests: what, to whom, when.
    /// By correlation id, ascending (ids only grow, so a push keeps the order).
    own_in_flight: Vec<(u64, (Own, NodeId, Millis))>,
    /// `reconnect.backoff.ms`: a broker whose connection was refused is left alone until then.
    backoff: BTreeMap<NodeId, Millis>,
    next_own: u64,
    /// Partitions per topic name, from the last Metadata answers.
    partition_counts: BTreeMap<String, u32>,
    /// Every topic name this consumer has met (subscribed to now or before, or seen in
    /// metadata): an assignment or revocation names topics, and the partitions of a topic
    /// no longer subscribed to must still be found to be revoked.
    topic_ids: BTreeMap<String, TopicId>,
    /// Bumped at every change of `topic_ids`.
    topic_ids_version: u64,
    /// `owned_tps()` as of (member's owned version, topic ids version): a poll looks at
    /// the owned partitions every time, they change only at a rebalance.
    owned_cache: Option<(u64, u64)>,
    owned_tps: Vec<TopicPartition>,
    /// Whether a poll may find records: set when a fetch buffers entries, a position is
    /// set or the owned partitions change; cleared by a poll that took everything it
    /// could. (A poll runs after every input, and most find nothing.)
    takeable: bool,
    leaders: TpMap<NodeId>,
    /// The newest leader epoch seen per partition (KIP-320: older metadata is ignored).
    leader_epochs: TpMap<crate::types::LeaderEpoch>,
    metadata_fetched_at: Option<Millis>,
    /// Earliest next metadata request, FindCoordinator, and position lookup: each backs
    /// off on its own (`retry.backoff.ms`), so one failing kind cannot starve the others.
    metadata_retry_at: Millis,
    coordinator_retry_at: Millis,
    lookup_retry_at: Millis,
    parts: TpMap<PartitionState>,
    app: App,
    next_auto_commit: Millis,
    /// Where the next `poll()` starts taking records (round-robin over partitions).
    next_partition: usize,
    /// What each commit in flight carries, for the history.
    commits: BTreeMap<u64, Vec<(TopicPartition, Offset)>>,
    /// `CommitMode::Manual`: callbacks for the application's next poll.
    rebalances: Vec<Rebalance>,
    /// `CommitMode::Manual`: the positions of partitions revoked since the last poll,
    /// and of those the last poll's callbacks revoked: a `commitSync()` in
    /// `onPartitionsRevoked` still commits them, as the Java client's subscription state
    /// keeps them until the callback returned.
    revoking: Vec<(TopicPartition, Offset)>,
    revoked_in_listener: Vec<(TopicPartition, Offset)>,
    outbox: VecDeque<Action>,
}

impl Consumer {
    pub fn new(id: NodeId, config: ConsumerConfig, bootstrap: Vec<NodeId>, now: Millis) -> Consumer {
        let mut member = GroupMember::new(config.member.clone(), now);
        // An application subscribes itself (`app_subscribe`).
        if config.commit != CommitMode::Manual {
            member.subscribe(config.topics.iter().map(|(name, _)| name.clone()).collect());
        }
        let interval = match config.commit {
            CommitMode::Auto { interval_ms } | CommitMode::AutoInPoll { interval_ms } => interval_ms,
            _ => u64::MAX / 4,
        };
        Consumer {
            id,
            bootstrap,
            next_bootstrap: 0,
            member,
            coordinator: None,
            held: VecDeque::new(),
            member_in_flight: BTreeMap::new(),
            own_in_flight: Vec::new(),
            backoff: BTreeMap::new(),
            next_own: 0,
            partition_counts: BTreeMap::new(),
            topic_ids: config.topics.iter().cloned().collect(),
            topic_ids_version: 0,
            owned_cache: None,
            owned_tps: Vec::new(),
            takeable: false,
            leaders: TpMap::new(),
            leader_epochs: TpMap::new(),
            metadata_fetched_at: None,
            metadata_retry_at: now,
            coordinator_retry_at: now,
            lookup_retry_at: now,
            parts: TpMap::new(),
            app: if config.commit == CommitMode::Manual { App::External } else { App::Idle { at: now } },
            next_auto_commit: now.plus(interval),
            next_partition: 0,
            commits: BTreeMap::new(),
            rebalances: Vec::new(),
            revoking: Vec::new(),
            revoked_in_listener: Vec::new(),
            outbox: VecDeque::new(),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The application drives this consumer (`CommitMode::Manual`).
    fn manual(&self) -> bool {
        self.config.commit == CommitMode::Manual
    }

    pub fn group(&self) -> &str {
        &self.config.member.group
    }

    pub fn member_id(&self) -> &str {
        self.member.member_id()
    }

    pub fn generation(&self) -> i32 {
        self.member.generation()
    }

    /// How far each owned partition is done: processed, or else consumed (for lag
    /// figures and the end of a run). An application (`CommitMode::Manual`) is done only
    /// with what it wrote to its sink; it starts done up to where it started reading.
    pub fn positions(&self) -> Vec<(TopicPartition, Option<Offset>)> {
        let manual = self.manual();
        self.parts.iter().map(|(tp, p)| (*tp, if manual { p.processed } else { p.processed.or(p.position) })).collect()
    }

    /// The position of every owned partition that has one: what `commitSync()` with no
    /// offsets commits, and what an exactly-once application commits in its transaction.
    pub fn app_positions(&self) -> Vec<(TopicPartition, Offset)> {
        self.consumed_offsets()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.member.poll_timeout().unwrap_or(Millis::MAX);
        match &self.app {
            App::Idle { at } => next = next.min(*at),
            App::Polling { until } => next = next.min(*until),
            App::Processing { done_at, .. } => next = next.min(*done_at),
            App::Committing { .. } | App::Stopped | App::External => {}
        }
        if matches!(self.config.commit, CommitMode::Auto { .. }) {
            next = next.min(self.next_auto_commit);
        }
        for (_, (_, _, sent)) in &self.own_in_flight {
            next = next.min(sent.plus(self.config.request_timeout_ms + self.config.fetch_max_wait_ms));
        }
        // Retries wait for their backoff, but only while nothing of their kind is in flight
        // (an answer, or the request timeout above, moves them on otherwise).
        if self.metadata_fetched_at.is_none() && !self.in_flight(|o| matches!(o, Own::Metadata)) {
            next = next.min(self.metadata_retry_at);
        }
        if self.coordinator.is_none() && !self.in_flight(|o| matches!(o, Own::FindCoordinator)) {
            next = next.min(self.coordinator_retry_at);
        }
        let lookup_due = self.parts.values().any(|p| p.position.is_none() && !p.looking_up);
        if lookup_due && self.member.state() == MemberState::Stable && self.coordinator.is_some() {
            next = next.min(self.lookup_retry_at);
        }
        // A fetch held back by a reconnect backoff goes when it ends (expired entries are
        // dropped on every input).
        for until in self.backoff.values() {
            next = next.min(*until);
        }
        if let Some(at) = self.metadata_fetched_at {
            next = next.min(at.plus(self.config.metadata_max_age_ms));
        }
        (next < Millis::MAX).then_some(next)
    }

    /// `close()`: commit what the mode commits, then leave the group.
    pub fn close(&mut self, now: Millis) {
        self.member.close();
        self.drain_member(now);
        self.app = App::Stopped;
        self.drain_member(now);
    }

    // ---- inputs ----

    pub fn handle_timeout(&mut self, now: Millis) {
        self.expire_own(now);
        self.member.handle_timeout(now);
        self.drain_member(now);
        if matches!(self.config.commit, CommitMode::Auto { .. }) && now >= self.next_auto_commit {
            self.next_auto_commit = now.plus(self.auto_interval());
            let consumed = self.consumed_offsets();
            if !consumed.is_empty() {
                self.commit(now, consumed);
            }
        }
        if self.metadata_fetched_at.is_some_and(|at| now.since(at) >= self.config.metadata_max_age_ms) {
            self.metadata_fetched_at = None;
        }
        self.run(now);
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        // An answer to a request of this consumer's own counts only if it is still awaited.
        let awaited = match &msg {
            Message::MetadataResponse { correlation, .. }
            | Message::FindCoordinatorResponse { correlation, .. }
            | Message::ConsumerFetchResponse { correlation, .. }
            | Message::ListOffsetsResponse { correlation, .. } => self.take_own(*correlation).is_some(),
            _ => true,
        };
        if awaited {
            match msg {
                Message::MetadataResponse { topics, partitions, .. } => self.apply_metadata(now, topics, partitions),
                Message::FindCoordinatorResponse { error: ErrorCode::None, coordinator: Some(coordinator), .. } => {
                    self.coordinator = Some(coordinator);
                    self.send_held(now);
                }
                Message::FindCoordinatorResponse { .. } => {
                    self.coordinator_retry_at = now.plus(self.config.retry_backoff_ms)
                }
                Message::GroupResponse { correlation, response } => {
                    self.handle_group_response(now, correlation, *response)
                }
                Message::ConsumerFetchResponse { partitions, .. } => self.handle_fetch_response(now, partitions),
                Message::ListOffsetsResponse { partitions, .. } => self.handle_list_offsets(now, partitions),
                Message::ConnectionClosed => self.handle_connection_closed(now, from),
                _ => {}
            }
        }
        self.run(now);
    }

    fn handle_connection_closed(&mut self, now: Millis, peer: NodeId) {
        let lost: Vec<u64> = self.own_in_flight.iter().filter(|(_, (_, to, _))| *to == peer).map(|(c, _)| *c).collect();
        if self.backoff.len() < self.bootstrap.len().max(1) * 4 || self.backoff.contains_key(&peer) {
            self.backoff.insert(peer, now.plus(RECONNECT_BACKOFF_MS));
        }
        for correlation in lost {
            self.fail_own(now, correlation);
        }
        if self.coordinator == Some(peer) {
            // The member's requests to it end as a disconnect: NOT_COORDINATOR makes the
            // member retry and this consumer look the coordinator up again.
            self.coordinator = None;
            let in_flight = std::mem::take(&mut self.member_in_flight);
            for (correlation, request) in in_flight {
                let response = error_response(&request, ErrorCode::NotCoordinator);
                self.member.handle_response(now, correlation, response);
            }
            self.drain_member(now);
        }
    }

    fn handle_group_response(&mut self, now: Millis, correlation: u64, response: GroupResponse) {
        if correlation & OWN != 0 {
            if let Some(Own::OffsetFetch) = self.take_own(correlation) {
                self.handle_offset_fetch(now, response);
            }
            return;
        }
        if self.member_in_flight.remove(&correlation).is_none() {
            return;
        }
        if coordinator_moved(&response) {
            self.coordinator = None;
        }
        self.member.handle_response(now, correlation, response);
        self.drain_member(now);
    }

    // ---- the application loop ----

    fn run(&mut self, now: Millis) {
        self.backoff.retain(|_, until| *until > now);
        self.ensure_metadata(now);
        self.ensure_coordinator(now);
        self.lookup_positions(now);
        // Bounded: each pass either ends or moves the application one step on.
        for _ in 0..4 {
            // By reference: a batch in hand is up to `max.poll.records` entries, and this
            // runs after every input.
            match self.app {
                App::Idle { at } if now >= at => self.poll(now),
                App::Polling { until } => {
                    if !self.deliver(now) && now >= until {
                        self.app = App::Idle { at: now };
                    }
                    if matches!(self.app, App::Polling { .. }) {
                        break;
                    }
                }
                App::Processing { done_at, .. } if now >= done_at => {
                    // `process` always sets the next state.
                    if let App::Processing { batch, index, .. } = std::mem::replace(&mut self.app, App::Stopped) {
                        self.process(now, batch, index);
                    }
                }
                _ => break,
            }
        }
        self.ensure_fetches(now);
    }

    /// The application calls `poll()`.
    fn poll(&mut self, now: Millis) {
        self.member.poll(now);
        self.drain_member(now);
        if let CommitMode::AutoInPoll { interval_ms } = self.config.commit {
            if now >= self.next_auto_commit {
                self.next_auto_commit = now.plus(interval_ms);
                let consumed = self.consumed_offsets();
                if !consumed.is_empty() && self.member.state() == MemberState::Stable {
                    self.commit(now, consumed);
                }
            }
        }
        self.app = App::Polling { until: now.plus(self.config.poll_timeout_ms) };
        self.deliver(now);
    }

    /// Hands buffered records to the application, if any; returns whether it did.
    fn deliver(&mut self, now: Millis) -> bool {
        if self.member.state() != MemberState::Stable {
            return false;
        }
        let (batch, skipped_only) = self.take_batch();
        if batch.is_empty() {
            if skipped_only && matches!(self.config.commit, CommitMode::SyncAfter | CommitMode::AsyncAfter) {
                // A poll that returned only markers (or aborted records) moved the
                // position; the application's commit after the (empty) poll covers it.
                let offsets = self.processed_offsets();
                self.commit(now, offsets);
            }
            return false;
        }
        if self.config.commit == CommitMode::SyncBefore {
            let offsets = self.consumed_offsets();
            let correlation = self.send_commit(now, offsets);
            self.app = App::Committing { correlation, batch: Some(batch) };
            self.drain_member(now);
        } else {
            let done_at = now.plus(self.config.processing_ms);
            self.app = App::Processing { batch, index: 0, done_at };
        }
        true
    }

    /// Takes up to `max.poll.records` buffered records, moving the positions past them
    /// and past the skipped entries (markers, aborted records) among and after them;
    /// also whether skipped entries alone moved a processed offset.
    fn take_batch(&mut self) -> (Vec<(TopicPartition, Offset, LogEntry)>, bool) {
        let mut batch = Vec::new();
        let mut skipped_only = false;
        self.refresh_owned_tps();
        // Round-robin over the partitions, as the Java fetcher drains completed fetches
        // in turn: a partition with a deep backlog must not starve the others.
        let owned_count = self.owned_tps.len();
        let start = if owned_count == 0 { 0 } else { self.next_partition % owned_count };
        if owned_count > 0 {
            self.next_partition = self.next_partition.wrapping_add(1);
        }
        if !self.takeable {
            return (batch, skipped_only);
        }
        let owned = std::mem::take(&mut self.owned_tps);
        // Sized once (the buffers may also hold entries that are skipped, not delivered).
        let buffered: usize = owned.iter().filter_map(|tp| self.parts.get(tp)).map(|p| p.buffer.len()).sum();
        batch.reserve(buffered.min(self.config.max_poll_records));
        for tp in owned[start..].iter().chain(&owned[..start]).copied() {
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            let mut last_delivered = None;
            while let Some(position) = part.position {
                let Some((_, deliver)) = part.buffer.front() else { break };
                if *deliver && batch.len() >= self.config.max_poll_records {
                    break;
                }
                let Some((entry, deliver)) = part.buffer.pop_front() else { break };
                part.position = Some(Offset(position.0 + 1));
                if deliver {
                    batch.push((tp, position, entry));
                    last_delivered = Some(position);
                } else if let Some(last) = last_delivered {
                    part.skip_through.insert(last, Offset(position.0 + 1));
                } else if part.processed == Some(position) {
                    part.processed = Some(Offset(position.0 + 1));
                    skipped_only = true;
                }
            }
        }
        self.owned_tps = owned;
        // Short of a full batch, every owned buffer was taken to its end.
        self.takeable = batch.len() >= self.config.max_poll_records;
        (batch, skipped_only)
    }

    fn process(&mut self, now: Millis, batch: Vec<(TopicPartition, Offset, LogEntry)>, index: usize) {
        let (tp, offset, entry) = batch[index];
        // A partition lost mid-batch keeps no entry: the record is still processed (the
        // application has it in hand), but its offset must not be committed later, when
        // the partition may be owned again from a newer committed offset.
        if let Some(part) = self.parts.get_mut(&tp) {
            part.processed = Some(part.skip_through.remove(&offset).unwrap_or(Offset(offset.0 + 1)));
        }
        self.event(GroupEvent::Processed { tp, offset, write: entry.record.write });
        if index + 1 < batch.len() {
            self.app = App::Processing { batch, index: index + 1, done_at: now.plus(self.config.processing_ms) };
            return;
        }
        match self.config.commit {
            CommitMode::SyncAfter => {
                let offsets = self.processed_offsets();
                let correlation = self.send_commit(now, offsets);
                self.app = App::Committing { correlation, batch: None };
                self.drain_member(now);
            }
            CommitMode::AsyncAfter => {
                let offsets = self.processed_offsets();
                self.commit(now, offsets);
                self.app = App::Idle { at: now };
            }
            _ => self.app = App::Idle { at: now },
        }
    }

    // ---- the application's own calls (`CommitMode::Manual`) ----

    /// `subscribe(topics)`: the member joins at the next poll.
    pub fn app_subscribe(&mut self, now: Millis, topics: Vec<(String, TopicId)>) {
        self.member.subscribe(topics.iter().map(|(name, _)| name.clone()).collect());
        self.topic_ids.extend(topics.iter().cloned());
        self.topic_ids_version += 1;
        self.config.topics = topics;
        // The leader needs the new topics' partition counts.
        self.metadata_fetched_at = None;
        self.run(now);
    }

    /// `poll()`: runs the group's rebalance steps that wait for a poll, then returns the
    /// callbacks due and up to `max.poll.records` buffered records of owned partitions.
    pub fn app_poll(&mut self, now: Millis) -> Polled {
        if !self.rebalances.is_empty() {
            // Callbacks that came between polls (a cooperative revoke with the SyncGroup
            // answer) run before the rejoin this poll would start, as in the Java client:
            // a commit in `onPartitionsRevoked` must still go out under this generation.
            self.member.poll_timer_reset(now);
            self.revoked_in_listener = std::mem::take(&mut self.revoking);
            return Polled { rebalances: std::mem::take(&mut self.rebalances), records: Vec::new() };
        }
        self.member.poll(now);
        self.drain_member(now);
        // The callbacks this poll hands over may commit what they revoke.
        self.revoked_in_listener = std::mem::take(&mut self.revoking);
        let records = match self.member.state() {
            MemberState::Stable => self.take_batch().0,
            _ => Vec::new(),
        };
        let records = records
            .into_iter()
            .map(|(tp, offset, entry)| PolledRecord { tp, offset, write: entry.record.write, key: entry.record.key })
            .collect();
        let polled = Polled { rebalances: std::mem::take(&mut self.rebalances), records };
        self.run(now);
        polled
    }

    /// `commitSync(offsets)` / `commitAsync(offsets)`; `None` commits the position of
    /// every owned partition (and of those revoked in the callback running now). The
    /// answer comes as a `CommitDone` event with the returned correlation id.
    pub fn app_commit(&mut self, now: Millis, offsets: Option<Vec<(TopicPartition, Offset)>>) -> u64 {
        let offsets = offsets.unwrap_or_else(|| {
            let mut offsets = self.consumed_offsets();
            offsets.extend(self.revoked_in_listener.iter().copied());
            offsets.sort();
            offsets.dedup_by_key(|(tp, _)| *tp);
            offsets
        });
        let correlation = self.commit(now, offsets);
        self.run(now);
        correlation
    }

    /// The rebalance callbacks the last poll handed over have returned: the partitions
    /// they revoked are gone, and a `commitSync()` from now on no longer commits them
    /// (the Java client drops them from its subscription state when the callback returns).
    pub fn app_listener_done(&mut self) {
        self.revoked_in_listener.clear();
    }

    /// `seek(tp, offset)`: the next poll returns records of `tp` from `offset` on. False
    /// if the consumer does not own `tp` (Java throws IllegalStateException).
    pub fn app_seek(&mut self, now: Millis, tp: TopicPartition, offset: Offset) -> bool {
        let group = self.group().to_string();
        let Some(part) = self.parts.get_mut(&tp) else { return false };
        let from = part.processed.or(part.position);
        part.position = Some(offset);
        self.takeable = true;
        part.processed = Some(offset);
        part.buffer.clear();
        part.skip_through.clear();
        part.looking_up = false;
        self.event(GroupEvent::PositionReset { group, tp, from, to: offset });
        self.run(now);
        true
    }

    /// Every owned partition's position is looked up again from the group's committed
    /// offsets (`seek(tp, committed(tp))` for each), as an exactly-once application does
    /// after a transaction that did not commit. A read_committed consumer's lookup waits
    /// out pending transactional commits (KIP-447), so it never starts from an offset
    /// that is about to move.
    pub fn app_refresh_positions(&mut self, now: Millis) {
        for part in self.parts.values_mut() {
            part.position = None;
            part.processed = None;
            part.buffer.clear();
            part.skip_through.clear();
            part.looking_up = false;
        }
        self.run(now);
    }

    /// The application wrote the record at `tp`/`offset` to its sink.
    /// A transaction that committed `offsets` (next offsets to read) with this consumer's
    /// group metadata has committed: what it read is processed (a transactional
    /// application's processing is its committed transaction, not a sink write).
    pub fn app_committed_in_txn(&mut self, offsets: &[(TopicPartition, Offset)]) {
        for (tp, next) in offsets {
            if let Some(part) = self.parts.get_mut(tp) {
                part.processed = Some(part.processed.map_or(*next, |p| p.max(*next)));
            }
        }
    }

    pub fn app_processed(&mut self, tp: TopicPartition, offset: Offset, write: crate::types::WriteId) {
        if let Some(part) = self.parts.get_mut(&tp) {
            let next = Offset(offset.0 + 1);
            part.processed = Some(part.processed.map_or(next, |p| p.max(next)));
        }
        self.event(GroupEvent::Processed { tp, offset, write });
    }

    fn commit(&mut self, now: Millis, offsets: Vec<(TopicPartition, Offset)>) -> u64 {
        let correlation = self.send_commit(now, offsets);
        self.drain_member(now);
        correlation
    }

    /// Sends a commit without handling the member's output: a commitSync caller sets
    /// `App::Committing` first, or a commit the member fails at once (not in the group)
    /// would be answered before anyone waits for it, and the loop would wait forever.
    fn send_commit(&mut self, now: Millis, offsets: Vec<(TopicPartition, Offset)>) -> u64 {
        let group = self.group().to_string();
        let member_id = self.member.member_id().to_string();
        let generation = self.member.generation();
        if self.member.state() == MemberState::Stable {
            self.event(GroupEvent::CommitSent { group, member_id, generation, offsets: offsets.clone() });
        }
        let correlation = self.member.commit(now, offsets.clone());
        if self.commits.len() < crate::group::member::COMMITS_IN_FLIGHT_MAX {
            self.commits.insert(correlation, offsets);
        }
        correlation
    }

    fn consumed_offsets(&self) -> Vec<(TopicPartition, Offset)> {
        self.parts.iter().filter_map(|(tp, p)| p.position.map(|o| (*tp, o))).collect()
    }

    fn processed_offsets(&self) -> Vec<(TopicPartition, Offset)> {
        self.parts.iter().filter_map(|(tp, p)| p.processed.map(|o| (*tp, o))).collect()
    }

    fn auto_interval(&self) -> u64 {
        match self.config.commit {
            CommitMode::Auto { interval_ms } | CommitMode::AutoInPoll { interval_ms } => interval_ms,
            _ => u64::MAX / 4,
        }
    }

    // ---- the member ----

    fn drain_member(&mut self, now: Millis) {
        // Bounded by the member's own outbox; each output is handled once.
        while let Some(output) = self.member.poll_output() {
            match output {
                MemberOutput::Send { correlation, request } => {
                    if matches!(request, GroupRequest::Join(_)) {
                        let group = self.group().to_string();
                        let member_id = self.member.member_id().to_string();
                        self.event(GroupEvent::Joining { group, member_id });
                    }
                    self.send_member(correlation, request);
                }
                MemberOutput::Revoked(partitions) => self.on_revoked(now, partitions),
                MemberOutput::Assigned(partitions) => self.on_assigned(now, partitions),
                MemberOutput::Lost(partitions) => {
                    let tps = self.tps(&partitions);
                    if self.manual() {
                        self.rebalances.push(Rebalance::Lost(tps.clone()));
                    }
                    for tp in &tps {
                        self.parts.remove(tp);
                    }
                    let group = self.group().to_string();
                    let member_id = self.member.member_id().to_string();
                    self.event(GroupEvent::Lost { group, member_id, partitions: tps });
                }
                MemberOutput::CommitDone { correlation, error } => {
                    let group = self.group().to_string();
                    let member_id = self.member.member_id().to_string();
                    let generation = self.member.generation();
                    let offsets = self.commits.remove(&correlation).unwrap_or_default();
                    self.event(GroupEvent::CommitDone { correlation, group, member_id, generation, offsets, error });
                    if matches!(self.app, App::Committing { correlation: waiting, .. } if waiting == correlation) {
                        if let App::Committing { batch, .. } = std::mem::replace(&mut self.app, App::Stopped) {
                            // A failed commitSync throws; the application logs it and
                            // goes on. Committing before processing, it processes the batch
                            // only if the commit went through: an at-most-once application
                            // never processes what it could not commit (its next owner may).
                            self.app = match batch {
                                Some(_) if error != ErrorCode::None => App::Idle { at: now },
                                Some(batch) => {
                                    App::Processing { batch, index: 0, done_at: now.plus(self.config.processing_ms) }
                                }
                                None => App::Idle { at: now },
                            };
                        }
                    }
                }
                MemberOutput::Fatal(error) => {
                    let group = self.group().to_string();
                    self.event(GroupEvent::Fatal { group, error });
                    self.app = App::Stopped;
                }
            }
        }
    }

    /// `onPartitionsRevoked`: commit what was processed (modes that commit at all).
    fn on_revoked(&mut self, now: Millis, partitions: Vec<GroupPartition>) {
        let tps = self.tps(&partitions);
        let offsets: Vec<(TopicPartition, Offset)> = match self.config.commit {
            CommitMode::SyncAfter | CommitMode::AsyncAfter => {
                tps.iter().filter_map(|tp| self.parts.get(tp).and_then(|p| p.processed).map(|o| (*tp, o))).collect()
            }
            // onJoinPrepare's auto-commit of the consumed position.
            CommitMode::Auto { .. } | CommitMode::AutoInPoll { .. } => {
                tps.iter().filter_map(|tp| self.parts.get(tp).and_then(|p| p.position).map(|o| (*tp, o))).collect()
            }
            CommitMode::SyncBefore => Vec::new(),
            // The application's listener decides (it runs at the next poll).
            CommitMode::Manual => {
                let positions =
                    tps.iter().filter_map(|tp| self.parts.get(tp).and_then(|p| p.position).map(|o| (*tp, o)));
                self.revoking.extend(positions);
                self.rebalances.push(Rebalance::Revoked(tps.clone()));
                Vec::new()
            }
        };
        if !offsets.is_empty() {
            self.commit(now, offsets);
        }
        for tp in &tps {
            self.parts.remove(tp);
        }
        let group = self.group().to_string();
        let member_id = self.member.member_id().to_string();
        self.event(GroupEvent::Revoked { group, member_id, partitions: tps });
    }

    fn on_assigned(&mut self, now: Millis, partitions: Vec<GroupPartition>) {
        let tps = self.tps(&partitions);
        for tp in &tps {
            self.parts.get_or_default(*tp);
        }
        let group = self.group().to_string();
        let member_id = self.member.member_id().to_string();
        let generation = self.member.generation();
        if self.manual() {
            self.rebalances.push(Rebalance::Assigned(tps.clone()));
        }
        self.event(GroupEvent::Assigned { group, member_id, generation, partitions: tps });
        self.lookup_positions(now);
    }

    fn send_member(&mut self, correlation: u64, request: GroupRequest) {
        match self.coordinator {
            Some(coordinator) => {
                self.member_in_flight.insert(correlation, request.clone());
                self.send(coordinator, Message::Group { correlation, request: Box::new(request) });
            }
            None if self.held.len() < HELD_MAX => self.held.push_back((correlation, request)),
            // Dropped: the member times the request out and sends it again.
            None => {}
        }
    }

    fn send_held(&mut self, _now: Millis) {
        while let Some((correlation, request)) = self.held.pop_front() {
            self.send_member(correlation, request);
        }
    }

    // ---- metadata, coordinator, positions, fetches ----

    fn ensure_metadata(&mut self, now: Millis) {
        if self.metadata_fetched_at.is_some()
            || self.in_flight(|o| matches!(o, Own::Metadata))
            || now < self.metadata_retry_at
        {
            return;
        }
        let Some(broker) = self.next_broker(now) else { return };
        let correlation = self.own(Own::Metadata, broker, now);
        self.send(broker, Message::Metadata { correlation });
    }

    fn ensure_coordinator(&mut self, now: Millis) {
        if self.coordinator.is_some()
            || self.in_flight(|o| matches!(o, Own::FindCoordinator))
            || now < self.coordinator_retry_at
        {
            return;
        }
        let Some(broker) = self.next_broker(now) else { return };
        let correlation = self.own(Own::FindCoordinator, broker, now);
        let group = self.group().to_string();
        self.send(broker, Message::FindCoordinator { correlation, group });
    }

    fn lookup_positions(&mut self, now: Millis) {
        if self.member.state() != MemberState::Stable || now < self.lookup_retry_at {
            return;
        }
        let Some(coordinator) = self.coordinator else { return };
        let missing: Vec<TopicPartition> =
            self.parts.iter().filter(|(_, p)| p.position.is_none() && !p.looking_up).map(|(tp, _)| *tp).collect();
        if missing.is_empty() {
            return;
        }
        for tp in &missing {
            if let Some(part) = self.parts.get_mut(tp) {
                part.looking_up = true;
            }
        }
        let correlation = self.own(Own::OffsetFetch, coordinator, now);
        // KIP-447: a read_committed consumer waits out pending transactional commits
        // (the Java client's `requireStable`), or it would start from an offset about to move.
        let require_stable = self.config.isolation_level == IsolationLevel::ReadCommitted;
        let request =
            GroupRequest::OffsetFetch { group: self.group().to_string(), partitions: missing, require_stable };
        self.send(coordinator, Message::Group { correlation, request: Box::new(request) });
    }

    fn handle_offset_fetch(&mut self, now: Millis, response: GroupResponse) {
        let GroupResponse::OffsetFetch { error, offsets } = response else { return };
        if error != ErrorCode::None {
            if coordinator_error(error) {
                self.coordinator = None;
            }
            self.lookup_retry_at = now.plus(self.config.retry_backoff_ms);
            for part in self.parts.values_mut() {
                part.looking_up = false;
            }
            return;
        }
        let mut reset = Vec::new();
        let manual = self.manual();
        for (tp, offset) in offsets {
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            // An application's `seek` (in `onPartitionsAssigned`) wins over the lookup.
            if manual && !part.looking_up {
                continue;
            }
            match offset {
                Some(offset) => {
                    part.position = Some(offset);
                    self.takeable = true;
                    part.looking_up = false;
                    if manual {
                        part.processed = Some(offset);
                    }
                }
                None => reset.push(tp),
            }
        }
        self.reset_positions(now, reset);
    }

    /// `auto.offset.reset` for partitions with no usable position.
    fn reset_positions(&mut self, now: Millis, tps: Vec<TopicPartition>) {
        let latest = match self.config.auto_offset_reset {
            OffsetReset::Earliest => false,
            OffsetReset::Latest => true,
            OffsetReset::None => {
                if !tps.is_empty() {
                    let group = self.group().to_string();
                    self.event(GroupEvent::Fatal { group, error: ErrorCode::OffsetOutOfRange });
                    self.app = App::Stopped;
                }
                return;
            }
        };
        let mut per_leader: BTreeMap<NodeId, Vec<(TopicPartition, bool)>> = BTreeMap::new();
        for tp in tps {
            match self.leaders.get(&tp) {
                Some(leader) => per_leader.entry(*leader).or_default().push((tp, latest)),
                None => {
                    if let Some(part) = self.parts.get_mut(&tp) {
                        part.looking_up = false;
                    }
                    self.metadata_fetched_at = None;
                }
            }
        }
        for (leader, partitions) in per_leader {
            for (tp, _) in &partitions {
                if let Some(part) = self.parts.get_mut(tp) {
                    part.position = None;
                    part.looking_up = true;
                }
            }
            let correlation = self.own(Own::ListOffsets, leader, now);
            self.send(leader, Message::ListOffsets { correlation, partitions });
        }
    }

    fn handle_list_offsets(&mut self, now: Millis, partitions: Vec<(TopicPartition, ErrorCode, Offset)>) {
        for (tp, error, offset) in partitions {
            let group = self.group().to_string();
            let manual = self.manual();
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            if manual && !part.looking_up {
                continue;
            }
            part.looking_up = false;
            if error != ErrorCode::None {
                self.metadata_fetched_at = None;
                self.lookup_retry_at = now.plus(self.config.retry_backoff_ms);
                continue;
            }
            let from = part.processed.or(part.position);
            part.position = Some(offset);
            self.takeable = true;
            part.buffer.clear();
            part.skip_through.clear();
            if manual {
                part.processed = Some(offset);
            }
            self.event(GroupEvent::PositionReset { group, tp, from, to: offset });
        }
    }

    fn ensure_fetches(&mut self, now: Millis) {
        if self.member.state() != MemberState::Stable || matches!(self.app, App::Stopped) {
            return;
        }
        // Only leaders with no fetch in flight and no backoff get a request; usually that
        // is the one that just answered, so the others cost one look each and no buffers.
        // Both inline: this runs after every input, and a consumer has a handful of leaders.
        let mut per_leader: smallvec::SmallVec<[(NodeId, Vec<ConsumerFetchPartition>); 4]> = smallvec::SmallVec::new();
        let mut waiting: smallvec::SmallVec<[NodeId; 8]> = smallvec::SmallVec::new();
        let mut leaderless = false;
        for (tp, part) in &self.parts {
            let Some(position) = part.position else { continue };
            if part.buffer.len() >= BUFFER_MAX {
                continue;
            }
            let Some(leader) = self.leaders.get(tp).copied() else {
                // No leader in the last metadata (it was being elected): ask again, as the
                // Java fetcher requests a metadata update for a partition without one
                // (paced by the metadata retry backoff).
                leaderless = true;
                continue;
            };
            let fetch = ConsumerFetchPartition { tp: *tp, fetch_offset: Offset(position.0 + part.buffer.len() as u64) };
            if let Some((_, partitions)) = per_leader.iter_mut().find(|(l, _)| *l == leader) {
                partitions.push(fetch);
            } else if !waiting.contains(&leader) {
                if self.in_flight(|o| matches!(o, Own::Fetch { broker } if *broker == leader))
                    || self.backed_off(leader, now)
                {
                    waiting.push(leader);
                } else {
                    // Room for a few: `vec![fetch]` reallocated on the second partition.
                    let mut partitions = Vec::with_capacity(4);
                    partitions.push(fetch);
                    per_leader.push((leader, partitions));
                }
            }
        }
        if leaderless {
            self.metadata_fetched_at = None;
        }
        per_leader.sort_unstable_by_key(|(leader, _)| *leader);
        for (leader, partitions) in per_leader {
            let correlation = self.own(Own::Fetch { broker: leader }, leader, now);
            let max_wait_ms = self.config.fetch_max_wait_ms;
            let read_committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
            self.send(leader, Message::ConsumerFetch { correlation, max_wait_ms, read_committed, partitions });
        }
    }

    fn handle_fetch_response(&mut self, now: Millis, partitions: Vec<ConsumerFetchPartitionResponse>) {
        let mut reset = Vec::new();
        let read_committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
        for response in partitions {
            let Some(part) = self.parts.get_mut(&response.tp) else { continue };
            let Some(position) = part.position else { continue };
            match response.error {
                ErrorCode::None => {
                    // An answer to an older position (a reset or a revoke since) is dropped.
                    if response.fetch_offset == Offset(position.0 + part.buffer.len() as u64) {
                        let base = response.fetch_offset;
                        let kept: Vec<Offset> = if read_committed {
                            committed_records(&response.records, base, &response.aborted).map(|(o, _)| o).collect()
                        } else {
                            Vec::new()
                        };
                        let mut kept = kept.into_iter().peekable();
                        for (i, entry) in response.records.into_iter().enumerate() {
                            let offset = Offset(base.0 + i as u64);
                            let deliver = if read_committed {
                                kept.next_if_eq(&offset).is_some()
                            } else {
                                !entry.record.is_control()
                            };
                            part.buffer.push_back((entry, deliver));
                            self.takeable = true;
                        }
                    }
                }
                ErrorCode::OffsetOutOfRange => reset.push(response.tp),
                // NOT_LEADER_OR_FOLLOWER and the like: the leader moved; refresh metadata.
                _ => self.metadata_fetched_at = None,
            }
        }
        if !reset.is_empty() {
            self.reset_positions(now, reset);
        }
    }

    fn apply_metadata(&mut self, now: Millis, topics: Vec<TopicMeta>, partitions: Vec<PartitionLeader>) {
        // Metadata is asked for at most once per backoff, whatever keeps invalidating it.
        self.metadata_retry_at = now.plus(self.config.retry_backoff_ms);
        if topics.is_empty() {
            return;
        }
        self.metadata_fetched_at = Some(now);
        for topic in topics {
            if self.topic_ids.insert(topic.name.clone(), topic.id) != Some(topic.id) {
                self.topic_ids_version += 1;
            }
            self.partition_counts.insert(topic.name, topic.partitions);
        }
        let had = &self.leaders;
        let leaders = PartitionLeader::leaders_kept(partitions, &mut self.leader_epochs, |tp| had.get(tp).copied());
        self.leaders = leaders.collect();
        // Every topic's count, not only this member's topics': as the group's leader it
        // assigns the topics other members subscribe to as well (the assignor keeps to
        // the subscriptions).
        let counts: PartitionsPerTopic = self.partition_counts.clone();
        self.member.update_metadata(counts);
    }

    fn expire_own(&mut self, now: Millis) {
        let timeout = self.config.request_timeout_ms + self.config.fetch_max_wait_ms;
        let expired: Vec<u64> = self
            .own_in_flight
            .iter()
            .filter(|(_, (_, _, sent))| now.since(*sent) >= timeout)
            .map(|(c, _)| *c)
            .collect();
        for correlation in expired {
            self.fail_own(now, correlation);
        }
    }

    fn fail_own(&mut self, now: Millis, correlation: u64) {
        let Some(own) = self.take_own(correlation) else { return };
        let retry_at = now.plus(self.config.retry_backoff_ms);
        match own {
            Own::OffsetFetch | Own::ListOffsets => {
                self.lookup_retry_at = retry_at;
                for part in self.parts.values_mut() {
                    part.looking_up = false;
                }
            }
            Own::FindCoordinator => {
                self.coordinator_retry_at = retry_at;
                self.coordinator = None;
            }
            Own::Metadata => {
                self.metadata_retry_at = retry_at;
                self.metadata_fetched_at = None;
            }
            Own::Fetch { .. } => self.metadata_fetched_at = None,
        }
    }

    // ---- helpers ----

    /// Brings `owned_tps` (the owned partitions as ids, sorted) up to date.
    fn refresh_owned_tps(&mut self) {
        let version = (self.member.owned_version(), self.topic_ids_version);
        if self.owned_cache != Some(version) {
            self.owned_tps = self.tps(&self.member.owned());
            self.owned_cache = Some(version);
            self.takeable = true;
        }
    }

    fn tps(&self, partitions: &[GroupPartition]) -> Vec<TopicPartition> {
        let mut tps: Vec<TopicPartition> = partitions
            .iter()
            .filter_map(|p| {
                let id = *self.topic_ids.get(&p.topic)?;
                Some(TopicPartition { topic: id, partition: p.partition })
            })
            .collect();
        tps.sort();
        tps
    }

    /// The next bootstrap broker not in reconnect backoff (`leastLoadedNode`, roughly).
    fn next_broker(&mut self, now: Millis) -> Option<NodeId> {
        for _ in 0..self.bootstrap.len() {
            let broker = self.bootstrap[self.next_bootstrap % self.bootstrap.len()];
            self.next_bootstrap += 1;
            if !self.backed_off(broker, now) {
                return Some(broker);
            }
        }
        None
    }

    fn backed_off(&self, broker: NodeId, now: Millis) -> bool {
        self.backoff.get(&broker).is_some_and(|until| now < *until)
    }

    fn own(&mut self, kind: Own, to: NodeId, now: Millis) -> u64 {
        self.next_own += 1;
        let correlation = OWN | self.next_own;
        self.own_in_flight.push((correlation, (kind, to, now)));
        correlation
    }

    fn take_own(&mut self, correlation: u64) -> Option<Own> {
        let index = self.own_in_flight.binary_search_by_key(&correlation, |(c, _)| *c).ok()?;
        Some(self.own_in_flight.remove(index).1 .0)
    }

    fn in_flight(&self, matches: impl Fn(&Own) -> bool) -> bool {
        self.own_in_flight.iter().any(|(_, (own, _, _))| matches(own))
    }

    fn event(&mut self, event: GroupEvent) {
        let action = match event {
            GroupEvent::Processed { tp, offset, write } => Action::Processed { tp, offset, write },
            event => Action::Group(Box::new(event)),
        };
        self.outbox.push_back(action);
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.outbox.push_back(Action::Send { to, msg });
    }
}

fn coordinator_error(error: ErrorCode) -> bool {
    matches!(error, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
}

/// Whether a group answer says the coordinator moved (`markCoordinatorUnknown`).
fn coordinator_moved(response: &GroupResponse) -> bool {
    let error = match response {
        GroupResponse::Join(join) => join.error,
        GroupResponse::Sync { error, .. }
        | GroupResponse::Heartbeat { error }
        | GroupResponse::Leave { error, .. }
        | GroupResponse::OffsetCommit { error, .. }
        | GroupResponse::OffsetFetch { error, .. }
        | GroupResponse::TxnOffsetCommit { error, .. } => *error,
    };
    coordinator_error(error)
}

#[cfg(test)]
mod tests;
