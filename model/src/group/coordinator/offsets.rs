//! Offsets: commit validation (generation and member fencing), commits made durable
//! through `__consumer_offsets`, offset fetches, and loading a partition's groups on
//! coordinator failover (GroupMetadataManager's `storeOffsets` / `loadGroupsAndOffsets`).

use super::{
    offsets_partition_for, CoordinatorOutput, Group, GroupCoordinator, GroupResponse, GroupState, JoinResponse, Member,
    OffsetsRecord, PendingAppend, Waiter,
};
use crate::error::ErrorCode;
use crate::types::{Millis, Offset, TopicPartition};

impl GroupCoordinator {
    pub(super) fn handle_commit(
        &mut self,
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
        self.groups.entry(name.to_string()).or_insert_with(Group::new);
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

    fn handle_offset_fetch_inner(
        &self,
        name: &str,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Option<Offset>)> {
        let group = self.groups.get(name);
        partitions.iter().map(|tp| (*tp, group.and_then(|g| g.offsets.get(tp).copied()))).collect()
    }

    pub(super) fn handle_offset_fetch(&mut self, waiter: Waiter, name: &str, partitions: Vec<TopicPartition>) {
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
            PendingAppend::Commit { from, correlation, offsets, member_id, generation } => {
                if error == ErrorCode::None {
                    if let Some(group) = self.groups.get_mut(&name) {
                        for (tp, offset) in &offsets {
                            group.offsets.insert(*tp, *offset);
                        }
                        let group_generation = group.generation;
                        self.outbox.push_back(CoordinatorOutput::OffsetsStored {
                            group: name.clone(),
                            member_id,
                            generation,
                            group_generation,
                            offsets: offsets.clone(),
                        });
                    }
                }
                let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                self.respond(Waiter { from, correlation }, GroupResponse::OffsetCommit { error, partitions });
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
        self.unload(partition, partitions);
        for record in records {
            match record {
                OffsetsRecord::Commit { group, tp, offset } => {
                    self.groups.entry(group.clone()).or_insert_with(Group::new).offsets.insert(*tp, *offset);
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
                if let Some((_, PendingAppend::Commit { from, correlation, offsets, .. })) =
                    self.pending_appends.remove(&token)
                {
                    let error = ErrorCode::NotCoordinator;
                    let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                    self.respond(Waiter { from, correlation }, GroupResponse::OffsetCommit { error, partitions });
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
