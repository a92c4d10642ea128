//! The broker side of transactions (KIP-98): FindCoordinator for transactional ids, the
//! transaction coordinator for the `__transaction_state` partitions this broker leads
//! (its records appended with acks=all and reported once below the high watermark), the
//! coordinator's marker sends (WriteTxnMarkers to every partition's leader, retried until
//! written), and the partition leader's side of WriteTxnMarkers.
//!
//! As for groups, a broker that becomes leader of a state partition loads that
//! partition's transactional ids from its own log (`TransactionStateManager`'s load reads
//! to the log end) and sends the markers again for every transaction it finds prepared;
//! one that stops leading it unloads them and stops their markers.
//!
//! Markers are checked with Kafka 4.1's rule (a marker older than the producer's epoch is
//! INVALID_PRODUCER_EPOCH). A marker request that fails so is given up, as Kafka's
//! `TransactionMarkerRequestCompletionHandler` gives it up: the producer or coordinator has
//! moved on, and the transaction stays prepared until its partition is loaded again.

use super::groups::{internal_record, COORDINATOR_PRODUCER, INTERNAL_WRITE_BASE};
use super::{Broker, PARKED_REQUESTS_MAX};
use crate::action::Action;
use crate::config::Acks;
use crate::error::ErrorCode;
use crate::log::{BrokerDisk, Payload, Record};
use crate::messages::Message;
use crate::txn::{txn_partition_for, TxnOutput, TxnRecord, TxnRequest, TxnResponse};
use crate::types::{BatchKind, Millis, NodeId, Offset, TopicPartition, WriteId};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Producer ids each broker may hand out (its block; see `BrokerDisk::producer_ids_issued`).
const PRODUCER_ID_BLOCK: u32 = 1 << 20;

/// A coordinator append waiting for the state partition's high watermark.
#[derive(Clone, Debug)]
pub(super) struct TxnAppend {
    token: u64,
    tp: TopicPartition,
    required: Offset,
    deadline: Millis,
}

/// The markers of one ended transaction, on their way to the partitions.
#[derive(Clone, Debug)]
pub(super) struct MarkerWrite {
    transactional_id: String,
    producer_id: NonZeroU32,
    epoch: u16,
    commit: bool,
    /// Partitions whose marker is not known to be written.
    remaining: Vec<TopicPartition>,
    /// When partitions without a request in flight are sent (again).
    send_at: Millis,
}

/// One marker of a WriteTxnMarkers request: the producer's transaction, how it ended and
/// the transaction version it was written under.
#[derive(Clone, Copy, Debug)]
pub(super) struct Marker {
    pub producer_id: NonZeroU32,
    pub epoch: u16,
    pub commit: bool,
    pub transaction_version: u8,
}

/// One WriteTxnMarkers request in flight.
#[derive(Clone, Debug)]
pub(super) struct MarkerRequest {
    write: u64,
    partitions: Vec<TopicPartition>,
    deadline: Millis,
}

/// A WriteTxnMarkers request at a partition leader, waiting for its markers to be
/// replicated.
#[derive(Clone, Debug)]
pub(super) struct ParkedMarkers {
    from: NodeId,
    correlation: u64,
    results: Vec<(TopicPartition, ErrorCode)>,
    /// Partitions whose marker must get below the HW: (partition, offset after it).
    waiting: Vec<(TopicPartition, Offset)>,
    deadline: Millis,
    /// Whose transaction the markers end, and how (the group coordinator's pending
    /// offsets in an offsets partition end with it).
    producer_id: NonZeroU32,
    commit: bool,
}

/// A fresh producer id from this broker's block, unless it is not registered or its
/// block is spent.
pub(super) fn allocate_producer_id(id: NodeId, registered: bool, disk: &mut BrokerDisk) -> Option<NonZeroU32> {
    let issued = disk.producer_ids_issued;
    if !registered || issued >= PRODUCER_ID_BLOCK - 1 {
        return None;
    }
    let pid = (id.0 + 1).checked_mul(PRODUCER_ID_BLOCK)?.checked_add(issued)?;
    let pid = NonZeroU32::new(pid)?;
    disk.producer_ids_issued += 1;
    Some(pid)
}

