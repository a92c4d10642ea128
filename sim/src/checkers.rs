//! Checkers: pure functions over a [`History`], and the invariant monitor that watches
//! cluster events as they happen. Each names a property and counts its violations.

use crate::history::{Happening, History, OpKind};
use serde::Serialize;
use std::collections::BTreeMap;
use trial_model::{ClusterEvent, LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition, TpMap};

/// Examples kept per property, so a report stays readable on a bad run.
pub const EXAMPLES_MAX: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Property {
    NoLostAckedWrites,
    NoDuplicates,
    NoReordering,
    ReplicasAgreeBelowHw,
    HwNeverMovesBack,
    OneLeaderPerEpoch,
    NoReadableRecordVanished,
    AllWritesResolved,
    AckedWritesFullyReplicated,
    ClusterConverged,
}

impl Property {
    pub const ALL: [Property; 10] = [
        Property::NoLostAckedWrites,
        Property::NoDuplicates,
        Property::NoReordering,
        Property::ReplicasAgreeBelowHw,
        Property::HwNeverMovesBack,
        Property::OneLeaderPerEpoch,
        Property::NoReadableRecordVanished,
        Property::AllWritesResolved,
        Property::AckedWritesFullyReplicated,
        Property::ClusterConverged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Property::NoLostAckedWrites => "no-lost-acked-writes",
            Property::NoDuplicates => "no-duplicates",
            Property::NoReordering => "no-reordering",
            Property::ReplicasAgreeBelowHw => "replicas-agree-below-hw",
            Property::HwNeverMovesBack => "hw-never-moves-back",
            Property::OneLeaderPerEpoch => "one-leader-per-epoch",
            Property::NoReadableRecordVanished => "no-readable-record-vanished",
            Property::AllWritesResolved => "all-writes-resolved",
            Property::AckedWritesFullyReplicated => "acked-writes-fully-replicated",
            Property::ClusterConverged => "cluster-converged",
        }
    }

    pub fn parse(name: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Liveness properties are judged after the healed phase; the rest are safety.
    pub fn is_liveness(self) -> bool {
        matches!(self, Property::AllWritesResolved | Property::AckedWritesFullyReplicated | Property::ClusterConverged)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PropertyResult {
    pub property: Property,
    pub violations: u64,
    pub examples: Vec<String>,
}

impl PropertyResult {
    fn new(property: Property) -> Self {
        PropertyResult { property, violations: 0, examples: Vec::new() }
    }

    fn violation(&mut self, example: impl FnOnce() -> String) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }

    pub fn held(&self) -> bool {
        self.violations == 0
    }
}

/// Counts of what the history shows, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub produced: u64,
    pub acked: u64,
    pub failed: u64,
    pub indefinite: u64,
    pub pending: u64,
    pub lost_acked: u64,
    pub duplicates: u64,
}

/// The delivery semantics the producers observed, named as Kafka's documentation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Semantics {
    ExactlyOnce,
    AtLeastOnce,
    AtMostOnce,
    None,
}

