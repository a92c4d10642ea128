//! The transaction coordinator: Kafka's `TransactionCoordinator` with its
//! `TransactionStateManager`, for the `__transaction_state` partitions a broker leads.
//!
//! A transactional id maps to one partition (`txn_partition_for`). Its state moves
//! Empty → Ongoing (AddPartitionsToTxn, AddOffsetsToTxn) → PrepareCommit / PrepareAbort
//! (EndTxn) → CompleteCommit / CompleteAbort (once every partition has its marker) and
//! back to Ongoing with the next transaction. Every change is a [`TxnRecord`] appended to
//! the partition; it takes effect, and the client hears, only once the host reports it
//! committed (`handle_append_result`). After a Prepare record the client is answered and
//! the markers go out ([`TxnOutput::WriteMarkers`]); the host reports them written with
//! `markers_written`, which writes the Complete record.
//!
//! Fencing: InitProducerId bumps the producer epoch, so an older instance of the same
//! transactional id is fenced (PRODUCER_FENCED). InitProducerId against an ongoing
//! transaction first aborts it with a bumped epoch and answers CONCURRENT_TRANSACTIONS
//! (the client retries); so does a transaction older than its `transaction.timeout.ms`.
//! With `bump_epoch_per_transaction` (KIP-890 part 2, transaction version 2) every EndTxn
//! also bumps the epoch and returns it, so the markers carry an epoch no write of the
//! ended transaction has.

