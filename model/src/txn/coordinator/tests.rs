use super::*;

const ID: &str = "payments-tx";
const TIMEOUT_MS: u64 = 60_000;
const CLIENT: u32 = 7;

fn pid(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

fn tp(topic: u32, partition: u32) -> TopicPartition {
    TopicPartition { topic: TopicId(topic), partition }
}

/// A coordinator that has loaded the partition of [`ID`] (and nothing else).
fn coordinator(config: TxnCoordinatorConfig) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(config);
    let partition = txn_partition_for(ID, c.config().partitions);
    c.load(Millis::ZERO, partition, &[]);
    assert!(drain(&mut c).is_empty());
    c
}

fn drain(c: &mut TxnCoordinator) -> Vec<TxnOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// A producer id allocator handing out 1000, 1001, …, counting its calls.
struct Ids {
    next: u32,
    calls: u32,
}

impl Ids {
    fn new() -> Ids {
        Ids { next: 1000, calls: 0 }
    }

    fn call(&mut self) -> Option<NonZeroU32> {
        self.calls += 1;
        self.next += 1;
        NonZeroU32::new(self.next - 1)
    }
}

fn request(c: &mut TxnCoordinator, now: u64, ids: &mut Ids, request: TxnRequest) -> Vec<TxnOutput> {
    c.handle_request(Millis(now), NodeId(CLIENT), 1, request, &mut || ids.call());
    drain(c)
}

fn responses(outputs: &[TxnOutput]) -> Vec<TxnResponse> {
    outputs
        .iter()
        .filter_map(|o| match o {
            TxnOutput::Respond { response, .. } => Some(response.clone()),
            _ => None,
        })
        .collect()
}

fn appends(outputs: &[TxnOutput]) -> Vec<(u64, TxnRecord)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            TxnOutput::Append { token, record, .. } => Some((*token, record.clone())),
            _ => None,
        })
        .collect()
}

fn markers(outputs: &[TxnOutput]) -> Vec<(NonZeroU32, u16, bool, Vec<TopicPartition>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            TxnOutput::WriteMarkers { producer_id, epoch, commit, partitions, .. } => {
                Some((*producer_id, *epoch, *commit, partitions.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Commits every append among `outputs` and returns what that produced.
fn commit_all(c: &mut TxnCoordinator, now: u64, outputs: &[TxnOutput]) -> Vec<TxnOutput> {
    let mut out = Vec::new();
    for (token, _) in appends(outputs) {
        c.handle_append_result(Millis(now), token, ErrorCode::None);
        out.extend(drain(c));
    }
    out
}

fn init(id: &str, expected: Option<(NonZeroU32, u16)>) -> TxnRequest {
    TxnRequest::InitProducerId { transactional_id: id.into(), timeout_ms: TIMEOUT_MS, expected }
}

fn add(producer: (NonZeroU32, u16), partitions: Vec<TopicPartition>) -> TxnRequest {
    TxnRequest::AddPartitions {
        transactional_id: ID.into(),
        producer_id: producer.0,
        epoch: producer.1,
        partitions,
        verify_only: false,
    }
}

fn end(producer: (NonZeroU32, u16), commit: bool) -> TxnRequest {
    TxnRequest::EndTxn { transactional_id: ID.into(), producer_id: producer.0, epoch: producer.1, commit }
}

/// InitProducerId through to its durable answer; returns the producer id and epoch.
fn init_ok(c: &mut TxnCoordinator, now: u64, ids: &mut Ids, expected: Option<(NonZeroU32, u16)>) -> (NonZeroU32, u16) {
    let out = request(c, now, ids, init(ID, expected));
    let out = commit_all(c, now, &out);
    match responses(&out).as_slice() {
        [TxnResponse::InitProducerId { error: ErrorCode::None, producer: Some(p) }] => *p,
        other => panic!("expected a successful InitProducerId, got {other:?}"),
    }
}

/// AddPartitionsToTxn through to its durable answer.
fn add_ok(c: &mut TxnCoordinator, now: u64, ids: &mut Ids, producer: (NonZeroU32, u16), parts: Vec<TopicPartition>) {
    let out = request(c, now, ids, add(producer, parts));
    let out = commit_all(c, now, &out);
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::None }]);
}

// InitProducerId for a new transactional id allocates a producer id and answers epoch 0
// only once its record is committed to __transaction_state (KIP-98;
// TransactionCoordinator.handleInitProducerId appends before it answers).
#[test]
fn init_producer_id_answers_after_the_record_is_durable() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let out = request(&mut c, 10, &mut ids, init(ID, None));
    assert!(responses(&out).is_empty(), "no answer before the append: {out:?}");
    let records = appends(&out);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.producer_epoch, 0);
    assert_eq!(records[0].1.state, TxnState::Empty);
    assert_eq!(c.state(ID), None, "nothing is durable yet");
    let out = commit_all(&mut c, 11, &out);
    assert_eq!(
        responses(&out),
        vec![TxnResponse::InitProducerId { error: ErrorCode::None, producer: Some((pid(1000), 0)) }]
    );
    assert_eq!(c.state(ID).map(|m| (m.producer_id, m.producer_epoch)), Some((pid(1000), 0)));
    assert_eq!(ids.calls, 1);
}

