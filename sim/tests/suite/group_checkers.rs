//! Each group checker fires on a hand-built group history that has its anomaly and stays
//! quiet on a near-identical one that does not, so the checkers are tested apart from
//! the model and the engine. Consumers are `c0`, `c1`, …; member ids `m0`, `m0b`, ….

use trial_model::{
    ErrorCode, LeaderEpoch, LogEntry, Millis, NodeId, Offset, ProducerId, Record, TopicId, TopicPartition, WriteId,
    WriteOutcome,
};
use trial_sim::groups::{
    check_group, check_groups, expected_records, rebalance_figures, Committer, ExpectedRecord, GroupEvent,
    GroupHistory, GroupProperty, GroupProtocol, GroupVerdicts, RebalanceFigures,
};
use trial_sim::history::{Completion, History, Op, PartitionFinal, ReplicaFinal};

const TP0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const TP1: TopicPartition = TopicPartition { topic: TopicId(0), partition: 1 };

/// The write each test record carries: offset o of partition p is `w(100·p + o)`.
fn write_at(tp: TopicPartition, offset: u64) -> WriteId {
    WriteId(100 * u64::from(tp.partition) + offset)
}

fn owed(tp: TopicPartition, offsets: std::ops::Range<u64>) -> Vec<ExpectedRecord> {
    offsets.map(|o| ExpectedRecord { tp, offset: Offset(o), write: write_at(tp, o) }).collect()
}

fn assigned(consumer: u32, member_id: &str, generation: i32, partitions: &[TopicPartition]) -> GroupEvent {
    GroupEvent::Assigned { consumer, member_id: member_id.into(), generation, partitions: partitions.to_vec() }
}

fn processed(consumer: u32, generation: i32, tp: TopicPartition, offset: u64) -> GroupEvent {
    GroupEvent::Processed { consumer, generation, tp, offset: Offset(offset), write: write_at(tp, offset) }
}

/// A member's commit validated and stored at `at` (no append in flight between).
fn stored(
    at: u64,
    tp: TopicPartition,
    offset: u64,
    consumer: u32,
    member_id: &str,
    generation: i32,
    group: i32,
) -> (u64, GroupEvent) {
    let by = Committer::Member { consumer, member_id: member_id.into(), generation, validated_at: Millis(at) };
    (at, GroupEvent::OffsetStored { tp, offset: Offset(offset), by, group_generation: group })
}

/// The same stored commit, validated earlier, at `validated`: its append to
/// `__consumer_offsets` was in flight until it was stored.
fn validated_at(validated: u64, (at, mut event): (u64, GroupEvent)) -> (u64, GroupEvent) {
    if let GroupEvent::OffsetStored { by: Committer::Member { validated_at, .. }, .. } = &mut event {
        *validated_at = Millis(validated);
    }
    (at, event)
}

/// Coordinator 1 removes consumer `consumer` (member `member_id`) on a session timeout.
fn timed_out(consumer: u32, member_id: &str, generation: i32) -> GroupEvent {
    let reason = "session timeout".into();
    GroupEvent::MemberRemoved { consumer, member_id: member_id.into(), generation, reason, coordinator: NodeId(1) }
}

fn rebalance(generation: i32, reason: &str) -> GroupEvent {
    GroupEvent::RebalanceStarted { generation, reason: reason.into() }
}

fn history(protocol: GroupProtocol, events: Vec<(u64, GroupEvent)>) -> GroupHistory {
    let mut group = GroupHistory::new("g", protocol, vec![TopicId(0)]);
    for (at, event) in events {
        group.push(Millis(at), event);
    }
    group
}

/// One consumer joins, owns both partitions in generation 1, processes offsets 0..3 of
/// each and then commits 3 on each: nothing went wrong.
fn clean_events() -> Vec<(u64, GroupEvent)> {
    let mut events = vec![
        (0, rebalance(0, "adding new member m0")),
        (10, GroupEvent::Stable { generation: 1, members: 1 }),
        (10, assigned(0, "m0", 1, &[TP0, TP1])),
    ];
    for offset in 0..3 {
        events.push((20 + offset, processed(0, 1, TP0, offset)));
        events.push((20 + offset, processed(0, 1, TP1, offset)));
    }
    events.push(stored(30, TP0, 3, 0, "m0", 1, 1));
    events.push(stored(30, TP1, 3, 0, "m0", 1, 1));
    events
}

