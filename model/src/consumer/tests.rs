use super::*;
use crate::group::coordinator::{CoordinatorConfig, CoordinatorOutput, GroupCoordinator};
use crate::log::Record;
use crate::types::{LeaderEpoch, ProducerId, WriteId};

const CONSUMER: NodeId = NodeId(3_000);
const BROKER: NodeId = NodeId(0);

fn tp() -> TopicPartition {
    TopicPartition::new(0, 0)
}

fn entry(write: u64) -> LogEntry {
    let record = Record {
        write: WriteId(write),
        key: None,
        producer: ProducerId(0),
        sequence: write as u32,
        timestamp: Millis(0),
        stamp: None,
    };
    LogEntry { leader_epoch: LeaderEpoch(0), record }
}

/// One consumer and one broker that leads the only partition and coordinates the group:
/// every request is answered at once from `log` (readable below `hw`), every commit is
/// durable at once.
struct World {
    now: Millis,
    consumer: Consumer,
    coordinator: GroupCoordinator,
    log: Vec<LogEntry>,
    hw: u64,
    events: Vec<GroupEvent>,
    list_offsets: Vec<(TopicPartition, bool)>,
    /// Fetches that found nothing, answered at the next millisecond (a broker long-polls).
    parked: Vec<Message>,
    /// The aborted transactions every fetch reports (read_committed).
    aborted: Vec<crate::log::AbortedTxn>,
    /// The partition's leader as Metadata reports it (none: an election is running).
    leader: Option<NodeId>,
    metadata_requests: u32,
}

impl World {
    fn new(commit: CommitMode, reset: OffsetReset, records: u64) -> World {
        let mut config = ConsumerConfig {
            topics: vec![("orders".into(), TopicId(0))],
            commit,
            auto_offset_reset: reset,
            max_poll_records: 4,
            processing_ms: 1,
            ..ConsumerConfig::default()
        };
        config.member.group = "billing".into();
        config.member.session_timeout_ms = 10_000;
        let coordinator = GroupCoordinator::new(
            CoordinatorConfig { initial_rebalance_delay_ms: 0, ..CoordinatorConfig::default() },
            1,
        );
        World {
            now: Millis(0),
            consumer: Consumer::new(CONSUMER, config, vec![BROKER], Millis(0)),
            coordinator,
            log: (0..records).map(entry).collect(),
            hw: records,
            events: Vec::new(),
            list_offsets: Vec::new(),
            parked: Vec::new(),
            aborted: Vec::new(),
            leader: Some(BROKER),
            metadata_requests: 0,
        }
    }

    /// Runs `ms` of time in 1-ms steps (bounded: at most 100 exchanges per step).
    fn run(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while self.now < end {
            self.now = self.now.plus(1);
            for msg in std::mem::take(&mut self.parked) {
                self.answer(msg);
            }
            if self.consumer.poll_timeout().is_some_and(|at| at <= self.now) {
                self.consumer.handle_timeout(self.now);
            }
            if self.coordinator.poll_timeout().is_some_and(|at| at <= self.now) {
                self.coordinator.handle_timeout(self.now);
            }
            for _ in 0..100 {
                if !self.exchange() {
                    break;
                }
            }
        }
    }

    fn exchange(&mut self) -> bool {
        let mut moved = false;
        while let Some(action) = self.consumer.poll_action() {
            moved = true;
            match action {
                Action::Send { msg, .. } => self.answer(msg),
                Action::Group(event) => self.events.push(*event),
                Action::Processed { tp, offset, write } => {
                    self.events.push(GroupEvent::Processed { tp, offset, write })
                }
                _ => {}
            }
        }
        while let Some(output) = self.coordinator.poll_output() {
            moved = true;
            match output {
                CoordinatorOutput::Respond { correlation, response, .. } => {
                    let msg = Message::GroupResponse { correlation, response: Box::new(response) };
                    self.consumer.handle_message(self.now, BROKER, msg);
                }
                CoordinatorOutput::Append { token, .. } => {
                    self.coordinator.handle_append_result(self.now, token, ErrorCode::None)
                }
                _ => {}
            }
        }
        moved
    }

