//! Offsets: commit validation (generation and member fencing), commits made durable
//! through `__consumer_offsets`, offset fetches, and loading a partition's groups on
//! coordinator failover (GroupMetadataManager's `storeOffsets` / `loadGroupsAndOffsets`).

use super::{
    offsets_partition_for, CoordinatorOutput, Group, GroupCoordinator, GroupResponse, GroupState, JoinResponse,
    LoadedRecord, Member, OffsetsRecord, PendingAppend, PendingTxnOffsets, Waiter,
};
use crate::error::ErrorCode;
use crate::types::{Millis, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::num::NonZeroU32;

impl GroupCoordinator {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_commit(
        &mut self,
        now: Millis,
        waiter: Waiter,
        name: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        offsets: Vec<(TopicPartition, Offset)>,
    ) {
        let error = self.commit_error(name, member_id, instance, generation);
        if error != ErrorCode::None {
            let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
            return self.respond(waiter, GroupResponse::OffsetCommit { error, partitions });
        }
        // A group that does not exist takes commits outside group management (generation -1).
        let group = self.groups.entry(name.to_string()).or_insert_with(Group::new);
        let group_generation = group.generation;
        // doCommitOffsets: a member's commit in Stable or PreparingRebalance counts as a
        // heartbeat (`completeAndScheduleNextHeartbeatExpiration`), so a member that commits
        // while its heartbeats are late keeps its session.
        let live = matches!(group.state, GroupState::Stable | GroupState::PreparingRebalance);
        if let Some(member) = group.members.get_mut(member_id).filter(|_| live && generation == group.generation) {
            member.expires_at = now.plus(member.session_timeout_ms);
        }
        let records = offsets
            .iter()
            .map(|(tp, offset)| OffsetsRecord::Commit { group: name.to_string(), tp: *tp, offset: *offset })
            .collect();
        let pending = PendingAppend::Commit {
            from: waiter.from,
            correlation: waiter.correlation,
            offsets: offsets.clone(),
            member_id: member_id.to_string(),
            generation,
            group_generation,
            validated_at: now,
        };
        if self.append(name, records, pending).is_none() {
            let error = ErrorCode::CoordinatorNotAvailable;
            let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
            self.respond(waiter, GroupResponse::OffsetCommit { error, partitions });
        }
    }

    /// Kafka's checks in `handleCommitOffsets` / `validateOffsetCommit`, in their order. With fencing off every
    /// commit is taken, whoever sends it.
    fn commit_error(&self, name: &str, member_id: &str, instance: Option<&str>, generation: i32) -> ErrorCode {
        if !self.config.fencing {
            return ErrorCode::None;
        }
        let Some(group) = self.groups.get(name) else {
            return if generation < 0 { ErrorCode::None } else { ErrorCode::IllegalGeneration };
        };
        if generation < 0 && group.state == GroupState::Empty {
            return ErrorCode::None;
        }
        // validateOffsetCommit (member, instance, generation) before the state check of
        // doCommitOffsets: a zombie mid-sync learns it is out, not that a rebalance runs.
        let member_error = self.check_member(name, member_id, instance, generation);
        if member_error != ErrorCode::None {
            return member_error;
        }
        if group.state == GroupState::CompletingRebalance {
            return ErrorCode::RebalanceInProgress;
        }
        ErrorCode::None
    }

    /// TxnOffsetCommit (`handleTxnCommitOffsets`): the member checks of KIP-447 (none for
    /// an old client that sends no member), then the records go in as the producer's
    /// transactional batch and stay pending until its transaction ends.
    pub(super) fn handle_txn_commit(
        &mut self,
        now: Millis,
        waiter: Waiter,
        name: &str,
        producer: (NonZeroU32, u16),
        (member_id, instance, generation): (&str, Option<&str>, i32),
        offsets: Vec<(TopicPartition, Offset)>,
    ) {
        let anonymous = generation < 0 && member_id.is_empty() && instance.is_none();
        let error = if self.config.fencing && !anonymous {
            self.check_member(name, member_id, instance, generation)
        } else {
            ErrorCode::None
        };
        if error != ErrorCode::None {
            let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
            return self.respond(waiter, GroupResponse::TxnOffsetCommit { error, partitions });
        }
        let group = self.groups.entry(name.to_string()).or_insert_with(Group::new);
        let group_generation = group.generation;
        let pending = group.pending_txn.entry(producer.0).or_default();
        pending.member_id = member_id.to_string();
        pending.generation = generation;
        pending.group_generation = group_generation;
        pending.validated_at = now;
        for (tp, _) in &offsets {
            *pending.in_flight.entry(*tp).or_default() += 1;
        }
        let records = offsets
            .iter()
            .map(|(tp, offset)| OffsetsRecord::Commit { group: name.to_string(), tp: *tp, offset: *offset })
            .collect();
        let append = PendingAppend::TxnCommit { waiter, producer_id: producer.0, offsets: offsets.clone() };
        if self.append_as(name, records, append, Some(producer)).is_none() {
            self.txn_append_done(name, producer.0, &offsets, None);
            let error = ErrorCode::CoordinatorNotAvailable;
            let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
            self.respond(waiter, GroupResponse::TxnOffsetCommit { error, partitions });
        }
    }

    /// A TxnOffsetCommit's append ended: its partitions are no longer in flight, and
    /// (`stored`) its offsets wait for the transaction's end.
    fn txn_append_done(
        &mut self,
        name: &str,
        producer_id: NonZeroU32,
        offsets: &[(TopicPartition, Offset)],
        stored: Option<u64>,
    ) {
        let Some(group) = self.groups.get_mut(name) else { return };
        let Some(pending) = group.pending_txn.get_mut(&producer_id) else { return };
        for (tp, offset) in offsets {
            if let Some(count) = pending.in_flight.get_mut(tp) {
                *count -= 1;
                if *count == 0 {
                    pending.in_flight.remove(tp);
                }
            }
            if let Some(at) = stored {
                pending.stored.insert(*tp, (*offset, at));
            }
        }
        if pending.stored.is_empty() && pending.in_flight.is_empty() {
            group.pending_txn.remove(&producer_id);
        }
    }

    /// The marker of `producer_id`'s transaction is durable in offsets partition
    /// `partition` (`handleTxnCompletion`): its pending offsets there become the groups'
    /// committed offsets (commit) or are dropped (abort).
    pub fn txn_completed(&mut self, partition: u32, partitions: u32, producer_id: NonZeroU32, commit: bool) {
        let names: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, g)| {
                g.pending_txn.contains_key(&producer_id) && offsets_partition_for(name, partitions) == partition
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let Some(group) = self.groups.get_mut(&name) else { continue };
            let Some(pending) = group.pending_txn.get_mut(&producer_id) else { continue };
            let stored = std::mem::take(&mut pending.stored);
            let (member_id, generation, group_generation, validated_at) =
                (pending.member_id.clone(), pending.generation, pending.group_generation, pending.validated_at);
            if pending.in_flight.is_empty() {
                group.pending_txn.remove(&producer_id);
            }
            if !commit || stored.is_empty() {
                continue;
            }
            let offsets: Vec<(TopicPartition, Offset)> = stored
                .into_iter()
                .filter(|(tp, (offset, at))| group.store_offset(*tp, *offset, *at))
                .map(|(tp, (offset, _))| (tp, offset))
                .collect();
            if offsets.is_empty() {
                continue;
            }
            self.outbox.push_back(CoordinatorOutput::OffsetsStored {
                group: name,
                member_id,
                generation,
                group_generation,
                validated_at,
                offsets,
            });
        }
    }

    fn handle_offset_fetch_inner(
        &self,
        name: &str,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Option<Offset>)> {
        let group = self.groups.get(name);
        partitions.iter().map(|tp| (*tp, group.and_then(|g| g.offsets.get(tp)).map(|(offset, _)| *offset))).collect()
    }

    pub(super) fn handle_offset_fetch(
        &mut self,
        waiter: Waiter,
        name: &str,
        partitions: Vec<TopicPartition>,
        require_stable: bool,
    ) {
        let unstable =
            require_stable && self.groups.get(name).is_some_and(|g| partitions.iter().any(|tp| g.unstable(tp)));
        if unstable {
            let error = ErrorCode::UnstableOffsetCommit;
            return self.respond(waiter, GroupResponse::OffsetFetch { error, offsets: Vec::new() });
        }
        let offsets = self.handle_offset_fetch_inner(name, &partitions);
        self.respond(waiter, GroupResponse::OffsetFetch { error: ErrorCode::None, offsets });
    }

    /// The host's answer to an `Append`: `None` once the records are committed (below the
    /// offsets partition's high watermark), else the produce error.
    pub fn handle_append_result(&mut self, now: Millis, token: u64, error: ErrorCode) {
        let Some((name, pending)) = self.pending_appends.remove(&token) else {
            return;
        };
        let error = store_error(error);
        match pending {
            PendingAppend::Commit {
                from,
                correlation,
                offsets,
                member_id,
                generation,
                group_generation,
                validated_at,
            } => {
                if error == ErrorCode::None {
                    if let Some(group) = self.groups.get_mut(&name) {
                        let stored: Vec<(TopicPartition, Offset)> = offsets
                            .iter()
                            .copied()
                            .filter(|(tp, offset)| group.store_offset(*tp, *offset, token))
                            .collect();
                        if !stored.is_empty() {
                            self.outbox.push_back(CoordinatorOutput::OffsetsStored {
                                group: name.clone(),
                                member_id,
                                generation,
                                group_generation,
                                validated_at,
                                offsets: stored,
                            });
                        }
                    }
                }
                let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                self.respond(Waiter { from, correlation }, GroupResponse::OffsetCommit { error, partitions });
            }
            PendingAppend::TxnCommit { waiter, producer_id, offsets } => {
                self.txn_append_done(&name, producer_id, &offsets, (error == ErrorCode::None).then_some(token));
                let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                self.respond(waiter, GroupResponse::TxnOffsetCommit { error, partitions });
            }
            PendingAppend::Group { generation } => self.group_stored(now, &name, generation, error),
            replacement @ PendingAppend::StaticReplacement { .. } => {
                self.static_replacement_stored(&name, replacement, error)
            }
        }
    }

    /// This broker became leader of `__consumer_offsets` partition `partition`: rebuild
    /// its groups from the partition's committed records, in log order.
    pub fn load(&mut self, now: Millis, partition: u32, partitions: u32, records: &[OffsetsRecord]) {
        let records: Vec<LoadedRecord> = records.iter().cloned().map(LoadedRecord::Plain).collect();
        self.load_with_txns(now, partition, partitions, &records);
    }

    /// `load` of a partition that also holds transactional offset commits and markers:
    /// a producer's commits count from its commit marker on, are dropped at its abort
    /// marker, and stay pending without one.
    pub fn load_with_txns(&mut self, now: Millis, partition: u32, partitions: u32, records: &[LoadedRecord]) {
        self.unload(partition, partitions);
        // A record's place in the log, in the order of this coordinator's appends: the
        // loaded ones come before every append from now on.
        let base = self.next_token;
        self.next_token += records.len() as u64;
        // Per producer, the groups' offsets its open transaction committed.
        let mut open: BTreeMap<NonZeroU32, Vec<(String, TopicPartition, Offset, u64)>> = BTreeMap::new();
        for (index, item) in records.iter().enumerate() {
            let at = base + index as u64;
            let record = match item {
                LoadedRecord::Plain(record) => record,
                LoadedRecord::Txn(producer_id, record) => {
                    if let OffsetsRecord::Commit { group, tp, offset } = record {
                        open.entry(*producer_id).or_default().push((group.clone(), *tp, *offset, at));
                    }
                    continue;
                }
                LoadedRecord::Marker { producer_id, commit } => {
                    for (group, tp, offset, at) in open.remove(producer_id).unwrap_or_default() {
                        if *commit {
                            self.groups.entry(group).or_insert_with(Group::new).store_offset(tp, offset, at);
                        }
                    }
                    continue;
                }
            };
            match record {
                OffsetsRecord::Commit { group, tp, offset } => {
                    self.groups.entry(group.clone()).or_insert_with(Group::new).store_offset(*tp, *offset, at);
                }
                OffsetsRecord::Group { group, generation, protocol, leader, members } => {
                    let loaded = self.groups.entry(group.clone()).or_insert_with(Group::new);
                    loaded.generation = *generation;
                    loaded.protocol = protocol.clone();
                    loaded.leader = leader.clone();
                    loaded.members.clear();
                    loaded.static_members.clear();
                    for m in members {
                        if let Some(instance) = &m.group_instance_id {
                            loaded.static_members.insert(instance.clone(), m.member_id.clone());
                        }
                        let member = Member {
                            instance_id: m.group_instance_id.clone(),
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocols: m.protocols.clone(),
                            assignment: m.assignment.clone(),
                            // Members get a full session to find the new coordinator.
                            expires_at: now.plus(m.session_timeout_ms),
                            awaiting_join: None,
                            awaiting_sync: None,
                        };
                        loaded.members.insert(m.member_id.clone(), member);
                    }
                    loaded.state = if loaded.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
                }
            }
        }
        for (producer_id, commits) in open {
            for (group, tp, offset, at) in commits {
                let loaded = self.groups.entry(group).or_insert_with(Group::new);
                let generation = loaded.generation;
                let pending: &mut PendingTxnOffsets = loaded.pending_txn.entry(producer_id).or_default();
                pending.stored.insert(tp, (offset, at));
                pending.generation = generation;
                pending.group_generation = generation;
            }
        }
    }

    /// This broker no longer leads `partition`: its groups go, and everything parked for
    /// them is answered NOT_COORDINATOR so clients look the coordinator up again.
    pub fn unload(&mut self, partition: u32, partitions: u32) {
        let gone: Vec<String> =
            self.groups.keys().filter(|g| offsets_partition_for(g, partitions) == partition).cloned().collect();
        for name in gone {
            let Some(group) = self.groups.remove(&name) else { continue };
            for member in group.members.values() {
                if let Some(waiter) = member.awaiting_join {
                    self.respond(waiter, GroupResponse::Join(JoinResponse::failed("", ErrorCode::NotCoordinator)));
                }
                if let Some(waiter) = member.awaiting_sync {
                    let response = GroupResponse::Sync { error: ErrorCode::NotCoordinator, assignment: Vec::new() };
                    self.respond(waiter, response);
                }
            }
            let tokens: Vec<u64> =
                self.pending_appends.iter().filter(|(_, (g, _))| *g == name).map(|(token, _)| *token).collect();
            for token in tokens {
                let error = ErrorCode::NotCoordinator;
                match self.pending_appends.remove(&token) {
                    Some((_, PendingAppend::Commit { from, correlation, offsets, .. })) => {
                        let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                        self.respond(Waiter { from, correlation }, GroupResponse::OffsetCommit { error, partitions });
                    }
                    Some((_, PendingAppend::TxnCommit { waiter, offsets, .. })) => {
                        let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                        self.respond(waiter, GroupResponse::TxnOffsetCommit { error, partitions });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// GroupMetadataManager's mapping of a failed append to the error the client sees.
fn store_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::UnknownTopicOrPartition | ErrorCode::NotEnoughReplicas | ErrorCode::NotEnoughReplicasAfterAppend => {
            ErrorCode::CoordinatorNotAvailable
        }
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        other => other,
    }
}
