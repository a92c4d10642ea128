//! The transactional producer against a real (model) broker that leads every partition
//! and coordinates the transactional id, with messages moved by a small loop that can
//! drop chosen ones.

use super::*;
use crate::broker::Broker;
use crate::config::{BrokerConfig, TxnConfig};
use crate::log::{committed_records, BrokerDisk};
use crate::messages::{MetadataDelta, PartitionState, TopicMeta};
use crate::txn::TxnCoordinatorConfig;
use crate::types::{BrokerEpoch, LeaderEpoch, Offset, PartitionEpoch, TopicId};

const BROKER: NodeId = NodeId(0);
const CONTROLLER: NodeId = NodeId(10);
const DATA: TopicId = TopicId(0);
const STATE: TopicId = TopicId(1);
const ID: &str = "orders-tx";

fn tp(partition: u32) -> TopicPartition {
    TopicPartition { topic: DATA, partition }
}

fn broker() -> Broker {
    let coordinator = TxnCoordinatorConfig { partitions: 1, ..TxnCoordinatorConfig::default() };
    let txn = TxnConfig {
        state_topic: STATE,
        coordinator,
        append_timeout_ms: 5_000,
        marker_retry_ms: 100,
        partition_verification: false,
    };
    let config = BrokerConfig { txn: Some(txn), ..BrokerConfig::default() };
    let mut broker = Broker::new(BROKER, CONTROLLER, config, BrokerDisk::default(), 1, Millis(0));
    let state = |tp: TopicPartition| PartitionState {
        tp,
        replicas: vec![BROKER],
        isr: vec![BROKER],
        elr: Vec::new(),
        last_known_leader: None,
        leader: Some(BROKER),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
    };
    let metadata = MetadataDelta {
        version: 1,
        topics: vec![
            TopicMeta { id: DATA, name: "orders".into(), partitions: 2, min_insync_replicas: 1 },
            TopicMeta { id: STATE, name: "__transaction_state".into(), partitions: 1, min_insync_replicas: 1 },
        ],
        partitions: vec![state(tp(0)), state(tp(1)), state(TopicPartition { topic: STATE, partition: 0 })],
        ineligible_brokers: vec![],
        base: None,
    };
    let response = Message::BrokerRegistrationResponse {
        error: ErrorCode::None,
        broker_epoch: BrokerEpoch(1),
        metadata: Box::new(metadata),
    };
    broker.handle_message(Millis(0), CONTROLLER, response);
    while broker.poll_action().is_some() {}
    broker
}

/// Says which messages (by addressee) are lost.
type DropFilter = Box<dyn FnMut(NodeId, &Message) -> bool>;

/// A broker, producers, and the messages between them.
struct Net {
    now: u64,
    broker: Broker,
    producers: Vec<TxnProducer>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    ended: Vec<(usize, u64, TxnOutcome, ErrorCode)>,
    acks: Vec<(WriteId, WriteOutcome)>,
    /// Messages for which this says true are lost.
    drop: DropFilter,
}

impl Net {
    fn new(producers: usize) -> Net {
        let config = TxnProducerConfig { transactional_id: ID.into(), ..TxnProducerConfig::default() };
        let producers = (0..producers).map(|i| TxnProducer::new(NodeId(100 + i as u32), config.clone(), vec![BROKER]));
        let mut net = Net {
            now: 0,
            broker: broker(),
            producers: producers.collect(),
            queue: VecDeque::new(),
            ended: Vec::new(),
            acks: Vec::new(),
            drop: Box::new(|_, _| false),
        };
        for i in 0..net.producers.len() {
            net.producers[i].handle_timeout(Millis(0));
            net.collect_producer(i);
        }
        net
    }

    fn collect_producer(&mut self, i: usize) {
        let from = self.producers[i].id();
        while let Some(action) = self.producers[i].poll_action() {
            match action {
                Action::Send { to, msg } => self.queue.push_back((from, to, msg)),
                Action::Ack { write, outcome, .. } => self.acks.push((write, outcome)),
                Action::Txn(event) => {
                    if let TxnEvent::Ended { txn, outcome, error, .. } = *event {
                        self.ended.push((i, txn, outcome, error));
                    }
                }
                _ => {}
            }
        }
    }