impl Broker {
    fn txn_state_tp(&self, transactional_id: &str) -> Option<TopicPartition> {
        let txn = self.config.txn.as_ref()?;
        let partition = txn_partition_for(transactional_id, txn.coordinator.partitions);
        Some(TopicPartition { topic: txn.state_topic, partition })
    }

    pub(super) fn is_txn_state_topic(&self, tp: TopicPartition) -> bool {
        self.config.txn.as_ref().is_some_and(|t| t.state_topic == tp.topic)
    }

    /// The broker that coordinates `transactional_id`, as this broker's metadata says: the
    /// leader of its `__transaction_state` partition.
    fn txn_coordinator_of(&self, transactional_id: &str) -> Option<NodeId> {
        self.txn_state_tp(transactional_id).and_then(|tp| self.leaders.get(&tp).and_then(|(l, _)| *l))
    }

    pub(super) fn handle_find_txn_coordinator(&mut self, from: NodeId, correlation: u64, transactional_id: &str) {
        let coordinator = self.txn_coordinator_of(transactional_id);
        let error = if coordinator.is_some() { ErrorCode::None } else { ErrorCode::CoordinatorNotAvailable };
        self.send(from, Message::FindCoordinatorResponse { correlation, error, coordinator });
    }

    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn handle_txn_request(&mut self, now: Millis, from: NodeId, correlation: u64, request: TxnRequest) {
        if self.config.txn.is_none() {
            let response = request.error_response(ErrorCode::CoordinatorNotAvailable);
            self.send(from, Message::TxnResponse { correlation, response: Box::new(response) });
            return;
        }
        let (id, registered) = (self.id, self.broker_epoch.is_some());
        let disk = &mut self.disk;
        let mut allocate = || allocate_producer_id(id, registered, disk);
        self.txn_coordinator.handle_request(now, from, correlation, request, &mut allocate);
        self.drain_txn(now);
    }

    /// Moves the coordinator's outputs: answers, state records, markers, history.
    pub(super) fn drain_txn(&mut self, now: Millis) {
        while let Some(output) = self.txn_coordinator.poll_output() {
            match output {
                // This broker's own verification (KIP-890 part 1): answered in place, as
                // its markers are (no message to itself).
                TxnOutput::Respond { to, correlation, response } if to == self.id => {
                    self.handle_verification(now, correlation, response)
                }
                TxnOutput::Respond { to, correlation, response } => {
                    self.send(to, Message::TxnResponse { correlation, response: Box::new(response) })
                }
                TxnOutput::Append { token, partition, record } => self.append_txn_record(now, token, partition, record),
                TxnOutput::WriteMarkers { transactional_id, producer_id, epoch, commit, partitions } => {
                    let write = self.next_marker_write;
                    self.next_marker_write += 1;
                    let remaining = partitions;
                    let marker = MarkerWrite { transactional_id, producer_id, epoch, commit, remaining, send_at: now };
                    self.marker_writes.insert(write, marker);
                }
                TxnOutput::Event(event) => self.outbox.push_back(Action::Txn(Box::new(event))),
            }
        }
        if self.marker_writes.values().any(|w| w.send_at <= now) {
            self.send_markers(now);
        }
    }

