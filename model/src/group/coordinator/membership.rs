//! Membership: joins, syncs, heartbeats, leaves, session expiry and the rebalance
//! itself (GroupCoordinator.scala's classic protocol).

use super::{
    CoordinatorOutput, Group, GroupCoordinator, GroupResponse, GroupState, InitialJoin, JoinGroup, JoinResponse,
    LeavingMember, Member, MemberRecord, OffsetsRecord, PendingAppend, Waiter, GROUP_MEMBERS_MAX,
};
use crate::error::ErrorCode;
use crate::types::Millis;
use std::collections::BTreeMap;

impl GroupCoordinator {
    pub(super) fn handle_join(&mut self, now: Millis, waiter: Waiter, join: JoinGroup) {
        let session = join.session_timeout_ms;
        if session < self.config.min_session_timeout_ms || session > self.config.max_session_timeout_ms {
            return self.join_error(waiter, &join.member_id, ErrorCode::InvalidSessionTimeout);
        }
        if !join.member_id.is_empty() && !self.groups.contains_key(&join.group) {
            return self.join_error(waiter, &join.member_id, ErrorCode::UnknownMemberId);
        }
        let group = self.groups.entry(join.group.clone()).or_insert_with(Group::new);
        if !protocols_compatible(group, &join) {
            return self.join_error(waiter, &join.member_id, ErrorCode::InconsistentGroupProtocol);
        }
        match (&join.group_instance_id, join.member_id.is_empty()) {
            (Some(instance), true) => self.join_static_new(now, waiter, join.clone(), instance.clone()),
            (None, true) => self.join_dynamic_new(now, waiter, join),
            (instance, false) => {
                let fenced = instance
                    .as_ref()
                    .is_some_and(|i| group.static_members.get(i).is_some_and(|known| *known != join.member_id));
                if fenced {
                    return self.join_error(waiter, &join.member_id, ErrorCode::FencedInstanceId);
                }
                if group.pending_members.remove(&join.member_id).is_some() {
                    return self.add_member_and_rebalance(now, waiter, join.member_id.clone(), &join);
                }
                if !group.members.contains_key(&join.member_id) {
                    return self.join_error(waiter, &join.member_id, ErrorCode::UnknownMemberId);
                }
                self.join_known(now, waiter, join);
            }
        }
    }

    fn join_error(&mut self, waiter: Waiter, member_id: &str, error: ErrorCode) {
        self.respond(waiter, GroupResponse::Join(JoinResponse::failed(member_id, error)));
    }

    fn new_member_id(&mut self) -> String {
        self.next_member += 1;
        // Zero-padded so that ids sort in the order they were handed out.
        match self.node {
            Some(node) => format!("member-{node}-{}-{:08}", self.incarnation, self.next_member),
            None => format!("member-{}-{:08}", self.incarnation, self.next_member),
        }
    }

    /// KIP-394: a dynamic member first gets an id, and must join again with it.
    fn join_dynamic_new(&mut self, now: Millis, waiter: Waiter, join: JoinGroup) {
        let member_id = self.new_member_id();
        let Some(group) = self.groups.get_mut(&join.group) else { return };
        if group.members.len() + group.pending_members.len() >= GROUP_MEMBERS_MAX {
            return self.join_error(waiter, "", ErrorCode::GroupMaxSizeReached);
        }
        group.pending_members.insert(member_id.clone(), now.plus(join.session_timeout_ms));
        self.join_error(waiter, &member_id, ErrorCode::MemberIdRequired);
    }

