//! Unit tests of the broker state machine: produce with acks, the high watermark, ISR
//! shrink, follower fetch and truncation (KIP-101/KIP-320 and the pre-KIP-101 rule).

use super::*;
use crate::config::{Acks, Protocol};
use crate::log::Record;
use crate::messages::{FetchPartitionResponse, MessageKind, ProduceBatch};
use crate::types::{PartitionEpoch, ProducerId, TopicId, WriteId};
use std::sync::Arc;

const CONTROLLER: NodeId = NodeId(10);
const CLIENT: NodeId = NodeId(100);

fn tp() -> TopicPartition {
    TopicPartition::new(0, 0)
}

fn record(write: u64) -> Record {
    Record {
        write: WriteId(write),
        key: None,
        producer: ProducerId(0),
        sequence: write as u32,
        timestamp: Millis(0),
        stamp: None,
    }
}

fn partition(leader: u32, leader_epoch: u32, replicas: &[u32], isr: &[u32]) -> PartitionState {
    PartitionState {
        tp: tp(),
        replicas: replicas.iter().map(|id| NodeId(*id)).collect(),
        isr: isr.iter().map(|id| NodeId(*id)).collect(),
        elr: Vec::new(),
        last_known_leader: None,
        leader: Some(NodeId(leader)),
        leader_epoch: LeaderEpoch(leader_epoch),
        partition_epoch: PartitionEpoch(0),
    }
}

/// A broker started on `disk` whose registration the controller accepted with `state`
/// (topic 0 has one partition and min.insync.replicas = 2). Registration actions are drained.
fn start_broker(id: u32, config: BrokerConfig, disk: BrokerDisk, state: PartitionState) -> (Broker, Vec<Action>) {
    let mut broker = Broker::new(NodeId(id), CONTROLLER, config, disk, 1, Millis(0));
    let metadata = MetadataDelta {
        version: 1,
        topics: vec![TopicMeta { id: TopicId(0), name: "t".into(), partitions: 1, min_insync_replicas: 2 }],
        partitions: vec![state],
        ineligible_brokers: vec![],
        base: None,
    };
    let response = Message::BrokerRegistrationResponse {
        error: ErrorCode::None,
        broker_epoch: BrokerEpoch(1),
        metadata: Box::new(metadata),
    };
    broker.handle_message(Millis(0), CONTROLLER, response);
    assert!(broker.is_registered());
    let actions = drain(&mut broker);
    (broker, actions)
}

fn registered_broker(id: u32, state: PartitionState) -> Broker {
    start_broker(id, BrokerConfig::default(), BrokerDisk::default(), state).0
}

pub(super) fn drain(broker: &mut Broker) -> Vec<Action> {
    std::iter::from_fn(|| broker.poll_action()).collect()
}

pub(super) fn sends_of_kind(actions: &[Action], kind: MessageKind) -> Vec<(NodeId, Message)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, msg } if msg.kind() == kind => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<ClusterEvent> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The produce responses in `actions`: (to, correlation, partitions).
fn produce_responses(actions: &[Action]) -> Vec<(NodeId, u64, Vec<ProducePartitionResponse>)> {
    sends_of_kind(actions, MessageKind::ProduceResponse)
        .into_iter()
        .map(|(to, msg)| match msg {
            Message::ProduceResponse { correlation, partitions } => (to, correlation, partitions),
            other => unreachable!("{other:?}"),
        })
        .collect()
}

/// The one fetch in `actions`: (to, correlation, partitions).
fn single_fetch(actions: &[Action]) -> (NodeId, u64, Vec<FetchPartition>) {
    let fetches = sends_of_kind(actions, MessageKind::Fetch);
    assert_eq!(fetches.len(), 1, "expected one fetch in {actions:?}");
    match fetches.into_iter().next() {
        Some((to, Message::Fetch { correlation, partitions, .. })) => (to, correlation, partitions),
        other => unreachable!("{other:?}"),
    }
}

fn produce(broker: &mut Broker, now: u64, correlation: u64, acks: Acks, timeout_ms: u64, writes: &[u64]) {
    let records = Arc::new(writes.iter().map(|w| record(*w)).collect());
    let batches = vec![ProduceBatch { tp: tp(), records }];
    let msg = Message::Produce { correlation, acks, timeout_ms, batches, transactional_id: None };
    broker.handle_message(Millis(now), CLIENT, msg);
}

