use super::*;

const GROUP: &str = "billing";
const SESSION_MS: u64 = 10_000;
const REBALANCE_MS: u64 = 30_000;

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(CoordinatorConfig::default(), 1)
}

fn join_request(member_id: &str, instance: Option<&str>) -> GroupRequest {
    GroupRequest::Join(JoinGroup {
        group: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), b"events".to_vec())],
    })
}

fn drain(c: &mut GroupCoordinator) -> Vec<CoordinatorOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// Responses to `to` among the outputs.
fn answers(outputs: &[CoordinatorOutput], to: u32) -> Vec<GroupResponse> {
    outputs
        .iter()
        .filter_map(|o| match o {
            CoordinatorOutput::Respond { to: node, response, .. } if node.0 == to => Some(response.clone()),
            _ => None,
        })
        .collect()
}

fn join_of(responses: &[GroupResponse]) -> JoinResponse {
    responses
        .iter()
        .find_map(|r| match r {
            GroupResponse::Join(j) => Some(j.clone()),
            _ => None,
        })
        .expect("a join response")
}

fn appends(outputs: &[CoordinatorOutput]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            CoordinatorOutput::Append { token, .. } => Some(*token),
            _ => None,
        })
        .collect()
}

/// Dynamic member `node` joins: the KIP-394 handshake, then a parked join. Returns its id.
fn join_dynamic(c: &mut GroupCoordinator, now: Millis, node: u32) -> String {
    c.handle_request(now, NodeId(node), 1, join_request("", None));
    let first = join_of(&answers(&drain(c), node));
    assert_eq!(first.error, ErrorCode::MemberIdRequired);
    c.handle_request(now, NodeId(node), 2, join_request(&first.member_id, None));
    first.member_id
}

fn sync(
    c: &mut GroupCoordinator,
    now: Millis,
    node: u32,
    member: &str,
    generation: i32,
    assign: Vec<(String, Vec<u8>)>,
) {
    let request = GroupRequest::Sync {
        group: GROUP.into(),
        member_id: member.into(),
        group_instance_id: None,
        generation,
        assignments: assign,
    };
    c.handle_request(now, NodeId(node), 3, request);
}

fn commit(c: &mut GroupCoordinator, now: Millis, node: u32, member: &str, generation: i32, offset: u64) {
    let request = GroupRequest::OffsetCommit {
        group: GROUP.into(),
        member_id: member.into(),
        group_instance_id: None,
        generation,
        offsets: vec![(TopicPartition::new(0, 0), Offset(offset))],
    };
    c.handle_request(now, NodeId(node), 4, request);
}

/// `request` (a JoinGroup) with its rebalance timeout set to `ms`.
fn with_rebalance_timeout(mut request: GroupRequest, ms: u64) -> GroupRequest {
    if let GroupRequest::Join(j) = &mut request {
        j.rebalance_timeout_ms = ms;
    }
    request
}

fn heartbeat(c: &mut GroupCoordinator, now: Millis, node: u32, member: &str, generation: i32) {
    let request =
        GroupRequest::Heartbeat { group: GROUP.into(), member_id: member.into(), group_instance_id: None, generation };
    c.handle_request(now, NodeId(node), 5, request);
}

/// A LeaveGroup v3+ naming one member.
fn leave(member_id: &str, instance: Option<&str>) -> GroupRequest {
    let leaving = LeavingMember { member_id: member_id.into(), group_instance_id: instance.map(str::to_string) };
    GroupRequest::Leave { group: GROUP.into(), members: vec![leaving] }
}

/// The whole-request error and each named member's error of a LeaveGroup answer.
fn leave_errors(responses: &[GroupResponse]) -> (ErrorCode, Vec<ErrorCode>) {
    responses
        .iter()
        .find_map(|r| match r {
            GroupResponse::Leave { error, members } => Some((*error, members.iter().map(|(_, e)| *e).collect())),
            _ => None,
        })
        .expect("a leave response")
}

fn commit_error(responses: &[GroupResponse]) -> ErrorCode {
    responses
        .iter()
        .find_map(|r| match r {
            GroupResponse::OffsetCommit { error, .. } => Some(*error),
            _ => None,
        })
        .expect("a commit response")
}

/// One member joined, synced and stable at generation 1; returns its id.
fn stable_single(c: &mut GroupCoordinator) -> String {
    let id = join_dynamic(c, Millis(0), 7);
    c.handle_timeout(Millis(3_000));
    let join = join_of(&answers(&drain(c), 7));
    assert_eq!((join.error, join.generation), (ErrorCode::None, 1));
    sync(c, Millis(3_000), 7, &id, 1, vec![(id.clone(), b"p0".to_vec())]);
    let tokens = appends(&drain(c));
    c.handle_append_result(Millis(3_010), tokens[0], ErrorCode::None);
    drain(c);
    assert_eq!(c.state(GROUP), Some(GroupState::Stable));
    id
}

/// Static member "billing-0" on node 7 joined (no member-id handshake), synced and stable
/// at generation 1; returns its member id.
fn stable_static(c: &mut GroupCoordinator) -> String {
    c.handle_request(Millis(0), NodeId(7), 1, join_request("", Some("billing-0")));
    c.handle_timeout(Millis(3_000));
    let join = join_of(&answers(&drain(c), 7));
    assert_eq!(join.generation, 1, "a static member needs no member-id handshake");
    let id = join.member_id;
    let request = GroupRequest::Sync {
        group: GROUP.into(),
        member_id: id.clone(),
        group_instance_id: Some("billing-0".into()),
        generation: 1,
        assignments: vec![(id.clone(), b"p0".to_vec())],
    };
    c.handle_request(Millis(3_000), NodeId(7), 2, request);
    let token = appends(&drain(c))[0];
    c.handle_append_result(Millis(3_001), token, ErrorCode::None);
    drain(c);
    id
}