fn owed_both() -> Vec<ExpectedRecord> {
    [owed(TP0, 0..3), owed(TP1, 0..3)].concat()
}

fn violations(verdicts: &GroupVerdicts, property: GroupProperty) -> u64 {
    verdicts.result(property).violations
}

fn examples(verdicts: &GroupVerdicts, property: GroupProperty) -> String {
    verdicts.result(property).examples.join("\n")
}

// Shows every group checker stays quiet on a group that processed each owed record once,
// in order, with one owner and commits after processing, and that the group is named
// exactly-once (Kafka's consumer javadoc, "Offsets and Consumer Position": commit after
// processing, no failure, so no replay). The baseline for the firing tests below.
#[test]
fn group_checkers_quiet_on_a_clean_history() {
    for protocol in [GroupProtocol::Eager, GroupProtocol::Cooperative] {
        let verdicts = check_group(&history(protocol, clean_events()), &owed_both());
        for result in &verdicts.results {
            assert!(result.held(), "{} fired on a clean history: {:?}", result.property.name(), result.examples);
        }
        assert_eq!(verdicts.semantics.name(), "exactly-once");
        assert_eq!(verdicts.counts.processed, 6);
        assert_eq!(verdicts.counts.expected, 6);
    }
}

// Shows at-least-once fires when a consumer commits before it processes and then crashes:
// the next owner starts at the committed offset and the records in between are never
// processed; at-most-once stays quiet (Kafka's consumer javadoc on delivery semantics:
// committing before processing gives at-most-once). The example names the commit that
// passed the records and the crash after it.
#[test]
fn group_at_least_once_fires_when_a_commit_passes_unprocessed_records() {
    let events = vec![
        (0, rebalance(0, "adding new member m0")),
        (10, GroupEvent::Stable { generation: 1, members: 1 }),
        (10, assigned(0, "m0", 1, &[TP0])),
        stored(20, TP0, 3, 0, "m0", 1, 1),
        (21, processed(0, 1, TP0, 0)),
        (25, GroupEvent::ConsumerCrashed { consumer: 0 }),
        (70, timed_out(0, "m0", 1)),
        (70, rebalance(1, "removing member m0 on heartbeat expiration")),
        (80, GroupEvent::Stable { generation: 2, members: 1 }),
        (80, assigned(1, "m1", 2, &[TP0])),
        (90, processed(1, 2, TP0, 3)),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..4));
    assert_eq!(violations(&verdicts, GroupProperty::AtLeastOnce), 2, "offsets 1 and 2 were skipped");
    assert_eq!(violations(&verdicts, GroupProperty::AtMostOnce), 0);
    assert_eq!(verdicts.semantics.name(), "at-most-once");
    let example = examples(&verdicts, GroupProperty::AtLeastOnce);
    assert!(example.contains("t0-0 offset 1 (w1) was never processed"), "{example}");
    assert!(example.contains("committed by c0 (gen 1) at t=20ms passed it, then c0 crashed at t=25ms"), "{example}");
}

// Shows at-least-once stays quiet on the same crash when the consumer commits only what
// it processed: the next owner resumes at the committed offset and every owed record is
// processed (Kafka's consumer javadoc: commit after processing gives at-least-once).
#[test]
fn group_at_least_once_quiet_when_the_next_owner_resumes_from_the_commit() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (11, processed(0, 1, TP0, 0)),
        stored(12, TP0, 1, 0, "m0", 1, 1),
        (13, GroupEvent::ConsumerCrashed { consumer: 0 }),
        (80, assigned(1, "m1", 2, &[TP0])),
        (81, processed(1, 2, TP0, 1)),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..2));
    assert_eq!(violations(&verdicts, GroupProperty::AtLeastOnce), 0);
    assert_eq!(verdicts.semantics.name(), "exactly-once");
}