// A second InitProducerId for the same transactional id bumps the epoch, and the old
// instance is fenced: its AddPartitions and EndTxn get PRODUCER_FENCED (KIP-98 zombie
// fencing; TransactionCoordinator's producerEpoch check).
#[test]
fn reinit_bumps_the_epoch_and_fences_the_old_instance() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let old = init_ok(&mut c, 0, &mut ids, None);
    let new = init_ok(&mut c, 5, &mut ids, None);
    assert_eq!(new, (old.0, old.1 + 1));
    assert_eq!(ids.calls, 1, "the same producer id, only a new epoch");
    let out = request(&mut c, 6, &mut ids, add(old, vec![tp(1, 0)]));
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::ProducerFenced }]);
    let out = request(&mut c, 6, &mut ids, end(old, true));
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::ProducerFenced, producer: None }]);
    add_ok(&mut c, 7, &mut ids, new, vec![tp(1, 0)]);
}

// InitProducerId while the old instance has a transaction open aborts it with a bumped
// epoch (markers carry it), answers CONCURRENT_TRANSACTIONS, and the retry after the abort
// completes gets one epoch more (KIP-98; prepareFenceProducerEpoch in
// TransactionCoordinator.handleInitProducerId).
#[test]
fn init_against_an_ongoing_transaction_aborts_it_first() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let first = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1, &mut ids, first, vec![tp(1, 0), tp(2, 3)]);
    let out = request(&mut c, 2, &mut ids, init(ID, None));
    assert!(responses(&out).is_empty());
    let out = commit_all(&mut c, 2, &out);
    assert_eq!(
        responses(&out),
        vec![TxnResponse::InitProducerId { error: ErrorCode::ConcurrentTransactions, producer: None }]
    );
    assert_eq!(markers(&out), vec![(first.0, first.1 + 1, false, vec![tp(1, 0), tp(2, 3)])]);
    assert_eq!(c.state(ID).map(|m| m.state), Some(TxnState::PrepareAbort));
    // The retry while the markers are out is told to wait again.
    let out = request(&mut c, 3, &mut ids, init(ID, None));
    assert_eq!(
        responses(&out),
        vec![TxnResponse::InitProducerId { error: ErrorCode::ConcurrentTransactions, producer: None }]
    );
    c.markers_written(Millis(4), ID, first.0, first.1 + 1);
    let out = drain(&mut c);
    let complete = appends(&out);
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0].1.state, TxnState::CompleteAbort);
    assert!(complete[0].1.partitions.is_empty());
    commit_all(&mut c, 4, &out);
    let again = init_ok(&mut c, 5, &mut ids, None);
    assert_eq!(again, (first.0, first.1 + 2));
}