// Shows Kafka's placement of a group's coordinator: Utils.abs(groupId.hashCode()) % 50,
// with Java's String.hashCode (values printed by a JVM: "billing" -> -109829509).
#[test]
fn offsets_partition_matches_java_string_hash() {
    assert_eq!(offsets_partition_for("billing", 50), 9);
    assert_eq!(offsets_partition_for("group-1", 50), 49);
    assert_eq!(offsets_partition_for("console-consumer-12345", 50), 6);
    assert_eq!(offsets_partition_for("payments.v2", 50), 39);
    assert_eq!(offsets_partition_for("", 50), 0);
}

// Shows the classic protocol end to end (KIP-394 member id handshake, the initial
// rebalance delay, JoinGroup answers with the member list for the leader only, SyncGroup
// answered only once the group metadata is durable).
#[test]
fn first_member_joins_syncs_and_is_stable_after_the_store() {
    let mut c = coordinator();
    let id = join_dynamic(&mut c, Millis(0), 7);
    // group.initial.rebalance.delay.ms: nothing before 3 s even though everyone joined.
    c.handle_timeout(Millis(2_999));
    assert!(answers(&drain(&mut c), 7).is_empty());
    c.handle_timeout(Millis(3_000));
    let join = join_of(&answers(&drain(&mut c), 7));
    assert_eq!(join.generation, 1);
    assert_eq!(join.leader, id);
    assert_eq!(join.members.len(), 1);
    assert_eq!(join.protocol.as_deref(), Some("range"));
    sync(&mut c, Millis(3_000), 7, &id, 1, vec![(id.clone(), b"p0".to_vec())]);
    let outputs = drain(&mut c);
    assert!(answers(&outputs, 7).is_empty(), "the sync waits for the group record");
    let tokens = appends(&outputs);
    assert_eq!(tokens.len(), 1);
    c.handle_append_result(Millis(3_005), tokens[0], ErrorCode::None);
    let answered = answers(&drain(&mut c), 7);
    assert_eq!(answered, vec![GroupResponse::Sync { error: ErrorCode::None, assignment: b"p0".to_vec() }]);
    assert_eq!(c.state(GROUP), Some(GroupState::Stable));
}

// Shows that a new member triggers a rebalance: the old member's heartbeat says
// REBALANCE_IN_PROGRESS, and the join completes as soon as every member rejoined, with a
// new generation (GroupCoordinator's PreparingRebalance rules).
#[test]
fn a_second_member_triggers_a_rebalance() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance));
    let hb = GroupRequest::Heartbeat {
        group: GROUP.into(),
        member_id: first.clone(),
        group_instance_id: None,
        generation: 1,
    };
    c.handle_request(Millis(4_100), NodeId(7), 5, hb);
    assert_eq!(answers(&drain(&mut c), 7), vec![GroupResponse::Heartbeat { error: ErrorCode::RebalanceInProgress }]);
    c.handle_request(Millis(4_200), NodeId(7), 6, join_request(&first, None));
    let outputs = drain(&mut c);
    let (a, b) = (join_of(&answers(&outputs, 7)), join_of(&answers(&outputs, 8)));
    assert_eq!((a.generation, b.generation), (2, 2));
    assert_eq!(a.leader, first, "the leader stays the leader");
    assert_eq!((a.members.len(), b.members.len()), (2, 0), "only the leader gets the member list");
    assert_eq!(b.member_id, second);
}

// Shows the zombie fencing the issue asks for: a member that stops heartbeating is
// removed after session.timeout.ms, and its late commit is refused UNKNOWN_MEMBER_ID
// (KIP-62's split of session and poll timeouts; Kafka's handleCommitOffsets checks). With
// fencing switched off the same commit is accepted, which is what the switch is for.
#[test]
fn a_member_past_its_session_is_fenced_unless_fencing_is_off() {
    for fencing in [true, false] {
        let mut c = GroupCoordinator::new(CoordinatorConfig { fencing, ..CoordinatorConfig::default() }, 1);
        let id = stable_single(&mut c);
        c.handle_timeout(Millis(3_010 + SESSION_MS));
        let expiry = drain(&mut c);
        assert!(c.members(GROUP).is_empty(), "expired");
        // The removal is reported, for the fenced-commit checker.
        let removed = expiry.iter().any(|o| {
            matches!(o, CoordinatorOutput::MemberRemoved { member_id, generation: 1, reason, .. }
                if *member_id == id && reason.contains("session"))
        });
        assert!(removed, "{expiry:?}");
        commit(&mut c, Millis(20_000), 7, &id, 1, 42);
        let outputs = drain(&mut c);
        if fencing {
            assert_eq!(commit_error(&answers(&outputs, 7)), ErrorCode::UnknownMemberId);
            assert!(appends(&outputs).is_empty());
        } else {
            assert_eq!(appends(&outputs).len(), 1, "the zombie's commit goes to the log");
        }
    }
}

// Shows the generation check on commits (ILLEGAL_GENERATION) and the refusal during
// CompletingRebalance (REBALANCE_IN_PROGRESS), as handleCommitOffsets orders them.
#[test]
fn commits_from_a_stale_generation_or_mid_sync_are_refused() {
    let mut c = coordinator();
    let id = stable_single(&mut c);
    commit(&mut c, Millis(4_000), 7, &id, 0, 5);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::IllegalGeneration);
    // Rejoin with changed metadata: a rebalance; it completes at once (one member).
    let mut changed = join_request(&id, None);
    if let GroupRequest::Join(j) = &mut changed {
        j.protocols = vec![("range".into(), b"events,audit".to_vec())];
    }
    c.handle_request(Millis(4_100), NodeId(7), 9, changed);
    drain(&mut c);
    assert_eq!(c.state(GROUP), Some(GroupState::CompletingRebalance));
    commit(&mut c, Millis(4_200), 7, &id, 2, 5);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::RebalanceInProgress);
}

