//! The broker side of consumer groups: FindCoordinator, the group coordinator for the
//! `__consumer_offsets` partitions this broker leads (its records appended with acks=all
//! semantics and answered once below the high watermark), consumer fetches up to the high
//! watermark with long polling, and ListOffsets.
//!
//! A broker that becomes leader of an offsets partition loads that partition's groups
//! from its own log (GroupMetadataManager's `loadGroupsAndOffsets`, which reads to the
//! log end); one that stops leading it unloads them. Requests for a group whose partition
//! this broker does not coordinate are answered NOT_COORDINATOR.

use super::{Broker, Role, PARKED_REQUESTS_MAX};
use crate::action::Action;
use crate::config::Acks;
use crate::error::ErrorCode;
use crate::group::coordinator::{
    offsets_partition_for, CoordinatorOutput, GroupRequest, GroupResponse, JoinResponse, LoadedRecord, OffsetsRecord,
};
use crate::group::GroupEvent;
use crate::log::{Payload, Record};
use crate::messages::{ConsumerFetchPartition, ConsumerFetchPartitionResponse, Message};
use crate::types::{BatchKind, Millis, NodeId, Offset, ProducerId, Stamp, TopicPartition, WriteId};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Producer id of the coordinator's own records (never a client's).
pub const COORDINATOR_PRODUCER: ProducerId = ProducerId(u32::MAX);
/// Write ids of internal records start here (client writes count up from 0).
pub const INTERNAL_WRITE_BASE: u64 = 1 << 62;
/// Most records one consumer fetch returns per partition (`max.partition.fetch.bytes`).
pub const CONSUMER_FETCH_MAX_RECORDS: usize = 500;

/// An append of the coordinator waiting for the offsets partition's high watermark.
#[derive(Clone, Debug)]
pub(super) struct GroupAppend {
    token: u64,
    tp: TopicPartition,
    required: Offset,
    deadline: Millis,
}

#[derive(Clone, Debug)]
pub(super) struct ParkedConsumerFetch {
    from: NodeId,
    correlation: u64,
    deadline: Millis,
    read_committed: bool,
    partitions: Vec<ConsumerFetchPartition>,
}

impl Broker {
    fn offsets_tp(&self, group: &str) -> Option<(TopicPartition, u32)> {
        let groups = self.config.groups.as_ref()?;
        let partition = offsets_partition_for(group, groups.offsets_partitions);
        Some((TopicPartition { topic: groups.offsets_topic, partition }, groups.offsets_partitions))
    }

    pub(super) fn is_offsets_topic(&self, tp: TopicPartition) -> bool {
        self.config.groups.as_ref().is_some_and(|g| g.offsets_topic == tp.topic)
    }

    pub(super) fn handle_find_coordinator(&mut self, from: NodeId, correlation: u64, group: &str) {
        let coordinator = self.offsets_tp(group).and_then(|(tp, _)| self.leaders.get(&tp).and_then(|(l, _)| *l));
        let error = if coordinator.is_some() { ErrorCode::None } else { ErrorCode::CoordinatorNotAvailable };
        self.send(from, Message::FindCoordinatorResponse { correlation, error, coordinator });
    }

    pub(super) fn handle_group_request(&mut self, now: Millis, from: NodeId, correlation: u64, request: GroupRequest) {
        let group = group_of(&request).to_string();
        let coordinates = self.offsets_tp(&group).is_some_and(|(tp, _)| self.coordinated.contains(&tp.partition));
        if !coordinates {
            let response = error_response(&request, ErrorCode::NotCoordinator);
            self.send(from, Message::GroupResponse { correlation, response: Box::new(response) });
            return;
        }
        self.coordinator.handle_request(now, from, correlation, request);
        self.drain_coordinator(now);
    }