    fn answer(&mut self, msg: Message) {
        let reply = match msg {
            Message::Metadata { correlation } => Message::MetadataResponse {
                // Counted here: a struct literal cannot hold a statement.
                correlation: {
                    self.metadata_requests += 1;
                    correlation
                },
                topics: vec![TopicMeta {
                    id: TopicId(0),
                    name: "orders".into(),
                    partitions: 1,
                    min_insync_replicas: 1,
                }],
                partitions: vec![PartitionLeader { tp: tp(), leader: self.leader, leader_epoch: LeaderEpoch(0) }],
            },
            Message::FindCoordinator { correlation, .. } => {
                Message::FindCoordinatorResponse { correlation, error: ErrorCode::None, coordinator: Some(BROKER) }
            }
            Message::Group { correlation, request } => {
                self.coordinator.handle_request(self.now, CONSUMER, correlation, *request);
                return;
            }
            Message::ConsumerFetch { correlation, partitions, max_wait_ms, read_committed } => {
                let empty =
                    partitions.iter().all(|p| p.fetch_offset.0 >= self.hw && p.fetch_offset.0 <= self.log.len() as u64);
                if empty && max_wait_ms > 0 {
                    let parked = Message::ConsumerFetch { correlation, partitions, max_wait_ms: 0, read_committed };
                    self.parked.push(parked);
                    return;
                }
                let partitions = partitions
                    .iter()
                    .map(|p| {
                        let offset = p.fetch_offset.0;
                        let (error, records) = if offset > self.log.len() as u64 {
                            (ErrorCode::OffsetOutOfRange, Vec::new())
                        } else {
                            let end = self.hw.min(self.log.len() as u64);
                            (ErrorCode::None, self.log[offset.min(end) as usize..end as usize].to_vec())
                        };
                        ConsumerFetchPartitionResponse {
                            tp: p.tp,
                            fetch_offset: p.fetch_offset,
                            error,
                            high_watermark: Offset(self.hw),
                            last_stable_offset: Offset(self.hw),
                            records,
                            aborted: if read_committed { self.aborted.clone() } else { Vec::new() },
                        }
                    })
                    .collect();
                Message::ConsumerFetchResponse { correlation, partitions }
            }
            Message::ListOffsets { correlation, partitions } => {
                self.list_offsets.extend(partitions.iter().copied());
                let answers = partitions
                    .into_iter()
                    .map(|(tp, latest)| (tp, ErrorCode::None, Offset(if latest { self.hw } else { 0 })))
                    .collect();
                Message::ListOffsetsResponse { correlation, partitions: answers }
            }
            _ => return,
        };
        self.consumer.handle_message(self.now, BROKER, reply);
    }

    fn processed(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Processed { offset, .. } => Some(offset.0),
                _ => None,
            })
            .collect()
    }
}

// Shows a consumer with no committed offset starts where auto.offset.reset says (Kafka's
// consumer config docs: earliest / latest) and reads only below the high watermark: the
// records above it are processed once the HW moves (a consumer's fetch is isolated by HW).
#[test]
fn a_new_group_starts_at_the_reset_position_and_reads_below_the_high_watermark() {
    let mut world = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 10);
    world.hw = 6;
    world.run(5_000);
    assert_eq!(world.list_offsets, vec![(tp(), false)], "earliest: ListOffsets for the log start");
    assert_eq!(world.processed(), (0..6).collect::<Vec<_>>(), "only below the HW");
    world.hw = 10;
    world.run(2_000);
    assert_eq!(world.processed(), (0..10).collect::<Vec<_>>());
    let mut latest = World::new(CommitMode::SyncAfter, OffsetReset::Latest, 10);
    latest.run(5_000);
    assert!(latest.processed().is_empty(), "latest: starts at the end");
}

// Shows a position past a truncated log end is handled as the Java client handles
// OFFSET_OUT_OF_RANGE: reset per auto.offset.reset (a PositionReset in the history), or,
// with `none`, the consumer stops with the error (OffsetOutOfRangeException).
#[test]
fn a_position_past_a_truncated_log_end_is_reset() {
    let mut world = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 10);
    world.run(5_000);
    assert_eq!(world.processed().len(), 10);
    world.log.truncate(5);
    world.hw = 5;
    world.run(2_000);
    let reset = world.events.iter().find_map(|e| match e {
        GroupEvent::PositionReset { from, to, .. } if from.is_some() => Some((*from, *to)),
        _ => None,
    });
    assert_eq!(reset, Some((Some(Offset(10)), Offset(0))), "{:?}", world.events);
    assert_eq!(world.processed().len(), 15, "the surviving records are read again");

    let mut strict = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 10);
    strict.run(5_000);
    strict.consumer.config.auto_offset_reset = OffsetReset::None;
    strict.log.truncate(5);
    strict.hw = 5;
    strict.run(2_000);
    assert!(strict.events.iter().any(|e| matches!(e, GroupEvent::Fatal { error: ErrorCode::OffsetOutOfRange, .. })));
}