fn follower_fetch(broker: &mut Broker, now: u64, follower: u32, correlation: u64, fetch_offset: u64, epoch: u32) {
    let last_fetched_epoch = (fetch_offset > 0).then_some(LeaderEpoch(epoch));
    let partitions = vec![FetchPartition {
        tp: tp(),
        fetch_offset: Offset(fetch_offset),
        last_fetched_epoch,
        current_leader_epoch: LeaderEpoch(epoch),
        high_watermark: Offset(0),
    }];
    let msg = Message::Fetch { correlation, broker_epoch: BrokerEpoch(1), max_wait_ms: 500, partitions };
    broker.handle_message(Millis(now), NodeId(follower), msg);
}

/// The AlterPartition a leader of `tp()` at leader and partition epoch 0 (broker epoch 1)
/// sends to propose `isr`.
fn isr_proposal(isr: &[u32]) -> Message {
    Message::AlterPartition {
        broker_epoch: BrokerEpoch(1),
        items: vec![AlterPartitionItem {
            tp: tp(),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            new_isr: isr.iter().map(|id| NodeId(*id)).collect(),
        }],
    }
}

/// A disk holding `writes` in `tp()`, all appended in `epoch`.
fn disk_with(epoch: u32, writes: &[u64]) -> BrokerDisk {
    let mut disk = BrokerDisk::default();
    let records: Vec<Record> = writes.iter().map(|w| record(*w)).collect();
    disk.logs.get_or_default(tp()).append_as_leader(LeaderEpoch(epoch), &records);
    disk
}

// Shows that acks=all is answered only once every ISR member has the batch: the HW moves
// when the follower's fetch offset proves it has the records (Kafka's
// Partition.checkEnoughReplicasReachOffset / DelayedProduce, and maybeIncrementLeaderHW
// with the follower's LEO taken from its fetch offset).
#[test]
fn acks_all_waits_for_the_isr_to_reach_the_batch() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1], &[0, 1]));
    produce(&mut leader, 10, 7, Acks::All, 30_000, &[1, 2]);
    let actions = drain(&mut leader);
    assert!(produce_responses(&actions).is_empty(), "answered before replication: {actions:?}");
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(2)));
    assert_eq!(leader.high_watermark(tp()), Some(Offset(0)));

    // The follower fetches from 0: it gets the records but has not shown it holds them.
    follower_fetch(&mut leader, 20, 1, 1, 0, 0);
    let actions = drain(&mut leader);
    assert!(produce_responses(&actions).is_empty(), "answered before the follower had the batch: {actions:?}");
    let fetched = sends_of_kind(&actions, MessageKind::FetchResponse);
    match fetched.as_slice() {
        [(to, Message::FetchResponse { correlation: 1, partitions })] => {
            assert_eq!(*to, NodeId(1));
            assert_eq!(partitions[0].records.len(), 2);
            assert_eq!(partitions[0].high_watermark, Offset(0));
        }
        other => panic!("expected one fetch response, got {other:?}"),
    }
    assert_eq!(leader.high_watermark(tp()), Some(Offset(0)));

    // The next fetch from the leader's log end moves the HW and completes the produce.
    follower_fetch(&mut leader, 30, 1, 2, 2, 0);
    let actions = drain(&mut leader);
    assert_eq!(leader.high_watermark(tp()), Some(Offset(2)));
    let expected = ProducePartitionResponse { tp: tp(), error: ErrorCode::None, base_offset: Some(Offset(0)) };
    assert_eq!(produce_responses(&actions), vec![(CLIENT, 7, vec![expected])]);
    assert!(events(&actions).contains(&ClusterEvent::HighWatermark {
        broker: NodeId(0),
        tp: tp(),
        leader: true,
        high_watermark: Offset(2),
    }));
}

