//! The leader side of a partition: produce with acks, parked requests, the high
//! watermark, and serving followers' fetches (with divergence detection, KIP-320).

use super::{Broker, ParkedFetch, ParkedProduce, ProduceRequest, Replica, Role, PARKED_REQUESTS_MAX};
use crate::action::ClusterEvent;
use crate::config::{Acks, Truncation};
use crate::error::ErrorCode;
use crate::log::SequenceCheck;
use crate::messages::{FetchPartition, FetchPartitionResponse, Message, ProduceBatch, ProducePartitionResponse};
use crate::types::{LeaderEpoch, Millis, NodeId, Offset, TopicPartition};

impl Broker {
    // ---- produce ----

    pub(super) fn handle_produce(&mut self, now: Millis, request: ProduceRequest) {
        let from = request.from;
        let busy = self.parked_produces.iter().any(|p| p.from == from)
            || self.queued_produces.iter().any(|p| p.from == from)
            || (!self.verifying.is_empty() && self.verifying.iter().any(|v| v.from() == from));
        if busy {
            // The client's requests wait unread until its parked one is answered.
            if self.queued_produces.len() < PARKED_REQUESTS_MAX {
                self.queued_produces.push_back(request);
            }
            return;
        }
        self.process_produce(now, request);
    }

    pub(super) fn process_produce(&mut self, now: Millis, request: ProduceRequest) {
        if request.transactional_id.is_some() && !request.verified {
            if let Some(request) = self.verify_first(now, request) {
                self.process_verified(now, request);
            }
            return;
        }
        self.process_verified(now, request);
    }

    fn process_verified(&mut self, now: Millis, request: ProduceRequest) {
        let ProduceRequest { from, correlation, acks, timeout_ms, batches, .. } = request;
        let mut items = Vec::with_capacity(batches.len());
        let mut waiting = false;
        for batch in batches {
            let (result, required) = self.append_as_leader(now, &batch, acks);
            if required.is_some() {
                waiting = true;
            }
            items.push((batch.tp, required.unwrap_or(Offset(0)), result));
        }
        // Like ReplicaManager.appendRecords: every partition is appended before parked
        // fetches are checked, so one fetch response carries the whole request's data.
        for (tp, _, result) in &items {
            if result.base_offset.is_some() {
                self.complete_parked_fetches(now, *tp);
            }
        }
        if acks == Acks::None {
            return;
        }
        let parked = ParkedProduce { from, correlation, deadline: now.plus(timeout_ms), items };
        if waiting && self.parked_produces.len() < PARKED_REQUESTS_MAX {
            self.parked_produces.push(parked);
            let index = self.parked_produces.len() - 1;
            self.try_complete_produce(index);
        } else {
            let partitions = parked.items.into_iter().map(|(_, _, result)| result).collect();
            self.send(from, Message::ProduceResponse { correlation, partitions });
        }
    }

    /// Handles the queued requests whose connection is free again, oldest first (bounded:
    /// each pass takes at most the queue's length).
    pub(super) fn run_queued_produces(&mut self, now: Millis) {
        // Only an answered (or dropped) parked request frees a client.
        if !std::mem::take(&mut self.produce_answered) {
            return;
        }
        for _ in 0..self.queued_produces.len() {
            let parked = &self.parked_produces;
            let verifying = &self.verifying;
            let Some(index) = self.queued_produces.iter().enumerate().position(|(i, q)| {
                !parked.iter().any(|p| p.from == q.from)
                    && !verifying.iter().any(|v| v.from() == q.from)
                    && !self.queued_produces.iter().take(i).any(|earlier| earlier.from == q.from)
            }) else {
                return;
            };
            let Some(request) = self.queued_produces.remove(index) else { return };
            self.process_produce(now, request);
        }
    }

