//! Each checker fires on a history that has its anomaly and stays quiet on one that
//! does not. Histories are built by hand, so the checkers are tested apart from the model.

use trial_model::{
    ClusterEvent, LeaderEpoch, LogEntry, Millis, NodeId, Offset, ProducerId, Record, TopicId, TopicPartition, WriteId,
    WriteOutcome,
};
use trial_sim::checkers::{check, InvariantMonitor, Property};
use trial_sim::history::{Completion, Happening, History, Op, PartitionFinal, ReplicaFinal};

const TP: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };

fn entry(write: u64, sequence: u32, epoch: u32) -> LogEntry {
    let record = Record {
        write: WriteId(write),
        key: None,
        producer: ProducerId(7),
        sequence,
        timestamp: Millis(0),
        stamp: None,
    };
    LogEntry { leader_epoch: LeaderEpoch(epoch), record }
}

fn acked(write: u64, offset: u64) -> Op {
    let outcome = WriteOutcome::Ok { offset: Some(Offset(offset)) };
    Op {
        write: WriteId(write),
        producer: 0,
        topic: TopicId(0),
        key: None,
        invoked_at: Millis(0),
        completed: Some(Completion { at: Millis(1), tp: Some(TP), outcome }),
    }
}

fn replica(broker: u32, log: Vec<LogEntry>, hw: u64) -> ReplicaFinal {
    ReplicaFinal { broker: NodeId(broker), high_watermark: Offset(hw), log }
}

/// Three acked writes, both replicas hold all three, nothing else happened.
fn clean_history() -> History {
    let log = vec![entry(0, 0, 0), entry(1, 1, 0), entry(2, 2, 0)];
    History {
        ops: vec![acked(0, 0), acked(1, 1), acked(2, 2)],
        readable: [(TP, vec![WriteId(0), WriteId(1), WriteId(2)])].into_iter().collect(),
        partitions: vec![PartitionFinal {
            tp: TP,
            leader: Some(NodeId(0)),
            leader_epoch: 0,
            isr: vec![NodeId(0), NodeId(1)],
            elr: Vec::new(),
            replicas: vec![replica(0, log.clone(), 3), replica(1, log, 3)],
        }],
        converged: true,
        ..History::default()
    }
}

fn violations(history: &History, property: Property) -> u64 {
    check(history).result(property).violations
}

// Shows every checker stays quiet on a history without anomalies (the baseline for the
// firing tests below).
#[test]
fn quiet_on_a_clean_history() {
    let verdicts = check(&clean_history());
    for result in &verdicts.results {
        assert!(result.held(), "{} fired on a clean history: {:?}", result.property.name(), result.examples);
    }
    assert_eq!(verdicts.semantics.name(), "exactly-once");
}

// Shows the lost-acknowledged-write checker fires when an acked write is in no committed
// log (Jepsen's "lost" count; the acks=1 loss described in Kafka's producer docs).
#[test]
fn lost_acked_write_fires() {
    let mut history = clean_history();
    let partition = &mut history.partitions[0];
    partition.replicas[0].log.truncate(2);
    partition.replicas[0].high_watermark = Offset(2);
    assert_eq!(violations(&history, Property::NoLostAckedWrites), 1);
    assert_eq!(check(&history).semantics.name(), "at-most-once");
}

// Shows the duplicate checker fires when one write is committed twice (a retry after a
// lost produce response without idempotence, KIP-98 motivation).
#[test]
fn duplicate_fires() {
    let mut history = clean_history();
    for replica in &mut history.partitions[0].replicas {
        replica.log.push(entry(2, 2, 0));
        replica.high_watermark = Offset(4);
    }
    assert_eq!(violations(&history, Property::NoDuplicates), 1);
    assert_eq!(violations(&history, Property::NoLostAckedWrites), 0);
}

// Shows the reordering checker fires when a producer's later record precedes an earlier
// one in a partition (max.in.flight > 1 with retries, Kafka producer docs).
#[test]
fn reordering_fires() {
    let mut history = clean_history();
    let log = vec![entry(0, 0, 0), entry(2, 2, 0), entry(1, 1, 0)];
    for replica in &mut history.partitions[0].replicas {
        replica.log = log.clone();
    }
    history.readable.clear();
    assert_eq!(violations(&history, Property::NoReordering), 1);
}

