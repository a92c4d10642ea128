//! The producer client: partitioning, the record accumulator (linger, batch size),
//! per-broker produce requests with in-flight limits, retries with backoff, request and
//! delivery timeouts, and metadata refresh on leader errors. With `enable.idempotence`
//! the producer first gets a producer id (InitProducerId) and numbers its batches
//! (`sequences`), so a broker drops a retried batch it already has; without it a retry
//! after a lost response may write a record twice.
//!
//! Call order: `send` and `handle_*` in any order, then drain `poll_action`, then arm a
//! timer for `poll_timeout`. Every write ends in exactly one `Action::Ack`.

use crate::action::{Action, WriteOutcome};
use crate::config::{Acks, NullKeyPartitioner, ProducerConfig};
use crate::error::ErrorCode;
use crate::log::Record;
use crate::messages::{BatchRecords, Message, PartitionLeader, ProduceBatch, ProducePartitionResponse, TopicMeta};
use crate::partitioner::partition_for_key_number;
use crate::tpmap::TpMap;
use crate::types::{Millis, NodeId, Offset, ProducerId, TopicId, TopicPartition, WriteId};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

mod sequences;
pub use sequences::{increment_sequence, BatchStamp, ProducerIdAndEpoch, Sequences};

#[derive(Clone, Debug)]
struct Batch {
    /// Unique per producer: how the sequence bookkeeping names a batch.
    id: u64,
    tp: TopicPartition,
    /// Shared with the produce requests that carry it, so a send copies no record.
    records: Arc<BatchRecords>,
    created: Millis,
    attempts: u32,
    retry_at: Millis,
    /// Producer id, epoch and base sequence, from the first drain on (idempotence).
    stamp: Option<BatchStamp>,
}

#[derive(Clone, Debug)]
struct InFlight {
    broker: NodeId,
    sent_at: Millis,
    batches: Vec<Batch>,
    /// The earliest `created` of `batches` (kept: every deadline computation asks).
    oldest_created: Millis,
}

fn oldest_created(batches: &[Batch]) -> Millis {
    batches.iter().map(|b| b.created).min().unwrap_or(Millis::MAX)
}

enum Appended {
    Joined,
    NewBatch(TopicPartition),
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    write: WriteId,
    topic: TopicId,
    key: Option<u32>,
    draw: u64,
    at: Millis,
}

pub struct Producer {
    id: NodeId,
    config: ProducerConfig,
    bootstrap: Vec<NodeId>,
    next_bootstrap: usize,
    partition_counts: BTreeMap<TopicId, u32>,
    /// Leader per `[topic][partition]` (dense: looked up for every batch on every drain).
    leaders: Vec<Vec<Option<NodeId>>>,
    /// The newest leader epoch seen per partition (KIP-320: older metadata is ignored).
    leader_epochs: TpMap<crate::types::LeaderEpoch>,
    metadata_needed: bool,
    metadata_in_flight: Option<(u64, NodeId, Millis)>,
    metadata_fetched_at: Millis,
    unpartitioned: VecDeque<Pending>,
    /// Batches per partition; a drained partition keeps its (empty) queue for the next.
    batches: TpMap<VecDeque<Batch>>,
    /// The partitions whose queue may hold a batch, ascending (so in `batches`' order):
    /// every non-empty queue is here, and the deadline scan drops the empty ones. The
    /// scans after every input walk this, not every partition the producer ever used.
    queued: Vec<TopicPartition>,
    /// Requests in flight, ascending by correlation id (ids only grow, so a send appends;
    /// a handful are in flight, so a sorted Vec beats a tree).
    in_flight: Vec<(u64, InFlight)>,
    /// Requests in flight per broker id.
    in_flight_per_broker: Vec<u32>,
    broker_backoff: BTreeMap<NodeId, Millis>,
    /// Send order per partition (`Record::sequence`, what the reordering checker reads).
    send_order: TpMap<u32>,
    /// The idempotent producer's bookkeeping (`None` with `enable.idempotence=false`).
    idempotence: Option<Sequences>,
    /// InitProducerId in flight: (correlation, broker, sent at).
    init_in_flight: Option<(u64, NodeId, Millis)>,
    init_not_before: Millis,
    next_batch_id: u64,
    sticky: BTreeMap<TopicId, u32>,
    round_robin: u32,
    next_correlation: u64,
    buffered: usize,
    /// Next deadline, recomputed after every drain and lowered by `send` (poll_timeout is
    /// called after every input, so it must be cheap).
    deadline: Option<Millis>,
    outbox: VecDeque<Action>,
    /// No head batch can turn ready by time before this (set by the last full scan,
    /// lowered by every new batch): until then, and unless `rescan` is set, a drain
    /// that finds nothing to send can skip the scans (most drains follow a response).
    ready_not_before: Millis,
    /// Something other than the clock may have made a batch sendable (a full batch, a
    /// retry, new metadata, a freed connection): the next drain scans.
    rescan: bool,
    /// The last scan left out a head batch from the deadline because its leader was
    /// unknown or busy, or the sequence bookkeeping held it: an answer, which frees a
    /// connection and may release a hold, must rescan (otherwise it need not: the
    /// answer changes no queue, and a retry it causes asks for the scan itself).
    blocked_heads: bool,
    drain_ready: Vec<NodeId>,
    drain_requests: Vec<(NodeId, Vec<Batch>)>,
}

