//! A partition replica's log with its flushed prefix, leader-epoch cache and HW checkpoint,
//! and the broker's disk that holds them.
//!
//! The disk is plain data: a running broker owns it, and a host keeps it while the broker
//! is down. A process kill keeps everything here (the page cache survives); a power loss
//! keeps only the flushed prefix (`BrokerDisk::lose_unflushed`).

use crate::group::coordinator::OffsetsRecord;
use crate::tpmap::TpMap;
use crate::types::{LeaderEpoch, Millis, Offset, ProducerId, Stamp, WriteId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Batches per producer a partition remembers for duplicate detection
/// (`ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// One record as the producer sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's value: the identity of the client write.
    pub write: WriteId,
    pub key: Option<u32>,
    pub producer: ProducerId,
    /// Per producer and partition, in send order (what a reordering checker compares).
    pub sequence: u32,
    pub timestamp: Millis,
    /// Set by an idempotent producer (absent from the trace otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

/// A record as stored in a log: the record plus the epoch of the leader that appended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub leader_epoch: LeaderEpoch,
    pub record: Record,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLog {
    entries: Vec<LogEntry>,
    /// Offsets below this are on stable storage.
    flushed: u64,
    /// Leader-epoch cache: (epoch, start offset), ascending in both.
    epochs: Vec<(LeaderEpoch, Offset)>,
    /// Last HW written to the checkpoint file (synced, as Kafka's `CheckpointFile` does).
    hw_checkpoint: Offset,
    /// Contents of internal-topic records (`__consumer_offsets`), ascending by offset.
    /// A `LogEntry` stays a small `Copy` value; the few records that carry more than a
    /// write id keep it here, and truncation and power loss drop it with the entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    payloads: Vec<(Offset, Arc<OffsetsRecord>)>,
    /// Producer state (Kafka's `ProducerStateManager`): a function of the log, built
    /// from it when a leader checks a batch, so a new leader, a truncated follower and a
    /// restarted broker see what their log holds. (Kafka snapshots it and rebuilds the
    /// rest from the log; logs hold whole batches here as there, so the result is the
    /// same.) Not stored, not compared.
    #[serde(skip)]
    producers: ProducerCache,
}

/// The producer state of a log and how far into the log it is built (followers, which
/// never check a batch, never pay for it).
#[derive(Clone, Debug, Default)]
struct ProducerCache {
    /// Ascending by producer id.
    entries: Vec<ProducerEntry>,
    /// Records below this offset are folded in.
    upto: usize,
}

impl PartialEq for ProducerCache {
    /// Derived from the log, so two logs are equal whatever either has built so far.
    fn eq(&self, _: &ProducerCache) -> bool {
        true
    }
}

impl Eq for ProducerCache {}

/// One cached batch of a producer: the sequence and offset range it occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_sequence: u32,
    pub last_sequence: u32,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

/// What a partition knows about one idempotent producer: its latest epoch and the last
/// five batches it appended in that epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub pid: NonZeroU32,
    pub epoch: u16,
    pub batches: VecDeque<BatchMeta>,
}

/// How a leader takes a batch from an idempotent producer (`ProducerAppendInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// The same batch is in the cache: answer with its offsets, append nothing.
    Duplicate(BatchMeta),
}

impl ProducerEntry {
    fn last_sequence(&self) -> Option<u32> {
        self.batches.back().map(|b| b.last_sequence)
    }
}

/// Kafka's `inSequence`: the next sequence follows the last, wrapping at i32::MAX.
fn in_sequence(last: Option<u32>, next: u32) -> bool {
    match last {
        None => next == 0,
        Some(last) => next as u64 == last as u64 + 1 || (next == 0 && last == i32::MAX as u32),
    }
}

