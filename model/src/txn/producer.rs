//! The transactional producer client (Kafka's `KafkaProducer` with its
//! `TransactionManager`), reduced to what a transaction workload needs: one transaction
//! at a time, each partition's records of a transaction in one batch, one request in
//! flight per partition and one to the coordinator.
//!
//! A transaction runs as the Java client runs it: FindCoordinator (key type
//! TRANSACTION), InitProducerId with the transactional id (once per producer instance),
//! AddPartitionsToTxn for the transaction's partitions before their first produce, the
//! batches (transactional, sequenced as an idempotent producer's, acks=all), then EndTxn.
//! Retriable errors are retried after `retry.backoff.ms`; an abortable error of a batch
//! (INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER, …) aborts the transaction; a
//! fatal one (PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING, …) ends the producer, and the
//! application opens a new one with the same transactional id, whose InitProducerId
//! aborts whatever the old instance left open. With KIP-890 part 2 the epoch EndTxn
//! returns is used from then on (sequences start again at 0); without it an abort that
//! leaves a batch's fate unknown bumps the epoch with InitProducerId (KIP-360).
//!
//! A transaction may also carry a consumer group's offsets (`sendOffsetsToTransaction`):
//! AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to the group
//! coordinator with the consumer's group metadata (KIP-447), before EndTxn.
//!
//! Every write of a transaction gets one `Action::Ack` when the transaction ends: Ok when
//! it committed, a definite failure when it aborted, an indefinite one when the producer
//! failed after asking to commit. `Action::Txn` events tell the history which writes
//! formed which transaction and how it ended.

use crate::action::{Action, WriteOutcome};
use crate::config::Acks;
use crate::error::ErrorCode;
use crate::group::coordinator::{GroupRequest, GroupResponse};
use crate::log::Record;
use crate::messages::{BatchRecords, Message, PartitionLeader, ProduceBatch, ProducePartitionResponse};
use crate::txn::{TxnEvent, TxnOutcome, TxnRequest, TxnResponse};
use crate::types::{BatchKind, Millis, NodeId, Offset, ProducerId, Stamp, TopicPartition, WriteId};
use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Bound on the writes of one transaction.
pub const TXN_WRITES_MAX: usize = 10_000;
/// `TransactionManager.ADD_PARTITIONS_RETRY_BACKOFF_MS`.
pub const ADD_PARTITIONS_RETRY_BACKOFF_MS: u64 = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnProducerConfig {
    /// `transactional.id`.
    pub transactional_id: String,
    /// `transaction.timeout.ms`.
    pub transaction_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// `delivery.timeout.ms`: a batch not acknowledged this long after its transaction
    /// began fails, which makes the transaction abort (its request may still be on its
    /// way: the late produce of KIP-890).
    pub delivery_timeout_ms: u64,
    /// `max.block.ms` for `commitTransaction()`/`abortTransaction()`: a transaction
    /// running this long fails the producer (its successor aborts what is left).
    pub max_block_ms: u64,
}

impl Default for TxnProducerConfig {
    fn default() -> Self {
        TxnProducerConfig {
            transactional_id: "txn".into(),
            transaction_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            max_block_ms: 60_000,
        }
    }
}

/// One write of a transaction: the record's identity, partition and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnWrite {
    pub write: WriteId,
    pub tp: TopicPartition,
    pub key: Option<u32>,
}

/// A consumer's offsets to commit inside a transaction, with its group metadata
/// (`consumer.groupMetadata()`, KIP-447).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOffsets {
    pub group: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    pub offsets: Vec<(TopicPartition, Offset)>,
}

/// The one coordinator request a producer has out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Find,
    Init,
    Add,
    AddOffsets,
    End { commit: bool },
}

/// The one group coordinator request out: its lookup or the TxnOffsetCommit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupCall {
    Find,
    Commit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    Unsent,
    InFlight { correlation: u64 },
    Retry { at: Millis },
    Done,
}

#[derive(Clone, Debug)]
struct PartitionBatch {
    tp: TopicPartition,
    records: Arc<BatchRecords>,
    state: BatchState,
    /// Sent at least once without an answer that settles it: it may be in the log.
    unsettled: bool,
}

