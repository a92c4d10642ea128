//! A broker: partition replicas as leader or follower, produce with acks, follower fetch,
//! high watermark, ISR changes through the controller, truncation on leader change,
//! flushing, and heartbeats/registration with the controller.
//!
//! Call order for a host: feed inputs with `handle_message`/`handle_timeout`, then drain
//! `poll_action` until `None`, then arm a timer for `poll_timeout`. The broker owns its
//! `BrokerDisk` while it runs; `into_disk` hands it back when the process dies.

use crate::action::{Action, ClusterEvent, TruncationReason};
use crate::config::{Acks, BrokerConfig, Truncation};
use crate::error::ErrorCode;
use crate::log::{BrokerDisk, PartitionLog};
use crate::messages::{
    AlterPartitionItem, FetchPartition, FetchPartitionResponse, Message, MetadataDelta, PartitionLeader,
    PartitionState, ProduceBatch, ProducePartitionResponse, TopicMeta,
};
use crate::types::{BrokerEpoch, LeaderEpoch, Millis, NodeId, Offset, TopicPartition};
use std::collections::{BTreeMap, VecDeque};

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

#[derive(Clone, Debug)]
enum Role {
    Leader {
        followers: BTreeMap<NodeId, FollowerProgress>,
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

pub struct Broker {
    id: NodeId,
    controller: NodeId,
    config: BrokerConfig,
    disk: BrokerDisk,
    incarnation: u64,
    previous_broker_epoch: Option<BrokerEpoch>,
    broker_epoch: Option<BrokerEpoch>,
    registration_in_flight: bool,
    metadata_version: u64,
    topics: BTreeMap<u32, TopicMeta>,
    replicas: BTreeMap<TopicPartition, Replica>,
    /// Leader of every partition this broker knows of (for clients' Metadata).
    leaders: BTreeMap<TopicPartition, (Option<NodeId>, LeaderEpoch)>,
    fenced_brokers: Vec<NodeId>,
    parked_produces: Vec<ParkedProduce>,
    parked_fetches: Vec<ParkedFetch>,
    fetchers: BTreeMap<NodeId, Fetcher>,
    next_correlation: u64,
    next_heartbeat: Millis,
    next_isr_check: Millis,
    next_flush: Option<Millis>,
    next_hw_checkpoint: Millis,
    next_writeback: Option<Millis>,
    /// Log end of each partition at the previous writeback: what is now old enough.
    writeback_marks: BTreeMap<TopicPartition, Offset>,
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
        let next_writeback = config.os_dirty_expire_ms.map(|ms| now.plus(ms));
        Broker {
            id,
            controller,
            config,
            disk,
            incarnation,
            previous_broker_epoch,
            broker_epoch: None,
            registration_in_flight: false,
            metadata_version: 0,
            topics: BTreeMap::new(),
            replicas: BTreeMap::new(),
            leaders: BTreeMap::new(),
            fenced_brokers: Vec::new(),
            parked_produces: Vec::new(),
            parked_fetches: Vec::new(),
            fetchers: BTreeMap::new(),
            next_correlation: 0,
            next_heartbeat: now,
            next_isr_check,
            next_flush,
            next_hw_checkpoint,
            next_writeback,
            writeback_marks: BTreeMap::new(),
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

    pub fn is_registered(&self) -> bool {
        self.broker_epoch.is_some()
    }

    // ---- outputs ----

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.next_heartbeat.min(self.next_isr_check).min(self.next_hw_checkpoint);
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
        for fetcher in self.fetchers.values() {
            match fetcher.in_flight_since {
                Some(since) => next = next.min(since.plus(self.config.replica_socket_timeout_ms)),
                None => next = next.min(fetcher.backoff_until),
            }
        }
        Some(next)
    }

    // ---- inputs ----

    pub fn handle_timeout(&mut self, now: Millis) {
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
                self.next_writeback = Some(now.plus(expire_ms));
                self.write_back();
            }
        }
        self.expire_parked_produces(now);
        self.expire_parked_fetches(now);
        self.run_fetchers(now);
    }