// Shows at-most-once fires when a consumer processes records and crashes before its
// commit is stored: the next owner replays them from the last committed offset, and
// at-least-once stays quiet (Kafka's consumer javadoc: process-then-commit is
// at-least-once; the duplicates are the price). The example names both processings and
// the crash and rebalance between them.
#[test]
fn group_at_most_once_fires_when_a_crash_precedes_the_commit() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (11, processed(0, 1, TP0, 0)),
        stored(12, TP0, 1, 0, "m0", 1, 1),
        (13, processed(0, 1, TP0, 1)),
        (14, processed(0, 1, TP0, 2)),
        (15, GroupEvent::ConsumerCrashed { consumer: 0 }),
        (60, rebalance(1, "removing member m0 on heartbeat expiration")),
        (70, assigned(1, "m1", 2, &[TP0])),
        (71, processed(1, 2, TP0, 1)),
        (72, processed(1, 2, TP0, 2)),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..3));
    assert_eq!(violations(&verdicts, GroupProperty::AtMostOnce), 2);
    assert_eq!(violations(&verdicts, GroupProperty::AtLeastOnce), 0);
    assert_eq!(verdicts.semantics.name(), "at-least-once");
    assert_eq!(verdicts.counts.duplicates, 2);
    let example = examples(&verdicts, GroupProperty::AtMostOnce);
    assert!(example.contains("t0-0 offset 1 (w1) processed 2 times: by c0 (gen 1) at t=13ms, by c1 (gen 2) at t=71ms"));
    assert!(example.contains("c0 crashed at t=15ms"), "{example}");
    assert!(example.contains("a rebalance from gen 1 started at t=60ms"), "{example}");
    assert!(example.contains("t0-0 offset 1 committed by c0 (gen 1) at t=12ms"), "{example}");
}

// Shows at-most-once stays quiet when a record is re-read but processed once: the same
// write at another offset (a producer retry without idempotence, KIP-98) is another
// record, and a record that was never owed (not acknowledged) processed once is fine.
#[test]
fn group_at_most_once_quiet_on_the_same_write_at_two_offsets() {
    let mut events = vec![(10, assigned(0, "m0", 1, &[TP0])), (11, processed(0, 1, TP0, 0))];
    events.push((
        12,
        GroupEvent::Processed { consumer: 0, generation: 1, tp: TP0, offset: Offset(1), write: WriteId(0) },
    ));
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..1));
    assert_eq!(violations(&verdicts, GroupProperty::AtMostOnce), 0);
    assert_eq!(verdicts.semantics.name(), "exactly-once");
}

// Shows in-order-per-partition fires when a consumer processes an offset at or below one
// it already processed in the same run of its assignment, with no seek between (Kafka's
// documentation, "Kafka only provides a total order over records within a partition";
// the fetcher's position only moves forward unless `seek` is called).
#[test]
fn group_order_fires_on_a_step_back_within_one_run() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (11, processed(0, 1, TP0, 0)),
        (12, processed(0, 1, TP0, 2)),
        (13, processed(0, 1, TP0, 1)),
        (14, processed(0, 1, TP0, 1)),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..3));
    assert_eq!(violations(&verdicts, GroupProperty::InOrderPerPartition), 2, "2 after 2→1, then 1 again");
    let example = examples(&verdicts, GroupProperty::InOrderPerPartition);
    assert!(
        example.contains("c0 (gen 1) processed t0-0 offset 1 (w1) at t=13ms after offset 2 at t=12ms"),
        "{example}"
    );
}

// Shows in-order-per-partition stays quiet when the step back follows a seek
// (`KafkaConsumer.seek`, or the rewind to the committed offset after an aborted
// transaction, KIP-98), a revoke and reassignment (eager rebalance, positions refetched
// from the committed offset), or a restart; and gaps are allowed (compaction, markers).
#[test]
fn group_order_quiet_after_seek_reassignment_or_restart() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (11, processed(0, 1, TP0, 0)),
        (12, processed(0, 1, TP0, 2)),
        (13, GroupEvent::PositionReset { consumer: 0, tp: TP0, from: Some(Offset(3)), to: Offset(1) }),
        (14, processed(0, 1, TP0, 1)),
        (15, GroupEvent::Revoked { consumer: 0, partitions: vec![TP0] }),
        (20, assigned(0, "m0", 2, &[TP0])),
        (21, processed(0, 2, TP0, 0)),
        (22, GroupEvent::ConsumerCrashed { consumer: 0 }),
        (23, GroupEvent::ConsumerRestarted { consumer: 0 }),
        (24, processed(0, -1, TP0, 0)),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &owed(TP0, 0..3));
    assert_eq!(violations(&verdicts, GroupProperty::InOrderPerPartition), 0);
}