// Shows that a commit counts only once its record is committed in __consumer_offsets
// (GroupMetadataManager.storeOffsets): before the append result nothing is visible, and a
// failed append (NOT_ENOUGH_REPLICAS) is answered COORDINATOR_NOT_AVAILABLE and stores nothing.
#[test]
fn commits_count_only_when_durable() {
    let mut c = coordinator();
    let id = stable_single(&mut c);
    let tp = TopicPartition::new(0, 0);
    commit(&mut c, Millis(4_000), 7, &id, 1, 10);
    let token = appends(&drain(&mut c))[0];
    assert_eq!(c.committed(GROUP, tp), None);
    c.handle_append_result(Millis(4_010), token, ErrorCode::None);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::None);
    assert_eq!(c.committed(GROUP, tp), Some(Offset(10)));
    commit(&mut c, Millis(5_000), 7, &id, 1, 20);
    let token = appends(&drain(&mut c))[0];
    c.handle_append_result(Millis(5_010), token, ErrorCode::NotEnoughReplicas);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::CoordinatorNotAvailable);
    assert_eq!(c.committed(GROUP, tp), Some(Offset(10)));
}

// Shows KIP-345 static membership: a static member that restarts (new process, no member
// id) within its session takes its old place without a rebalance once the replacement is
// stored, and the old incarnation is fenced with FENCED_INSTANCE_ID.
#[test]
fn a_static_member_restart_causes_no_rebalance_and_fences_the_old_instance() {
    let mut c = coordinator();
    let old_id = stable_static(&mut c);
    // The restarted process on another node joins with the same instance id. Its answer
    // waits for the group record naming its new member id (updateStaticMemberAndRebalance),
    // so a failover cannot bring the old id back.
    c.handle_request(Millis(5_000), NodeId(9), 3, join_request("", Some("billing-0")));
    let outputs = drain(&mut c);
    assert!(answers(&outputs, 9).is_empty());
    let stored = outputs.iter().find_map(|o| match o {
        CoordinatorOutput::Append { token, records, .. } => Some((*token, records.clone())),
        _ => None,
    });
    let (token, records) = stored.expect("the replacement is stored first");
    let named = matches!(&records[0], OffsetsRecord::Group { members, .. } if members[0].member_id != old_id);
    assert!(named, "the stored record names the new member id");
    c.handle_append_result(Millis(5_001), token, ErrorCode::None);
    let rejoin = join_of(&answers(&drain(&mut c), 9));
    assert_eq!(rejoin.error, ErrorCode::None);
    assert_eq!(rejoin.generation, 1, "no rebalance");
    assert_ne!(rejoin.member_id, old_id);
    assert_eq!(c.state(GROUP), Some(GroupState::Stable));
    let zombie = GroupRequest::OffsetCommit {
        group: GROUP.into(),
        member_id: old_id,
        group_instance_id: Some("billing-0".into()),
        generation: 1,
        offsets: vec![(TopicPartition::new(0, 0), Offset(3))],
    };
    c.handle_request(Millis(5_100), NodeId(7), 4, zombie);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::FencedInstanceId);
}

// Shows coordinator failover: a new coordinator rebuilds committed offsets and the group's
// generation from the __consumer_offsets records (loadGroupsAndOffsets), and the old one
// answers what it had parked with NOT_COORDINATOR when it unloads the partition.
#[test]
fn failover_loads_offsets_and_generation_and_unload_answers_not_coordinator() {
    let mut old = coordinator();
    let id = stable_single(&mut old);
    commit(&mut old, Millis(4_000), 7, &id, 1, 10);
    let token = appends(&drain(&mut old))[0];
    old.handle_append_result(Millis(4_010), token, ErrorCode::None);
    drain(&mut old);
    commit(&mut old, Millis(5_000), 7, &id, 1, 20);
    drain(&mut old);
    old.unload(offsets_partition_for(GROUP, 50), 50);
    assert_eq!(commit_error(&answers(&drain(&mut old), 7)), ErrorCode::NotCoordinator);
    assert_eq!(old.state(GROUP), None);

    let records = vec![
        OffsetsRecord::Group {
            group: GROUP.into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: Some(id.clone()),
            members: vec![MemberRecord {
                member_id: id.clone(),
                group_instance_id: None,
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                protocols: vec![("range".into(), b"events".to_vec())],
                assignment: b"p0".to_vec(),
            }],
        },
        OffsetsRecord::Commit { group: GROUP.into(), tp: TopicPartition::new(0, 0), offset: Offset(10) },
    ];
    let mut new = GroupCoordinator::new(CoordinatorConfig::default(), 2);
    new.load(Millis(6_000), offsets_partition_for(GROUP, 50), 50, &records);
    assert_eq!(new.committed(GROUP, TopicPartition::new(0, 0)), Some(Offset(10)));
    assert_eq!(new.generation(GROUP), Some(1));
    assert_eq!(new.state(GROUP), Some(GroupState::Stable));
    // The member carries on with its generation against the new coordinator.
    let hb = GroupRequest::Heartbeat { group: GROUP.into(), member_id: id, group_instance_id: None, generation: 1 };
    new.handle_request(Millis(6_100), NodeId(7), 1, hb);
    assert_eq!(answers(&drain(&mut new), 7), vec![GroupResponse::Heartbeat { error: ErrorCode::None }]);
}

