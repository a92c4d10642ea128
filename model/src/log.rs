//! A partition replica's log with its flushed prefix, leader-epoch cache and HW checkpoint,
//! and the broker's disk that holds them.
//!
//! The disk is plain data: a running broker owns it, and a host keeps it while the broker
//! is down. A process kill keeps everything here (the page cache survives); a power loss
//! keeps only the flushed prefix (`BrokerDisk::lose_unflushed`).

use crate::group::coordinator::OffsetsRecord;
use crate::tpmap::TpMap;
use crate::types::{LeaderEpoch, Millis, Offset, ProducerId, WriteId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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

    pub fn read(&self, from: Offset, max_records: usize) -> &[LogEntry] {
        let start = (from.0 as usize).min(self.entries.len());
        let end = start.saturating_add(max_records).min(self.entries.len());
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

    /// Removes every record at or above `offset` (and the epochs that start there).
    pub fn truncate_to(&mut self, offset: Offset) {
        let end = (offset.0 as usize).min(self.entries.len());
        self.entries.truncate(end);
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
}
