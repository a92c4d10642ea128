//! The idempotent producer's sequence bookkeeping: Kafka's `TransactionManager` for a
//! producer without a transactional id (KIP-98, KIP-360).
//!
//! Sequence numbers are given to a batch when it is first drained and kept on every
//! retry, so a broker that already has the batch answers with its offsets instead of
//! appending it again. A retried batch goes out only when it is the partition's first
//! unfinished sequence, so batches reach the broker in order even with five requests in
//! flight. A batch given up after it was sent (expired, out of retries, or refused)
//! leaves its sequence "unresolved": nothing
//! new is drained to that partition until the batches in flight are answered, and if a
//! gap remains the producer bumps its epoch locally and restarts that partition's
//! sequences at 0 (`bumpIdempotentProducerEpoch`). An OUT_OF_ORDER_SEQUENCE_NUMBER is
//! retried, and bumps the epoch when it marks a real gap (`canRetry`).

use crate::error::ErrorCode;
use crate::tpmap::TpMap;
use crate::types::TopicPartition;
use std::num::NonZeroU32;

/// Producer id and epoch.
pub type ProducerIdAndEpoch = (NonZeroU32, u16);

/// `Short.MAX_VALUE`: past it an idempotent producer asks for a new producer id.
const EPOCH_MAX: u16 = i16::MAX as u16;

/// Sequence numbers wrap at `Integer.MAX_VALUE` (`DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: u32, by: u32) -> u32 {
    ((sequence as u64 + by as u64) % (i32::MAX as u64 + 1)) as u32
}

/// A batch's idempotence fields, as the bookkeeping sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStamp {
    pub producer: ProducerIdAndEpoch,
    pub base_sequence: u32,
    /// The sequence was rewritten by an epoch bump (`sequenceHasBeenReset`).
    pub reset: bool,
}

#[derive(Clone, Debug, Default)]
struct PartitionSequences {
    /// Producer id and epoch this partition's sequences belong to.
    producer: Option<ProducerIdAndEpoch>,
    next_sequence: u32,
    last_acked: Option<u32>,
    /// Batches that hold a sequence and are not finished (in a request, or waiting to be
    /// retried), as (base sequence, batch id), ascending by sequence.
    in_flight: Vec<(u32, u64)>,
    /// Next sequence after a batch given up once sent (`partitionsWithUnresolvedSequences`).
    unresolved: Option<u32>,
}

impl PartitionSequences {
    /// `isNextSequence`: `sequence` follows the last acknowledged one.
    fn is_next(&self, sequence: u32) -> bool {
        sequence as i64 - self.last_acked.map_or(-1, |l| l as i64) == 1
    }
}

#[derive(Clone, Debug, Default)]
pub struct Sequences {
    producer: Option<ProducerIdAndEpoch>,
    partitions: TpMap<PartitionSequences>,
    epoch_bump_required: bool,
    /// Partitions whose in-flight sequences the next bump rewrites from 0.
    rewrite: Vec<TopicPartition>,
    /// Partitions with an unresolved sequence (`resolve_and_bump` has work only then).
    unresolved: usize,
    /// Whether the epoch was ever bumped (partitions may hold an older epoch since).
    bumped: bool,
}

impl Sequences {
    pub fn producer(&self) -> Option<ProducerIdAndEpoch> {
        self.producer
    }

    pub fn set_producer(&mut self, producer: ProducerIdAndEpoch) {
        self.producer = Some(producer);
    }

    /// One epoch, a producer id, nothing unresolved: only a retried batch can be held.
    pub fn simple(&self) -> bool {
        self.producer.is_some() && self.unresolved == 0 && !self.bumped
    }

    /// `shouldStopDrainBatchesForPartition`: whether the head batch of `tp` must wait.
    /// `head` is the head's stamp if it was sent before.
    pub fn stop_drain(&self, tp: TopicPartition, head: Option<&BatchStamp>) -> bool {
        let Some(current) = self.producer else {
            return true;
        };
        let partition = self.partitions.get(&tp);
        let in_flight = partition.map_or(&[][..], |p| &p.in_flight[..]);
        match head {
            None => {
                let stale = partition.and_then(|p| p.producer).is_some_and(|p| p != current);
                // A new epoch starts at 0 only once the old epoch's batches are answered,
                // and nothing new goes while a sent sequence is unresolved.
                (stale && !in_flight.is_empty()) || partition.is_some_and(|p| p.unresolved.is_some())
            }
            // A retry goes only as the first unfinished sequence (in-flight count 1).
            Some(stamp) => in_flight.first().is_some_and(|(first, _)| *first != stamp.base_sequence),
        }
    }

    /// Gives a first-drained batch of `count` records its sequence (`setProducerState`).
    pub fn assign(&mut self, tp: TopicPartition, id: u64, count: u32) -> BatchStamp {
        let current = self.producer.expect("stop_drain holds batches until the producer id is known");
        let partition = self.partitions.get_or_default(tp);
        if partition.producer != Some(current) && partition.in_flight.is_empty() {
            // `maybeUpdateProducerIdAndEpoch`: a new epoch restarts the sequences.
            if partition.unresolved.is_some() {
                self.unresolved -= 1;
            }
            *partition = PartitionSequences { producer: Some(current), ..PartitionSequences::default() };
        }
        let base_sequence = partition.next_sequence;
        partition.next_sequence = increment_sequence(base_sequence, count);
        let index = partition.in_flight.partition_point(|(seq, _)| *seq < base_sequence);
        partition.in_flight.insert(index, (base_sequence, id));
        BatchStamp { producer: current, base_sequence, reset: false }
    }

