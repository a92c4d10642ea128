//! Where requests go and how many: routing over several brokers, and the per-group
//! fallback for brokers older than the batched versions. Against the in-test fake cluster
//! (`fake.rs`): noida-db is one broker and speaks the newest versions.

use crate::fake::{Behaviour, Description, FakeCluster, Group, Partition};
use crate::faults::collector;
use kafka_protocol::messages::ApiKey;
use std::time::Duration;

// Shows the request plan over three brokers: one ListOffsets per leader and kind (earliest,
// latest, last stable, max timestamp: 4 each),
// ListGroups to every broker, one batched FindCoordinator (v4+), and one DescribeGroups
// and one batched OffsetFetch (v8+) per coordinator, with every answer landing on the
// right partition and group (fake cluster: noida-db is a single broker; Kafka's
// admin client routes the same way, KIP-699 and KIP-709).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_leaders_and_coordinators() {
    let partitions = (0..6)
        .map(|p| Partition { topic: "t", index: p, leader: 1 + p % 3, low: 0, high: 100 + i64::from(p) })
        .collect();
    let groups = (0..10)
        .map(|g| Group {
            name: format!("g{g}"),
            coordinator: 1 + g % 2,
            offsets: (0..6).map(|p| ("t", p, i64::from(g))).collect(),
        })
        .collect();
    let description = Description { partitions, groups, ..Description::default() };
    let brokers = [(1, Behaviour::Answer), (2, Behaviour::Answer), (3, Behaviour::Answer)];
    let fake = FakeCluster::start(&brokers, description).await;
    let snapshot = collector(&fake.bootstrap(), Duration::from_secs(2)).collect().await;
    assert!(snapshot.up, "{:?}", snapshot.errors);
    for broker in 1..=3 {
        assert_eq!(fake.received(broker, ApiKey::ListOffsets).len(), 4, "broker {broker}");
        assert_eq!(fake.received(broker, ApiKey::ListGroups).len(), 1, "broker {broker}");
        let coordinates = if broker == 3 { 0 } else { 1 };
        assert_eq!(fake.received(broker, ApiKey::DescribeGroups).len(), coordinates, "broker {broker}");
        assert_eq!(fake.received(broker, ApiKey::OffsetFetch).len(), coordinates, "broker {broker}");
        assert!(fake.received(broker, ApiKey::OffsetFetch).iter().all(|v| *v >= 8), "batched OffsetFetch");
    }
    let find: Vec<i16> = (1..=3).flat_map(|b| fake.received(b, ApiKey::FindCoordinator)).collect();
    assert!(find.len() == 1 && find[0] >= 4, "one batched FindCoordinator: {find:?}");
    assert_eq!(snapshot.requests_this_collection, 1 + 12 + 3 + 1 + 2 + 2);
    for p in 0..6 {
        let info = snapshot.partition("t", p).expect("partition listed");
        assert_eq!(info.high_watermark, Some(100 + i64::from(p)));
        assert_eq!(info.max_timestamp_ms, Some(crate::fake::MAX_TIMESTAMP_MS + 99 + i64::from(p)));
    }
    assert_eq!(snapshot.groups.len(), 10);
    for group in &snapshot.groups {
        let g: i64 = group.group[1..].parse().expect("groups are named g<n>");
        assert_eq!(group.coordinator, 1 + g as i32 % 2);
        assert_eq!(group.offsets.len(), 6);
        assert!(group.offsets.iter().all(|o| o.committed == g), "{group:?}");
    }
}

// Shows a broker too old for the batched versions (fake cluster advertising FindCoordinator
// ≤ v3, OffsetFetch ≤ v7 and ListOffsets ≤ v6, as Kafka before 3.0 does) gets one
// FindCoordinator and one OffsetFetch per group at the negotiated versions, with the same
// numbers, and no max-timestamp ListOffsets (issue 2: "Fall
// back to per-group requests only when a broker lacks the batched versions").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_brokers_get_one_request_per_group() {
    let groups = (0..5)
        .map(|g| Group { name: format!("g{g}"), coordinator: 1, offsets: vec![("t", 0, 10 + i64::from(g))] })
        .collect();
    let description = Description {
        partitions: vec![Partition { topic: "t", index: 0, leader: 1, low: 0, high: 30 }],
        groups,
        max_versions: [
            (ApiKey::FindCoordinator as i16, 3),
            (ApiKey::OffsetFetch as i16, 7),
            (ApiKey::ListOffsets as i16, 6),
        ]
        .into_iter()
        .collect(),
        sasl: None,
    };
    let fake = FakeCluster::start(&[(1, Behaviour::Answer)], description).await;
    let snapshot = collector(&fake.bootstrap(), Duration::from_secs(2)).collect().await;
    assert!(snapshot.up, "{:?}", snapshot.errors);
    assert_eq!(fake.received(1, ApiKey::FindCoordinator), vec![3; 5]);
    assert_eq!(fake.received(1, ApiKey::ListOffsets), vec![6; 3], "no max-timestamp request before v7");
    assert_eq!(snapshot.partition("t", 0).and_then(|p| p.max_timestamp_ms), None);
    assert_eq!(fake.received(1, ApiKey::OffsetFetch), vec![7; 5]);
    assert_eq!(fake.received(1, ApiKey::DescribeGroups).len(), 1, "DescribeGroups is batched in every version");
    assert_eq!(snapshot.requests_this_collection, 1 + 3 + 1 + 5 + 1 + 5);
    let mut committed: Vec<(String, i64)> =
        snapshot.groups.iter().flat_map(|g| g.offsets.iter().map(|o| (g.group.clone(), o.committed))).collect();
    committed.sort();
    let expected: Vec<(String, i64)> = (0..5).map(|g| (format!("g{g}"), 10 + g)).collect();
    assert_eq!(committed, expected);
}
