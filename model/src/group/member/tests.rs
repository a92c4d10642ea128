use super::*;
use crate::group::coordinator::{CoordinatorConfig, CoordinatorOutput, GroupCoordinator};
use crate::types::NodeId;
use std::collections::BTreeMap;

const TOPIC: &str = "events";

/// Members and a coordinator wired back to back: every request is delivered at once,
/// every log append succeeds. Records the rebalance callbacks per member.
struct Harness {
    now: Millis,
    coordinator: GroupCoordinator,
    members: Vec<GroupMember>,
    revoked: Vec<Vec<GroupPartition>>,
    lost: Vec<Vec<GroupPartition>>,
    commits: BTreeMap<(usize, u64), ErrorCode>,
    /// (member, partition) pairs that two members owned at the same time.
    double_owned: Vec<GroupPartition>,
    /// Commit every revoked partition from the `Revoked` callback, as applications do.
    commit_on_revoke: bool,
    /// Drop the coordinator's heartbeat answers until this time (a lossy link).
    drop_heartbeats_until: Millis,
}

impl Harness {
    fn new(coordinator: CoordinatorConfig) -> Harness {
        let coordinator = GroupCoordinator::new(CoordinatorConfig { initial_rebalance_delay_ms: 0, ..coordinator }, 1);
        Harness {
            now: Millis(0),
            coordinator,
            members: Vec::new(),
            revoked: Vec::new(),
            lost: Vec::new(),
            commits: BTreeMap::new(),
            double_owned: Vec::new(),
            commit_on_revoke: false,
            drop_heartbeats_until: Millis(0),
        }
    }

    fn add(&mut self, assignor: Assignor, instance: Option<&str>) -> usize {
        let config = MemberConfig {
            group: "billing".into(),
            group_instance_id: instance.map(str::to_string),
            session_timeout_ms: 10_000,
            assignors: vec![assignor],
            ..MemberConfig::default()
        };
        let mut member = GroupMember::new(config, self.now);
        member.subscribe(vec![TOPIC.into()]);
        member.update_metadata([(TOPIC.to_string(), 6)].into_iter().collect());
        self.members.push(member);
        self.revoked.push(Vec::new());
        self.lost.push(Vec::new());
        self.members.len() - 1
    }

    /// Runs `ms` of time in 100 ms steps; members in `polling` poll every step.
    fn run(&mut self, ms: u64, polling: &[usize]) {
        let end = self.now.plus(ms);
        while self.now < end {
            self.now = self.now.plus(100);
            for index in polling {
                self.members[*index].poll(self.now);
            }
            for member in &mut self.members {
                member.handle_timeout(self.now);
            }
            self.coordinator.handle_timeout(self.now);
            self.pump();
            self.check_exclusive_ownership();
        }
    }

