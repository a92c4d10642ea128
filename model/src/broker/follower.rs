//! The follower side: one fetcher per leader broker, applying fetched records,
//! truncating where the leader says the logs diverge, and following the HW.

use super::{Broker, Fetcher, Replica, Role};
use crate::action::{ClusterEvent, TruncationReason};
use crate::config::Truncation;
use crate::error::ErrorCode;
use crate::messages::{FetchPartition, FetchPartitionResponse, Message};
use crate::types::{Millis, NodeId, Offset, TopicPartition};

/// Fetchers started per input at most; the rest start on the next input or timeout.
const FETCHERS_SCAN_MAX: usize = 64;

impl Broker {
    // ---- fetch (follower side) ----

    pub(super) fn run_fetchers(&mut self, now: Millis) {
        let Some(broker_epoch) = self.broker_epoch else {
            return;
        };
        let socket_timeout = self.config.replica_socket_timeout_ms;
        let due = |f: &Fetcher| match f.in_flight_since {
            Some(since) => now.since(since) >= socket_timeout,
            None => now >= f.backoff_until,
        };
        // Called after every input: most of the time every fetch is in flight.
        if !self.fetchers.values().any(due) {
            return;
        }
        // A broker fetches from a handful of leaders: a fixed array, no allocation per input.
        let mut leaders = [NodeId(0); FETCHERS_SCAN_MAX];
        let mut count = 0;
        for (leader, fetcher) in self.fetchers.iter() {
            if due(fetcher) && count < FETCHERS_SCAN_MAX {
                leaders[count] = *leader;
                count += 1;
            }
        }
        for leader in leaders.into_iter().take(count) {
            let Some(fetcher) = self.fetchers.get(&leader) else { continue };
            let timed_out =
                fetcher.in_flight_since.is_some_and(|since| now.since(since) >= self.config.replica_socket_timeout_ms);
            if fetcher.in_flight_since.is_some() && !timed_out {
                continue;
            }
            if fetcher.in_flight_since.is_none() && now < fetcher.backoff_until {
                continue;
            }
            let partitions = self.fetch_partitions_for(leader);
            if partitions.is_empty() {
                self.fetchers.remove(&leader);
                continue;
            }
            // Ids are unique across this broker's lives, like a connection's are.
            self.next_correlation += 1;
            let correlation = (self.incarnation << 32) | self.next_correlation;
            let fetcher = self.fetchers.get_or_default(leader);
            fetcher.in_flight_since = Some(now);
            fetcher.correlation = correlation;
            let max_wait_ms = self.config.replica_fetch_wait_max_ms;
            self.send(leader, Message::Fetch { correlation, broker_epoch, max_wait_ms, partitions });
        }
    }

    pub(super) fn fetch_partitions_for(&self, leader: NodeId) -> Vec<FetchPartition> {
        let truncation = self.config.protocol.truncation;
        let follows = |replica: &&Replica| matches!(replica.role, Role::Follower { leader: Some(l) } if l == leader);
        // Room for every replica: a filtered collect starts at four and grows, one
        // reallocation per fetch for a broker that follows more than four partitions of
        // one leader.
        let mut partitions = Vec::with_capacity(self.replicas.len());
        partitions.extend(self.replicas.values().filter(follows).map(|replica| {
            let log = self.disk.logs.get(&replica.state.tp);
            let fetch_offset = log.map_or(Offset(0), |log| log.log_end_offset());
            let last_fetched_epoch = match truncation {
                Truncation::LeaderEpoch => log.and_then(|log| log.last_epoch()),
                Truncation::HighWatermark => None,
            };
            FetchPartition {
                tp: replica.state.tp,
                fetch_offset,
                last_fetched_epoch,
                current_leader_epoch: replica.state.leader_epoch,
                high_watermark: replica.high_watermark,
            }
        }));
        partitions
    }

    pub(super) fn handle_fetch_response(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        partitions: Vec<FetchPartitionResponse>,
    ) {
        let Some(fetcher) = self.fetchers.get_mut(&from) else {
            return;
        };
        if fetcher.in_flight_since.is_none() || fetcher.correlation != correlation {
            // The answer to a fetch this broker gave up on (timeout, reset, earlier life).
            return;
        }
        fetcher.in_flight_since = None;
        let mut backoff = false;
        for response in partitions {
            backoff |= self.apply_fetched(from, response);
        }
        if backoff {
            if let Some(fetcher) = self.fetchers.get_mut(&from) {
                fetcher.backoff_until = now.plus(self.config.replica_fetch_backoff_ms);
            }
        }
    }

    /// Applies one partition of a fetch response as follower. Returns whether to back off.
    pub(super) fn apply_fetched(&mut self, from: NodeId, response: FetchPartitionResponse) -> bool {
        let tp = response.tp;
        let Some(replica) = self.replicas.get(&tp) else {
            return false;
        };
        if !matches!(replica.role, Role::Follower { leader: Some(l) } if l == from) {
            return false;
        }
        let log = self.disk.logs.get_or_default(tp);
        if let Some((epoch, end_offset)) = response.diverging_epoch {
            // KIP-320: truncate to the smaller of the leader's end for that epoch and ours.
            let own_end = match log.end_offset_for_epoch(epoch) {
                Some((own_epoch, own_end)) if own_epoch == epoch => own_end,
                Some((_, own_end)) => own_end.min(end_offset),
                None => Offset(0),
            };
            let to = end_offset.min(own_end);
            let from_offset = log.log_end_offset();
            // Truncate even when no record goes: the epoch cache loses the epochs that
            // start at `to`, or the next fetch would diverge the same way forever.
            log.truncate_to(to);
            if to < from_offset {
                self.event(ClusterEvent::Truncated {
                    broker: self.id,
                    tp,
                    from: from_offset,
                    to,
                    reason: TruncationReason::DivergingEpoch,
                });
                self.clamp_follower_hw(tp);
            }
            return false;
        }
        match response.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                // Pre-KIP-101 follower: the leader's log is shorter, so cut ours to its end.
                let from_offset = log.log_end_offset();
                let to = response.log_end_offset;
                if to < from_offset {
                    log.truncate_to(to);
                    self.event(ClusterEvent::Truncated {
                        broker: self.id,
                        tp,
                        from: from_offset,
                        to,
                        reason: TruncationReason::OffsetOutOfRange,
                    });
                    self.clamp_follower_hw(tp);
                }
                return false;
            }
            _ => return true,
        }
        log.append_as_follower(&response.records, &response.payloads);
        let end = log.log_end_offset();
        if let Some(every) = self.config.flush_messages {
            if log.unflushed_records() >= every {
                log.flush();
            }
        }
        let new_hw = response.high_watermark.min(end);
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return false;
        };
        if new_hw > replica.high_watermark {
            replica.high_watermark = new_hw;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: false, high_watermark: new_hw });
        }
        false
    }

    /// After a truncation the HW cannot stay above the log end (this is where a
    /// pre-KIP-101 follower's HW moves back).
    pub(super) fn clamp_follower_hw(&mut self, tp: TopicPartition) {
        let end = self.disk.logs.get(&tp).map_or(Offset(0), |log| log.log_end_offset());
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        if replica.high_watermark > end {
            replica.high_watermark = end;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: false, high_watermark: end });
        }
    }
}