#[derive(Clone, Debug)]
struct Current {
    txn: u64,
    writes: Vec<TxnWrite>,
    commit: bool,
    started: Millis,
    added: bool,
    batches: Vec<PartitionBatch>,
    /// The abortable error that turned this transaction into an abort.
    abort: Option<ErrorCode>,
    /// An EndTxn(commit) went out: the transaction may have committed.
    commit_sent: bool,
    offsets: Option<TxnOffsets>,
    offsets_added: bool,
    offsets_committed: bool,
}

impl Current {
    fn ending(&self) -> Option<bool> {
        let in_flight = self.batches.iter().any(|b| matches!(b.state, BatchState::InFlight { .. }));
        if self.abort.is_some() {
            return (!in_flight).then_some(false);
        }
        let offsets_done = self.offsets.is_none() || self.offsets_committed;
        (offsets_done && self.batches.iter().all(|b| b.state == BatchState::Done)).then_some(self.commit)
    }

    /// AddOffsetsToTxn is due.
    fn wants_add_offsets(&self) -> bool {
        self.added && self.offsets.is_some() && !self.offsets_added && self.abort.is_none()
    }

    /// The TxnOffsetCommit is due.
    fn wants_offset_commit(&self) -> bool {
        self.offsets_added && !self.offsets_committed && self.abort.is_none()
    }
}

pub struct TxnProducer {
    id: NodeId,
    config: TxnProducerConfig,
    bootstrap: Vec<NodeId>,
    next_bootstrap: usize,
    coordinator: Option<NodeId>,
    leaders: BTreeMap<TopicPartition, NodeId>,
    /// The newest leader epoch seen per partition (KIP-320: older metadata is ignored).
    leader_epochs: crate::tpmap::TpMap<crate::types::LeaderEpoch>,
    metadata_wanted: bool,
    /// Metadata request out: (correlation, broker, deadline).
    metadata_in_flight: Option<(u64, NodeId, Millis)>,
    metadata_retry_at: Millis,
    /// The coordinator request out: (call, correlation, to, deadline).
    call: Option<(Call, u64, NodeId, Millis)>,
    call_retry_at: Millis,
    producer: Option<(NonZeroU32, u16)>,
    /// InitProducerId is due: with the id and epoch to bump (KIP-360), or none for a new
    /// instance.
    init: Option<Option<(NonZeroU32, u16)>>,
    /// Next sequence per partition in the current epoch.
    sequences: BTreeMap<TopicPartition, u32>,
    /// Send order per partition (`Record::sequence`, what the reordering checker reads).
    send_order: BTreeMap<TopicPartition, u32>,
    /// Where every partition's send order starts (see `with_send_order_base`).
    send_order_base: u32,
    current: Option<Current>,
    /// Produce requests out: correlation → (partition, broker, deadline).
    produces: BTreeMap<u64, (TopicPartition, NodeId, Millis)>,
    group_coordinator: Option<NodeId>,
    /// The group coordinator request out: (call, correlation, to, deadline).
    group_call: Option<(GroupCall, u64, NodeId, Millis)>,
    group_retry_at: Millis,
    /// The transactional id as produce requests carry it.
    wire_id: Arc<str>,
    next_correlation: u64,
    outbox: VecDeque<Action>,
}

impl TxnProducer {
    pub fn new(id: NodeId, config: TxnProducerConfig, bootstrap: Vec<NodeId>) -> TxnProducer {
        let wire_id = Arc::from(config.transactional_id.as_str());
        TxnProducer {
            id,
            config,
            bootstrap,
            next_bootstrap: 0,
            coordinator: None,
            leaders: BTreeMap::new(),
            leader_epochs: crate::tpmap::TpMap::new(),
            metadata_wanted: true,
            metadata_in_flight: None,
            metadata_retry_at: Millis::ZERO,
            call: None,
            call_retry_at: Millis::ZERO,
            producer: None,
            init: Some(None),
            sequences: BTreeMap::new(),
            send_order: BTreeMap::new(),
            send_order_base: 0,
            current: None,
            produces: BTreeMap::new(),
            group_coordinator: None,
            group_call: None,
            group_retry_at: Millis::ZERO,
            wire_id,
            next_correlation: 1,
            outbox: VecDeque::new(),
        }
    }

