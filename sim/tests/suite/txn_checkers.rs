//! Each transaction checker fires on a hand-built history that has its anomaly and stays
//! quiet on one that does not, apart from the model (Jepsen's Kafka checker taxonomy:
//! aborted reads, torn transactions; KIP-890's hanging transaction).

use std::num::NonZeroU32;
use trial_model::txn::TxnOutcome;
use trial_model::{
    BatchKind, ErrorCode, LeaderEpoch, LogEntry, Millis, NodeId, Offset, ProducerId, Record, Stamp, TopicId,
    TopicPartition, WriteId,
};
use trial_sim::history::{History, PartitionFinal, ReplicaFinal, Source, TxnEnd, TxnOp};
use trial_sim::txns::{check_txns, PipelineTopics, TxnProperty};

const TOPIC: TopicId = TopicId(0);
const TP: TopicPartition = TopicPartition { topic: TOPIC, partition: 0 };

fn pid() -> NonZeroU32 {
    NonZeroU32::new(9).expect("non-zero")
}

fn data(write: u64, epoch: u16, sequence: u32) -> LogEntry {
    let stamp = Stamp { pid: pid(), epoch, index: 0, sequence, kind: BatchKind::Transactional };
    let record = Record {
        write: WriteId(write),
        key: None,
        producer: ProducerId(5_000),
        sequence,
        timestamp: Millis(0),
        stamp: Some(stamp),
    };
    LogEntry { leader_epoch: LeaderEpoch(0), record }
}

fn marker(epoch: u16, commit: bool) -> LogEntry {
    let record = Record::marker(pid(), epoch, commit, WriteId(1 << 62), ProducerId(u32::MAX), Millis(0));
    LogEntry { leader_epoch: LeaderEpoch(0), record }
}

fn txn(writes: &[u64], outcome: TxnOutcome) -> TxnOp {
    TxnOp {
        client: "txn-0".into(),
        writes: writes.iter().map(|w| WriteId(*w)).collect(),
        commit: outcome == TxnOutcome::Committed,
        begun_at: Millis(0),
        ended: Some(TxnEnd { at: Millis(10), outcome, error: ErrorCode::None }),
        sources: Vec::new(),
    }
}

/// Partition `tp` whose only replica, the leader, holds `log`, all of it below the HW.
fn led(tp: TopicPartition, log: Vec<LogEntry>) -> PartitionFinal {
    let hw = Offset(log.len() as u64);
    PartitionFinal {
        tp,
        leader: Some(NodeId(0)),
        leader_epoch: 0,
        isr: vec![NodeId(0)],
        elr: Vec::new(),
        replicas: vec![ReplicaFinal { broker: NodeId(0), high_watermark: hw, log }],
    }
}

/// One partition whose leader holds `log`, all of it below the high watermark.
fn history(log: Vec<LogEntry>, txns: Vec<TxnOp>) -> History {
    History { txns, partitions: vec![led(TP, log)], converged: true, ..History::default() }
}

/// Consumer `consumer` of a group processed `write` from `TP` at `offset`.
fn processed(consumer: u32, write: u64, offset: u64) -> trial_sim::groups::GroupEvent {
    trial_sim::groups::GroupEvent::Processed {
        consumer,
        generation: 1,
        tp: TP,
        offset: Offset(offset),
        write: WriteId(write),
    }
}

fn violations(history: &History, property: TxnProperty) -> u64 {
    check_txns(history, &[TOPIC], &[], None).result(property).violations
}

/// A committed transaction (writes 0, 1) and an aborted one (write 2), as Kafka leaves them.
fn clean() -> History {
    let log = vec![data(0, 0, 0), data(1, 0, 1), marker(0, true), data(2, 0, 2), marker(0, false)];
    history(log, vec![txn(&[0, 1], TxnOutcome::Committed), txn(&[2], TxnOutcome::Aborted)])
}

// Shows every transaction checker stays quiet when commits are whole and aborts hidden
// (KIP-98 read_committed semantics).
#[test]
fn quiet_on_a_clean_history() {
    let verdicts = check_txns(&clean(), &[TOPIC], &[], None);
    for result in &verdicts.results {
        assert!(result.held(), "{} fired: {:?}", result.property.name(), result.examples);
    }
    assert_eq!((verdicts.counts.committed, verdicts.counts.aborted, verdicts.counts.visible_writes), (1, 1, 2));
}

