//! A partition replica's log with its flushed prefix, leader-epoch cache and HW checkpoint,
//! and the broker's disk that holds them.
//!
//! The disk is plain data: a running broker owns it, and a host keeps it while the broker
//! is down. A process kill keeps everything here (the page cache survives); a power loss
//! keeps only the flushed prefix (`BrokerDisk::lose_unflushed`).

use crate::group::coordinator::OffsetsRecord;
use crate::tpmap::TpMap;
use crate::txn::TxnRecord;
use crate::types::{BatchKind, LeaderEpoch, Millis, Offset, ProducerId, Stamp, WriteId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Batches per producer a partition remembers for duplicate detection
/// (`ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// The contents of an internal-topic record: a group's record in `__consumer_offsets`,
/// or a transactional id's state in `__transaction_state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    Offsets(OffsetsRecord),
    Txn(TxnRecord),
}

impl Payload {
    pub fn as_offsets(&self) -> Option<&OffsetsRecord> {
        match self {
            Payload::Offsets(record) => Some(record),
            Payload::Txn(_) => None,
        }
    }

    pub fn as_txn(&self) -> Option<&TxnRecord> {
        match self {
            Payload::Txn(record) => Some(record),
            Payload::Offsets(_) => None,
        }
    }
}

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

impl Record {
    /// The commit or abort marker of producer `pid`'s transaction at `epoch` (a control
    /// batch of one record; `write` and `producer` name the coordinator's write, never a
    /// client's).
    pub fn marker(
        pid: NonZeroU32,
        epoch: u16,
        commit: bool,
        write: WriteId,
        producer: ProducerId,
        timestamp: Millis,
    ) -> Record {
        let kind = if commit { BatchKind::Commit } else { BatchKind::Abort };
        let stamp = Stamp { pid, epoch, index: 0, sequence: 0, kind };
        Record { write, key: None, producer, sequence: 0, timestamp, stamp: Some(stamp) }
    }

    /// Whether this is a transaction marker, which no consumer delivers.
    pub fn is_control(&self) -> bool {
        self.stamp.is_some_and(|s| s.kind.is_control())
    }

    pub fn is_transactional(&self) -> bool {
        self.stamp.is_some_and(|s| s.kind == BatchKind::Transactional)
    }
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
    /// Contents of internal-topic records (`__consumer_offsets`, `__transaction_state`),
    /// ascending by offset.
    /// A `LogEntry` stays a small `Copy` value; the few records that carry more than a
    /// write id keep it here, and truncation and power loss drop it with the entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    payloads: Vec<(Offset, Arc<Payload>)>,
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
    /// Open transactions: (first offset, producer id).
    ongoing: BTreeSet<(Offset, NonZeroU32)>,
    /// Ended transactions, in marker order (so ascending by `last_offset`).
    completed: Vec<CompletedTxn>,
}

/// A transaction that a partition saw end (Kafka's `CompletedTxn`); the aborted ones
/// form its transaction index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedTxn {
    pub pid: NonZeroU32,
    pub first_offset: Offset,
    /// The marker's offset.
    pub last_offset: Offset,
    pub aborted: bool,
}

/// An aborted transaction as a read_committed fetch response carries it
/// (`FetchResponse.AbortedTransaction`): the consumer drops that producer's transactional
/// records from `first_offset` up to its abort marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub pid: NonZeroU32,
    pub first_offset: Offset,
}

impl PartialEq for ProducerCache {
    /// Derived from the log, so two logs are equal whatever either has built so far.
    fn eq(&self, _: &ProducerCache) -> bool {
        true
    }
}

impl Eq for ProducerCache {}

impl ProducerCache {
    /// The index of `pid`'s entry, created at `epoch` if new.
    fn entry_index(&mut self, pid: NonZeroU32, epoch: u16) -> usize {
        match self.entries.binary_search_by_key(&pid, |p| p.pid) {
            Ok(index) => index,
            Err(index) => {
                let fresh = ProducerEntry { pid, epoch, batches: VecDeque::new(), current_txn_first: None };
                self.entries.insert(index, fresh);
                index
            }
        }
    }