// Shows LeaveGroup: the member goes at once (no session wait) and the rest rebalance;
// an unknown member id and a session timeout outside the broker's bounds are refused.
#[test]
fn leave_rebalances_and_bad_requests_are_refused() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    c.handle_request(Millis(4_100), NodeId(7), 6, join_request(&first, None));
    drain(&mut c);
    c.handle_request(Millis(4_200), NodeId(8), 7, leave(&second, None));
    assert_eq!(leave_errors(&answers(&drain(&mut c), 8)), (ErrorCode::None, vec![ErrorCode::None]));
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance));
    assert_eq!(c.members(GROUP), vec![first]);
    c.handle_request(Millis(4_300), NodeId(9), 8, leave("nobody", None));
    assert_eq!(leave_errors(&answers(&drain(&mut c), 9)), (ErrorCode::None, vec![ErrorCode::UnknownMemberId]));
    let mut short = join_request("", None);
    if let GroupRequest::Join(j) = &mut short {
        j.session_timeout_ms = 1_000;
    }
    c.handle_request(Millis(4_400), NodeId(9), 9, short);
    assert_eq!(join_of(&answers(&drain(&mut c), 9)).error, ErrorCode::InvalidSessionTimeout);
}

// Shows the rebalance timeout: a member that does not rejoin within the largest
// rebalance.timeout.ms is dropped and the others go on without it (onCompleteJoin).
#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    // The first member keeps heartbeating but never rejoins.
    for t in (5_000..34_000).step_by(3_000) {
        let hb = GroupRequest::Heartbeat {
            group: GROUP.into(),
            member_id: first.clone(),
            group_instance_id: None,
            generation: 1,
        };
        c.handle_request(Millis(t), NodeId(7), 1, hb);
    }
    drain(&mut c);
    c.handle_timeout(Millis(4_000 + REBALANCE_MS));
    let join = join_of(&answers(&drain(&mut c), 8));
    assert_eq!((join.error, join.generation), (ErrorCode::None, 2));
    assert_eq!(c.members(GROUP), vec![second]);
}

// Shows that a failed store of a static replacement is undone (updateStaticMemberAndRebalance
// reverts to the old member id): the new instance gets the error, the old id stays valid.
#[test]
fn a_static_replacement_that_cannot_be_stored_is_undone() {
    let mut c = coordinator();
    let old_id = stable_static(&mut c);
    c.handle_request(Millis(5_000), NodeId(9), 3, join_request("", Some("billing-0")));
    let token = appends(&drain(&mut c))[0];
    c.handle_append_result(Millis(5_001), token, ErrorCode::NotLeaderOrFollower);
    assert_eq!(join_of(&answers(&drain(&mut c), 9)).error, ErrorCode::NotCoordinator);
    assert_eq!(c.members(GROUP), vec![old_id.clone()]);
    let hb = GroupRequest::Heartbeat {
        group: GROUP.into(),
        member_id: old_id,
        group_instance_id: Some("billing-0".into()),
        generation: 1,
    };
    c.handle_request(Millis(5_100), NodeId(7), 4, hb);
    assert_eq!(answers(&drain(&mut c), 7), vec![GroupResponse::Heartbeat { error: ErrorCode::None }]);
}

// Shows the order of Kafka's commit checks: a member that was removed commits while the
// group is in CompletingRebalance, and is told UNKNOWN_MEMBER_ID (validateOffsetCommit
// runs before doCommitOffsets' state check), so the client drops its partitions instead
// of keeping them through the rebalance.
#[test]
fn a_removed_member_committing_mid_sync_is_told_it_is_unknown() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    // The first member never rejoins: at the rebalance timeout it is dropped and the
    // group moves to CompletingRebalance with the second member only.
    c.handle_timeout(Millis(4_000 + REBALANCE_MS));
    drain(&mut c);
    assert_eq!(c.state(GROUP), Some(GroupState::CompletingRebalance));
    assert_eq!(c.members(GROUP), vec![second]);
    commit(&mut c, Millis(34_500), 7, &first, 1, 9);
    assert_eq!(commit_error(&answers(&drain(&mut c), 7)), ErrorCode::UnknownMemberId);
}

// Shows group.initial.rebalance.delay.ms as Kafka's InitialDelayedJoin runs it
// (GroupMetadataManager.prepareRebalance / tryCompleteInitialRebalanceElseSchedule): a
// member that joins during the first delay extends it by another delay, so the first
// generation forms at 6 s, not 3 s, and holds both members.
#[test]
fn a_member_joining_during_the_initial_delay_extends_it() {
    let mut c = coordinator();
    let first = join_dynamic(&mut c, Millis(0), 7);
    let second = join_dynamic(&mut c, Millis(2_000), 8);
    c.handle_timeout(Millis(3_000));
    let outputs = drain(&mut c);
    assert!(answers(&outputs, 7).is_empty() && answers(&outputs, 8).is_empty(), "the delay was extended");
    assert_eq!(c.poll_timeout(), Some(Millis(6_000)));
    c.handle_timeout(Millis(6_000));
    let outputs = drain(&mut c);
    let (a, b) = (join_of(&answers(&outputs, 7)), join_of(&answers(&outputs, 8)));
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(c.members(GROUP), vec![first, second]);
}

// Shows the cap on InitialDelayedJoin's extensions (tryCompleteInitialRebalanceElseSchedule's
// remainingMs): members arriving every 2 s keep extending the first rebalance, but the waits
// (3 + 3 + 3 + 1 s) stop at the 10 s rebalance timeout, and a member arriving in the last
// wait no longer extends it.
#[test]
fn the_initial_delay_extensions_stop_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let arrivals = [0, 2_000, 4_000, 6_000, 8_000, 9_500];
    let mut answered_at = None;
    for t in (0..=12_000).step_by(500) {
        if let Some(index) = arrivals.iter().position(|a| *a == t) {
            let node = 10 + index as u32;
            c.handle_request(Millis(t), NodeId(node), 1, with_rebalance_timeout(join_request("", None), 10_000));
            let id = join_of(&answers(&drain(&mut c), node)).member_id;
            c.handle_request(Millis(t), NodeId(node), 2, with_rebalance_timeout(join_request(&id, None), 10_000));
        }
        c.handle_timeout(Millis(t));
        let outputs = drain(&mut c);
        if !answers(&outputs, 10).is_empty() {
            assert!(answered_at.is_none());
            answered_at = Some(t);
            for node in 10..16 {
                assert_eq!(join_of(&answers(&outputs, node)).generation, 1, "node {node} is in the first generation");
            }
        }
    }
    assert_eq!(answered_at, Some(10_000));
}