// Shows the leader's answer to a follower leaves out a partition with nothing new for it,
// as KIP-227's incremental fetch responses do (FetchSession.maybeUpdateResponseData): a
// higher high watermark is news and stays in; the same HW the follower has is not, and
// the parked fetch is answered with no partitions when its wait ends.
#[test]
fn a_fetch_answer_leaves_out_partitions_with_nothing_new() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1], &[0, 1]));
    produce(&mut leader, 10, 7, Acks::All, 30_000, &[1, 2]);
    follower_fetch(&mut leader, 20, 1, 1, 0, 0);
    drain(&mut leader);
    let fetch = |correlation: u64, high_watermark: u64| Message::Fetch {
        correlation,
        broker_epoch: BrokerEpoch(1),
        max_wait_ms: 500,
        partitions: vec![FetchPartition {
            tp: tp(),
            fetch_offset: Offset(2),
            last_fetched_epoch: Some(LeaderEpoch(0)),
            current_leader_epoch: LeaderEpoch(0),
            high_watermark: Offset(high_watermark),
        }],
    };
    let answered = |leader: &mut Broker, at: u64| -> Vec<FetchPartitionResponse> {
        leader.handle_timeout(Millis(at));
        match sends_of_kind(&drain(leader), MessageKind::FetchResponse).as_slice() {
            [(_, Message::FetchResponse { partitions, .. })] => partitions.clone(),
            other => panic!("expected one fetch response, got {other:?}"),
        }
    };
    // The follower holds both records with HW 0; the leader's HW moves to 2 on this
    // fetch, which parks (no records), and its answer after the wait carries the HW.
    leader.handle_message(Millis(30), NodeId(1), fetch(2, 0));
    assert_eq!(leader.high_watermark(tp()), Some(Offset(2)));
    let partitions = answered(&mut leader, 530);
    assert_eq!(partitions.len(), 1, "{partitions:?}");
    assert_eq!(partitions[0].high_watermark, Offset(2));
    // The follower has HW 2 now: nothing is news.
    leader.handle_message(Millis(540), NodeId(1), fetch(3, 2));
    assert!(answered(&mut leader, 1_040).is_empty());
}

// Shows Kafka's min.insync.replicas check before the append (Partition.appendRecordsToLeader
// throws NotEnoughReplicasException when inSyncSize < minIsr and acks=all): nothing is
// appended; acks=1 ignores min.insync.replicas and is answered at once.
#[test]
fn acks_all_below_min_isr_is_refused_without_append() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1], &[0]));
    produce(&mut leader, 10, 1, Acks::All, 30_000, &[1]);
    let actions = drain(&mut leader);
    let refused = ProducePartitionResponse { tp: tp(), error: ErrorCode::NotEnoughReplicas, base_offset: None };
    assert_eq!(produce_responses(&actions), vec![(CLIENT, 1, vec![refused])]);
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(0)));

    produce(&mut leader, 20, 2, Acks::Leader, 30_000, &[2]);
    let actions = drain(&mut leader);
    let appended = ProducePartitionResponse { tp: tp(), error: ErrorCode::None, base_offset: Some(Offset(0)) };
    assert_eq!(produce_responses(&actions), vec![(CLIENT, 2, vec![appended])]);
    let log = leader.log(tp()).expect("leader has the log");
    assert_eq!(log.log_end_offset(), Offset(1));
    assert_eq!(log.entry(Offset(0)).map(|entry| entry.record.write), Some(WriteId(2)));
}

// Shows Kafka's DelayedProduce expiry: an acks=all produce whose ISR does not catch up is
// answered REQUEST_TIMED_OUT at its deadline (timeout_ms after arrival), not before, and
// the record stays in the leader's log (a timed-out write is not a failed one).
#[test]
fn parked_produce_times_out_at_its_deadline() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1], &[0, 1]));
    produce(&mut leader, 10, 3, Acks::All, 1_000, &[1]);
    assert!(produce_responses(&drain(&mut leader)).is_empty());
    assert!(leader.poll_timeout().is_some_and(|at| at <= Millis(1_010)));

    leader.handle_timeout(Millis(1_009));
    let actions = drain(&mut leader);
    assert!(produce_responses(&actions).is_empty(), "answered before its deadline: {actions:?}");

    leader.handle_timeout(Millis(1_010));
    let actions = drain(&mut leader);
    let timed_out = ProducePartitionResponse { tp: tp(), error: ErrorCode::RequestTimedOut, base_offset: None };
    assert_eq!(produce_responses(&actions), vec![(CLIENT, 3, vec![timed_out])]);
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(1)));

    // Nothing is answered twice.
    leader.handle_timeout(Millis(5_000));
    assert!(produce_responses(&drain(&mut leader)).is_empty());
}