// AddPartitionsToTxn takes effect only when its record commits; a failed append leaves
// the state as it was and the client hears COORDINATOR_NOT_AVAILABLE, which it retries
// (TransactionStateManager.appendTransactionToLog's error mapping).
#[test]
fn a_failed_append_changes_nothing_and_maps_the_error() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    let out = request(&mut c, 1, &mut ids, add(producer, vec![tp(1, 0)]));
    let (token, record) = appends(&out).remove(0);
    assert_eq!(record.state, TxnState::Ongoing);
    // A second request while the first append is in flight.
    let busy = request(&mut c, 1, &mut ids, add(producer, vec![tp(1, 1)]));
    assert_eq!(responses(&busy), vec![TxnResponse::AddPartitions { error: ErrorCode::ConcurrentTransactions }]);
    c.handle_append_result(Millis(2), token, ErrorCode::NotEnoughReplicas);
    let out = drain(&mut c);
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::CoordinatorNotAvailable }]);
    assert_eq!(c.state(ID).map(|m| m.state), Some(TxnState::Empty));
    // NOT_LEADER_OR_FOLLOWER on the state partition means this is no longer the coordinator.
    let out = request(&mut c, 3, &mut ids, add(producer, vec![tp(1, 0)]));
    let (token, _) = appends(&out).remove(0);
    c.handle_append_result(Millis(3), token, ErrorCode::NotLeaderOrFollower);
    assert_eq!(responses(&drain(&mut c)), vec![TxnResponse::AddPartitions { error: ErrorCode::NotCoordinator }]);
    add_ok(&mut c, 4, &mut ids, producer, vec![tp(1, 0)]);
    assert_eq!(c.state(ID).map(|m| m.partitions.clone()), Some(vec![tp(1, 0)]));
}

// EndTxn(commit) writes PrepareCommit, answers, then asks for the markers; once they are
// written the CompleteCommit record follows; a retried EndTxn then succeeds without a
// second transaction (KIP-98 two-phase commit; TransactionCoordinator.endTransaction).
#[test]
fn commit_goes_prepare_markers_complete() {
    let config = TxnCoordinatorConfig { bump_epoch_per_transaction: false, ..TxnCoordinatorConfig::default() };
    let mut c = coordinator(config);
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1, &mut ids, producer, vec![tp(1, 0)]);
    // A partition already in the transaction is answered at once, without a record.
    let out = request(&mut c, 2, &mut ids, add(producer, vec![tp(1, 0)]));
    assert!(appends(&out).is_empty());
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::None }]);
    let out = request(&mut c, 3, &mut ids, end(producer, true));
    let (_, prepare) = appends(&out).remove(0);
    assert_eq!(prepare.state, TxnState::PrepareCommit);
    assert!(markers(&out).is_empty(), "no marker before PrepareCommit is durable");
    let out = commit_all(&mut c, 3, &out);
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(producer) }]);
    assert_eq!(markers(&out), vec![(producer.0, producer.1, true, vec![tp(1, 0)])]);
    // Markers for another epoch do not complete this transaction.
    c.markers_written(Millis(4), ID, producer.0, producer.1 + 1);
    assert!(drain(&mut c).is_empty());
    c.markers_written(Millis(4), ID, producer.0, producer.1);
    let out = drain(&mut c);
    let stored = commit_all(&mut c, 4, &out);
    assert_eq!(c.state(ID).map(|m| m.state), Some(TxnState::CompleteCommit));
    assert!(stored
        .iter()
        .any(|o| matches!(o, TxnOutput::Event(TxnEvent::Stored(r)) if r.state == TxnState::CompleteCommit)));
    let out = request(&mut c, 5, &mut ids, end(producer, true));
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(producer) }]);
    // Aborting a transaction that committed is an invalid transition.
    let out = request(&mut c, 5, &mut ids, end(producer, false));
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::InvalidTxnState, producer: None }]);
    // Without KIP-890's bump the next transaction runs with the same epoch.
    add_ok(&mut c, 6, &mut ids, producer, vec![tp(1, 1)]);
    assert_eq!(c.state(ID).map(|m| m.producer_epoch), Some(producer.1));
}

// EndTxn with no transaction open is INVALID_TXN_STATE (TransactionCoordinator: Empty
// cannot go to PrepareCommit).
#[test]
fn end_without_a_transaction_is_invalid() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    let out = request(&mut c, 1, &mut ids, end(producer, true));
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::InvalidTxnState, producer: None }]);
}