    /// The same producer with its send order (`Record::sequence`) counting from `base`:
    /// a host that restarts an application under the same node id gives each process a
    /// base above the last one's, so the order of all its processes' sends is one order.
    pub fn with_send_order_base(mut self, base: u32) -> TxnProducer {
        self.send_order_base = base;
        self
    }

    /// The same producer with correlation ids from `base` on, so that a process that
    /// also runs a consumer can tell their answers apart.
    pub fn with_correlation_base(mut self, base: u64) -> TxnProducer {
        self.next_correlation = base.max(1);
        self
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn transactional_id(&self) -> &str {
        &self.config.transactional_id
    }

    /// The producer id and epoch in use.
    pub fn producer(&self) -> Option<(NonZeroU32, u16)> {
        self.producer
    }

    /// Whether a new transaction can begin (initialized, none running).
    pub fn ready(&self) -> bool {
        self.producer.is_some() && self.init.is_none() && self.current.is_none()
    }

    /// The transaction running, if any.
    pub fn running(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.txn)
    }

    /// Whether the running transaction's EndTxn(commit) has gone out (it may commit
    /// whatever happens to this producer now).
    pub fn commit_asked(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.commit_sent)
    }

    /// Begins transaction `txn`: `writes` are sent, then the transaction commits
    /// (`commit`) or aborts. False (and nothing done) unless [`TxnProducer::ready`] or
    /// when `writes` is empty or beyond [`TXN_WRITES_MAX`].
    pub fn begin(&mut self, now: Millis, txn: u64, writes: Vec<TxnWrite>, commit: bool) -> bool {
        self.begin_with_offsets(now, txn, writes, commit, None)
    }

    /// [`TxnProducer::begin`], with a consumer's offsets committed in the transaction.
    pub fn begin_with_offsets(
        &mut self,
        now: Millis,
        txn: u64,
        writes: Vec<TxnWrite>,
        commit: bool,
        offsets: Option<TxnOffsets>,
    ) -> bool {
        let Some((pid, epoch)) = self.producer.filter(|_| self.ready()) else {
            return false;
        };
        if writes.is_empty() || writes.len() > TXN_WRITES_MAX {
            return false;
        }
        let mut per_tp: BTreeMap<TopicPartition, Vec<Record>> = BTreeMap::new();
        for w in &writes {
            let order = self.send_order.entry(w.tp).or_insert(self.send_order_base);
            let records = per_tp.entry(w.tp).or_default();
            let base = *self.sequences.get(&w.tp).unwrap_or(&0);
            let index = records.len() as u32;
            records.push(Record {
                write: w.write,
                key: w.key,
                producer: ProducerId(self.id.0),
                sequence: *order,
                timestamp: now,
                stamp: Some(Stamp {
                    pid,
                    epoch,
                    index: index.min(u16::MAX as u32) as u16,
                    sequence: crate::producer::increment_sequence(base, index),
                    kind: BatchKind::Transactional,
                }),
            });
            *order += 1;
        }
        let batches = per_tp
            .into_iter()
            .map(|(tp, records)| {
                let next =
                    crate::producer::increment_sequence(*self.sequences.get(&tp).unwrap_or(&0), records.len() as u32);
                self.sequences.insert(tp, next);
                PartitionBatch {
                    tp,
                    records: Arc::new(records.into_iter().collect()),
                    state: BatchState::Unsent,
                    unsettled: false,
                }
            })
            .collect();
        self.current = Some(Current {
            txn,
            writes,
            commit,
            started: now,
            added: false,
            batches,
            abort: None,
            commit_sent: false,
            offsets,
            offsets_added: false,
            offsets_committed: false,
        });
        self.step(now);
        true
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |at: Millis| next = Some(next.map_or(at, |n| n.min(at)));
        match self.call {
            Some((_, _, _, deadline)) => consider(deadline),
            None if self.wants_call() => consider(self.call_retry_at),
            None => {}
        }
        match self.metadata_in_flight {
            Some((_, _, deadline)) => consider(deadline),
            None if self.metadata_wanted => consider(self.metadata_retry_at),
            None => {}
        }
        for (_, _, deadline) in self.produces.values() {
            consider(*deadline);
        }
        match self.group_call {
            Some((_, _, _, deadline)) => consider(deadline),
            None if self.current.as_ref().is_some_and(|c| c.wants_offset_commit()) => consider(self.group_retry_at),
            None => {}
        }
        if let Some(current) = &self.current {
            for batch in &current.batches {
                if let BatchState::Retry { at } = batch.state {
                    consider(at);
                }
            }
            consider(current.started.plus(self.config.max_block_ms));
            if current.abort.is_none() {
                consider(current.started.plus(self.config.delivery_timeout_ms));
            }
        }
        next
    }

    fn wants_call(&self) -> bool {
        self.coordinator.is_none()
            || self.init.is_some()
            || self.current.as_ref().is_some_and(|c| !c.added || c.wants_add_offsets() || self.may_end(c))
    }

    /// Whether `current` can end now: its batches are settled and no TxnOffsetCommit is
    /// out (one that arrived after the marker would open a transaction nobody ends).
    fn may_end(&self, current: &Current) -> bool {
        current.ending().is_some() && !self.group_call.is_some_and(|(call, ..)| call == GroupCall::Commit)
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.call.is_some_and(|(_, _, _, deadline)| deadline <= now) {
            // Unanswered: look the coordinator up again before the retry.
            self.call = None;
            self.coordinator = None;
            self.call_retry_at = now;
        }
        if self.metadata_in_flight.is_some_and(|(_, _, deadline)| deadline <= now) {
            self.metadata_in_flight = None;
        }
        if self.group_call.is_some_and(|(_, _, _, deadline)| deadline <= now) {
            self.group_call = None;
            self.group_coordinator = None;
        }
        let expired: Vec<u64> = self.produces.iter().filter(|(_, (_, _, d))| *d <= now).map(|(c, _)| *c).collect();
        for correlation in expired {
            self.produce_failed(now, correlation, ErrorCode::RequestTimedOut);
        }
        self.expire_batches(now);
        if self.current.as_ref().is_some_and(|c| now.since(c.started) >= self.config.max_block_ms) {
            self.fatal(now, ErrorCode::RequestTimedOut);
        }
        self.step(now);
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        match msg {
            Message::MetadataResponse { correlation, partitions, .. } => {
                self.handle_metadata(now, correlation, partitions)
            }
            Message::FindCoordinatorResponse { correlation, error, coordinator }
                if self.group_call.is_some_and(|(_, c, _, _)| c == correlation) =>
            {
                self.group_call = None;
                match coordinator.filter(|_| error == ErrorCode::None) {
                    Some(node) => self.group_coordinator = Some(node),
                    None => self.group_retry_at = now.plus(self.config.retry_backoff_ms),
                }
            }
            Message::FindCoordinatorResponse { correlation, error, coordinator } => {
                self.handle_find_coordinator(now, correlation, error, coordinator)
            }
            Message::GroupResponse { correlation, response }
                if self.group_call.is_some_and(|(call, c, _, _)| call == GroupCall::Commit && c == correlation) =>
            {
                self.group_call = None;
                if let GroupResponse::TxnOffsetCommit { error, partitions } = *response {
                    let error = partitions.iter().map(|(_, e)| *e).find(|e| *e != ErrorCode::None).unwrap_or(error);
                    self.handle_offset_commit(now, error);
                }
            }
            Message::TxnResponse { correlation, response } => {
                if let Some(call) = self.take_call(correlation) {
                    self.handle_txn_response(now, call, *response);
                }
            }
            Message::ProduceResponse { correlation, partitions } => {
                self.handle_produce_response(now, correlation, partitions)
            }
            Message::ConnectionClosed => {
                if self.metadata_in_flight.is_some_and(|(_, to, _)| to == from) {
                    self.metadata_in_flight = None;
                    self.metadata_retry_at = now.plus(self.config.retry_backoff_ms);
                }
                if self.call.is_some_and(|(_, _, to, _)| to == from) {
                    self.call = None;
                    self.coordinator = None;
                    self.call_retry_at = now.plus(self.config.retry_backoff_ms);
                }
                if self.group_call.is_some_and(|(_, _, to, _)| to == from) {
                    self.group_call = None;
                    self.group_coordinator = None;
                    self.group_retry_at = now.plus(self.config.retry_backoff_ms);
                }
                let lost: Vec<u64> =
                    self.produces.iter().filter(|(_, (_, to, _))| *to == from).map(|(c, _)| *c).collect();
                for correlation in lost {
                    self.produce_failed(now, correlation, ErrorCode::NetworkException);
                }
            }
            _ => {}
        }
        self.step(now);
    }

    fn handle_find_coordinator(&mut self, now: Millis, correlation: u64, error: ErrorCode, found: Option<NodeId>) {
        if self.take_call(correlation) != Some(Call::Find) {
            return;
        }
        match found.filter(|_| error == ErrorCode::None) {
            Some(node) => self.coordinator = Some(node),
            None => self.call_retry_at = now.plus(self.config.retry_backoff_ms),
        }
    }

    fn take_call(&mut self, correlation: u64) -> Option<Call> {
        let (call, c, _, _) = self.call?;
        if c != correlation {
            return None;
        }
        self.call = None;
        Some(call)
    }

    fn handle_metadata(&mut self, now: Millis, correlation: u64, partitions: Vec<PartitionLeader>) {
        if self.metadata_in_flight.map(|(c, _, _)| c) != Some(correlation) {
            return;
        }
        self.metadata_in_flight = None;
        self.metadata_retry_at = now.plus(self.config.retry_backoff_ms);
        if partitions.is_empty() {
            return;
        }
        self.metadata_wanted = false;
        let had = &self.leaders;
        let leaders = PartitionLeader::leaders_kept(partitions, &mut self.leader_epochs, |tp| had.get(tp).copied());
        self.leaders = leaders.collect();
    }

    fn handle_txn_response(&mut self, now: Millis, call: Call, response: TxnResponse) {
        let error = response.error();
        if error != ErrorCode::None {
            return self.coordinator_error(now, call, error);
        }
        match (call, response) {
            (Call::Init, TxnResponse::InitProducerId { producer: Some(producer), .. }) => {
                self.init = None;
                self.set_producer(producer);
            }
            (Call::Add, TxnResponse::AddPartitions { .. }) => {
                if let Some(current) = self.current.as_mut() {
                    current.added = true;
                }
            }
            (Call::AddOffsets, TxnResponse::AddOffsets { .. }) => {
                if let Some(current) = self.current.as_mut() {
                    current.offsets_added = true;
                }
            }
            (Call::End { commit }, TxnResponse::EndTxn { producer, .. }) => {
                let Some(current) = self.current.take() else { return };
                let error = current.abort.unwrap_or(ErrorCode::None);
                let outcome = if commit { TxnOutcome::Committed } else { TxnOutcome::Aborted };
                let unsettled = current.batches.iter().any(|b| b.unsettled && b.state != BatchState::Done);
                self.finish(now, current, outcome, error);
                match producer {
                    // KIP-890 part 2: the bumped epoch; its sequences start at 0.
                    Some(producer) if Some(producer) != self.producer => self.set_producer(producer),
                    // KIP-360: a batch of the aborted transaction may be in a log under
                    // sequences the next one would reuse; bump the epoch first.
                    _ if unsettled => self.init = Some(self.producer),
                    _ => {}
                }
            }
            _ => self.call_retry_at = now.plus(self.config.retry_backoff_ms),
        }
    }

    fn set_producer(&mut self, producer: (NonZeroU32, u16)) {
        self.producer = Some(producer);
        self.sequences.clear();
        let transactional_id = self.config.transactional_id.clone();
        let event = TxnEvent::ProducerEpoch { transactional_id, producer_id: producer.0, epoch: producer.1 };
        self.outbox.push_back(Action::Txn(Box::new(event)));
    }

    fn coordinator_error(&mut self, now: Millis, call: Call, error: ErrorCode) {
        self.call_retry_at = now.plus(self.config.retry_backoff_ms);
        if call == Call::Add && error == ErrorCode::ConcurrentTransactions {
            // The previous transaction is still completing: the Java client retries
            // AddPartitionsToTxn sooner (TransactionManager's 20 ms backoff for it).
            self.call_retry_at = now.plus(self.config.retry_backoff_ms.min(ADD_PARTITIONS_RETRY_BACKOFF_MS));
        }
        match error {
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress => {
                self.coordinator = None
            }
            ErrorCode::ConcurrentTransactions | ErrorCode::RequestTimedOut | ErrorCode::NetworkException => {}
            // KIP-360: a bump with an id and epoch the coordinator no longer knows
            // (fenced meanwhile) is refused; start over as a new instance.
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch if call == Call::Init => self.init = Some(None),
            // PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING, INVALID_TXN_STATE, …
            _ => self.fatal(now, error),
        }
    }

    /// The TxnOffsetCommit's answer, as the Java client's `TxnOffsetCommitHandler` takes
    /// it: coordinator errors look it up again, load errors retry, a fenced producer is
    /// fatal, and a stale group membership (KIP-447) aborts the transaction.
    fn handle_offset_commit(&mut self, now: Millis, error: ErrorCode) {
        self.group_retry_at = now.plus(self.config.retry_backoff_ms);
        match error {
            ErrorCode::None => {
                if let Some(current) = self.current.as_mut() {
                    current.offsets_committed = true;
                }
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => self.group_coordinator = None,
            ErrorCode::RequestTimedOut
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::ConcurrentTransactions
            | ErrorCode::NetworkException => {}
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration | ErrorCode::FencedInstanceId => {
                if let Some(current) = self.current.as_mut() {
                    current.abort.get_or_insert(error);
                }
            }
            // INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, and whatever else: fatal.
            _ => self.fatal(now, error),
        }
    }

    /// A fatal error: the transaction ends (aborted, or unknown once a commit was asked
    /// for) and the application opens a new producer with the same transactional id.
    fn fatal(&mut self, now: Millis, error: ErrorCode) {
        if let Some(current) = self.current.take() {
            let outcome = if current.commit_sent { TxnOutcome::Unknown } else { TxnOutcome::Aborted };
            self.finish(now, current, outcome, error);
        }
        self.producer = None;
        self.init = Some(None);
        self.sequences.clear();
        self.produces.clear();
        self.call = None;
        self.group_call = None;
        self.call_retry_at = now.plus(self.config.retry_backoff_ms);
    }

    fn finish(&mut self, _now: Millis, current: Current, outcome: TxnOutcome, error: ErrorCode) {
        for w in &current.writes {
            let outcome = match outcome {
                TxnOutcome::Committed => WriteOutcome::Ok { offset: None },
                TxnOutcome::Aborted => {
                    let error = if error == ErrorCode::None { ErrorCode::TransactionAborted } else { error };
                    WriteOutcome::Failed { error, definite: true }
                }
                TxnOutcome::Unknown => WriteOutcome::Failed { error, definite: false },
            };
            self.outbox.push_back(Action::Ack { write: w.write, tp: Some(w.tp), outcome });
        }
        let transactional_id = self.config.transactional_id.clone();
        let event = TxnEvent::Ended { transactional_id, txn: current.txn, outcome, error };
        self.outbox.push_back(Action::Txn(Box::new(event)));
        // Answers to this transaction's produces and offset commit no longer matter.
        self.produces.clear();
        self.group_call = None;
    }

    fn handle_produce_response(&mut self, now: Millis, correlation: u64, partitions: Vec<ProducePartitionResponse>) {
        let Some((tp, _, _)) = self.produces.get(&correlation).copied() else { return };
        let error = partitions.iter().find(|p| p.tp == tp).map_or(ErrorCode::NetworkException, |p| p.error);
        match error {
            ErrorCode::None | ErrorCode::DuplicateSequenceNumber => {
                self.produces.remove(&correlation);
                if let Some(batch) = self.batch_mut(tp) {
                    batch.state = BatchState::Done;
                    batch.unsettled = false;
                }
            }
            _ => self.produce_failed(now, correlation, error),
        }
    }

    fn produce_failed(&mut self, now: Millis, correlation: u64, error: ErrorCode) {
        let Some((tp, _, _)) = self.produces.remove(&correlation) else { return };
        let backoff = self.config.retry_backoff_ms;
        let settled = error.rejected_before_append();
        let retriable = error.retriable();
        if matches!(
            error,
            ErrorCode::NotLeaderOrFollower | ErrorCode::UnknownTopicOrPartition | ErrorCode::NetworkException
        ) || !settled
        {
            self.metadata_wanted = true;
        }
        let Some(current) = self.current.as_mut() else { return };
        let Some(batch) = current.batches.iter_mut().find(|b| b.tp == tp) else { return };
        batch.unsettled |= !settled;
        if retriable {
            batch.state = BatchState::Retry { at: now.plus(backoff) };
        } else {
            // Abortable (INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER,
            // INVALID_TXN_STATE …): the transaction aborts.
            batch.state = BatchState::Retry { at: now.plus(backoff) };
            current.abort.get_or_insert(error);
        }
    }

    /// `delivery.timeout.ms` passed with batches unacknowledged: they fail (their requests
    /// are forgotten, though they may still arrive) and the transaction aborts.
    fn expire_batches(&mut self, now: Millis) {
        let timeout = self.config.delivery_timeout_ms;
        let Some(current) = self.current.as_mut() else { return };
        if current.abort.is_some() || now.since(current.started) < timeout {
            return;
        }
        if current.batches.iter().all(|b| b.state == BatchState::Done) {
            return;
        }
        current.abort = Some(ErrorCode::DeliveryTimeout);
        for batch in &mut current.batches {
            if let BatchState::InFlight { correlation } = batch.state {
                self.produces.remove(&correlation);
                batch.unsettled = true;
                batch.state = BatchState::Retry { at: now };
            }
        }
    }

    fn batch_mut(&mut self, tp: TopicPartition) -> Option<&mut PartitionBatch> {
        self.current.as_mut()?.batches.iter_mut().find(|b| b.tp == tp)
    }

    // ---- the driver ----

    fn step(&mut self, now: Millis) {
        if self.metadata_wanted && self.metadata_in_flight.is_none() && now >= self.metadata_retry_at {
            if let Some(broker) = self.next_bootstrap_broker() {
                let correlation = self.correlation();
                self.metadata_in_flight = Some((correlation, broker, now.plus(self.config.request_timeout_ms)));
                self.send(broker, Message::Metadata { correlation });
            }
        }
        if self.call.is_none() && now >= self.call_retry_at {
            self.next_call(now);
        }
        if self.group_call.is_none() && now >= self.group_retry_at {
            self.next_group_call(now);
        }
        self.send_batches(now);
    }

    fn next_group_call(&mut self, now: Millis) {
        let (Some(current), Some((producer_id, epoch))) = (self.current.as_ref(), self.producer) else { return };
        let Some(offsets) = current.offsets.as_ref().filter(|_| current.wants_offset_commit()) else { return };
        let deadline = now.plus(self.config.request_timeout_ms);
        let Some(coordinator) = self.group_coordinator else {
            let group = offsets.group.clone();
            let Some(broker) = self.next_bootstrap_broker() else { return };
            let correlation = self.correlation();
            self.group_call = Some((GroupCall::Find, correlation, broker, deadline));
            return self.send(broker, Message::FindCoordinator { correlation, group });
        };
        let request = GroupRequest::TxnOffsetCommit {
            group: offsets.group.clone(),
            transactional_id: self.config.transactional_id.clone(),
            producer_id,
            epoch,
            member_id: offsets.member_id.clone(),
            group_instance_id: offsets.group_instance_id.clone(),
            generation: offsets.generation,
            offsets: offsets.offsets.clone(),
        };
        let correlation = self.correlation();
        self.group_call = Some((GroupCall::Commit, correlation, coordinator, deadline));
        self.send(coordinator, Message::Group { correlation, request: Box::new(request) });
    }

    fn next_call(&mut self, now: Millis) {
        let Some(coordinator) = self.coordinator else {
            let Some(broker) = self.next_bootstrap_broker() else { return };
            let transactional_id = self.config.transactional_id.clone();
            let correlation = self.correlation();
            self.call = Some((Call::Find, correlation, broker, now.plus(self.config.request_timeout_ms)));
            return self.send(broker, Message::FindTxnCoordinator { correlation, transactional_id });
        };
        let transactional_id = self.config.transactional_id.clone();
        let commit_in_flight = self.group_call.is_some_and(|(call, ..)| call == GroupCall::Commit);
        let (call, request) = if let Some(expected) = self.init {
            let timeout_ms = self.config.transaction_timeout_ms;
            (Call::Init, TxnRequest::InitProducerId { transactional_id, timeout_ms, expected })
        } else {
            let (Some(current), Some((producer_id, epoch))) = (self.current.as_mut(), self.producer) else { return };
            if !current.added {
                let mut partitions: Vec<TopicPartition> = current.batches.iter().map(|b| b.tp).collect();
                partitions.dedup();
                let request =
                    TxnRequest::AddPartitions { transactional_id, producer_id, epoch, partitions, verify_only: false };
                (Call::Add, request)
            } else if current.wants_add_offsets() {
                let group = current.offsets.as_ref().map_or_else(String::new, |o| o.group.clone());
                (Call::AddOffsets, TxnRequest::AddOffsets { transactional_id, producer_id, epoch, group })
            } else if let Some(commit) = current.ending().filter(|_| !commit_in_flight) {
                current.commit_sent |= commit;
                (Call::End { commit }, TxnRequest::EndTxn { transactional_id, producer_id, epoch, commit })
            } else {
                return;
            }
        };
        let correlation = self.correlation();
        self.call = Some((call, correlation, coordinator, now.plus(self.config.request_timeout_ms)));
        self.send(coordinator, Message::Txn { correlation, request: Box::new(request) });
    }

    fn send_batches(&mut self, now: Millis) {
        let Some(current) = self.current.as_ref() else { return };
        if !current.added || current.abort.is_some() {
            return;
        }
        let due: Vec<TopicPartition> = current
            .batches
            .iter()
            .filter(|b| match b.state {
                BatchState::Unsent => true,
                BatchState::Retry { at } => at <= now,
                _ => false,
            })
            .map(|b| b.tp)
            .collect();
        for tp in due {
            let Some(leader) = self.leaders.get(&tp).copied() else {
                self.metadata_wanted = true;
                continue;
            };
            let correlation = self.correlation();
            let Some(batch) = self.batch_mut(tp) else { continue };
            batch.state = BatchState::InFlight { correlation };
            let records = batch.records.clone();
            let deadline = now.plus(self.config.request_timeout_ms);
            self.produces.insert(correlation, (tp, leader, deadline));
            let msg = Message::Produce {
                correlation,
                acks: Acks::All,
                timeout_ms: self.config.request_timeout_ms,
                batches: vec![ProduceBatch { tp, records }],
                transactional_id: Some(self.wire_id.clone()),
            };
            self.send(leader, msg);
        }
    }

    fn next_bootstrap_broker(&mut self) -> Option<NodeId> {
        if self.bootstrap.is_empty() {
            return None;
        }
        let broker = self.bootstrap[self.next_bootstrap % self.bootstrap.len()];
        self.next_bootstrap = self.next_bootstrap.wrapping_add(1);
        Some(broker)
    }

    fn correlation(&mut self) -> u64 {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        correlation
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.outbox.push_back(Action::Send { to, msg });
    }
}

#[cfg(test)]
mod tests;