    /// `handleCompletedBatch`.
    pub fn completed(&mut self, tp: TopicPartition, id: u64, stamp: &BatchStamp, count: u32) {
        let Some(partition) = self.partitions.get_mut(&tp) else { return };
        partition.in_flight.retain(|(_, batch)| *batch != id);
        if partition.producer != Some(stamp.producer) {
            return;
        }
        let last = increment_sequence(stamp.base_sequence, count.saturating_sub(1));
        if partition.last_acked.is_none_or(|acked| last > acked) {
            partition.last_acked = Some(last);
        }
    }

    fn is_next_sequence(&self, tp: TopicPartition, sequence: u32) -> bool {
        self.partitions.get(&tp).map_or(sequence == 0, |p| p.is_next(sequence))
    }

    /// The idempotent half of `TransactionManager.canRetry`: whether a batch that got
    /// `error` may be retried (the caller checks attempts and the delivery timeout).
    pub fn can_retry(&mut self, tp: TopicPartition, stamp: &BatchStamp, error: ErrorCode) -> bool {
        if error != ErrorCode::OutOfOrderSequenceNumber {
            return error.retriable();
        }
        let unresolved = self.partitions.get(&tp).and_then(|p| p.unresolved);
        if unresolved.is_none() && (stamp.reset || !self.is_next_sequence(tp, stamp.base_sequence)) {
            // An earlier batch is still unanswered: this one is merely early.
            return true;
        }
        // A real gap (or the batch right after an unresolved one): bump the epoch.
        if unresolved.is_none() || unresolved == Some(stamp.base_sequence) {
            self.request_epoch_bump(tp);
        }
        true
    }

    /// A batch that had been sent expired, in the accumulator or in flight
    /// (`markSequenceUnresolved`; Kafka marks only a batch in retry, here every sent
    /// one, since a first attempt may be lost as well as appended). Nothing new goes to
    /// the partition until every batch in flight there is answered; then a gap left
    /// behind bumps the epoch, with nothing in flight to renumber.
    pub fn expired_after_send(&mut self, tp: TopicPartition, id: u64, stamp: &BatchStamp, count: u32) {
        let Some(partition) = self.partitions.get_mut(&tp) else { return };
        partition.in_flight.retain(|(_, batch)| *batch != id);
        let next = increment_sequence(stamp.base_sequence, count);
        if partition.unresolved.is_none() {
            self.unresolved += 1;
        }
        partition.unresolved = Some(partition.unresolved.map_or(next, |u| u.max(next)));
    }

    fn request_epoch_bump(&mut self, tp: TopicPartition) {
        self.epoch_bump_required = true;
        if !self.rewrite.contains(&tp) {
            self.rewrite.push(tp);
        }
    }

    /// `maybeResolveSequences` and `bumpIdempotentEpochAndResetIdIfNeeded`, run before
    /// every drain. Returns the partitions whose unfinished batches must be renumbered
    /// from 0 under the new epoch (the caller does it with `restart`).
    pub fn resolve_and_bump(&mut self) -> Vec<TopicPartition> {
        if self.unresolved == 0 && !self.epoch_bump_required {
            // The common case, on every drain: nothing to do.
            return Vec::new();
        }
        let mut gaps = Vec::new();
        for (tp, partition) in self.partitions.iter_mut() {
            let Some(_) = partition.unresolved else { continue };
            if !partition.in_flight.is_empty() {
                continue;
            }
            let resolved = partition.is_next(partition.next_sequence);
            partition.unresolved = None;
            self.unresolved -= 1;
            if !resolved {
                gaps.push(*tp);
            }
        }
        for tp in gaps {
            self.request_epoch_bump(tp);
        }
        if !self.epoch_bump_required {
            return Vec::new();
        }
        self.epoch_bump_required = false;
        match self.producer {
            Some((pid, epoch)) if epoch < EPOCH_MAX => {
                self.producer = Some((pid, epoch + 1));
                self.bumped = true;
            }
            // Epoch exhausted: a new producer id (InitProducerId) and fresh sequences.
            _ => {
                self.producer = None;
                self.partitions.clear();
                self.rewrite.clear();
                self.unresolved = 0;
                return Vec::new();
            }
        }
        std::mem::take(&mut self.rewrite)
    }

    /// `startSequencesAtBeginning`: renumbers the unfinished batches of `tp`, given in
    /// their current sequence order as (id, record count), from 0 under the current
    /// epoch. Returns their new stamps in the same order.
    pub fn restart(&mut self, tp: TopicPartition, batches: &[(u64, u32)]) -> Vec<BatchStamp> {
        let current = self.producer.expect("restart follows a bump");
        let partition = self.partitions.get_or_default(tp);
        let mut sequence = 0;
        let mut stamps = Vec::with_capacity(batches.len());
        partition.in_flight.clear();
        for (id, count) in batches {
            partition.in_flight.push((sequence, *id));
            stamps.push(BatchStamp { producer: current, base_sequence: sequence, reset: true });
            sequence = increment_sequence(sequence, *count);
        }
        partition.producer = Some(current);
        partition.next_sequence = sequence;
        partition.last_acked = None;
        if partition.unresolved.take().is_some() {
            self.unresolved -= 1;
        }
        stamps
    }

    /// Ids of the unfinished batches of `tp`, ascending by sequence.
    pub fn in_flight_ids(&self, tp: TopicPartition) -> Vec<u64> {
        self.partitions.get(&tp).map_or_else(Vec::new, |p| p.in_flight.iter().map(|(_, id)| *id).collect())
    }
}