// KIP-890 part 2: EndTxn bumps the epoch and returns it, the markers carry the new epoch,
// and a retry of that EndTxn with the old epoch is answered NONE after Complete (and
// CONCURRENT_TRANSACTIONS while the markers are out), not PRODUCER_FENCED.
#[test]
fn kip890_end_txn_bumps_the_epoch_and_retries_succeed() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1, &mut ids, producer, vec![tp(1, 0)]);
    let out = request(&mut c, 2, &mut ids, end(producer, true));
    let out = commit_all(&mut c, 2, &out);
    let bumped = (producer.0, producer.1 + 1);
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(bumped) }]);
    assert_eq!(markers(&out), vec![(bumped.0, bumped.1, true, vec![tp(1, 0)])]);
    let retry = request(&mut c, 3, &mut ids, end(producer, true));
    assert_eq!(
        responses(&retry),
        vec![TxnResponse::EndTxn { error: ErrorCode::ConcurrentTransactions, producer: None }]
    );
    c.markers_written(Millis(3), ID, bumped.0, bumped.1);
    let out = drain(&mut c);
    commit_all(&mut c, 3, &out);
    let retry = request(&mut c, 4, &mut ids, end(producer, true));
    assert_eq!(responses(&retry), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(bumped) }]);
    // The old epoch is fenced for a new transaction.
    let out = request(&mut c, 5, &mut ids, add(producer, vec![tp(1, 0)]));
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::ProducerFenced }]);
    add_ok(&mut c, 5, &mut ids, bumped, vec![tp(1, 0)]);
}

// An epoch at Short.MAX_VALUE - 1 cannot be bumped: EndTxn rotates to a fresh producer id
// with epoch 0, and the retry with the old id and epoch is still recognised (KIP-890 part
// 2; TransactionMetadata.isEpochExhausted, prepareProducerIdRotation).
#[test]
fn kip890_exhausted_epoch_rotates_the_producer_id() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let first = init_ok(&mut c, 0, &mut ids, None);
    // Load a state whose epoch is exhausted, as a long-lived id would reach it.
    let partition = txn_partition_for(ID, c.config().partitions);
    let mut meta = c.state(ID).cloned().expect("state");
    meta.producer_epoch = EPOCH_EXHAUSTED;
    meta.state = TxnState::Ongoing;
    meta.partitions = vec![tp(1, 0)];
    c.load(Millis(1), partition, &[meta]);
    assert!(drain(&mut c).is_empty());
    let old = (first.0, EPOCH_EXHAUSTED);
    let out = request(&mut c, 2, &mut ids, end(old, true));
    let out = commit_all(&mut c, 2, &out);
    let fresh = (pid(1001), 0);
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(fresh) }]);
    assert_eq!(markers(&out), vec![(fresh.0, fresh.1, true, vec![tp(1, 0)])]);
    c.markers_written(Millis(3), ID, fresh.0, fresh.1);
    let out = drain(&mut c);
    commit_all(&mut c, 3, &out);
    let retry = request(&mut c, 4, &mut ids, end(old, true));
    assert_eq!(responses(&retry), vec![TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(fresh) }]);
}

// A transaction open longer than transaction.timeout.ms is aborted by the coordinator with
// a bumped epoch, which fences the producer that ran it (KIP-98;
// TransactionCoordinator.abortTimedOutTransactions, transaction.abort.timed.out.transaction.cleanup.interval.ms).
#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1_000, &mut ids, producer, vec![tp(1, 0)]);
    let scan = c.poll_timeout().expect("the abort scan is armed");
    assert_eq!(scan, Millis(c.config().abort_interval_ms));
    // Scans before the timeout leave the transaction alone.
    c.handle_timeout(scan);
    assert!(drain(&mut c).is_empty());
    let late = Millis(1_000 + TIMEOUT_MS + 1);
    let mut at = c.poll_timeout().expect("armed again");
    while at <= late {
        c.handle_timeout(at);
        assert!(drain(&mut c).is_empty(), "aborted before its timeout at {at:?}");
        at = c.poll_timeout().expect("armed again");
    }
    c.handle_timeout(at);
    let out = drain(&mut c);
    assert!(out
        .iter()
        .any(|o| matches!(o, TxnOutput::Event(TxnEvent::TimedOut { epoch, .. }) if *epoch == producer.1)));
    let (_, abort) = appends(&out).remove(0);
    assert_eq!((abort.state, abort.producer_epoch), (TxnState::PrepareAbort, producer.1 + 1));
    let out = commit_all(&mut c, at.0, &out);
    assert_eq!(markers(&out), vec![(producer.0, producer.1 + 1, false, vec![tp(1, 0)])]);
    let out = request(&mut c, at.0, &mut ids, end(producer, true));
    assert_eq!(responses(&out), vec![TxnResponse::EndTxn { error: ErrorCode::ProducerFenced, producer: None }]);
}