    fn collect_broker(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            if let Action::Send { to, msg } = action {
                self.queue.push_back((BROKER, to, msg));
            }
        }
    }

    /// Moves messages and fires timers until `until` (ms).
    fn run(&mut self, until: u64) {
        for _ in 0..100_000 {
            if let Some((from, to, msg)) = self.queue.pop_front() {
                if (self.drop)(to, &msg) {
                    continue;
                }
                let now = Millis(self.now);
                if to == BROKER {
                    self.broker.handle_message(now, from, msg);
                    self.collect_broker();
                } else if let Some(i) = self.producers.iter().position(|p| p.id() == to) {
                    self.producers[i].handle_message(now, from, msg);
                    self.collect_producer(i);
                }
                continue;
            }
            let next = self.producers.iter().filter_map(|p| p.poll_timeout()).chain(self.broker.poll_timeout()).min();
            let Some(next) = next.filter(|n| n.0 <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next.0);
            let now = Millis(self.now);
            for i in 0..self.producers.len() {
                if self.producers[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.producers[i].handle_timeout(now);
                    self.collect_producer(i);
                }
            }
            if self.broker.poll_timeout().is_some_and(|t| t <= now) {
                self.broker.handle_timeout(now);
                self.collect_broker();
            }
        }
        panic!("the loop did not settle by {until} ms");
    }

    fn begin(&mut self, i: usize, txn: u64, writes: &[(u64, u32)], commit: bool) {
        let writes = writes.iter().map(|(w, p)| TxnWrite { write: WriteId(*w), tp: tp(*p), key: None }).collect();
        assert!(self.producers[i].begin(Millis(self.now), txn, writes, commit), "producer {i} not ready");
        self.collect_producer(i);
    }

    /// What a read_committed consumer gets from partition `p`.
    fn committed(&mut self, p: u32) -> Vec<u64> {
        let hw = self.broker.high_watermark(tp(p)).unwrap_or(Offset(0));
        let Some(log) = self.broker.log(tp(p)).cloned() else { return Vec::new() };
        let mut log = log;
        let lso = log.last_stable_offset(hw);
        let aborted = log.aborted_between(Offset(0), lso);
        let entries = &log.entries()[..lso.0 as usize];
        committed_records(entries, Offset(0), &aborted).map(|(_, r)| r.write.0).collect()
    }
}

// A transaction over two partitions commits: every write is acknowledged once EndTxn
// returns, and a read_committed reader sees all of them (KIP-98 consume–produce flow:
// FindCoordinator, InitProducerId, AddPartitionsToTxn, Produce, EndTxn).
#[test]
fn a_transaction_commits_across_partitions() {
    let mut net = Net::new(1);
    net.run(1_000);
    assert!(net.producers[0].ready(), "initialized");
    net.begin(0, 1, &[(1, 0), (2, 1), (3, 0)], true);
    net.run(2_000);
    assert_eq!(net.ended, vec![(0, 1, TxnOutcome::Committed, ErrorCode::None)]);
    assert_eq!(net.acks.len(), 3);
    assert!(net.acks.iter().all(|(_, o)| matches!(o, WriteOutcome::Ok { .. })));
    assert_eq!(net.committed(0), vec![1, 3]);
    assert_eq!(net.committed(1), vec![2]);
    // KIP-890 part 2: the commit bumped the epoch; the next transaction uses it.
    assert_eq!(net.producers[0].producer().map(|p| p.1), Some(1));
    net.begin(0, 2, &[(4, 1)], true);
    net.run(3_000);
    assert_eq!(net.committed(1), vec![2, 4]);
}

// An aborted transaction's writes fail definitely and stay invisible to read_committed,
// though they are in the log (KIP-98 abort markers, the aborted-transaction index).
#[test]
fn an_aborted_transaction_is_never_visible() {
    let mut net = Net::new(1);
    net.run(1_000);
    net.begin(0, 1, &[(1, 0), (2, 1)], false);
    net.run(2_000);
    assert_eq!(net.ended, vec![(0, 1, TxnOutcome::Aborted, ErrorCode::None)]);
    assert!(net.acks.iter().all(|(_, o)| matches!(o, WriteOutcome::Failed { definite: true, .. })));
    assert!(net.committed(0).is_empty() && net.committed(1).is_empty());
    assert_eq!(net.broker.log(tp(0)).map(|l| l.log_end_offset()), Some(Offset(2)), "data and marker are there");
}