// Shows that the first wait of InitialDelayedJoin is the whole initial delay even when the
// rebalance timeout is shorter (GroupMetadataManager.prepareRebalance schedules delayMs =
// the configured delay, remainingMs = max(rebalanceTimeout - delay, 0)); this model used to
// cap it at the rebalance timeout.
#[test]
fn a_rebalance_timeout_shorter_than_the_initial_delay_still_waits_the_delay() {
    let mut c = coordinator();
    c.handle_request(Millis(0), NodeId(7), 1, with_rebalance_timeout(join_request("", None), 1_000));
    let id = join_of(&answers(&drain(&mut c), 7)).member_id;
    c.handle_request(Millis(0), NodeId(7), 2, with_rebalance_timeout(join_request(&id, None), 1_000));
    c.handle_timeout(Millis(1_000));
    assert!(answers(&drain(&mut c), 7).is_empty());
    c.handle_timeout(Millis(3_000));
    assert_eq!(join_of(&answers(&drain(&mut c), 7)).generation, 1);
}

// Shows the pending-sync timeout (GroupMetadataManager.schedulePendingSync /
// expirePendingSync, the KIP-814-era classic coordinator): a leader that got its JoinGroup
// answer and keeps heartbeating but never sends SyncGroup is removed at the rebalance
// timeout; the follower's parked SyncGroup is answered REBALANCE_IN_PROGRESS and the group
// rebalances without the leader, instead of waiting for an assignment forever.
#[test]
fn a_leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    c.handle_request(Millis(4_100), NodeId(7), 6, join_request(&first, None));
    drain(&mut c);
    assert_eq!(c.state(GROUP), Some(GroupState::CompletingRebalance));
    sync(&mut c, Millis(4_200), 8, &second, 2, Vec::new());
    for t in (5_000..4_100 + REBALANCE_MS).step_by(3_000) {
        heartbeat(&mut c, Millis(t), 7, &first, 2);
        heartbeat(&mut c, Millis(t), 8, &second, 2);
    }
    drain(&mut c);
    c.handle_timeout(Millis(4_100 + REBALANCE_MS - 1));
    assert!(drain(&mut c).is_empty(), "nothing before the rebalance timeout");
    assert_eq!(c.members(GROUP).len(), 2);
    c.handle_timeout(Millis(4_100 + REBALANCE_MS));
    let outputs = drain(&mut c);
    let parked = GroupResponse::Sync { error: ErrorCode::RebalanceInProgress, assignment: Vec::new() };
    assert_eq!(answers(&outputs, 8), vec![parked]);
    assert_eq!(c.members(GROUP), vec![second]);
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance));
}

// Shows the pending-sync timeout in a Stable group (expirePendingSync covers Stable too):
// the leader's assignment is stored and the group is stable, but a follower that never
// sends SyncGroup is removed at the rebalance timeout and the leader is told to rejoin;
// the member that did sync is kept.
#[test]
fn a_follower_that_never_syncs_is_removed_from_a_stable_group() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    let second = join_dynamic(&mut c, Millis(4_000), 8);
    c.handle_request(Millis(4_100), NodeId(7), 6, join_request(&first, None));
    drain(&mut c);
    let assignments = vec![(first.clone(), b"p0".to_vec()), (second.clone(), b"p1".to_vec())];
    sync(&mut c, Millis(4_200), 7, &first, 2, assignments);
    let token = appends(&drain(&mut c))[0];
    c.handle_append_result(Millis(4_210), token, ErrorCode::None);
    drain(&mut c);
    assert_eq!(c.state(GROUP), Some(GroupState::Stable));
    for t in (5_000..4_100 + REBALANCE_MS).step_by(3_000) {
        heartbeat(&mut c, Millis(t), 7, &first, 2);
        heartbeat(&mut c, Millis(t), 8, &second, 2);
    }
    drain(&mut c);
    c.handle_timeout(Millis(4_100 + REBALANCE_MS));
    drain(&mut c);
    assert_eq!(c.members(GROUP), vec![first.clone()]);
    heartbeat(&mut c, Millis(34_200), 7, &first, 2);
    assert_eq!(answers(&drain(&mut c), 7), vec![GroupResponse::Heartbeat { error: ErrorCode::RebalanceInProgress }]);
}

// Shows LeaveGroup v3+ from a static member (KIP-345; classicGroupLeaveToClassicGroup runs
// ClassicGroup.validateMember on each member identity): a stale member id under a known
// instance id is FENCED_INSTANCE_ID, an unknown instance id is UNKNOWN_MEMBER_ID, and the
// matching pair removes the static member at once (no wait for its session), which
// empties the group and frees the instance id.
#[test]
fn a_static_member_leaves_by_instance_id_and_a_stale_member_id_is_fenced() {
    let mut c = coordinator();
    let id = stable_static(&mut c);
    c.handle_request(Millis(4_000), NodeId(9), 5, leave("member-stale", Some("billing-0")));
    assert_eq!(leave_errors(&answers(&drain(&mut c), 9)), (ErrorCode::None, vec![ErrorCode::FencedInstanceId]));
    c.handle_request(Millis(4_000), NodeId(7), 6, leave(&id, Some("billing-9")));
    assert_eq!(leave_errors(&answers(&drain(&mut c), 7)), (ErrorCode::None, vec![ErrorCode::UnknownMemberId]));
    assert_eq!(c.members(GROUP), vec![id.clone()], "a refused leave removes nobody");
    c.handle_request(Millis(4_100), NodeId(7), 7, leave(&id, Some("billing-0")));
    assert_eq!(leave_errors(&answers(&drain(&mut c), 7)), (ErrorCode::None, vec![ErrorCode::None]));
    assert!(c.members(GROUP).is_empty());
    assert_eq!(c.state(GROUP), Some(GroupState::Empty));
    let hb = GroupRequest::Heartbeat {
        group: GROUP.into(),
        member_id: id,
        group_instance_id: Some("billing-0".into()),
        generation: 1,
    };
    c.handle_request(Millis(4_200), NodeId(7), 8, hb);
    assert_eq!(answers(&drain(&mut c), 7), vec![GroupResponse::Heartbeat { error: ErrorCode::UnknownMemberId }]);
}