    fn append_txn_record(&mut self, now: Millis, token: u64, partition: u32, record: TxnRecord) {
        let Some(txn) = self.config.txn.as_ref() else { return };
        let tp = TopicPartition { topic: txn.state_topic, partition };
        let timeout_ms = txn.append_timeout_ms;
        // `transaction.state.log` appends are acks=all.
        let epoch = match self.leader_epoch_for_append(tp, Acks::All) {
            Ok(epoch) => epoch,
            Err(error) => return self.txn_coordinator.handle_append_result(now, token, error),
        };
        if self.txn_appends.len() >= PARKED_REQUESTS_MAX {
            return self.txn_coordinator.handle_append_result(now, token, ErrorCode::RequestTimedOut);
        }
        let log = self.disk.logs.get_or_default(tp);
        let internal = internal_record(log.log_end_offset(), now);
        log.append_internal(epoch, internal, Arc::new(Payload::Txn(record)));
        self.leader_appends += 1;
        let required = log.log_end_offset();
        self.txn_appends.push(TxnAppend { token, tp, required, deadline: now.plus(timeout_ms) });
        // Followers parked on the partition fetch the record now.
        self.complete_parked_fetches(now, tp);
        self.maybe_increment_high_watermark(now, tp);
    }

    /// After `tp`'s HW moved: state records and markers now below it are durable.
    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn txn_high_watermark_moved(&mut self, now: Millis, tp: TopicPartition, hw: Offset) {
        if !self.txn_appends.is_empty() {
            let mut done = Vec::new();
            self.txn_appends.retain(|a| {
                let durable = a.tp == tp && a.required <= hw;
                if durable {
                    done.push(a.token);
                }
                !durable
            });
            if !done.is_empty() {
                for token in done {
                    self.txn_coordinator.handle_append_result(now, token, ErrorCode::None);
                }
                self.drain_txn(now);
            }
        }
        if !self.parked_markers.is_empty() {
            let mut ended = Vec::new();
            for parked in &mut self.parked_markers {
                parked.waiting.retain(|(t, required)| {
                    let durable = *t == tp && *required <= hw;
                    if durable {
                        parked.results.push((tp, ErrorCode::None));
                        ended.push((parked.producer_id, parked.commit));
                    }
                    !durable
                });
            }
            if self.is_offsets_topic(tp) && !ended.is_empty() {
                for (producer_id, commit) in ended {
                    self.offsets_marker_durable(tp, producer_id, commit);
                }
                self.drain_coordinator(now);
            }
            self.answer_finished_markers(now);
        }
    }