    /// The OS writes back what was already dirty at the previous pass.
    fn write_back(&mut self) {
        for (tp, log) in self.disk.logs.iter_mut() {
            if let Some(mark) = self.writeback_marks.get(tp) {
                log.flush_to(*mark);
            }
            self.writeback_marks.insert(*tp, log.log_end_offset());
        }
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        match msg {
            Message::BrokerRegistrationResponse { error, broker_epoch, metadata } => {
                self.registration_in_flight = false;
                if error == ErrorCode::None {
                    self.broker_epoch = Some(broker_epoch);
                    self.apply_metadata(now, metadata);
                }
            }
            Message::BrokerHeartbeatResponse { error, metadata, .. } => {
                if error == ErrorCode::StaleBrokerEpoch {
                    // The controller no longer knows this registration: register again.
                    self.broker_epoch = None;
                }
                if let Some(metadata) = metadata {
                    self.apply_metadata(now, metadata);
                }
            }
            // Like a KRaft broker that has not caught up since registering, a broker acts on
            // no metadata before its registration is accepted (the response carries it all).
            Message::MetadataUpdate(delta) if self.broker_epoch.is_some() => self.apply_metadata(now, delta),
            Message::AlterPartitionResponse { items } => self.handle_alter_partition_response(now, items),
            Message::Fetch { correlation, max_wait_ms, partitions, .. } => {
                self.handle_fetch(now, from, correlation, max_wait_ms, partitions)
            }
            Message::FetchResponse { correlation, partitions } => {
                self.handle_fetch_response(now, from, correlation, partitions)
            }
            Message::Produce { correlation, acks, timeout_ms, batches } => {
                self.handle_produce(now, from, correlation, acks, timeout_ms, batches)
            }
            Message::Metadata { correlation } => self.handle_client_metadata(from, correlation),
            Message::ConnectionClosed => self.handle_connection_closed(now, from),
            _ => {}
        }
        self.run_fetchers(now);
    }