// Shows KIP-320 divergence (after KIP-101/KIP-279): a follower that sends its last fetched
// epoch 0 at an offset past the leader's end for epoch 0 gets diverging_epoch (0, end)
// from the leader (Kafka's Partition.fetchRecords / lastOffsetForLeaderEpoch) and truncates
// to that offset (AbstractFetcherThread.truncateOnFetchResponse), then fetches from there.
#[test]
fn follower_truncates_to_the_diverging_epoch_end() {
    let state = partition(0, 1, &[0, 1], &[0, 1]);
    // The leader kept only the first record of epoch 0; epoch 1 starts at offset 1.
    let (mut leader, _) = start_broker(0, BrokerConfig::default(), disk_with(0, &[1]), state.clone());
    let (mut follower, actions) = start_broker(1, BrokerConfig::default(), disk_with(0, &[1, 2, 3]), state);
    assert!(leader.is_leader(tp()));
    assert!(!follower.is_leader(tp()));

    let (to, correlation, partitions) = single_fetch(&actions);
    assert_eq!(to, NodeId(0));
    assert_eq!(partitions[0].fetch_offset, Offset(3));
    assert_eq!(partitions[0].last_fetched_epoch, Some(LeaderEpoch(0)));
    assert_eq!(partitions[0].current_leader_epoch, LeaderEpoch(1));

    let fetch = Message::Fetch { correlation, broker_epoch: BrokerEpoch(1), max_wait_ms: 500, partitions };
    leader.handle_message(Millis(10), NodeId(1), fetch);
    let responses = sends_of_kind(&drain(&mut leader), MessageKind::FetchResponse);
    let response = match responses.as_slice() {
        [(to, msg @ Message::FetchResponse { correlation: c, partitions })] if *c == correlation => {
            assert_eq!(*to, NodeId(1));
            assert_eq!(partitions[0].diverging_epoch, Some((LeaderEpoch(0), Offset(1))));
            assert!(partitions[0].records.is_empty());
            msg.clone()
        }
        other => panic!("expected the leader to answer fetch {correlation}, got {other:?}"),
    };

    follower.handle_message(Millis(20), NodeId(0), response);
    let actions = drain(&mut follower);
    let log = follower.log(tp()).expect("follower has the log");
    assert_eq!(log.log_end_offset(), Offset(1));
    assert_eq!(log.entry(Offset(0)).map(|entry| entry.record.write), Some(WriteId(1)));
    assert!(events(&actions).contains(&ClusterEvent::Truncated {
        broker: NodeId(1),
        tp: tp(),
        from: Offset(3),
        to: Offset(1),
        reason: TruncationReason::DivergingEpoch,
    }));
    let (to, _, partitions) = single_fetch(&actions);
    assert_eq!(to, NodeId(0));
    assert_eq!(partitions[0].fetch_offset, Offset(1));
    assert_eq!(partitions[0].last_fetched_epoch, Some(LeaderEpoch(0)));
}

// Shows pre-KIP-101 truncation (Kafka < 0.11 ReplicaManager.makeFollowers truncating to
// the replica's high watermark checkpoint), the rule KIP-101 replaced: records above the
// checkpoint are dropped on becoming follower. With leader-epoch truncation (the default)
// the same disk is kept whole until the leader says where it diverges.
#[test]
fn high_watermark_truncation_drops_records_above_the_checkpoint() {
    let mut disk = disk_with(0, &[1, 2, 3]);
    disk.logs.get_mut(&tp()).expect("log").checkpoint_hw(Offset(1));
    let state = partition(0, 1, &[0, 1], &[0, 1]);

    let config = BrokerConfig {
        protocol: Protocol { truncation: Truncation::HighWatermark, ..Protocol::default() },
        ..BrokerConfig::default()
    };
    let (follower, actions) = start_broker(1, config, disk.clone(), state.clone());
    assert_eq!(follower.log(tp()).map(|log| log.log_end_offset()), Some(Offset(1)));
    assert_eq!(follower.high_watermark(tp()), Some(Offset(1)));
    assert!(events(&actions).contains(&ClusterEvent::Truncated {
        broker: NodeId(1),
        tp: tp(),
        from: Offset(3),
        to: Offset(1),
        reason: TruncationReason::HighWatermark,
    }));
    let (_, _, partitions) = single_fetch(&actions);
    assert_eq!(partitions[0].fetch_offset, Offset(1));
    assert_eq!(partitions[0].last_fetched_epoch, None);

    let (follower, actions) = start_broker(1, BrokerConfig::default(), disk, state);
    assert_eq!(follower.log(tp()).map(|log| log.log_end_offset()), Some(Offset(3)));
    assert!(!events(&actions).iter().any(|event| matches!(event, ClusterEvent::Truncated { .. })));
}