    /// Leadership of `tp` went (or came): parked markers on it fail; for a state
    /// partition, the coordinator loads or unloads its ids.
    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn txn_leadership_changed(&mut self, now: Millis, tp: TopicPartition, leader: bool) {
        if self.config.txn.is_none() {
            return;
        }
        if !leader && !self.parked_markers.is_empty() {
            for parked in &mut self.parked_markers {
                parked.waiting.retain(|(t, _)| {
                    if *t == tp {
                        parked.results.push((tp, ErrorCode::NotLeaderOrFollower));
                    }
                    *t != tp
                });
            }
            self.answer_finished_markers(now);
        }
        if !self.is_txn_state_topic(tp) {
            return;
        }
        let partitions = self.txn_coordinator.config().partitions;
        if leader {
            let records: Vec<TxnRecord> =
                self.disk.logs.get(&tp).map_or_else(Vec::new, |log| log.payload_records(Payload::as_txn));
            self.txn_coordinator.load(now, tp.partition, &records);
        } else {
            let mut failed = Vec::new();
            self.txn_appends.retain(|a| {
                if a.tp == tp {
                    failed.push(a.token);
                }
                a.tp != tp
            });
            for token in failed {
                self.txn_coordinator.handle_append_result(now, token, ErrorCode::NotLeaderOrFollower);
            }
            self.txn_coordinator.unload(tp.partition);
            // Its transactions' markers stop; the next coordinator sends them again.
            let gone: Vec<u64> = self
                .marker_writes
                .iter()
                .filter(|(_, w)| txn_partition_for(&w.transactional_id, partitions) == tp.partition)
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.marker_writes.remove(&id);
            }
            self.marker_requests.retain(|_, r| self.marker_writes.contains_key(&r.write));
        }
        self.drain_txn(now);
    }

    // ---- markers, coordinator side ----

    /// Sends WriteTxnMarkers for every partition due whose marker is neither written nor
    /// asked for, one request per leader.
    fn send_markers(&mut self, now: Millis) {
        let Some(txn) = self.config.txn.as_ref() else { return };
        let (retry_ms, timeout_ms) = (txn.marker_retry_ms, txn.append_timeout_ms);
        let transaction_version = self.marker_transaction_version();
        let mut requests: Vec<(NodeId, u64, Message)> = Vec::new();
        for (write_id, write) in self.marker_writes.iter_mut() {
            if write.send_at > now {
                continue;
            }
            write.send_at = now.plus(retry_ms);
            let asked = |tp: &TopicPartition| {
                self.marker_requests.values().any(|r| r.write == *write_id && r.partitions.contains(tp))
            };
            let mut per_leader: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
            for tp in write.remaining.iter().filter(|tp| !asked(tp)) {
                // A partition without a known leader waits for the next round.
                if let Some(leader) = self.leaders.get(tp).and_then(|(l, _)| *l) {
                    per_leader.entry(leader).or_default().push(*tp);
                }
            }
            for (leader, partitions) in per_leader {
                let correlation = self.next_correlation;
                self.next_correlation += 1;
                let request =
                    MarkerRequest { write: *write_id, partitions: partitions.clone(), deadline: now.plus(timeout_ms) };
                self.marker_requests.insert(correlation, request);
                let msg = Message::WriteTxnMarkers {
                    correlation,
                    producer_id: write.producer_id,
                    epoch: write.epoch,
                    commit: write.commit,
                    partitions,
                    transaction_version,
                };
                requests.push((leader, correlation, msg));
            }
        }
        for (leader, correlation, msg) in requests {
            if leader == self.id {
                // This broker leads the partition itself: no network in between.
                if let Message::WriteTxnMarkers {
                    producer_id, epoch, commit, partitions, transaction_version, ..
                } = msg
                {
                    let marker = Marker { producer_id, epoch, commit, transaction_version };
                    self.handle_write_txn_markers(now, self.id, correlation, marker, partitions);
                }
            } else {
                self.send(leader, msg);
            }
        }
    }

    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn handle_write_txn_markers_response(
        &mut self,
        now: Millis,
        correlation: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
    ) {
        let Some(request) = self.marker_requests.remove(&correlation) else { return };
        let Some(write) = self.marker_writes.get_mut(&request.write) else { return };
        let mut give_up = false;
        for (tp, error) in results {
            match error {
                ErrorCode::None => write.remaining.retain(|t| *t != tp),
                ErrorCode::InvalidProducerEpoch => give_up = true,
                // NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT …: again.
                _ => {}
            }
        }
        if give_up {
            self.marker_writes.remove(&request.write);
            self.marker_requests.retain(|_, r| r.write != request.write);
            return;
        }
        let pending = self.marker_requests.values().any(|r| r.write == request.write);
        if write.remaining.is_empty() && !pending {
            let Some(done) = self.marker_writes.remove(&request.write) else { return };
            self.txn_coordinator.markers_written(now, &done.transactional_id, done.producer_id, done.epoch);
            self.drain_txn(now);
        }
    }

    // ---- markers, partition-leader side ----

    /// WriteTxnMarkers at a partition leader: each marker is checked and appended, and
    /// the answer waits until all of them are below the high watermark.
    #[allow(clippy::too_many_arguments)]
    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn handle_write_txn_markers(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        marker: Marker,
        partitions: Vec<TopicPartition>,
    ) {
        let Marker { producer_id, epoch, commit, transaction_version } = marker;
        let timeout_ms = self.config.txn.as_ref().map_or(5_000, |t| t.append_timeout_ms);
        let mut parked = ParkedMarkers {
            from,
            correlation,
            results: Vec::new(),
            waiting: Vec::new(),
            deadline: now.plus(timeout_ms),
            producer_id,
            commit,
        };
        for tp in partitions {
            let error = self.append_marker(now, tp, producer_id, epoch, commit, transaction_version);
            match error {
                Ok(required) => parked.waiting.push((tp, required)),
                Err(error) => parked.results.push((tp, error)),
            }
        }
        if parked.waiting.is_empty() {
            return self.answer_markers(now, parked);
        }
        if self.parked_markers.len() >= PARKED_REQUESTS_MAX {
            let ParkedMarkers { mut results, waiting, .. } = parked;
            results.extend(waiting.into_iter().map(|(tp, _)| (tp, ErrorCode::RequestTimedOut)));
            return self.answer_markers(now, ParkedMarkers { results, waiting: Vec::new(), ..parked });
        }
        self.parked_markers.push(parked);
        let tps: Vec<TopicPartition> = self.parked_markers.last().map_or_else(Vec::new, |p| {
            let mut tps: Vec<TopicPartition> = p.waiting.iter().map(|(tp, _)| *tp).collect();
            tps.dedup();
            tps
        });
        for tp in tps {
            self.maybe_increment_high_watermark(now, tp);
            self.complete_parked_fetches(now, tp);
        }
    }

    /// The transaction version this coordinator's markers carry: 2 with an epoch bump per
    /// transaction (KIP-890 part 2), 1 without; 0 from a coordinator before KIP-1228.
    fn marker_transaction_version(&self) -> u8 {
        match self.config.txn.as_ref().map(|t| &t.coordinator) {
            Some(c) if c.marker_transaction_version => {
                if c.bump_epoch_per_transaction {
                    2
                } else {
                    1
                }
            }
            _ => 0,
        }
    }

    /// Appends one marker; the offset after it, or why not.
    fn append_marker(
        &mut self,
        now: Millis,
        tp: TopicPartition,
        producer_id: NonZeroU32,
        epoch: u16,
        commit: bool,
        transaction_version: u8,
    ) -> Result<Offset, ErrorCode> {
        // Markers are written with acks=all.
        let leader_epoch = self.leader_epoch_for_append(tp, Acks::All)?;
        let log = self.disk.logs.get_or_default(tp);
        // `appendEndTxnMarker`: a version-2 marker carries a bumped epoch, so one whose
        // epoch is not above the producer's is late or repeated (KIP-1228); without the
        // version, only an older epoch is refused.
        log.check_marker(producer_id, epoch, transaction_version >= 2)?;
        let offset = log.log_end_offset();
        let write = WriteId(INTERNAL_WRITE_BASE + offset.0);
        log.append_as_leader(
            leader_epoch,
            &[Record::marker(producer_id, epoch, commit, write, COORDINATOR_PRODUCER, now)],
        );
        let end = log.log_end_offset();
        self.leader_appends += 1;
        for held in &mut self.verifying {
            if held.producer_id == producer_id && held.partitions.contains(&tp) {
                held.guard_broken = true;
            }
        }
        Ok(end)
    }

    fn answer_finished_markers(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_markers.len() {
            if self.parked_markers[index].waiting.is_empty() {
                let parked = self.parked_markers.swap_remove(index);
                self.answer_markers(now, parked);
            } else {
                index += 1;
            }
        }
    }

    fn answer_markers(&mut self, now: Millis, parked: ParkedMarkers) {
        if parked.from == self.id {
            self.handle_write_txn_markers_response(now, parked.correlation, parked.results);
        } else {
            let msg = Message::WriteTxnMarkersResponse { correlation: parked.correlation, partitions: parked.results };
            self.send(parked.from, msg);
        }
    }

    // ---- timers ----

    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn txn_timeouts(&mut self, now: Millis) {
        if self.config.txn.is_none() {
            return;
        }
        if self.txn_appends.iter().any(|a| a.deadline <= now) {
            let mut expired = Vec::new();
            self.txn_appends.retain(|a| {
                if a.deadline <= now {
                    expired.push(a.token);
                }
                a.deadline > now
            });
            for token in expired {
                self.txn_coordinator.handle_append_result(now, token, ErrorCode::RequestTimedOut);
            }
        }
        if self.txn_coordinator.poll_timeout().is_some_and(|at| at <= now) {
            self.txn_coordinator.handle_timeout(now);
        }
        // A marker request unanswered this long is taken as lost.
        self.marker_requests.retain(|_, r| r.deadline > now);
        for parked in &mut self.parked_markers {
            if parked.deadline <= now {
                let timed_out = parked.waiting.drain(..).map(|(tp, _)| (tp, ErrorCode::RequestTimedOut));
                parked.results.extend(timed_out);
            }
        }
        self.answer_finished_markers(now);
        if self.verifying.iter().any(|v| v.deadline <= now) {
            self.expire_verifications(now);
        }
        self.drain_txn(now);
    }

    // Off the hot paths of clusters without transactions.
    #[cold]
    pub(super) fn txn_deadline(&self) -> Option<Millis> {
        let appends = self.txn_appends.iter().map(|a| a.deadline);
        let writes = self.marker_writes.values().map(|w| w.send_at);
        let requests = self.marker_requests.values().map(|r| r.deadline);
        let parked = self.parked_markers.iter().map(|p| p.deadline);
        let verifying = self.verifying.iter().map(|v| v.deadline);
        appends
            .chain(writes)
            .chain(requests)
            .chain(parked)
            .chain(verifying)
            .chain(self.txn_coordinator.poll_timeout())
            .min()
    }
}

