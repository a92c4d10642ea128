//! Unit tests of the broker side of transactions: the coordinator hosted on the
//! `__transaction_state` leader, markers written to the partition leaders, the last
//! stable offset and read_committed fetches (KIP-98, KIP-890).

use super::tests::{drain, sends_of_kind};
use super::*;
use crate::config::{Acks, TxnConfig};
use crate::log::Record;
use crate::messages::{
    ConsumerFetchPartition, ConsumerFetchPartitionResponse, MessageKind, MetadataDelta, PartitionState, ProduceBatch,
    ProducePartitionResponse, TopicMeta,
};
use crate::txn::{TxnCoordinatorConfig, TxnRequest, TxnResponse, TxnState};
use crate::types::{BatchKind, PartitionEpoch, ProducerId, Stamp, TopicId, WriteId};
use std::num::NonZeroU32;
use std::sync::Arc;

const CONTROLLER: NodeId = NodeId(10);
const CLIENT: NodeId = NodeId(100);
const ID: &str = "orders-tx";
const DATA: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const STATE: TopicPartition = TopicPartition { topic: TopicId(1), partition: 0 };

fn config() -> BrokerConfig {
    let coordinator = TxnCoordinatorConfig { partitions: 1, ..TxnCoordinatorConfig::default() };
    let txn = TxnConfig {
        state_topic: STATE.topic,
        coordinator,
        append_timeout_ms: 5_000,
        marker_retry_ms: 100,
        partition_verification: false,
    };
    BrokerConfig { txn: Some(txn), ..BrokerConfig::default() }
}

fn single_replica(tp: TopicPartition, leader: u32, leader_epoch: u32) -> PartitionState {
    PartitionState {
        tp,
        replicas: vec![NodeId(leader)],
        isr: vec![NodeId(leader)],
        elr: Vec::new(),
        last_known_leader: None,
        leader: Some(NodeId(leader)),
        leader_epoch: LeaderEpoch(leader_epoch),
        partition_epoch: PartitionEpoch(0),
    }
}

/// Broker `id` started on `disk`, registered, with the data partition led by
/// `data_leader` and the state partition by `state_leader` (one replica each).
fn start(id: u32, disk: BrokerDisk, data_leader: u32, state_leader: u32) -> Broker {
    start_with_actions(id, disk, data_leader, state_leader).0
}

/// [`start`], with the actions of the registration.
fn start_with_actions(id: u32, disk: BrokerDisk, data_leader: u32, state_leader: u32) -> (Broker, Vec<Action>) {
    start_configured(id, disk, data_leader, state_leader, config())
}

fn start_configured(
    id: u32,
    disk: BrokerDisk,
    data_leader: u32,
    state_leader: u32,
    config: BrokerConfig,
) -> (Broker, Vec<Action>) {
    let mut broker = Broker::new(NodeId(id), CONTROLLER, config, disk, 1, Millis(0));
    let topic = |id: TopicId, name: &str| TopicMeta { id, name: name.into(), partitions: 1, min_insync_replicas: 1 };
    let metadata = MetadataDelta {
        version: 1,
        topics: vec![topic(DATA.topic, "orders"), topic(STATE.topic, "__transaction_state")],
        partitions: vec![single_replica(DATA, data_leader, 0), single_replica(STATE, state_leader, 0)],
        ineligible_brokers: vec![],
        base: None,
    };
    let response = Message::BrokerRegistrationResponse {
        error: ErrorCode::None,
        broker_epoch: BrokerEpoch(1),
        metadata: Box::new(metadata),
    };
    broker.handle_message(Millis(0), CONTROLLER, response);
    let actions = drain(&mut broker);
    (broker, actions)
}