// Shows one-owner-per-generation fires when the assignment of one generation gives a
// partition to two live members (what the coordinator's single assignment per generation
// rules out: `AbstractCoordinator` / `ConsumerCoordinator`, the leader's assignor output
// is one owner per partition). Under cooperative rebalancing the at-once check fires too.
#[test]
fn group_one_owner_per_generation_fires_on_a_doubly_assigned_partition() {
    for protocol in [GroupProtocol::Eager, GroupProtocol::Cooperative] {
        let events = vec![
            (10, GroupEvent::Stable { generation: 1, members: 2 }),
            (10, assigned(0, "m0", 1, &[TP0, TP1])),
            (11, assigned(1, "m1", 1, &[TP0])),
        ];
        let verdicts = check_group(&history(protocol, events), &[]);
        assert_eq!(violations(&verdicts, GroupProperty::OneOwnerPerGeneration), 1);
        let example = examples(&verdicts, GroupProperty::OneOwnerPerGeneration);
        assert!(example.contains("t0-0 owned by c0 (since t=10ms) and c1 (since t=11ms) both in gen 1 at t=11ms"));
        let at_once = violations(&verdicts, GroupProperty::NeverTwoOwnersAtOnce);
        assert_eq!(at_once, u64::from(protocol == GroupProtocol::Cooperative));
    }
}

// Shows one-owner-per-generation stays quiet when the second owner in one generation is a
// replaced static member: KIP-345 hands the assignment of a static member to its new
// instance without a rebalance (same generation) and removes the old member id, so the
// paused old instance is a zombie, not a live member (it gets FENCED_INSTANCE_ID).
// Also quiet on the eager handover through a revoke.
#[test]
fn group_one_owner_per_generation_quiet_on_a_replaced_static_member() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (20, GroupEvent::ConsumerPaused { consumer: 0 }),
        (
            30,
            GroupEvent::MemberRemoved {
                consumer: 0,
                member_id: "m0".into(),
                generation: 1,
                reason: "static member replaced (group.instance.id i0)".into(),
                coordinator: NodeId(1),
            },
        ),
        (30, assigned(1, "m1", 1, &[TP0])),
        (40, GroupEvent::ConsumerResumed { consumer: 0 }),
        (41, GroupEvent::Fenced { consumer: 0, error: ErrorCode::FencedInstanceId }),
        (50, rebalance(1, "adding new member m2")),
        (51, GroupEvent::Revoked { consumer: 1, partitions: vec![TP0] }),
        (60, assigned(2, "m2", 2, &[TP0])),
        (60, assigned(1, "m1", 2, &[])),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::OneOwnerPerGeneration), 0);
}

// Shows never-two-owners-at-once fires on a cooperative group when a partition is given
// to a new owner while its old owner, still a live member that has not synced the new
// generation, has not revoked it — the overlap KIP-429's two-round handover exists to
// prevent (`ConsumerCoordinator.onJoinComplete`, cooperative-sticky). The per-generation
// check does not see it (the owners are in different generations), and on an eager group
// the at-once check is not applied.
#[test]
fn group_never_two_owners_fires_on_a_cooperative_overlap() {
    let events = || {
        vec![
            (10, assigned(0, "m0", 1, &[TP0, TP1])),
            (20, rebalance(1, "adding new member m1")),
            (30, assigned(1, "m1", 2, &[TP0])),
        ]
    };
    let verdicts = check_group(&history(GroupProtocol::Cooperative, events()), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NeverTwoOwnersAtOnce), 1);
    assert_eq!(violations(&verdicts, GroupProperty::OneOwnerPerGeneration), 0);
    let example = examples(&verdicts, GroupProperty::NeverTwoOwnersAtOnce);
    assert!(example.contains("t0-0 owned by c0 (gen 1, since t=10ms) and c1 (gen 2, since t=30ms) at once from t=30ms"));
    assert!(example.contains("a rebalance from gen 1 started at t=20ms"), "{example}");
    let eager = check_group(&history(GroupProtocol::Eager, events()), &[]);
    assert!(!eager.result(GroupProperty::NeverTwoOwnersAtOnce).checked);
    assert_eq!(violations(&eager, GroupProperty::NeverTwoOwnersAtOnce), 0);
    assert!(eager.text().contains("n/a      never-two-owners-at-once"));
}