// Shows the batch form of LeaveGroup v3+ and removal by instance id alone (the admin
// client's removeMembersFromConsumerGroup sends an empty member id): one request removes a
// static and a dynamic member, each named member gets its own answer, the dynamic one's
// parked join is answered UNKNOWN_MEMBER_ID, and a leave to a group that does not exist is
// refused as a whole.
#[test]
fn one_leave_removes_several_members_each_answered_on_its_own() {
    let mut c = coordinator();
    stable_static(&mut c);
    let dynamic = join_dynamic(&mut c, Millis(4_000), 8);
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance));
    let members = vec![
        LeavingMember { member_id: String::new(), group_instance_id: Some("billing-0".into()) },
        LeavingMember { member_id: dynamic.clone(), group_instance_id: None },
        LeavingMember { member_id: "ghost".into(), group_instance_id: None },
    ];
    c.handle_request(Millis(4_100), NodeId(9), 5, GroupRequest::Leave { group: GROUP.into(), members });
    let outputs = drain(&mut c);
    let errors = leave_errors(&answers(&outputs, 9));
    assert_eq!(errors, (ErrorCode::None, vec![ErrorCode::None, ErrorCode::None, ErrorCode::UnknownMemberId]));
    assert_eq!(join_of(&answers(&outputs, 8)).error, ErrorCode::UnknownMemberId);
    assert!(c.members(GROUP).is_empty());
    assert_eq!(c.state(GROUP), Some(GroupState::Empty));
    let elsewhere = GroupRequest::Leave { group: "other".into(), members: Vec::new() };
    c.handle_request(Millis(4_200), NodeId(9), 6, elsewhere);
    assert_eq!(leave_errors(&answers(&drain(&mut c), 9)), (ErrorCode::UnknownMemberId, Vec::new()));
}

// Shows removePendingMember completing a join (ClassicGroup / GroupCoordinator,
// KIP-394): a member id handed out with MEMBER_ID_REQUIRED that is never used holds the
// join phase only until its session timeout, then the join completes with the members
// that did rejoin — not only at the rebalance timeout. (The simulator found a group that
// stood still for the whole rebalance timeout after a consumer abandoned such an id.)
#[test]
fn an_unused_pending_member_id_holds_the_join_only_for_a_session() {
    let mut c = coordinator();
    let first = stable_single(&mut c);
    // A second consumer gets an id and never comes back with it.
    c.handle_request(Millis(4_000), NodeId(8), 1, join_request("", None));
    assert_eq!(join_of(&answers(&drain(&mut c), 8)).error, ErrorCode::MemberIdRequired);
    // A third joins for real and starts a rebalance; the first rejoins.
    join_dynamic(&mut c, Millis(4_000), 9);
    c.handle_request(Millis(4_100), NodeId(7), 6, join_request(&first, None));
    drain(&mut c);
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance), "the pending id holds the join");
    // The pending id's session (10 s) runs out well before the rebalance timeout (30 s).
    c.handle_timeout(Millis(4_000 + SESSION_MS));
    let outputs = drain(&mut c);
    assert_eq!(join_of(&answers(&outputs, 7)).generation, 2, "the join completed when the pending id expired");
    assert_eq!(c.state(GROUP), Some(GroupState::CompletingRebalance));
}

fn removed(outputs: &[CoordinatorOutput], id: &str) -> bool {
    outputs.iter().any(|o| matches!(o, CoordinatorOutput::MemberRemoved { member_id, .. } if member_id == id))
}

// Shows a static member replaced while its group is rebalancing (KIP-345: the new
// instance takes the old member's place and the rebalance goes on) is reported removed,
// so the fenced-commit checker knows the old member id is out of the group.
#[test]
fn a_static_replacement_during_a_rebalance_reports_the_old_member_removed() {
    let mut c = coordinator();
    let old_id = stable_static(&mut c);
    // A dynamic member's join starts a rebalance; the restarted static member joins in it.
    join_dynamic(&mut c, Millis(4_000), 8);
    assert_eq!(c.state(GROUP), Some(GroupState::PreparingRebalance));
    c.handle_request(Millis(5_000), NodeId(9), 3, join_request("", Some("billing-0")));
    let outputs = drain(&mut c);
    assert!(removed(&outputs, &old_id), "{outputs:?}");
    assert!(!c.members(GROUP).contains(&old_id));
}

// Shows a stable group's static replacement whose new member is gone before the record
// is stored (it left): the old member id is not given back (nothing to give it back to)
// and is reported removed (GroupMetadataManager's updateStaticMemberAndRebalance callback).
#[test]
fn a_static_replacement_whose_new_member_left_reports_the_old_member_removed() {
    let mut c = coordinator();
    let old_id = stable_static(&mut c);
    c.handle_request(Millis(5_000), NodeId(9), 3, join_request("", Some("billing-0")));
    let token = appends(&drain(&mut c))[0];
    // The admin client removes the instance before the store is answered.
    c.handle_request(Millis(5_000), NodeId(3), 4, leave("", Some("billing-0")));
    drain(&mut c);
    c.handle_append_result(Millis(5_001), token, ErrorCode::None);
    let outputs = drain(&mut c);
    assert!(removed(&outputs, &old_id), "{outputs:?}");
    assert!(c.members(GROUP).is_empty());
}