    /// Moves the coordinator's outputs: answers to the network, appends to the log.
    pub(super) fn drain_coordinator(&mut self, now: Millis) {
        while let Some(output) = self.coordinator.poll_output() {
            match output {
                CoordinatorOutput::Respond { to, correlation, response } => {
                    self.send(to, Message::GroupResponse { correlation, response: Box::new(response) })
                }
                CoordinatorOutput::Append { token, group, records, txn } => {
                    self.append_group_records(now, token, &group, records, txn)
                }
                CoordinatorOutput::OffsetsStored {
                    group,
                    member_id,
                    generation,
                    group_generation,
                    validated_at,
                    offsets,
                } => self.group_event(GroupEvent::OffsetsStored {
                    group,
                    member_id,
                    generation,
                    group_generation,
                    validated_at,
                    offsets,
                }),
                CoordinatorOutput::MemberRemoved { group, member_id, generation, reason } => {
                    self.group_event(GroupEvent::MemberRemoved {
                        group,
                        member_id,
                        generation,
                        reason: reason.to_string(),
                    })
                }
                CoordinatorOutput::Rebalanced { group, generation, members } => {
                    self.group_event(GroupEvent::Rebalanced { group, generation, members })
                }
            }
        }
    }

    fn append_group_records(
        &mut self,
        now: Millis,
        token: u64,
        group: &str,
        records: Vec<OffsetsRecord>,
        txn: Option<(NonZeroU32, u16)>,
    ) {
        let Some((tp, _)) = self.offsets_tp(group) else {
            return self.coordinator.handle_append_result(now, token, ErrorCode::NotCoordinator);
        };
        // The coordinator appends with acks=all (`offsets.commit.required.acks` = -1).
        let epoch = match self.leader_epoch_for_append(tp, Acks::All) {
            Ok(epoch) => epoch,
            Err(error) => return self.coordinator.handle_append_result(now, token, error),
        };
        if self.group_appends.len() >= PARKED_REQUESTS_MAX {
            return self.coordinator.handle_append_result(now, token, ErrorCode::RequestTimedOut);
        }
        let log = self.disk.logs.get_or_default(tp);
        if let Some((pid, producer_epoch)) = txn {
            // A transactional batch goes through the producer-state epoch check
            // (`ProducerAppendInfo.checkProducerEpoch`): a fenced producer's is refused.
            if log.check_marker(pid, producer_epoch, false).is_err() {
                return self.coordinator.handle_append_result(now, token, ErrorCode::InvalidProducerEpoch);
            }
        }
        for (index, payload) in records.into_iter().enumerate() {
            let mut record = internal_record(log.log_end_offset(), now);
            if let Some((pid, producer_epoch)) = txn {
                let index = index.min(u16::MAX as usize) as u16;
                record.stamp =
                    Some(Stamp { pid, epoch: producer_epoch, index, sequence: 0, kind: BatchKind::Transactional });
            }
            log.append_internal(epoch, record, Arc::new(Payload::Offsets(payload)));
            self.leader_appends += 1;
        }
        let required = log.log_end_offset();
        let deadline = now.plus(self.config.groups.as_ref().map_or(5_000, |g| g.commit_timeout_ms));
        self.group_appends.push(GroupAppend { token, tp, required, deadline });
        self.complete_parked_fetches(now, tp);
        self.maybe_increment_high_watermark(now, tp);
    }

    /// After `tp`'s HW moved: coordinator appends now below it are durable.
    pub(super) fn complete_group_appends(&mut self, now: Millis, tp: TopicPartition, hw: Offset) {
        if self.group_appends.is_empty() {
            return;
        }
        let mut index = 0;
        let mut any = false;
        while index < self.group_appends.len() {
            let append = &self.group_appends[index];
            if append.tp == tp && append.required <= hw {
                let token = self.group_appends.remove(index).token;
                self.coordinator.handle_append_result(now, token, ErrorCode::None);
                any = true;
            } else {
                index += 1;
            }
        }
        if any {
            self.drain_coordinator(now);
        }
    }

