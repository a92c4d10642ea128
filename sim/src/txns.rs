//! Transactions in the history, and the checkers that judge them, after the Jepsen
//! Kafka checker's taxonomy (its Redpanda 2022 and Bufstream 2024 analyses): what a
//! read_committed reader of the final logs sees, against how each transaction ended for
//! the application that ran it.
//!
//! The reader's view of a partition is the leader's log below its high watermark, cut at
//! the last stable offset, without markers and without the records of aborted
//! transactions (`trial_model::log::committed_records`, as Kafka's consumer filters
//! them). What is judged (names as [`TxnProperty::name`]):
//! - no aborted reads (G1a): no write of an aborted transaction is visible, and no
//!   consumer group processed one (a read_uncommitted group does: that is its setting);
//! - no torn transactions: every committed transaction is visible whole (a committed
//!   transaction of which none is visible counts too, as lost);
//! - no hanging transactions: at the end, no partition's last stable offset is below its
//!   high watermark (an open transaction nobody will end holds every read_committed
//!   reader back, the KIP-890 "hanging transaction");
//! - no uncommitted reads: no consumer group processed a record that a read_committed
//!   reader of the final logs does not see, other than an aborted transaction's (which
//!   no-aborted-reads counts): a read of data that was never committed;
//! - no zombie writes: in every partition, a producer id's batches and markers never go
//!   back to an older epoch — a write of a fenced instance (an epoch older than one the
//!   partition already holds) was accepted (what the brokers' epoch check prevents);
//! - pipeline exactly-once (with a `[pipeline]`): every record a reader of the final
//!   input topic sees is copied into the final output topic, as a read_committed reader
//!   of it sees it, exactly once — never twice (a transaction's output committed while
//!   its input offsets were not, or read again from an offset that moved), never zero
//!   times once the healed cluster converged (the pipeline drained its input) — and the
//!   output copies no record the input does not hold.