    /// Moves messages until everyone is quiet (bounded: a protocol loop would show here).
    fn pump(&mut self) {
        for _ in 0..1_000 {
            let mut moved = false;
            for index in 0..self.members.len() {
                while let Some(output) = self.members[index].poll_output() {
                    moved = true;
                    match output {
                        MemberOutput::Send { correlation, request } => {
                            self.coordinator.handle_request(self.now, NodeId(index as u32), correlation, request)
                        }
                        MemberOutput::Revoked(p) => {
                            if self.commit_on_revoke {
                                let offsets =
                                    p.iter().map(|gp| (TopicPartition::new(0, gp.partition), Offset(1))).collect();
                                self.members[index].commit(self.now, offsets);
                            }
                            self.revoked[index].extend(p)
                        }
                        MemberOutput::Lost(p) => self.lost[index].extend(p),
                        MemberOutput::CommitDone { correlation, error } => {
                            self.commits.insert((index, correlation), error);
                        }
                        MemberOutput::Assigned(_) | MemberOutput::Fatal(_) => {}
                    }
                }
            }
            while let Some(output) = self.coordinator.poll_output() {
                moved = true;
                match output {
                    CoordinatorOutput::Respond { response: GroupResponse::Heartbeat { .. }, .. }
                        if self.now < self.drop_heartbeats_until => {}
                    CoordinatorOutput::Respond { to, correlation, response } => {
                        if let Some(member) = self.members.get_mut(to.0 as usize) {
                            member.handle_response(self.now, correlation, response);
                        }
                    }
                    CoordinatorOutput::Append { token, .. } => {
                        self.coordinator.handle_append_result(self.now, token, ErrorCode::None)
                    }
                    CoordinatorOutput::Rebalanced { .. }
                    | CoordinatorOutput::OffsetsStored { .. }
                    | CoordinatorOutput::MemberRemoved { .. } => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the group protocol did not go quiet");
    }

    fn check_exclusive_ownership(&mut self) {
        let mut seen = BTreeSet::new();
        for member in &self.members {
            if member.state() == MemberState::Fatal {
                continue;
            }
            for p in member.owned() {
                if !seen.insert(p.clone()) {
                    self.double_owned.push(p);
                }
            }
        }
    }

    fn owned(&self, index: usize) -> usize {
        self.members[index].owned().len()
    }
}

// Shows two consumers with the range assignor joining through a real coordinator: one
// generation, 3 + 3 of 6 partitions (RangeAssignor's split), both stable.
#[test]
fn two_members_split_a_topic() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    h.run(2_000, &[a, b]);
    assert_eq!(h.members[a].state(), MemberState::Stable);
    assert_eq!(h.members[b].state(), MemberState::Stable);
    assert_eq!(h.members[a].generation(), h.members[b].generation());
    assert_eq!((h.owned(a), h.owned(b)), (3, 3));
    assert!(h.double_owned.is_empty());
}

// Shows eager rebalancing: when a third member joins, the others revoke everything before
// rejoining (the Java client's onJoinPrepare with an eager assignor), and the result is 2+2+2.
#[test]
fn eager_members_revoke_everything_on_a_rebalance() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    h.run(2_000, &[a, b]);
    let c = h.add(Assignor::Range, None);
    h.run(10_000, &[a, b, c]);
    assert_eq!((h.owned(a), h.owned(b), h.owned(c)), (2, 2, 2));
    assert_eq!(h.revoked[a].len(), 3, "a gave up all three of its partitions");
    assert!(h.double_owned.is_empty());
}

// Shows KIP-429 cooperative rebalancing: a joining member costs the others only the
// partitions that move, which are revoked first and handed over in a second rebalance,
// so no partition is ever owned by two members at once.
#[test]
fn cooperative_members_revoke_only_what_moves() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::CooperativeSticky, None);
    let b = h.add(Assignor::CooperativeSticky, None);
    h.run(2_000, &[a, b]);
    let c = h.add(Assignor::CooperativeSticky, None);
    h.run(10_000, &[a, b, c]);
    assert_eq!((h.owned(a), h.owned(b), h.owned(c)), (2, 2, 2));
    assert_eq!(h.revoked[a].len() + h.revoked[b].len(), 2, "only the two partitions that moved");
    assert!(h.double_owned.is_empty(), "owned twice: {:?}", h.double_owned);
    assert!(h.coordinator.generation("billing").is_some_and(|g| g >= 3), "two rebalances after the join");
}

// Shows max.poll.interval.ms (KIP-62): a member that stops polling leaves the group and
// its partitions are lost; its later commit is refused (UNKNOWN_MEMBER_ID), and the other
// member takes everything over.
#[test]
fn a_member_that_stops_polling_leaves_and_its_commit_is_refused() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    for member in &mut h.members {
        member.config.max_poll_interval_ms = 5_000;
    }
    h.run(2_000, &[a, b]);
    assert_eq!(h.owned(a), 3);
    let generation = h.members[a].generation();
    let member_id = h.members[a].member_id().to_string();
    // a is stuck in processing: only b polls.
    h.run(8_000, &[b]);
    assert_eq!(h.lost[a].len(), 3);
    assert_eq!(h.owned(b), 6);
    // The stuck consumer's commit, sent as its old self would have sent it.
    let zombie = GroupRequest::OffsetCommit {
        group: "billing".into(),
        member_id,
        group_instance_id: None,
        generation,
        offsets: vec![(TopicPartition::new(0, 0), Offset(7))],
    };
    h.coordinator.handle_request(h.now, NodeId(a as u32), 999, zombie);
    let answer = std::iter::from_fn(|| h.coordinator.poll_output()).find_map(|o| match o {
        CoordinatorOutput::Respond { response: GroupResponse::OffsetCommit { error, .. }, .. } => Some(error),
        _ => None,
    });
    assert_eq!(answer, Some(ErrorCode::UnknownMemberId));
}