use crate::error::ErrorCode;
use crate::group::coordinator::offsets_partition_for;
use crate::types::{Millis, NodeId, TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;

/// `transaction.state.log.num.partitions` default.
pub const TXN_PARTITIONS_DEFAULT: u32 = 50;
/// Bound on transactional ids one coordinator holds (Kafka expires idle ids after
/// `transactional.id.expiration.ms`; a simulation needs a hard limit).
pub const TXN_IDS_MAX: usize = 10_000;
/// Bound on appends waiting for the log.
pub const PENDING_APPENDS_MAX: usize = 10_000;
/// `RecordBatch.NO_PRODUCER_EPOCH` (-1): the epoch of an id that never had one.
pub const NO_EPOCH: u16 = u16::MAX;
/// Kafka's `isEpochExhausted`: an epoch at `Short.MaxValue - 1` cannot be bumped again.
pub const EPOCH_EXHAUSTED: u16 = i16::MAX as u16 - 1;
/// How soon a failed Complete record is written again.
pub const COMPLETE_RETRY_MS: u64 = 100;

/// The `__transaction_state` partition of `transactional_id`: the same
/// `abs(hashCode) % partitions` as a group's offsets partition.
pub fn txn_partition_for(transactional_id: &str, partitions: u32) -> u32 {
    offsets_partition_for(transactional_id, partitions)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnCoordinatorConfig {
    /// `transaction.state.log.num.partitions`.
    pub partitions: u32,
    /// `transaction.max.timeout.ms`: a longer `transaction.timeout.ms` is refused.
    pub max_timeout_ms: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_interval_ms: u64,
    /// KIP-890 part 2: EndTxn bumps the producer epoch (off: the epoch lasts until the
    /// next InitProducerId, as before Kafka 4.0).
    pub bump_epoch_per_transaction: bool,
    /// KIP-1228 (Kafka 4.2): WriteTxnMarkers carries the transaction version, so a leader
    /// refuses a version-2 marker whose epoch is not above the producer's, a late or
    /// repeated marker of the transaction before (off: Kafka 4.1 and before, where such a
    /// marker ends whatever transaction of that epoch is open, KAFKA-19446).
    pub marker_transaction_version: bool,
    /// `__consumer_offsets`, whose partition for a group AddOffsetsToTxn adds.
    pub offsets_topic: TopicId,
    pub offsets_partitions: u32,
}

impl Default for TxnCoordinatorConfig {
    fn default() -> Self {
        TxnCoordinatorConfig {
            partitions: TXN_PARTITIONS_DEFAULT,
            max_timeout_ms: 900_000,
            abort_interval_ms: 10_000,
            bump_epoch_per_transaction: true,
            marker_transaction_version: true,
            offsets_topic: TopicId(u32::MAX),
            offsets_partitions: crate::group::coordinator::OFFSETS_PARTITIONS_DEFAULT,
        }
    }
}

/// `TransactionState`, less the two states that are never written (PrepareEpochFence is
/// a pending transition here, Dead belongs to id expiration, which is not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// One `__transaction_state` record (`TransactionLogValue`): the whole state of a
/// transactional id; the last one in the log wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub producer_id: NonZeroU32,
    /// The producer id before the last rotation (an exhausted epoch), for retries.
    pub last_producer_id: Option<NonZeroU32>,
    /// [`NO_EPOCH`] until the first InitProducerId is stored.
    pub producer_epoch: u16,
    /// The epoch before the last bump, so that a retried InitProducerId whose answer was
    /// lost gets the same epoch again.
    pub last_producer_epoch: Option<u16>,
    pub timeout_ms: u64,
    pub state: TxnState,
    /// Sorted, without repeats.
    pub partitions: Vec<TopicPartition>,
    pub started_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRequest {
    /// InitProducerId with a transactional id; `expected` is the producer id and epoch
    /// the client had (KIP-360), none on its first call.
    InitProducerId {
        transactional_id: String,
        timeout_ms: u64,
        expected: Option<(NonZeroU32, u16)>,
    },
    /// AddPartitionsToTxn from a client, or (`verify_only`, KIP-890 part 1) a partition
    /// leader asking whether the partitions are in the producer's ongoing transaction.
    AddPartitions {
        transactional_id: String,
        producer_id: NonZeroU32,
        epoch: u16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    },
    /// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition.
    AddOffsets {
        transactional_id: String,
        producer_id: NonZeroU32,
        epoch: u16,
        group: String,
    },
    EndTxn {
        transactional_id: String,
        producer_id: NonZeroU32,
        epoch: u16,
        commit: bool,
    },
}

impl TxnRequest {
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnRequest::InitProducerId { transactional_id, .. }
            | TxnRequest::AddPartitions { transactional_id, .. }
            | TxnRequest::AddOffsets { transactional_id, .. }
            | TxnRequest::EndTxn { transactional_id, .. } => transactional_id,
        }
    }

    /// The answer to this request that carries only `error`.
    pub fn error_response(&self, error: ErrorCode) -> TxnResponse {
        Reply::of(self).with(error, None)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResponse {
    InitProducerId {
        error: ErrorCode,
        producer: Option<(NonZeroU32, u16)>,
    },
    AddPartitions {
        error: ErrorCode,
    },
    AddOffsets {
        error: ErrorCode,
    },
    /// With KIP-890 part 2 the producer id and the bumped epoch come back.
    EndTxn {
        error: ErrorCode,
        producer: Option<(NonZeroU32, u16)>,
    },
}

impl TxnResponse {
    pub fn error(&self) -> ErrorCode {
        match self {
            TxnResponse::InitProducerId { error, .. }
            | TxnResponse::AddPartitions { error }
            | TxnResponse::AddOffsets { error }
            | TxnResponse::EndTxn { error, .. } => *error,
        }
    }
}

/// What the coordinator did, for the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEvent {
    /// A state record became durable.
    Stored(TxnRecord),
    /// An ongoing transaction outlived its timeout and is being aborted.
    TimedOut { transactional_id: String, producer_id: NonZeroU32, epoch: u16 },
    /// Client side: the producer holds this id and epoch (after InitProducerId, or an
    /// EndTxn that bumped the epoch).
    ProducerEpoch { transactional_id: String, producer_id: NonZeroU32, epoch: u16 },
    /// Client side: transaction `txn` ended as the application learns it; `error` says
    /// why, when it did not end as asked.
    Ended { transactional_id: String, txn: u64, outcome: TxnOutcome, error: ErrorCode },
}

/// How a transaction ended, as the application that ran it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnOutcome {
    /// `commitTransaction()` returned.
    Committed,
    /// `abortTransaction()` returned, or the producer failed before it asked to commit:
    /// nothing of it may become visible to read_committed.
    Aborted,
    /// The producer failed after it asked to commit: it may or may not have committed.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutput {
    Respond {
        to: NodeId,
        correlation: u64,
        response: TxnResponse,
    },
    /// Append `record` to `__transaction_state` partition `partition` with acks=all and
    /// report with `handle_append_result(token, ..)`.
    Append {
        token: u64,
        partition: u32,
        record: TxnRecord,
    },
    /// Write a commit or abort marker for the producer to every partition (Kafka's
    /// WriteTxnMarkers to each leader, retried until written), then call
    /// `markers_written`.
    WriteMarkers {
        transactional_id: String,
        producer_id: NonZeroU32,
        epoch: u16,
        commit: bool,
        partitions: Vec<TopicPartition>,
    },
    Event(TxnEvent),
}

