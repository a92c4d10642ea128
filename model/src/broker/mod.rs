//! A broker: partition replicas as leader or follower, produce with acks, follower fetch,
//! high watermark, ISR changes through the controller, truncation on leader change,
//! flushing, and heartbeats/registration with the controller.
//!
//! Call order for a host: feed inputs with `handle_message`/`handle_timeout`, then drain
//! `poll_action` until `None`, then arm a timer for `poll_timeout`. The broker owns its
//! `BrokerDisk` while it runs; `into_disk` hands it back when the process dies.

use crate::action::{Action, ClusterEvent, TruncationReason};
use crate::config::{BrokerConfig, Truncation};
use crate::error::ErrorCode;
use crate::group::coordinator::GroupCoordinator;
use crate::log::{BrokerDisk, PartitionLog};
use crate::messages::{
    AlterPartitionItem, FetchPartition, Message, MetadataDelta, PartitionLeader, PartitionState,
    ProducePartitionResponse, TopicMeta,
};
use crate::tpmap::TpMap;
use crate::txn::TxnCoordinator;
use crate::types::{BrokerEpoch, LeaderEpoch, Millis, NodeId, Offset, TopicPartition};
use nodemap::NodeMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod follower;
pub mod groups;
mod leader;
mod nodemap;
#[cfg(test)]
mod tests;
mod txn;
#[cfg(test)]
mod txn_tests;

/// Bound on requests a broker parks (acks=all produce, long-poll fetch); beyond it a
/// produce is answered REQUEST_TIMED_OUT at once and a fetch is answered empty.
const PARKED_REQUESTS_MAX: usize = 10_000;

#[derive(Clone, Debug)]
struct FollowerProgress {
    log_end: Offset,
    last_caught_up: Option<Millis>,
    last_fetch_time: Option<Millis>,
    last_fetch_leader_log_end: Offset,
}

/// A leader's followers of one partition, ascending by broker id.
type Followers = NodeMap<FollowerProgress>;

#[derive(Clone, Debug)]
enum Role {
    Leader {
        followers: Followers,
        /// ISR requested from the controller and not yet answered (KIP-497 maximal ISR).
        pending_isr: Option<(Vec<NodeId>, Millis)>,
        epoch_start_offset: Offset,
    },
    Follower {
        leader: Option<NodeId>,
    },
}

#[derive(Clone, Debug)]
struct Replica {
    state: PartitionState,
    high_watermark: Offset,
    role: Role,
}

#[derive(Clone, Debug)]
struct ParkedProduce {
    from: NodeId,
    correlation: u64,
    deadline: Millis,
    /// (partition, offset the HW must reach, result so far)
    items: Vec<(TopicPartition, Offset, ProducePartitionResponse)>,
}

#[derive(Clone, Debug)]
struct ProduceRequest {
    from: NodeId,
    correlation: u64,
    acks: crate::config::Acks,
    timeout_ms: u64,
    batches: Vec<crate::messages::ProduceBatch>,
    transactional_id: Option<std::sync::Arc<str>>,
    /// Its partitions were verified with the transaction coordinator (KIP-890 part 1).
    verified: bool,
}

#[derive(Clone, Debug)]
struct ParkedFetch {
    from: NodeId,
    correlation: u64,
    deadline: Millis,
    partitions: Vec<FetchPartition>,
}

#[derive(Clone, Debug, Default)]
struct Fetcher {
    /// Correlation id of the fetch in flight; a response to any other is stale.
    correlation: u64,
    in_flight_since: Option<Millis>,
    backoff_until: Millis,
}

/// A broker's graceful shutdown: asking the controller (until a grant or the deadline),
/// then stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    Asking { deadline: Millis },
    Stopped,
}