    /// KIP-345: a static member joining without a member id. A known instance takes over
    /// its old identity (the old member id is fenced) without a rebalance when the group
    /// is stable and the subscription is unchanged.
    fn join_static_new(&mut self, now: Millis, waiter: Waiter, join: JoinGroup, instance: String) {
        let member_id = self.new_member_id();
        let Some(group) = self.groups.get_mut(&join.group) else { return };
        let Some(old_id) = group.static_members.get(&instance).cloned() else {
            if group.members.len() >= GROUP_MEMBERS_MAX {
                return self.join_error(waiter, "", ErrorCode::GroupMaxSizeReached);
            }
            return self.add_member_and_rebalance(now, waiter, member_id, &join);
        };
        let Some(mut member) = group.members.remove(&old_id) else { return };
        if let Some(stale) = member.awaiting_join.take() {
            // The old instance's parked join is answered as fenced, as Kafka does.
            self.outbox.push_back(parked_join_error(stale, &old_id, ErrorCode::FencedInstanceId));
        }
        member.protocols = join.protocols.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.expires_at = now.plus(join.session_timeout_ms);
        let Some(group) = self.groups.get_mut(&join.group) else { return };
        group.members.insert(member_id.clone(), member);
        group.static_members.insert(instance.clone(), member_id.clone());
        if group.leader.as_deref() == Some(old_id.as_str()) {
            group.leader = Some(member_id.clone());
        }
        // The new instance owes the SyncGroup the old one owed.
        if group.pending_sync.remove(&old_id) {
            group.pending_sync.insert(member_id.clone());
        }
        // No rebalance when the group is stable and would pick the same protocol.
        if group.state == GroupState::Stable && select_protocol(group) == group.protocol {
            let record = group_record(&join.group, group);
            let generation = group.generation;
            let pending = PendingAppend::StaticReplacement { waiter, generation, new_id: member_id, old_id, instance };
            if self.append(&join.group, vec![record], pending.clone()).is_none() {
                self.static_replacement_stored(&join.group, pending, ErrorCode::CoordinatorNotAvailable);
            }
            return;
        }
        // The old member id is out for good here: the rebalance goes on under the new one.
        self.outbox.push_back(CoordinatorOutput::MemberRemoved {
            group: join.group.clone(),
            member_id: old_id,
            generation: group.generation,
            reason: "a new instance with its group.instance.id replaced it during a rebalance (KIP-345)",
        });
        self.park_join(now, &join.group, &member_id, waiter);
        self.prepare_rebalance(now, &join.group);
        self.maybe_complete_join(now, &join.group);
    }

    /// The group record after a static replacement is durable: answer the new instance;
    /// or it failed: undo the replacement (the old member id is valid again).
    pub(super) fn static_replacement_stored(&mut self, name: &str, pending: PendingAppend, error: ErrorCode) {
        let PendingAppend::StaticReplacement { waiter, generation, new_id, old_id, instance } = pending else {
            return;
        };
        let Some(group) = self.groups.get_mut(name) else {
            return self.join_error(waiter, &new_id, ErrorCode::NotCoordinator);
        };
        if error == ErrorCode::None && group.generation == generation {
            let response = current_join_response(group, &new_id, false);
            self.outbox.push_back(CoordinatorOutput::MemberRemoved {
                group: name.to_string(),
                member_id: old_id,
                generation,
                reason: "a new instance with its group.instance.id replaced it (KIP-345)",
            });
            return self.respond(waiter, GroupResponse::Join(response));
        }
        if let Some(member) = group.members.remove(&new_id) {
            group.members.insert(old_id.clone(), member);
            group.static_members.insert(instance, old_id.clone());
            if group.pending_sync.remove(&new_id) {
                group.pending_sync.insert(old_id.clone());
            }
            if group.leader.as_deref() == Some(new_id.as_str()) {
                group.leader = Some(old_id);
            }
        } else {
            // The new member left (or was removed) before the record was stored: there is
            // nothing to give back, and the old member id stays out.
            let generation = group.generation;
            self.outbox.push_back(CoordinatorOutput::MemberRemoved {
                group: name.to_string(),
                member_id: old_id,
                generation,
                reason: "replaced by a new instance with its group.instance.id, which left since (KIP-345)",
            });
        }
        let error = if error == ErrorCode::None { ErrorCode::RebalanceInProgress } else { error };
        self.join_error(waiter, &new_id, error);
    }

    fn add_member_and_rebalance(&mut self, now: Millis, waiter: Waiter, member_id: String, join: &JoinGroup) {
        let Some(group) = self.groups.get_mut(&join.group) else { return };
        if group.protocol_type.is_none() {
            group.protocol_type = Some(join.protocol_type.clone());
        }
        let member = Member {
            instance_id: join.group_instance_id.clone(),
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocols: join.protocols.clone(),
            assignment: Vec::new(),
            expires_at: now.plus(join.session_timeout_ms),
            awaiting_join: None,
            awaiting_sync: None,
        };
        if let Some(instance) = &join.group_instance_id {
            group.static_members.insert(instance.clone(), member_id.clone());
        }
        if group.state == GroupState::PreparingRebalance {
            if let Some(initial) = group.initial_join.as_mut() {
                initial.new_member_added = true;
            }
        }
        group.members.insert(member_id.clone(), member);
        self.park_join(now, &join.group, &member_id, waiter);
        self.prepare_rebalance(now, &join.group);
        self.maybe_complete_join(now, &join.group);
    }