/// Which answer a request wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Init,
    Add,
    Offsets,
    End,
}

impl Reply {
    fn of(request: &TxnRequest) -> Reply {
        match request {
            TxnRequest::InitProducerId { .. } => Reply::Init,
            TxnRequest::AddPartitions { .. } => Reply::Add,
            TxnRequest::AddOffsets { .. } => Reply::Offsets,
            TxnRequest::EndTxn { .. } => Reply::End,
        }
    }

    fn with(self, error: ErrorCode, producer: Option<(NonZeroU32, u16)>) -> TxnResponse {
        let producer = producer.filter(|_| error == ErrorCode::None);
        match self {
            Reply::Init => TxnResponse::InitProducerId { error, producer },
            Reply::Add => TxnResponse::AddPartitions { error },
            Reply::Offsets => TxnResponse::AddOffsets { error },
            Reply::End => TxnResponse::EndTxn { error, producer },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    from: NodeId,
    correlation: u64,
    reply: Reply,
}

/// What to do once a pending record is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Answer with the stored producer id and epoch.
    Answer(Waiter),
    /// A Prepare record from EndTxn: answer, then write the markers.
    EndAnswered(Waiter),
    /// The abort of a fenced transaction (InitProducerId against it, or its timeout):
    /// the InitProducerId hears CONCURRENT_TRANSACTIONS, then the markers go out.
    FencedAbort(Option<Waiter>),
    /// A Complete record: nothing more.
    Complete,
}

#[derive(Clone, Debug)]
struct PendingAppend {
    transactional_id: String,
    next: TxnRecord,
    then: Then,
}

#[derive(Clone, Debug)]
struct Txn {
    /// The durable state (for a new id, epoch [`NO_EPOCH`] until its first record).
    meta: TxnRecord,
    /// The append in flight for this id, if any (`pendingTransitionInProgress`).
    pending: Option<u64>,
    /// Markers sent, waiting for `markers_written`.
    markers_out: bool,
    /// A Complete record to write again at this time (its append failed).
    retry_complete_at: Option<Millis>,
}

pub struct TxnCoordinator {
    config: TxnCoordinatorConfig,
    /// The `__transaction_state` partitions this coordinator has loaded.
    loaded: BTreeSet<u32>,
    txns: BTreeMap<String, Txn>,
    pending: BTreeMap<u64, PendingAppend>,
    next_token: u64,
    next_abort_scan: Option<Millis>,
    outbox: VecDeque<TxnOutput>,
}

impl TxnCoordinator {
    pub fn new(config: TxnCoordinatorConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            loaded: BTreeSet::new(),
            txns: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_token: 0,
            next_abort_scan: None,
            outbox: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TxnCoordinatorConfig {
        &self.config
    }

    /// Whether this coordinator owns `transactional_id` (its partition is loaded).
    pub fn owns(&self, transactional_id: &str) -> bool {
        self.loaded.contains(&txn_partition_for(transactional_id, self.config.partitions))
    }

    /// The durable state of `transactional_id`.
    pub fn state(&self, transactional_id: &str) -> Option<&TxnRecord> {
        self.known(transactional_id).map(|t| &t.meta)
    }

    /// `transactional_id`'s entry once it has a stored epoch (a new id's placeholder,
    /// before its first InitProducerId record commits, does not count).
    fn known(&self, transactional_id: &str) -> Option<&Txn> {
        self.txns.get(transactional_id).filter(|t| t.meta.producer_epoch != NO_EPOCH)
    }

    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let retries = self.txns.values().filter_map(|t| t.retry_complete_at);
        retries.chain(self.next_abort_scan).min()
    }

    // ---- requests ----