// A coordinator that takes over a __transaction_state partition rebuilds each id from the
// last record and sends the markers again for a transaction left prepared (KIP-98;
// TransactionStateManager.loadTransactionsForTxnTopicPartition and the
// TransactionMarkerChannelManager's resend on load).
#[test]
fn load_resends_markers_for_a_prepared_transaction() {
    let mut first = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut first, 0, &mut ids, None);
    let mut log: Vec<TxnRecord> = first.state(ID).cloned().into_iter().collect();
    add_ok(&mut first, 1, &mut ids, producer, vec![tp(1, 0), tp(1, 1)]);
    log.extend(first.state(ID).cloned());
    let out = request(&mut first, 2, &mut ids, end(producer, false));
    let out = commit_all(&mut first, 2, &out);
    log.extend(first.state(ID).cloned());
    let sent = markers(&out);
    assert_eq!(sent.len(), 1);
    // The first coordinator dies before the markers are written.
    let mut second = TxnCoordinator::new(TxnCoordinatorConfig::default());
    let partition = txn_partition_for(ID, second.config().partitions);
    second.load(Millis(10), partition, &log);
    assert_eq!(markers(&drain(&mut second)), sent);
    assert_eq!(second.state(ID).map(|m| m.state), Some(TxnState::PrepareAbort));
    let epoch = sent[0].1;
    second.markers_written(Millis(11), ID, producer.0, epoch);
    let out = drain(&mut second);
    commit_all(&mut second, 11, &out);
    assert_eq!(second.state(ID).map(|m| m.state), Some(TxnState::CompleteAbort));
}

// Losing the partition answers requests waiting for their records NOT_COORDINATOR, and a
// transactional id whose partition is not loaded is NOT_COORDINATOR too, so the client
// looks the coordinator up again (FindCoordinator with key type TRANSACTION, KIP-98).
#[test]
fn unload_and_unowned_ids_answer_not_coordinator() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    let out = request(&mut c, 1, &mut ids, add(producer, vec![tp(1, 0)]));
    let (token, _) = appends(&out).remove(0);
    c.unload(txn_partition_for(ID, c.config().partitions));
    assert_eq!(responses(&drain(&mut c)), vec![TxnResponse::AddPartitions { error: ErrorCode::NotCoordinator }]);
    assert_eq!(c.state(ID), None);
    // A late append result for the unloaded id is ignored.
    c.handle_append_result(Millis(2), token, ErrorCode::None);
    assert!(drain(&mut c).is_empty());
    let out = request(&mut c, 3, &mut ids, init(ID, None));
    assert_eq!(responses(&out), vec![TxnResponse::InitProducerId { error: ErrorCode::NotCoordinator, producer: None }]);
    assert_eq!(c.poll_timeout(), None, "no partition, no abort scan");
}

// KIP-890 part 1: a partition leader's verification (AddPartitionsToTxn with verifyOnly)
// is answered NONE only for a partition in the ongoing transaction of that producer and
// epoch, and INVALID_TXN_STATE otherwise, without writing a record.
#[test]
fn kip890_verify_only_checks_without_adding() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1, &mut ids, producer, vec![tp(1, 0)]);
    let verify = |partition: u32, epoch: u16| TxnRequest::AddPartitions {
        transactional_id: ID.into(),
        producer_id: producer.0,
        epoch,
        partitions: vec![tp(1, partition)],
        verify_only: true,
    };
    let out = request(&mut c, 2, &mut ids, verify(0, producer.1));
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::None }]);
    let out = request(&mut c, 2, &mut ids, verify(5, producer.1));
    assert!(appends(&out).is_empty());
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::InvalidTxnState }]);
    let out = request(&mut c, 2, &mut ids, verify(0, producer.1 + 1));
    assert_eq!(responses(&out), vec![TxnResponse::AddPartitions { error: ErrorCode::ProducerFenced }]);
}