    fn join_known(&mut self, now: Millis, waiter: Waiter, join: JoinGroup) {
        let Some(group) = self.groups.get_mut(&join.group) else { return };
        let Some(member) = group.members.get_mut(&join.member_id) else { return };
        let unchanged = member.protocols == join.protocols;
        member.protocols = join.protocols.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.expires_at = now.plus(join.session_timeout_ms);
        let is_leader = group.leader.as_deref() == Some(join.member_id.as_str());
        let settled = match group.state {
            // The member missed its answer: give it again.
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !is_leader,
            GroupState::PreparingRebalance | GroupState::Empty => false,
        };
        if settled {
            let response = current_join_response(group, &join.member_id, is_leader);
            return self.respond(waiter, GroupResponse::Join(response));
        }
        self.park_join(now, &join.group, &join.member_id, waiter);
        self.prepare_rebalance(now, &join.group);
        self.maybe_complete_join(now, &join.group);
    }

    fn park_join(&mut self, now: Millis, group: &str, member_id: &str, waiter: Waiter) {
        let Some(member) = self.groups.get_mut(group).and_then(|g| g.members.get_mut(member_id)) else {
            return;
        };
        member.expires_at = now.plus(member.session_timeout_ms);
        if let Some(previous) = member.awaiting_join.replace(waiter) {
            // A second join from the same member replaces the first (its connection moved on).
            self.outbox.push_back(parked_join_error(previous, member_id, ErrorCode::UnknownMemberId));
        }
    }

    /// Moves the group to PreparingRebalance (a no-op when it is there already).
    pub(super) fn prepare_rebalance(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get_mut(name) else { return };
        if group.state == GroupState::PreparingRebalance {
            return;
        }
        let waiting_syncs: Vec<Waiter> = group.members.values_mut().filter_map(|m| m.awaiting_sync.take()).collect();
        let rebalance_timeout = rebalance_timeout_ms(group);
        let from_empty = group.state == GroupState::Empty;
        group.state = GroupState::PreparingRebalance;
        // removeSyncExpiration: a new rebalance owes no SyncGroup of the old one.
        group.pending_sync.clear();
        group.sync_deadline = None;
        let delay_ms = self.config.initial_rebalance_delay_ms;
        // InitialDelayedJoin: the first wait is the whole delay even when the rebalance
        // timeout is shorter; extensions then fill the rest of the rebalance timeout.
        group.initial_join = (from_empty && delay_ms > 0).then(|| InitialJoin {
            delay_ms,
            remaining_ms: rebalance_timeout.saturating_sub(delay_ms),
            new_member_added: false,
        });
        let wait = if group.initial_join.is_some() { delay_ms } else { rebalance_timeout };
        group.join_deadline = Some(now.plus(wait));
        for waiter in waiting_syncs {
            self.respond(waiter, GroupResponse::Sync { error: ErrorCode::RebalanceInProgress, assignment: Vec::new() });
        }
    }

    pub(super) fn maybe_complete_join(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get(name) else { return };
        // hasAllMembersJoined: every member rejoined and no handed-out id is still unused.
        let all_joined = group.members.values().all(|m| m.awaiting_join.is_some()) && group.pending_members.is_empty();
        if group.state == GroupState::PreparingRebalance && group.initial_join.is_none() && all_joined {
            self.complete_join(now, name);
        }
    }