// Shows no-aborted-reads (Jepsen's G1a) fires when an aborted transaction's write is
// visible: here the write the client saw aborted sits inside a later committed
// transaction, the pre-KIP-890 late-produce anomaly.
#[test]
fn aborted_read_fires() {
    let log = vec![data(2, 0, 0), marker(0, false), data(3, 0, 1), data(4, 0, 2), marker(0, true)];
    // Write 3 belonged to an aborted transaction but landed after its abort marker.
    let txns = vec![txn(&[2, 3], TxnOutcome::Aborted), txn(&[4], TxnOutcome::Committed)];
    let history = history(log, txns);
    assert_eq!(violations(&history, TxnProperty::NoAbortedReads), 1);
    assert_eq!(violations(&history, TxnProperty::NoTornTransactions), 0);
}

// Shows no-torn-transactions fires when only part of a committed transaction is visible
// (a write lost from the log, as an unclean election could lose it), and when none is.
#[test]
fn torn_transaction_fires() {
    let log = vec![data(0, 0, 0), marker(0, true)];
    let history = history(log, vec![txn(&[0, 1], TxnOutcome::Committed), txn(&[7], TxnOutcome::Committed)]);
    let verdicts = check_txns(&history, &[TOPIC], &[], None);
    let torn = verdicts.result(TxnProperty::NoTornTransactions);
    assert_eq!(torn.violations, 2, "{:?}", torn.examples);
    assert!(torn.examples[0].contains("1 of 2 writes"), "{:?}", torn.examples);
    assert!(torn.examples[1].contains("0 of 1 writes"), "{:?}", torn.examples);
}

// Shows no-hanging-transactions fires when a transaction is left open at the end: the
// last stable offset stays below the high watermark (KIP-890's hanging transaction), and
// the committed data after it is invisible too.
#[test]
fn hanging_transaction_fires() {
    let mut log = clean().partitions[0].replicas[0].log.clone();
    log.push(data(5, 0, 3));
    let other = LogEntry { record: Record { write: WriteId(6), stamp: None, ..log[0].record }, ..log[0] };
    log.push(other);
    let mut history = history(log, clean().txns);
    history.txns.push(txn(&[5], TxnOutcome::Aborted));
    let verdicts = check_txns(&history, &[TOPIC], &[], None);
    assert_eq!(verdicts.result(TxnProperty::NoHangingTransactions).violations, 1);
    assert_eq!(verdicts.result(TxnProperty::NoAbortedReads).violations, 0, "the open data stays unread");
    assert_eq!(verdicts.counts.visible_writes, 2, "the plain write behind it is held back too");
}

// Shows no-aborted-reads also fires when a consumer group processed a write of an
// aborted transaction (what a read_uncommitted consumer does, KIP-98's isolation.level),
// and stays quiet when it processed only committed ones.
#[test]
fn a_consumer_processing_aborted_data_fires() {
    use trial_sim::groups::{GroupHistory, GroupProtocol};
    let processed = |write: u64, offset: u64| processed(0, write, offset);
    let mut group = GroupHistory::new("audit", GroupProtocol::Eager, vec![TOPIC]);
    group.push(Millis(20), processed(0, 0));
    group.push(Millis(21), processed(1, 1));
    let quiet = check_txns(&clean(), &[TOPIC], std::slice::from_ref(&group), None);
    assert!(quiet.result(TxnProperty::NoAbortedReads).held());
    group.push(Millis(22), processed(2, 3));
    let verdicts = check_txns(&clean(), &[TOPIC], &[group], None);
    let result = verdicts.result(TxnProperty::NoAbortedReads);
    assert_eq!(result.violations, 1);
    assert!(result.examples[0].contains("group audit processed w2"), "{:?}", result.examples);
}