// Shows never-two-owners-at-once stays quiet on KIP-429's handover: in generation 2 the
// old owner keeps what stays and revokes the partition that moves; only in the follow-up
// generation 3 does the new owner get it. A zombie (its session expired, the coordinator
// removed it) that still believes it owns a partition is not a member and not counted.
#[test]
fn group_never_two_owners_quiet_on_the_cooperative_handover() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0, TP1])),
        (20, rebalance(1, "adding new member m1")),
        (30, assigned(0, "m0", 2, &[])),
        (30, GroupEvent::Revoked { consumer: 0, partitions: vec![TP0] }),
        (30, assigned(1, "m1", 2, &[])),
        (31, rebalance(2, "cooperative follow-up after revoking t0-0")),
        (40, assigned(0, "m0", 3, &[])),
        (40, assigned(1, "m1", 3, &[TP0])),
        (50, GroupEvent::ConsumerPaused { consumer: 0 }),
        (100, timed_out(0, "m0", 3)),
        (100, rebalance(3, "removing member m0 on heartbeat expiration")),
        (110, assigned(1, "m1", 4, &[TP1])),
    ];
    let verdicts = check_group(&history(GroupProtocol::Cooperative, events), &[]);
    assert!(verdicts.result(GroupProperty::NeverTwoOwnersAtOnce).checked);
    assert_eq!(violations(&verdicts, GroupProperty::NeverTwoOwnersAtOnce), 0);
    assert_eq!(violations(&verdicts, GroupProperty::OneOwnerPerGeneration), 0);
}

// Shows no-fenced-commit-accepted fires when the coordinator stores a commit sent under
// an old generation, and one from a member id it had removed (Kafka's
// `GroupCoordinator.handleCommitOffsets` answers ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID;
// KIP-447 fences transactional offset commits by the same generation; a paused zombie is
// the classic sender). The examples name the removal and the pause.
#[test]
fn group_fenced_commit_fires_on_a_stale_generation_or_removed_member() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (20, GroupEvent::ConsumerPaused { consumer: 0 }),
        (70, timed_out(0, "m0", 1)),
        (70, rebalance(1, "removing member m0 on heartbeat expiration")),
        stored(75, TP0, 4, 0, "m0", 1, 1),
        (80, assigned(1, "m1", 2, &[TP0])),
        (90, GroupEvent::ConsumerResumed { consumer: 0 }),
        stored(91, TP0, 5, 0, "m0", 1, 2),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 2);
    let example = examples(&verdicts, GroupProperty::NoFencedCommitAccepted);
    let removed = "although the coordinator removed c0 (member m0) at t=70ms (session timeout)";
    assert!(example.contains(&format!("t0-0 offset 4 from c0 (member m0, gen 1) was stored at t=75ms {removed}")));
    assert!(
        example.contains("t0-0 offset 5 from c0 (member m0, gen 1) was stored at t=91ms while the group was in gen 2"),
        "{example}"
    );
    assert!(example.contains("c0 paused at t=20ms"), "{example}");
}

