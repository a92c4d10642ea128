//! Joining and syncing: the eager revoke-before-join, the member id handshake, the
//! leader's assignment, and applying an assignment (with KIP-429's revoke-then-rejoin).

use super::{
    decode_partitions, decode_subscription, encode_assignment, GroupMember, InFlight, MemberOutput, MemberState,
};
use crate::error::ErrorCode;
use crate::group::assignor::{Assignor, GroupPartition, RebalanceProtocol};
use crate::group::coordinator::{GroupRequest, JoinResponse};
use crate::types::Millis;
use std::collections::BTreeSet;

impl GroupMember {
    /// Sends the JoinGroup (an eager member has revoked everything by now; see `poll`).
    pub(super) fn start_join(&mut self, now: Millis) {
        self.rejoin_needed = false;
        let correlation = self.next_id();
        let request = self.join_request();
        self.in_flight = Some((InFlight::Join(correlation), now));
        self.state = MemberState::Joining;
        self.outbox.push_back(MemberOutput::Send { correlation, request });
    }

    pub(super) fn on_join(&mut self, now: Millis, join: JoinResponse) {
        match join.error {
            ErrorCode::None => {}
            ErrorCode::MemberIdRequired => {
                // KIP-394: join again at once with the id the coordinator handed out.
                self.member_id = join.member_id;
                return self.start_join(now);
            }
            ErrorCode::UnknownMemberId => {
                // resetGenerationOnResponseError: the generation and what it owned are gone.
                self.lose_generation(true);
                self.join_not_before = now.plus(self.config.retry_backoff_ms);
                return;
            }
            ErrorCode::FencedInstanceId
            | ErrorCode::InconsistentGroupProtocol
            | ErrorCode::InvalidSessionTimeout
            | ErrorCode::GroupMaxSizeReached => {
                return self.fatal(join.error);
            }
            _ => return self.back_off_and_rejoin(now),
        }
        self.member_id = join.member_id.clone();
        self.generation = join.generation;
        self.is_leader = join.leader == join.member_id;
        let assignments = if join.leader == join.member_id { self.assign_as_leader(&join) } else { Vec::new() };
        let correlation = self.next_id();
        let request = GroupRequest::Sync {
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            generation: self.generation,
            assignments,
        };
        self.in_flight = Some((InFlight::Sync(correlation), now));
        self.state = MemberState::Syncing;
        self.next_heartbeat = now.plus(self.config.heartbeat_interval_ms);
        self.outbox.push_back(MemberOutput::Send { correlation, request });
    }

    /// The leader runs the group's chosen assignor over every member's subscription.
    fn assign_as_leader(&self, join: &JoinResponse) -> Vec<(String, Vec<u8>)> {
        let Some(assignor) = join.protocol.as_deref().and_then(Assignor::from_name) else {
            return Vec::new();
        };
        let members: Vec<_> =
            join.members.iter().map(|(id, instance, meta)| decode_subscription(id, instance.clone(), meta)).collect();
        assignor
            .assign(&self.partitions, &members)
            .into_iter()
            .map(|(member, partitions)| (member.0, encode_assignment(&partitions)))
            .collect()
    }

    pub(super) fn handle_sync_response(
        &mut self,
        now: Millis,
        correlation: u64,
        error: ErrorCode,
        assignment: Vec<u8>,
    ) {
        if self.in_flight.map(|(f, _)| f) != Some(InFlight::Sync(correlation)) {
            return;
        }
        self.in_flight = None;
        match error {
            ErrorCode::None => self.apply_assignment(&assignment),
            ErrorCode::RebalanceInProgress => self.back_off_and_rejoin(now),
            ErrorCode::IllegalGeneration => self.lose_generation(false),
            ErrorCode::UnknownMemberId => self.lose_generation(true),
            ErrorCode::FencedInstanceId => self.fatal(error),
            _ => self.back_off_and_rejoin(now),
        }
    }

    /// Revokes what the new assignment takes away and assigns what it adds. Under the
    /// cooperative protocol a revocation means the partition is wanted elsewhere: rejoin
    /// at once so its new owner gets it in the follow-up rebalance (KIP-429).
    fn apply_assignment(&mut self, assignment: &[u8]) {
        let new: BTreeSet<GroupPartition> =
            decode_partitions(&String::from_utf8_lossy(assignment)).into_iter().collect();
        let revoked: Vec<GroupPartition> = self.owned.difference(&new).cloned().collect();
        let added: Vec<GroupPartition> = new.difference(&self.owned).cloned().collect();
        if !revoked.is_empty() {
            self.outbox.push_back(MemberOutput::Revoked(revoked));
            if self.protocol() == RebalanceProtocol::Cooperative {
                self.rejoin_needed = true;
            }
        }
        self.owned = new;
        self.owned_version += 1;
        self.state = MemberState::Stable;
        // Assigned is called even when empty, as the Java client does.
        self.outbox.push_back(MemberOutput::Assigned(added));
    }
}