    /// Appends one batch as leader. Returns the result and, for acks=all, the offset the
    /// high watermark must reach before the batch is acknowledged.
    pub(super) fn append_as_leader(
        &mut self,
        now: Millis,
        batch: &ProduceBatch,
        acks: Acks,
    ) -> (ProducePartitionResponse, Option<Offset>) {
        let tp = batch.tp;
        let fail = |error| (ProducePartitionResponse { tp, error, base_offset: None }, None);
        let leader_epoch = match self.leader_epoch_for_append(tp, acks) {
            Ok(epoch) => epoch,
            Err(error) => return fail(error),
        };
        let log = self.disk.logs.get_or_default(tp);
        if let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) {
            if let (Some(stamp), Some(last)) = (first.stamp, last.stamp) {
                match log.check_sequence(stamp, last.sequence) {
                    Err(error) => return fail(error),
                    Ok(SequenceCheck::Duplicate(original)) => {
                        // Answered with the original offsets; acks=all still waits for
                        // them to be replicated (ReplicaManager's delayed produce).
                        let result = ProducePartitionResponse {
                            tp,
                            error: ErrorCode::None,
                            base_offset: Some(original.first_offset),
                        };
                        return (result, (acks == Acks::All).then_some(original.last_offset.next()));
                    }
                    Ok(SequenceCheck::Append) => {}
                }
            }
        }
        let base = log.append_as_leader(leader_epoch, &batch.records);
        self.leader_appends += 1;
        let end = log.log_end_offset();
        if let Some(every) = self.config.flush_messages {
            if log.unflushed_records() >= every {
                log.flush();
            }
        }
        self.maybe_increment_high_watermark(now, tp);
        let result = ProducePartitionResponse { tp, error: ErrorCode::None, base_offset: Some(base) };
        let required = (acks == Acks::All).then_some(end);
        (result, required)
    }

    /// The leader epoch an append to `tp` with `acks` goes under: this broker must lead
    /// `tp` (else NOT_LEADER_OR_FOLLOWER), and for acks=all the ISR must hold at least
    /// min.insync.replicas (else NOT_ENOUGH_REPLICAS). Produces and the coordinators'
    /// records and markers (all acks=all) check the same way.
    pub(super) fn leader_epoch_for_append(&self, tp: TopicPartition, acks: Acks) -> Result<LeaderEpoch, ErrorCode> {
        let replica = self.replicas.get(&tp).filter(|r| matches!(r.role, Role::Leader { .. }));
        let Some(replica) = replica else {
            return Err(ErrorCode::NotLeaderOrFollower);
        };
        if acks == Acks::All && replica.state.isr.len() < self.effective_min_isr(tp) {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        Ok(replica.state.leader_epoch)
    }

    pub(super) fn effective_min_isr(&self, tp: TopicPartition) -> usize {
        let configured = Self::configured_min_isr(&self.topics, tp.topic.0);
        let replicas = self.replicas.get(&tp).map_or(1, |replica| replica.state.replicas.len());
        configured.min(replicas)
    }

    pub(super) fn try_complete_produce(&mut self, index: usize) -> bool {
        let parked = &mut self.parked_produces[index];
        let mut done = true;
        for (tp, required, result) in parked.items.iter_mut() {
            if result.error != ErrorCode::None || result.base_offset.is_none() {
                continue;
            }
            let Some(replica) = self.replicas.get(tp) else {
                *result =
                    ProducePartitionResponse { tp: *tp, error: ErrorCode::NotLeaderOrFollower, base_offset: None };
                continue;
            };
            let Role::Leader { pending_isr, .. } = &replica.role else {
                *result =
                    ProducePartitionResponse { tp: *tp, error: ErrorCode::NotLeaderOrFollower, base_offset: None };
                continue;
            };
            if replica.high_watermark < *required {
                done = false;
                continue;
            }
            let maximal_isr =
                pending_isr.as_ref().map_or(replica.state.isr.len(), |(isr, _)| isr.len().max(replica.state.isr.len()));
            let configured = Self::configured_min_isr(&self.topics, tp.topic.0);
            if maximal_isr < configured.min(replica.state.replicas.len()) {
                result.error = ErrorCode::NotEnoughReplicasAfterAppend;
            }
            // Mark as answered by clearing the requirement.
            *required = Offset(0);
        }
        if done {
            self.produce_answered = true;
            let parked = self.parked_produces.swap_remove(index);
            let partitions = parked.items.into_iter().map(|(_, _, result)| result).collect();
            self.send(parked.from, Message::ProduceResponse { correlation: parked.correlation, partitions });
        }
        done
    }

    pub(super) fn complete_parked_produces(&mut self, tp: TopicPartition) {
        let mut index = 0;
        while index < self.parked_produces.len() {
            let touches = self.parked_produces[index].items.iter().any(|(item_tp, _, _)| *item_tp == tp);
            if touches && self.try_complete_produce(index) {
                continue;
            }
            index += 1;
        }
    }

    /// After `tp`'s HW rose to `hw`: only a request whose `tp` item waits for an offset at
    /// or below `hw` can change (every other item was checked when its own HW moved).
    fn complete_parked_produces_below(&mut self, tp: TopicPartition, hw: Offset) {
        let mut index = 0;
        while index < self.parked_produces.len() {
            let newly_met = self.parked_produces[index]
                .items
                .iter()
                .any(|(item_tp, required, _)| *item_tp == tp && *required > Offset(0) && *required <= hw);
            if newly_met && self.try_complete_produce(index) {
                continue;
            }
            index += 1;
        }
    }

    pub(super) fn fail_parked_produces(&mut self, tp: TopicPartition, error: ErrorCode) {
        for parked in &mut self.parked_produces {
            for (item_tp, _, result) in parked.items.iter_mut() {
                if *item_tp == tp && result.error == ErrorCode::None {
                    *result = ProducePartitionResponse { tp, error, base_offset: None };
                }
            }
        }
        self.complete_parked_produces(tp);
    }

    pub(super) fn expire_parked_produces(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_produces.len() {
            if self.parked_produces[index].deadline > now {
                index += 1;
                continue;
            }
            let parked = self.parked_produces.swap_remove(index);
            self.produce_answered = true;
            let partitions = parked
                .items
                .into_iter()
                .map(|(tp, required, result)| {
                    if required > Offset(0) && result.error == ErrorCode::None {
                        ProducePartitionResponse { tp, error: ErrorCode::RequestTimedOut, base_offset: None }
                    } else {
                        result
                    }
                })
                .collect();
            self.send(parked.from, Message::ProduceResponse { correlation: parked.correlation, partitions });
        }
    }

    // ---- high watermark ----

    /// Kafka's `maybeIncrementLeaderHW`: the HW is the least log end offset of the leader
    /// and of every follower in the maximal ISR or caught up within the lag time.
    pub(super) fn maybe_increment_high_watermark(&mut self, now: Millis, tp: TopicPartition) {
        let strict_min_isr = self.config.protocol.eligible_leader_replicas;
        let lag_max = self.config.replica_lag_time_max_ms;
        let fenced = &self.ineligible_brokers;
        let Some(log_end) = self.disk.logs.get(&tp).map(|log| log.log_end_offset()) else {
            return;
        };
        let Some(replica) = self.replicas.get_mut(&tp) else {
            return;
        };
        let Role::Leader { followers, pending_isr, .. } = &replica.role else {
            return;
        };
        // `effective_min_isr` inlined: this runs on most follower fetches.
        let configured = Self::configured_min_isr(&self.topics, tp.topic.0);
        let min_isr = configured.min(replica.state.replicas.len());
        if strict_min_isr && replica.state.isr.len() < min_isr {
            // KIP-966: the HW only advances while the ISR is at least min ISR.
            return;
        }
        let mut new_hw = log_end;
        for (follower, progress) in followers.iter() {
            let in_maximal_isr = replica.state.isr.contains(follower)
                || pending_isr.as_ref().is_some_and(|(isr, _)| isr.contains(follower));
            // KIP-841: a fenced replica cannot join the ISR, so it does not hold the HW.
            let caught_up =
                progress.last_caught_up.is_some_and(|t| now.since(t) <= lag_max) && !fenced.contains(follower);
            if in_maximal_isr || caught_up {
                new_hw = new_hw.min(progress.log_end);
            }
        }
        if new_hw > replica.high_watermark {
            replica.high_watermark = new_hw;
            self.event(ClusterEvent::HighWatermark { broker: self.id, tp, leader: true, high_watermark: new_hw });
            self.complete_parked_produces_below(tp, new_hw);
            if self.config.groups.is_some() {
                self.complete_consumer_fetches(tp);
                self.complete_group_appends(now, tp, new_hw);
            }
            if self.config.txn.is_some() {
                self.txn_high_watermark_moved(now, tp, new_hw);
            }
        }
    }

    pub(super) fn checkpoint_high_watermarks(&mut self) {
        for (tp, replica) in &self.replicas {
            if let Some(log) = self.disk.logs.get_mut(tp) {
                log.checkpoint_hw(replica.high_watermark);
            }
        }
    }

    // ---- fetch (leader side) ----

    pub(super) fn handle_fetch(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        max_wait_ms: u64,
        partitions: Vec<FetchPartition>,
    ) {
        let appends_before = self.leader_appends;
        let mut responses = Vec::with_capacity(partitions.len());
        let mut any_data = false;
        for request in &partitions {
            let response = self.read_for_follower(now, from, request);
            any_data |=
                !response.records.is_empty() || response.error != ErrorCode::None || response.diverging_epoch.is_some();
            if news_for_follower(request, &response) {
                responses.push(response);
            }
        }
        // Reading moves follower progress, which can move a high watermark and so set off
        // appends (a coordinator's answer, markers) to partitions read already: answer
        // then, and the follower's next fetch takes them, rather than park past them.
        let park = !any_data
            && max_wait_ms > 0
            && self.parked_fetches.len() < PARKED_REQUESTS_MAX
            && self.leader_appends == appends_before;
        if park {
            self.parked_fetches.push(ParkedFetch { from, correlation, deadline: now.plus(max_wait_ms), partitions });
        } else {
            self.send(from, Message::FetchResponse { correlation, partitions: responses });
        }
    }

    pub(super) fn read_for_follower(
        &mut self,
        now: Millis,
        follower: NodeId,
        request: &FetchPartition,
    ) -> FetchPartitionResponse {
        let tp = request.tp;
        let truncation = self.config.protocol.truncation;
        let max_records = self.config.replica_fetch_max_records;
        let mut response = FetchPartitionResponse {
            tp,
            error: ErrorCode::None,
            high_watermark: Offset(0),
            log_end_offset: Offset(0),
            diverging_epoch: None,
            records: Vec::new(),
            payloads: Vec::new(),
        };
        // One lookup each for the replica and its log: this runs for every partition of
        // every follower fetch, the hottest path of a run.
        let Some(replica) = self.replicas.get_mut(&tp) else {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        };
        if !matches!(replica.role, Role::Leader { .. }) {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        }
        if request.current_leader_epoch != replica.state.leader_epoch {
            response.error = if request.current_leader_epoch < replica.state.leader_epoch {
                ErrorCode::FencedLeaderEpoch
            } else {
                ErrorCode::UnknownLeaderEpoch
            };
            return response;
        }
        let log = self.disk.logs.get_or_default(tp);
        response.log_end_offset = log.log_end_offset();
        response.high_watermark = replica.high_watermark;
        if truncation == Truncation::LeaderEpoch {
            if let Some(last_fetched) = request.last_fetched_epoch {
                let diverging = match log.end_offset_for_epoch(last_fetched) {
                    Some((epoch, end)) if epoch == last_fetched && end >= request.fetch_offset => None,
                    Some((epoch, end)) => Some((epoch, end)),
                    None => Some((LeaderEpoch(0), Offset(0))),
                };
                if diverging.is_some() {
                    response.diverging_epoch = diverging;
                    return response;
                }
            }
        }
        if request.fetch_offset > log.log_end_offset() {
            response.error = ErrorCode::OffsetOutOfRange;
            return response;
        }
        response.records = log.read(request.fetch_offset, max_records).to_vec();
        if !response.records.is_empty() {
            let end = Offset(request.fetch_offset.0 + response.records.len() as u64);
            response.payloads = log.payloads_in(request.fetch_offset, end);
        }
        let leader_end = log.log_end_offset();
        // `Partition.isReplicaIsrEligible` (KIP-841): a follower this broker's metadata
        // calls fenced or in controlled shutdown is not proposed for the ISR (the
        // controller would refuse it with INELIGIBLE_REPLICA, and the pending proposal's
        // maximal ISR would count it for the HW meanwhile).
        let isr_eligible = !self.ineligible_brokers.contains(&follower);
        let progress = follower_fetched(replica, now, follower, request.fetch_offset, leader_end, isr_eligible);
        if let Some(new_isr) = progress.new_isr {
            self.request_isr_change(now, tp, new_isr);
        }
        // Partition.updateFollowerFetchState: the HW can only move when the follower's
        // log end did.
        if progress.end_moved {
            self.maybe_increment_high_watermark(now, tp);
            response.high_watermark = self.replicas.get(&tp).map_or(response.high_watermark, |r| r.high_watermark);
        }
        response
    }

    pub(super) fn complete_parked_fetches(&mut self, now: Millis, tp: TopicPartition) {
        let mut index = 0;
        while index < self.parked_fetches.len() {
            if self.parked_fetches[index].partitions.iter().any(|p| p.tp == tp) {
                let parked = self.parked_fetches.swap_remove(index);
                self.answer_parked_fetch(now, parked);
            } else {
                index += 1;
            }
        }
    }

    pub(super) fn expire_parked_fetches(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_fetches.len() {
            if self.parked_fetches[index].deadline <= now {
                let parked = self.parked_fetches.swap_remove(index);
                self.answer_parked_fetch(now, parked);
            } else {
                index += 1;
            }
        }
    }

    pub(super) fn answer_parked_fetch(&mut self, now: Millis, parked: ParkedFetch) {
        let mut responses = Vec::with_capacity(parked.partitions.len());
        for request in &parked.partitions {
            let response = self.read_for_follower(now, parked.from, request);
            if news_for_follower(request, &response) {
                responses.push(response);
            }
        }
        self.send(parked.from, Message::FetchResponse { correlation: parked.correlation, partitions: responses });
    }
}