/// A transactional produce request held while the coordinator verifies its partitions
/// (KIP-890 part 1's AddPartitionsToTxn with `verify_only`).
#[derive(Clone, Debug)]
pub(super) struct VerifyingProduce {
    correlation: u64,
    coordinator: NodeId,
    deadline: Millis,
    request: super::ProduceRequest,
    /// The partitions and producer id verified.
    partitions: Vec<TopicPartition>,
    producer_id: NonZeroU32,
    /// Kafka's VerificationGuard: a marker of this producer written to one of the
    /// partitions since the verification began ends the transaction it verified, so a
    /// positive answer no longer holds.
    guard_broken: bool,
}

impl VerifyingProduce {
    pub(super) fn from(&self) -> NodeId {
        self.request.from
    }
}

impl Broker {
    /// KIP-890 part 1 (`ReplicaManager.appendRecords` with verification): a transactional
    /// batch for a partition where its producer has no ongoing transaction under that
    /// epoch waits until the coordinator says the partition is in the producer's ongoing
    /// transaction. Returns the request when it needs no verification.
    #[cold]
    pub(super) fn verify_first(
        &mut self,
        now: Millis,
        request: super::ProduceRequest,
    ) -> Option<super::ProduceRequest> {
        let enabled = self.config.txn.as_ref().is_some_and(|t| t.partition_verification);
        let Some(transactional_id) = request.transactional_id.clone().filter(|_| enabled) else {
            return Some(request);
        };
        let mut partitions = Vec::new();
        let mut producer = None;
        for batch in &request.batches {
            let Some(stamp) = batch.records.first().and_then(|r| r.stamp) else { continue };
            if stamp.kind != BatchKind::Transactional || !self.leads(batch.tp) {
                continue;
            }
            let log = self.disk.logs.get_or_default(batch.tp);
            let ongoing =
                log.producer(stamp.pid).is_some_and(|p| p.epoch == stamp.epoch && p.current_txn_first.is_some());
            if !ongoing {
                partitions.push(batch.tp);
                producer = Some((stamp.pid, stamp.epoch));
            }
        }
        let Some((producer_id, epoch)) = producer else {
            return Some(request);
        };
        let coordinator = self.txn_coordinator_of(&transactional_id);
        let Some(coordinator) = coordinator.filter(|_| self.verifying.len() < PARKED_REQUESTS_MAX) else {
            // No coordinator to ask: a retriable refusal (what Kafka answers old clients).
            self.refuse_produce(request, ErrorCode::NotEnoughReplicas);
            return None;
        };
        let correlation = self.next_verification;
        self.next_verification += 1;
        let txn_request = TxnRequest::AddPartitions {
            transactional_id: transactional_id.to_string(),
            producer_id,
            epoch,
            partitions: partitions.clone(),
            verify_only: true,
        };
        let deadline = now.plus(request.timeout_ms);
        let held = VerifyingProduce {
            correlation,
            coordinator,
            deadline,
            request,
            partitions,
            producer_id,
            guard_broken: false,
        };
        self.verifying.push(held);
        if coordinator == self.id {
            self.handle_txn_request(now, self.id, correlation, txn_request);
        } else {
            self.send(coordinator, Message::Txn { correlation, request: Box::new(txn_request) });
        }
        None
    }