    fn fail_group_appends(&mut self, now: Millis, tp: Option<TopicPartition>, error: ErrorCode) {
        let mut index = 0;
        while index < self.group_appends.len() {
            let append = &self.group_appends[index];
            let expired = append.deadline <= now;
            if tp.is_some_and(|tp| append.tp == tp) || expired {
                let token = self.group_appends.remove(index).token;
                let error = if expired && tp.is_none() { ErrorCode::RequestTimedOut } else { error };
                self.coordinator.handle_append_result(now, token, error);
            } else {
                index += 1;
            }
        }
    }

    /// Leadership of an offsets partition changed: load or unload its groups.
    pub(super) fn offsets_leadership_changed(&mut self, now: Millis, tp: TopicPartition, leader: bool) {
        let Some(partitions) = self.config.groups.as_ref().map(|g| g.offsets_partitions) else {
            return;
        };
        if leader {
            let records = self.disk.logs.get(&tp).map_or_else(Vec::new, loaded_records);
            self.coordinator.load_with_txns(now, tp.partition, partitions, &records);
            self.coordinated.insert(tp.partition);
            self.group_event(GroupEvent::CoordinatorLoaded { partition: tp.partition, records: records.len() });
        } else if self.coordinated.remove(&tp.partition) {
            self.fail_group_appends(now, Some(tp), ErrorCode::NotLeaderOrFollower);
            self.coordinator.unload(tp.partition, partitions);
            self.group_event(GroupEvent::CoordinatorUnloaded { partition: tp.partition });
        }
        self.drain_coordinator(now);
    }

    pub(super) fn group_timeouts(&mut self, now: Millis) {
        if self.config.groups.is_none() {
            return;
        }
        if self.group_appends.iter().any(|a| a.deadline <= now) {
            self.fail_group_appends(now, None, ErrorCode::RequestTimedOut);
        }
        if self.coordinator.poll_timeout().is_some_and(|at| at <= now) {
            self.coordinator.handle_timeout(now);
        }
        self.drain_coordinator(now);
        self.expire_consumer_fetches(now);
    }

    pub(super) fn group_deadline(&self) -> Option<Millis> {
        let mut next = self.coordinator.poll_timeout();
        let mut consider = |at: Millis| next = Some(next.map_or(at, |n: Millis| n.min(at)));
        for append in &self.group_appends {
            consider(append.deadline);
        }
        for parked in &self.parked_consumer_fetches {
            consider(parked.deadline);
        }
        next
    }

    // ---- consumer fetch and list offsets ----

    fn read_for_consumer(
        &mut self,
        request: &ConsumerFetchPartition,
        read_committed: bool,
    ) -> ConsumerFetchPartitionResponse {
        let tp = request.tp;
        let mut response = ConsumerFetchPartitionResponse {
            tp,
            fetch_offset: request.fetch_offset,
            error: ErrorCode::None,
            high_watermark: Offset(0),
            last_stable_offset: Offset(0),
            records: Vec::new(),
            aborted: Vec::new(),
        };
        let Some(replica) = self.replicas.get(&tp).filter(|r| matches!(r.role, Role::Leader { .. })) else {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        };
        let hw = replica.high_watermark;
        let Some(log) = self.disk.logs.get_mut(&tp) else {
            response.error = ErrorCode::NotLeaderOrFollower;
            return response;
        };
        response.high_watermark = hw;
        response.last_stable_offset = if read_committed { log.last_stable_offset(hw) } else { hw };
        // Kafka's read: past the log end is out of range; between the HW (the LSO for
        // read_committed) and the log end a consumer gets nothing yet.
        if request.fetch_offset > log.log_end_offset() {
            response.error = ErrorCode::OffsetOutOfRange;
            return response;
        }
        let end = response.last_stable_offset;
        let visible = end.0.saturating_sub(request.fetch_offset.0) as usize;
        let records = log.read(request.fetch_offset, visible.min(CONSUMER_FETCH_MAX_RECORDS));
        // The HW and the LSO fall between batches, so whole batches end below them; never
        // past them all the same.
        let records = &records[..records.len().min(visible)];
        response.records = records.to_vec();
        if read_committed && !records.is_empty() {
            let to = Offset(request.fetch_offset.0 + records.len() as u64);
            response.aborted = log.aborted_between(request.fetch_offset, to);
        }
        response
    }