// Shows no-fenced-commit-accepted judges a commit when the coordinator validated it, as
// Kafka does: `GroupCoordinator.handleCommitOffsets` checks member and generation when
// the request comes and stores the offsets once their append to `__consumer_offsets` is
// durable (`GroupMetadata.onOffsetCommitAppend`), whatever the group did meanwhile. A
// commit validated before the member's removal and stored after it is quiet; the same
// commit validated after the removal fires.
#[test]
fn group_fenced_commit_judges_the_commit_when_it_was_validated() {
    let with_commit = |commit: (u64, GroupEvent)| {
        vec![
            (10, assigned(0, "m0", 1, &[TP0])),
            (70, timed_out(0, "m0", 1)),
            (70, rebalance(1, "removing member m0 on heartbeat expiration")),
            commit,
        ]
    };
    let in_flight = validated_at(65, stored(75, TP0, 4, 0, "m0", 1, 1));
    let verdicts = check_group(&history(GroupProtocol::Eager, with_commit(in_flight)), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 0);
    let after_removal = validated_at(72, stored(75, TP0, 4, 0, "m0", 1, 1));
    let verdicts = check_group(&history(GroupProtocol::Eager, with_commit(after_removal)), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 1);
}

// Shows no-fenced-commit-accepted stays quiet when the zombie's commit is rejected
// (ILLEGAL_GENERATION, nothing stored) and the member that rejoined commits under its new
// member id and generation (KIP-345 / KIP-447: fencing by generation, not by consumer).
#[test]
fn group_fenced_commit_quiet_when_the_zombie_is_rejected() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        (70, timed_out(0, "m0", 1)),
        (80, assigned(1, "m1", 2, &[TP0])),
        (
            90,
            GroupEvent::CommitSent {
                consumer: 0,
                member_id: "m0".into(),
                generation: 1,
                offsets: vec![(TP0, Offset(5))],
            },
        ),
        (
            91,
            GroupEvent::CommitResult {
                consumer: 0,
                generation: 1,
                offsets: vec![(TP0, Offset(5))],
                error: ErrorCode::IllegalGeneration,
            },
        ),
        (91, GroupEvent::Fenced { consumer: 0, error: ErrorCode::IllegalGeneration }),
        (92, GroupEvent::Lost { consumer: 0, partitions: vec![TP0] }),
        stored(100, TP0, 6, 1, "m1", 2, 2),
        (110, assigned(0, "m0b", 3, &[])),
        stored(111, TP1, 2, 0, "m0b", 3, 3),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 0);
}

// Shows no-fenced-commit-accepted judges a removal against the coordinator that made
// it: a coordinator keeps a removal in memory until it writes the next generation, so a
// successor that loads the group from `__consumer_offsets` (GroupMetadataManager's load on
// failover) knows the member again and rightly stores its commit; and a deposed
// coordinator that, cut off, times out sessions after the successor took over fences
// nothing. Found by generated fault plans (a consumer's commits to the new coordinator
// were reported as fenced). The same removals with no failover in between still fire.
#[test]
fn group_fenced_commit_quiet_when_a_successor_coordinator_knows_the_member() {
    let removed = |at: u64, consumer: u32, member: &str, coordinator: u32| {
        let reason = "its session timed out".into();
        let event = GroupEvent::MemberRemoved {
            consumer,
            member_id: member.into(),
            generation: 1,
            reason,
            coordinator: NodeId(coordinator),
        };
        (at, event)
    };
    let loaded = |at: u64, coordinator: u32| {
        (at, GroupEvent::OffsetLoaded { tp: TP0, offset: Some(Offset(3)), coordinator: NodeId(coordinator) })
    };
    let events = |failover: bool| {
        let mut events = vec![
            loaded(1, 1),
            (10, assigned(0, "m0", 1, &[TP0])),
            (10, assigned(1, "m1", 1, &[TP1])),
            removed(70, 0, "m0", 1),
            loaded(80, 2),
            removed(85, 1, "m1", 1),
            stored(90, TP0, 4, 0, "m0", 1, 1),
            stored(95, TP1, 2, 1, "m1", 1, 1),
        ];
        if !failover {
            events.retain(|(at, _)| *at != 80);
        }
        events
    };
    let verdicts = check_group(&history(GroupProtocol::Eager, events(true)), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 0, "{verdicts:?}");
    let verdicts = check_group(&history(GroupProtocol::Eager, events(false)), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::NoFencedCommitAccepted), 2);
}