pub struct Broker {
    id: NodeId,
    controller: NodeId,
    config: BrokerConfig,
    disk: BrokerDisk,
    incarnation: u64,
    previous_broker_epoch: Option<BrokerEpoch>,
    broker_epoch: Option<BrokerEpoch>,
    registration_in_flight: bool,
    /// A graceful shutdown under way, or done.
    shutdown: Option<Shutdown>,
    metadata_version: u64,
    /// Known topics by id (ids are small and dense).
    topics: Vec<Option<TopicMeta>>,
    replicas: TpMap<Replica>,
    /// Leader of every partition this broker knows of (for clients' Metadata).
    leaders: TpMap<(Option<NodeId>, LeaderEpoch)>,
    ineligible_brokers: Vec<NodeId>,
    parked_produces: Vec<ParkedProduce>,
    /// Produce requests waiting behind a client's parked one: Kafka's network layer
    /// mutes a connection while one of its requests is in process, so a connection's
    /// requests are handled one at a time, in order.
    queued_produces: VecDeque<ProduceRequest>,
    /// A parked produce was answered or dropped since the queue was last looked at.
    produce_answered: bool,
    parked_fetches: Vec<ParkedFetch>,
    /// Appends as leader so far (any partition): a fetch whose reads set off appends
    /// elsewhere (a coordinator answered, markers went in) is not parked past them.
    leader_appends: u64,
    fetchers: NodeMap<Fetcher>,
    next_correlation: u64,
    next_heartbeat: Millis,
    next_isr_check: Millis,
    next_flush: Option<Millis>,
    next_hw_checkpoint: Millis,
    /// The OS flusher's next pass (`vm.dirty_writeback_centisecs`).
    next_writeback: Option<Millis>,
    /// The group coordinator for the offsets partitions in `coordinated`.
    coordinator: GroupCoordinator,
    coordinated: BTreeSet<u32>,
    group_appends: Vec<groups::GroupAppend>,
    parked_consumer_fetches: Vec<groups::ParkedConsumerFetch>,
    /// Kept between consumer fetches: most find nothing yet and park, and their (empty)
    /// answers need no buffer of their own.
    consumer_fetch_scratch: Vec<crate::messages::ConsumerFetchPartitionResponse>,
    /// The transaction coordinator for the state partitions this broker leads.
    txn_coordinator: TxnCoordinator,
    txn_appends: Vec<txn::TxnAppend>,
    marker_writes: BTreeMap<u64, txn::MarkerWrite>,
    next_marker_write: u64,
    /// WriteTxnMarkers requests in flight, by correlation id.
    marker_requests: BTreeMap<u64, txn::MarkerRequest>,
    parked_markers: Vec<txn::ParkedMarkers>,
    /// Produce requests waiting for the coordinator's verification (KIP-890 part 1).
    verifying: Vec<txn::VerifyingProduce>,
    next_verification: u64,
    outbox: VecDeque<Action>,
}