    pub(super) fn handle_consumer_fetch(
        &mut self,
        now: Millis,
        from: NodeId,
        correlation: u64,
        max_wait_ms: u64,
        read_committed: bool,
        partitions: Vec<ConsumerFetchPartition>,
    ) {
        let mut responses = std::mem::take(&mut self.consumer_fetch_scratch);
        for partition in &partitions {
            let response = self.read_for_consumer(partition, read_committed);
            responses.push(response);
        }
        let any = responses.iter().any(|r| !r.records.is_empty() || r.error != ErrorCode::None);
        if !any && max_wait_ms > 0 && self.parked_consumer_fetches.len() < PARKED_REQUESTS_MAX {
            let deadline = now.plus(max_wait_ms);
            let parked = ParkedConsumerFetch { from, correlation, deadline, read_committed, partitions };
            self.parked_consumer_fetches.push(parked);
            responses.clear();
            self.consumer_fetch_scratch = responses;
            return;
        }
        self.send(from, Message::ConsumerFetchResponse { correlation, partitions: responses });
    }

    /// After `tp`'s HW moved (new records visible to consumers) or its leadership went.
    pub(super) fn complete_consumer_fetches(&mut self, tp: TopicPartition) {
        if self.parked_consumer_fetches.is_empty() {
            return;
        }
        let mut index = 0;
        while index < self.parked_consumer_fetches.len() {
            if self.parked_consumer_fetches[index].partitions.iter().any(|p| p.tp == tp) {
                let parked = self.parked_consumer_fetches.swap_remove(index);
                self.answer_consumer_fetch(parked);
            } else {
                index += 1;
            }
        }
    }

    fn expire_consumer_fetches(&mut self, now: Millis) {
        let mut index = 0;
        while index < self.parked_consumer_fetches.len() {
            if self.parked_consumer_fetches[index].deadline <= now {
                let parked = self.parked_consumer_fetches.swap_remove(index);
                self.answer_consumer_fetch(parked);
            } else {
                index += 1;
            }
        }
    }

    fn answer_consumer_fetch(&mut self, parked: ParkedConsumerFetch) {
        let partitions = parked.partitions.iter().map(|p| self.read_for_consumer(p, parked.read_committed)).collect();
        self.send(parked.from, Message::ConsumerFetchResponse { correlation: parked.correlation, partitions });
    }

    pub(super) fn handle_list_offsets(
        &mut self,
        from: NodeId,
        correlation: u64,
        partitions: Vec<(TopicPartition, bool)>,
    ) {
        let answers = partitions
            .into_iter()
            .map(|(tp, latest)| match self.replicas.get(&tp) {
                Some(replica) if matches!(replica.role, Role::Leader { .. }) => {
                    let start = self.disk.logs.get(&tp).map_or(Offset(0), |log| log.log_start_offset());
                    (tp, ErrorCode::None, if latest { replica.high_watermark } else { start })
                }
                _ => (tp, ErrorCode::NotLeaderOrFollower, Offset(0)),
            })
            .collect();
        self.send(from, Message::ListOffsetsResponse { correlation, partitions: answers });
    }

    fn group_event(&mut self, event: GroupEvent) {
        self.outbox.push_back(Action::Group(Box::new(event)));
    }