    fn handle_connection_closed(&mut self, now: Millis, peer: NodeId) {
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
                let msg = Message::BrokerHeartbeat { broker_epoch, metadata_version: self.metadata_version };
                self.send(self.controller, msg);
            }
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
            self.fenced_brokers = delta.fenced_brokers;
        }
        self.metadata_version = self.metadata_version.max(delta.version);
        for topic in delta.topics {
            self.topics.insert(topic.id.0, topic);
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
        let log = self.disk.logs.entry(tp).or_default();
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
    }

    fn become_follower(&mut self, _now: Millis, state: PartitionState) {
        let tp = state.tp;
        let log = self.disk.logs.entry(tp).or_default();
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
        self.event(ClusterEvent::BecameFollower { broker: self.id, tp, leader, leader_epoch });
        if let Some(leader) = leader {
            self.fetchers.entry(leader).or_default();
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

    // ---- produce ----

    fn handle_produce(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        acks: Acks,
        timeout_ms: u64,
        batches: Vec<ProduceBatch>,
    ) {
        let mut items = Vec::with_capacity(batches.len());
        let mut waiting = false;
        for batch in batches {
            let (result, required) = self.append_as_leader(now, &batch, acks);
            if required.is_some() {
                waiting = true;
            }
            items.push((batch.tp, required.unwrap_or(Offset(0)), result));
        }
        if acks == Acks::None {
            return;
        }
        let parked = ParkedProduce { from, correlation, deadline: now.plus(timeout_ms), items };
        if waiting && self.parked_produces.len() < PARKED_REQUESTS_MAX {
            self.parked_produces.push(parked);
            let index = self.parked_produces.len() - 1;
            self.try_complete_produce(index);
        } else {
            let partitions = parked.items.into_iter().map(|(_, _, result)| result).collect();
            self.send(from, Message::ProduceResponse { correlation, partitions });
        }
    }

    /// Appends one batch as leader. Returns the result and, for acks=all, the offset the
    /// high watermark must reach before the batch is acknowledged.
    fn append_as_leader(
        &mut self,
        now: Millis,
        batch: &ProduceBatch,
        acks: Acks,
    ) -> (ProducePartitionResponse, Option<Offset>) {
        let tp = batch.tp;
        let fail = |error| (ProducePartitionResponse { tp, error, base_offset: None }, None);
        let Some(replica) = self.replicas.get(&tp) else {
            return fail(ErrorCode::NotLeaderOrFollower);
        };
        if !matches!(replica.role, Role::Leader { .. }) {
            return fail(ErrorCode::NotLeaderOrFollower);
        }
        let min_isr = self.effective_min_isr(tp);
        if acks == Acks::All && replica.state.isr.len() < min_isr {
            return fail(ErrorCode::NotEnoughReplicas);
        }
        let leader_epoch = replica.state.leader_epoch;
        let log = self.disk.logs.entry(tp).or_default();
        let base = log.append_as_leader(leader_epoch, &batch.records);
        let end = log.log_end_offset();
        if let Some(every) = self.config.flush_messages {
            if log.unflushed_records() >= every {
                log.flush();
            }
        }
        self.maybe_increment_high_watermark(now, tp);
        self.complete_parked_fetches(now, tp);
        let result = ProducePartitionResponse { tp, error: ErrorCode::None, base_offset: Some(base) };
        let required = (acks == Acks::All).then_some(end);
        (result, required)
    }

    fn effective_min_isr(&self, tp: TopicPartition) -> usize {
        let configured = self.topics.get(&tp.topic.0).map_or(1, |topic| topic.min_insync_replicas as usize);
        let replicas = self.replicas.get(&tp).map_or(1, |replica| replica.state.replicas.len());
        configured.min(replicas)
    }

    fn try_complete_produce(&mut self, index: usize) -> bool {
        let parked = &mut self.parked_produces[index];
        let mut done = true;
        for (tp, required, result) in parked.items.iter_mut() {
            if result.error != ErrorCode::None || result.base_offset.is_none() {
                continue;
            }
            let Some(replica) = self.replicas.get(tp) else {
                *result =
                    ProducePartitionResponse { tp: *tp, error: ErrorCode::NotLeaderOrFollower, base_offset: None };
                continue;
            };
            let Role::Leader { pending_isr, .. } = &replica.role else {
                *result =
                    ProducePartitionResponse { tp: *tp, error: ErrorCode::NotLeaderOrFollower, base_offset: None };
                continue;
            };
            if replica.high_watermark < *required {
                done = false;
                continue;
            }
            let maximal_isr =
                pending_isr.as_ref().map_or(replica.state.isr.len(), |(isr, _)| isr.len().max(replica.state.isr.len()));
            let configured = self.topics.get(&tp.topic.0).map_or(1, |t| t.min_insync_replicas as usize);
            if maximal_isr < configured.min(replica.state.replicas.len()) {
                result.error = ErrorCode::NotEnoughReplicasAfterAppend;
            }
            // Mark as answered by clearing the requirement.
            *required = Offset(0);
        }
        if done {
            let parked = self.parked_produces.swap_remove(index);
            let partitions = parked.items.into_iter().map(|(_, _, result)| result).collect();
            self.send(parked.from, Message::ProduceResponse { correlation: parked.correlation, partitions });
        }
        done
    }

    fn complete_parked_produces(&mut self, tp: TopicPartition) {
        let mut index = 0;
        while index < self.parked_produces.len() {
            let touches = self.parked_produces[index].items.iter().any(|(item_tp, _, _)| *item_tp == tp);
            if touches && self.try_complete_produce(index) {
                continue;
            }
            index += 1;
        }
    }

    fn fail_parked_produces(&mut self, tp: TopicPartition, error: ErrorCode) {
        for parked in &mut self.parked_produces {
            for (item_tp, _, result) in parked.items.iter_mut() {
                if *item_tp == tp && result.error == ErrorCode::None {
                    *result = ProducePartitionResponse { tp, error, base_offset: None };
                }
            }
        }
        self.complete_parked_produces(tp);
    }

    fn expire_parked_produces(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_produces.len() {
            if self.parked_produces[index].deadline > now {
                index += 1;
                continue;
            }
            let parked = self.parked_produces.swap_remove(index);
            let partitions = parked
                .items
                .into_iter()
                .map(|(tp, required, result)| {
                    if required > Offset(0) && result.error == ErrorCode::None {
                        ProducePartitionResponse { tp, error: ErrorCode::RequestTimedOut, base_offset: None }
                    } else {
                        result
                    }
                })
                .collect();
            self.send(parked.from, Message::ProduceResponse { correlation: parked.correlation, partitions });
        }
    }

    // ---- high watermark ----

    /// Kafka's `maybeIncrementLeaderHW`: the HW is the least log end offset of the leader
    /// and of every follower in the maximal ISR or caught up within the lag time.
    fn maybe_increment_high_watermark(&mut self, now: Millis, tp: TopicPartition) {
        let min_isr = self.effective_min_isr(tp);
        let strict_min_isr = self.config.protocol.eligible_leader_replicas;
        let lag_max = self.config.replica_lag_time_max_ms;
        let fenced = &self.fenced_brokers;
        let Some(log) = self.disk.logs.get(&tp) else {
            return;
        };
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        let Role::Leader { followers, pending_isr, .. } = &replica.role else {
            return;
        };
        if strict_min_isr && replica.state.isr.len() < min_isr {
            // KIP-966: the HW only advances while the ISR is at least min ISR.
            return;
        }
        let mut new_hw = log.log_end_offset();
        for (follower, progress) in followers {
            let in_maximal_isr = replica.state.isr.contains(follower)
                || pending_isr.as_ref().is_some_and(|(isr, _)| isr.contains(follower));
            // KIP-841: a fenced replica cannot join the ISR, so it does not hold the HW.
            let caught_up =
                progress.last_caught_up.is_some_and(|t| now.since(t) <= lag_max) && !fenced.contains(follower);
            if in_maximal_isr || caught_up {
                new_hw = new_hw.min(progress.log_end);
            }
        }
        if new_hw > replica.high_watermark {
            replica.high_watermark = new_hw;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: true, high_watermark: new_hw });
            self.complete_parked_produces(tp);
        }
    }

    fn checkpoint_high_watermarks(&mut self) {
        for (tp, replica) in &self.replicas {
            if let Some(log) = self.disk.logs.get_mut(tp) {
                log.checkpoint_hw(replica.high_watermark);
            }
        }
    }

    // ---- fetch (leader side) ----

    fn handle_fetch(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        max_wait_ms: u64,
        partitions: Vec<FetchPartition>,
    ) {
        let mut responses = Vec::with_capacity(partitions.len());
        let mut any_data = false;
        for request in &partitions {
            let response = self.read_for_follower(now, from, request);
            any_data |=
                !response.records.is_empty() || response.error != ErrorCode::None || response.diverging_epoch.is_some();
            responses.push(response);
        }
        let park = !any_data && max_wait_ms > 0 && self.parked_fetches.len() < PARKED_REQUESTS_MAX;
        if park {
            self.parked_fetches.push(ParkedFetch { from, correlation, deadline: now.plus(max_wait_ms), partitions });
        } else {
            self.send(from, Message::FetchResponse { correlation, partitions: responses });
        }
    }

    fn read_for_follower(&mut self, now: Millis, follower: NodeId, request: &FetchPartition) -> FetchPartitionResponse {
        let tp = request.tp;
        let truncation = self.config.protocol.truncation;
        let max_records = self.config.replica_fetch_max_records;
        let mut response = FetchPartitionResponse {
            tp,
            error: ErrorCode::None,
            high_watermark: Offset(0),
            log_end_offset: Offset(0),
            diverging_epoch: None,
            records: Vec::new(),
        };
        let Some(replica) = self.replicas.get(&tp) else {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        };
        if !matches!(replica.role, Role::Leader { .. }) {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        }
        if request.current_leader_epoch != replica.state.leader_epoch {
            response.error = if request.current_leader_epoch < replica.state.leader_epoch {
                ErrorCode::FencedLeaderEpoch
            } else {
                ErrorCode::UnknownLeaderEpoch
            };
            return response;
        }
        let log = self.disk.logs.entry(tp).or_default();
        response.log_end_offset = log.log_end_offset();
        if truncation == Truncation::LeaderEpoch {
            if let Some(last_fetched) = request.last_fetched_epoch {
                let diverging = match log.end_offset_for_epoch(last_fetched) {
                    Some((epoch, end)) if epoch == last_fetched && end >= request.fetch_offset => None,
                    Some((epoch, end)) => Some((epoch, end)),
                    None => Some((LeaderEpoch(0), Offset(0))),
                };
                if diverging.is_some() {
                    response.diverging_epoch = diverging;
                    response.high_watermark = self.replicas[&tp].high_watermark;
                    return response;
                }
            }
        }
        if request.fetch_offset > log.log_end_offset() {
            response.error = ErrorCode::OffsetOutOfRange;
            response.high_watermark = self.replicas[&tp].high_watermark;
            return response;
        }
        response.records = log.read(request.fetch_offset, max_records).to_vec();
        let leader_end = log.log_end_offset();
        self.update_follower_state(now, tp, follower, request.fetch_offset, leader_end);
        response.high_watermark = self.replicas[&tp].high_watermark;
        response
    }

    /// Kafka's `updateFollowerFetchState`: a follower is caught up when it fetched from the
    /// leader's end, or from the end the leader had at the follower's previous fetch.
    fn update_follower_state(
        &mut self,
        now: Millis,
        tp: TopicPartition,
        follower: NodeId,
        fetch_offset: Offset,
        leader_end: Offset,
    ) {
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        let Role::Leader { followers, pending_isr, epoch_start_offset } = &mut replica.role else {
            return;
        };
        let Some(progress) = followers.get_mut(&follower) else {
            return;
        };
        if fetch_offset >= leader_end {
            progress.last_caught_up = Some(now);
        } else if fetch_offset >= progress.last_fetch_leader_log_end && progress.last_fetch_time.is_some() {
            progress.last_caught_up = progress.last_caught_up.max(progress.last_fetch_time);
        }
        progress.log_end = fetch_offset;
        progress.last_fetch_time = Some(now);
        progress.last_fetch_leader_log_end = leader_end;
        // ISR expansion: a follower that reached the HW and the current epoch's start.
        let hw = replica.high_watermark;
        let expand = !replica.state.isr.contains(&follower)
            && pending_isr.is_none()
            && fetch_offset >= hw
            && fetch_offset >= *epoch_start_offset;
        let new_isr = expand.then(|| {
            let mut isr = replica.state.isr.clone();
            isr.push(follower);
            isr
        });
        if let Some(new_isr) = new_isr {
            self.request_isr_change(now, tp, new_isr);
        }
        self.maybe_increment_high_watermark(now, tp);
    }

    fn complete_parked_fetches(&mut self, now: Millis, tp: TopicPartition) {
        let mut index = 0;
        while index < self.parked_fetches.len() {
            if self.parked_fetches[index].partitions.iter().any(|p| p.tp == tp) {
                let parked = self.parked_fetches.swap_remove(index);
                self.answer_parked_fetch(now, parked);
            } else {
                index += 1;
            }
        }
    }

    fn expire_parked_fetches(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_fetches.len() {
            if self.parked_fetches[index].deadline <= now {
                let parked = self.parked_fetches.swap_remove(index);
                self.answer_parked_fetch(now, parked);
            } else {
                index += 1;
            }
        }
    }

    fn answer_parked_fetch(&mut self, now: Millis, parked: ParkedFetch) {
        let responses =
            parked.partitions.iter().map(|request| self.read_for_follower(now, parked.from, request)).collect();
        self.send(parked.from, Message::FetchResponse { correlation: parked.correlation, partitions: responses });
    }

    // ---- fetch (follower side) ----

    fn run_fetchers(&mut self, now: Millis) {
        let Some(broker_epoch) = self.broker_epoch else {
            return;
        };
        let socket_timeout = self.config.replica_socket_timeout_ms;
        let due = |f: &Fetcher| match f.in_flight_since {
            Some(since) => now.since(since) >= socket_timeout,
            None => now >= f.backoff_until,
        };
        // Called after every input: most of the time every fetch is in flight.
        if !self.fetchers.values().any(due) {
            return;
        }
        let leaders: Vec<NodeId> = self.fetchers.iter().filter(|(_, f)| due(f)).map(|(l, _)| *l).collect();
        for leader in leaders {
            let fetcher = &self.fetchers[&leader];
            let timed_out =
                fetcher.in_flight_since.is_some_and(|since| now.since(since) >= self.config.replica_socket_timeout_ms);
            if fetcher.in_flight_since.is_some() && !timed_out {
                continue;
            }
            if fetcher.in_flight_since.is_none() && now < fetcher.backoff_until {
                continue;
            }
            let partitions = self.fetch_partitions_for(leader);
            if partitions.is_empty() {
                self.fetchers.remove(&leader);
                continue;
            }
            // Ids are unique across this broker's lives, like a connection's are.
            self.next_correlation += 1;
            let correlation = (self.incarnation << 32) | self.next_correlation;
            let fetcher = self.fetchers.entry(leader).or_default();
            fetcher.in_flight_since = Some(now);
            fetcher.correlation = correlation;
            let max_wait_ms = self.config.replica_fetch_wait_max_ms;
            self.send(leader, Message::Fetch { correlation, broker_epoch, max_wait_ms, partitions });
        }
    }

    fn fetch_partitions_for(&self, leader: NodeId) -> Vec<FetchPartition> {
        let truncation = self.config.protocol.truncation;
        self.replicas
            .values()
            .filter(|replica| matches!(replica.role, Role::Follower { leader: Some(l) } if l == leader))
            .map(|replica| {
                let log = self.disk.logs.get(&replica.state.tp);
                let fetch_offset = log.map_or(Offset(0), |log| log.log_end_offset());
                let last_fetched_epoch = match truncation {
                    Truncation::LeaderEpoch => log.and_then(|log| log.last_epoch()),
                    Truncation::HighWatermark => None,
                };
                FetchPartition {
                    tp: replica.state.tp,
                    fetch_offset,
                    last_fetched_epoch,
                    current_leader_epoch: replica.state.leader_epoch,
                }
            })
            .collect()
    }

    fn handle_fetch_response(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        partitions: Vec<FetchPartitionResponse>,
    ) {
        let Some(fetcher) = self.fetchers.get_mut(&from) else {
            return;
        };
        if fetcher.in_flight_since.is_none() || fetcher.correlation != correlation {
            // The answer to a fetch this broker gave up on (timeout, reset, earlier life).
            return;
        }
        fetcher.in_flight_since = None;
        let mut backoff = false;
        for response in partitions {
            backoff |= self.apply_fetched(from, response);
        }
        if backoff {
            if let Some(fetcher) = self.fetchers.get_mut(&from) {
                fetcher.backoff_until = now.plus(self.config.replica_fetch_backoff_ms);
            }
        }
    }

    /// Applies one partition of a fetch response as follower. Returns whether to back off.
    fn apply_fetched(&mut self, from: NodeId, response: FetchPartitionResponse) -> bool {
        let tp = response.tp;
        let Some(replica) = self.replicas.get(&tp) else {
            return false;
        };
        if !matches!(replica.role, Role::Follower { leader: Some(l) } if l == from) {
            return false;
        }
        let log = self.disk.logs.entry(tp).or_default();
        if let Some((epoch, end_offset)) = response.diverging_epoch {
            // KIP-320: truncate to the smaller of the leader's end for that epoch and ours.
            let own_end = match log.end_offset_for_epoch(epoch) {
                Some((own_epoch, own_end)) if own_epoch == epoch => own_end,
                Some((_, own_end)) => own_end.min(end_offset),
                None => Offset(0),
            };
            let to = end_offset.min(own_end);
            let from_offset = log.log_end_offset();
            // Truncate even when no record goes: the epoch cache loses the epochs that
            // start at `to`, or the next fetch would diverge the same way forever.
            log.truncate_to(to);
            if to < from_offset {
                self.event(ClusterEvent::Truncated {
                    broker: self.id,
                    tp,
                    from: from_offset,
                    to,
                    reason: TruncationReason::DivergingEpoch,
                });
                self.clamp_follower_hw(tp);
            }
            return false;
        }
        match response.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                // Pre-KIP-101 follower: the leader's log is shorter, so cut ours to its end.
                let from_offset = log.log_end_offset();
                let to = response.log_end_offset;
                if to < from_offset {
                    log.truncate_to(to);
                    self.event(ClusterEvent::Truncated {
                        broker: self.id,
                        tp,
                        from: from_offset,
                        to,
                        reason: TruncationReason::OffsetOutOfRange,
                    });
                    self.clamp_follower_hw(tp);
                }
                return false;
            }
            _ => return true,
        }
        log.append_as_follower(&response.records);
        let end = log.log_end_offset();
        if let Some(every) = self.config.flush_messages {
            if log.unflushed_records() >= every {
                log.flush();
            }
        }
        let new_hw = response.high_watermark.min(end);
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return false;
        };
        if new_hw > replica.high_watermark {
            replica.high_watermark = new_hw;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: false, high_watermark: new_hw });
        }
        false
    }

    /// After a truncation the HW cannot stay above the log end (this is where a
    /// pre-KIP-101 follower's HW moves back).
    fn clamp_follower_hw(&mut self, tp: TopicPartition) {
        let end = self.disk.logs.get(&tp).map_or(Offset(0), |log| log.log_end_offset());
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        if replica.high_watermark > end {
            replica.high_watermark = end;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: false, high_watermark: end });
        }
    }

    // ---- clients ----

    fn handle_client_metadata(&mut self, from: NodeId, correlation: u64) {
        let topics = self.topics.values().cloned().collect();
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

    fn event(&mut self, event: ClusterEvent) {
        self.outbox.push_back(Action::Event(event));
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.outbox.push_back(Action::Send { to, msg });
    }
}