// Shows committed-offset-never-backwards fires when a late commit lands after a newer
// one (an async commit retried out of order — why `commitAsync` does not retry, per the
// KafkaConsumer javadoc) and when a new coordinator loads an offset older than one it had
// acknowledged (a lost `__consumer_offsets` append).
#[test]
fn group_offsets_backwards_fires_on_a_late_commit_or_a_lost_one() {
    let events = vec![
        (10, assigned(0, "m0", 1, &[TP0])),
        stored(20, TP0, 5, 0, "m0", 1, 1),
        stored(21, TP0, 3, 0, "m0", 1, 1),
        stored(30, TP0, 8, 0, "m0", 1, 1),
        (40, GroupEvent::OffsetLoaded { tp: TP0, offset: Some(Offset(6)), coordinator: NodeId(2) }),
        (41, GroupEvent::OffsetLoaded { tp: TP1, offset: Some(Offset(1)), coordinator: NodeId(2) }),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::CommittedOffsetNeverBackwards), 2);
    let example = examples(&verdicts, GroupProperty::CommittedOffsetNeverBackwards);
    let late =
        "t0-0 offset 3 committed by c0 (gen 1) at t=21ms; before it t0-0 offset 5 committed by c0 (gen 1) at t=20ms";
    assert!(example.contains(&format!("t0-0 committed offset went back from 5 to 3: {late}")), "{example}");
    assert!(example.contains("went back from 8 to 6: coordinator 2 loaded t0-0 offset 6 at t=40ms"), "{example}");
}

// Shows committed-offset-never-backwards stays quiet on an explicit reset to an earlier
// offset (`kafka-consumer-groups.sh --reset-offsets`, KIP-122), which is the new
// baseline, and on a coordinator failover that loads the last stored offset.
#[test]
fn group_offsets_backwards_quiet_on_an_explicit_reset() {
    let events = vec![
        stored(20, TP0, 5, 0, "m0", 1, 1),
        (30, GroupEvent::OffsetStored { tp: TP0, offset: Offset(0), by: Committer::Reset, group_generation: 1 }),
        stored(40, TP0, 2, 0, "m0", 1, 1),
        (50, GroupEvent::OffsetLoaded { tp: TP0, offset: Some(Offset(2)), coordinator: NodeId(1) }),
        stored(60, TP0, 3, 0, "m0", 1, 1),
    ];
    let verdicts = check_group(&history(GroupProtocol::Eager, events), &[]);
    assert_eq!(violations(&verdicts, GroupProperty::CommittedOffsetNeverBackwards), 0);
}

// Shows the rebalance figures on a small run: a join (30 ms to Stable), a crash found by
// session timeout (the rebalance takes 15 ms, but the partitions stand unowned from the
// crash at t=100 to the new assignment at t=160: 2 × 60 partition-ms — the cost KIP-345
// static membership and shorter session timeouts trade against), and a last rebalance
// that never settles. Counted as Kafka's coordinator logs them: PreparingRebalance to
// Stable (`GroupCoordinator`), one per trigger.
#[test]
fn group_rebalance_figures_on_a_small_run() {
    let mut group = history(
        GroupProtocol::Eager,
        vec![
            (0, rebalance(0, "adding new member m0")),
            (5, rebalance(0, "adding new member m1 (same rebalance)")),
            (30, GroupEvent::Stable { generation: 1, members: 1 }),
            (30, assigned(0, "m0", 1, &[TP0, TP1])),
            (100, GroupEvent::ConsumerCrashed { consumer: 0 }),
            (145, rebalance(1, "removing member m0 on heartbeat expiration")),
            (160, GroupEvent::Stable { generation: 2, members: 1 }),
            (160, assigned(1, "m1", 2, &[TP0, TP1])),
            (180, GroupEvent::Revoked { consumer: 1, partitions: vec![TP1] }),
            (190, rebalance(2, "adding new member m2")),
        ],
    );
    group.finish(Millis(200));
    let figures = rebalance_figures(&group);
    assert_eq!(
        figures,
        RebalanceFigures {
            rebalances: 3,
            stabilized: 2,
            trigger_to_stable_ms_mean: Some(22),
            trigger_to_stable_ms_max: Some(30),
            // 60 + 60 after the crash, and t0-1 from its revoke at 180 to the end at 200.
            unowned_partition_ms: 140,
            unowned_ms_max: 60,
        }
    );
    let text = check_group(&group, &[]).text();
    assert!(text.contains("rebalances 3 (2 reached Stable) · trigger to Stable mean 22 ms, max 30 ms"), "{text}");
}