impl Broker {
    /// Starts a broker process on `disk` (empty for a new broker, the old one after a
    /// crash). `incarnation` must differ between lives, as Kafka's incarnation id does.
    pub fn new(
        id: NodeId,
        controller: NodeId,
        config: BrokerConfig,
        mut disk: BrokerDisk,
        incarnation: u64,
        now: Millis,
    ) -> Broker {
        let previous_broker_epoch = disk.clean_shutdown_epoch.take();
        let next_flush = config.flush_ms.map(|ms| now.plus(ms));
        let next_hw_checkpoint = now.plus(config.hw_checkpoint_interval_ms);
        let next_isr_check = now.plus(config.replica_lag_time_max_ms / 2);
        let next_writeback = config.os_dirty_expire_ms.map(|_| now.plus(config.os_writeback_interval_ms));
        let coordinator = GroupCoordinator::new(
            config.groups.as_ref().map(|g| g.coordinator.clone()).unwrap_or_default(),
            incarnation,
        )
        .on_broker(id.0);
        let txn_coordinator =
            TxnCoordinator::new(config.txn.as_ref().map(|t| t.coordinator.clone()).unwrap_or_default());
        Broker {
            id,
            controller,
            config,
            disk,
            incarnation,
            previous_broker_epoch,
            broker_epoch: None,
            registration_in_flight: false,
            shutdown: None,
            metadata_version: 0,
            topics: Vec::new(),
            replicas: TpMap::new(),
            leaders: TpMap::new(),
            ineligible_brokers: Vec::new(),
            parked_produces: Vec::new(),
            queued_produces: VecDeque::new(),
            produce_answered: false,
            parked_fetches: Vec::new(),
            leader_appends: 0,
            fetchers: NodeMap::default(),
            next_correlation: 0,
            next_heartbeat: now,
            next_isr_check,
            next_flush,
            next_hw_checkpoint,
            next_writeback,
            coordinator,
            coordinated: BTreeSet::new(),
            group_appends: Vec::new(),
            parked_consumer_fetches: Vec::new(),
            consumer_fetch_scratch: Vec::new(),
            txn_coordinator,
            txn_appends: Vec::new(),
            marker_writes: BTreeMap::new(),
            next_marker_write: 0,
            marker_requests: BTreeMap::new(),
            parked_markers: Vec::new(),
            verifying: Vec::new(),
            next_verification: 1,
            outbox: VecDeque::new(),
        }
    }

    // ---- getters ----

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn disk(&self) -> &BrokerDisk {
        &self.disk
    }

    pub fn into_disk(self) -> BrokerDisk {
        self.disk
    }

    pub fn log(&self, tp: TopicPartition) -> Option<&PartitionLog> {
        self.disk.logs.get(&tp)
    }

    pub fn high_watermark(&self, tp: TopicPartition) -> Option<Offset> {
        self.replicas.get(&tp).map(|replica| replica.high_watermark)
    }

    pub fn is_leader(&self, tp: TopicPartition) -> bool {
        self.replicas.get(&tp).is_some_and(|replica| matches!(replica.role, Role::Leader { .. }))
    }

    pub fn partition_state(&self, tp: TopicPartition) -> Option<&PartitionState> {
        self.replicas.get(&tp).map(|replica| &replica.state)
    }

    /// The committed offset of `group` for `tp`, as this broker's coordinator has it.
    pub fn group_committed(&self, group: &str, tp: TopicPartition) -> Option<Offset> {
        self.coordinator.committed(group, tp)
    }

    /// The durable state of `transactional_id`, if this broker coordinates it.
    pub fn txn_state(&self, transactional_id: &str) -> Option<&crate::txn::TxnRecord> {
        self.txn_coordinator.state(transactional_id)
    }

    pub fn is_registered(&self) -> bool {
        self.broker_epoch.is_some()
    }

    // ---- outputs ----

    /// In controlled shutdown and not stopped yet.
    pub fn is_shutting_down(&self) -> bool {
        matches!(self.shutdown, Some(Shutdown::Asking { .. }))
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.next_heartbeat.min(self.next_isr_check).min(self.next_hw_checkpoint);
        match self.shutdown {
            None => {}
            Some(Shutdown::Asking { deadline }) => next = next.min(deadline),
            Some(Shutdown::Stopped) => return None,
        }
        if let Some(flush) = self.next_flush {
            next = next.min(flush);
        }
        if let Some(writeback) = self.next_writeback {
            next = next.min(writeback);
        }
        for parked in &self.parked_produces {
            next = next.min(parked.deadline);
        }
        for parked in &self.parked_fetches {
            next = next.min(parked.deadline);
        }
        if self.config.groups.is_some() {
            if let Some(at) = self.group_deadline() {
                next = next.min(at);
            }
        }
        if self.config.txn.is_some() {
            if let Some(at) = self.txn_deadline() {
                next = next.min(at);
            }
        }
        for fetcher in self.fetchers.values() {
            match fetcher.in_flight_since {
                Some(since) => next = next.min(since.plus(self.config.replica_socket_timeout_ms)),
                None => next = next.min(fetcher.backoff_until),
            }
        }
        Some(next)
    }