// EndTxn's answer is lost: the client sends it again with the epoch it had, and with
// KIP-890 part 2 the coordinator recognises the retry and answers it with the bumped
// epoch instead of PRODUCER_FENCED; the transaction counts as committed once.
#[test]
fn a_lost_end_txn_answer_is_retried() {
    let mut net = Net::new(1);
    net.run(1_000);
    let mut lost = false;
    net.drop = Box::new(move |to, msg| {
        let end =
            matches!(msg, Message::TxnResponse { response, .. } if matches!(**response, TxnResponse::EndTxn { .. }));
        let drop = end && to != BROKER && !lost;
        lost |= drop;
        drop
    });
    net.begin(0, 1, &[(1, 0)], true);
    net.run(40_000);
    assert_eq!(net.ended, vec![(0, 1, TxnOutcome::Committed, ErrorCode::None)]);
    assert_eq!(net.committed(0), vec![1]);
    assert_eq!(net.producers[0].producer().map(|p| p.1), Some(1));
}

// A second producer with the same transactional.id fences the first (KIP-98 zombie
// fencing): its InitProducerId aborts the first one's open transaction, the first one's
// EndTxn(commit) is refused with PRODUCER_FENCED (an unknown outcome to it, since it
// asked to commit), and none of the zombie's writes become visible.
#[test]
fn a_new_instance_fences_the_zombie() {
    let mut net = Net::new(1);
    net.run(1_000);
    // The zombie's EndTxn never arrives while the new instance starts.
    let hold = std::rc::Rc::new(std::cell::Cell::new(true));
    let holding = hold.clone();
    net.drop = Box::new(move |to, msg| {
        to == BROKER
            && holding.get()
            && matches!(msg, Message::Txn { request, .. } if matches!(**request, TxnRequest::EndTxn { .. }))
    });
    net.begin(0, 1, &[(1, 0)], true);
    net.run(1_500);
    assert!(net.ended.is_empty());
    let config = TxnProducerConfig { transactional_id: ID.into(), ..TxnProducerConfig::default() };
    net.producers.push(TxnProducer::new(NodeId(200), config, vec![BROKER]));
    net.producers[1].handle_timeout(Millis(net.now));
    net.collect_producer(1);
    net.run(3_000);
    assert!(net.producers[1].ready(), "the new instance is initialized");
    hold.set(false);
    net.run(40_000);
    assert_eq!(net.ended, vec![(0, 1, TxnOutcome::Unknown, ErrorCode::ProducerFenced)]);
    assert!(net.committed(0).is_empty(), "nothing of the zombie is visible");
    assert!(net.broker.log(tp(0)).is_some_and(|l| l.entries().iter().any(|e| e.record.write == WriteId(1))));
}

// Kafka's begin rules: a transaction begins only on an initialized producer with none
// running, and never empty.
#[test]
fn begin_needs_a_ready_producer() {
    let mut net = Net::new(1);
    let writes = || vec![TxnWrite { write: WriteId(1), tp: tp(0), key: None }];
    assert!(!net.producers[0].begin(Millis(0), 1, writes(), true), "not initialized yet");
    net.run(1_000);
    assert!(!net.producers[0].begin(Millis(1_000), 1, Vec::new(), true), "empty");
    assert!(net.producers[0].begin(Millis(1_000), 1, writes(), true));
    assert!(!net.producers[0].begin(Millis(1_000), 2, writes(), true), "one at a time");
}

// A broker whose process died resets its connections: the Metadata request out to it is
// asked again after retry.backoff.ms rather than after request.timeout.ms (the Java
// NetworkClient fails in-flight requests on disconnect). Found as a 30 s stall per
// transaction after a broker kill in txn-read-committed.
#[test]
fn a_reset_connection_resends_metadata_at_once() {
    let config = TxnProducerConfig { transactional_id: ID.into(), ..TxnProducerConfig::default() };
    let mut p = TxnProducer::new(NodeId(100), config, vec![BROKER]);
    p.handle_timeout(Millis(0));
    let metadata = |p: &mut TxnProducer| {
        std::iter::from_fn(|| p.poll_action())
            .filter(|a| matches!(a, Action::Send { msg: Message::Metadata { .. }, .. }))
            .count()
    };
    assert_eq!(metadata(&mut p), 1);
    p.handle_message(Millis(5), BROKER, Message::ConnectionClosed);
    assert_eq!(metadata(&mut p), 0, "not before the backoff");
    p.handle_timeout(Millis(105));
    assert_eq!(metadata(&mut p), 1, "asked again after retry.backoff.ms");
}