    /// One request. `allocate` hands out a fresh producer id (none when the broker has
    /// none to give); it is called only for a new transactional id or a rotation.
    pub fn handle_request(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        request: TxnRequest,
        allocate: &mut dyn FnMut() -> Option<NonZeroU32>,
    ) {
        let waiter = Waiter { from, correlation, reply: Reply::of(&request) };
        if !self.owns(request.transactional_id()) {
            return self.respond(waiter, ErrorCode::NotCoordinator, None);
        }
        match request {
            TxnRequest::InitProducerId { transactional_id, timeout_ms, expected } => {
                self.init_producer_id(now, waiter, transactional_id, timeout_ms, expected, allocate)
            }
            TxnRequest::AddPartitions { transactional_id, producer_id, epoch, partitions, verify_only } => {
                self.add_partitions(now, waiter, &transactional_id, producer_id, epoch, partitions, verify_only)
            }
            TxnRequest::AddOffsets { transactional_id, producer_id, epoch, group } => {
                let partition = offsets_partition_for(&group, self.config.offsets_partitions);
                let tp = TopicPartition { topic: self.config.offsets_topic, partition };
                self.add_partitions(now, waiter, &transactional_id, producer_id, epoch, vec![tp], false)
            }
            TxnRequest::EndTxn { transactional_id, producer_id, epoch, commit } => {
                self.end_txn(now, waiter, &transactional_id, producer_id, epoch, commit, allocate)
            }
        }
    }