// Shows that a rebalance announced by the heartbeat (REBALANCE_IN_PROGRESS) is joined
// only at the member's next poll, as the Java client joins from poll(): a member busy
// processing holds the rebalance up until it polls or its poll interval runs out.
#[test]
fn a_rebalance_is_joined_at_the_next_poll() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    h.run(2_000, &[a, b]);
    let generation = h.members[a].generation();
    let c = h.add(Assignor::Range, None);
    // a keeps heartbeating (handle_timeout) but does not poll for 6 s.
    h.run(6_000, &[b, c]);
    assert_eq!(h.members[a].generation(), generation, "no join without a poll");
    assert_eq!(h.owned(a), 3, "still owns its partitions while processing");
    h.run(3_000, &[a, b, c]);
    assert!(h.members[a].generation() > generation);
    assert_eq!((h.owned(a), h.owned(b), h.owned(c)), (2, 2, 2));
}

// Shows commits through the member carry its generation: accepted while stable; once the
// member is out of the group (its poll interval ran out) it does not even send one — the
// commit fails at once, as the Java client's CommitFailedException does, and the
// committed offset stays.
#[test]
fn commits_carry_the_generation() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    h.members[a].config.max_poll_interval_ms = 5_000;
    h.run(2_000, &[a]);
    let ok = h.members[a].commit(h.now, vec![(TopicPartition::new(0, 0), Offset(5))]);
    h.pump();
    assert_eq!(h.commits.get(&(a, ok)), Some(&ErrorCode::None));
    assert_eq!(h.coordinator.committed("billing", TopicPartition::new(0, 0)), Some(Offset(5)));
    h.run(6_000, &[]);
    assert_eq!(h.lost[a].len(), 6);
    let late = h.members[a].commit(h.now, vec![(TopicPartition::new(0, 0), Offset(9))]);
    h.pump();
    assert_eq!(h.commits.get(&(a, late)), Some(&ErrorCode::IllegalGeneration));
    assert_eq!(h.coordinator.committed("billing", TopicPartition::new(0, 0)), Some(Offset(5)));
}

// Shows the eager revoke-commit-join order (ConsumerCoordinator.onJoinPrepare): members
// that commit in their Revoked callback get those commits accepted, because the join
// waits for them, and one member joining costs one rebalance, not a storm.
#[test]
fn eager_revoke_commits_land_before_the_join() {
    let mut h = Harness::new(CoordinatorConfig::default());
    h.commit_on_revoke = true;
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    h.run(2_000, &[a, b]);
    let before = h.coordinator.generation("billing").unwrap_or(0);
    let c = h.add(Assignor::Range, None);
    h.run(20_000, &[a, b, c]);
    assert_eq!((h.owned(a), h.owned(b), h.owned(c)), (2, 2, 2));
    assert!(!h.commits.is_empty());
    assert!(h.commits.values().all(|e| *e == ErrorCode::None), "revoke commits: {:?}", h.commits);
    assert_eq!(h.coordinator.generation("billing"), Some(before + 1), "one rebalance");
}

// Shows a graceful close (AbstractCoordinator.close: onLeavePrepare, then LeaveGroup): the
// commit made in the Revoked callback is accepted, then the member leaves and the other
// member takes over at once.
#[test]
fn close_commits_before_leaving() {
    let mut h = Harness::new(CoordinatorConfig::default());
    h.commit_on_revoke = true;
    let a = h.add(Assignor::Range, None);
    let b = h.add(Assignor::Range, None);
    h.run(2_000, &[a, b]);
    h.members[a].close();
    h.pump();
    h.run(3_000, &[a, b]);
    let a_commits: Vec<ErrorCode> = h.commits.iter().filter(|((m, _), _)| *m == a).map(|(_, e)| *e).collect();
    assert_eq!(a_commits, vec![ErrorCode::None], "the closing member's revoke commit");
    assert!(h.commits.values().all(|e| *e == ErrorCode::None));
    assert_eq!(h.members[a].state(), MemberState::Unjoined);
    assert_eq!(h.owned(b), 6);
}