// Shows Kafka's ISR shrink (Partition.maybeShrinkIsr / getOutOfSyncReplicas, checked every
// replica.lag.time.max.ms / 2): a follower not caught up for more than
// replica.lag.time.max.ms is removed through AlterPartition (KIP-497); one that keeps
// fetching from the log end stays, and exactly lag.max since caught up is not yet out.
#[test]
fn leader_shrinks_isr_of_a_follower_that_stopped_fetching() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1, 2], &[0, 1, 2]));
    let lag_max = BrokerConfig::default().replica_lag_time_max_ms;
    assert_eq!(lag_max, 30_000);

    let mut alter_partitions = Vec::new();
    let mut correlation = 0;
    for now in (5_000..=lag_max).step_by(5_000) {
        // Follower 2 keeps fetching at the log end; follower 1 is silent.
        correlation += 1;
        follower_fetch(&mut leader, now, 2, correlation, 0, 0);
        leader.handle_timeout(Millis(now));
        alter_partitions.extend(sends_of_kind(&drain(&mut leader), MessageKind::AlterPartition));
    }
    assert!(alter_partitions.is_empty(), "shrank within replica.lag.time.max.ms: {alter_partitions:?}");
    assert_eq!(leader.partition_state(tp()).map(|state| state.isr.len()), Some(3));

    correlation += 1;
    follower_fetch(&mut leader, lag_max + 5_000, 2, correlation, 0, 0);
    leader.handle_timeout(Millis(lag_max + 15_000));
    let actions = drain(&mut leader);
    let expected = isr_proposal(&[0, 2]);
    assert_eq!(sends_of_kind(&actions, MessageKind::AlterPartition), vec![(CONTROLLER, expected)]);
    assert!(events(&actions).contains(&ClusterEvent::IsrChangeRequested {
        broker: NodeId(0),
        tp: tp(),
        new_isr: vec![NodeId(0), NodeId(2)],
    }));

    // The controller's answer becomes the partition's state.
    let mut shrunk = partition(0, 0, &[0, 1, 2], &[0, 2]);
    shrunk.partition_epoch = PartitionEpoch(1);
    let response = Message::AlterPartitionResponse { items: vec![(tp(), ErrorCode::None, Some(shrunk.clone()))] };
    leader.handle_message(Millis(lag_max + 15_001), CONTROLLER, response);
    drain(&mut leader);
    assert_eq!(leader.partition_state(tp()), Some(&shrunk));
    assert!(leader.is_leader(tp()));
}

// Shows that a leader does not propose a fenced follower for the ISR, however caught up
// it is, and proposes it once the metadata unfences it (KIP-841; Kafka's
// `Partition.isReplicaIsrEligible`). Proposing it would be refused INELIGIBLE_REPLICA and
// sent again on the follower's next fetch, its maximal ISR counting the follower for the
// HW meanwhile.
#[test]
fn a_fenced_follower_is_not_proposed_for_the_isr() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1, 2], &[0, 1]));
    let push = |version: u64, fenced: Vec<NodeId>| {
        let delta = MetadataDelta {
            version,
            topics: Vec::new(),
            partitions: Vec::new(),
            ineligible_brokers: fenced,
            base: Some(version - 1),
        };
        Message::MetadataUpdate(Box::new(delta))
    };
    leader.handle_message(Millis(10), CONTROLLER, push(2, vec![NodeId(2)]));
    drain(&mut leader);
    follower_fetch(&mut leader, 20, 2, 1, 0, 0);
    let proposals = sends_of_kind(&drain(&mut leader), MessageKind::AlterPartition);
    assert!(proposals.is_empty(), "a fenced follower was proposed: {proposals:?}");

    leader.handle_message(Millis(30), CONTROLLER, push(3, vec![]));
    drain(&mut leader);
    follower_fetch(&mut leader, 40, 2, 2, 0, 0);
    let expected = isr_proposal(&[0, 1, 2]);
    assert_eq!(sends_of_kind(&drain(&mut leader), MessageKind::AlterPartition), vec![(CONTROLLER, expected)]);
}

// Shows that a follower applies only the answer to the fetch it has in flight (Kafka's
// fetcher matches a response to its request; a late answer to an abandoned fetch must
// not be appended): a response with another correlation id changes nothing.
#[test]
fn stale_fetch_response_is_ignored() {
    let (mut follower, actions) =
        start_broker(1, BrokerConfig::default(), BrokerDisk::default(), partition(0, 0, &[0, 1], &[0, 1]));
    let (to, correlation, partitions) = single_fetch(&actions);
    assert_eq!(to, NodeId(0));
    assert_eq!(partitions[0].fetch_offset, Offset(0));

    let response = |correlation| Message::FetchResponse {
        correlation,
        partitions: vec![FetchPartitionResponse {
            tp: tp(),
            error: ErrorCode::None,
            high_watermark: Offset(2),
            log_end_offset: Offset(2),
            diverging_epoch: None,
            payloads: Vec::new(),
            records: [1, 2]
                .into_iter()
                .map(|write| crate::log::LogEntry { leader_epoch: LeaderEpoch(0), record: record(write) })
                .collect(),
        }],
    };

    follower.handle_message(Millis(10), NodeId(0), response(correlation + 1));
    let actions = drain(&mut follower);
    assert_eq!(follower.log(tp()).map(|log| log.log_end_offset()), Some(Offset(0)));
    assert_eq!(follower.high_watermark(tp()), Some(Offset(0)));
    assert!(sends_of_kind(&actions, MessageKind::Fetch).is_empty(), "a new fetch while one is in flight");

    follower.handle_message(Millis(20), NodeId(0), response(correlation));
    let actions = drain(&mut follower);
    assert_eq!(follower.log(tp()).map(|log| log.log_end_offset()), Some(Offset(2)));
    assert_eq!(follower.high_watermark(tp()), Some(Offset(2)));
    let (_, next, partitions) = single_fetch(&actions);
    assert_ne!(next, correlation);
    assert_eq!(partitions[0].fetch_offset, Offset(2));

    // The same answer delivered twice is now stale: nothing is appended again.
    follower.handle_message(Millis(30), NodeId(0), response(correlation));
    drain(&mut follower);
    assert_eq!(follower.log(tp()).map(|log| log.log_end_offset()), Some(Offset(2)));
}