    /// A transaction marker at `offset` (`appendEndTxnMarker`): the producer takes the
    /// marker's epoch (a new epoch forgets the old batches) and its open transaction, if
    /// any, ends.
    fn fold_marker(&mut self, stamp: Stamp, offset: Offset) {
        let index = self.entry_index(stamp.pid, stamp.epoch);
        let producer = &mut self.entries[index];
        if producer.epoch != stamp.epoch {
            producer.epoch = stamp.epoch;
            producer.batches.clear();
        }
        if let Some(first_offset) = producer.current_txn_first.take() {
            self.ongoing.remove(&(first_offset, stamp.pid));
            let aborted = stamp.kind == BatchKind::Abort;
            self.completed.push(CompletedTxn { pid: stamp.pid, first_offset, last_offset: offset, aborted });
        }
    }
}

/// What a read_committed consumer delivers of `entries`, read from offset `base`, given
/// the aborted transactions the fetch returned: no marker, and no transactional record of
/// a producer between an aborted transaction's first offset and its abort marker (the
/// consumer's `abortedProducerIds` walk in `CompletedFetch`).
pub fn committed_records<'a>(
    entries: &'a [LogEntry],
    base: Offset,
    aborted: &[AbortedTxn],
) -> impl Iterator<Item = (Offset, &'a Record)> + 'a {
    let mut pending: Vec<AbortedTxn> = aborted.to_vec();
    pending.sort_unstable_by_key(|t| std::cmp::Reverse((t.first_offset, t.pid)));
    let mut aborting: BTreeSet<NonZeroU32> = BTreeSet::new();
    entries.iter().enumerate().filter_map(move |(i, entry)| {
        let offset = Offset(base.0 + i as u64);
        while pending.last().is_some_and(|t| t.first_offset <= offset) {
            aborting.extend(pending.pop().map(|t| t.pid));
        }
        let record = &entry.record;
        let Some(stamp) = record.stamp else {
            return Some((offset, record));
        };
        match stamp.kind {
            BatchKind::Abort => {
                aborting.remove(&stamp.pid);
                None
            }
            BatchKind::Commit => None,
            BatchKind::Transactional if aborting.contains(&stamp.pid) => None,
            _ => Some((offset, record)),
        }
    })
}

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
    /// The first offset of the producer's open transaction in this partition.
    #[serde(default)]
    pub current_txn_first: Option<Offset>,
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
    pub fn append_as_follower(&mut self, entries: &[LogEntry], payloads: &[(Offset, Arc<Payload>)]) {
        let base = self.log_end_offset();
        for entry in entries {
            self.assign_epoch(entry.leader_epoch);
            self.entries.push(*entry);
        }
        let end = self.log_end_offset();
        self.payloads.extend(payloads.iter().filter(|(offset, _)| *offset >= base && *offset < end).cloned());
    }

    /// Appends one internal record with its contents, as leader.
    pub fn append_internal(&mut self, epoch: LeaderEpoch, record: Record, payload: Arc<Payload>) -> Offset {
        let offset = self.append_as_leader(epoch, &[record]);
        self.payloads.push((offset, payload));
        offset
    }

    /// Contents of the internal records in `[from, to)`.
    pub fn payloads_in(&self, from: Offset, to: Offset) -> Vec<(Offset, Arc<Payload>)> {
        if self.payloads.is_empty() {
            return Vec::new();
        }
        let start = self.payloads.partition_point(|(offset, _)| *offset < from);
        self.payloads[start..].iter().take_while(|(offset, _)| *offset < to).cloned().collect()
    }

    /// Every internal record of one kind in the log, in log order (what a coordinator
    /// loads): `pick` is `Payload::as_offsets` or `Payload::as_txn`.
    pub fn payload_records<T: Clone>(&self, pick: fn(&Payload) -> Option<&T>) -> Vec<T> {
        self.payloads.iter().filter_map(|(_, p)| pick(p).cloned()).collect()
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
        // `appendDataBatch`: a plain batch while the producer's transaction is open.
        if entry.current_txn_first.is_some() && first.kind == BatchKind::Plain {
            return Err(ErrorCode::InvalidTxnState);
        }
        Ok(SequenceCheck::Append)
    }

    /// Kafka's checks of a transaction marker from WriteTxnMarkers
    /// (`ProducerAppendInfo.appendEndTxnMarker`/`checkProducerEpoch`): a marker older than
    /// the producer's epoch is INVALID_PRODUCER_EPOCH. With `strict` (a transaction
    /// version 2 marker, which always carries a bumped epoch, KIP-1228) so is one of the
    /// producer's epoch while a transaction of that epoch is open: a late marker of the
    /// transaction before, which would end this one. One of that epoch with nothing open
    /// is the repeat of the marker that ended it, taken again (KAFKA-19999: refusing it
    /// would leave the coordinator's transaction hanging).
    pub fn check_marker(&mut self, pid: NonZeroU32, epoch: u16, strict: bool) -> Result<(), crate::error::ErrorCode> {
        let Some(entry) = self.producer(pid) else {
            return Ok(());
        };
        let invalid = epoch < entry.epoch || (strict && epoch == entry.epoch && entry.current_txn_first.is_some());
        if invalid {
            return Err(crate::error::ErrorCode::InvalidProducerEpoch);
        }
        Ok(())
    }

    /// Kafka's last stable offset: the high watermark, or the first offset of a
    /// transaction still open, or ended by a marker not yet below `hw`, if lower
    /// (`ProducerStateManager.firstUndecidedOffset` with its unreplicated transactions).
    pub fn last_stable_offset(&mut self, hw: Offset) -> Offset {
        self.track_producers();
        let cache = &self.producers;
        let ongoing = cache.ongoing.first().map(|(offset, _)| *offset);
        let start = cache.completed.partition_point(|t| t.last_offset < hw);
        let unreplicated = cache.completed[start..].iter().map(|t| t.first_offset).min();
        [ongoing, unreplicated].into_iter().flatten().fold(hw, Offset::min)
    }

    /// The aborted transactions a read of `[from, to)` must know (`collectAbortedTxns`):
    /// those that end at or after `from` and start before `to`, by first offset.
    pub fn aborted_between(&mut self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        self.track_producers();
        let completed = &self.producers.completed;
        let start = completed.partition_point(|t| t.last_offset < from);
        let mut aborted: Vec<AbortedTxn> = completed[start..]
            .iter()
            .filter(|t| t.aborted && t.first_offset < to)
            .map(|t| AbortedTxn { pid: t.pid, first_offset: t.first_offset })
            .collect();
        aborted.sort_unstable_by_key(|t| (t.first_offset, t.pid));
        aborted
    }

    /// The transactions of this log that have ended, in marker order.
    pub fn completed_txns(&mut self) -> &[CompletedTxn] {
        self.track_producers();
        &self.producers.completed
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
            if first.kind.is_control() {
                self.producers.fold_marker(first, Offset(at as u64));
                at += 1;
                continue;
            }
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
            let index = self.producers.entry_index(first.pid, first.epoch);
            let producer = &mut self.producers.entries[index];
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
            if first.kind == BatchKind::Transactional && producer.current_txn_first.is_none() {
                producer.current_txn_first = Some(first_offset);
                self.producers.ongoing.insert((first_offset, first.pid));
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
    /// The page cache's side: when the OS's flusher first saw each log dirty since its
    /// last writeback (Linux's per-inode `dirtied_when`, to a flusher pass). A kill keeps
    /// it with the page cache.
    #[serde(skip)]
    pub dirty_since: TpMap<Millis>,
}

impl BrokerDisk {
    /// Drops every unflushed record, as an unclean power loss does.
    pub fn lose_unflushed(&mut self) {
        for log in self.logs.values_mut() {
            log.lose_unflushed();
        }
        // A clean-shutdown marker stays: it is only there after a graceful stop, which
        // flushed every log before writing it.
        self.dirty_since = TpMap::new();
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
                stamp: Some(Stamp { pid, epoch, index: i as u16, sequence: first + i, kind: BatchKind::Plain }),
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

    fn pid(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    /// A transactional batch of `count` records of producer `p` at `epoch` from sequence
    /// `first`, with write ids from `write`.
    fn txn_batch(p: u32, epoch: u16, first: u32, count: u32, write: u64) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                stamp: Some(Stamp {
                    pid: pid(p),
                    epoch,
                    index: i as u16,
                    sequence: first + i,
                    kind: BatchKind::Transactional,
                }),
                ..record(write + i as u64)
            })
            .collect()
    }

    fn marker(p: u32, epoch: u16, commit: bool) -> Record {
        Record::marker(pid(p), epoch, commit, WriteId(1 << 62), ProducerId(u32::MAX), Millis(0))
    }

    /// The write ids a read_committed consumer sees in the whole log below the LSO.
    fn committed_writes(log: &mut PartitionLog, hw: Offset) -> Vec<u64> {
        let lso = log.last_stable_offset(hw);
        let aborted = log.aborted_between(Offset(0), lso);
        let entries = &log.entries()[..lso.0 as usize];
        committed_records(entries, Offset(0), &aborted).map(|(_, r)| r.write.0).collect()
    }

    // Shows the last stable offset of KIP-98 (ProducerStateManager.firstUndecidedOffset):
    // an open transaction holds the LSO at its first offset, its marker frees it only once
    // the marker is below the high watermark, and a plain record never holds it.
    #[test]
    fn the_lso_stops_at_the_first_undecided_transaction() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &[record(100)]);
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 0, 2, 0));
        log.append_as_leader(LeaderEpoch(0), &txn_batch(2, 0, 0, 1, 10));
        assert_eq!(log.last_stable_offset(Offset(4)), Offset(1));
        assert_eq!(log.last_stable_offset(Offset(0)), Offset(0), "never above the HW");
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 0, true)]);
        // Producer 2's transaction is still open.
        assert_eq!(log.last_stable_offset(Offset(5)), Offset(3));
        log.append_as_leader(LeaderEpoch(0), &[marker(2, 0, false)]);
        // Both ended, but producer 2's marker (offset 5) is not replicated below HW 5.
        assert_eq!(log.last_stable_offset(Offset(5)), Offset(3));
        assert_eq!(log.last_stable_offset(Offset(6)), Offset(6));
        assert_eq!(log.completed_txns().len(), 2);
    }

    // Shows what a read_committed consumer delivers (KIP-98; the Java consumer's
    // CompletedFetch with abortedProducerIds): committed transactions and plain records, no
    // markers, nothing of an aborted transaction, even interleaved with others.
    #[test]
    fn read_committed_skips_aborted_data_and_markers() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 0, 2, 0));
        log.append_as_leader(LeaderEpoch(0), &txn_batch(2, 0, 0, 1, 10));
        log.append_as_leader(LeaderEpoch(0), &[record(100)]);
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 2, 1, 2));
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 0, false)]);
        log.append_as_leader(LeaderEpoch(0), &txn_batch(2, 0, 1, 1, 11));
        log.append_as_leader(LeaderEpoch(0), &[marker(2, 0, true)]);
        // Producer 1 again, in a transaction that commits.
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 3, 1, 3));
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 0, true)]);
        let hw = log.log_end_offset();
        assert_eq!(committed_writes(&mut log, hw), vec![10, 100, 11, 3]);
        let aborted = log.aborted_between(Offset(0), hw);
        assert_eq!(aborted, vec![AbortedTxn { pid: pid(1), first_offset: Offset(0) }]);
        // A read that starts after the aborted transaction ended needs no index entry.
        assert!(log.aborted_between(Offset(6), hw).is_empty());
        // A read from the middle of the aborted transaction still drops its rest.
        let aborted = log.aborted_between(Offset(3), hw);
        let tail = &log.entries()[3..hw.0 as usize];
        let seen: Vec<u64> = committed_records(tail, Offset(3), &aborted).map(|(_, r)| r.write.0).collect();
        assert_eq!(seen, vec![100, 11, 3]);
    }

    // Shows the leader's checks of a transactional producer (ProducerAppendInfo): a plain
    // batch inside an open transaction is INVALID_TXN_STATE; a marker older than the
    // producer's epoch is INVALID_PRODUCER_EPOCH, and with transaction version 2 (KIP-1228)
    // so is a marker of the same epoch while a transaction of it is open, but not the
    // repeat of the marker that ended it (KAFKA-19999); after a bumped marker, the old
    // epoch's data is fenced and the new epoch starts at sequence 0.
    #[test]
    fn markers_and_data_are_checked_against_the_producer_epoch() {
        use crate::error::ErrorCode;
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 3, 0, 2, 0));
        assert_eq!(
            check(&mut log, &stamped(3, 2, 1).iter().map(|r| with_pid(r, 1)).collect::<Vec<_>>()),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(check(&mut log, &txn_batch(1, 3, 2, 1, 2)), Ok(SequenceCheck::Append));
        assert_eq!(log.check_marker(pid(1), 2, false), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(log.check_marker(pid(1), 3, false), Ok(()));
        assert_eq!(log.check_marker(pid(1), 3, true), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(log.check_marker(pid(1), 4, true), Ok(()));
        assert_eq!(log.check_marker(pid(9), 0, true), Ok(()), "a producer the log does not know");
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 4, true)]);
        // KAFKA-19999: the repeat of the marker just written, with nothing open, is taken.
        assert_eq!(log.check_marker(pid(1), 4, true), Ok(()));
        // KIP-890 part 2: a delayed write of the ended transaction's epoch is fenced.
        assert_eq!(check(&mut log, &txn_batch(1, 3, 2, 1, 2)), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(check(&mut log, &txn_batch(1, 4, 5, 1, 2)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(check(&mut log, &txn_batch(1, 4, 0, 1, 2)), Ok(SequenceCheck::Append));
        assert_eq!(log.last_stable_offset(Offset(3)), Offset(3));
    }

    // Shows the late marker KAFKA-19446 describes and KIP-1228 (Kafka 4.2) refuses: with
    // transaction version 2 the next transaction uses the epoch the last marker carried,
    // so a late repeat of that marker (a coordinator that lost its partition and came
    // back) finds a transaction of its epoch open. Kafka 4.1 takes it and ends that
    // transaction early; with the version in the request the leader refuses it.
    #[test]
    fn a_late_marker_of_the_open_transactions_epoch_is_refused_with_kip1228() {
        use crate::error::ErrorCode;
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 3, 0, 1, 0));
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 4, true)]);
        // The next transaction, at the epoch the marker carried.
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 4, 0, 1, 1));
        assert_eq!(log.check_marker(pid(1), 4, true), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(log.check_marker(pid(1), 4, false), Ok(()), "Kafka 4.1 takes it");
        assert_eq!(log.check_marker(pid(1), 5, true), Ok(()), "the open transaction's own marker");
    }

    fn with_pid(record: &Record, p: u32) -> Record {
        let mut record = *record;
        if let Some(stamp) = record.stamp.as_mut() {
            stamp.pid = pid(p);
        }
        record
    }

    // Shows the pre-KIP-890 hole: with markers of the same epoch, a delayed transactional
    // write that arrives after the marker is accepted and opens a transaction no
    // coordinator knows (a "hanging transaction"), which holds the LSO back until aborted.
    #[test]
    fn without_kip890_a_late_write_hangs_the_lso() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 0, 1, 0));
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 0, true)]);
        let late = txn_batch(1, 0, 1, 1, 1);
        assert_eq!(check(&mut log, &late), Ok(SequenceCheck::Append));
        log.append_as_leader(LeaderEpoch(0), &late);
        log.append_as_leader(LeaderEpoch(0), &[record(100)]);
        assert_eq!(log.last_stable_offset(Offset(4)), Offset(2));
        assert_eq!(committed_writes(&mut log, Offset(4)), vec![0]);
    }

    // Shows the transaction state follows the log as the producer state does: truncating a
    // marker away reopens its transaction, and a power loss that drops a whole
    // transaction drops its index entry (Kafka rebuilds both from the log on recovery).
    #[test]
    fn transaction_state_follows_truncation() {
        let mut log = PartitionLog::default();
        log.append_as_leader(LeaderEpoch(0), &txn_batch(1, 0, 0, 2, 0));
        log.append_as_leader(LeaderEpoch(0), &[marker(1, 0, false)]);
        assert_eq!(log.aborted_between(Offset(0), Offset(3)).len(), 1);
        log.truncate_to(Offset(2));
        assert!(log.aborted_between(Offset(0), Offset(2)).is_empty());
        assert_eq!(log.last_stable_offset(Offset(2)), Offset(0));
        log.truncate_to(Offset(0));
        assert_eq!(log.last_stable_offset(Offset(0)), Offset(0));
        assert!(log.completed_txns().is_empty());
    }
}
