//! Collection against a real broker: offsets, committed offsets and lag match what the
//! test wrote; a broker that is down gives `up` 0 and error counts, never a panic.

use crate::broker::{admin, commit, create_topic, produce, Broker};
use crate::faults::collector;
use std::time::Duration;
use trial_exporter::render::render;

// Shows the exporter's offsets and lag equal what the test client wrote to a real
// Kafka-protocol broker: HW per partition = records produced, newest record time = the
// produced records' timestamp, committed offset = what was committed, lag = HW −
// committed (issue 2, "Tests against real parts").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_lag_match_what_was_written() {
    let broker = Broker::start();
    let mut client = admin(&broker.addr).await;
    create_topic(&mut client, "orders", 3).await;
    let written_at_ms = produce(&mut client, "orders", 0, 25).await;
    produce(&mut client, "orders", 1, 10).await;
    commit(&mut client, "billing", "orders", 0, 20).await;
    commit(&mut client, "billing", "orders", 1, 10).await;

    let mut collector = collector(&broker.addr, Duration::from_secs(5));
    let snapshot = collector.collect().await;
    assert!(snapshot.up, "errors: {:?}", snapshot.errors);
    assert_eq!(snapshot.brokers.len(), 1);
    let hw = |p| snapshot.partition("orders", p).and_then(|p| p.high_watermark);
    assert_eq!((hw(0), hw(1), hw(2)), (Some(25), Some(10), Some(0)));
    // noida-db speaks ListOffsets v8: the newest record's time comes by max timestamp
    // (KIP-734); an empty partition has none.
    let newest = |p| snapshot.partition("orders", p).and_then(|p| p.max_timestamp_ms);
    assert_eq!((newest(0), newest(2)), (Some(written_at_ms), None));
    let group = snapshot.groups.iter().find(|g| g.group == "billing").expect("group listed");
    let committed: Vec<(i32, i64)> = group.offsets.iter().map(|o| (o.partition, o.committed)).collect();
    assert!(committed.contains(&(0, 20)) && committed.contains(&(1, 10)), "{committed:?}");

    let page = render(&[snapshot], &Default::default());
    let lag = |p: i32| {
        let series = format!("kafka_consumergroup_partition_lag{{cluster=\"test\",group=\"billing\",partition=\"{p}\",topic=\"orders\"}}");
        page.lines().find(|l| l.starts_with(&series)).and_then(|l| l.rsplit(' ').next()).map(str::to_string)
    };
    assert_eq!(lag(0).as_deref(), Some("5"), "{page}");
    assert_eq!(lag(1).as_deref(), Some("0"));
    assert_eq!(lag(2), None, "no series for a partition with no commit");
}

// Shows a cluster whose broker is gone yields up=0 and an error count, not a panic or an
// empty page (issue 2, "broker killed mid-collection / unreachable").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_gives_up_zero_and_errors() {
    let mut broker = Broker::start();
    let addr = broker.addr.clone();
    let mut collector = collector(&addr, Duration::from_secs(2));
    assert!(collector.collect().await.up);
    broker.stop();
    let snapshot = collector.collect().await;
    assert!(!snapshot.up);
    assert!(!snapshot.errors.is_empty());
    let page = render(&[snapshot], &Default::default());
    assert!(page.contains("kafka_exporter_up{cluster=\"test\"} 0"), "{page}");
    assert!(page.contains("kafka_exporter_kafka_request_errors_total"), "{page}");
    // Right after a failure the broker is in reconnect backoff: the next collection fails
    // fast instead of waiting for a timeout.
    let snapshot = collector.collect().await;
    assert!(!snapshot.up);
}

// Shows requests per collection do not grow with the number of groups: 1,000 groups with
// commits on 100 partitions each are collected with the minimal plan — Metadata, four
// ListOffsets (earliest, latest, last stable, max timestamp), ListGroups, one batched
// FindCoordinator, one DescribeGroups and one OffsetFetch (9 requests on one broker). Prints the collection's wall time (issue 2,
// "Speed": 1,000 groups × 100 partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_groups_take_the_minimal_plan() {
    const GROUPS: usize = 1_000;
    const PARTITIONS: i32 = 100;
    let broker = Broker::start();
    let mut client = admin(&broker.addr).await;
    create_topic(&mut client, "wide", PARTITIONS).await;
    for group in 0..GROUPS {
        crate::broker::commit_all(&mut client, &format!("group-{group:04}"), "wide", PARTITIONS, 0).await;
    }
    let mut collector = collector(&broker.addr, Duration::from_secs(30));
    #[allow(clippy::disallowed_methods)] // timing the collection is the point
    let started = std::time::Instant::now();
    let snapshot = collector.collect().await;
    let wall = started.elapsed();
    assert!(snapshot.up, "{:?}", snapshot.errors);
    assert_eq!(snapshot.groups.len(), GROUPS);
    let committed: usize = snapshot.groups.iter().map(|g| g.offsets.len()).sum();
    assert_eq!(committed, GROUPS * PARTITIONS as usize);
    assert_eq!(snapshot.requests_this_collection, 9, "{:?}", snapshot.requests);
    println!(
        "1,000 groups × 100 partitions: {} requests, {:.0} ms",
        snapshot.requests_this_collection,
        wall.as_secs_f64() * 1e3
    );
}