    // ---- inputs ----

    /// Begins a graceful shutdown (SIGTERM), as `BrokerServer.shutdown` does with
    /// `controlled.shutdown.enable`: the broker asks the controller in its heartbeats to
    /// shut down, keeps serving while the controller moves its leaders away, and stops once
    /// the controller grants it or `controlled_shutdown_timeout_ms` passed. Stopping
    /// flushes every log and writes the clean-shutdown marker with the broker epoch
    /// (KIP-966), so the next registration tells the controller no data was lost.
    pub fn begin_controlled_shutdown(&mut self, now: Millis) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(Shutdown::Asking { deadline: now.plus(self.config.controlled_shutdown_timeout_ms) });
        // `BrokerLifecycleManager.beginControlledShutdown` heartbeats at once.
        self.next_heartbeat = now.plus(self.config.broker_heartbeat_interval_ms);
        self.heartbeat();
    }

    /// The process's last steps after its controlled shutdown: the replica manager writes
    /// its HW checkpoint, the log manager flushes every log and writes the marker.
    fn stop(&mut self, granted: bool) {
        if matches!(self.shutdown, Some(Shutdown::Stopped)) {
            return;
        }
        self.shutdown = Some(Shutdown::Stopped);
        self.checkpoint_high_watermarks();
        for log in self.disk.logs.values_mut() {
            log.flush();
        }
        self.disk.dirty_since = TpMap::new();
        self.disk.clean_shutdown_epoch = self.broker_epoch;
        self.event(ClusterEvent::BrokerStopped { broker: self.id, granted });
        self.outbox.push_back(Action::Stopped);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match self.shutdown {
            None => {}
            Some(Shutdown::Asking { deadline }) if now < deadline => {}
            Some(Shutdown::Asking { .. }) => return self.stop(false),
            Some(Shutdown::Stopped) => return,
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.plus(self.config.broker_heartbeat_interval_ms);
            self.heartbeat();
        }
        if now >= self.next_isr_check {
            self.next_isr_check = now.plus(self.config.replica_lag_time_max_ms / 2);
            self.maybe_shrink_isr(now);
        }
        if now >= self.next_hw_checkpoint {
            self.next_hw_checkpoint = now.plus(self.config.hw_checkpoint_interval_ms);
            self.checkpoint_high_watermarks();
        }
        if let Some(flush_ms) = self.config.flush_ms {
            if self.next_flush.is_some_and(|at| now >= at) {
                self.next_flush = Some(now.plus(flush_ms));
                for log in self.disk.logs.values_mut() {
                    log.flush();
                }
            }
        }
        if let Some(expire_ms) = self.config.os_dirty_expire_ms {
            if self.next_writeback.is_some_and(|at| now >= at) {
                self.next_writeback = Some(now.plus(self.config.os_writeback_interval_ms));
                self.write_back(now, expire_ms);
            }
        }
        self.expire_parked_produces(now);
        self.run_queued_produces(now);
        self.expire_parked_fetches(now);
        self.group_timeouts(now);
        self.txn_timeouts(now);
        self.run_fetchers(now);
    }

    /// A pass of the OS's flusher (Linux's periodic `wb_writeback`): a log first seen
    /// dirty at an earlier pass is written back whole once that pass is `expire_ms` old,
    /// as Linux writes back every dirty page of an inode whose `dirtied_when` expired. A
    /// log dirtied between two passes is so written back 30–35 s later, never sooner.
    fn write_back(&mut self, now: Millis, expire_ms: u64) {
        let disk = &mut self.disk;
        for (tp, log) in disk.logs.iter_mut() {
            if log.unflushed_records() == 0 {
                disk.dirty_since.remove(tp);
                continue;
            }
            match disk.dirty_since.get(tp) {
                None => {
                    disk.dirty_since.insert(*tp, now);
                }
                Some(since) if now.since(*since) >= expire_ms => {
                    log.flush();
                    disk.dirty_since.remove(tp);
                }
                Some(_) => {}
            }
        }
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        if matches!(self.shutdown, Some(Shutdown::Stopped)) {
            return;
        }
        match msg {
            Message::BrokerRegistrationResponse { error, broker_epoch, metadata } => {
                self.registration_in_flight = false;
                if error == ErrorCode::None {
                    self.broker_epoch = Some(broker_epoch);
                    self.apply_metadata(now, *metadata);
                }
            }
            Message::BrokerHeartbeatResponse { error, metadata, should_shutdown, .. } => {
                if should_shutdown && self.shutdown.is_some() {
                    self.stop(true);
                    return;
                }
                if error == ErrorCode::StaleBrokerEpoch {
                    // The controller no longer knows this registration: register again.
                    self.broker_epoch = None;
                }
                if let Some(metadata) = metadata {
                    self.apply_metadata(now, *metadata);
                }
            }
            // Like a KRaft broker that has not caught up since registering, a broker acts on
            // no metadata before its registration is accepted (the response carries it all).
            Message::MetadataUpdate(delta) if self.broker_epoch.is_some() => self.apply_metadata(now, *delta),
            Message::AlterPartitionResponse { items } => self.handle_alter_partition_response(now, items),
            Message::Fetch { correlation, max_wait_ms, partitions, .. } => {
                self.handle_fetch(now, from, correlation, max_wait_ms, partitions)
            }
            Message::FetchResponse { correlation, partitions } => {
                self.handle_fetch_response(now, from, correlation, partitions)
            }
            Message::Produce { correlation, acks, timeout_ms, batches, transactional_id } => {
                let request =
                    ProduceRequest { from, correlation, acks, timeout_ms, batches, transactional_id, verified: false };
                self.handle_produce(now, request)
            }
            Message::Metadata { correlation } => self.handle_client_metadata(from, correlation),
            Message::FindCoordinator { correlation, group } => self.handle_find_coordinator(from, correlation, &group),
            Message::Group { correlation, request } => self.handle_group_request(now, from, correlation, *request),
            Message::ConsumerFetch { correlation, max_wait_ms, read_committed, partitions } => {
                self.handle_consumer_fetch(now, from, correlation, max_wait_ms, read_committed, partitions)
            }
            Message::ListOffsets { correlation, partitions } => self.handle_list_offsets(from, correlation, partitions),
            Message::ConnectionClosed => self.handle_connection_closed(now, from),
            Message::InitProducerId { correlation } => self.handle_init_producer_id(from, correlation),
            Message::FindTxnCoordinator { correlation, transactional_id } => {
                self.handle_find_txn_coordinator(from, correlation, &transactional_id)
            }
            Message::Txn { correlation, request } => self.handle_txn_request(now, from, correlation, *request),
            Message::WriteTxnMarkers { correlation, producer_id, epoch, commit, partitions, transaction_version } => {
                let marker = txn::Marker { producer_id, epoch, commit, transaction_version };
                self.handle_write_txn_markers(now, from, correlation, marker, partitions)
            }
            Message::WriteTxnMarkersResponse { correlation, partitions } => {
                self.handle_write_txn_markers_response(now, correlation, partitions)
            }
            Message::TxnResponse { correlation, response } => self.handle_verification(now, correlation, *response),
            _ => {}
        }
        self.run_queued_produces(now);
        self.run_fetchers(now);
    }

    /// Hands out the next producer id of this broker's block, with epoch 0; a broker that
    /// is not registered has no block yet.
    fn handle_init_producer_id(&mut self, from: NodeId, correlation: u64) {
        let producer = match txn::allocate_producer_id(self.id, self.broker_epoch.is_some(), &mut self.disk) {
            Some(pid) => pid,
            None => {
                let msg = Message::InitProducerIdResponse {
                    correlation,
                    error: ErrorCode::CoordinatorNotAvailable,
                    producer: None,
                };
                self.send(from, msg);
                return;
            }
        };
        let msg =
            Message::InitProducerIdResponse { correlation, error: ErrorCode::None, producer: Some((producer, 0)) };
        self.send(from, msg);
    }

    fn handle_connection_closed(&mut self, now: Millis, peer: NodeId) {
        // The client's unread requests go with its connection, and the one in process
        // (parked) finishes unanswered: what it appended stays, nobody hears.
        self.queued_produces.retain(|q| q.from != peer);
        if !self.verifying.is_empty() {
            self.verification_peer_closed(now, peer);
        }
        let parked = self.parked_produces.len();
        self.parked_produces.retain(|p| p.from != peer);
        self.produce_answered |= self.parked_produces.len() < parked;
        if peer == self.controller {
            self.registration_in_flight = false;
        }
        if let Some(fetcher) = self.fetchers.get_mut(&peer) {
            fetcher.in_flight_since = None;
            fetcher.backoff_until = now.plus(self.config.replica_fetch_backoff_ms);
        }
    }

    // ---- controller ----

    fn heartbeat(&mut self) {
        match self.broker_epoch {
            Some(broker_epoch) => {
                let want_shutdown = self.shutdown.is_some();
                let msg =
                    Message::BrokerHeartbeat { broker_epoch, metadata_version: self.metadata_version, want_shutdown };
                self.send(self.controller, msg);
            }
            // Not registered, so it leads nothing and has nothing to hand over.
            None if self.shutdown.is_some() => self.stop(true),
            None if !self.registration_in_flight => {
                self.registration_in_flight = true;
                let msg = Message::BrokerRegistration {
                    incarnation: self.incarnation,
                    previous_broker_epoch: self.previous_broker_epoch,
                };
                self.send(self.controller, msg);
            }
            None => {
                // A lost registration is sent again one interval later.
                self.registration_in_flight = false;
            }
        }
    }

    fn apply_metadata(&mut self, now: Millis, delta: MetadataDelta) {
        // An older push overtaken by a newer snapshot carries a stale fenced list;
        // partitions are guarded by their own epochs below.
        if delta.version >= self.metadata_version {
            self.ineligible_brokers = delta.ineligible_brokers;
        }
        // A delta that follows a version this broker never saw is applied (partitions are
        // guarded by their epochs) but does not move the version: the next heartbeat then
        // reports the gap and brings a snapshot, as a KRaft broker's metadata log fetch
        // never skips a record. (Moving it on would lose the missed push for good.)
        let contiguous = delta.base.is_none_or(|base| base <= self.metadata_version);
        if contiguous {
            self.metadata_version = self.metadata_version.max(delta.version);
        }
        for topic in delta.topics {
            let index = topic.id.0 as usize;
            if self.topics.len() <= index {
                self.topics.resize(index + 1, None);
            }
            self.topics[index] = Some(topic);
        }
        for state in delta.partitions {
            self.leaders.insert(state.tp, (state.leader, state.leader_epoch));
            if state.replicas.contains(&self.id) {
                self.apply_partition_state(now, state);
            } else if self.replicas.remove(&state.tp).is_some() {
                self.fail_parked_produces(state.tp, ErrorCode::NotLeaderOrFollower);
            }
        }
    }

    fn apply_partition_state(&mut self, now: Millis, state: PartitionState) {
        let tp = state.tp;
        let (is_newer, epoch_changed, was_leader) = match self.replicas.get(&tp) {
            Some(replica) => (
                state.partition_epoch > replica.state.partition_epoch
                    || state.leader_epoch > replica.state.leader_epoch,
                state.leader_epoch != replica.state.leader_epoch,
                matches!(replica.role, Role::Leader { .. }),
            ),
            None => (true, true, false),
        };
        if !is_newer {
            return;
        }
        let is_leader = state.leader == Some(self.id);
        if is_leader && (epoch_changed || !was_leader) {
            self.become_leader(now, state);
        } else if !is_leader && (epoch_changed || was_leader) {
            self.become_follower(now, state);
        } else if let Some(replica) = self.replicas.get_mut(&tp) {
            // Same leader epoch: an ISR/ELR change. A leader drops any pending request the
            // new state answers.
            if let Role::Leader { pending_isr, .. } = &mut replica.role {
                if pending_isr.as_ref().is_some_and(|(isr, _)| *isr == state.isr) {
                    *pending_isr = None;
                }
            }
            replica.state = state;
            if is_leader {
                self.maybe_increment_high_watermark(now, tp);
                self.complete_parked_produces(tp);
            }
        }
    }

    fn become_leader(&mut self, now: Millis, state: PartitionState) {
        let tp = state.tp;
        let log = self.disk.logs.get_or_default(tp);
        log.assign_epoch(state.leader_epoch);
        let epoch_start_offset = log.log_end_offset();
        let hw = self.replicas.get(&tp).map_or_else(|| log.hw_checkpoint(), |replica| replica.high_watermark);
        let hw = hw.min(log.log_end_offset());
        let followers = state
            .replicas
            .iter()
            .filter(|replica| **replica != self.id)
            .map(|replica| {
                // Kafka resets ISR members as caught up now, others as never caught up.
                let caught_up = state.isr.contains(replica).then_some(now);
                let progress = FollowerProgress {
                    log_end: Offset(0),
                    last_caught_up: caught_up,
                    last_fetch_time: None,
                    last_fetch_leader_log_end: Offset(0),
                };
                (*replica, progress)
            })
            .collect();
        let leader_epoch = state.leader_epoch;
        let role = Role::Leader { followers, pending_isr: None, epoch_start_offset };
        self.replicas.insert(tp, Replica { state, high_watermark: hw, role });
        self.event(ClusterEvent::BecameLeader { broker: self.id, tp, leader_epoch });
        self.maybe_increment_high_watermark(now, tp);
        if self.is_offsets_topic(tp) {
            self.offsets_leadership_changed(now, tp, true);
        }
        if self.is_txn_state_topic(tp) {
            self.txn_leadership_changed(now, tp, true);
        }
    }

    fn become_follower(&mut self, now: Millis, state: PartitionState) {
        let tp = state.tp;
        let log = self.disk.logs.get_or_default(tp);
        let mut hw = self.replicas.get(&tp).map_or_else(|| log.hw_checkpoint(), |replica| replica.high_watermark);
        hw = hw.min(log.log_end_offset());
        if self.config.protocol.truncation == Truncation::HighWatermark {
            // Pre-KIP-101 `makeFollowers`: drop everything above the own high watermark.
            let from = log.log_end_offset();
            if from > hw {
                log.truncate_to(hw);
                self.event(ClusterEvent::Truncated {
                    broker: self.id,
                    tp,
                    from,
                    to: hw,
                    reason: TruncationReason::HighWatermark,
                });
            }
        }
        let leader = state.leader.filter(|leader| *leader != self.id);
        let leader_epoch = state.leader_epoch;
        self.replicas.insert(tp, Replica { state, high_watermark: hw, role: Role::Follower { leader } });
        self.fail_parked_produces(tp, ErrorCode::NotLeaderOrFollower);
        self.complete_consumer_fetches(tp);
        if self.is_offsets_topic(tp) {
            self.offsets_leadership_changed(now, tp, false);
        }
        self.txn_leadership_changed(now, tp, false);
        self.event(ClusterEvent::BecameFollower { broker: self.id, tp, leader, leader_epoch });
        if let Some(leader) = leader {
            self.fetchers.get_or_default(leader);
        }
    }

    fn maybe_shrink_isr(&mut self, now: Millis) {
        let lag_max = self.config.replica_lag_time_max_ms;
        let mut requests = Vec::new();
        for (tp, replica) in &self.replicas {
            let Role::Leader { followers, pending_isr, .. } = &replica.role else {
                continue;
            };
            if pending_isr.is_some() {
                continue;
            }
            let out_of_sync: Vec<NodeId> = replica
                .state
                .isr
                .iter()
                .copied()
                .filter(|member| *member != self.id)
                .filter(|member| {
                    followers.get(member).is_none_or(|f| f.last_caught_up.is_none_or(|t| now.since(t) > lag_max))
                })
                .collect();
            if out_of_sync.is_empty() {
                continue;
            }
            let new_isr: Vec<NodeId> = replica.state.isr.iter().copied().filter(|m| !out_of_sync.contains(m)).collect();
            requests.push((*tp, new_isr));
        }
        for (tp, new_isr) in requests {
            self.request_isr_change(now, tp, new_isr);
        }
        self.retry_stale_isr_requests(now);
    }

    fn retry_stale_isr_requests(&mut self, now: Millis) {
        // An AlterPartition lost on the way is sent again after the socket timeout.
        let timeout = self.config.replica_socket_timeout_ms;
        let stale: Vec<(TopicPartition, Vec<NodeId>)> = self
            .replicas
            .iter()
            .filter_map(|(tp, replica)| match &replica.role {
                Role::Leader { pending_isr: Some((isr, sent)), .. } if now.since(*sent) > timeout => {
                    Some((*tp, isr.clone()))
                }
                _ => None,
            })
            .collect();
        for (tp, isr) in stale {
            self.request_isr_change(now, tp, isr);
        }
    }

    fn request_isr_change(&mut self, now: Millis, tp: TopicPartition, new_isr: Vec<NodeId>) {
        let Some(broker_epoch) = self.broker_epoch else {
            return;
        };
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        let Role::Leader { pending_isr, .. } = &mut replica.role else {
            return;
        };
        *pending_isr = Some((new_isr.clone(), now));
        let item = AlterPartitionItem {
            tp,
            leader_epoch: replica.state.leader_epoch,
            partition_epoch: replica.state.partition_epoch,
            new_isr: new_isr.clone(),
        };
        self.event(ClusterEvent::IsrChangeRequested { broker: self.id, tp, new_isr });
        self.send(self.controller, Message::AlterPartition { broker_epoch, items: vec![item] });
    }

    fn handle_alter_partition_response(
        &mut self,
        now: Millis,
        items: Vec<(TopicPartition, ErrorCode, Option<PartitionState>)>,
    ) {
        for (tp, _error, state) in items {
            if let Some(replica) = self.replicas.get_mut(&tp) {
                if let Role::Leader { pending_isr, .. } = &mut replica.role {
                    *pending_isr = None;
                }
            }
            if let Some(state) = state {
                self.leaders.insert(tp, (state.leader, state.leader_epoch));
                self.apply_partition_state(now, state);
            }
        }
    }

    // ---- clients ----

    fn handle_client_metadata(&mut self, from: NodeId, correlation: u64) {
        let topics = self.topics.iter().flatten().cloned().collect();
        let partitions = self
            .leaders
            .iter()
            .map(|(tp, (leader, leader_epoch))| PartitionLeader {
                tp: *tp,
                leader: *leader,
                leader_epoch: *leader_epoch,
            })
            .collect();
        self.send(from, Message::MetadataResponse { correlation, topics, partitions });
    }

    /// `min.insync.replicas` of the topic in `topics` (1 for a topic this broker does not
    /// know). Takes the field, not `self`, so callers can hold a replica meanwhile.
    fn configured_min_isr(topics: &[Option<TopicMeta>], topic: u32) -> usize {
        topics.get(topic as usize).and_then(Option::as_ref).map_or(1, |t| t.min_insync_replicas as usize)
    }

    fn event(&mut self, event: ClusterEvent) {
        self.outbox.push_back(Action::Event(event));
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.outbox.push_back(Action::Send { to, msg });
    }
}