// Shows the at-most-once recipe (KafkaConsumer javadoc, "Manual Offset Control"): with
// commit-before-processing a batch is processed only after its commit succeeded, and a
// failed commit (the member is out of the group) skips the batch.
#[test]
fn commit_before_processing_commits_first_and_skips_on_failure() {
    let mut world = World::new(CommitMode::SyncBefore, OffsetReset::Earliest, 8);
    world.run(5_000);
    let order: Vec<&str> = world
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::CommitDone { .. } => Some("commit"),
            GroupEvent::Processed { .. } => Some("process"),
            _ => None,
        })
        .collect();
    assert_eq!(order.first(), Some(&"commit"), "{order:?}");
    assert_eq!(world.processed(), (0..8).collect::<Vec<_>>());
    // The coordinator forgets the group: the next batch's commit fails and is skipped.
    world.coordinator = GroupCoordinator::new(CoordinatorConfig::default(), 2);
    world.log.extend((8..12).map(entry));
    world.hw = 12;
    world.run(500);
    let failed =
        world.events.iter().any(|e| matches!(e, GroupEvent::CommitDone { error, .. } if *error != ErrorCode::None));
    assert!(failed, "the commit of the new batch fails");
    assert_eq!(world.processed().len(), 8, "nothing processed without its commit");
}

// Shows the application-driven consumer (CommitMode::Manual, the madsim host's async
// API): nothing joins before `subscribe`; `poll` runs the join (the Java client joins
// from inside poll) and returns the assignment callback, then records; a sink write is
// the processing, and `commit` with no offsets commits the consumed position
// (KafkaConsumer javadoc: commitSync() commits the offsets the last poll returned).
#[test]
fn an_application_drives_the_consumer_itself() {
    let mut world = World::new(CommitMode::Manual, OffsetReset::Earliest, 6);
    world.run(2_000);
    assert!(world.consumer.app_poll(world.now).records.is_empty());
    world.run(1_000);
    assert!(!world.events.iter().any(|e| matches!(e, GroupEvent::Assigned { .. })), "no subscription, no join");
    world.consumer.app_subscribe(world.now, vec![("orders".into(), TopicId(0))]);
    let mut rebalances = Vec::new();
    let mut records = Vec::new();
    // Bounded: polls every 10 ms for 5 s of simulated time.
    for _ in 0..500 {
        let polled = world.consumer.app_poll(world.now);
        rebalances.extend(polled.rebalances);
        records.extend(polled.records);
        world.exchange();
        world.run(10);
        if records.len() >= 6 {
            break;
        }
    }
    assert_eq!(rebalances, vec![Rebalance::Assigned(vec![tp()])]);
    let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>(), "max.poll.records 4 per poll, in order");
    assert!(world.processed().is_empty(), "polled is not processed");
    for record in &records[..3] {
        world.consumer.app_processed(record.tp, record.offset, record.write);
    }
    assert_eq!(world.consumer.positions(), vec![(tp(), Some(Offset(3)))], "done up to the sink writes");
    let correlation = world.consumer.app_commit(world.now, None);
    world.run(10);
    let done = world.events.iter().find_map(|e| match e {
        GroupEvent::CommitDone { correlation: c, offsets, error, .. } if *c == correlation => Some((offsets, *error)),
        _ => None,
    });
    assert_eq!(done, Some((&vec![(tp(), Offset(6))], ErrorCode::None)), "the consumed position, answered by id");
    assert!(world.consumer.app_seek(world.now, tp(), Offset(2)));
    assert!(!world.consumer.app_seek(world.now, TopicPartition::new(0, 9), Offset(0)), "not owned");
    let mut again = Vec::new();
    for _ in 0..100 {
        again.extend(world.consumer.app_poll(world.now).records);
        world.run(10);
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(again.first().map(|r| r.offset), Some(Offset(2)), "read again from the seek");
}

// Shows a commitSync that fails at once because the member dropped out of the group
// mid-batch (ILLEGAL_GENERATION without a request, as the Java client's
// CommitFailedException) ends the commit and the loop polls again and rejoins. Found by
// the simulator: the failure was answered before the loop waited for it, and the
// consumer hung for good (scenario group-coordinator-power-loss-rf1, 14 of 40 seeds).
#[test]
fn a_commit_refused_locally_does_not_hang_the_loop() {
    let mut world = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 4);
    world.consumer.config.processing_ms = 4_000;
    world.run(6_000);
    let started = world.processed().len();
    assert!((1..4).contains(&started), "mid-batch: {started} of four slow records processed");
    // The coordinator forgets the group: the next heartbeat learns the member is unknown.
    world.coordinator =
        GroupCoordinator::new(CoordinatorConfig { initial_rebalance_delay_ms: 0, ..CoordinatorConfig::default() }, 2);
    world.run(60_000);
    let refused = world.events.iter().any(|e| {
        matches!(e, GroupEvent::CommitDone { error: ErrorCode::IllegalGeneration, generation, .. } if *generation < 0)
    });
    assert!(refused, "the commit after the batch is refused at once: {:?}", world.events);
    assert!(world.processed().len() > 4, "the consumer rejoined and went on: {:?}", world.processed());
}