impl Producer {
    pub fn new(id: NodeId, config: ProducerConfig, bootstrap: Vec<NodeId>) -> Producer {
        let idempotence = config.enable_idempotence.then(Sequences::default);
        Producer {
            id,
            config,
            bootstrap,
            next_bootstrap: 0,
            partition_counts: BTreeMap::new(),
            leaders: Vec::new(),
            leader_epochs: TpMap::new(),
            metadata_needed: true,
            metadata_in_flight: None,
            metadata_fetched_at: Millis::ZERO,
            unpartitioned: VecDeque::new(),
            batches: TpMap::new(),
            queued: Vec::new(),
            in_flight: Vec::new(),
            in_flight_per_broker: Vec::new(),
            broker_backoff: BTreeMap::new(),
            send_order: TpMap::new(),
            idempotence,
            init_in_flight: None,
            init_not_before: Millis::ZERO,
            next_batch_id: 0,
            sticky: BTreeMap::new(),
            round_robin: 0,
            next_correlation: 0,
            buffered: 0,
            deadline: Some(Millis::ZERO),
            outbox: VecDeque::new(),
            ready_not_before: Millis::ZERO,
            rescan: true,
            blocked_heads: false,
            drain_ready: Vec::new(),
            drain_requests: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    fn pid(&self) -> ProducerId {
        ProducerId(self.id.0)
    }

    /// The producer id and epoch from InitProducerId (idempotent producers only).
    pub fn producer_id_and_epoch(&self) -> Option<ProducerIdAndEpoch> {
        self.idempotence.as_ref().and_then(|s| s.producer())
    }

    /// Whether only a retried batch can be held (no idempotence, or one epoch and nothing
    /// unresolved): then a drain skips the bookkeeping for every fresh head batch.
    fn nothing_held_fresh(&self) -> bool {
        self.idempotence.as_ref().is_none_or(|s| s.simple())
    }

    /// Whether the head batch of `tp` must wait for the sequence bookkeeping; `simple` is
    /// `nothing_held_fresh()`, taken once per scan. (Takes the field, not `self`, so the
    /// drain can call it while it holds the queues.)
    fn held(sequences: Option<&Sequences>, tp: TopicPartition, head: &Batch, simple: bool) -> bool {
        (!simple || head.stamp.is_some()) && sequences.is_some_and(|s| s.stop_drain(tp, head.stamp.as_ref()))
    }

    /// Writes not yet answered (buffered, waiting for metadata, or in flight).
    pub fn outstanding(&self) -> usize {
        self.buffered
    }

    /// Queues one record. `draw` is a random number from the host, used only when a null
    /// key needs a fresh sticky partition.
    pub fn send(&mut self, now: Millis, write: WriteId, topic: TopicId, key: Option<u32>, draw: u64) {
        if self.buffered >= self.config.buffer_records_max {
            // `buffer.memory` exhausted and `max.block.ms` spent: the send fails at once.
            let outcome = WriteOutcome::Failed { error: ErrorCode::DeliveryTimeout, definite: true };
            self.outbox.push_back(Action::Ack { write, tp: None, outcome });
            return;
        }
        self.buffered += 1;
        let pending = Pending { write, topic, key, draw, at: now };
        if !self.partition_counts.contains_key(&topic) {
            self.metadata_needed = true;
            self.unpartitioned.push_back(pending);
            self.drain(now);
            return;
        }
        let appended = self.append(pending);
        if matches!(appended, Appended::NewBatch(_)) {
            self.ready_not_before = self.ready_not_before.min(now.plus(self.config.linger_ms));
        }
        match appended {
            // Only a full batch (or no linger) makes anything sendable before a deadline.
            Appended::Full => self.drain(now),
            _ if self.config.linger_ms == 0 => self.drain(now),
            Appended::NewBatch(tp) => {
                let mut next = now.plus(self.config.delivery_timeout_ms);
                if self.can_send_to(tp) {
                    next = next.min(now.plus(self.config.linger_ms));
                } else {
                    self.blocked_heads = true;
                }
                self.deadline = Some(self.deadline.map_or(next, |d| d.min(next)));
            }
            Appended::Joined => {}
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.deadline
    }

    /// The next deadline, and (into `ready_not_before`) the earliest time any head batch
    /// turns ready, sendable or not.
    fn compute_deadline(&mut self) -> Option<Millis> {
        let mut next = Millis::MAX;
        let mut ready_not_before = Millis::MAX;
        let linger = self.config.linger_ms;
        let per_batch = (self.config.batch_size / self.config.record_bytes.max(1)).max(1) as usize;
        let simple = self.nothing_held_fresh();
        let mut blocked_heads = false;
        let mut index = 0;
        while index < self.queued.len() {
            let tp = self.queued[index];
            let Some((queue, head)) = self.batches.get(&tp).and_then(|q| Some((q, q.front()?))) else {
                self.queued.remove(index);
                continue;
            };
            index += 1;
            next = next.min(head.created.plus(self.config.delivery_timeout_ms));
            let ready_at = if head.attempts > 0 {
                head.retry_at
            } else if queue.len() > 1 || head.records.len() >= per_batch {
                Millis::ZERO
            } else {
                head.created.plus(linger)
            };
            ready_not_before = ready_not_before.min(ready_at);
            // A batch with no usable leader waits for metadata, and one the sequence
            // bookkeeping holds waits for an answer, not for a timer.
            if self.can_send_to(tp) && !Self::held(self.idempotence.as_ref(), tp, head, simple) {
                let ready_at = if head.attempts > 0 { head.retry_at } else { head.created.plus(linger) };
                next = next.min(ready_at);
            } else {
                blocked_heads = true;
            }
        }
        self.ready_not_before = ready_not_before;
        self.blocked_heads = blocked_heads;
        for (_, request) in &self.in_flight {
            next = next.min(request.sent_at.plus(self.config.request_timeout_ms));
            next = next.min(request.oldest_created.plus(self.config.delivery_timeout_ms));
        }
        if let Some((_, _, sent)) = self.metadata_in_flight {
            next = next.min(sent.plus(self.config.request_timeout_ms));
        } else if self.metadata_needed {
            next = next.min(self.metadata_fetched_at.plus(self.config.retry_backoff_ms));
        } else {
            next = next.min(self.metadata_fetched_at.plus(self.config.metadata_max_age_ms));
        }
        if let Some(pending) = self.unpartitioned.front() {
            next = next.min(pending.at.plus(self.config.delivery_timeout_ms));
        }
        if let Some((_, _, sent)) = self.init_in_flight {
            next = next.min(sent.plus(self.config.request_timeout_ms));
        } else if self.needs_producer_id() {
            next = next.min(self.init_not_before);
        }
        for until in self.broker_backoff.values() {
            next = next.min(*until);
        }
        (next < Millis::MAX).then_some(next)
    }

    /// The queue of `tp`, for a batch about to go in: listed in `queued` if it was empty.
    #[inline(always)]
    fn queue_for<'a>(
        batches: &'a mut TpMap<VecDeque<Batch>>,
        queued: &mut Vec<TopicPartition>,
        tp: TopicPartition,
    ) -> &'a mut VecDeque<Batch> {
        let queue = batches.get_or_default(tp);
        if queue.is_empty() {
            if let Err(at) = queued.binary_search(&tp) {
                queued.insert(at, tp);
            }
        }
        queue
    }

    fn can_send_to(&self, tp: TopicPartition) -> bool {
        self.leader_of(tp).is_some_and(|leader| self.broker_usable(leader))
    }

    fn leader_of(&self, tp: TopicPartition) -> Option<NodeId> {
        *self.leaders.get(tp.topic.0 as usize)?.get(tp.partition as usize)?
    }

    fn in_flight_to(&self, broker: NodeId) -> u32 {
        self.in_flight_per_broker.get(broker.0 as usize).copied().unwrap_or(0)
    }

    /// Has a free in-flight slot and is not in reconnect backoff.
    fn broker_usable(&self, broker: NodeId) -> bool {
        self.in_flight_to(broker) < self.config.max_in_flight_requests_per_connection
            && (self.broker_backoff.is_empty() || !self.broker_backoff.contains_key(&broker))
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.rescan = true;
        self.broker_backoff.retain(|_, until| *until > now);
        self.expire_requests(now);
        self.expire_batches(now);
        if self.metadata_in_flight.is_some_and(|(_, _, sent)| now.since(sent) >= self.config.request_timeout_ms) {
            self.metadata_in_flight = None;
            self.metadata_needed = true;
        }
        if self.init_in_flight.is_some_and(|(_, _, sent)| now.since(sent) >= self.config.request_timeout_ms) {
            self.init_in_flight = None;
        }
        if now.since(self.metadata_fetched_at) >= self.config.metadata_max_age_ms {
            self.metadata_needed = true;
        }
        self.drain(now);
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        match msg {
            Message::MetadataResponse { correlation, topics, partitions } => {
                self.handle_metadata(now, correlation, topics, partitions)
            }
            Message::ProduceResponse { correlation, partitions } => {
                self.handle_produce_response(now, correlation, partitions)
            }
            Message::InitProducerIdResponse { correlation, error, producer } => {
                self.handle_init_producer_id(now, correlation, error, producer)
            }
            Message::ConnectionClosed => self.handle_connection_closed(now, from),
            _ => {}
        }
        self.drain(now);
    }

    fn handle_metadata(
        &mut self,
        now: Millis,
        correlation: u64,
        topics: Vec<TopicMeta>,
        partitions: Vec<PartitionLeader>,
    ) {
        if self.metadata_in_flight.map(|(c, _, _)| c) != Some(correlation) {
            return;
        }
        self.metadata_in_flight = None;
        self.metadata_fetched_at = now;
        self.rescan = true;
        if topics.is_empty() {
            // A broker that has no metadata yet: ask another one soon.
            self.metadata_needed = true;
            return;
        }
        self.metadata_needed = false;
        for topic in topics {
            self.partition_counts.insert(topic.id, topic.partitions);
        }
        for partition in partitions {
            if !partition.is_fresh(&mut self.leader_epochs) {
                continue;
            }
            if partition.leader.is_none() {
                self.metadata_needed = true;
            }
            let (topic, index) = (partition.tp.topic.0 as usize, partition.tp.partition as usize);
            if self.leaders.len() <= topic {
                self.leaders.resize(topic + 1, Vec::new());
            }
            if self.leaders[topic].len() <= index {
                self.leaders[topic].resize(index + 1, None);
            }
            self.leaders[topic][index] = partition.leader;
        }
        while let Some(pending) = self.unpartitioned.pop_front() {
            if self.partition_counts.contains_key(&pending.topic) {
                self.append(pending);
            } else {
                self.unpartitioned.push_front(pending);
                break;
            }
        }
    }

    fn needs_producer_id(&self) -> bool {
        self.idempotence.as_ref().is_some_and(|s| s.producer().is_none())
    }

    fn handle_init_producer_id(
        &mut self,
        now: Millis,
        correlation: u64,
        error: ErrorCode,
        producer: Option<ProducerIdAndEpoch>,
    ) {
        if self.init_in_flight.map(|(c, _, _)| c) != Some(correlation) {
            return;
        }
        self.init_in_flight = None;
        self.rescan = true;
        match (error, producer, self.idempotence.as_mut()) {
            (ErrorCode::None, Some(producer), Some(sequences)) => sequences.set_producer(producer),
            // Every InitProducerId error an idempotent producer can get is retriable.
            _ => self.init_not_before = now.plus(self.config.retry_backoff_ms),
        }
    }

    /// The next bootstrap broker not in reconnect backoff, round robin (for Metadata and
    /// InitProducerId, which any broker answers).
    fn next_bootstrap_broker(&mut self) -> Option<NodeId> {
        let count = self.bootstrap.len();
        let step = (0..count).find(|step| {
            let candidate = self.bootstrap[(self.next_bootstrap + step) % count];
            !self.broker_backoff.contains_key(&candidate)
        })?;
        let broker = self.bootstrap[(self.next_bootstrap + step) % count];
        self.next_bootstrap = (self.next_bootstrap + step + 1) % count;
        Some(broker)
    }

    fn request_producer_id(&mut self, now: Millis) {
        if !self.needs_producer_id() || self.init_in_flight.is_some() || now < self.init_not_before {
            return;
        }
        let Some(broker) = self.next_bootstrap_broker() else { return };
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        self.init_in_flight = Some((correlation, broker, now));
        self.outbox.push_back(Action::Send { to: broker, msg: Message::InitProducerId { correlation } });
    }

    fn handle_produce_response(&mut self, now: Millis, correlation: u64, partitions: Vec<ProducePartitionResponse>) {
        let Some(request) = self.take_in_flight(correlation) else {
            return;
        };
        let broker = request.broker;
        self.release_slot(broker);
        self.handle_produce_batches(now, request, partitions);
        // A connection answers in order (TCP, and a broker handles a client's requests one
        // at a time): an answer that overtook an earlier request's means that answer was
        // lost, which TCP turns into a broken connection. Everything still in flight on it
        // fails and is resent now, not a request timeout later, when the broker may have
        // taken more than its five remembered batches after the unanswered one and would
        // answer its resend OUT_OF_ORDER_SEQUENCE_NUMBER.
        if self.in_flight.iter().any(|(c, r)| *c < correlation && r.broker == broker) {
            self.close_connection(now, broker);
        }
    }

    fn handle_produce_batches(&mut self, now: Millis, request: InFlight, partitions: Vec<ProducePartitionResponse>) {
        // An answer can free a busy connection or release a batch the sequence
        // bookkeeping held.
        self.rescan |= self.blocked_heads;
        for batch in request.batches {
            let result = partitions.iter().find(|p| p.tp == batch.tp);
            match result {
                Some(ProducePartitionResponse { error: ErrorCode::None, base_offset, .. }) => {
                    self.complete(batch, Ok(*base_offset));
                }
                // The broker has the batch but no longer its offsets: a success
                // (Sender.completeBatch).
                Some(ProducePartitionResponse { error: ErrorCode::DuplicateSequenceNumber, .. })
                    if batch.stamp.is_some() =>
                {
                    self.complete(batch, Ok(None));
                }
                Some(response) => self.retry_or_fail(now, batch, response.error),
                None => self.retry_or_fail(now, batch, ErrorCode::NetworkException),
            }
        }
    }

    fn handle_connection_closed(&mut self, now: Millis, broker: NodeId) {
        self.rescan = true;
        self.broker_backoff.insert(broker, now.plus(self.config.reconnect_backoff_ms));
        if self.metadata_in_flight.is_some_and(|(_, to, _)| to == broker) {
            self.metadata_in_flight = None;
        }
        if self.init_in_flight.is_some_and(|(_, to, _)| to == broker) {
            self.init_in_flight = None;
        }
        self.metadata_needed = true;
        let lost: Vec<u64> = self.in_flight.iter().filter(|(_, r)| r.broker == broker).map(|(c, _)| *c).collect();
        for correlation in lost {
            if let Some(request) = self.take_in_flight(correlation) {
                self.release_slot(broker);
                for batch in request.batches {
                    self.retry_or_fail(now, batch, ErrorCode::NetworkException);
                }
            }
        }
    }

    fn take_in_flight(&mut self, correlation: u64) -> Option<InFlight> {
        let index = self.in_flight.binary_search_by_key(&correlation, |(c, _)| *c).ok()?;
        Some(self.in_flight.remove(index).1)
    }

    fn release_slot(&mut self, broker: NodeId) {
        if let Some(count) = self.in_flight_per_broker.get_mut(broker.0 as usize) {
            *count = count.saturating_sub(1);
        }
    }

    fn retry_or_fail(&mut self, now: Millis, mut batch: Batch, error: ErrorCode) {
        if error.invalidates_metadata() || error == ErrorCode::NetworkException || error == ErrorCode::RequestTimedOut {
            self.metadata_needed = true;
        }
        let expired = now.since(batch.created) >= self.config.delivery_timeout_ms;
        // Sender.canRetry: the delivery timeout and the attempts first, and only then the
        // idempotent rules, which may ask for an epoch bump.
        let retriable = !expired
            && batch.attempts <= self.config.retries
            && match (self.idempotence.as_mut(), batch.stamp.as_ref()) {
                (Some(sequences), Some(stamp)) => sequences.can_retry(batch.tp, stamp, error),
                _ => error.retriable(),
            };
        if retriable {
            batch.retry_at = now.plus(self.config.retry_backoff_ms);
            let tp = batch.tp;
            self.rescan = true;
            let queue = Self::queue_for(&mut self.batches, &mut self.queued, tp);
            match batch.stamp {
                // Kafka re-enqueues at the head of the partition's deque; with several
                // batches in flight this is where reordering comes from.
                None => queue.push_front(batch),
                // The idempotent producer keeps the retries in sequence order
                // (`insertInSequenceOrder`).
                Some(stamp) => {
                    let at = queue
                        .iter()
                        .position(|b| b.stamp.is_none_or(|s| s.base_sequence > stamp.base_sequence))
                        .unwrap_or(queue.len());
                    queue.insert(at, batch);
                }
            }
        } else {
            let error = if expired { ErrorCode::DeliveryTimeout } else { error };
            if let (Some(sequences), Some(stamp)) = (self.idempotence.as_mut(), batch.stamp.as_ref()) {
                // The batch's range may be a gap now. It is settled, as for a batch
                // expired in flight, once nothing of the partition is on the wire: a bump
                // now would renumber batches whose first attempt may be in the log.
                sequences.expired_after_send(batch.tp, batch.id, stamp, batch.records.len() as u32);
            }
            self.complete(batch, Err(error));
        }
    }

    fn complete(&mut self, batch: Batch, result: Result<Option<Offset>, ErrorCode>) {
        self.buffered = self.buffered.saturating_sub(batch.records.len());
        if let (Ok(_), Some(sequences), Some(stamp)) = (result, self.idempotence.as_mut(), batch.stamp.as_ref()) {
            sequences.completed(batch.tp, batch.id, stamp, batch.records.len() as u32);
        }
        for (index, record) in batch.records.iter().enumerate() {
            let outcome = match result {
                Ok(base) => WriteOutcome::Ok { offset: base.map(|b| Offset(b.0 + index as u64)) },
                // Only an error returned before the append, to the only attempt, proves the
                // write did not happen; a batch that was never sent did not happen either.
                Err(error) => WriteOutcome::Failed {
                    error,
                    definite: batch.attempts == 0 || (batch.attempts == 1 && error.rejected_before_append()),
                },
            };
            self.outbox.push_back(Action::Ack { write: record.write, tp: Some(batch.tp), outcome });
        }
    }

    fn append(&mut self, pending: Pending) -> Appended {
        let partitions = self.partition_counts.get(&pending.topic).copied().unwrap_or(1);
        let partition = match pending.key {
            Some(key) => partition_for_key_number(key, partitions),
            None => match self.config.null_key_partitioner {
                NullKeyPartitioner::Sticky => {
                    *self.sticky.entry(pending.topic).or_insert((pending.draw % partitions as u64) as u32)
                }
                NullKeyPartitioner::RoundRobin => {
                    self.round_robin = self.round_robin.wrapping_add(1);
                    self.round_robin % partitions
                }
            },
        };
        let tp = TopicPartition { topic: pending.topic, partition };
        let producer = self.pid();
        let sequence = self.send_order.get_or_default(tp);
        let record = Record {
            write: pending.write,
            key: pending.key,
            producer,
            sequence: *sequence,
            timestamp: pending.at,
            stamp: None,
        };
        *sequence += 1;
        let per_batch = (self.config.batch_size / self.config.record_bytes.max(1)).max(1) as usize;
        let queue = Self::queue_for(&mut self.batches, &mut self.queued, tp);
        match queue.back_mut() {
            Some(batch) if batch.attempts == 0 && batch.records.len() < per_batch => {
                Arc::make_mut(&mut batch.records).push(record);
                if batch.records.len() >= per_batch {
                    self.rescan = true;
                    Appended::Full
                } else {
                    Appended::Joined
                }
            }
            _ => {
                let mut records = BatchRecords::new();
                records.push(record);
                let records = Arc::new(records);
                // A second batch makes the partition ready at once (the head is full).
                self.rescan |= !queue.is_empty() || per_batch == 1;
                let id = self.next_batch_id;
                self.next_batch_id += 1;
                queue.push_back(Batch {
                    id,
                    tp,
                    records,
                    created: pending.at,
                    attempts: 0,
                    retry_at: pending.at,
                    stamp: None,
                });
                if per_batch == 1 {
                    Appended::Full
                } else {
                    Appended::NewBatch(tp)
                }
            }
        }
    }

    /// NetworkClient's `handleTimedOutRequests`: a request unanswered after
    /// `request.timeout.ms` closes its connection, and every request in flight on it
    /// fails with it (the timed-out one as REQUEST_TIMED_OUT, the rest as a disconnect).
    fn expire_requests(&mut self, now: Millis) {
        let timeout = self.config.request_timeout_ms;
        let mut brokers: Vec<NodeId> =
            self.in_flight.iter().filter(|(_, r)| now.since(r.sent_at) >= timeout).map(|(_, r)| r.broker).collect();
        brokers.sort_unstable();
        brokers.dedup();
        for broker in brokers {
            self.close_connection(now, broker);
        }
    }

    /// Closes the connection to `broker`: every request in flight on it fails (one past
    /// `request.timeout.ms` as REQUEST_TIMED_OUT, the rest as a disconnect) and the close
    /// is sent to the broker.
    fn close_connection(&mut self, now: Millis, broker: NodeId) {
        let timeout = self.config.request_timeout_ms;
        let on_connection: Vec<u64> =
            self.in_flight.iter().filter(|(_, r)| r.broker == broker).map(|(c, _)| *c).collect();
        for correlation in on_connection {
            if let Some(request) = self.take_in_flight(correlation) {
                self.release_slot(broker);
                let error = if now.since(request.sent_at) >= timeout {
                    ErrorCode::RequestTimedOut
                } else {
                    ErrorCode::NetworkException
                };
                for batch in request.batches {
                    self.retry_or_fail(now, batch, error);
                }
            }
        }
        self.broker_backoff.insert(broker, now.plus(self.config.reconnect_backoff_ms));
        self.rescan = true;
        // The close reaches the broker after the requests sent before it: it drops the
        // ones it has not read (they are being resent) and answers none of them.
        self.outbox.push_back(Action::Send { to: broker, msg: Message::ConnectionClosed });
    }

    /// `delivery.timeout.ms` (KIP-91) for batches in the accumulator and in flight alike
    /// (`getExpiredInflightBatches`): an expired batch in a request is done, and the
    /// request's answer, if it comes, no longer concerns it.
    fn expire_batches(&mut self, now: Millis) {
        let timeout = self.config.delivery_timeout_ms;
        let mut expired = Vec::new();
        for queue in self.batches.values_mut() {
            while queue.front().is_some_and(|b| now.since(b.created) >= timeout) {
                expired.extend(queue.pop_front());
            }
        }
        for (_, request) in &mut self.in_flight {
            if now.since(request.oldest_created) >= timeout {
                let (gone, kept) = std::mem::take(&mut request.batches)
                    .into_iter()
                    .partition::<Vec<Batch>, _>(|b| now.since(b.created) >= timeout);
                request.oldest_created = oldest_created(&kept);
                request.batches = kept;
                expired.extend(gone);
            }
        }
        for batch in expired {
            if let (Some(sequences), Some(stamp)) = (self.idempotence.as_mut(), batch.stamp.as_ref()) {
                sequences.expired_after_send(batch.tp, batch.id, stamp, batch.records.len() as u32);
            }
            self.complete(batch, Err(ErrorCode::DeliveryTimeout));
        }
        while self.unpartitioned.front().is_some_and(|p| now.since(p.at) >= timeout) {
            if let Some(pending) = self.unpartitioned.pop_front() {
                self.buffered = self.buffered.saturating_sub(1);
                let outcome = WriteOutcome::Failed { error: ErrorCode::DeliveryTimeout, definite: true };
                self.outbox.push_back(Action::Ack { write: pending.write, tp: None, outcome });
            }
        }
    }

    fn request_metadata(&mut self, now: Millis) {
        if self.metadata_in_flight.is_some() || self.bootstrap.is_empty() {
            return;
        }
        if self.metadata_fetched_at > Millis::ZERO && now.since(self.metadata_fetched_at) < self.config.retry_backoff_ms
        {
            return;
        }
        let Some(broker) = self.next_bootstrap_broker() else { return };
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        self.metadata_in_flight = Some((correlation, broker, now));
        self.metadata_fetched_at = now;
        self.outbox.push_back(Action::Send { to: broker, msg: Message::Metadata { correlation } });
    }

    /// Kafka's `RecordAccumulator.ready` + `drain`: a leader is ready when the head batch
    /// of any of its partitions is full, has lingered `linger.ms`, or is a retry whose
    /// backoff passed; from each ready leader with a free in-flight slot one request takes
    /// the head batch of every partition it leads (retries still in backoff excepted).
    fn drain(&mut self, now: Millis) {
        if self.metadata_needed {
            self.request_metadata(now);
        }
        if self.idempotence.is_some() {
            self.bump_epoch_if_needed();
            self.request_producer_id(now);
        }
        if !self.rescan && now < self.ready_not_before {
            // Nothing turned ready: what the last scan found still holds, and so does
            // its deadline (a completed request only makes the true deadline later, and
            // an early timer is harmless).
            return;
        }
        self.rescan = false;
        let linger = self.config.linger_ms;
        let per_batch = (self.config.batch_size / self.config.record_bytes.max(1)).max(1) as usize;
        // Scratch buffers kept between drains: a drain runs after every input.
        let mut ready = std::mem::take(&mut self.drain_ready);
        ready.clear();
        let simple = self.nothing_held_fresh();
        for tp in &self.queued {
            let Some(queue) = self.batches.get(tp) else { continue };
            let Some(head) = queue.front() else { continue };
            let Some(leader) = self.leader_of(*tp) else {
                continue;
            };
            if Self::held(self.idempotence.as_ref(), *tp, head, simple) {
                continue;
            }
            let is_ready = if head.attempts > 0 {
                now >= head.retry_at
            } else {
                queue.len() > 1 || head.records.len() >= per_batch || now >= head.created.plus(linger)
            };
            if is_ready && !ready.contains(&leader) {
                ready.push(leader);
            }
        }
        ready.retain(|leader| self.broker_usable(*leader));
        if !ready.is_empty() {
            ready.sort_unstable();
            let mut requests = std::mem::take(&mut self.drain_requests);
            requests.clear();
            requests.extend(ready.iter().map(|leader| (*leader, Vec::new())));
            for tp in &self.queued {
                let Some(queue) = self.batches.get_mut(tp) else { continue };
                let Some(Some(leader)) =
                    self.leaders.get(tp.topic.0 as usize).and_then(|p| p.get(tp.partition as usize)).copied()
                else {
                    continue;
                };
                let Some((_, batches)) = requests.iter_mut().find(|(broker, _)| *broker == leader) else {
                    continue;
                };
                if queue.front().is_some_and(|head| head.attempts > 0 && now < head.retry_at) {
                    continue;
                }
                if queue.front().is_some_and(|head| Self::held(self.idempotence.as_ref(), *tp, head, simple)) {
                    continue;
                }
                let Some(mut batch) = queue.pop_front() else {
                    continue;
                };
                if let Some(sequences) = self.idempotence.as_mut() {
                    if batch.stamp.is_none() {
                        batch.stamp = Some(sequences.assign(*tp, batch.id, batch.records.len() as u32));
                    }
                }
                batch.attempts += 1;
                batches.push(batch);
                // The sticky partitioner moves on once its batch is sent (KIP-480).
                if self.sticky.get(&tp.topic) == Some(&tp.partition) {
                    self.sticky.remove(&tp.topic);
                }
            }
            for (broker, batches) in requests.drain(..) {
                if !batches.is_empty() {
                    self.send_request(now, broker, batches);
                }
            }
            self.drain_requests = requests;
        }
        self.drain_ready = ready;
        self.deadline = self.compute_deadline();
    }

    /// Bumps the epoch when the bookkeeping asks for it, and renumbers the unfinished
    /// batches of the partitions that asked, wherever they are (a request or the queue).
    fn bump_epoch_if_needed(&mut self) {
        let Some(sequences) = self.idempotence.as_mut() else { return };
        let partitions = sequences.resolve_and_bump();
        for tp in partitions {
            let ids = sequences.in_flight_ids(tp);
            let mut counts = Vec::with_capacity(ids.len());
            for id in &ids {
                let found = self
                    .in_flight
                    .iter()
                    .flat_map(|(_, r)| r.batches.iter())
                    .chain(self.batches.get(&tp).into_iter().flatten())
                    .find(|b| b.id == *id);
                if let Some(batch) = found {
                    counts.push((*id, batch.records.len() as u32));
                }
            }
            let stamps = sequences.restart(tp, &counts);
            for ((id, _), stamp) in counts.iter().zip(stamps) {
                let batches = self
                    .in_flight
                    .iter_mut()
                    .flat_map(|(_, r)| r.batches.iter_mut())
                    .chain(self.batches.get_mut(&tp).into_iter().flatten());
                for batch in batches.filter(|b| b.id == *id) {
                    batch.stamp = Some(stamp);
                }
            }
            self.rescan = true;
        }
    }

    fn send_request(&mut self, now: Millis, broker: NodeId, mut batches: Vec<Batch>) {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        for batch in &mut batches {
            let Some(stamp) = batch.stamp else { continue };
            // Records carry the batch's stamp; a renumbered batch is copied once.
            let wanted = |index: usize| crate::types::Stamp {
                pid: stamp.producer.0,
                epoch: stamp.producer.1,
                index: index.min(u16::MAX as usize) as u16,
                sequence: increment_sequence(stamp.base_sequence, index as u32),
                kind: crate::types::BatchKind::Plain,
            };
            if batch.records.first().and_then(|r| r.stamp) != Some(wanted(0)) {
                for (index, record) in Arc::make_mut(&mut batch.records).iter_mut().enumerate() {
                    record.stamp = Some(wanted(index));
                }
            }
        }
        let wire = batches.iter().map(|b| ProduceBatch { tp: b.tp, records: b.records.clone() }).collect();
        let msg = Message::Produce {
            correlation,
            acks: self.config.acks,
            timeout_ms: self.config.request_timeout_ms,
            batches: wire,
            transactional_id: None,
        };
        self.outbox.push_back(Action::Send { to: broker, msg });
        if self.config.acks == Acks::None {
            // acks=0: the client counts a write done once it is on the wire.
            for batch in batches {
                self.complete(batch, Ok(None));
            }
            return;
        }
        let index = broker.0 as usize;
        if self.in_flight_per_broker.len() <= index {
            self.in_flight_per_broker.resize(index + 1, 0);
        }
        self.in_flight_per_broker[index] += 1;
        // Correlation ids only grow, so pushing keeps the table sorted.
        let oldest_created = oldest_created(&batches);
        self.in_flight.push((correlation, InFlight { broker, sent_at: now, batches, oldest_created }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(acks: Acks) -> Producer {
        let config = ProducerConfig { acks, linger_ms: 5, enable_idempotence: false, ..ProducerConfig::default() };
        Producer::new(NodeId(10), config, vec![NodeId(0)])
    }

    fn idempotent() -> Producer {
        let config = ProducerConfig { linger_ms: 0, ..ProducerConfig::default() };
        Producer::new(NodeId(10), config, vec![NodeId(0)])
    }

    /// An idempotent producer with metadata and producer id 7, nothing sent yet.
    fn ready_idempotent() -> Producer {
        let mut p = idempotent();
        p.handle_timeout(Millis(0));
        metadata(&mut p, Millis(0));
        let init = drain_actions(&mut p);
        grant_producer_id(&mut p, Millis(0), &init);
        p
    }

    /// Answers the InitProducerId in `actions` with producer id 7, epoch 0.
    fn grant_producer_id(p: &mut Producer, now: Millis, actions: &[Action]) {
        let correlation = actions
            .iter()
            .find_map(|a| match a {
                Action::Send { msg: Message::InitProducerId { correlation }, .. } => Some(*correlation),
                _ => None,
            })
            .expect("an InitProducerId");
        let producer = Some((std::num::NonZeroU32::new(7).expect("non-zero"), 0));
        let msg = Message::InitProducerIdResponse { correlation, error: ErrorCode::None, producer };
        p.handle_message(now, NodeId(0), msg);
    }

    /// The produce requests in `actions`: (correlation, first record of each batch).
    fn produces(actions: &[Action]) -> Vec<(u64, Vec<Record>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { msg: Message::Produce { correlation, batches, .. }, .. } => {
                    Some((*correlation, batches.iter().map(|b| b.records[0]).collect()))
                }
                _ => None,
            })
            .collect()
    }

    fn answer(p: &mut Producer, now: Millis, correlation: u64, error: ErrorCode, base: Option<u64>) {
        let response = ProducePartitionResponse { tp: TopicPartition::new(0, 0), error, base_offset: base.map(Offset) };
        p.handle_message(now, NodeId(0), Message::ProduceResponse { correlation, partitions: vec![response] });
    }

    fn sequence_of(record: &Record) -> (u16, u32) {
        let stamp = record.stamp.expect("an idempotent batch is stamped");
        (stamp.epoch, stamp.sequence)
    }

    fn metadata(p: &mut Producer, now: Millis) {
        let correlation = p.metadata_in_flight.expect("metadata requested").0;
        let topics = vec![TopicMeta { id: TopicId(0), name: "t".into(), partitions: 2, min_insync_replicas: 1 }];
        let partitions = (0..2)
            .map(|i| PartitionLeader {
                tp: TopicPartition::new(0, i),
                leader: Some(NodeId(i)),
                leader_epoch: Default::default(),
            })
            .collect();
        p.handle_message(now, NodeId(0), Message::MetadataResponse { correlation, topics, partitions });
    }

    // Shows KIP-320's metadata rule (the Java client's `Metadata.updateLatestMetadata`):
    // a broker that missed a leader change answers metadata with the older leader epoch,
    // and the producer keeps the leader it learnt at the newer one rather than going back
    // to the old leader (which may still take a batch's retry and answer it from a stale
    // log). A pipeline-nemesis sweep found the duplicate this caused at seed 1225.
    #[test]
    fn metadata_with_an_older_leader_epoch_is_ignored() {
        let mut p = producer(Acks::All);
        p.send(Millis(0), WriteId(1), TopicId(0), Some(21), 0);
        let topics = vec![TopicMeta { id: TopicId(0), name: "t".into(), partitions: 2, min_insync_replicas: 1 }];
        let answer = |p: &mut Producer, leader: u32, epoch: u32, at: u64| {
            let correlation = p.metadata_in_flight.map_or(90 + at, |(c, _, _)| c);
            p.metadata_in_flight = Some((correlation, NodeId(0), Millis(at)));
            let partitions = (0..2)
                .map(|i| PartitionLeader {
                    tp: TopicPartition::new(0, i),
                    leader: Some(NodeId(leader)),
                    leader_epoch: crate::types::LeaderEpoch(epoch),
                })
                .collect();
            let msg = Message::MetadataResponse { correlation, topics: topics.clone(), partitions };
            p.handle_message(Millis(at), NodeId(0), msg);
        };
        answer(&mut p, 2, 1, 1);
        assert_eq!(p.leader_of(TopicPartition::new(0, 0)), Some(NodeId(2)));
        answer(&mut p, 0, 0, 2);
        assert_eq!(p.leader_of(TopicPartition::new(0, 0)), Some(NodeId(2)), "epoch 0 is older than 1");
        answer(&mut p, 1, 2, 3);
        assert_eq!(p.leader_of(TopicPartition::new(0, 0)), Some(NodeId(1)), "epoch 2 is newer");
    }

    fn drain_actions(p: &mut Producer) -> Vec<Action> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    // Shows the accumulator waits linger.ms before sending, sends to the partition's leader,
    // and acknowledges each record at base offset + index (Kafka's RecordAccumulator).
    #[test]
    fn lingers_then_sends_to_the_leader_and_acks_offsets() {
        let mut p = producer(Acks::All);
        p.send(Millis(0), WriteId(1), TopicId(0), Some(21), 0);
        metadata(&mut p, Millis(1));
        drain_actions(&mut p);
        p.send(Millis(2), WriteId(2), TopicId(0), Some(21), 0);
        assert!(drain_actions(&mut p).is_empty(), "linger.ms holds the batch");
        assert_eq!(p.poll_timeout(), Some(Millis(5)));
        p.handle_timeout(Millis(5));
        let sends = drain_actions(&mut p);
        let (to, correlation, count) = match &sends[..] {
            [Action::Send { to, msg: Message::Produce { correlation, batches, .. } }] => {
                (*to, *correlation, batches[0].records.len())
            }
            other => panic!("expected one produce, got {other:?}"),
        };
        // murmur2("21") is -973932308; masked and mod 2 gives partition 0, led by broker 0.
        assert_eq!(to, NodeId(0));
        assert_eq!(count, 2);
        let response = ProducePartitionResponse {
            tp: TopicPartition::new(0, 0),
            error: ErrorCode::None,
            base_offset: Some(Offset(40)),
        };
        p.handle_message(Millis(6), to, Message::ProduceResponse { correlation, partitions: vec![response] });
        let acks: Vec<(WriteId, WriteOutcome)> = drain_actions(&mut p)
            .into_iter()
            .filter_map(|a| match a {
                Action::Ack { write, outcome, .. } => Some((write, outcome)),
                _ => None,
            })
            .collect();
        assert_eq!(
            acks,
            vec![
                (WriteId(1), WriteOutcome::Ok { offset: Some(Offset(40)) }),
                (WriteId(2), WriteOutcome::Ok { offset: Some(Offset(41)) })
            ]
        );
        assert_eq!(p.outstanding(), 0);
    }

    // Shows a batch that waits for a busy connection goes at its linger deadline once an
    // answer frees the connection: the Sender recomputes what is ready and when after
    // every response (Sender.sendProducerData, RecordAccumulator.ready's next check delay),
    // so the deadline must cover a batch that was blocked when it was appended.
    #[test]
    fn a_batch_blocked_by_a_busy_connection_goes_at_its_linger_deadline() {
        let config = ProducerConfig {
            acks: Acks::Leader,
            linger_ms: 5,
            enable_idempotence: false,
            max_in_flight_requests_per_connection: 1,
            ..ProducerConfig::default()
        };
        let mut p = Producer::new(NodeId(10), config, vec![NodeId(0)]);
        p.send(Millis(0), WriteId(1), TopicId(0), Some(21), 0);
        metadata(&mut p, Millis(0));
        drain_actions(&mut p);
        p.handle_timeout(Millis(5));
        let first = produces(&drain_actions(&mut p));
        assert_eq!(first.len(), 1, "the first batch goes after linger.ms");
        // Appended while the only connection slot is taken.
        p.send(Millis(6), WriteId(2), TopicId(0), Some(21), 0);
        answer(&mut p, Millis(7), first[0].0, ErrorCode::None, Some(0));
        drain_actions(&mut p);
        assert_eq!(p.poll_timeout(), Some(Millis(11)), "the second batch's linger deadline");
        p.handle_timeout(Millis(11));
        let second = produces(&drain_actions(&mut p));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].1[0].write, WriteId(2));
    }