impl PartitionLog {
    pub fn log_start_offset(&self) -> Offset {
        Offset(0)
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.entries.len() as u64)
    }

    pub fn flushed_offset(&self) -> Offset {
        Offset(self.flushed)
    }

    pub fn hw_checkpoint(&self) -> Offset {
        self.hw_checkpoint
    }

    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<LogEntry> {
        self.entries
    }

    pub fn entry(&self, offset: Offset) -> Option<&LogEntry> {
        self.entries.get(offset.0 as usize)
    }

    /// Up to `max_records` from `from`, ending on a batch boundary (a fetch returns
    /// whole batches, so a replica never holds part of an idempotent producer's batch).
    pub fn read(&self, from: Offset, max_records: usize) -> &[LogEntry] {
        let start = (from.0 as usize).min(self.entries.len());
        let mut end = start.saturating_add(max_records).min(self.entries.len());
        while end < self.entries.len() && self.entries[end].record.stamp.is_some_and(|s| s.index > 0) {
            end += 1;
        }
        &self.entries[start..end]
    }

    pub fn epoch_cache(&self) -> &[(LeaderEpoch, Offset)] {
        &self.epochs
    }

    /// Epoch of the last record, or of the latest cache entry when the log has none past it.
    pub fn last_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|(epoch, _)| *epoch)
    }

    /// Records the start of `epoch` at the log end, as a new leader does (`assign`).
    pub fn assign_epoch(&mut self, epoch: LeaderEpoch) {
        let end = self.log_end_offset();
        match self.epochs.last() {
            Some((last, _)) if *last >= epoch => {}
            _ => self.epochs.push((epoch, end)),
        }
    }

    /// Appends records as leader (all get `epoch`) and returns the first offset.
    pub fn append_as_leader(&mut self, epoch: LeaderEpoch, records: &[Record]) -> Offset {
        let base = self.log_end_offset();
        self.assign_epoch(epoch);
        self.entries.extend(records.iter().map(|record| LogEntry { leader_epoch: epoch, record: *record }));
        base
    }

    /// Appends entries fetched from the leader, keeping their epochs, with the contents
    /// of the internal records among them.
    pub fn append_as_follower(&mut self, entries: &[LogEntry], payloads: &[(Offset, Arc<OffsetsRecord>)]) {
        let base = self.log_end_offset();
        for entry in entries {
            self.assign_epoch(entry.leader_epoch);
            self.entries.push(*entry);
        }
        let end = self.log_end_offset();
        self.payloads.extend(payloads.iter().filter(|(offset, _)| *offset >= base && *offset < end).cloned());
    }

    /// Appends one internal record with its contents, as leader.
    pub fn append_internal(&mut self, epoch: LeaderEpoch, record: Record, payload: Arc<OffsetsRecord>) -> Offset {
        let offset = self.append_as_leader(epoch, &[record]);
        self.payloads.push((offset, payload));
        offset
    }

    /// Contents of the internal records in `[from, to)`.
    pub fn payloads_in(&self, from: Offset, to: Offset) -> Vec<(Offset, Arc<OffsetsRecord>)> {
        if self.payloads.is_empty() {
            return Vec::new();
        }
        let start = self.payloads.partition_point(|(offset, _)| *offset < from);
        self.payloads[start..].iter().take_while(|(offset, _)| *offset < to).cloned().collect()
    }

    /// The producer state of `pid`, if this log holds any of its batches.
    pub fn producer(&mut self, pid: NonZeroU32) -> Option<&ProducerEntry> {
        self.track_producers();
        let index = self.producers.entries.binary_search_by_key(&pid, |p| p.pid).ok()?;
        Some(&self.producers.entries[index])
    }

    /// Kafka's leader-side checks of an idempotent batch (`UnifiedLog.analyzeAndValidate
    /// ProducerState` and `ProducerAppendInfo.checkProducerEpoch`/`checkSequence`): an
    /// older epoch is fenced (INVALID_PRODUCER_EPOCH); a batch equal to one of the last
    /// five is a duplicate; a new epoch must start at sequence 0, and within an epoch the
    /// first sequence must follow the last (else OUT_OF_ORDER_SEQUENCE_NUMBER). A producer
    /// the log knows nothing of may start anywhere (KIP-360: its state may have been
    /// removed with its records).
    pub fn check_sequence(
        &mut self,
        first: Stamp,
        last_sequence: u32,
    ) -> Result<SequenceCheck, crate::error::ErrorCode> {
        use crate::error::ErrorCode;
        let Some(entry) = self.producer(first.pid) else {
            return Ok(SequenceCheck::Append);
        };
        if first.epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if first.epoch == entry.epoch {
            if let Some(batch) =
                entry.batches.iter().find(|b| b.first_sequence == first.sequence && b.last_sequence == last_sequence)
            {
                return Ok(SequenceCheck::Duplicate(*batch));
            }
            if !in_sequence(entry.last_sequence(), first.sequence) {
                return Err(ErrorCode::OutOfOrderSequenceNumber);
            }
        } else if first.sequence != 0 {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        Ok(SequenceCheck::Append)
    }

    /// Folds the records not folded in yet into the producer state, one run of a batch's
    /// consecutive records at a time.
    fn track_producers(&mut self) {
        let mut at = self.producers.upto;
        self.producers.upto = self.entries.len();
        while at < self.entries.len() {
            let Some(first) = self.entries[at].record.stamp else {
                at += 1;
                continue;
            };
            // The run: the records of one batch that follow `first` in the log.
            let mut end = at + 1;
            while let Some(next) = self.entries.get(end).and_then(|e| e.record.stamp) {
                let last = self.entries[end - 1].record.stamp;
                let continues = next.index > 0
                    && last.is_some_and(|l| {
                        l.pid == next.pid && l.epoch == next.epoch && l.index.checked_add(1) == Some(next.index)
                    });
                if !continues {
                    break;
                }
                end += 1;
            }
            let last_sequence = self.entries[end - 1].record.stamp.map_or(first.sequence, |s| s.sequence);
            let (first_offset, last_offset) = (Offset(at as u64), Offset(end as u64 - 1));
            let producers = &mut self.producers.entries;
            let index = match producers.binary_search_by_key(&first.pid, |p| p.pid) {
                Ok(index) => index,
                Err(index) => {
                    let fresh = ProducerEntry { pid: first.pid, epoch: first.epoch, batches: VecDeque::new() };
                    producers.insert(index, fresh);
                    index
                }
            };
            let producer = &mut producers[index];
            if first.epoch != producer.epoch {
                // A new epoch forgets the old one's batches (`ProducerStateEntry.addBatch`).
                producer.epoch = first.epoch;
                producer.batches.clear();
            }
            match producer.batches.back_mut() {
                // The rest of a batch of more than u16::MAX records (the index saturates).
                Some(batch) if first.index > 0 && batch.last_offset.next() == first_offset => {
                    batch.last_sequence = last_sequence;
                    batch.last_offset = last_offset;
                }
                _ => {
                    producer.batches.push_back(BatchMeta {
                        first_sequence: first.sequence,
                        last_sequence,
                        first_offset,
                        last_offset,
                    });
                    if producer.batches.len() > PRODUCER_BATCHES_RETAINED {
                        producer.batches.pop_front();
                    }
                }
            }
            at = end;
        }
    }

    /// Removes every record at or above `offset` (and the epochs that start there).
    pub fn truncate_to(&mut self, offset: Offset) {
        let mut end = (offset.0 as usize).min(self.entries.len());
        // Never inside a batch: Kafka truncates and recovers whole batches (a torn one
        // fails its CRC and goes).
        while end > 0 && end < self.entries.len() && self.entries[end].record.stamp.is_some_and(|s| s.index > 0) {
            end -= 1;
        }
        let removed = end < self.entries.len();
        self.entries.truncate(end);
        if removed && self.producers.upto > end {
            // Rebuilt from what is left when next needed.
            self.producers = ProducerCache::default();
        }
        let keep = self.payloads.partition_point(|(o, _)| o.0 < end as u64);
        self.payloads.truncate(keep);
        self.flushed = self.flushed.min(end as u64);
        self.epochs.retain(|(_, start)| start.0 < end as u64);
        if let Some(last) = self.entries.last() {
            self.assign_epoch(last.leader_epoch);
        }
        self.hw_checkpoint = self.hw_checkpoint.min(Offset(end as u64));
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch ≤ `epoch` this log knows and the end
    /// offset of that epoch (start of the next epoch, or the log end for the latest).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let index = self.epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let found = self.epochs[index].0;
        let end = match self.epochs.get(index + 1) {
            Some((_, next_start)) => *next_start,
            None => self.log_end_offset(),
        };
        Some((found, end))
    }

    /// Makes the records below `offset` durable (the OS writing back old dirty pages).
    pub fn flush_to(&mut self, offset: Offset) {
        self.flushed = self.flushed.max(offset.0.min(self.entries.len() as u64));
    }

    pub fn flush(&mut self) {
        self.flushed = self.entries.len() as u64;
    }

    pub fn unflushed_records(&self) -> u64 {
        self.entries.len() as u64 - self.flushed
    }

    pub fn checkpoint_hw(&mut self, hw: Offset) {
        self.hw_checkpoint = hw.min(self.log_end_offset());
    }

    fn lose_unflushed(&mut self) {
        let flushed = Offset(self.flushed);
        self.truncate_to(flushed);
    }
}