// Shows that a commit made while the member rejoins fails at once with
// REBALANCE_IN_PROGRESS and is never sent (generationIfStable in the Java client).
#[test]
fn a_commit_while_rejoining_fails_locally() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    h.members[a].poll(h.now);
    assert_eq!(h.members[a].state(), MemberState::Joining);
    let c = h.members[a].commit(h.now, vec![(TopicPartition::new(0, 0), Offset(3))]);
    h.pump();
    assert_eq!(h.commits.get(&(a, c)), Some(&ErrorCode::RebalanceInProgress));
    assert_eq!(h.coordinator.committed("billing", TopicPartition::new(0, 0)), None);
}

// Shows that lost heartbeat answers do not silence a member: the heartbeat in flight is
// given up after request.timeout.ms and the next one goes, so the session never lapses
// (without that, the coordinator would expire a member that thinks it is stable).
#[test]
fn lost_heartbeats_are_given_up_and_sent_again() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    for member in &mut h.members {
        member.config.request_timeout_ms = 2_000;
    }
    h.run(2_000, &[a]);
    let generation = h.members[a].generation();
    h.drop_heartbeats_until = h.now.plus(4_000);
    h.run(30_000, &[a]);
    assert_eq!(h.coordinator.members("billing"), vec![h.members[a].member_id().to_string()]);
    assert_eq!(h.members[a].generation(), generation);
    assert!(h.lost[a].is_empty());
}

// Shows subscription metadata round-tripping (topics, owned partitions, generation), and
// that garbage reads as an empty subscription rather than a panic.
#[test]
fn subscription_metadata_round_trips() {
    let owned = vec![GroupPartition::new("a", 0), GroupPartition::new("b.x", 3)];
    let bytes = encode_subscription(&["a".into(), "b.x".into()], &owned, 4);
    let member = decode_subscription("m1", None, &bytes);
    assert_eq!(member.topics, vec!["a".to_string(), "b.x".to_string()]);
    assert_eq!(member.owned, owned);
    assert_eq!(member.generation, Some(4));
    let garbage = decode_subscription("m2", None, b"\xff|:x,|zz");
    assert!(garbage.owned.is_empty());
    assert_eq!(garbage.generation, None);
}

/// The JoinGroup requests among a member's outputs: (correlation, member id sent).
fn joins_sent(member: &mut GroupMember) -> Vec<(u64, String)> {
    std::iter::from_fn(|| member.poll_output())
        .filter_map(|o| match o {
            MemberOutput::Send { correlation, request: GroupRequest::Join(j) } => Some((correlation, j.member_id)),
            _ => None,
        })
        .collect()
}

// Shows the JoinGroup request timeout of AbstractCoordinator.sendJoinGroupRequest,
// max(request.timeout.ms, rebalance timeout + JOIN_GROUP_TIMEOUT_LAPSE): a join parked
// longer than request.timeout.ms is not given up, one that gets no answer at all is given
// up after the rebalance timeout + 5 s, and joinGroupIfNeeded sends it again after
// retry.backoff.ms with the same member id.
#[test]
fn an_unanswered_join_is_given_up_after_the_rebalance_timeout_and_sent_again() {
    let config = MemberConfig { request_timeout_ms: 30_000, max_poll_interval_ms: 60_000, ..MemberConfig::default() };
    let short = MemberConfig { max_poll_interval_ms: 1_000, ..config.clone() };
    assert_eq!(GroupMember::new(short, Millis(0)).join_timeout_ms(), 30_000, "never below request.timeout.ms");
    let mut m = GroupMember::new(config, Millis(0));
    assert_eq!(m.join_timeout_ms(), 65_000);
    m.subscribe(vec![TOPIC.into()]);
    m.poll(Millis(0));
    let (first, _) = joins_sent(&mut m)[0].clone();
    m.handle_response(Millis(0), first, GroupResponse::Join(JoinResponse::failed("m-1", ErrorCode::MemberIdRequired)));
    assert_eq!(joins_sent(&mut m).len(), 1, "the KIP-394 second join");
    // The coordinator holds the join (another member is slow) and then goes silent.
    for t in (1_000..65_000).step_by(1_000) {
        m.handle_timeout(Millis(t));
        m.poll(Millis(t));
    }
    assert!(joins_sent(&mut m).is_empty(), "still waiting past request.timeout.ms");
    assert_eq!(m.state(), MemberState::Joining);
    m.handle_timeout(Millis(65_000));
    m.poll(Millis(65_000));
    assert!(joins_sent(&mut m).is_empty(), "retry.backoff.ms first");
    m.poll(Millis(65_100));
    assert_eq!(joins_sent(&mut m).into_iter().map(|(_, id)| id).collect::<Vec<_>>(), vec!["m-1".to_string()]);
}