// Shows a batch resent with one request in flight (Kafka producer docs: retries with
// max.in.flight=1 keep order but may duplicate) is a duplicate, not a reordering: the
// second copy of records 0 and 1 after them counts once, under no-duplicates.
#[test]
fn a_resent_batch_is_a_duplicate_not_a_reordering() {
    let mut history = clean_history();
    let log = vec![entry(0, 0, 0), entry(1, 1, 0), entry(0, 0, 0), entry(1, 1, 0), entry(2, 2, 0)];
    for replica in &mut history.partitions[0].replicas {
        replica.log = log.clone();
        replica.high_watermark = Offset(5);
    }
    history.readable.clear();
    assert_eq!(violations(&history, Property::NoReordering), 0);
    assert_eq!(violations(&history, Property::NoDuplicates), 2);
}

// Shows the divergence checker fires when two replicas hold different records below both
// their high watermarks (KIP-101 scenario 2).
#[test]
fn divergence_fires() {
    let mut history = clean_history();
    history.partitions[0].replicas[1].log[1] = entry(1, 1, 1);
    assert_eq!(violations(&history, Property::ReplicasAgreeBelowHw), 1);
    // Above one replica's HW a difference is allowed: it may still be truncated.
    history.partitions[0].replicas[1].high_watermark = Offset(1);
    assert_eq!(violations(&history, Property::ReplicasAgreeBelowHw), 0);
}

// Shows the vanished-read checker fires when a record once below the leader's HW is gone
// at the end (what a consumer read was later undone; KIP-101 motivation).
#[test]
fn vanished_readable_fires() {
    let mut history = clean_history();
    history.readable.insert(TP, vec![WriteId(0), WriteId(1), WriteId(2), WriteId(9)]);
    assert_eq!(violations(&history, Property::NoReadableRecordVanished), 1);
}

// Shows the liveness checkers fire: a write that never completed, an ISR member missing
// committed records after healing, a cluster that did not converge (TigerBeetle VOPR's
// liveness mode: a healed cluster must converge).
#[test]
fn liveness_checkers_fire() {
    let mut history = clean_history();
    history.ops[2].completed = None;
    assert_eq!(violations(&history, Property::AllWritesResolved), 1);
    let mut history = clean_history();
    history.partitions[0].replicas[1].log.truncate(1);
    history.partitions[0].replicas[1].high_watermark = Offset(1);
    assert_eq!(violations(&history, Property::AckedWritesFullyReplicated), 1);
    let mut history = clean_history();
    history.converged = false;
    assert_eq!(violations(&history, Property::ClusterConverged), 1);
}

// Shows the invariant monitor fires when a replica's HW moves back within one process life
// and when two brokers lead one partition in one leader epoch (Kafka's epoch fencing,
// KIP-101/KIP-320), and stays quiet when the HW only grows or a restart resets it.
#[test]
fn invariant_monitor_fires_and_stays_quiet() {
    let mut monitor = InvariantMonitor::default();
    let hw = |broker: u32, offset: u64| ClusterEvent::HighWatermark {
        broker: NodeId(broker),
        tp: TP,
        leader: false,
        high_watermark: Offset(offset),
    };
    assert!(monitor.observe(&hw(1, 5)).is_none());
    assert!(monitor.observe(&hw(1, 7)).is_none());
    let fired = monitor.observe(&hw(1, 6));
    assert!(
        matches!(fired, Some(Happening::Invariant { ref property, .. }) if property == Property::HwNeverMovesBack.name())
    );
    monitor.forget_node(NodeId(1));
    assert!(monitor.observe(&hw(1, 2)).is_none(), "a restart starts from the checkpoint");
    let lead = |broker: u32, epoch: u32| ClusterEvent::BecameLeader {
        broker: NodeId(broker),
        tp: TP,
        leader_epoch: LeaderEpoch(epoch),
    };
    assert!(monitor.observe(&lead(0, 3)).is_none());
    assert!(monitor.observe(&lead(0, 3)).is_none(), "the same broker again is fine");
    assert!(monitor.observe(&lead(1, 4)).is_none());
    let fired = monitor.observe(&lead(2, 3));
    assert!(
        matches!(fired, Some(Happening::Invariant { ref property, .. }) if property == Property::OneLeaderPerEpoch.name())
    );
    // And the checker counts what the monitor recorded.
    let mut history = clean_history();
    history.push(Millis(8), fired.expect("fired above"));
    assert_eq!(violations(&history, Property::OneLeaderPerEpoch), 1);
}