fn acked(write: u64, tp: TopicPartition, offset: u64) -> Op {
    Op {
        write: WriteId(write),
        producer: 0,
        topic: tp.topic,
        key: None,
        invoked_at: Millis(0),
        completed: Some(Completion {
            at: Millis(1),
            tp: Some(tp),
            outcome: WriteOutcome::Ok { offset: Some(Offset(offset)) },
        }),
    }
}

// Shows how a run's checkers get the records a group is owed: acknowledged writes in the
// committed logs of subscribed partitions (below the leader's high watermark, as
// `History::committed` reads them). A record written but not acknowledged is not owed
// (the producer could not know), and another topic's records are not either (Kafka's
// consumer javadoc: a group reads its subscription only).
#[test]
fn group_owed_records_come_from_acked_writes_in_committed_logs() {
    let record = |write: u64| LogEntry {
        leader_epoch: LeaderEpoch(0),
        record: Record {
            write: WriteId(write),
            key: None,
            producer: ProducerId(0),
            sequence: write as u32,
            timestamp: Millis(0),
            stamp: None,
        },
    };
    let other = TopicPartition { topic: TopicId(1), partition: 0 };
    let partition = |tp: TopicPartition, log: Vec<LogEntry>| PartitionFinal {
        tp,
        leader: Some(NodeId(0)),
        leader_epoch: 0,
        isr: vec![NodeId(0)],
        elr: Vec::new(),
        replicas: vec![ReplicaFinal { broker: NodeId(0), high_watermark: Offset(2), log }],
    };
    let mut unacked = acked(1, TP0, 1);
    unacked.completed = None;
    let run = History {
        ops: vec![acked(0, TP0, 0), unacked, acked(2, other, 0)],
        partitions: vec![partition(TP0, vec![record(0), record(1)]), partition(other, vec![record(2)])],
        ..History::default()
    };
    let expected = expected_records(&run, &[TopicId(0)]);
    assert_eq!(expected, vec![ExpectedRecord { tp: TP0, offset: Offset(0), write: WriteId(0) }]);
    let mut group = GroupHistory::new("g", GroupProtocol::Cooperative, vec![TopicId(0)]);
    group.push(Millis(10), assigned(0, "m0", 1, &[TP0]));
    let verdicts = check_groups(&[group], &run);
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].counts.lost, 1);
    let text = verdicts[0].text();
    assert!(text.contains("group g (cooperative): observed semantics at-most-once · owed 1 · processed 0 · lost 1"));
    assert!(text.contains("VIOLATED at-least-once"), "{text}");
    assert!(text.contains("t0-0 offset 0 (w0) was never processed: the group never committed an offset on t0-0"));
}

// Shows the property names are stable kebab-case (scenario files and reports use them)
// and group events serialize as tagged JSON objects (the trace writes JSON lines).
#[test]
fn group_property_names_and_event_json_are_stable() {
    let names: Vec<&str> = GroupProperty::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "at-least-once",
            "at-most-once",
            "in-order-per-partition",
            "one-owner-per-generation",
            "never-two-owners-at-once",
            "no-fenced-commit-accepted",
            "committed-offset-never-backwards"
        ]
    );
    for property in GroupProperty::ALL {
        assert_eq!(GroupProperty::parse(property.name()), Some(property));
    }
    let json = serde_json::to_value(stored(30, TP0, 3, 0, "m0", 1, 1).1).expect("plain data serializes");
    assert_eq!(json["kind"], "offset-stored");
    assert_eq!(json["by"]["member"]["member_id"], "m0");
    assert_eq!(json["group_generation"], 1);
}