// Shows two brokers' coordinators never hand out the same member id (Kafka's member ids
// carry a UUID): after a coordinator failover the new coordinator's ids cannot collide
// with ids the old one gave, which fencing by member id relies on (KIP-394 ids).
#[test]
fn member_ids_name_the_broker() {
    let mut a = GroupCoordinator::new(CoordinatorConfig::default(), 1).on_broker(0);
    let mut b = GroupCoordinator::new(CoordinatorConfig::default(), 1).on_broker(1);
    let first = join_dynamic(&mut a, Millis(0), 7);
    let second = join_dynamic(&mut b, Millis(0), 7);
    assert_ne!(first, second);
}

fn pid() -> NonZeroU32 {
    NonZeroU32::new(42).expect("non-zero")
}

fn txn_commit(c: &mut GroupCoordinator, now: Millis, member: &str, generation: i32, offset: u64) {
    let request = GroupRequest::TxnOffsetCommit {
        group: GROUP.into(),
        transactional_id: "pipeline-0".into(),
        producer_id: pid(),
        epoch: 3,
        member_id: member.into(),
        group_instance_id: None,
        generation,
        offsets: vec![(TopicPartition::new(0, 0), Offset(offset))],
    };
    c.handle_request(now, NodeId(8), 6, request);
}

fn txn_commit_error(responses: &[GroupResponse]) -> ErrorCode {
    responses
        .iter()
        .find_map(|r| match r {
            GroupResponse::TxnOffsetCommit { error, .. } => Some(*error),
            _ => None,
        })
        .expect("a TxnOffsetCommit response")
}

/// The OffsetFetch answer for partition 0 of topic 0, asked with or without `require_stable`.
fn fetch(c: &mut GroupCoordinator, require_stable: bool) -> (ErrorCode, Option<Offset>) {
    let partitions = vec![TopicPartition::new(0, 0)];
    c.handle_request(
        Millis(6_000),
        NodeId(9),
        7,
        GroupRequest::OffsetFetch { group: GROUP.into(), partitions, require_stable },
    );
    answers(&drain(c), 9)
        .iter()
        .find_map(|r| match r {
            GroupResponse::OffsetFetch { error, offsets } => Some((*error, offsets.first().and_then(|(_, o)| *o))),
            _ => None,
        })
        .expect("an OffsetFetch response")
}

// Shows a transactional offset commit (KIP-98 TxnOffsetCommit) is appended as the
// producer's transactional batch and stays pending: OffsetFetch still returns the old
// offset, one with require_stable gets UNSTABLE_OFFSET_COMMIT (KIP-447); the commit
// marker makes it the committed offset and an abort marker drops it.
#[test]
fn txn_offsets_count_only_once_their_transaction_commits() {
    let mut c = coordinator();
    let id = stable_single(&mut c);
    txn_commit(&mut c, Millis(4_000), &id, 1, 10);
    let outputs = drain(&mut c);
    let txn = outputs.iter().find_map(|o| match o {
        CoordinatorOutput::Append { token, txn, .. } => Some((*token, *txn)),
        _ => None,
    });
    let (token, txn) = txn.expect("an append");
    assert_eq!(txn, Some((pid(), 3)), "appended as the producer's transactional batch");
    assert_eq!(fetch(&mut c, true).0, ErrorCode::UnstableOffsetCommit, "in flight counts as pending");
    c.handle_append_result(Millis(4_010), token, ErrorCode::None);
    assert_eq!(txn_commit_error(&answers(&drain(&mut c), 8)), ErrorCode::None);
    assert_eq!(fetch(&mut c, false), (ErrorCode::None, None), "not committed before the marker");
    assert_eq!(fetch(&mut c, true).0, ErrorCode::UnstableOffsetCommit);
    let partition = offsets_partition_for(GROUP, 50);
    c.txn_completed(partition, 50, pid(), true);
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(10))));
    txn_commit(&mut c, Millis(5_000), &id, 1, 20);
    let token = appends(&drain(&mut c))[0];
    c.handle_append_result(Millis(5_010), token, ErrorCode::None);
    drain(&mut c);
    c.txn_completed(partition, 50, pid(), false);
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(10))), "the aborted commit is dropped");
}

// Shows KIP-447's fencing of transactional commits: a member with a stale generation or
// an unknown member id is refused (the producer's transaction aborts), while a commit
// without group metadata (an old client) is taken; with fencing off every one is taken.
#[test]
fn txn_offset_commits_are_fenced_by_generation() {
    let mut c = coordinator();
    let id = stable_single(&mut c);
    txn_commit(&mut c, Millis(4_000), &id, 0, 10);
    assert_eq!(txn_commit_error(&answers(&drain(&mut c), 8)), ErrorCode::IllegalGeneration);
    txn_commit(&mut c, Millis(4_000), "member-gone", 1, 10);
    assert_eq!(txn_commit_error(&answers(&drain(&mut c), 8)), ErrorCode::UnknownMemberId);
    txn_commit(&mut c, Millis(4_000), "", NO_GENERATION, 10);
    assert_eq!(appends(&drain(&mut c)).len(), 1, "no group metadata: no member check");
    let mut open = GroupCoordinator::new(CoordinatorConfig { fencing: false, ..CoordinatorConfig::default() }, 1);
    let id = stable_single(&mut open);
    txn_commit(&mut open, Millis(4_000), &id, 0, 10);
    assert_eq!(appends(&drain(&mut open)).len(), 1, "fencing off takes the stale commit");
}