/// Sends `request` to the coordinator and returns its answer (and the other actions).
fn txn(broker: &mut Broker, now: u64, correlation: u64, request: TxnRequest) -> (TxnResponse, Vec<Action>) {
    broker.handle_message(Millis(now), CLIENT, Message::Txn { correlation, request: Box::new(request) });
    let actions = drain(broker);
    let response = sends_of_kind(&actions, MessageKind::TxnResponse)
        .into_iter()
        .find_map(|(_, msg)| match msg {
            Message::TxnResponse { correlation: c, response } if c == correlation => Some(*response),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer to {correlation} in {actions:?}"));
    (response, actions)
}

fn init(broker: &mut Broker, now: u64) -> (NonZeroU32, u16) {
    let request = TxnRequest::InitProducerId { transactional_id: ID.into(), timeout_ms: 60_000, expected: None };
    match txn(broker, now, now, request).0 {
        TxnResponse::InitProducerId { error: ErrorCode::None, producer: Some(p) } => p,
        other => panic!("InitProducerId failed: {other:?}"),
    }
}

fn add_partition(broker: &mut Broker, now: u64, producer: (NonZeroU32, u16)) -> ErrorCode {
    let request = TxnRequest::AddPartitions {
        transactional_id: ID.into(),
        producer_id: producer.0,
        epoch: producer.1,
        partitions: vec![DATA],
        verify_only: false,
    };
    txn(broker, now, now, request).0.error()
}

fn end(broker: &mut Broker, now: u64, producer: (NonZeroU32, u16), commit: bool) -> (TxnResponse, Vec<Action>) {
    let request =
        TxnRequest::EndTxn { transactional_id: ID.into(), producer_id: producer.0, epoch: producer.1, commit };
    txn(broker, now, now, request)
}

/// A transactional batch of `writes` from `producer`, sequences from `first`.
fn produce_txn(
    broker: &mut Broker,
    now: u64,
    producer: (NonZeroU32, u16),
    first: u32,
    writes: &[u64],
) -> ProducePartitionResponse {
    let records = writes.iter().enumerate().map(|(i, w)| Record {
        write: WriteId(*w),
        key: None,
        producer: ProducerId(CLIENT.0),
        sequence: first + i as u32,
        timestamp: Millis(now),
        stamp: Some(Stamp {
            pid: producer.0,
            epoch: producer.1,
            index: i as u16,
            sequence: first + i as u32,
            kind: BatchKind::Transactional,
        }),
    });
    let batches = vec![ProduceBatch { tp: DATA, records: Arc::new(records.collect()) }];
    broker.handle_message(
        Millis(now),
        CLIENT,
        Message::Produce { correlation: now, acks: Acks::All, timeout_ms: 30_000, batches, transactional_id: None },
    );
    let actions = drain(broker);
    sends_of_kind(&actions, MessageKind::ProduceResponse)
        .into_iter()
        .find_map(|(_, msg)| match msg {
            Message::ProduceResponse { mut partitions, .. } => partitions.pop(),
            _ => None,
        })
        .expect("a produce response")
}

fn fetch(broker: &mut Broker, now: u64, read_committed: bool) -> ConsumerFetchPartitionResponse {
    let partitions = vec![ConsumerFetchPartition { tp: DATA, fetch_offset: Offset(0) }];
    broker.handle_message(
        Millis(now),
        CLIENT,
        Message::ConsumerFetch { correlation: now, max_wait_ms: 0, read_committed, partitions },
    );
    let actions = drain(broker);
    sends_of_kind(&actions, MessageKind::ConsumerFetchResponse)
        .into_iter()
        .find_map(|(_, msg)| match msg {
            Message::ConsumerFetchResponse { mut partitions, .. } => partitions.pop(),
            _ => None,
        })
        .expect("a fetch response")
}

/// The write ids a read_committed consumer gets from the data partition.
fn committed_writes(broker: &mut Broker, now: u64) -> Vec<u64> {
    let response = fetch(broker, now, true);
    crate::log::committed_records(&response.records, Offset(0), &response.aborted).map(|(_, r)| r.write.0).collect()
}

// A transaction on one broker that coordinates it and leads its partition: read_committed
// sees nothing until EndTxn's marker is below the high watermark, read_uncommitted sees
// the data at once, and an aborted transaction is never delivered to read_committed
// (KIP-98: LSO, control records, aborted-transaction index; KIP-890 part 2 epoch bump).
#[test]
fn commit_and_abort_through_the_broker() {
    let mut broker = start(0, BrokerDisk::default(), 0, 0);
    let producer = init(&mut broker, 1);
    assert_eq!(producer.1, 0);
    assert_eq!(add_partition(&mut broker, 2, producer), ErrorCode::None);
    assert_eq!(produce_txn(&mut broker, 3, producer, 0, &[1, 2]).error, ErrorCode::None);
    let uncommitted = fetch(&mut broker, 4, false);
    assert_eq!(uncommitted.records.len(), 2);
    let committed = fetch(&mut broker, 4, true);
    assert_eq!((committed.records.len(), committed.last_stable_offset), (0, Offset(0)));
    let (response, _) = end(&mut broker, 5, producer, true);
    let bumped = (producer.0, producer.1 + 1);
    assert_eq!(response, TxnResponse::EndTxn { error: ErrorCode::None, producer: Some(bumped) });
    // The marker is local, so it is written and the Complete record follows at once.
    assert_eq!(broker.txn_state(ID).map(|s| s.state), Some(TxnState::CompleteCommit));
    assert_eq!(committed_writes(&mut broker, 6), vec![1, 2]);
    let marker = broker.log(DATA).and_then(|log| log.entry(Offset(2))).map(|e| e.record);
    assert!(marker.is_some_and(|r| r.is_control()), "offset 2 holds the commit marker: {marker:?}");
    // The next transaction, with the bumped epoch, aborts.
    assert_eq!(add_partition(&mut broker, 7, bumped), ErrorCode::None);
    assert_eq!(produce_txn(&mut broker, 8, bumped, 0, &[3]).error, ErrorCode::None);
    let (response, _) = end(&mut broker, 9, bumped, false);
    assert_eq!(response.error(), ErrorCode::None);
    let fetched = fetch(&mut broker, 10, true);
    assert_eq!(fetched.aborted.len(), 1, "the abort is in the index");
    assert_eq!(committed_writes(&mut broker, 10), vec![1, 2]);
    // read_uncommitted still returns the aborted record (only markers are skipped).
    assert_eq!(fetch(&mut broker, 10, false).records.len(), 5);
}

// A new instance with the same transactional id fences the old one: its InitProducerId
// aborts the open transaction with a bumped epoch (CONCURRENT_TRANSACTIONS until done),
// after which the old instance's writes are refused at the partition with
// INVALID_PRODUCER_EPOCH and nothing it wrote is delivered to read_committed (KIP-98
// zombie fencing).
#[test]
fn a_new_instance_fences_the_old_at_the_partition() {
    let mut broker = start(0, BrokerDisk::default(), 0, 0);
    let old = init(&mut broker, 1);
    assert_eq!(add_partition(&mut broker, 2, old), ErrorCode::None);
    assert_eq!(produce_txn(&mut broker, 3, old, 0, &[1]).error, ErrorCode::None);
    let request = TxnRequest::InitProducerId { transactional_id: ID.into(), timeout_ms: 60_000, expected: None };
    let (response, _) = txn(&mut broker, 4, 4, request);
    assert_eq!(response.error(), ErrorCode::ConcurrentTransactions);
    assert_eq!(broker.txn_state(ID).map(|s| s.state), Some(TxnState::CompleteAbort));
    let new = init(&mut broker, 5);
    assert_eq!(new, (old.0, old.1 + 2));
    assert_eq!(produce_txn(&mut broker, 6, old, 1, &[2]).error, ErrorCode::InvalidProducerEpoch);
    assert_eq!(add_partition(&mut broker, 7, old), ErrorCode::ProducerFenced);
    assert!(committed_writes(&mut broker, 8).is_empty());
}

// The coordinator fails over between PrepareCommit and the markers: the broker that
// loads the state partition next finds the transaction prepared, sends the markers again
// to the partition's leader over the network, and completes it (KIP-98;
// TransactionStateManager load and TransactionMarkerChannelManager's resend).
#[test]
fn a_restarted_coordinator_finishes_a_prepared_commit() {
    let mut coordinator = start(0, BrokerDisk::default(), 1, 0);
    let mut leader = start(1, BrokerDisk::default(), 1, 0);
    let producer = init(&mut coordinator, 1);
    assert_eq!(add_partition(&mut coordinator, 2, producer), ErrorCode::None);
    assert_eq!(produce_txn(&mut leader, 3, producer, 0, &[1]).error, ErrorCode::None);
    let (response, actions) = end(&mut coordinator, 4, producer, true);
    assert_eq!(response.error(), ErrorCode::None);
    let markers = sends_of_kind(&actions, MessageKind::WriteTxnMarkers);
    assert_eq!(markers.len(), 1, "one request to the data partition's leader");
    assert_eq!(markers[0].0, NodeId(1));
    assert_eq!(coordinator.txn_state(ID).map(|s| s.state), Some(TxnState::PrepareCommit));
    // The coordinator dies before the markers leave; a new process starts on its disk.
    let disk = coordinator.into_disk();
    let (mut coordinator, actions) = start_with_actions(0, disk, 1, 0);
    assert_eq!(coordinator.txn_state(ID).map(|s| s.state), Some(TxnState::PrepareCommit));
    let resent = sends_of_kind(&actions, MessageKind::WriteTxnMarkers);
    assert_eq!(resent.len(), 1, "the markers go out again on the load");
    assert!(committed_writes(&mut leader, 6).is_empty(), "not committed before the marker");
    leader.handle_message(Millis(6), NodeId(0), resent[0].1.clone());
    let answers = sends_of_kind(&drain(&mut leader), MessageKind::WriteTxnMarkersResponse);
    assert_eq!(answers.len(), 1);
    assert_eq!(committed_writes(&mut leader, 7), vec![1]);
    coordinator.handle_message(Millis(7), NodeId(1), answers[0].1.clone());
    drain(&mut coordinator);
    assert_eq!(coordinator.txn_state(ID).map(|s| s.state), Some(TxnState::CompleteCommit));
}

// A marker older than the producer's epoch at the partition is refused with
// INVALID_PRODUCER_EPOCH (ProducerAppendInfo.checkProducerEpoch), and the coordinator
// then stops sending it, as Kafka's TransactionMarkerRequestCompletionHandler does.
#[test]
fn a_stale_marker_is_refused_and_given_up() {
    let mut leader = start(1, BrokerDisk::default(), 1, 0);
    let pid = NonZeroU32::new(5).expect("non-zero");
    assert_eq!(produce_txn(&mut leader, 1, (pid, 3), 0, &[1]).error, ErrorCode::None);
    let stale = Message::WriteTxnMarkers {
        correlation: 9,
        producer_id: pid,
        epoch: 2,
        commit: true,
        partitions: vec![DATA],
        transaction_version: 2,
    };
    leader.handle_message(Millis(2), NodeId(0), stale);
    let answers = sends_of_kind(&drain(&mut leader), MessageKind::WriteTxnMarkersResponse);
    match &answers[..] {
        [(_, Message::WriteTxnMarkersResponse { partitions, .. })] => {
            assert_eq!(partitions, &vec![(DATA, ErrorCode::InvalidProducerEpoch)])
        }
        other => panic!("expected one answer, got {other:?}"),
    }
    assert_eq!(leader.log(DATA).map(|l| l.log_end_offset()), Some(Offset(1)), "no marker appended");
}

// A WriteTxnMarkers request that gets no answer is sent again once it times out, so a
// lost message delays a transaction's end but never strands it (Kafka's marker channel
// retries until the markers are written or the coordinator moves).
#[test]
fn a_lost_marker_request_is_sent_again() {
    let mut coordinator = start(0, BrokerDisk::default(), 1, 0);
    let producer = init(&mut coordinator, 1);
    assert_eq!(add_partition(&mut coordinator, 2, producer), ErrorCode::None);
    let (_, actions) = end(&mut coordinator, 4, producer, false);
    assert_eq!(sends_of_kind(&actions, MessageKind::WriteTxnMarkers).len(), 1);
    // The request is lost; nothing goes out while it may still be answered.
    coordinator.handle_timeout(Millis(104));
    assert!(sends_of_kind(&drain(&mut coordinator), MessageKind::WriteTxnMarkers).is_empty());
    coordinator.handle_timeout(Millis(4 + 5_000));
    let resent = sends_of_kind(&drain(&mut coordinator), MessageKind::WriteTxnMarkers);
    assert_eq!(resent.len(), 1, "sent again after the request timeout");
    assert_eq!(coordinator.txn_state(ID).map(|s| s.state), Some(TxnState::PrepareAbort));
}

/// The broker config with partition verification on (KIP-890 part 1).
fn verifying() -> BrokerConfig {
    let mut config = config();
    if let Some(txn) = config.txn.as_mut() {
        txn.partition_verification = true;
    }
    config
}

/// `producer`'s transactional record of `write`, the first of its batch (sequence 0).
fn txn_record(producer: (NonZeroU32, u16), write: u64, now: u64) -> Record {
    let stamp = Stamp { pid: producer.0, epoch: producer.1, index: 0, sequence: 0, kind: BatchKind::Transactional };
    Record {
        write: WriteId(write),
        key: None,
        producer: ProducerId(CLIENT.0),
        sequence: 0,
        timestamp: Millis(now),
        stamp: Some(stamp),
    }
}

/// A transactional batch of `write` sent as the client sends it (with its transactional
/// id), the broker's requests to itself carried back to it; the produce answer.
fn produce_verified(broker: &mut Broker, now: u64, producer: (NonZeroU32, u16), write: u64) -> ErrorCode {
    let batches = vec![ProduceBatch { tp: DATA, records: Arc::new(vec![txn_record(producer, write, now)].into()) }];
    let transactional_id = Some(Arc::from(ID));
    let msg = Message::Produce { correlation: now, acks: Acks::All, timeout_ms: 30_000, batches, transactional_id };
    broker.handle_message(Millis(now), CLIENT, msg);
    let me = broker.id;
    let mut answers = Vec::new();
    for _ in 0..10 {
        let actions = drain(broker);
        if actions.is_empty() {
            break;
        }
        for action in actions {
            match action {
                Action::Send { to, msg } if to == me => broker.handle_message(Millis(now), me, msg),
                Action::Send { msg: Message::ProduceResponse { partitions, .. }, .. } => answers.extend(partitions),
                _ => {}
            }
        }
    }
    answers.first().map_or(ErrorCode::RequestTimedOut, |p| p.error)
}

// Shows KIP-890 part 1 (transaction.partition.verification.enable): the leader asks the
// coordinator before it takes a producer's first transactional batch in a partition; a
// partition the producer never added to its ongoing transaction (a late produce of an
// ended one) is refused with INVALID_TXN_STATE and nothing is appended, and once
// AddPartitionsToTxn added it the batch goes in. With verification off it goes in anyway.
#[test]
fn partition_verification_refuses_a_partition_outside_the_transaction() {
    let mut broker = start_configured(0, BrokerDisk::default(), 0, 0, verifying()).0;
    let producer = init(&mut broker, 1);
    assert_eq!(produce_verified(&mut broker, 2, producer, 7), ErrorCode::InvalidTxnState);
    assert_eq!(broker.log(DATA).map_or(0, |l| l.log_end_offset().0), 0, "nothing appended");
    assert_eq!(add_partition(&mut broker, 3, producer), ErrorCode::None);
    assert_eq!(produce_verified(&mut broker, 4, producer, 8), ErrorCode::None);
    assert_eq!(broker.log(DATA).map_or(0, |l| l.log_end_offset().0), 1);

    let mut plain = start(0, BrokerDisk::default(), 0, 0);
    let producer = init(&mut plain, 1);
    assert_eq!(produce_verified(&mut plain, 2, producer, 7), ErrorCode::None, "no verification: taken");
}

// Shows KIP-890 part 1's verification guard: a marker of the producer written to the
// partition while its verification was on the way ends the transaction the coordinator
// then vouches for, so the held batch is refused (INVALID_TXN_STATE) instead of opening
// a transaction no coordinator knows (Kafka's VerificationGuard). The coordinator is
// another broker here (node 1); its answer is written by hand.
#[test]
fn a_marker_during_verification_voids_it() {
    let mut broker = start_configured(0, BrokerDisk::default(), 0, 1, verifying()).0;
    let producer = (NonZeroU32::new(77).expect("non-zero"), 0);
    let batches = vec![ProduceBatch { tp: DATA, records: Arc::new(vec![txn_record(producer, 7, 3)].into()) }];
    let transactional_id = Some(Arc::from(ID));
    let msg = Message::Produce { correlation: 3, acks: Acks::All, timeout_ms: 30_000, batches, transactional_id };
    broker.handle_message(Millis(3), CLIENT, msg);
    let asked = sends_of_kind(&drain(&mut broker), MessageKind::Txn);
    let correlation = match asked.as_slice() {
        [(to, Message::Txn { correlation, request })] if *to == NodeId(1) => {
            assert!(matches!(**request, TxnRequest::AddPartitions { verify_only: true, .. }), "{request:?}");
            *correlation
        }
        other => panic!("the leader must ask the coordinator first: {other:?}"),
    };
    let markers = Message::WriteTxnMarkers {
        correlation: 99,
        producer_id: producer.0,
        epoch: 0,
        commit: false,
        partitions: vec![DATA],
        transaction_version: 2,
    };
    broker.handle_message(Millis(4), NodeId(1), markers);
    drain(&mut broker);
    let vouched = TxnResponse::AddPartitions { error: ErrorCode::None };
    broker.handle_message(Millis(5), NodeId(1), Message::TxnResponse { correlation, response: Box::new(vouched) });
    let answers = sends_of_kind(&drain(&mut broker), MessageKind::ProduceResponse);
    let error = answers.iter().find_map(|(_, m)| match m {
        Message::ProduceResponse { partitions, .. } => Some(partitions[0].error),
        _ => None,
    });
    assert_eq!(error, Some(ErrorCode::InvalidTxnState));
    assert_eq!(broker.log(DATA).map_or(0, |l| l.log_end_offset().0), 1, "only the marker is in the log");
}