// Shows cooperative onJoinPrepare (ConsumerCoordinator, COOPERATIVE case): when a member's
// subscription drops a topic, it revokes that topic's partitions before it rejoins, so its
// JoinGroup does not claim them and the member still subscribed gets them in the same
// rebalance — one rebalance, where claiming them would make the assignor withhold them
// for a second one (KIP-429).
#[test]
fn cooperative_subscription_change_revokes_dropped_topics_before_the_join() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::CooperativeSticky, None);
    let b = h.add(Assignor::CooperativeSticky, None);
    for member in &mut h.members {
        member.update_metadata([(TOPIC.to_string(), 6), ("audit".to_string(), 2)].into_iter().collect());
    }
    h.run(2_000, &[a, b]);
    assert_eq!((h.owned(a), h.owned(b)), (3, 3));
    let before = h.coordinator.generation("billing").unwrap_or(0);
    h.members[a].subscribe(vec!["audit".into()]);
    h.members[a].poll(h.now);
    let outputs: Vec<MemberOutput> = std::iter::from_fn(|| h.members[a].poll_output()).collect();
    assert!(matches!(outputs.as_slice(), [MemberOutput::Revoked(p)] if p.len() == 3), "revoked first: {outputs:?}");
    h.run(20_000, &[a, b]);
    assert_eq!(h.members[a].owned(), vec![GroupPartition::new("audit", 0), GroupPartition::new("audit", 1)]);
    assert_eq!(h.owned(b), 6);
    assert_eq!(h.coordinator.generation("billing"), Some(before + 1), "one rebalance");
    assert!(h.double_owned.is_empty(), "owned twice: {:?}", h.double_owned);
}

// Shows AbstractCoordinator's generationUnchanged() guard in the commit and heartbeat
// handlers: once a member learned it is out (a commit answered UNKNOWN_MEMBER_ID) and
// sent its rejoin, a second late UNKNOWN_MEMBER_ID about the old membership must not
// reset it again — else the MEMBER_ID_REQUIRED answer to the rejoin is dropped and the id
// it hands out dangles, holding the group's join. (Found by the zombie scenarios.)
#[test]
fn a_late_answer_about_the_old_membership_does_not_undo_the_rejoin() {
    let mut h = Harness::new(CoordinatorConfig::default());
    let a = h.add(Assignor::Range, None);
    h.run(2_000, &[a]);
    assert_eq!(h.members[a].state(), MemberState::Stable);
    let now = h.now.plus(3_000);
    let member = &mut h.members[a];
    member.handle_timeout(now);
    let heartbeat = std::iter::from_fn(|| member.poll_output())
        .find_map(|o| match o {
            MemberOutput::Send { correlation, request: GroupRequest::Heartbeat { .. } } => Some(correlation),
            _ => None,
        })
        .expect("a heartbeat goes out");
    let tp = TopicPartition::new(0, 0);
    let commit = member.commit(now, vec![(tp, Offset(1))]);
    std::iter::from_fn(|| member.poll_output()).for_each(drop);
    let error = ErrorCode::UnknownMemberId;
    member.handle_response(now, commit, GroupResponse::OffsetCommit { error, partitions: vec![(tp, error)] });
    member.poll(now);
    let joins = joins_sent(member);
    assert_eq!(joins.len(), 1, "the rejoin goes out");
    member.handle_response(now, heartbeat, GroupResponse::Heartbeat { error });
    assert_eq!(member.state(), MemberState::Joining, "the late answer leaves the rejoin alone");
    let required = JoinResponse::failed("member-9", ErrorCode::MemberIdRequired);
    member.handle_response(now, joins[0].0, GroupResponse::Join(required));
    let rejoin: Vec<String> = joins_sent(member).into_iter().map(|(_, id)| id).collect();
    assert_eq!(rejoin, vec!["member-9".to_string()], "the rejoin uses the id the coordinator handed out");
}