/// Everything a broker keeps on disk. Survives a kill whole; a power loss keeps only what
/// was flushed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerDisk {
    pub logs: TpMap<PartitionLog>,
    /// Set by a graceful shutdown; a crash leaves it unset (Kafka's clean-shutdown marker).
    pub clean_shutdown_epoch: Option<crate::types::BrokerEpoch>,
    /// Producer ids this broker handed out. Kafka's brokers take blocks of ids from the
    /// controller, which keeps them in its fsynced metadata log; here each broker owns a
    /// block of 2^20 ids and the count survives power loss as that log would.
    #[serde(default)]
    pub producer_ids_issued: u32,
}

impl BrokerDisk {
    /// Drops every unflushed record, as an unclean power loss does.
    pub fn lose_unflushed(&mut self) {
        for log in self.logs.values_mut() {
            log.lose_unflushed();
        }
        self.clean_shutdown_epoch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ProducerId, TopicPartition};

    fn record(write: u64) -> Record {
        Record {
            write: WriteId(write),
            key: None,
            producer: ProducerId(0),
            sequence: write as u32,
            timestamp: Millis(0),
            stamp: None,
        }
    }

    // Shows Kafka's endOffsetForEpoch rules (LeaderEpochFileCache, KIP-101): the end of an
    // older epoch is the next epoch's start; the latest epoch ends at the log end; an epoch
    // older than any known is answered with none.
    #[test]
    fn end_offset_for_epoch_follows_the_cache() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(1), &[record(0), record(1)]);
        log.append_as_leader(LeaderEpoch(3), &[record(2)]);
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(0)), None);
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(1)), Some((LeaderEpoch(1), Offset(2))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(2)), Some((LeaderEpoch(1), Offset(2))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(3)), Some((LeaderEpoch(3), Offset(3))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(9)), Some((LeaderEpoch(3), Offset(3))));
    }

    // Shows the durability model of ARCHITECTURE.md: a power loss keeps the flushed prefix
    // only, and the epoch cache and HW checkpoint shrink with the log.
    #[test]
    fn power_loss_keeps_only_the_flushed_prefix() {
        let mut disk = BrokerDisk::default();
        let tp = TopicPartition::new(0, 0);
        let log = disk.logs.get_or_default(tp);
        log.append_as_leader(LeaderEpoch(0), &[record(0), record(1)]);
        log.flush();
        log.append_as_leader(LeaderEpoch(1), &[record(2)]);
        log.checkpoint_hw(Offset(3));
        disk.lose_unflushed();
        let log = &disk.logs[&tp];
        assert_eq!(log.log_end_offset(), Offset(2));
        assert_eq!(log.epoch_cache(), &[(LeaderEpoch(0), Offset(0))]);
        assert_eq!(log.hw_checkpoint(), Offset(2));
    }

    /// A batch of `count` records of producer 7 at `epoch` from sequence `first`.
    fn stamped(epoch: u16, first: u32, count: u32) -> Vec<Record> {
        let pid = NonZeroU32::new(7).expect("non-zero");
        (0..count)
            .map(|i| Record {
                stamp: Some(Stamp { pid, epoch, index: i as u16, sequence: first + i }),
                ..record(first as u64 + i as u64)
            })
            .collect()
    }

    fn check(log: &mut PartitionLog, batch: &[Record]) -> Result<SequenceCheck, crate::error::ErrorCode> {
        let first = batch[0].stamp.expect("stamped");
        log.check_sequence(first, batch[batch.len() - 1].stamp.expect("stamped").sequence)
    }

    // Shows the leader's sequence rules of Kafka's ProducerAppendInfo.checkSequence and
    // UnifiedLog's duplicate detection (KIP-98): a resent batch is found with its offsets,
    // the next sequence appends, a gap or a non-zero start of a new epoch is
    // OUT_OF_ORDER_SEQUENCE_NUMBER, and an older epoch is INVALID_PRODUCER_EPOCH.
    #[test]
    fn a_leader_checks_sequences_as_kafka_does() {
        use crate::error::ErrorCode;
        let mut log = PartitionLog::default();
        assert_eq!(check(&mut log, &stamped(0, 4, 2)), Ok(SequenceCheck::Append), "unknown producer: any start");
        log.append_as_leader(LeaderEpoch(0), &stamped(0, 0, 3));
        let original =
            BatchMeta { first_sequence: 0, last_sequence: 2, first_offset: Offset(0), last_offset: Offset(2) };
        assert_eq!(check(&mut log, &stamped(0, 0, 3)), Ok(SequenceCheck::Duplicate(original)));
        assert_eq!(check(&mut log, &stamped(0, 3, 1)), Ok(SequenceCheck::Append));
        assert_eq!(check(&mut log, &stamped(0, 4, 1)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(check(&mut log, &stamped(1, 5, 1)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(check(&mut log, &stamped(1, 0, 1)), Ok(SequenceCheck::Append));
        log.append_as_leader(LeaderEpoch(0), &stamped(1, 0, 1));
        assert_eq!(check(&mut log, &stamped(0, 3, 1)), Err(ErrorCode::InvalidProducerEpoch));
    }

    // Shows that only the last five batches are remembered (NUM_BATCHES_TO_RETAIN): a
    // resend of the sixth-newest batch is no longer recognised as a duplicate.
    #[test]
    fn only_five_batches_are_remembered() {
        use crate::error::ErrorCode;
        let mut log = PartitionLog::default();
        for sequence in 0..6 {
            log.append_as_leader(LeaderEpoch(0), &stamped(0, sequence, 1));
        }
        assert!(matches!(check(&mut log, &stamped(0, 1, 1)), Ok(SequenceCheck::Duplicate(_))));
        assert_eq!(check(&mut log, &stamped(0, 0, 1)), Err(ErrorCode::OutOfOrderSequenceNumber));
    }

    // Shows the producer state follows the log (Kafka rebuilds it from the log on
    // truncation): a follower that fetched a batch in two halves knows it whole, and
    // after truncating it away accepts the batch again instead of calling it a duplicate.
    #[test]
    fn producer_state_follows_fetches_and_truncation() {
        let mut log = PartitionLog::default();
        let batch: Vec<LogEntry> =
            stamped(0, 0, 4).into_iter().map(|record| LogEntry { leader_epoch: LeaderEpoch(0), record }).collect();
        log.append_as_follower(&batch[..1], &[]);
        log.append_as_follower(&batch[1..], &[]);
        assert!(matches!(check(&mut log, &stamped(0, 0, 4)), Ok(SequenceCheck::Duplicate(_))));
        log.truncate_to(Offset(0));
        assert_eq!(check(&mut log, &stamped(0, 0, 4)), Ok(SequenceCheck::Append));
        assert!(log.producer(NonZeroU32::new(7).expect("non-zero")).is_none());
    }

    // Shows a log is read and cut in whole batches (Kafka's fetch returns whole batches;
    // recovery drops a torn one): a fetch of one record returns the rest of its batch, and
    // a truncation point inside a batch moves to the batch's start.
    #[test]
    fn reads_and_truncations_keep_batches_whole() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &stamped(0, 0, 3));
        log.append_as_leader(LeaderEpoch(0), &stamped(0, 3, 2));
        assert_eq!(log.read(Offset(0), 1).len(), 3);
        assert_eq!(log.read(Offset(3), 1).len(), 2);
        log.truncate_to(Offset(4));
        assert_eq!(log.log_end_offset(), Offset(3));
        assert!(matches!(check(&mut log, &stamped(0, 3, 2)), Ok(SequenceCheck::Append)));
    }
}