    /// The initial delay ran out (`tryCompleteInitialRebalanceElseSchedule`): if a member
    /// was added during it and rebalance time is left, wait once more and say so; else the
    /// join phase is to complete now.
    pub(super) fn extend_initial_join(&mut self, now: Millis, name: &str) -> bool {
        let configured_ms = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(name).filter(|g| g.state == GroupState::PreparingRebalance) else {
            return false;
        };
        let Some(initial) = group.initial_join.as_mut() else { return false };
        if !initial.new_member_added || initial.remaining_ms == 0 {
            return false;
        }
        let delay_ms = configured_ms.min(initial.remaining_ms);
        // As Kafka: what is left shrinks by the wait that just ended (not the next one), so
        // the waits add up to the rebalance timeout exactly.
        *initial = InitialJoin {
            delay_ms,
            remaining_ms: initial.remaining_ms.saturating_sub(initial.delay_ms),
            new_member_added: false,
        };
        group.join_deadline = Some(now.plus(delay_ms));
        true
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation moves
    /// on, and every joined member gets its answer (the leader with the member list).
    pub(super) fn complete_join(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get_mut(name) else { return };
        if group.state != GroupState::PreparingRebalance {
            group.join_deadline = None;
            return;
        }
        // onCompleteJoin drops the dynamic members that did not rejoin; a static member
        // keeps its place until its session expires (KIP-345).
        let gone: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            group.members.remove(id);
            self.outbox.push_back(CoordinatorOutput::MemberRemoved {
                group: name.to_string(),
                member_id: id.clone(),
                generation: group.generation,
                reason: "it did not rejoin within the rebalance timeout",
            });
        }
        group.static_members.retain(|_, id| !gone.contains(id));
        group.generation += 1;
        group.join_deadline = None;
        group.initial_join = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol = None;
            group.leader = None;
            let record = group_record(name, group);
            let generation = group.generation;
            self.append(name, vec![record], PendingAppend::Group { generation });
        } else {
            group.protocol = select_protocol(group);
            if !group.leader.as_ref().is_some_and(|l| group.members.contains_key(l)) {
                group.leader = group.members.keys().next().cloned();
            }
            group.state = GroupState::CompletingRebalance;
            // schedulePendingSync: every member, joined or a static one that missed the
            // join, owes a SyncGroup within the rebalance timeout.
            group.pending_sync = group.members.keys().cloned().collect();
            group.sync_deadline = Some(now.plus(rebalance_timeout_ms(group)));
            let answers: Vec<(Waiter, JoinResponse)> = group
                .members
                .iter()
                .filter_map(|(id, m)| m.awaiting_join.map(|w| (w, id.clone())))
                .map(|(w, id)| {
                    let is_leader = group.leader.as_deref() == Some(id.as_str());
                    (w, current_join_response(group, &id, is_leader))
                })
                .collect();
            for member in group.members.values_mut() {
                if member.awaiting_join.take().is_some() {
                    member.expires_at = now.plus(member.session_timeout_ms);
                }
            }
            for (waiter, response) in answers {
                self.respond(waiter, GroupResponse::Join(response));
            }
        }
        let (generation, members) = self.groups.get(name).map_or((0, 0), |g| (g.generation, g.members.len()));
        self.outbox.push_back(CoordinatorOutput::Rebalanced { group: name.to_string(), generation, members });
    }

    /// Checks a request's member identity and generation: the error to answer, if any.
    pub(super) fn check_member(
        &self,
        name: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        let Some(group) = self.groups.get(name) else {
            return ErrorCode::UnknownMemberId;
        };
        let error = validate_member(group, member_id, instance);
        if error != ErrorCode::None {
            return error;
        }
        if generation != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        ErrorCode::None
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_sync(
        &mut self,
        now: Millis,
        waiter: Waiter,
        name: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) {
        let error = self.check_member(name, member_id, instance, generation);
        let Some(group) = self.groups.get_mut(name).filter(|_| error == ErrorCode::None) else {
            return self.respond(waiter, GroupResponse::Sync { error, assignment: Vec::new() });
        };
        let is_leader = group.leader.as_deref() == Some(member_id);
        let Some(member) = group.members.get_mut(member_id) else { return };
        member.expires_at = now.plus(member.session_timeout_ms);
        if group.pending_sync.remove(member_id) && group.pending_sync.is_empty() {
            group.sync_deadline = None;
        }
        match group.state {
            GroupState::PreparingRebalance | GroupState::Empty => {
                let error = ErrorCode::RebalanceInProgress;
                self.respond(waiter, GroupResponse::Sync { error, assignment: Vec::new() })
            }
            GroupState::Stable => {
                let assignment = member.assignment.clone();
                self.respond(waiter, GroupResponse::Sync { error: ErrorCode::None, assignment })
            }
            GroupState::CompletingRebalance => {
                member.awaiting_sync = Some(waiter);
                if is_leader {
                    let mut by_member: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = by_member.remove(id).unwrap_or_default();
                    }
                    let record = group_record(name, group);
                    let generation = group.generation;
                    if self.append(name, vec![record], PendingAppend::Group { generation }).is_none() {
                        self.group_store_failed(now, name, ErrorCode::CoordinatorNotAvailable);
                    }
                }
            }
        }
    }

    /// The group metadata of `generation` is durable (or failed): the syncs get their
    /// assignments and the group is stable (or they get the error and it rebalances).
    pub(super) fn group_stored(&mut self, now: Millis, name: &str, generation: i32, error: ErrorCode) {
        let Some(group) = self.groups.get_mut(name) else { return };
        if group.generation != generation || group.state != GroupState::CompletingRebalance {
            return;
        }
        if error != ErrorCode::None {
            return self.group_store_failed(now, name, error);
        }
        group.state = GroupState::Stable;
        let answers: Vec<(Waiter, Vec<u8>)> = group
            .members
            .values_mut()
            .filter_map(|m| m.awaiting_sync.take().map(|w| (w, m.assignment.clone())))
            .collect();
        for (waiter, assignment) in answers {
            self.respond(waiter, GroupResponse::Sync { error: ErrorCode::None, assignment });
        }
    }

    fn group_store_failed(&mut self, now: Millis, name: &str, error: ErrorCode) {
        let Some(group) = self.groups.get_mut(name) else { return };
        let waiters: Vec<Waiter> = group.members.values_mut().filter_map(|m| m.awaiting_sync.take()).collect();
        for waiter in waiters {
            self.respond(waiter, GroupResponse::Sync { error, assignment: Vec::new() });
        }
        self.prepare_rebalance(now, name);
    }

    pub(super) fn heartbeat(
        &mut self,
        now: Millis,
        name: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        let error = self.check_member(name, member_id, instance, generation);
        if error != ErrorCode::None {
            return error;
        }
        let Some(group) = self.groups.get_mut(name) else {
            return ErrorCode::UnknownMemberId;
        };
        if let Some(member) = group.members.get_mut(member_id) {
            member.expires_at = now.plus(member.session_timeout_ms);
        }
        match group.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// LeaveGroup v3+ (`classicGroupLeaveToClassicGroup`): each named member is checked
    /// and removed on its own; the group rebalances once for all of them.
    pub(super) fn handle_leave(&mut self, now: Millis, waiter: Waiter, name: &str, leaving: Vec<LeavingMember>) {
        if !self.groups.contains_key(name) {
            let response = GroupResponse::Leave { error: ErrorCode::UnknownMemberId, members: Vec::new() };
            return self.respond(waiter, response);
        }
        let mut answers = Vec::with_capacity(leaving.len());
        for member in leaving {
            let error = self.leave_one(name, &member);
            answers.push((member, error));
        }
        if answers.iter().any(|(_, error)| *error == ErrorCode::None) {
            self.rebalance_after_removal(now, name);
        }
        self.respond(waiter, GroupResponse::Leave { error: ErrorCode::None, members: answers });
    }

    fn leave_one(&mut self, name: &str, leaving: &LeavingMember) -> ErrorCode {
        let Some(group) = self.groups.get_mut(name) else {
            return ErrorCode::UnknownMemberId;
        };
        if leaving.member_id.is_empty() {
            // Removal by instance id alone (an admin, or a static member that lost its id).
            let known = leaving.group_instance_id.as_ref().and_then(|i| group.static_members.get(i)).cloned();
            let Some(member_id) = known else {
                return ErrorCode::UnknownMemberId;
            };
            self.detach_member(name, &member_id, "removed by its instance id");
            return ErrorCode::None;
        }
        if group.pending_members.remove(&leaving.member_id).is_some() {
            return ErrorCode::None;
        }
        let error = validate_member(group, &leaving.member_id, leaving.group_instance_id.as_deref());
        if error == ErrorCode::None {
            self.detach_member(name, &leaving.member_id, "it left the group (LeaveGroup)");
        }
        error
    }

    pub(super) fn remove_member(&mut self, now: Millis, name: &str, member_id: &str, reason: &'static str) {
        if self.detach_member(name, member_id, reason) {
            self.rebalance_after_removal(now, name);
        }
    }

    /// Takes a member out of the group without moving the group on; false if it was not there.
    fn detach_member(&mut self, name: &str, member_id: &str, reason: &'static str) -> bool {
        let Some(group) = self.groups.get_mut(name) else { return false };
        let Some(member) = group.members.remove(member_id) else { return false };
        let removed = CoordinatorOutput::MemberRemoved {
            group: name.to_string(),
            member_id: member_id.to_string(),
            generation: group.generation,
            reason,
        };
        self.outbox.push_back(removed);
        if let Some(instance) = &member.instance_id {
            if group.static_members.get(instance).is_some_and(|id| id == member_id) {
                group.static_members.remove(instance);
            }
        }
        group.pending_sync.remove(member_id);
        if let Some(waiter) = member.awaiting_join {
            // removeMemberAndUpdateGroup answers a removed member's parked join so.
            self.outbox.push_back(parked_join_error(waiter, member_id, ErrorCode::UnknownMemberId));
        }
        true
    }

    /// After members were removed: a settled group rebalances, and a join phase that now
    /// has everyone completes (with nobody left, the group goes Empty at once, as
    /// `maybePrepareRebalanceOrCompleteJoin` does).
    fn rebalance_after_removal(&mut self, now: Millis, name: &str) {
        match self.groups.get(name).map(|g| g.state) {
            Some(GroupState::Stable | GroupState::CompletingRebalance) => {
                self.prepare_rebalance(now, name);
                self.maybe_complete_join(now, name);
            }
            Some(GroupState::PreparingRebalance) => self.maybe_complete_join(now, name),
            _ => {}
        }
    }

    /// The pending-sync timer fired (`expirePendingSync`, KIP-814 era): members that got
    /// their JoinGroup answer but sent no SyncGroup within the rebalance timeout are
    /// removed, static ones too, and the group rebalances without them.
    pub(super) fn expire_pending_sync(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get_mut(name) else { return };
        group.sync_deadline = None;
        let pending = std::mem::take(&mut group.pending_sync);
        if !matches!(group.state, GroupState::CompletingRebalance | GroupState::Stable) || pending.is_empty() {
            return;
        }
        for member_id in &pending {
            self.detach_member(name, member_id, "it sent no SyncGroup in time");
        }
        self.rebalance_after_removal(now, name);
    }

    pub(super) fn expire_sessions(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get(name) else { return };
        // A member waiting in a join is governed by the rebalance timeout, not its session.
        let expired: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none() && m.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_member(now, name, &id, "its session timed out");
        }
    }

    pub(super) fn expire_pending_members(&mut self, now: Millis, name: &str) {
        let Some(group) = self.groups.get_mut(name) else { return };
        let before = group.pending_members.len();
        group.pending_members.retain(|_, deadline| *deadline > now);
        // removePendingMember: a join that only waited for this id completes now.
        if group.pending_members.len() < before {
            self.maybe_complete_join(now, name);
        }
    }
}