    fn leads(&self, tp: TopicPartition) -> bool {
        self.replicas.get(&tp).is_some_and(|r| matches!(r.role, super::Role::Leader { .. }))
    }

    /// Answers every batch of `request` with `error` (nothing was appended).
    fn refuse_produce(&mut self, request: super::ProduceRequest, error: ErrorCode) {
        self.produce_answered = true;
        if request.acks == Acks::None {
            return;
        }
        let partitions = request
            .batches
            .iter()
            .map(|b| crate::messages::ProducePartitionResponse { tp: b.tp, error, base_offset: None })
            .collect();
        self.send(request.from, Message::ProduceResponse { correlation: request.correlation, partitions });
    }

    /// The coordinator's verdict on a held produce: append it, or refuse it —
    /// INVALID_TXN_STATE for a partition outside the producer's transaction, the epoch and
    /// id errors as they are, the coordinator's retriable ones as NOT_ENOUGH_REPLICAS.
    #[cold]
    pub(super) fn handle_verification(&mut self, now: Millis, correlation: u64, response: TxnResponse) {
        let Some(index) = self.verifying.iter().position(|v| v.correlation == correlation) else { return };
        let held = self.verifying.swap_remove(index);
        match response.error() {
            // The transaction it verified ended meanwhile (its marker is in the log).
            ErrorCode::None if held.guard_broken => self.refuse_produce(held.request, ErrorCode::InvalidTxnState),
            ErrorCode::None => {
                self.produce_answered = true;
                let request = super::ProduceRequest { verified: true, ..held.request };
                self.process_produce(now, request);
            }
            error @ (ErrorCode::InvalidTxnState | ErrorCode::ProducerFenced | ErrorCode::InvalidProducerIdMapping) => {
                self.refuse_produce(held.request, error)
            }
            _ => self.refuse_produce(held.request, ErrorCode::NotEnoughReplicas),
        }
    }

    /// A peer's connection closed: its held produces go (a client), or fail retriably
    /// (the coordinator they wait for).
    #[cold]
    pub(super) fn verification_peer_closed(&mut self, _now: Millis, peer: NodeId) {
        self.verifying.retain(|v| v.request.from != peer);
        let mut index = 0;
        while index < self.verifying.len() {
            if self.verifying[index].coordinator == peer {
                let held = self.verifying.swap_remove(index);
                self.refuse_produce(held.request, ErrorCode::NotEnoughReplicas);
            } else {
                index += 1;
            }
        }
    }

    /// Held produces whose verification took longer than their request timeout.
    #[cold]
    pub(super) fn expire_verifications(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.verifying.len() {
            if self.verifying[index].deadline <= now {
                let held = self.verifying.swap_remove(index);
                self.refuse_produce(held.request, ErrorCode::NotEnoughReplicas);
            } else {
                index += 1;
            }
        }
    }
}