/// A pipeline run: input partition t0-0 holds plain writes 0 and 1; output partition
/// t1-0 holds `output` (transactional, epoch 0), and `txns` say which input each output
/// write copies.
fn pipeline_history(output: Vec<LogEntry>, txns: Vec<TxnOp>, converged: bool) -> History {
    pipeline_history_of(&[0, 1], output, txns, converged)
}

/// The same with input partition t0-0 holding plain writes `input`.
fn pipeline_history_of(input: &[u64], output: Vec<LogEntry>, txns: Vec<TxnOp>, converged: bool) -> History {
    let input_tp = TP;
    let output_tp = TopicPartition { topic: TopicId(1), partition: 0 };
    let plain = |write: u64| {
        let record = Record {
            write: WriteId(write),
            key: None,
            producer: ProducerId(2_000),
            sequence: write as u32,
            timestamp: Millis(0),
            stamp: None,
        };
        LogEntry { leader_epoch: LeaderEpoch(0), record }
    };
    History {
        txns,
        partitions: vec![led(input_tp, input.iter().map(|w| plain(*w)).collect()), led(output_tp, output)],
        converged,
        ..History::default()
    }
}

/// A pipeline transaction writing `writes`, copies of the input records at the offsets
/// `sources` of t0-0, each holding the write of the same number.
fn copy(writes: &[u64], sources: &[u64], outcome: TxnOutcome) -> TxnOp {
    let read: Vec<(u64, u64)> = sources.iter().map(|o| (*o, *o)).collect();
    copy_read(writes, &read, outcome)
}

/// The same with `sources` as (offset, write read there) pairs.
fn copy_read(writes: &[u64], sources: &[(u64, u64)], outcome: TxnOutcome) -> TxnOp {
    let sources = sources.iter().map(|(o, w)| Source { tp: TP, offset: Offset(*o), write: WriteId(*w) }).collect();
    TxnOp { sources, ..txn(writes, outcome) }
}

fn pipeline_violations(history: &History) -> (u64, Vec<String>) {
    let topics = PipelineTopics { input: TOPIC, output: TopicId(1) };
    let verdicts = check_txns(history, &[TopicId(1)], &[], Some(topics));
    let result = verdicts.result(TxnProperty::PipelineExactlyOnce);
    (result.violations, result.examples.clone())
}

// Shows pipeline-exactly-once stays quiet when each input record is copied once by a
// committed transaction, and an aborted attempt's copy is invisible (KIP-98's
// consume–transform–produce loop: the retry after an abort copies the record again).
#[test]
fn pipeline_quiet_when_each_input_is_copied_once() {
    let output = vec![data(10, 0, 0), marker(0, false), data(11, 0, 1), data(12, 0, 2), marker(0, true)];
    let txns = vec![copy(&[10], &[0], TxnOutcome::Aborted), copy(&[11, 12], &[0, 1], TxnOutcome::Committed)];
    assert_eq!(pipeline_violations(&pipeline_history(output, txns, true)).0, 0);
}

// Shows pipeline-exactly-once fires when an input record is in the output twice (a
// zombie's transaction committed after the new owner copied the same records, what
// KIP-447's generation fencing prevents) and when one is missing after the pipeline
// drained its input; a missing record does not count while the run did not converge.
#[test]
fn pipeline_fires_on_duplicates_and_on_missing_records() {
    let twice = vec![data(10, 0, 0), data(11, 0, 1), marker(0, true), data(12, 0, 2), marker(0, true)];
    let txns = vec![copy(&[10, 11], &[0, 1], TxnOutcome::Committed), copy(&[12], &[0], TxnOutcome::Committed)];
    let (violations, examples) = pipeline_violations(&pipeline_history(twice, txns, true));
    assert_eq!(violations, 1, "{examples:?}");
    assert!(examples[0].contains("w0 at t0-0 offset 0 is in the output topic 2 times"), "{examples:?}");
    let once = || vec![data(10, 0, 0), marker(0, true)];
    let txns = || vec![copy(&[10], &[0], TxnOutcome::Committed)];
    let (violations, examples) = pipeline_violations(&pipeline_history(once(), txns(), true));
    assert_eq!(violations, 1, "{examples:?}");
    assert!(examples[0].contains("w1 at t0-0 offset 1 is not in the output topic"), "{examples:?}");
    assert_eq!(pipeline_violations(&pipeline_history(once(), txns(), false)).0, 0);
}