    // Shows an answer that overtakes an earlier request's on the same connection breaks
    // the connection: the earlier request's answer was lost, which TCP cannot do on a
    // live connection (NetworkClient matches answers to requests in order). The earlier
    // batch is resent after retry.backoff.ms, not after request.timeout.ms, and the close
    // goes to the broker.
    #[test]
    fn an_answer_that_overtakes_an_earlier_one_breaks_the_connection() {
        let mut p = ready_idempotent();
        p.send(Millis(0), WriteId(1), TopicId(0), Some(21), 0);
        p.handle_timeout(Millis(5));
        let first = produces(&drain_actions(&mut p));
        p.send(Millis(6), WriteId(2), TopicId(0), Some(21), 0);
        p.handle_timeout(Millis(11));
        let second = produces(&drain_actions(&mut p));
        assert_eq!((first.len(), second.len()), (1, 1), "two requests in flight to broker 0");
        answer(&mut p, Millis(12), second[0].0, ErrorCode::None, Some(1));
        let actions = drain_actions(&mut p);
        let closed =
            actions.iter().any(|a| matches!(a, Action::Send { to: NodeId(0), msg: Message::ConnectionClosed }));
        assert!(closed, "the close goes to the broker: {actions:?}");
        assert!(p.in_flight.is_empty(), "nothing is left waiting on the broken connection");
        p.handle_timeout(Millis(12 + p.config.retry_backoff_ms.max(p.config.reconnect_backoff_ms)));
        let resent = produces(&drain_actions(&mut p));
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].1[0].write, WriteId(1));
        assert_eq!(sequence_of(&resent[0].1[0]), sequence_of(&first[0].1[0]), "resent with its sequence");
    }

    // Shows a retriable error re-queues the batch after retry.backoff.ms and refreshes
    // metadata (NOT_LEADER_OR_FOLLOWER), and that a request with no answer fails as
    // indefinite once delivery.timeout.ms has passed.
    #[test]
    fn retries_then_gives_up_after_the_delivery_timeout() {
        let mut p = producer(Acks::All);
        p.send(Millis(0), WriteId(7), TopicId(0), Some(21), 0);
        metadata(&mut p, Millis(0));
        p.handle_timeout(Millis(5));
        let correlation = match drain_actions(&mut p).pop() {
            Some(Action::Send { msg: Message::Produce { correlation, .. }, .. }) => correlation,
            other => panic!("expected a produce, got {other:?}"),
        };
        let response = ProducePartitionResponse {
            tp: TopicPartition::new(0, 0),
            error: ErrorCode::NotLeaderOrFollower,
            base_offset: None,
        };
        p.handle_message(Millis(6), NodeId(0), Message::ProduceResponse { correlation, partitions: vec![response] });
        assert!(p.metadata_needed || p.metadata_in_flight.is_some());
        let mut now = Millis(6);
        let mut outcome = None;
        for _ in 0..10_000 {
            let Some(next) = p.poll_timeout() else { break };
            now = next.max(now);
            p.handle_timeout(now);
            for action in drain_actions(&mut p) {
                if let Action::Ack { outcome: o, .. } = action {
                    outcome = Some(o);
                }
            }
            if outcome.is_some() {
                break;
            }
        }
        assert_eq!(outcome, Some(WriteOutcome::Failed { error: ErrorCode::DeliveryTimeout, definite: false }));
        assert!(now >= Millis(120_000));
    }

    // Shows the idempotent producer's start (KIP-98): nothing is produced before
    // InitProducerId answers, then every batch carries the producer id, epoch 0 and
    // consecutive sequences per partition, and a retry resends the same sequence.
    #[test]
    fn an_idempotent_producer_numbers_its_batches_and_keeps_the_number_on_retry() {
        let mut p = idempotent();
        p.send(Millis(0), WriteId(1), TopicId(0), Some(21), 0);
        metadata(&mut p, Millis(1));
        let first = drain_actions(&mut p);
        assert!(produces(&first).is_empty(), "no produce before the producer id: {first:?}");
        grant_producer_id(&mut p, Millis(2), &first);
        let sent = produces(&drain_actions(&mut p));
        assert_eq!(sent.len(), 1);
        let stamp = sent[0].1[0].stamp.expect("stamped");
        assert_eq!((stamp.pid.get(), stamp.epoch, stamp.sequence, stamp.index), (7, 0, 0, 0));
        p.send(Millis(3), WriteId(2), TopicId(0), Some(21), 0);
        let second = produces(&drain_actions(&mut p));
        assert_eq!(sequence_of(&second[0].1[0]), (0, 1), "the next batch takes the next sequence");
        // The first request is lost: its retry carries sequence 0 again.
        answer(&mut p, Millis(4), sent[0].0, ErrorCode::NetworkException, None);
        p.handle_timeout(Millis(200));
        let retried = produces(&drain_actions(&mut p));
        assert_eq!(retried.len(), 1);
        assert_eq!(sequence_of(&retried[0].1[0]), (0, 0));
        assert_eq!(retried[0].1[0].write, WriteId(1));
    }

    // Shows Kafka's retry ordering for idempotent producers (RecordAccumulator's
    // shouldStopDrainBatchesForPartition, TransactionManager.canRetry): when the first of
    // two in-flight batches fails, the second's OUT_OF_ORDER_SEQUENCE_NUMBER is retried
    // without an epoch bump, and the retries go out one at a time in sequence order.
    #[test]
    fn an_out_of_order_batch_behind_a_failed_one_is_retried_in_order() {
        let mut p = ready_idempotent();
        p.send(Millis(1), WriteId(1), TopicId(0), Some(21), 0);
        p.send(Millis(1), WriteId(2), TopicId(0), Some(21), 0);
        let sent = produces(&drain_actions(&mut p));
        assert_eq!(sent.len(), 2, "two requests in flight: {sent:?}");
        answer(&mut p, Millis(2), sent[0].0, ErrorCode::NotLeaderOrFollower, None);
        answer(&mut p, Millis(2), sent[1].0, ErrorCode::OutOfOrderSequenceNumber, None);
        let mut order = Vec::new();
        let mut now = Millis(2);
        for _ in 0..50 {
            let Some(next) = p.poll_timeout() else { break };
            now = next.max(now);
            p.handle_timeout(now);
            for (correlation, records) in produces(&drain_actions(&mut p)) {
                order.push((records[0].write, sequence_of(&records[0])));
                answer(&mut p, now, correlation, ErrorCode::None, Some(order.len() as u64 - 1));
            }
            if p.outstanding() == 0 {
                break;
            }
        }
        assert_eq!(order, vec![(WriteId(1), (0, 0)), (WriteId(2), (0, 1))]);
        assert_eq!(p.producer_id_and_epoch().map(|(_, epoch)| epoch), Some(0), "no bump for an early batch");
    }

    // Shows KIP-360's recovery from a sequence gap: a sent batch given up after the
    // delivery timeout leaves its sequence unresolved (markSequenceUnresolved); with
    // nothing else of the partition in flight the gap is settled at once: the producer
    // bumps its epoch itself (bumpIdempotentProducerEpoch) and the next batch starts
    // again at sequence 0.
    #[test]
    fn an_expired_batch_bumps_the_epoch_and_restarts_the_sequence() {
        let mut p = ready_idempotent();
        p.send(Millis(1), WriteId(1), TopicId(0), Some(21), 0);
        let sent = produces(&drain_actions(&mut p));
        // Unanswered until the delivery timeout has passed.
        answer(&mut p, Millis(125_000), sent[0].0, ErrorCode::RequestTimedOut, None);
        let failed = drain_actions(&mut p)
            .into_iter()
            .any(|a| matches!(a, Action::Ack { write: WriteId(1), outcome: WriteOutcome::Failed { .. }, .. }));
        assert!(failed, "the batch fails with the delivery timeout");
        p.send(Millis(125_001), WriteId(2), TopicId(0), Some(21), 0);
        let next = produces(&drain_actions(&mut p));
        assert_eq!(next.len(), 1);
        assert_eq!(sequence_of(&next[0].1[0]), (1, 0), "epoch 1, sequence 0");
    }
}