// Shows the leader's duplicate detection for idempotent producers (KIP-98, UnifiedLog's
// analyzeAndValidateProducerState): a batch resent with the same producer id, epoch and
// sequences is answered with the first append's offset and not appended again; a batch
// whose sequence skips ahead is OUT_OF_ORDER_SEQUENCE_NUMBER; and InitProducerId hands
// out distinct ids.
#[test]
fn a_resent_idempotent_batch_is_answered_from_the_cache() {
    let mut leader = registered_broker(0, partition(0, 0, &[0], &[0]));
    leader.handle_message(Millis(1), CLIENT, Message::InitProducerId { correlation: 1 });
    leader.handle_message(Millis(1), CLIENT, Message::InitProducerId { correlation: 2 });
    let granted: Vec<_> = drain(&mut leader)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { msg: Message::InitProducerIdResponse { producer: Some(p), .. }, .. } => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(granted.len(), 2);
    assert_ne!(granted[0].0, granted[1].0, "each InitProducerId gets its own id");
    let (pid, epoch) = granted[0];
    let stamped = |writes: &[u64], first: u32| -> Arc<crate::messages::BatchRecords> {
        let records = writes.iter().enumerate().map(|(i, w)| Record {
            stamp: Some(crate::types::Stamp {
                pid,
                epoch,
                index: i as u16,
                sequence: first + i as u32,
                kind: Default::default(),
            }),
            ..record(*w)
        });
        Arc::new(records.collect())
    };
    let send = |leader: &mut Broker, correlation: u64, records: Arc<crate::messages::BatchRecords>| {
        let msg = Message::Produce {
            correlation,
            acks: Acks::Leader,
            timeout_ms: 30_000,
            batches: vec![ProduceBatch { tp: tp(), records }],
            transactional_id: None,
        };
        leader.handle_message(Millis(10), CLIENT, msg);
        produce_responses(&drain(leader)).pop().expect("a response").2.remove(0)
    };
    assert_eq!(send(&mut leader, 3, stamped(&[1, 2], 0)).base_offset, Some(Offset(0)));
    assert_eq!(send(&mut leader, 4, stamped(&[3], 2)).base_offset, Some(Offset(2)));
    let again = send(&mut leader, 5, stamped(&[1, 2], 0));
    assert_eq!((again.error, again.base_offset), (ErrorCode::None, Some(Offset(0))), "the first append's offset");
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(3)), "nothing appended twice");
    let gap = send(&mut leader, 6, stamped(&[5], 9));
    assert_eq!(gap.error, ErrorCode::OutOfOrderSequenceNumber);
}

// Shows a client's requests are handled one at a time, in order, as Kafka's SocketServer
// does (it mutes a connection until the response to its request in process is sent): a
// second acks=all produce waits unread behind the first, parked one, and is appended
// only once the first is answered. This is what bounds an idempotent producer's
// unanswered batches per partition to its in-flight limit, and so to the leader's
// five-batch cache.
#[test]
fn a_connection_is_served_one_request_at_a_time() {
    let mut leader = registered_broker(0, partition(0, 0, &[0, 1], &[0, 1]));
    produce(&mut leader, 10, 1, Acks::All, 30_000, &[1]);
    produce(&mut leader, 11, 2, Acks::All, 30_000, &[2]);
    drain(&mut leader);
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(1)), "the second waits unread");
    follower_fetch(&mut leader, 20, 1, 1, 1, 0);
    let actions = drain(&mut leader);
    let answered: Vec<u64> = produce_responses(&actions).iter().map(|(_, c, _)| *c).collect();
    assert_eq!(answered, vec![1], "the first is answered");
    assert_eq!(leader.log(tp()).map(|log| log.log_end_offset()), Some(Offset(2)), "then the second is read");
    follower_fetch(&mut leader, 30, 1, 2, 2, 0);
    let answered: Vec<u64> = produce_responses(&drain(&mut leader)).iter().map(|(_, c, _)| *c).collect();
    assert_eq!(answered, vec![2]);
}