    /// A transaction marker is durable in `tp`: if this broker coordinates that offsets
    /// partition, the producer's pending offset commits there end with it.
    #[cold]
    pub(super) fn offsets_marker_durable(&mut self, tp: TopicPartition, producer_id: NonZeroU32, commit: bool) {
        let Some(partitions) = self.config.groups.as_ref().map(|g| g.offsets_partitions) else { return };
        if self.is_offsets_topic(tp) && self.coordinated.contains(&tp.partition) {
            self.coordinator.txn_completed(tp.partition, partitions, producer_id, commit);
        }
    }
}

/// An offsets partition's records in log order, for a loading coordinator: its own,
/// producers' transactional commits, and transaction markers.
fn loaded_records(log: &crate::log::PartitionLog) -> Vec<LoadedRecord> {
    let end = log.log_end_offset();
    let payloads = log.payloads_in(Offset(0), end);
    let mut out = Vec::with_capacity(payloads.len());
    let mut next = 0usize;
    for offset in log.log_start_offset().0..end.0 {
        let Some(entry) = log.entry(Offset(offset)) else { continue };
        let stamp = entry.record.stamp;
        if let Some(stamp) = stamp.filter(|s| s.kind.is_control()) {
            out.push(LoadedRecord::Marker { producer_id: stamp.pid, commit: stamp.kind == BatchKind::Commit });
            continue;
        }
        while next < payloads.len() && payloads[next].0 .0 < offset {
            next += 1;
        }
        let Some((_, payload)) = payloads.get(next).filter(|(at, _)| at.0 == offset) else { continue };
        let Some(record) = payload.as_offsets() else { continue };
        match stamp.filter(|s| s.kind == BatchKind::Transactional) {
            Some(stamp) => out.push(LoadedRecord::Txn(stamp.pid, record.clone())),
            None => out.push(LoadedRecord::Plain(record.clone())),
        }
    }
    out
}

/// The record an internal topic holds at `offset` for a coordinator's payload (write ids
/// from `INTERNAL_WRITE_BASE`, never a client's).
pub(super) fn internal_record(offset: Offset, now: Millis) -> Record {
    Record {
        write: WriteId(INTERNAL_WRITE_BASE + offset.0),
        key: None,
        producer: COORDINATOR_PRODUCER,
        sequence: offset.0 as u32,
        timestamp: now,
        stamp: None,
    }
}

fn group_of(request: &GroupRequest) -> &str {
    match request {
        GroupRequest::Join(join) => &join.group,
        GroupRequest::Sync { group, .. }
        | GroupRequest::Heartbeat { group, .. }
        | GroupRequest::Leave { group, .. }
        | GroupRequest::OffsetCommit { group, .. }
        | GroupRequest::OffsetFetch { group, .. }
        | GroupRequest::TxnOffsetCommit { group, .. } => group,
    }
}

/// The answer to `request` that carries only `error`.
pub fn error_response(request: &GroupRequest, error: ErrorCode) -> GroupResponse {
    match request {
        GroupRequest::Join(join) => GroupResponse::Join(JoinResponse::failed(&join.member_id, error)),
        GroupRequest::Sync { .. } => GroupResponse::Sync { error, assignment: Vec::new() },
        GroupRequest::Heartbeat { .. } => GroupResponse::Heartbeat { error },
        GroupRequest::Leave { members, .. } => {
            GroupResponse::Leave { error, members: members.iter().map(|m| (m.clone(), error)).collect() }
        }
        GroupRequest::OffsetCommit { offsets, .. } => {
            GroupResponse::OffsetCommit { error, partitions: offsets.iter().map(|(tp, _)| (*tp, error)).collect() }
        }
        GroupRequest::OffsetFetch { .. } => GroupResponse::OffsetFetch { error, offsets: Vec::new() },
        GroupRequest::TxnOffsetCommit { offsets, .. } => {
            GroupResponse::TxnOffsetCommit { error, partitions: offsets.iter().map(|(tp, _)| (*tp, error)).collect() }
        }
    }
}