// Shows a new coordinator loads transactional commits from the log as Kafka's
// loadGroupsAndOffsets does: committed by a commit marker, dropped by an abort marker,
// still pending (unstable) without one.
#[test]
fn failover_loads_txn_offsets_by_their_markers() {
    let record = |offset: u64| OffsetsRecord::Commit {
        group: GROUP.into(),
        tp: TopicPartition::new(0, 0),
        offset: Offset(offset),
    };
    let other = NonZeroU32::new(43).expect("non-zero");
    let partition = offsets_partition_for(GROUP, 50);
    let mut c = coordinator();
    let committed = [
        LoadedRecord::Plain(record(5)),
        LoadedRecord::Txn(pid(), record(10)),
        LoadedRecord::Marker { producer_id: pid(), commit: true },
        LoadedRecord::Txn(other, record(20)),
        LoadedRecord::Marker { producer_id: other, commit: false },
    ];
    c.load_with_txns(Millis(0), partition, 50, &committed);
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(10))));
    let mut c = coordinator();
    c.load_with_txns(Millis(0), partition, 50, &[LoadedRecord::Plain(record(5)), LoadedRecord::Txn(pid(), record(10))]);
    assert_eq!(fetch(&mut c, false), (ErrorCode::None, Some(Offset(5))));
    assert_eq!(fetch(&mut c, true).0, ErrorCode::UnstableOffsetCommit);
    c.txn_completed(partition, 50, pid(), true);
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(10))));
}

/// Appends a plain commit of `offset` by member `id` and returns its append token.
fn plain_commit_appended(c: &mut GroupCoordinator, now: Millis, id: &str, offset: u64) -> u64 {
    commit(c, now, 8, id, 1, offset);
    appends(&drain(c))[0]
}

/// Appends a transactional commit of `offset` by member `id` and returns its append token.
fn txn_commit_appended(c: &mut GroupCoordinator, now: Millis, id: &str, offset: u64) -> u64 {
    txn_commit(c, now, id, 1, offset);
    appends(&drain(c))[0]
}

// Shows Kafka's `olderThan` rule between plain and transactional commits of one partition
// (GroupMetadataTest's testConsumerBeatsTransactionalOffsetCommit and
// testTransactionBeatsConsumerOffsetCommit): a committed transaction's offset replaces the
// committed offset only if its record was appended after the record that set it, whatever
// order the two became durable in.
#[test]
fn a_transaction_replaces_only_older_commits() {
    let partition = offsets_partition_for(GROUP, 50);
    // Appends a transactional commit of 10 and a consumer's commit of 7, in that order
    // or the other, both durable before the marker; returns whether the marker stored
    // anything, and the committed offset after it.
    let run = |txn_first: bool| {
        let mut c = coordinator();
        let id = stable_single(&mut c);
        let mut tokens = if txn_first {
            let txn = txn_commit_appended(&mut c, Millis(4_000), &id, 10);
            vec![txn, plain_commit_appended(&mut c, Millis(4_001), &id, 7)]
        } else {
            let plain = plain_commit_appended(&mut c, Millis(4_000), &id, 7);
            vec![plain, txn_commit_appended(&mut c, Millis(4_001), &id, 10)]
        };
        for (at, token) in (4_010..).zip(tokens.drain(..)) {
            c.handle_append_result(Millis(at), token, ErrorCode::None);
        }
        drain(&mut c);
        c.txn_completed(partition, 50, pid(), true);
        let stored = drain(&mut c).iter().any(|o| matches!(o, CoordinatorOutput::OffsetsStored { .. }));
        (stored, fetch(&mut c, true))
    };
    // The transaction's record first, then a consumer's commit: the consumer's stays.
    assert_eq!(run(true), (false, (ErrorCode::None, Some(Offset(7)))), "the later consumer commit stands");
    // A consumer's commit first, then the transaction's record: the transaction's wins.
    assert_eq!(run(false), (true, (ErrorCode::None, Some(Offset(10)))));
    // The same two orders, loaded from the log by a new coordinator.
    let record = |offset: u64| OffsetsRecord::Commit {
        group: GROUP.into(),
        tp: TopicPartition::new(0, 0),
        offset: Offset(offset),
    };
    let marker = LoadedRecord::Marker { producer_id: pid(), commit: true };
    let mut c = coordinator();
    c.load_with_txns(
        Millis(0),
        partition,
        50,
        &[LoadedRecord::Txn(pid(), record(10)), LoadedRecord::Plain(record(7)), marker.clone()],
    );
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(7))));
    let mut c = coordinator();
    c.load_with_txns(
        Millis(0),
        partition,
        50,
        &[LoadedRecord::Plain(record(7)), LoadedRecord::Txn(pid(), record(10)), marker],
    );
    assert_eq!(fetch(&mut c, true), (ErrorCode::None, Some(Offset(10))));
}

// Shows that with the classic protocol a member's offset commit keeps its session, as a
// heartbeat does (Kafka's doCommitOffsets calls completeAndScheduleNextHeartbeatExpiration
// in Stable and PreparingRebalance; OffsetMetadataManager's "offset commits maintain the
// session", and its test of a commit half way through the session). Without the commit the
// member is removed at its session timeout.
#[test]
fn a_commit_keeps_the_members_session_like_a_heartbeat() {
    for commits in [true, false] {
        let mut c = coordinator();
        let id = stable_single(&mut c);
        let half = Millis(3_010 + SESSION_MS / 2);
        if commits {
            commit(&mut c, half, 7, &id, 1, 42);
            drain(&mut c);
        }
        c.handle_timeout(Millis(3_010 + SESSION_MS));
        drain(&mut c);
        assert_eq!(c.members(GROUP).len(), usize::from(commits), "commits: {commits}");
        if commits {
            c.handle_timeout(half.plus(SESSION_MS));
            drain(&mut c);
            assert!(c.members(GROUP).is_empty(), "removed a session after its commit");
        }
    }
}