// Shows pipeline-exactly-once judges each input record by its place: an input producer's
// duplicate (one write at offsets 0 and 2, what an idempotent producer can leave after a
// KIP-360 epoch bump rewrote the sequences of batches already in the log) copied once per
// place is exactly-once processing, and a copy of a record read at a place the final log
// holds another write at fires (read, then truncated away: KIP-101's divergence).
#[test]
fn pipeline_judges_input_records_by_place() {
    let output = vec![data(10, 0, 0), data(11, 0, 1), data(12, 0, 2), marker(0, true)];
    let txns = vec![copy_read(&[10, 11, 12], &[(0, 0), (1, 1), (2, 0)], TxnOutcome::Committed)];
    let (violations, examples) = pipeline_violations(&pipeline_history_of(&[0, 1, 0], output, txns, true));
    assert_eq!(violations, 0, "{examples:?}");
    let output = vec![data(10, 0, 0), data(11, 0, 1), marker(0, true)];
    let txns = vec![copy_read(&[10, 11], &[(0, 0), (1, 7)], TxnOutcome::Committed)];
    let (violations, examples) = pipeline_violations(&pipeline_history(output, txns, false));
    assert_eq!(violations, 1, "{examples:?}");
    assert!(
        examples[0]
            .contains("w11 at t1-0 offset 1 copies w7 read at t0-0 offset 1, where the final input log holds w1"),
        "{examples:?}"
    );
}

// Shows no-zombie-writes fires when a partition holds a batch of an older producer epoch
// after a newer one (a fenced instance's write taken, what KIP-98's epoch fencing and
// Jepsen's "zombie writes" name), and stays quiet when epochs only grow.
#[test]
fn zombie_write_fires() {
    let fenced = vec![data(0, 1, 0), marker(1, true), data(1, 2, 0), marker(2, true), data(2, 1, 1), marker(1, true)];
    let txns =
        vec![txn(&[0], TxnOutcome::Committed), txn(&[1], TxnOutcome::Committed), txn(&[2], TxnOutcome::Committed)];
    let verdicts = check_txns(&history(fenced, txns.clone()), &[TOPIC], &[], None);
    let result = verdicts.result(TxnProperty::NoZombieWrites);
    assert_eq!(result.violations, 2, "the zombie's write and its marker: {:?}", result.examples);
    assert!(result.examples[0].contains("w2 of producer id 9 epoch 1"), "{:?}", result.examples);
    let growing = vec![data(0, 1, 0), marker(1, true), data(1, 2, 0), marker(2, true), data(2, 3, 0), marker(3, true)];
    assert_eq!(violations(&history(growing, txns), TxnProperty::NoZombieWrites), 0);
}

// Shows no-uncommitted-reads fires when a group processed a record the final logs do not
// show (data read, then lost: never committed, Jepsen's reads of records never
// written), and does not count an aborted transaction's record twice (no-aborted-reads
// has it) nor a committed one.
#[test]
fn uncommitted_read_fires() {
    use trial_sim::groups::{GroupHistory, GroupProtocol};
    let processed = |write: u64, offset: u64| processed(1, write, offset);
    let mut group = GroupHistory::new("audit", GroupProtocol::Eager, vec![TOPIC]);
    group.push(Millis(20), processed(0, 0));
    group.push(Millis(21), processed(2, 3));
    let quiet = check_txns(&clean(), &[TOPIC], std::slice::from_ref(&group), None);
    assert!(
        quiet.result(TxnProperty::NoUncommittedReads).held(),
        "{:?}",
        quiet.result(TxnProperty::NoUncommittedReads)
    );
    assert_eq!(quiet.result(TxnProperty::NoAbortedReads).violations, 1);
    group.push(Millis(22), processed(9, 5));
    let verdicts = check_txns(&clean(), &[TOPIC], &[group], None);
    let result = verdicts.result(TxnProperty::NoUncommittedReads);
    assert_eq!(result.violations, 1, "{:?}", result.examples);
    assert!(result.examples[0].contains("processed w9 from t0-0 offset 5"), "{:?}", result.examples);
}