    fn init_producer_id(
        &mut self,
        now: Millis,
        waiter: Waiter,
        id: String,
        timeout_ms: u64,
        expected: Option<(NonZeroU32, u16)>,
        allocate: &mut dyn FnMut() -> Option<NonZeroU32>,
    ) {
        if timeout_ms == 0 || timeout_ms > self.config.max_timeout_ms {
            return self.respond(waiter, ErrorCode::InvalidTransactionTimeout, None);
        }
        if !self.txns.contains_key(&id) {
            if self.txns.len() >= TXN_IDS_MAX {
                return self.respond(waiter, ErrorCode::CoordinatorNotAvailable, None);
            }
            let Some(producer_id) = allocate() else {
                return self.respond(waiter, ErrorCode::CoordinatorNotAvailable, None);
            };
            let meta = TxnRecord {
                transactional_id: id.clone(),
                producer_id,
                last_producer_id: None,
                producer_epoch: NO_EPOCH,
                last_producer_epoch: None,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Vec::new(),
                started_at: now,
                updated_at: now,
            };
            self.txns.insert(id.clone(), Txn { meta, pending: None, markers_out: false, retry_complete_at: None });
        }
        let Some(txn) = self.txns.get(&id) else { return };
        let meta = &txn.meta;
        if txn.pending.is_some() {
            return self.respond(waiter, ErrorCode::ConcurrentTransactions, None);
        }
        // prepareInitProducerIdTransit's isValidProducerId.
        let valid = |(pid, epoch): (NonZeroU32, u16)| {
            meta.producer_epoch == NO_EPOCH
                || pid == meta.producer_id
                || (Some(pid) == meta.last_producer_id && epoch >= EPOCH_EXHAUSTED)
        };
        if !expected.is_none_or(valid) {
            return self.respond(waiter, ErrorCode::ProducerFenced, None);
        }
        let mut next = meta.clone();
        next.updated_at = now;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.respond(waiter, ErrorCode::ConcurrentTransactions, None)
            }
            TxnState::Ongoing => {
                // Fence the running instance: abort its transaction with a bumped epoch
                // (never handed out); the client's retry bumps the epoch again.
                next.producer_epoch = fence_epoch(meta.producer_epoch);
                next.last_producer_epoch = None;
                next.state = TxnState::PrepareAbort;
                self.append(id, next, Then::FencedAbort(Some(waiter)));
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let exhausted = meta.producer_epoch != NO_EPOCH && meta.producer_epoch >= EPOCH_EXHAUSTED;
                if exhausted && expected.is_none_or(|(_, epoch)| epoch == meta.producer_epoch) {
                    // prepareProducerIdRotation.
                    let Some(producer_id) = allocate() else {
                        return self.respond(waiter, ErrorCode::CoordinatorNotAvailable, None);
                    };
                    next.last_producer_id = Some(meta.producer_id);
                    next.producer_id = producer_id;
                    next.last_producer_epoch = Some(meta.producer_epoch);
                    next.producer_epoch = 0;
                } else {
                    // prepareIncrementProducerEpoch.
                    let bumped = if meta.producer_epoch == NO_EPOCH { 0 } else { meta.producer_epoch + 1 };
                    match expected.map(|(_, epoch)| epoch) {
                        None => {
                            next.producer_epoch = bumped;
                            next.last_producer_epoch = None;
                        }
                        Some(epoch) if meta.producer_epoch == NO_EPOCH || epoch == meta.producer_epoch => {
                            next.producer_epoch = bumped;
                            next.last_producer_epoch = Some(meta.producer_epoch);
                        }
                        // A retry whose answer was lost: the same epoch again.
                        Some(epoch) if Some(epoch) == meta.last_producer_epoch => {}
                        Some(_) => return self.respond(waiter, ErrorCode::ProducerFenced, None),
                    }
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                self.append(id, next, Then::Answer(waiter));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_partitions(
        &mut self,
        now: Millis,
        waiter: Waiter,
        id: &str,
        producer_id: NonZeroU32,
        epoch: u16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    ) {
        let Some(txn) = self.known(id) else {
            return self.respond(waiter, ErrorCode::InvalidProducerIdMapping, None);
        };
        let meta = &txn.meta;
        let included = partitions.iter().all(|tp| meta.partitions.binary_search(tp).is_ok());
        let error = if meta.producer_id != producer_id {
            ErrorCode::InvalidProducerIdMapping
        } else if meta.producer_epoch != epoch {
            ErrorCode::ProducerFenced
        } else if meta.state.is_prepare() || (txn.pending.is_some() && !verify_only) {
            // KIP-890 part 1's check (`handleVerifyPartitionsInTransaction`) does not look at
            // a state change being written, only at what is stored.
            ErrorCode::ConcurrentTransactions
        } else if meta.state == TxnState::Ongoing && included {
            ErrorCode::None
        } else if verify_only {
            // KIP-890 part 1: the partition is not in this producer's transaction.
            ErrorCode::InvalidTxnState
        } else {
            let mut next = meta.clone();
            if !matches!(meta.state, TxnState::Ongoing) {
                next.started_at = now;
            }
            next.state = TxnState::Ongoing;
            next.partitions.extend(partitions);
            next.partitions.sort_unstable();
            next.partitions.dedup();
            next.updated_at = now;
            return self.append(id.to_string(), next, Then::Answer(waiter));
        };
        self.respond(waiter, error, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn end_txn(
        &mut self,
        now: Millis,
        waiter: Waiter,
        id: &str,
        producer_id: NonZeroU32,
        epoch: u16,
        commit: bool,
        allocate: &mut dyn FnMut() -> Option<NonZeroU32>,
    ) {
        let bump = self.config.bump_epoch_per_transaction;
        let Some(txn) = self.known(id) else {
            return self.respond(waiter, ErrorCode::InvalidProducerIdMapping, None);
        };
        let meta = &txn.meta;
        let current = Some((meta.producer_id, meta.producer_epoch));
        let (prepare, complete) = if commit {
            (TxnState::PrepareCommit, TxnState::CompleteCommit)
        } else {
            (TxnState::PrepareAbort, TxnState::CompleteAbort)
        };
        // KIP-890 part 2: a retry of an EndTxn that already bumped the epoch carries the
        // epoch before the bump (or the producer id before a rotation).
        let retry_of_bump = bump
            && meta.last_producer_epoch == Some(epoch)
            && (meta.producer_id == producer_id || meta.last_producer_id == Some(producer_id))
            && (meta.state == prepare || meta.state == complete);
        if retry_of_bump {
            let error = if meta.state == complete { ErrorCode::None } else { ErrorCode::ConcurrentTransactions };
            return self.respond(waiter, error, current);
        }
        if meta.producer_id != producer_id {
            return self.respond(waiter, ErrorCode::InvalidProducerIdMapping, None);
        }
        if meta.producer_epoch != epoch {
            return self.respond(waiter, ErrorCode::ProducerFenced, None);
        }
        if txn.pending.is_some() {
            return self.respond(waiter, ErrorCode::ConcurrentTransactions, None);
        }
        match meta.state {
            TxnState::Ongoing => {
                let mut next = meta.clone();
                next.state = prepare;
                next.updated_at = now;
                if bump {
                    if meta.producer_epoch >= EPOCH_EXHAUSTED {
                        let Some(fresh) = allocate() else {
                            return self.respond(waiter, ErrorCode::CoordinatorNotAvailable, None);
                        };
                        next.last_producer_id = Some(meta.producer_id);
                        next.producer_id = fresh;
                        next.producer_epoch = 0;
                    } else {
                        next.producer_epoch = meta.producer_epoch + 1;
                    }
                    next.last_producer_epoch = Some(meta.producer_epoch);
                }
                self.append(id.to_string(), next, Then::EndAnswered(waiter));
            }
            state if state == complete => self.respond(waiter, ErrorCode::None, current),
            state if state == prepare => self.respond(waiter, ErrorCode::ConcurrentTransactions, None),
            _ => self.respond(waiter, ErrorCode::InvalidTxnState, None),
        }
    }

    // ---- the log and the markers ----

    /// The host's answer to an `Append`: `None` once the record is committed, else the
    /// produce error.
    pub fn handle_append_result(&mut self, now: Millis, token: u64, error: ErrorCode) {
        let Some(PendingAppend { transactional_id, next, then }) = self.pending.remove(&token) else {
            return;
        };
        let Some(txn) = self.txns.get_mut(&transactional_id).filter(|t| t.pending == Some(token)) else {
            return;
        };
        txn.pending = None;
        let error = append_error(error);
        if error != ErrorCode::None {
            match then {
                Then::Answer(waiter) | Then::EndAnswered(waiter) | Then::FencedAbort(Some(waiter)) => {
                    self.respond(waiter, error, None)
                }
                Then::FencedAbort(None) => {}
                Then::Complete => txn.retry_complete_at = Some(now.plus(COMPLETE_RETRY_MS)),
            }
            return;
        }
        txn.meta = next.clone();
        let producer = Some((next.producer_id, next.producer_epoch));
        self.outbox.push_back(TxnOutput::Event(TxnEvent::Stored(next)));
        match then {
            Then::Answer(waiter) => self.respond(waiter, ErrorCode::None, producer),
            Then::EndAnswered(waiter) => {
                self.respond(waiter, ErrorCode::None, producer);
                self.send_markers(&transactional_id);
            }
            Then::FencedAbort(waiter) => {
                if let Some(waiter) = waiter {
                    self.respond(waiter, ErrorCode::ConcurrentTransactions, None);
                }
                self.send_markers(&transactional_id);
            }
            Then::Complete => {}
        }
    }

    fn send_markers(&mut self, id: &str) {
        let Some(txn) = self.txns.get_mut(id) else { return };
        txn.markers_out = true;
        let meta = &txn.meta;
        self.outbox.push_back(TxnOutput::WriteMarkers {
            transactional_id: id.to_string(),
            producer_id: meta.producer_id,
            epoch: meta.producer_epoch,
            commit: meta.state == TxnState::PrepareCommit,
            partitions: meta.partitions.clone(),
        });
    }

    /// Every marker of the transaction that `producer_id`/`epoch` prepared is written:
    /// the Complete record goes to the log.
    pub fn markers_written(&mut self, now: Millis, transactional_id: &str, producer_id: NonZeroU32, epoch: u16) {
        let Some(txn) = self.txns.get_mut(transactional_id) else { return };
        let meta = &txn.meta;
        if !txn.markers_out || meta.producer_id != producer_id || meta.producer_epoch != epoch {
            return;
        }
        txn.markers_out = false;
        self.write_complete(now, transactional_id);
    }

    fn write_complete(&mut self, now: Millis, id: &str) {
        let Some(txn) = self.txns.get_mut(id) else { return };
        txn.retry_complete_at = None;
        let mut next = txn.meta.clone();
        next.state = match next.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return,
        };
        next.partitions.clear();
        next.updated_at = now;
        self.append(id.to_string(), next, Then::Complete);
    }

    fn append(&mut self, id: String, next: TxnRecord, then: Then) {
        if self.pending.len() >= PENDING_APPENDS_MAX {
            if let Then::Answer(w) | Then::EndAnswered(w) | Then::FencedAbort(Some(w)) = then {
                self.respond(w, ErrorCode::CoordinatorNotAvailable, None);
            }
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let Some(txn) = self.txns.get_mut(&id) else { return };
        txn.pending = Some(token);
        let partition = txn_partition_for(&id, self.config.partitions);
        self.outbox.push_back(TxnOutput::Append { token, partition, record: next.clone() });
        self.pending.insert(token, PendingAppend { transactional_id: id, next, then });
    }

    fn respond(&mut self, waiter: Waiter, error: ErrorCode, producer: Option<(NonZeroU32, u16)>) {
        let response = waiter.reply.with(error, producer);
        self.outbox.push_back(TxnOutput::Respond { to: waiter.from, correlation: waiter.correlation, response });
    }

    // ---- timers ----

    pub fn handle_timeout(&mut self, now: Millis) {
        let retries: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.retry_complete_at.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in retries {
            self.write_complete(now, &id);
        }
        if self.next_abort_scan.is_some_and(|at| at <= now) {
            self.next_abort_scan = Some(now.plus(self.config.abort_interval_ms));
            self.abort_timed_out(now);
        }
    }

    /// `abortTimedOutTransactions`: an ongoing transaction past its timeout is aborted
    /// with a bumped epoch, which fences the producer that ran it.
    fn abort_timed_out(&mut self, now: Millis) {
        let expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.pending.is_none()
                    && t.meta.state == TxnState::Ongoing
                    && t.meta.started_at.plus(t.meta.timeout_ms) < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(txn) = self.txns.get(&id) else { continue };
            let meta = &txn.meta;
            self.outbox.push_back(TxnOutput::Event(TxnEvent::TimedOut {
                transactional_id: id.clone(),
                producer_id: meta.producer_id,
                epoch: meta.producer_epoch,
            }));
            let mut next = meta.clone();
            next.producer_epoch = fence_epoch(meta.producer_epoch);
            next.last_producer_epoch = None;
            next.state = TxnState::PrepareAbort;
            next.updated_at = now;
            self.append(id, next, Then::FencedAbort(None));
        }
    }

    // ---- loading ----

    /// This broker became leader of `__transaction_state` partition `partition`:
    /// rebuild its transactional ids from the committed records in log order, and send
    /// the markers again for every transaction found prepared but not completed.
    pub fn load(&mut self, now: Millis, partition: u32, records: &[TxnRecord]) {
        self.unload(partition);
        self.loaded.insert(partition);
        for record in records {
            if self.txns.len() >= TXN_IDS_MAX && !self.txns.contains_key(&record.transactional_id) {
                continue;
            }
            let txn = Txn { meta: record.clone(), pending: None, markers_out: false, retry_complete_at: None };
            self.txns.insert(record.transactional_id.clone(), txn);
        }
        let prepared: Vec<String> = self
            .txns
            .iter()
            .filter(|(id, t)| t.meta.state.is_prepare() && txn_partition_for(id, self.config.partitions) == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in prepared {
            self.send_markers(&id);
        }
        if self.next_abort_scan.is_none() {
            self.next_abort_scan = Some(now.plus(self.config.abort_interval_ms));
        }
    }

    /// This broker no longer leads `partition`: its ids go, and requests waiting for
    /// their records are answered NOT_COORDINATOR.
    pub fn unload(&mut self, partition: u32) {
        if !self.loaded.remove(&partition) {
            return;
        }
        let partitions = self.config.partitions;
        self.txns.retain(|id, _| txn_partition_for(id, partitions) != partition);
        let gone: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| txn_partition_for(&p.transactional_id, partitions) == partition)
            .map(|(token, _)| *token)
            .collect();
        for token in gone {
            let Some(pending) = self.pending.remove(&token) else { continue };
            if let Then::Answer(w) | Then::EndAnswered(w) | Then::FencedAbort(Some(w)) = pending.then {
                self.respond(w, ErrorCode::NotCoordinator, None);
            }
        }
        if self.loaded.is_empty() {
            self.next_abort_scan = None;
        }
    }
}

/// `prepareFenceProducerEpoch`: one more epoch, unless the epoch is exhausted.
fn fence_epoch(epoch: u16) -> u16 {
    if epoch >= EPOCH_EXHAUSTED {
        epoch
    } else {
        epoch + 1
    }
}

/// `TransactionStateManager.appendTransactionToLog`'s mapping of a failed append to the
/// error the client sees.
fn append_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        other => other,
    }
}

#[cfg(test)]
mod tests;