impl Semantics {
    pub fn name(self) -> &'static str {
        match self {
            Semantics::ExactlyOnce => "exactly-once",
            Semantics::AtLeastOnce => "at-least-once",
            Semantics::AtMostOnce => "at-most-once",
            Semantics::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdicts {
    pub results: Vec<PropertyResult>,
    pub counts: Counts,
    pub semantics: Semantics,
}

impl Verdicts {
    pub fn result(&self, property: Property) -> &PropertyResult {
        // Every property gets a result in `check`; the index is the enum order.
        &self.results[Property::ALL.iter().position(|p| *p == property).unwrap_or(0)]
    }
}

/// Runs every checker over a finished history.
pub fn check(history: &History) -> Verdicts {
    let mut results: Vec<PropertyResult> = Property::ALL.iter().map(|p| PropertyResult::new(*p)).collect();
    let appearances = appearances(history);
    let mut counts = Counts { produced: history.ops.len() as u64, ..Counts::default() };
    for op in &history.ops {
        match op.kind() {
            OpKind::Ok => counts.acked += 1,
            OpKind::Fail => counts.failed += 1,
            OpKind::Info => counts.indefinite += 1,
            OpKind::Pending => counts.pending += 1,
        }
    }
    lost_acked_writes(history, &appearances, &mut results[0]);
    duplicates(history, &appearances, &mut results[1]);
    reordering(history, &mut results[2]);
    let agreement = agreement(history);
    divergence(history, &agreement, &mut results[3]);
    for (at, property, detail) in history.invariant_violations() {
        if let Some(index) = Property::ALL.iter().position(|p| p.name() == property) {
            results[index].violation(|| format!("t={}ms {detail}", at.0));
        }
    }
    vanished_readable(history, &mut results[6]);
    writes_resolved(history, &mut results[7]);
    acked_replicated(history, &agreement, &mut results[8]);
    if !history.converged {
        not_converged(history, &mut results[9]);
    }
    counts.lost_acked = results[0].violations;
    counts.duplicates = results[1].violations;
    let semantics = match (results[0].held(), results[1].held()) {
        (true, true) => Semantics::ExactlyOnce,
        (true, false) => Semantics::AtLeastOnce,
        (false, true) => Semantics::AtMostOnce,
        (false, false) => Semantics::None,
    };
    Verdicts { results, counts, semantics }
}

/// How many times each write appears in the committed logs (indexed by write id).
fn appearances(history: &History) -> Vec<u32> {
    let mut counts = vec![0u32; history.ops.len()];
    for partition in &history.partitions {
        for entry in partition.committed() {
            if let Some(count) = counts.get_mut(entry.record.write.0 as usize) {
                *count += 1;
            }
        }
    }
    counts
}

/// An acknowledged write that no committed log holds.
fn lost_acked_writes(history: &History, appearances: &[u32], result: &mut PropertyResult) {
    for op in &history.ops {
        if !op.acked() || appearances.get(op.write.0 as usize).copied().unwrap_or(0) > 0 {
            continue;
        }
        let (tp, offset) = op.acked_offset().unwrap_or((Default::default(), None));
        let at = op.completed.map_or(0, |c| c.at.0);
        result.violation(|| match offset {
            Some(offset) => format!("{} acked at t={at}ms at {tp} offset {offset} is in no committed log", op.write),
            None => format!("{} acked at t={at}ms (acks=0) on {tp} is in no committed log", op.write),
        });
    }
}

/// A write that a committed log holds more than once (a retry that landed twice).
fn duplicates(history: &History, appearances: &[u32], result: &mut PropertyResult) {
    for (write, count) in appearances.iter().enumerate() {
        for _ in 1..*count {
            let producer = history.ops.get(write).map_or(0, |op| op.producer);
            result.violation(|| format!("w{write} (producer {producer}) appears {count} times"));
        }
    }
}

/// Within one partition, a producer's records must appear in the order it sent them.
/// A record already in the partition once is a duplicate (no-duplicates counts it), not
/// a reordering: a batch resent with one request in flight lands right behind its first
/// copy, in order with everything else.
fn reordering(history: &History, result: &mut PropertyResult) {
    let mut written = vec![false; history.ops.len()];
    for partition in &history.partitions {
        let mut highest: BTreeMap<ProducerId, u32> = BTreeMap::new();
        for (offset, entry) in partition.committed().iter().enumerate() {
            let record = entry.record;
            // The coordinators' own records and markers are no client's sends.
            if record.producer == trial_model::broker::groups::COORDINATOR_PRODUCER {
                continue;
            }
            if let Some(seen) = written.get_mut(record.write.0 as usize) {
                if std::mem::replace(seen, true) {
                    continue;
                }
            }
            let seen = highest.entry(record.producer).or_insert(record.sequence);
            if record.sequence < *seen {
                let before = *seen;
                result.violation(|| {
                    format!(
                        "{} offset {offset}: producer {} sequence {} after sequence {before}",
                        partition.tp, record.producer.0, record.sequence
                    )
                });
            }
            *seen = (*seen).max(record.sequence);
        }
    }
}

/// Per partition and replica (in `history.partitions` order), how many of the committed
/// log's first entries the replica's log holds unchanged. The logs are the largest data
/// of a run, so the replica checkers read each once here and compare lengths after.
fn agreement(history: &History) -> Vec<Vec<usize>> {
    history
        .partitions
        .iter()
        .map(|partition| {
            let committed = partition.committed();
            partition
                .replicas
                .iter()
                .map(|replica| {
                    if replica.log.as_ptr() == committed.as_ptr() {
                        // The committed log is this replica's own (its prefix).
                        return committed.len().min(replica.log.len());
                    }
                    replica.log.iter().zip(committed).take_while(|(a, b)| a == b).count()
                })
                .collect()
        })
        .collect()
}

/// Below both high watermarks, two replicas of a partition hold the same records.
fn divergence(history: &History, agreement: &[Vec<usize>], result: &mut PropertyResult) {
    for (partition, agree) in history.partitions.iter().zip(agreement) {
        let replicas = &partition.replicas;
        for (i, a) in replicas.iter().enumerate() {
            for (j, b) in replicas.iter().enumerate().skip(i + 1) {
                let below = (a.high_watermark.min(b.high_watermark).0 as usize).min(a.log.len()).min(b.log.len());
                // Both equal to the committed log below `below`: equal to each other.
                if agree[i] >= below && agree[j] >= below {
                    continue;
                }
                if let Some(offset) = (0..below).find(|o| a.log[*o] != b.log[*o]) {
                    result.violation(|| {
                        format!(
                            "{} offset {offset}: broker {} has {} (epoch {}), broker {} has {} (epoch {}), both below their HW",
                            partition.tp,
                            a.broker,
                            a.log[offset].record.write,
                            a.log[offset].leader_epoch.0,
                            b.broker,
                            b.log[offset].record.write,
                            b.log[offset].leader_epoch.0
                        )
                    });
                }
            }
        }
    }
}

/// A record that was once below a leader's HW (readable) is still there at the end.
fn vanished_readable(history: &History, result: &mut PropertyResult) {
    for partition in &history.partitions {
        let Some(readable) = history.readable.get(&partition.tp) else {
            continue;
        };
        let committed = partition.committed();
        for (offset, write) in readable.iter().enumerate() {
            let now = committed.get(offset).map(|e| e.record.write);
            if now != Some(*write) {
                result.violation(|| match now {
                    Some(other) => format!("{} offset {offset}: {write} was readable, now {other}", partition.tp),
                    None => format!(
                        "{} offset {offset}: {write} was readable, the log now ends at {}",
                        partition.tp,
                        committed.len()
                    ),
                });
            }
        }
    }
}

/// Says why the healed cluster did not converge, partition by partition.
fn not_converged(history: &History, result: &mut PropertyResult) {
    let mut named = false;
    for partition in &history.partitions {
        let ends: Vec<usize> = partition.replicas.iter().map(|r| r.log.len()).collect();
        let level = ends.windows(2).all(|w| w[0] == w[1]);
        let why = match partition.leader {
            None if partition.isr.is_empty() && partition.elr.is_empty() => {
                "offline: ISR and ELR are empty (every eligible replica had an unclean shutdown) and the last known leader is not back to be elected (KIP-966)".to_string()
            }
            None => format!("offline: no eligible replica of ISR {:?} / ELR {:?} is alive", partition.isr, partition.elr),
            Some(_) if partition.isr.len() < partition.replicas.len() => format!("ISR {:?} is not every replica", partition.isr),
            Some(_) if !level => format!("replica log ends differ: {ends:?}"),
            Some(_) => continue,
        };
        named = true;
        result.violation(|| format!("{}: {why}", partition.tp));
    }
    if !named {
        result.violation(|| {
            "the healed cluster did not converge within liveness_ms (writes still outstanding)".to_string()
        });
    }
}

fn writes_resolved(history: &History, result: &mut PropertyResult) {
    for op in history.ops.iter().filter(|op| op.kind() == OpKind::Pending) {
        result.violation(|| format!("{} sent at t={}ms never completed", op.write, op.invoked_at.0));
    }
}

/// After healing, every committed record is on every ISR member.
fn acked_replicated(history: &History, agreement: &[Vec<usize>], result: &mut PropertyResult) {
    for (partition, agree) in history.partitions.iter().zip(agreement) {
        let committed = partition.committed();
        for (index, replica) in partition.replicas.iter().enumerate() {
            if !partition.isr.contains(&replica.broker) || agree[index] == committed.len() {
                continue;
            }
            let missing = committed.iter().enumerate().filter(|(o, e)| replica.log.get(*o) != Some(*e)).count();
            if missing > 0 {
                result.violation(|| {
                    format!("{}: ISR member {} lacks {missing} committed record(s)", partition.tp, replica.broker)
                });
            }
        }
    }
}

/// Watches cluster events as they happen: a replica's high watermark never moves back
/// within one process life, and each (partition, leader epoch) has one leader.
#[derive(Default)]
pub struct InvariantMonitor {
    /// Last HW seen per broker (indexed by broker id) and partition.
    high_watermarks: Vec<TpMap<Offset>>,
    leaders: BTreeMap<(TopicPartition, LeaderEpoch), NodeId>,
}

impl InvariantMonitor {
    /// A process restarted: its in-memory HW starts again from its checkpoint.
    pub fn forget_node(&mut self, node: NodeId) {
        if let Some(seen) = self.high_watermarks.get_mut(node.0 as usize) {
            *seen = TpMap::new();
        }
    }

    pub fn observe(&mut self, event: &ClusterEvent) -> Option<Happening> {
        match event {
            ClusterEvent::HighWatermark { broker, tp, high_watermark, .. } => {
                // The hottest event of a run: update in place, insert only the first time.
                let index = broker.0 as usize;
                if self.high_watermarks.len() <= index {
                    // Broker ids are 0..brokers (the engine's numbering), so this stays small.
                    self.high_watermarks.resize_with(index + 1, TpMap::new);
                }
                let seen = &mut self.high_watermarks[index];
                let previous = match seen.get_mut(tp) {
                    Some(slot) => std::mem::replace(slot, *high_watermark),
                    None => {
                        seen.insert(*tp, *high_watermark);
                        return None;
                    }
                };
                (*high_watermark < previous).then(|| Happening::Invariant {
                    property: Property::HwNeverMovesBack.name().into(),
                    detail: format!("broker {broker} {tp}: high watermark {previous} -> {high_watermark}"),
                })
            }
            ClusterEvent::BecameLeader { broker, tp, leader_epoch } => {
                let first = *self.leaders.entry((*tp, *leader_epoch)).or_insert(*broker);
                (first != *broker).then(|| Happening::Invariant {
                    property: Property::OneLeaderPerEpoch.name().into(),
                    detail: format!(
                        "{tp} epoch {}: broker {broker} leads, but broker {first} led it first",
                        leader_epoch.0
                    ),
                })
            }
            _ => None,
        }
    }
}