// Shows a `commitSync()` inside `onPartitionsRevoked` commits the revoked partitions'
// positions, and one after the callbacks returned does not: the partitions are gone
// (ConsumerRebalanceListener javadoc; the Java client drops them from its subscription
// state when the callback returns). Here the revoke comes from subscribing to another
// topic (eager protocol: onJoinPrepare revokes everything).
#[test]
fn revoked_partitions_are_committable_only_inside_the_callback() {
    let mut world = World::new(CommitMode::Manual, OffsetReset::Earliest, 6);
    world.consumer.app_subscribe(world.now, vec![("orders".into(), TopicId(0))]);
    let mut records = Vec::new();
    // Bounded: polls every 10 ms for 5 s of simulated time.
    for _ in 0..500 {
        records.extend(world.consumer.app_poll(world.now).records);
        world.run(10);
        if records.len() >= 6 {
            break;
        }
    }
    assert_eq!(records.len(), 6);
    world.consumer.app_subscribe(world.now, vec![("refunds".into(), TopicId(1))]);
    let polled = world.consumer.app_poll(world.now);
    assert_eq!(polled.rebalances, vec![Rebalance::Revoked(vec![tp()])]);
    let sent = |world: &World, correlation: u64| {
        world.events.iter().find_map(|e| match e {
            GroupEvent::CommitDone { correlation: c, offsets, .. } if *c == correlation => Some(offsets.clone()),
            _ => None,
        })
    };
    let inside = world.consumer.app_commit(world.now, None);
    world.run(10);
    assert_eq!(sent(&world, inside), Some(vec![(tp(), Offset(6))]), "inside the callback");
    world.consumer.app_listener_done();
    let after = world.consumer.app_commit(world.now, None);
    world.run(10);
    assert_eq!(sent(&world, after), Some(Vec::new()), "after the callback returned");
}

/// A transactional record of producer 9 (write `write`), or its commit/abort marker.
fn txn_entry(write: u64) -> LogEntry {
    let mut e = entry(write);
    let pid = std::num::NonZeroU32::new(9).expect("non-zero");
    let kind = crate::types::BatchKind::Transactional;
    e.record.stamp = Some(crate::types::Stamp { pid, epoch: 0, index: 0, sequence: write as u32, kind });
    e
}

fn marker_entry(commit: bool) -> LogEntry {
    let pid = std::num::NonZeroU32::new(9).expect("non-zero");
    let record = Record::marker(pid, 0, commit, WriteId(1 << 62), ProducerId(u32::MAX), Millis(0));
    LogEntry { leader_epoch: LeaderEpoch(0), record }
}

// Shows isolation.level (KIP-98): a read_committed consumer skips an aborted transaction's
// records, using the aborted transactions the fetch returns, and no consumer hands a
// marker to the application; a commit after processing covers the trailing marker, as
// the Java client's position does, so the group's committed offset reaches the log end.
#[test]
fn read_committed_skips_aborted_records_and_commits_past_markers() {
    let log = vec![txn_entry(0), txn_entry(1), marker_entry(false), entry(3), txn_entry(4), marker_entry(true)];
    for (isolation, expected) in
        [(IsolationLevel::ReadCommitted, vec![3, 4]), (IsolationLevel::ReadUncommitted, vec![0, 1, 3, 4])]
    {
        let mut world = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 0);
        world.consumer.config.isolation_level = isolation;
        world.log = log.clone();
        world.hw = log.len() as u64;
        let pid = std::num::NonZeroU32::new(9).expect("non-zero");
        world.aborted = vec![crate::log::AbortedTxn { pid, first_offset: Offset(0) }];
        world.run(5_000);
        assert_eq!(world.processed(), expected, "{isolation:?}");
        assert_eq!(world.coordinator.committed("billing", tp()), Some(Offset(6)), "{isolation:?}");
    }
}

// Shows a partition whose leader the last Metadata did not name (an election was running)
// makes the consumer ask for metadata again, paced by retry.backoff.ms, as the Java
// fetcher requests an update for a partition without a leader, instead of waiting for
// metadata.max.age.ms (found by a nemesis sweep with transactions: a group stuck for good).
#[test]
fn a_partition_without_a_leader_refreshes_metadata() {
    let mut world = World::new(CommitMode::SyncAfter, OffsetReset::Earliest, 5);
    world.leader = None;
    world.run(2_000);
    assert!(world.processed().is_empty());
    assert!(world.metadata_requests >= 5, "asked again and again: {}", world.metadata_requests);
    assert!(world.metadata_requests <= 25, "but paced by the backoff: {}", world.metadata_requests);
    world.leader = Some(BROKER);
    world.run(2_000);
    assert_eq!(world.processed(), (0..5).collect::<Vec<_>>());
}