/// Whether a partition's answer to a follower's fetch tells it anything: records, an
/// error, a divergence, or a high watermark above the follower's that its log end
/// allows. The rest stay out of the answer, as KIP-227's incremental fetch responses
/// leave out partitions with nothing new (`FetchSession`'s `maybeUpdateResponseData`);
/// the follower would do nothing with them.
fn news_for_follower(request: &FetchPartition, response: &FetchPartitionResponse) -> bool {
    !response.records.is_empty()
        || response.error != ErrorCode::None
        || response.diverging_epoch.is_some()
        || response.high_watermark.min(request.fetch_offset) > request.high_watermark
}

/// What a follower's fetch changed on the leader.
struct FollowerFetched {
    /// An ISR the leader should ask for (the follower caught up).
    new_isr: Option<Vec<NodeId>>,
    /// Whether the follower's log end moved (only then can the HW move).
    end_moved: bool,
}

/// Kafka's `updateFollowerFetchState`: a follower is caught up when it fetched from the
/// leader's end, or from the end the leader had at the follower's previous fetch; it may
/// join the ISR once it reached the HW and the current epoch's start.
fn follower_fetched(
    replica: &mut Replica,
    now: Millis,
    follower: NodeId,
    fetch_offset: Offset,
    leader_end: Offset,
    isr_eligible: bool,
) -> FollowerFetched {
    let unchanged = FollowerFetched { new_isr: None, end_moved: false };
    let Role::Leader { followers, pending_isr, epoch_start_offset } = &mut replica.role else {
        return unchanged;
    };
    let Some(progress) = followers.get_mut(&follower) else {
        return unchanged;
    };
    if fetch_offset >= leader_end {
        progress.last_caught_up = Some(now);
    } else if fetch_offset >= progress.last_fetch_leader_log_end && progress.last_fetch_time.is_some() {
        progress.last_caught_up = progress.last_caught_up.max(progress.last_fetch_time);
    }
    let previous_end = std::mem::replace(&mut progress.log_end, fetch_offset);
    progress.last_fetch_time = Some(now);
    progress.last_fetch_leader_log_end = leader_end;
    let expand = isr_eligible
        && !replica.state.isr.contains(&follower)
        && pending_isr.is_none()
        && fetch_offset >= replica.high_watermark
        && fetch_offset >= *epoch_start_offset;
    let new_isr = expand.then(|| {
        let mut isr = replica.state.isr.clone();
        isr.push(follower);
        isr
    });
    FollowerFetched { new_isr, end_moved: fetch_offset != previous_end }
}