// Shows a broker that missed a metadata push does not skip it: a later delta is applied
// but the broker's metadata version stays where its log of pushes has no gap, so its
// heartbeat asks the controller for a snapshot (a KRaft broker fetches the metadata log
// in order; found by the txn-nemesis sweep, seed 70: a lost push of a leader election
// left the new leader a follower for good).
#[test]
fn a_missed_metadata_push_is_not_skipped() {
    let mut broker = registered_broker(0, partition(1, 0, &[0, 1, 2], &[0, 1, 2]));
    let delta = |version: u64, leader: u32, epoch: u32| MetadataDelta {
        version,
        topics: Vec::new(),
        partitions: vec![partition(leader, epoch, &[0, 1, 2], &[0, 1, 2])],
        ineligible_brokers: vec![],
        base: Some(version - 1),
    };
    // Version 2 (broker 0 leads, epoch 1) is lost; version 3 (broker 2 leads) arrives.
    broker.handle_message(Millis(10), CONTROLLER, Message::MetadataUpdate(Box::new(delta(3, 2, 2))));
    drain(&mut broker);
    broker.handle_timeout(Millis(10_000));
    let beats = sends_of_kind(&drain(&mut broker), MessageKind::BrokerHeartbeat);
    let reported = beats.iter().find_map(|(_, m)| match m {
        Message::BrokerHeartbeat { metadata_version, .. } => Some(*metadata_version),
        _ => None,
    });
    assert_eq!(reported, Some(1), "the gap at version 2 is reported, so a snapshot comes");
    broker.handle_message(Millis(10_001), CONTROLLER, Message::MetadataUpdate(Box::new(delta(4, 2, 2))));
    broker.handle_timeout(Millis(20_000));
    let beats = sends_of_kind(&drain(&mut broker), MessageKind::BrokerHeartbeat);
    assert!(beats.iter().all(|(_, m)| matches!(m, Message::BrokerHeartbeat { metadata_version: 1, .. })));
}

// Shows the OS writeback Linux does by default (`vm.dirty_writeback_centisecs` 5 s,
// `vm.dirty_expire_centisecs` 30 s; Documentation/admin-guide/sysctl/vm.rst): the
// flusher's pass that first sees a log dirty starts its 30 s, and the pass 30 s later
// writes the whole log back, records appended since included; a power loss before then
// takes them, after it nothing. A kill keeps the page cache, and with it the log's age.
#[test]
fn the_os_writes_a_log_back_whole_thirty_seconds_after_it_was_first_dirty() {
    let mut disk = BrokerDisk::default();
    disk.logs.get_or_default(tp()).append_as_leader(LeaderEpoch(0), &[record(0), record(1), record(2)]);
    let (mut broker, _) = start_broker(1, BrokerConfig::default(), disk, partition(1, 0, &[1], &[1]));
    let unflushed = |broker: &Broker| broker.disk().logs.get(&tp()).map_or(0, |log| log.unflushed_records());
    let after_power_loss = |broker: &Broker| {
        let mut disk = broker.disk().clone();
        disk.lose_unflushed();
        disk.logs.get(&tp()).map_or(Offset(0), |log| log.log_end_offset())
    };
    broker.handle_timeout(Millis(5_000));
    assert_eq!(unflushed(&broker), 3, "the first pass only notes the log dirty");
    // A kill and a restart: the new process's flusher passes fall at 11 s, 16 s, ...
    let mut broker = Broker::new(NodeId(1), CONTROLLER, BrokerConfig::default(), broker.into_disk(), 2, Millis(6_000));
    broker.disk.logs.get_or_default(tp()).append_as_leader(LeaderEpoch(0), &[record(3), record(4)]);
    for at in [11_000, 16_000, 21_000, 26_000, 31_000] {
        broker.handle_timeout(Millis(at));
    }
    assert_eq!(unflushed(&broker), 5, "26 s after the pass that saw it dirty");
    assert_eq!(after_power_loss(&broker), Offset(0), "a power loss now takes the whole log");
    broker.handle_timeout(Millis(36_000));
    assert_eq!(unflushed(&broker), 0, "31 s after: written back whole, the later records too");
    assert_eq!(after_power_loss(&broker), Offset(5));
}