use crate::checkers::EXAMPLES_MAX;
use crate::groups::{GroupEvent, GroupHistory};
use crate::history::{History, PartitionFinal, Source};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use trial_model::log::{committed_records, PartitionLog};
use trial_model::txn::TxnOutcome;
use trial_model::{Offset, TopicId, TopicPartition, WriteId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnProperty {
    NoAbortedReads,
    NoTornTransactions,
    NoHangingTransactions,
    NoUncommittedReads,
    NoZombieWrites,
    PipelineExactlyOnce,
}

impl TxnProperty {
    pub const ALL: [TxnProperty; 6] = [
        TxnProperty::NoAbortedReads,
        TxnProperty::NoTornTransactions,
        TxnProperty::NoHangingTransactions,
        TxnProperty::NoUncommittedReads,
        TxnProperty::NoZombieWrites,
        TxnProperty::PipelineExactlyOnce,
    ];

    fn index(self) -> usize {
        TxnProperty::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnProperty::NoAbortedReads => "no-aborted-reads",
            TxnProperty::NoTornTransactions => "no-torn-transactions",
            TxnProperty::NoHangingTransactions => "no-hanging-transactions",
            TxnProperty::NoUncommittedReads => "no-uncommitted-reads",
            TxnProperty::NoZombieWrites => "no-zombie-writes",
            TxnProperty::PipelineExactlyOnce => "pipeline-exactly-once",
        }
    }

    pub fn parse(name: &str) -> Option<TxnProperty> {
        TxnProperty::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TxnPropertyResult {
    pub property: TxnProperty,
    pub violations: u64,
    pub examples: Vec<String>,
}

impl TxnPropertyResult {
    pub fn held(&self) -> bool {
        self.violations == 0
    }

    fn violation(&mut self, example: impl FnOnce() -> String) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnCounts {
    pub begun: u64,
    pub committed: u64,
    pub aborted: u64,
    pub unknown: u64,
    /// Still running when the run ended.
    pub pending: u64,
    /// Writes a read_committed reader of the final logs sees.
    pub visible_writes: u64,
    /// With a `[pipeline]`: input records, and those copied to the output once, more
    /// than once, and not at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineCounts>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipelineCounts {
    pub input: u64,
    pub once: u64,
    pub duplicated: u64,
    pub missing: u64,
    /// The pipeline group's rebalances (set by the report from the run's group history).
    pub rebalances: Option<crate::groups::RebalanceFigures>,
}

/// What the end-to-end checker needs of a `[pipeline]`: its input and output topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineTopics {
    pub input: TopicId,
    pub output: TopicId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TxnVerdicts {
    pub results: Vec<TxnPropertyResult>,
    pub counts: TxnCounts,
}

impl TxnVerdicts {
    pub fn result(&self, property: TxnProperty) -> &TxnPropertyResult {
        // Every property gets a result in `check_txns`, in `ALL` order.
        &self.results[property.index()]
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.counts;
        let _ = writeln!(
            out,
            "transactions: begun {} · committed {} · aborted {} · unknown {} · pending {} · writes visible to read_committed {}",
            c.begun, c.committed, c.aborted, c.unknown, c.pending, c.visible_writes
        );
        if let Some(p) = &c.pipeline {
            let _ = writeln!(
                out,
                "pipeline: input records {} · in the output once {} · more than once {} · missing {}",
                p.input, p.once, p.duplicated, p.missing
            );
            if let Some(r) = &p.rebalances {
                let _ = writeln!(out, "pipeline group: {}", r.text());
            }
        }
        for result in &self.results {
            let status = if result.held() { "held    " } else { "VIOLATED" };
            let _ = writeln!(out, "  {status} {:<32} {:>8} violation(s)", result.property.name(), result.violations);
            for example in &result.examples {
                let _ = writeln!(out, "             {example}");
            }
        }
        out
    }
}

/// What a read_committed reader of `partition`'s final log sees, and the partition's
/// last stable offset and high watermark.
pub fn read_committed_view(partition: &PartitionFinal) -> (Vec<(Offset, WriteId)>, Offset, Offset) {
    let entries = partition.committed();
    let mut log = PartitionLog::default();
    log.append_as_follower(entries, &[]);
    let hw = log.log_end_offset();
    let lso = log.last_stable_offset(hw);
    let aborted = log.aborted_between(Offset(0), lso);
    let visible = &entries[..(lso.0 as usize).min(entries.len())];
    let seen = committed_records(visible, Offset(0), &aborted).map(|(offset, r)| (offset, r.write)).collect();
    (seen, lso, hw)
}

/// Judges the transactions of `history` on the partitions of `topics`, what the
/// consumer groups in `groups` processed of them, and the `pipeline` end to end.
pub fn check_txns(
    history: &History,
    topics: &[TopicId],
    groups: &[GroupHistory],
    pipeline: Option<PipelineTopics>,
) -> TxnVerdicts {
    let mut results: Vec<TxnPropertyResult> = TxnProperty::ALL
        .iter()
        .map(|p| TxnPropertyResult { property: *p, violations: 0, examples: Vec::new() })
        .collect();
    let mut counts = TxnCounts { begun: history.txns.len() as u64, ..TxnCounts::default() };
    for txn in &history.txns {
        match txn.ended.map(|e| e.outcome) {
            Some(TxnOutcome::Committed) => counts.committed += 1,
            Some(TxnOutcome::Aborted) => counts.aborted += 1,
            Some(TxnOutcome::Unknown) => counts.unknown += 1,
            None => counts.pending += 1,
        }
    }
    // Which transaction each write belongs to.
    let mut txn_of: BTreeMap<WriteId, usize> = BTreeMap::new();
    for (index, txn) in history.txns.iter().enumerate() {
        for write in &txn.writes {
            txn_of.insert(*write, index);
        }
    }
    let mut visible: BTreeMap<WriteId, (TopicPartition, Offset)> = BTreeMap::new();
    for partition in history.partitions.iter().filter(|p| topics.contains(&p.tp.topic)) {
        let (seen, lso, hw) = read_committed_view(partition);
        for (offset, write) in seen {
            visible.entry(write).or_insert((partition.tp, offset));
        }
        if lso < hw {
            results[TxnProperty::NoHangingTransactions.index()].violation(|| {
                format!(
                    "{}: last stable offset {} below the high watermark {} at the end: an open transaction holds read_committed readers back",
                    partition.tp, lso.0, hw.0
                )
            });
        }
    }
    counts.visible_writes = visible.len() as u64;
    for (write, (tp, offset)) in &visible {
        let Some(index) = txn_of.get(write) else { continue };
        let txn = &history.txns[*index];
        if let Some(end) = txn.ended.filter(|e| e.outcome == TxnOutcome::Aborted) {
            results[TxnProperty::NoAbortedReads.index()].violation(|| {
                format!(
                    "{write} of transaction {index} ({}, aborted at t={}ms, {}) is visible at {tp} offset {}",
                    txn.client,
                    end.at.0,
                    end.error.name(),
                    offset.0
                )
            });
        }
    }
    // A consumer that processed a write of an aborted transaction read it too; one that
    // processed a write the final logs do not show read uncommitted data.
    for group in groups {
        for (at, event) in &group.events {
            let GroupEvent::Processed { consumer, tp, offset, write, .. } = event else { continue };
            let aborted = txn_of.get(write).map(|i| (*i, &history.txns[*i]));
            let aborted = aborted.filter(|(_, t)| t.ended.is_some_and(|e| e.outcome == TxnOutcome::Aborted));
            let Some((index, txn)) = aborted else {
                if topics.contains(&tp.topic) && !visible.contains_key(write) {
                    results[TxnProperty::NoUncommittedReads.index()].violation(|| {
                        format!(
                            "consumer c{consumer} of group {} processed {write} from {tp} offset {} at t={}ms, which no read_committed reader of the final log sees",
                            group.group, offset.0, at.0
                        )
                    });
                }
                continue;
            };
            results[TxnProperty::NoAbortedReads.index()].violation(|| {
                format!(
                    "consumer c{consumer} of group {} processed {write} of aborted transaction {index} ({}) from {tp} offset {} at t={}ms",
                    group.group, txn.client, offset.0, at.0
                )
            });
        }
    }
    for (index, txn) in history.txns.iter().enumerate() {
        let Some(end) = txn.ended.filter(|e| e.outcome == TxnOutcome::Committed) else { continue };
        let seen = txn.writes.iter().filter(|w| visible.contains_key(w)).count();
        if seen < txn.writes.len() {
            results[TxnProperty::NoTornTransactions.index()].violation(|| {
                let missing: Vec<String> =
                    txn.writes.iter().filter(|w| !visible.contains_key(w)).map(|w| w.to_string()).collect();
                format!(
                    "transaction {index} ({}) committed at t={}ms: {seen} of {} writes visible to read_committed (missing {})",
                    txn.client,
                    end.at.0,
                    txn.writes.len(),
                    missing.join(", ")
                )
            });
        }
    }
    if let Some(topics) = pipeline {
        let result = &mut results[TxnProperty::PipelineExactlyOnce.index()];
        counts.pipeline = Some(check_pipeline(history, topics, &visible, result));
    }
    for partition in history.partitions.iter().filter(|p| topics.contains(&p.tp.topic)) {
        zombie_writes(partition, &mut results[TxnProperty::NoZombieWrites.index()]);
    }
    TxnVerdicts { results, counts }
}

/// A producer id's epochs in `partition`'s log, in log order, must never go back: a batch
/// of an older epoch after a newer one is a fenced instance's write the leader took.
fn zombie_writes(partition: &PartitionFinal, result: &mut TxnPropertyResult) {
    let mut newest: BTreeMap<std::num::NonZeroU32, u16> = BTreeMap::new();
    for (offset, entry) in partition.committed().iter().enumerate() {
        let Some(stamp) = entry.record.stamp else { continue };
        let seen = newest.entry(stamp.pid).or_insert(stamp.epoch);
        if stamp.epoch < *seen {
            let (newer, write) = (*seen, entry.record.write);
            result.violation(|| {
                format!(
                    "{write} of producer id {} epoch {} at {} offset {offset}, after epoch {newer} was in the partition: a fenced producer's write was accepted",
                    stamp.pid, stamp.epoch, partition.tp
                )
            });
        }
        *seen = (*seen).max(stamp.epoch);
    }
}

/// Where a reader finds a record.
type Place = (TopicPartition, Offset);

/// End-to-end exactly-once of the pipeline: each record of the final input topic (each
/// place: two copies of one write, an input producer's duplicate, are two records) against
/// the copies of it a read_committed reader of the final output topic sees.
fn check_pipeline(
    history: &History,
    topics: PipelineTopics,
    visible: &BTreeMap<WriteId, (TopicPartition, Offset)>,
    result: &mut TxnPropertyResult,
) -> PipelineCounts {
    let mut source_of: BTreeMap<WriteId, Source> = BTreeMap::new();
    for txn in &history.txns {
        for (write, source) in txn.writes.iter().zip(&txn.sources) {
            source_of.insert(*write, *source);
        }
    }
    // Every input record where a reader finds it, its write, and the output copies of it.
    let mut inputs: BTreeMap<Place, (WriteId, Vec<(WriteId, Place)>)> = BTreeMap::new();
    for partition in history.partitions.iter().filter(|p| p.tp.topic == topics.input) {
        for (offset, write) in read_committed_view(partition).0 {
            inputs.insert((partition.tp, offset), (write, Vec::new()));
        }
    }
    for (write, (tp, offset)) in visible.iter().filter(|(_, (tp, _))| tp.topic == topics.output) {
        let Some(source) = source_of.get(write) else { continue };
        let (read, at) = (source.write, source.offset.0);
        match inputs.get_mut(&(source.tp, source.offset)) {
            Some((held, copies)) if *held == read => copies.push((*write, (*tp, *offset))),
            // The input was read at a place the final log holds another record at (read,
            // then truncated away and overwritten).
            Some((held, _)) => result.violation(|| {
                format!(
                    "{write} at {tp} offset {} copies {read} read at {} offset {at}, where the final input log holds {held}",
                    offset.0, source.tp
                )
            }),
            None => result.violation(|| {
                format!(
                    "{write} at {tp} offset {} copies {read} read at {} offset {at}, which no reader of the input topic sees",
                    offset.0, source.tp
                )
            }),
        }
    }
    let mut counts = PipelineCounts { input: inputs.len() as u64, ..PipelineCounts::default() };
    for ((tp, offset), (source, copies)) in &inputs {
        match copies.len() {
            1 => counts.once += 1,
            0 => {
                counts.missing += 1;
                // Missing counts once the pipeline had the time to drain its input.
                if history.converged {
                    result.violation(|| {
                        format!("{source} at {tp} offset {} is not in the output topic after the pipeline drained its input", offset.0)
                    });
                }
            }
            n => {
                counts.duplicated += 1;
                result.violation(|| {
                    let list: Vec<String> =
                        copies.iter().map(|(w, (tp, o))| format!("{w} at {tp} offset {}", o.0)).collect();
                    format!(
                        "{source} at {tp} offset {} is in the output topic {n} times: {}",
                        offset.0,
                        list.join(", ")
                    )
                });
            }
        }
    }
    counts
}
