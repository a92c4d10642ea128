//! Table tests: the cases of Kafka's `RangeAssignorTest`, `RoundRobinAssignorTest`,
//! `AbstractStickyAssignorTest`, `StickyAssignorTest` and `CooperativeStickyAssignorTest`
//! (clients/src/test/java/org/apache/kafka/clients/consumer/), with Kafka's expected output,
//! plus a property test over generated groups.
//!
//! Members are listed in the order the Java test puts them into its subscription map.

use super::*;

fn topics(spec: &[(&str, u32)]) -> PartitionsPerTopic {
    spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// Partitions written as Kafka's tests write them: "t1-0, t1-3".
fn tps(spec: &str) -> Vec<GroupPartition> {
    let mut out: Vec<GroupPartition> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let dash = s.rfind('-')?;
            Some(GroupPartition::new(&s[..dash], s[dash + 1..].parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

fn member(id: &str, subscribed: &[&str]) -> Member {
    Member {
        member_id: MemberId::new(id),
        topics: subscribed.iter().map(|t| t.to_string()).collect(),
        ..Member::default()
    }
}

fn static_member(id: &str, instance: &str, subscribed: &[&str]) -> Member {
    Member { group_instance_id: Some(instance.to_string()), ..member(id, subscribed) }
}

fn owning(m: Member, owned: &str, generation: Option<i32>) -> Member {
    Member { owned: tps(owned), generation, ..m }
}

#[track_caller]
fn expect(got: &GroupAssignment, want: &[(&str, &str)]) {
    let want: GroupAssignment = want.iter().map(|(m, p)| (MemberId::new(*m), tps(p))).collect();
    assert_eq!(got, &want);
}

/// The members again, each owning what `assignment` gave it, in `generation`.
fn next_round(members: &[Member], assignment: &GroupAssignment, generation: i32) -> Vec<Member> {
    members
        .iter()
        .map(|m| Member {
            owned: assignment.get(&m.member_id).cloned().unwrap_or_default(),
            generation: Some(generation),
            ..m.clone()
        })
        .collect()
}

// ---------------------------------------------------------------- names and protocols

// Shows the names Kafka sends in JoinGroup and each assignor's rebalance protocol
// (ConsumerPartitionAssignor.name / supportedProtocols; KIP-429 for cooperative-sticky).
#[test]
fn names_and_protocols_are_kafkas() {
    let names: Vec<&str> = Assignor::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(names, ["range", "roundrobin", "sticky", "cooperative-sticky"]);
    for a in Assignor::ALL {
        assert_eq!(Assignor::from_name(a.name()), Some(a));
    }
    assert_eq!(Assignor::from_name("bogus"), None);
    assert_eq!(Assignor::CooperativeSticky.rebalance_protocol(), RebalanceProtocol::Cooperative);
    assert_eq!(
        Assignor::CooperativeSticky.supported_protocols(),
        [RebalanceProtocol::Cooperative, RebalanceProtocol::Eager]
    );
    for a in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
        assert_eq!(a.rebalance_protocol(), RebalanceProtocol::Eager);
    }
}

// ---------------------------------------------------------------- every assignor

// Shows the edge cases every Kafka assignor test opens with: testOneConsumerNoTopic,
// testOneConsumerNonexistentTopic, testOneConsumerOneTopic,
// testOnlyAssignsPartitionsFromSubscribedTopics, testOneConsumerMultipleTopics.
#[test]
fn single_consumer_cases_for_every_assignor() {
    for a in Assignor::ALL {
        expect(&a.assign(&topics(&[]), &[member("consumer", &[])]), &[("consumer", "")]);
        expect(&a.assign(&topics(&[]), &[member("consumer", &["topic"])]), &[("consumer", "")]);
        let one = topics(&[("topic", 3)]);
        expect(&a.assign(&one, &[member("consumer", &["topic"])]), &[("consumer", "topic-0, topic-1, topic-2")]);
        let two = topics(&[("topic", 3), ("other", 3)]);
        expect(&a.assign(&two, &[member("consumer", &["topic"])]), &[("consumer", "topic-0, topic-1, topic-2")]);
        let multi = topics(&[("topic1", 1), ("topic2", 2)]);
        let got = a.assign(&multi, &[member("consumer", &["topic1", "topic2"])]);
        expect(&got, &[("consumer", "topic1-0, topic2-0, topic2-1")]);
    }
}

// Shows bad input gives an empty assignment, not a panic: duplicate member ids, an empty
// group, owned partitions past the topic's end.
#[test]
fn bad_input_is_refused_without_panic() {
    let ppt = topics(&[("t", 2)]);
    for a in Assignor::ALL {
        assert!(a.assign(&ppt, &[member("m", &["t"]), member("m", &["t"])]).is_empty());
        assert!(a.assign(&ppt, &[]).is_empty());
        let got = a.assign(&ppt, &[owning(member("m", &["t"]), "t-7, t-0, t-0, x-1", Some(3))]);
        expect(&got, &[("m", "t-0, t-1")]);
    }
}

// ---------------------------------------------------------------- range

// Shows one partition goes to the first member and two split one each
// (RangeAssignorTest.testTwoConsumersOneTopicOnePartition / ...TwoPartitions).
#[test]
fn range_two_consumers_one_topic() {
    let ms = [member("consumer1", &["topic"]), member("consumer2", &["topic"])];
    expect(&Assignor::Range.assign(&topics(&[("topic", 1)]), &ms), &[("consumer1", "topic-0"), ("consumer2", "")]);
    expect(
        &Assignor::Range.assign(&topics(&[("topic", 2)]), &ms),
        &[("consumer1", "topic-0"), ("consumer2", "topic-1")],
    );
}

// Shows range works per topic over that topic's subscribers only
// (RangeAssignorTest.testMultipleConsumersMixedTopics).
#[test]
fn range_mixed_subscriptions() {
    let ppt = topics(&[("topic1", 3), ("topic2", 2)]);
    let ms = [
        member("consumer1", &["topic1"]),
        member("consumer2", &["topic1", "topic2"]),
        member("consumer3", &["topic1"]),
    ];
    let got = Assignor::Range.assign(&ppt, &ms);
    expect(
        &got,
        &[("consumer1", "topic1-0"), ("consumer2", "topic1-1, topic2-0, topic2-1"), ("consumer3", "topic1-2")],
    );
}

// Shows uneven counts: the first members of each topic get the extra partition, so the
// first member gets both extras (RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions).
#[test]
fn range_uneven_partition_counts() {
    let ppt = topics(&[("topic1", 3), ("topic2", 3)]);
    let ms = [member("consumer1", &["topic1", "topic2"]), member("consumer2", &["topic1", "topic2"])];
    let got = Assignor::Range.assign(&ppt, &ms);
    expect(&got, &[("consumer1", "topic1-0, topic1-1, topic2-0, topic2-1"), ("consumer2", "topic1-2, topic2-2")]);
}

// Shows static members sort by group.instance.id, not member.id, and before dynamic members
// (RangeAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions,
// testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions; KIP-345 MemberInfo).
#[test]
fn range_static_members_order_by_instance_id() {
    let ppt = topics(&[("topic1", 3), ("topic2", 3)]);
    let both = ["topic1", "topic2"];
    let statics = [static_member("consumer-b", "instance1", &both), static_member("consumer-a", "instance2", &both)];
    let want = [("consumer-b", "topic1-0, topic1-1, topic2-0, topic2-1"), ("consumer-a", "topic1-2, topic2-2")];
    expect(&Assignor::Range.assign(&ppt, &statics), &want);
    let mixed = [static_member("consumer-b", "instance1", &both), member("consumer-a", &both)];
    expect(&Assignor::Range.assign(&ppt, &mixed), &want);
}

// Shows static members keep their ranges when their member ids change across a rolling
// bounce (RangeAssignorTest.testStaticMemberRangeAssignmentPersistent, KIP-345).
#[test]
fn range_static_assignment_survives_new_member_ids() {
    let ppt = topics(&[("topic1", 5), ("topic2", 4)]);
    let both = ["topic1", "topic2"];
    let ids_before = ["d9c4", "1f02", "a7e5", "5b33"];
    let ids_after = ["0aa1", "ff10", "7c2e", "3d4b"];
    for ids in [ids_before, ids_after] {
        let mut ms: Vec<Member> = (0..4).map(|i| static_member(ids[i], &format!("instance{i}"), &both)).collect();
        ms.push(member("consumer4", &both));
        let got = Assignor::Range.assign(&ppt, &ms);
        let want = [
            (ids[0], "topic1-0, topic2-0"),
            (ids[1], "topic1-1, topic2-1"),
            (ids[2], "topic1-2, topic2-2"),
            (ids[3], "topic1-3, topic2-3"),
            ("consumer4", "topic1-4"),
        ];
        expect(&got, &want);
    }
}

// ---------------------------------------------------------------- round-robin

// Shows partitions dealt one by one across topics
// (RoundRobinAssignorTest.testTwoConsumersOneTopicTwoPartitions,
// testTwoConsumersTwoTopicsSixPartitions).
#[test]
fn round_robin_deals_across_topics() {
    let ms = [member("consumer1", &["topic"]), member("consumer2", &["topic"])];
    let got = Assignor::RoundRobin.assign(&topics(&[("topic", 2)]), &ms);
    expect(&got, &[("consumer1", "topic-0"), ("consumer2", "topic-1")]);
    let got = Assignor::RoundRobin.assign(&topics(&[("topic", 1)]), &ms);
    expect(&got, &[("consumer1", "topic-0"), ("consumer2", "")]);
    let ppt = topics(&[("topic1", 3), ("topic2", 3)]);
    let ms = [member("consumer1", &["topic1", "topic2"]), member("consumer2", &["topic1", "topic2"])];
    let got = Assignor::RoundRobin.assign(&ppt, &ms);
    expect(&got, &[("consumer1", "topic1-0, topic1-2, topic2-1"), ("consumer2", "topic1-1, topic2-0, topic2-2")]);
}

// Shows a member not subscribed to a topic is skipped and the deal goes on from the next
// (RoundRobinAssignorTest.testMultipleConsumersMixedTopics).
#[test]
fn round_robin_mixed_subscriptions() {
    let ppt = topics(&[("topic1", 3), ("topic2", 2)]);
    let ms = [
        member("consumer1", &["topic1"]),
        member("consumer2", &["topic1", "topic2"]),
        member("consumer3", &["topic1"]),
    ];
    let got = Assignor::RoundRobin.assign(&ppt, &ms);
    expect(
        &got,
        &[("consumer1", "topic1-0"), ("consumer2", "topic1-1, topic2-0, topic2-1"), ("consumer3", "topic1-2")],
    );
}

// Shows the imbalance round-robin gives with unequal subscriptions: the example of the
// RoundRobinAssignor class documentation (C0: t0; C1: t0, t1; C2: t0, t1, t2).
#[test]
fn round_robin_unequal_subscriptions_documented_example() {
    let ppt = topics(&[("t0", 1), ("t1", 2), ("t2", 3)]);
    let ms = [member("C0", &["t0"]), member("C1", &["t0", "t1"]), member("C2", &["t0", "t1", "t2"])];
    let got = Assignor::RoundRobin.assign(&ppt, &ms);
    expect(&got, &[("C0", "t0-0"), ("C1", "t1-0"), ("C2", "t1-1, t2-0, t2-1, t2-2")]);
}

// Shows static members sort by instance id ahead of dynamic ones
// (RoundRobinAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions,
// testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions).
#[test]
fn round_robin_static_members_order_by_instance_id() {
    let ppt = topics(&[("topic1", 3), ("topic2", 3)]);
    let both = ["topic1", "topic2"];
    let want = [("consumer-b", "topic1-0, topic1-2, topic2-1"), ("consumer-a", "topic1-1, topic2-0, topic2-2")];
    let statics = [static_member("consumer-b", "instance1", &both), static_member("consumer-a", "instance2", &both)];
    expect(&Assignor::RoundRobin.assign(&ppt, &statics), &want);
    let mixed = [member("consumer-a", &both), static_member("consumer-b", "instance1", &both)];
    expect(&Assignor::RoundRobin.assign(&ppt, &mixed), &want);
}

// Shows the class documentation's rolling-bounce example: with instance ids I0..I2 the
// assignment stays put when member ids are reissued (C0 -> C5, C1 -> C3, C2 -> C4)
// (RoundRobinAssignorTest.testStaticMemberRoundRobinAssignmentPersistentAfterMemberIdChanges).
#[test]
fn round_robin_static_assignment_survives_new_member_ids() {
    let ppt = topics(&[("t0", 3), ("t1", 3)]);
    let both = ["t0", "t1"];
    for ids in [["C0", "C1", "C2"], ["C5", "C3", "C4"]] {
        let ms: Vec<Member> = (0..3).map(|i| static_member(ids[i], &format!("I{i}"), &both)).collect();
        let got = Assignor::RoundRobin.assign(&ppt, &ms);
        expect(&got, &[(ids[0], "t0-0, t1-0"), (ids[1], "t0-1, t1-1"), (ids[2], "t0-2, t1-2")]);
    }
    // Without instance ids the same bounce reshuffles everything.
    let dynamic: Vec<Member> = ["C5", "C3", "C4"].iter().map(|id| member(id, &both)).collect();
    let got = Assignor::RoundRobin.assign(&ppt, &dynamic);
    expect(&got, &[("C3", "t0-0, t1-0"), ("C4", "t0-1, t1-1"), ("C5", "t0-2, t1-2")]);
}

// ---------------------------------------------------------------- sticky, fresh groups

const STICKIES: [Assignor; 2] = [Assignor::Sticky, Assignor::CooperativeSticky];

// Shows a fresh group (nothing owned) gets the same round-robin-like fill from both sticky
// assignors (AbstractStickyAssignorTest.testTwoConsumersOneTopicTwoPartitions,
// testTwoConsumersTwoTopicsSixPartitions).
#[test]
fn sticky_fresh_equal_subscriptions() {
    for a in STICKIES {
        let ms = [member("consumer1", &["topic"]), member("consumer2", &["topic"])];
        expect(&a.assign(&topics(&[("topic", 2)]), &ms), &[("consumer1", "topic-0"), ("consumer2", "topic-1")]);
        let ppt = topics(&[("topic1", 3), ("topic2", 3)]);
        let ms = [member("consumer1", &["topic1", "topic2"]), member("consumer2", &["topic1", "topic2"])];
        let got = a.assign(&ppt, &ms);
        expect(&got, &[("consumer1", "topic1-0, topic1-2, topic2-1"), ("consumer2", "topic1-1, topic2-0, topic2-2")]);
    }
}

// Shows the constrained path on uneven counts, Kafka's exact lists
// (AbstractStickyAssignorTest.testRackAwareAssignmentWithUniformSubscription, its
// non-rack-aware expectation; also with that assignment owned, which must not change).
#[test]
fn sticky_uniform_subscription_kafka_lists() {
    let ppt = topics(&[("t1", 6), ("t2", 7), ("t3", 2)]);
    let all = ["t1", "t2", "t3"];
    let want = [
        ("consumer0", "t1-0, t1-3, t2-0, t2-3, t2-6"),
        ("consumer1", "t1-1, t1-4, t2-1, t2-4, t3-0"),
        ("consumer2", "t1-2, t1-5, t2-2, t2-5, t3-1"),
    ];
    for a in STICKIES {
        let fresh: Vec<Member> = (0..3).map(|i| member(&format!("consumer{i}"), &all)).collect();
        expect(&a.assign(&ppt, &fresh), &want);
        let owned: Vec<Member> = want.iter().map(|(id, p)| owning(member(id, &all), p, None)).collect();
        expect(&a.assign(&ppt, &owned), &want);
    }
}

// Shows the general path (different subscriptions), Kafka's exact lists: topics with fewer
// candidates are placed first, each partition to the least-loaded candidate
// (AbstractStickyAssignorTest.testMultipleConsumersMixedTopicSubscriptions and
// testRackAwareAssignmentWithNonEqualSubscription, non-rack-aware expectation).
#[test]
fn sticky_general_path_kafka_lists() {
    for a in STICKIES {
        let ppt = topics(&[("topic1", 3), ("topic2", 2)]);
        let ms = [
            member("consumer1", &["topic1"]),
            member("consumer2", &["topic1", "topic2"]),
            member("consumer3", &["topic1"]),
        ];
        let got = a.assign(&ppt, &ms);
        expect(
            &got,
            &[("consumer1", "topic1-0, topic1-2"), ("consumer2", "topic2-0, topic2-1"), ("consumer3", "topic1-1")],
        );

        let ppt = topics(&[("t1", 6), ("t2", 7), ("t3", 2)]);
        let subs: [&[&str]; 3] = [&["t1", "t2", "t3"], &["t1", "t2", "t3"], &["t1", "t3"]];
        let want = [
            ("consumer0", "t1-5, t2-0, t2-2, t2-4, t2-6"),
            ("consumer1", "t1-3, t2-1, t2-3, t2-5, t3-0"),
            ("consumer2", "t1-0, t1-1, t1-2, t1-4, t3-1"),
        ];
        let fresh: Vec<Member> = (0..3).map(|i| member(&format!("consumer{i}"), subs[i])).collect();
        expect(&a.assign(&ppt, &fresh), &want);
        let owned: Vec<Member> = (0..3).map(|i| owning(member(want[i].0, subs[i]), want[i].1, None)).collect();
        expect(&a.assign(&ppt, &owned), &want);
    }
}

// ---------------------------------------------------------------- sticky, churn

// Shows a joining member takes only the partitions the others must give up, and the lowest
// numbered stay put; a departing member's partitions go to the survivors, who keep theirs
// (AbstractStickyAssignorTest.testAddRemoveConsumerOneTopic; KIP-54).
#[test]
fn sticky_member_joins_then_leaves() {
    let ppt = topics(&[("topic", 3)]);
    let one = [member("consumer1", &["topic"])];
    let first = Assignor::Sticky.assign(&ppt, &one);
    expect(&first, &[("consumer1", "topic-0, topic-1, topic-2")]);
    let mut two = next_round(&one, &first, 1);
    two.push(member("consumer2", &["topic"]));
    let second = Assignor::Sticky.assign(&ppt, &two);
    expect(&second, &[("consumer1", "topic-0, topic-1"), ("consumer2", "topic-2")]);
    let left = next_round(&two[1..], &second, 2);
    expect(&Assignor::Sticky.assign(&ppt, &left), &[("consumer2", "topic-0, topic-1, topic-2")]);
}

// Shows balance after churn with uneven counts: of 7 partitions over 3 members the
// member owning 5 keeps 3 (it is the one allowed above min quota), the member owning 2
// keeps both, the newcomer gets the 2 given up (AbstractStickyAssignorTest
// testReassignmentAfterOneConsumerAdded / testSameSubscriptions in small).
#[test]
fn sticky_uneven_churn_keeps_quota() {
    let ppt = topics(&[("t", 7)]);
    let ms = [
        owning(member("consumer1", &["t"]), "t-0, t-1, t-2, t-3, t-4", Some(4)),
        owning(member("consumer2", &["t"]), "t-5, t-6", Some(4)),
        member("consumer3", &["t"]),
    ];
    let got = Assignor::Sticky.assign(&ppt, &ms);
    expect(&got, &[("consumer1", "t-0, t-1, t-2"), ("consumer2", "t-5, t-6"), ("consumer3", "t-3, t-4")]);
    // A member leaves: its partitions fill the others up; nobody else moves.
    let ppt = topics(&[("t", 6)]);
    let ms = [
        owning(member("consumer1", &["t"]), "t-0, t-1", Some(2)),
        owning(member("consumer3", &["t"]), "t-4, t-5", Some(2)),
    ];
    for a in STICKIES {
        expect(&a.assign(&ppt, &ms), &[("consumer1", "t-0, t-1, t-2"), ("consumer3", "t-3, t-4, t-5")]);
    }
}

// Shows which member keeps the extra partition is decided by Java's HashMap walk over
// member ids, not by name order: "consumer3" walks before "consumer1" (buckets 10 and 12),
// so with 9 partitions over 4 members it keeps 3 and consumer1 gives one up.
#[test]
fn sticky_extra_partition_follows_java_map_walk() {
    let ppt = topics(&[("t", 9)]);
    let ms = [
        owning(member("consumer1", &["t"]), "t-0, t-1, t-2", Some(1)),
        owning(member("consumer2", &["t"]), "t-3, t-4, t-5", Some(1)),
        owning(member("consumer3", &["t"]), "t-6, t-7, t-8", Some(1)),
        member("consumer4", &["t"]),
    ];
    let got = Assignor::Sticky.assign(&ppt, &ms);
    expect(
        &got,
        &[
            ("consumer1", "t-0, t-1"),
            ("consumer2", "t-3, t-4"),
            ("consumer3", "t-6, t-7, t-8"),
            ("consumer4", "t-2, t-5"),
        ],
    );
}

// ---------------------------------------------------------------- sticky, generations

// Shows the higher generation wins a partition two members claim, for a stale generation
// and for no generation at all (AbstractStickyAssignorTest
// testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration, ...WithNoGeneration;
// KIP-341). Nothing changes owner, so nothing is withheld.
#[test]
fn sticky_higher_generation_wins_a_conflict() {
    let ppt = topics(&[("topic", 3), ("topic2", 3)]);
    let both = ["topic", "topic2"];
    for stale in [Some(9), None] {
        for a in STICKIES {
            let ms = [
                owning(member("consumer1", &both), "topic-0, topic-2, topic2-1", Some(10)),
                owning(member("consumer2", &both), "topic-0, topic-2, topic2-1", stale),
            ];
            let got = a.assign(&ppt, &ms);
            expect(&got, &[("consumer1", "topic-0, topic-2, topic2-1"), ("consumer2", "topic-1, topic2-0, topic2-2")]);
        }
    }
}

// Shows partitions go to the member of the highest generation among three claimants, and
// current members keep what they own (AbstractStickyAssignorTest
// testEnsurePartitionsAssignedToHighestGeneration, testNoReassignmentOnCurrentMembers,
// testOwnedPartitionsAreInvalidatedForConsumerWithMultipleGeneration).
#[test]
fn sticky_generations_of_several_members() {
    let three = ["topic", "topic2", "topic3"];
    let ppt = topics(&[("topic", 3), ("topic2", 3), ("topic3", 3)]);
    let ms = [
        owning(member("consumer1", &three), "topic-0, topic2-0, topic3-0", Some(10)),
        owning(member("consumer2", &three), "topic-1, topic2-1, topic3-1", Some(9)),
        owning(member("consumer3", &three), "topic2-1, topic3-0, topic3-2", Some(8)),
    ];
    let want = [
        ("consumer1", "topic-0, topic2-0, topic3-0"),
        ("consumer2", "topic-1, topic2-1, topic3-1"),
        ("consumer3", "topic-2, topic2-2, topic3-2"),
    ];
    let four = ["topic", "topic2", "topic3", "topic1"];
    let ppt4 = topics(&[("topic", 3), ("topic1", 3), ("topic2", 3), ("topic3", 3)]);
    let ms4 = [
        member("consumer1", &four),
        owning(member("consumer2", &four), "topic-0, topic2-0, topic1-0", Some(9)),
        owning(member("consumer3", &four), "topic3-2, topic2-2, topic1-1", Some(8)),
        owning(member("consumer4", &four), "topic3-1, topic-1, topic-2", Some(7)),
    ];
    let ppt2 = topics(&[("topic", 3), ("topic2", 3)]);
    let ms2 = [
        owning(member("consumer1", &["topic", "topic2"]), "topic-0, topic2-1, topic-1", Some(10)),
        owning(member("consumer2", &["topic", "topic2"]), "topic-0, topic2-1, topic2-2", Some(8)),
    ];
    for a in STICKIES {
        expect(&a.assign(&ppt, &ms), &want);
        let got = a.assign(&ppt4, &ms4);
        assert_eq!(got[&MemberId::new("consumer1")], tps("topic1-2, topic2-1, topic3-0"));
        expect(
            &a.assign(&ppt2, &ms2),
            &[("consumer1", "topic-0, topic-1, topic2-1"), ("consumer2", "topic-2, topic2-0, topic2-2")],
        );
    }
}

// Shows a partition claimed by two members of the same generation is taken from both and
// given afresh; the cooperative assignor withholds it for a round because both may still
// hold it (AbstractStickyAssignorTest / CooperativeStickyAssignorTest
// testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimedByMultipleConsumersInSameGeneration
// WithEqualPartitionsPerConsumer, testPartitionsTransferringOwnershipIncludeThePartition
// ClaimedByMultipleConsumersInSameGeneration).
#[test]
fn sticky_same_generation_double_claim_is_voided() {
    let ppt = topics(&[("topic", 3)]);
    let ms = [
        owning(member("consumer1", &["topic"]), "topic-0, topic-1", Some(1)),
        owning(member("consumer2", &["topic"]), "topic-0, topic-2", Some(1)),
        owning(member("consumer3", &["topic"]), "", Some(1)),
    ];
    let eager = Assignor::Sticky.assign(&ppt, &ms);
    expect(&eager, &[("consumer1", "topic-1"), ("consumer2", "topic-2"), ("consumer3", "topic-0")]);
    let coop = Assignor::CooperativeSticky.assign(&ppt, &ms);
    expect(&coop, &[("consumer1", "topic-1"), ("consumer2", "topic-2"), ("consumer3", "")]);
}

fn is_subset(part: &[GroupPartition], whole: &str) -> bool {
    let whole = tps(whole);
    part.iter().all(|gp| whole.contains(gp))
}

// Shows conflicting claims from generations 1 and 2 settle for generation 2, and the result is
// balanced with each generation-2 member keeping only what it owned, on both paths
// (StickyAssignorTest.testAssignmentWithConflictingPreviousGenerations, both
// isAllSubscriptionsEqual values; KIP-341).
#[test]
fn sticky_conflicting_previous_generations() {
    let ppt = topics(&[("topic", 4), ("topic2", 4), ("topic3", 4)]);
    let all = ["topic", "topic2", "topic3"];
    let c2_owned = "topic-0, topic-1, topic2-0, topic2-1, topic2-2, topic2-3";
    let c3_owned = "topic-2, topic-3, topic3-0, topic3-1, topic3-2, topic3-3";
    for equal in [true, false] {
        let (c1_topics, c2_topics): (&[&str], &[&str]) =
            if equal { (&all, &all) } else { (&["topic"], &["topic", "topic2"]) };
        let c1_owned = if equal {
            "topic-0, topic-1, topic-2, topic2-2, topic2-3, topic3-0"
        } else {
            "topic-0, topic-1, topic-2, topic-3"
        };
        let ms = [
            owning(member("consumer1", c1_topics), c1_owned, Some(1)),
            owning(member("consumer2", c2_topics), c2_owned, Some(2)),
            owning(member("consumer3", &all), c3_owned, Some(2)),
        ];
        let got = Assignor::Sticky.assign(&ppt, &ms);
        assert!(got.values().all(|l| l.len() == 4), "{got:?}");
        assert!(is_subset(&got[&MemberId::new("consumer2")], c2_owned), "{got:?}");
        assert!(is_subset(&got[&MemberId::new("consumer3")], c3_owned), "{got:?}");
    }
}

// Shows three rounds of churn across generations: three members, then one alone takes all
// twelve partitions keeping its own, then the other two return with stale generation-1
// claims and the group is balanced again (StickyAssignorTest
// testAssignmentWithMultipleGenerations2, both isAllSubscriptionsEqual values).
#[test]
fn sticky_multiple_generations_churn() {
    let ppt = topics(&[("topic", 4), ("topic2", 4), ("topic3", 4)]);
    let all = ["topic", "topic2", "topic3"];
    for equal in [true, false] {
        let (c1_topics, c3_topics): (&[&str], &[&str]) =
            if equal { (&all, &all) } else { (&["topic"], &["topic", "topic2"]) };
        let ms = [member("consumer1", c1_topics), member("consumer2", &all), member("consumer3", c3_topics)];
        let r1 = Assignor::Sticky.assign(&ppt, &ms);
        assert!(r1.values().all(|l| l.len() == 4), "{r1:?}");
        let r1_of = |id: &str| r1[&MemberId::new(id)].clone();
        let alone = [Member { owned: r1_of("consumer2"), generation: Some(1), ..ms[1].clone() }];
        let r2 = Assignor::Sticky.assign(&ppt, &alone);
        let r2_c2 = &r2[&MemberId::new("consumer2")];
        assert_eq!(r2_c2.len(), 12);
        assert!(r1_of("consumer2").iter().all(|gp| r2_c2.contains(gp)));
        let back = [
            Member { owned: r1_of("consumer1"), generation: Some(1), ..ms[0].clone() },
            Member { owned: r2_c2.clone(), generation: Some(2), ..ms[1].clone() },
            Member { owned: r1_of("consumer3"), generation: Some(1), ..ms[2].clone() },
        ];
        let r3 = Assignor::Sticky.assign(&ppt, &back);
        assert!(r3.values().all(|l| l.len() == 4), "{r3:?}");
        check_sticky_balance(&r3, "r3");
    }
}

// Shows members of old clients (no generation in their user data, or only the old schema)
// still keep what they own next to a member that reports one
// (StickyAssignorTest.testSchemaBackwardCompatibility, testAssignorWithOldVersionSubscriptions).
#[test]
fn sticky_old_clients_without_generation() {
    let ppt = topics(&[("topic", 3)]);
    let ms = [
        owning(member("consumer1", &["topic"]), "topic-0, topic-2", Some(1)),
        owning(member("consumer2", &["topic"]), "topic-1", None),
        member("consumer3", &["topic"]),
    ];
    let got = Assignor::Sticky.assign(&ppt, &ms);
    assert!(got.values().all(|l| l.len() == 1), "{got:?}");
    assert!(is_subset(&got[&MemberId::new("consumer1")], "topic-0, topic-2"));
    assert!(is_subset(&got[&MemberId::new("consumer2")], "topic-1"));
    let ppt = topics(&[("topic1", 3)]);
    let ms = [
        owning(member("consumer1", &["topic1"]), "topic1-0", None),
        owning(member("consumer2", &["topic1"]), "topic1-1", Some(1)),
        owning(member("consumer3", &["topic1"]), "", Some(1)),
    ];
    for a in STICKIES {
        expect(
            &a.assign(&ppt, &ms),
            &[("consumer1", "topic1-0"), ("consumer2", "topic1-1"), ("consumer3", "topic1-2")],
        );
    }
}

// ---------------------------------------------------------------- cooperative

// Shows KIP-429's two rounds: a partition moving to a new member is first only revoked
// (the newcomer gets nothing), and the follow-up rebalance hands it over
// (CooperativeStickyAssignorTest.testAddRemoveConsumerOneTopic, verifyValidityAndBalance
// after the second round).
#[test]
fn cooperative_withholds_transfers_for_one_round() {
    let ppt = topics(&[("topic", 3)]);
    let two = [
        owning(member("consumer1", &["topic"]), "topic-0, topic-1, topic-2", Some(1)),
        member("consumer2", &["topic"]),
    ];
    let first = Assignor::CooperativeSticky.assign(&ppt, &two);
    expect(&first, &[("consumer1", "topic-0, topic-1"), ("consumer2", "")]);
    let second = Assignor::CooperativeSticky.assign(&ppt, &next_round(&two, &first, 2));
    expect(&second, &[("consumer1", "topic-0, topic-1"), ("consumer2", "topic-2")]);

    let ppt = topics(&[("t", 6)]);
    let three = [
        owning(member("consumer1", &["t"]), "t-0, t-1, t-2", Some(3)),
        owning(member("consumer2", &["t"]), "t-3, t-4, t-5", Some(3)),
        member("consumer3", &["t"]),
    ];
    let first = Assignor::CooperativeSticky.assign(&ppt, &three);
    expect(&first, &[("consumer1", "t-0, t-1"), ("consumer2", "t-3, t-4"), ("consumer3", "")]);
    let second = Assignor::CooperativeSticky.assign(&ppt, &next_round(&three, &first, 4));
    expect(&second, &[("consumer1", "t-0, t-1"), ("consumer2", "t-3, t-4"), ("consumer3", "t-2, t-5")]);
    // The eager assignor moves them at once.
    let eager = Assignor::Sticky.assign(&ppt, &three);
    expect(&eager, &[("consumer1", "t-0, t-1"), ("consumer2", "t-3, t-4"), ("consumer3", "t-2, t-5")]);
}

// Shows the general path's withholding (computed by comparing owned and assigned), with
// Kafka's exact intermediate and final lists (AbstractStickyAssignorTest
// testRackAwareAssignmentWithNonEqualSubscription, cooperative branch, racks all matching
// and rack-aware logic off).
#[test]
fn cooperative_general_path_kafka_intermediate_and_final() {
    let ppt = topics(&[("t1", 6), ("t2", 7), ("t3", 2)]);
    let subs: [&[&str]; 3] = [&["t1", "t2", "t3"], &["t1", "t2", "t3"], &["t1", "t3"]];
    let owned = ["t1-0, t1-1, t1-2, t1-3, t1-4", "t1-5, t2-0, t2-1, t2-2, t2-3", "t2-4, t2-5, t2-6, t3-0, t3-1"];
    let round = |owned: &[&str]| -> Vec<Member> {
        (0..3).map(|i| owning(member(&format!("consumer{i}"), subs[i]), owned[i], None)).collect()
    };
    let first = Assignor::CooperativeSticky.assign(&ppt, &round(&owned));
    let intermediate =
        [("consumer0", "t1-2, t1-3, t1-4"), ("consumer1", "t2-0, t2-1, t2-2, t2-3"), ("consumer2", "t3-0, t3-1")];
    expect(&first, &intermediate);
    let second = Assignor::CooperativeSticky.assign(&ppt, &round(&intermediate.map(|(_, p)| p)));
    let want = [
        ("consumer0", "t1-2, t1-3, t1-4, t2-4, t2-5"),
        ("consumer1", "t2-0, t2-1, t2-2, t2-3, t2-6"),
        ("consumer2", "t1-0, t1-1, t1-5, t3-0, t3-1"),
    ];
    expect(&second, &want);
}

// Shows a partition whose owner left the group is not withheld (nobody has to revoke it),
// while one moving between two live members is, on the general path (KIP-429).
#[test]
fn cooperative_general_path_join() {
    let ppt = topics(&[("t1", 2), ("t2", 2)]);
    let ms = [member("c1", &["t1"]), member("c2", &["t1", "t2"])];
    let first = Assignor::CooperativeSticky.assign(&ppt, &ms);
    expect(&first, &[("c1", "t1-0, t1-1"), ("c2", "t2-0, t2-1")]);
    let mut joined = next_round(&ms, &first, 1);
    joined.push(member("c3", &["t1"]));
    let eager = Assignor::Sticky.assign(&ppt, &joined);
    expect(&eager, &[("c1", "t1-1"), ("c2", "t2-0, t2-1"), ("c3", "t1-0")]);
    let coop = Assignor::CooperativeSticky.assign(&ppt, &joined);
    expect(&coop, &[("c1", "t1-1"), ("c2", "t2-0, t2-1"), ("c3", "")]);
    let after = Assignor::CooperativeSticky.assign(&ppt, &next_round(&joined, &coop, 2));
    expect(&after, &[("c1", "t1-1"), ("c2", "t2-0, t2-1"), ("c3", "t1-0")]);
    // c1 leaves: its partition goes straight to c3.
    let left = next_round(&joined[1..], &after, 3);
    expect(&Assignor::CooperativeSticky.assign(&ppt, &left), &[("c2", "t2-0, t2-1"), ("c3", "t1-0, t1-1")]);
}

// ---------------------------------------------------------------- properties

/// xorshift64*: a fixed-seed stream for the property test (`model` takes no rand crate).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Follow-up rebalances a cooperative group may need before every partition is handed over.
const COOPERATIVE_ROUNDS_MAX: i32 = 4;

const TOPIC_NAMES: [&str; 4] = ["t", "orders", "t1", "ä-topic"];

/// A random group: 1..=4 topics of 1..=7 partitions, 1..=6 members, equal subscriptions in
/// about half the cases, random owned partitions (overlapping claims included) and
/// generations.
fn random_group(rng: &mut XorShift) -> (PartitionsPerTopic, Vec<Member>, bool) {
    let n_topics = 1 + rng.below(4) as usize;
    let ppt: PartitionsPerTopic =
        TOPIC_NAMES[..n_topics].iter().map(|t| (t.to_string(), 1 + rng.below(7) as u32)).collect();
    let equal = rng.below(2) == 0;
    let shared: Vec<String> = ppt.keys().filter(|_| rng.below(3) != 0).cloned().collect();
    let n_members = 1 + rng.below(6) as usize;
    let members = (0..n_members)
        .map(|i| {
            let topics: Vec<String> =
                if equal { shared.clone() } else { ppt.keys().filter(|_| rng.below(2) == 0).cloned().collect() };
            let owned = ppt
                .iter()
                .flat_map(|(t, &n)| (0..n).map(move |p| GroupPartition::new(t.clone(), p)))
                .filter(|_| rng.below(4) == 0)
                .collect();
            let generation = match rng.below(4) {
                0 => None,
                g => Some(g as i32),
            };
            let group_instance_id = (rng.below(3) == 0).then(|| format!("inst-{}", rng.below(4)));
            Member {
                member_id: MemberId(format!("member-{}", rng.below(1000) * 10 + i as u64)),
                group_instance_id,
                topics,
                owned,
                generation,
            }
        })
        .collect();
    (ppt, members, equal)
}

/// Each partition at most once, only to subscribers; returns how many partitions went out
/// and how many a subscriber could have taken.
fn check_validity(
    ppt: &PartitionsPerTopic,
    members: &[Member],
    got: &GroupAssignment,
    context: &str,
) -> (usize, usize) {
    assert_eq!(got.len(), members.len(), "{context}: every member is in the assignment");
    let mut seen = BTreeSet::new();
    for m in members {
        for gp in &got[&m.member_id] {
            assert!(m.topics.contains(&gp.topic), "{context}: {gp} to {} which is not subscribed", m.member_id);
            assert!(gp.partition < ppt[&gp.topic], "{context}: {gp} does not exist");
            assert!(seen.insert(gp.clone()), "{context}: {gp} assigned twice");
        }
    }
    let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    let assignable = ppt.iter().filter(|(t, _)| subscribed.contains(t)).map(|(_, &n)| n as usize).sum();
    (seen.len(), assignable)
}

/// Kafka's balance check for unequal subscriptions (verifyValidityAndBalance): two members
/// whose loads differ by more than one hold no partitions of a common topic.
fn check_sticky_balance(got: &GroupAssignment, context: &str) {
    let lists: Vec<(&MemberId, &Vec<GroupPartition>)> = got.iter().collect();
    for (i, (a, pa)) in lists.iter().enumerate() {
        for (b, pb) in &lists[i + 1..] {
            if pa.len().abs_diff(pb.len()) <= 1 {
                continue;
            }
            let topics_a: BTreeSet<&String> = pa.iter().map(|gp| &gp.topic).collect();
            let shared = pb.iter().find(|gp| topics_a.contains(&gp.topic));
            assert!(shared.is_none(), "{context}: {a} and {b} could balance through {shared:?}: {got:?}");
        }
    }
}

fn spread(got: &GroupAssignment) -> usize {
    let sizes = got.values().map(Vec::len);
    sizes.clone().max().unwrap_or(0) - sizes.min().unwrap_or(0)
}

// Shows, over 400 generated groups, the invariants Kafka's verifyValidityAndBalance checks:
// every partition of a subscribed topic assigned exactly once (cooperative: at most once,
// and exactly once after the follow-up round), only to subscribers, balanced within one
// when subscriptions are equal; and sticky assignments are a fixpoint: owning what was
// assigned, the next round assigns the same.
#[test]
fn property_every_assignor_is_valid_and_balanced() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let (ppt, members, equal) = random_group(&mut rng);
        if members.iter().map(|m| &m.member_id).collect::<BTreeSet<_>>().len() != members.len() {
            continue;
        }
        for a in Assignor::ALL {
            let context = format!("case {case} {} {members:?} {ppt:?}", a.name());
            let got = a.assign(&ppt, &members);
            assert_eq!(got, a.assign(&ppt, &members), "{context}: deterministic");
            let (assigned, assignable) = check_validity(&ppt, &members, &got, &context);
            // Cooperative rounds hand over what the previous one revoked; on the general path a
            // round can revoke again, so allow a few.
            let mut settled = got;
            let mut assigned = assigned;
            for round in 0..COOPERATIVE_ROUNDS_MAX {
                if a != Assignor::CooperativeSticky || assigned == assignable {
                    break;
                }
                settled = a.assign(&ppt, &next_round(&members, &settled, 10 + round));
                assigned = check_validity(&ppt, &members, &settled, &format!("{context} follow-up {round}")).0;
            }
            let (assigned, assignable) = check_validity(&ppt, &members, &settled, &context);
            assert_eq!(assigned, assignable, "{context}: settled assignment is complete");
            // Range balances each topic on its own, not the totals (its class documentation:
            // C0 gets 4 of 6 partitions, C1 gets 2).
            if equal && a == Assignor::Range {
                for topic in ppt.keys() {
                    let per_topic: GroupAssignment = settled
                        .iter()
                        .map(|(m, l)| (m.clone(), l.iter().filter(|gp| gp.topic == *topic).cloned().collect()))
                        .collect();
                    assert!(spread(&per_topic) <= 1, "{context}: {topic} unbalanced {settled:?}");
                }
            } else if equal {
                assert!(spread(&settled) <= 1, "{context}: unbalanced {settled:?}");
            }
            if matches!(a, Assignor::Sticky | Assignor::CooperativeSticky) {
                check_sticky_balance(&settled, &context);
                let again = a.assign(&ppt, &next_round(&members, &settled, 20));
                assert_eq!(again, settled, "{context}: sticky fixpoint");
            }
        }
    }
}