/// `ClassicGroup.validateMember`: an instance id must be known and map to this member id;
/// the member id must be in the group.
fn validate_member(group: &Group, member_id: &str, instance: Option<&str>) -> ErrorCode {
    if let Some(instance) = instance {
        match group.static_members.get(instance) {
            None => return ErrorCode::UnknownMemberId,
            Some(known) if known != member_id => return ErrorCode::FencedInstanceId,
            Some(_) => {}
        }
    }
    if group.members.contains_key(member_id) {
        ErrorCode::None
    } else {
        ErrorCode::UnknownMemberId
    }
}

/// The group's rebalance timeout: the largest of its members'.
fn rebalance_timeout_ms(group: &Group) -> u64 {
    group.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
}

fn parked_join_error(waiter: Waiter, member_id: &str, error: ErrorCode) -> CoordinatorOutput {
    let response = GroupResponse::Join(JoinResponse::failed(member_id, error));
    CoordinatorOutput::Respond { to: waiter.from, correlation: waiter.correlation, response }
}

/// A joining member must speak the group's protocol type and share a protocol with it.
fn protocols_compatible(group: &Group, join: &JoinGroup) -> bool {
    if join.protocols.is_empty() {
        return false;
    }
    if group.members.is_empty() {
        return true;
    }
    if group.protocol_type.as_deref().is_some_and(|t| t != join.protocol_type) {
        return false;
    }
    join.protocols.iter().any(|(name, _)| {
        group.members.iter().all(|(id, m)| id == &join.member_id || m.protocols.iter().any(|(n, _)| n == name))
    })
}

/// Kafka's `selectProtocol`: among protocols every member supports, each member votes for
/// its most preferred; the most votes win (ties to the earlier name, for determinism).
fn select_protocol(group: &Group) -> Option<String> {
    let candidates: Vec<&String> = group
        .members
        .values()
        .next()?
        .protocols
        .iter()
        .map(|(name, _)| name)
        .filter(|name| group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
        .collect();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            *votes.entry(name).or_default() += 1;
        }
    }
    let best = votes.values().copied().max()?;
    votes.into_iter().find(|(_, v)| *v == best).map(|(name, _)| name.clone())
}

fn current_join_response(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
    let protocol = group.protocol.clone();
    let members = if with_members {
        group
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == protocol.as_ref())
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), metadata)
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        error: ErrorCode::None,
        generation: group.generation,
        protocol,
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
    }
}

fn group_record(name: &str, group: &Group) -> OffsetsRecord {
    OffsetsRecord::Group {
        group: name.to_string(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        members: group
            .members
            .iter()
            .map(|(id, m)| MemberRecord {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}