// A transaction timeout above transaction.max.timeout.ms (or zero) is refused with
// INVALID_TRANSACTION_TIMEOUT before anything is allocated (KIP-98;
// TransactionCoordinator.validateTransactionTimeoutMs).
#[test]
fn an_invalid_transaction_timeout_is_refused() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    for timeout_ms in [0, c.config().max_timeout_ms + 1] {
        let request_ = TxnRequest::InitProducerId { transactional_id: ID.into(), timeout_ms, expected: None };
        let out = request(&mut c, 0, &mut ids, request_);
        assert_eq!(
            responses(&out),
            vec![TxnResponse::InitProducerId { error: ErrorCode::InvalidTransactionTimeout, producer: None }]
        );
    }
    assert_eq!(ids.calls, 0);
}

// KIP-360: a producer that retries InitProducerId with the epoch it had, after the answer
// bumping it was lost, gets that same bumped epoch again, not a second bump; an unknown
// expected epoch is fenced.
#[test]
fn kip360_retried_init_gets_the_same_epoch() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let first = init_ok(&mut c, 0, &mut ids, None);
    let bumped = init_ok(&mut c, 1, &mut ids, Some(first));
    assert_eq!(bumped, (first.0, first.1 + 1));
    // The answer was lost; the client still holds `first`.
    let again = init_ok(&mut c, 2, &mut ids, Some(first));
    assert_eq!(again, bumped);
    let out = request(&mut c, 3, &mut ids, init(ID, Some((first.0, first.1 + 7))));
    assert_eq!(responses(&out), vec![TxnResponse::InitProducerId { error: ErrorCode::ProducerFenced, producer: None }]);
    let out = request(&mut c, 3, &mut ids, init(ID, Some((pid(4242), 0))));
    assert_eq!(responses(&out), vec![TxnResponse::InitProducerId { error: ErrorCode::ProducerFenced, producer: None }]);
}

// AddOffsetsToTxn adds the group's __consumer_offsets partition, chosen as the group
// coordinator chooses it, so that the markers reach the offsets (KIP-98;
// TransactionCoordinator.handleAddPartitionsToTransaction via AddOffsetsToTxn).
#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let config = TxnCoordinatorConfig { offsets_topic: TopicId(99), ..TxnCoordinatorConfig::default() };
    let mut c = coordinator(config);
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    let request_ = TxnRequest::AddOffsets {
        transactional_id: ID.into(),
        producer_id: producer.0,
        epoch: producer.1,
        group: "billing".into(),
    };
    let out = request(&mut c, 1, &mut ids, request_);
    let out = commit_all(&mut c, 1, &out);
    assert_eq!(responses(&out), vec![TxnResponse::AddOffsets { error: ErrorCode::None }]);
    let expected = tp(99, offsets_partition_for("billing", c.config().offsets_partitions));
    assert_eq!(c.state(ID).map(|m| m.partitions.clone()), Some(vec![expected]));
}

// A Complete record whose append fails is written again after COMPLETE_RETRY_MS, so a
// transaction never stays prepared after its markers are written
// (TransactionCoordinator's retry of the complete-transition append).
#[test]
fn a_failed_complete_record_is_retried() {
    let mut c = coordinator(TxnCoordinatorConfig::default());
    let mut ids = Ids::new();
    let producer = init_ok(&mut c, 0, &mut ids, None);
    add_ok(&mut c, 1, &mut ids, producer, vec![tp(1, 0)]);
    let out = request(&mut c, 2, &mut ids, end(producer, false));
    let out = commit_all(&mut c, 2, &out);
    let (_, epoch, _, _) = markers(&out)[0].clone();
    c.markers_written(Millis(3), ID, producer.0, epoch);
    let (token, _) = appends(&drain(&mut c)).remove(0);
    c.handle_append_result(Millis(3), token, ErrorCode::RequestTimedOut);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(Millis(3 + COMPLETE_RETRY_MS)));
    c.handle_timeout(Millis(3 + COMPLETE_RETRY_MS));
    let out = drain(&mut c);
    assert_eq!(appends(&out).len(), 1);
    commit_all(&mut c, 200, &out);
    assert_eq!(c.state(ID).map(|m| m.state), Some(TxnState::CompleteAbort));
}