// Shows a broker's graceful shutdown as Kafka's `BrokerServer.shutdown` and
// `BrokerLifecycleManager` run it (KIP-631 controlled shutdown, KIP-966's clean-shutdown
// marker): it heartbeats at once with WantShutDown, keeps asking at every heartbeat, and
// when the controller's ShouldShutDown comes it stops with every log flushed and the
// marker holding its broker epoch, so a power loss after it takes nothing and the next
// life registers as back from a clean shutdown.
#[test]
fn a_graceful_shutdown_asks_the_controller_then_stops_flushed_and_marked() {
    let mut disk = BrokerDisk::default();
    disk.logs.get_or_default(tp()).append_as_leader(LeaderEpoch(0), &[record(0), record(1), record(2)]);
    let (mut broker, _) = start_broker(1, BrokerConfig::default(), disk, partition(1, 0, &[1], &[1]));
    let want_shutdown = |actions: &[Action]| {
        sends_of_kind(actions, MessageKind::BrokerHeartbeat)
            .iter()
            .map(|(_, m)| matches!(m, Message::BrokerHeartbeat { want_shutdown: true, .. }))
            .collect::<Vec<bool>>()
    };
    broker.begin_controlled_shutdown(Millis(100));
    assert!(broker.is_shutting_down());
    assert_eq!(want_shutdown(&drain(&mut broker)), vec![true], "asks at once");
    // The controller's answer; a granted stop fences the broker.
    let answer = |should_shutdown: bool| Message::BrokerHeartbeatResponse {
        error: ErrorCode::None,
        fenced: should_shutdown,
        metadata: None,
        should_shutdown,
    };
    broker.handle_message(Millis(101), CONTROLLER, answer(false));
    broker.handle_timeout(Millis(2_100));
    let actions = drain(&mut broker);
    assert_eq!(want_shutdown(&actions), vec![true], "and asks again at the next heartbeat");
    assert!(!actions.contains(&Action::Stopped));
    assert_eq!(broker.disk().logs.get(&tp()).map(|log| log.unflushed_records()), Some(3));
    broker.handle_message(Millis(2_101), CONTROLLER, answer(true));
    let actions = drain(&mut broker);
    assert_eq!(actions.last(), Some(&Action::Stopped), "stopping is its last action");
    assert!(actions.contains(&Action::Event(ClusterEvent::BrokerStopped { broker: NodeId(1), granted: true })));
    assert_eq!(broker.poll_timeout(), None);
    let mut disk = broker.into_disk();
    assert_eq!(disk.clean_shutdown_epoch, Some(BrokerEpoch(1)));
    disk.lose_unflushed();
    assert_eq!(disk.logs.get(&tp()).map(|log| log.log_end_offset()), Some(Offset(3)), "a power loss takes nothing");
    assert_eq!(disk.clean_shutdown_epoch, Some(BrokerEpoch(1)), "and leaves the marker");
    let mut next = Broker::new(NodeId(1), CONTROLLER, BrokerConfig::default(), disk, 2, Millis(5_000));
    next.handle_timeout(Millis(5_000));
    let registration = sends_of_kind(&drain(&mut next), MessageKind::BrokerRegistration);
    assert!(matches!(
        registration.first(),
        Some((_, Message::BrokerRegistration { previous_broker_epoch: Some(BrokerEpoch(1)), .. }))
    ));
}

// Shows the timeout of a controlled shutdown (`BrokerServer.shutdown`'s deadline, 5
// minutes by default): a broker that never hears the controller's grant stops anyway at
// the deadline, still flushed and marked clean, and says it timed out.
#[test]
fn a_controlled_shutdown_the_controller_never_grants_stops_at_its_deadline() {
    let config = BrokerConfig { controlled_shutdown_timeout_ms: 30_000, ..BrokerConfig::default() };
    let (mut broker, _) = start_broker(1, config, BrokerDisk::default(), partition(1, 0, &[1], &[1]));
    broker.begin_controlled_shutdown(Millis(1_000));
    assert_eq!(broker.poll_timeout().map(|at| at <= Millis(31_000)), Some(true));
    broker.handle_timeout(Millis(30_999));
    assert!(!drain(&mut broker).contains(&Action::Stopped));
    broker.handle_timeout(Millis(31_000));
    let actions = drain(&mut broker);
    assert!(actions.contains(&Action::Event(ClusterEvent::BrokerStopped { broker: NodeId(1), granted: false })));
    assert_eq!(actions.last(), Some(&Action::Stopped));
    assert_eq!(broker.into_disk().clean_shutdown_epoch, Some(BrokerEpoch(1)));
}
