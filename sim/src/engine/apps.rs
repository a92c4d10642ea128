//! Application nodes of the madsim host: a process running the user's async code with
//! a model [`Producer`] as its client. Its writes are history operations like the
//! workload's; killing it kills the client, and what it had not heard back about ends
//! as indefinite (Jepsen's `info`), since nobody is left to learn the outcome.
//!
//! An application may also have a consumer in one of the scenario's groups: a model
//! [`trial_model::Consumer`] in `CommitMode::Manual`, a consumer node of its own that
//! shares the application's fate (a fault on the application hits both). Its code
//! subscribes, polls, commits and seeks through the calls here, and writes what it
//! processed to named sinks: a sink's state lives outside every process (a database), and
//! each write is a `Processed` event of the application's group, so the group checkers
//! judge the application's own delivery semantics.
//!
//! A transactional application's client is a model [`TxnProducer`] instead: each of its
//! transactions is a [`TxnOp`] in the history like the workload's, and when it commits
//! its consumer's offsets, those count as processed by that consumer.

use super::{Actor, Engine, Life, Node, APP_BASE};
use crate::history::{Completion, Source, TxnEnd, TxnOp};
use rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use trial_model::consumer::Polled;
use trial_model::partitioner::partition_for_key_number;
use trial_model::txn::producer::TXN_WRITES_MAX;
use trial_model::txn::{TxnOffsets, TxnOutcome, TxnProducer, TxnProducerConfig, TxnWrite};
use trial_model::{
    CommitMode, ErrorCode, Millis, NodeId, Offset, Producer, ProducerConfig, TopicId, TopicPartition, WriteId,
    WriteOutcome,
};

/// History producer index of transactional application 0's writes (after the
/// pipelines').
pub const APP_TXN_HISTORY_BASE: u32 = 3_000_000;
/// Bound on transaction ends waiting for the host to take them.
const TXN_ENDS_MAX: usize = 10_000;

/// Why a transactional application's transaction did not begin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRefused {
    /// The process is down or paused.
    Unavailable,
    /// The producer is still getting its id and epoch, or a transaction runs: try later.
    NotReady,
    /// No records, too many, an application without a transactional producer, or
    /// offsets without a consumer.
    Invalid(String),
}

/// A record of an application's transaction: its topic, its key, and (for the
/// end-to-end checker) the input record it copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    pub topic: TopicId,
    pub key: Option<u32>,
    pub source: Option<Source>,
}

/// Bound on commit answers waiting for the host to take them.
const COMMIT_ANSWERS_MAX: usize = 10_000;
/// Bound on the (topic, partition, offset) keys one sink remembers.
const SINK_KEYS_MAX: usize = 1_000_000;

#[derive(Default)]
pub(super) struct Apps {
    pub(super) slots: Vec<AppSlot>,
    /// Outcomes of application writes not yet handed to the application.
    pub(super) acks: Vec<(WriteId, Option<TopicPartition>, WriteOutcome)>,
    /// Answers to application commits: (application, correlation id, error).
    pub(super) commits: Vec<(usize, u64, ErrorCode)>,
    /// Ends of transactional applications' transactions: (application, transaction,
    /// outcome, error).
    pub(super) txn_ends: Vec<(usize, u64, TxnOutcome, ErrorCode)>,
    /// The consumer offsets each running application transaction commits.
    txn_offsets: BTreeMap<u64, (usize, Vec<(TopicPartition, Offset)>)>,
    /// Each named sink's written keys (it outlives every process).
    sinks: BTreeMap<String, BTreeSet<(TopicPartition, Offset)>>,
}

pub(super) struct AppSlot {
    pub(super) node: usize,
    pub(super) name: String,
    pub(super) config: ProducerConfig,
    /// Its consumer's index among the engine's consumers, if it has one.
    pub(super) consumer: Option<u32>,
    /// A transactional application's producer settings (`transactional.id` = `app-<name>`).
    pub(super) txn: Option<TxnProducerConfig>,
}

impl Apps {
    pub(super) fn hosts(&self, node: usize) -> bool {
        self.slot_of(node).is_some()
    }

    /// The application whose consumer is consumer `consumer`.
    pub(super) fn of_consumer(&self, consumer: u32) -> Option<usize> {
        self.slots.iter().position(|slot| slot.consumer == Some(consumer))
    }

    /// The application on `node`, if any.
    pub(super) fn slot_of(&self, node: usize) -> Option<usize> {
        self.slots.iter().position(|slot| slot.node == node)
    }

    /// A new process's client on application node `node`, its `incarnation`th: the
    /// producer, or for a transactional application a new instance of its transactional
    /// producer (same transactional id: it fences the old one).
    pub(super) fn new_client(&self, node: usize, id: NodeId, brokers: usize, incarnation: u64) -> Actor {
        let bootstrap: Vec<NodeId> = (0..brokers as u32).map(NodeId).collect();
        let slot = self.slots.iter().find(|slot| slot.node == node);
        match slot.and_then(|slot| slot.txn.clone()) {
            Some(config) => Actor::TxnProducer(Box::new(
                TxnProducer::new(id, config, bootstrap).with_send_order_base(super::txns::send_order_base(incarnation)),
            )),
            None => Actor::Producer(Box::new(Producer::new(
                id,
                slot.map(|s| s.config.clone()).unwrap_or_default(),
                bootstrap,
            ))),
        }
    }
}

impl Engine<'_> {
    /// Adds an application node whose client is a producer with `config`; returns its
    /// index among applications. Only before the run starts.
    pub fn add_app(&mut self, name: &str, config: ProducerConfig) -> usize {
        let index = self.apps.slots.len();
        let id = NodeId(APP_BASE + index as u32);
        let producer = Producer::new(id, config.clone(), (0..self.brokers as u32).map(NodeId).collect());
        self.nodes.push(Node::new(id, Actor::Producer(Box::new(producer))));
        let node = self.nodes.len() - 1;
        self.apps.slots.push(AppSlot { node, name: name.to_string(), config, consumer: None, txn: None });
        self.grow_links();
        self.reschedule(node);
        index
    }

    /// Adds a transactional application: its client is a transactional producer with
    /// the scenario's `[transactions]` settings and `transactional.id` `app-<name>`;
    /// returns its index among applications. Only before the run starts.
    pub fn add_txn_app(&mut self, name: &str) -> Result<usize, String> {
        let Some(spec) = self.scenario.transactions.as_ref() else {
            return Err(format!(
                "transactional app `{name}` needs the scenario's [transactions] section (the coordinators' settings)"
            ));
        };
        let index = self.apps.slots.len();
        let id = NodeId(APP_BASE + index as u32);
        let config = TxnProducerConfig { transactional_id: format!("app-{name}"), ..spec.config.clone() };
        let node = self.nodes.len();
        let slot = AppSlot {
            node,
            name: name.to_string(),
            config: ProducerConfig::default(),
            consumer: None,
            txn: Some(config),
        };
        self.apps.slots.push(slot);
        let client = self.apps.new_client(node, id, self.brokers, 1);
        self.nodes.push(Node::new(id, client));
        self.grow_links();
        self.reschedule(node);
        Ok(index)
    }

    /// One transaction of transactional application `app` (`beginTransaction`, a `send`
    /// per record, with `offsets` `sendOffsetsToTransaction` of its consumer's positions
    /// with the consumer's group metadata (KIP-447), then `commitTransaction` or, without
    /// `commit`, `abortTransaction`). A keyed record goes to its key's partition (the
    /// default partitioner), a record without a key to a random one. The end comes in
    /// [`Engine::take_app_txn_ends`] under the returned transaction id.
    pub fn app_transaction(
        &mut self,
        app: usize,
        records: &[TxnRecord],
        offsets: Option<Vec<(TopicPartition, Offset)>>,
        commit: bool,
    ) -> Result<u64, TxnRefused> {
        let Some(slot) = self.apps.slots.get(app) else {
            return Err(TxnRefused::Invalid(format!("no application {app}")));
        };
        let Some(client) = slot.txn.as_ref().map(|config| config.transactional_id.clone()) else {
            return Err(TxnRefused::Invalid("this application has no transactional producer".into()));
        };
        if records.is_empty() || records.len() > TXN_WRITES_MAX {
            return Err(TxnRefused::Invalid(format!("a transaction takes 1 to {TXN_WRITES_MAX} records")));
        }
        let node = slot.node;
        if self.nodes[node].paused {
            return Err(TxnRefused::Unavailable);
        }
        match &self.nodes[node].life {
            Life::Up(Actor::TxnProducer(p)) if p.ready() => {}
            Life::Up(Actor::TxnProducer(_)) => return Err(TxnRefused::NotReady),
            _ => return Err(TxnRefused::Unavailable),
        }
        let committed = offsets.clone();
        let offsets = match offsets {
            None => None,
            Some(offsets) => {
                let Some(consumer) = slot.consumer else {
                    return Err(TxnRefused::Invalid("offsets in a transaction need the application's consumer".into()));
                };
                let consumer_node = self.consumers.slots[consumer as usize].node;
                let Life::Up(Actor::Consumer(c)) = &self.nodes[consumer_node].life else {
                    return Err(TxnRefused::Unavailable);
                };
                Some(TxnOffsets {
                    group: c.group().to_string(),
                    member_id: c.member_id().to_string(),
                    group_instance_id: self.consumers.instance_id(consumer),
                    generation: c.generation(),
                    offsets,
                })
            }
        };
        let txn = self.history.txns.len() as u64;
        let producer = APP_TXN_HISTORY_BASE + app as u32;
        let mut writes = Vec::with_capacity(records.len());
        for record in records {
            let partitions = self.scenario.topics.get(record.topic.0 as usize).map_or(1, |t| t.partitions).max(1);
            let partition = match record.key {
                Some(key) => partition_for_key_number(key, partitions),
                None => (self.workload_rng.next_u64() % partitions as u64) as u32,
            };
            let write = self.invoke(producer, record.topic, record.key);
            writes.push(TxnWrite { write, tp: TopicPartition { topic: record.topic, partition }, key: record.key });
        }
        // The end-to-end checker pairs each write with the input it copies.
        let sources: Vec<Source> = records.iter().map(|r| r.source).collect::<Option<_>>().unwrap_or_default();
        self.history.txns.push(TxnOp {
            client,
            writes: writes.iter().map(|w| w.write).collect(),
            commit,
            begun_at: self.now,
            ended: None,
            sources,
        });
        let now = self.local_now(node);
        let begun = match &mut self.nodes[node].life {
            Life::Up(Actor::TxnProducer(p)) => p.begin_with_offsets(now, txn, writes, commit, offsets),
            _ => false,
        };
        if let (true, Some(offsets)) = (begun, committed) {
            self.apps.txn_offsets.insert(txn, (app, offsets));
        }
        if !begun {
            // Checked above; should it happen, nothing of it was sent.
            let end = TxnEnd { at: self.now, outcome: TxnOutcome::Aborted, error: ErrorCode::None };
            self.history.txns[txn as usize].ended = Some(end);
            let failed = WriteOutcome::Failed { error: ErrorCode::None, definite: true };
            for write in self.history.txns[txn as usize].writes.clone() {
                self.history.ops[write.0 as usize].completed =
                    Some(Completion { at: self.now, tp: None, outcome: failed });
            }
            self.push_txn_end(app, txn, TxnOutcome::Aborted, ErrorCode::None);
        }
        self.hash.add(0xab00_0000 ^ txn);
        self.after_input(node);
        Ok(txn)
    }

    /// Transaction ends of transactional applications since the last call. A committed
    /// one's offsets count as processed by the application's consumer (what the run's
    /// convergence waits for).
    pub fn take_app_txn_ends(&mut self) -> Vec<(usize, u64, TxnOutcome, ErrorCode)> {
        let ends = std::mem::take(&mut self.apps.txn_ends);
        for (app, txn, outcome, _) in &ends {
            let Some((_, offsets)) = self.apps.txn_offsets.remove(txn) else { continue };
            if *outcome == TxnOutcome::Committed {
                self.with_app_consumer(*app, 0xa8_0000_0000 ^ txn, |c, _| c.app_committed_in_txn(&offsets));
            }
        }
        ends
    }

    pub(super) fn push_txn_end(&mut self, app: usize, txn: u64, outcome: TxnOutcome, error: ErrorCode) {
        if self.apps.txn_ends.len() < TXN_ENDS_MAX {
            self.apps.txn_ends.push((app, txn, outcome, error));
        }
    }

    /// `seek(tp, committed(tp))` for every partition application `app`'s consumer owns:
    /// what an exactly-once application does after a transaction that did not commit.
    pub fn app_seek_to_committed(&mut self, app: usize) -> Option<()> {
        self.with_app_consumer(app, 0xa7_0000_0000, |c, now| c.app_refresh_positions(now))
    }

    /// Gives application `app` a consumer in the scenario's group `group`, with the
    /// group's settings and the application in charge (`CommitMode::Manual`). Only before
    /// the run starts.
    pub fn add_app_consumer(&mut self, app: usize, group: &str) -> Result<(), String> {
        let Some(spec) = self.scenario.groups.iter().position(|g| g.name == group) else {
            let names: Vec<&str> = self.scenario.groups.iter().map(|g| g.name.as_str()).collect();
            return Err(format!("the scenario has no group `{group}` (its groups: {})", names.join(", ")));
        };
        if self.apps.slots.get(app).is_none_or(|slot| slot.consumer.is_some()) {
            return Err(format!("application {app} does not exist or has a consumer already"));
        }
        let mut config = self.scenario.groups[spec].config.clone();
        config.commit = CommitMode::Manual;
        if self.scenario.groups[spec].static_membership {
            config.member.group_instance_id = Some(format!("{group}-app-{}", self.apps.slots[app].name));
        }
        let consumer = self.consumers.add(spec, config, &mut self.nodes);
        self.apps.slots[app].consumer = Some(consumer);
        self.grow_links();
        let node = self.nodes.len() - 1;
        self.reschedule(node);
        Ok(())
    }

    /// Links are indexed by node pairs: nothing is blocked or in flight before the run.
    fn grow_links(&mut self) {
        let count = self.nodes.len();
        self.blocked = vec![false; count * count];
        self.link_last = vec![Millis::ZERO; count * count];
        self.connected = vec![false; count * count];
        self.connect_failing_until = vec![Millis::ZERO; count * count];
        self.link_epoch = vec![0; count * count];
    }

    /// The node of application `app`'s consumer, if it has one.
    pub fn app_consumer_node(&self, app: usize) -> Option<usize> {
        let consumer = self.apps.slots.get(app)?.consumer?;
        Some(self.consumers.slots[consumer as usize].node)
    }

    /// Runs `call` on application `app`'s consumer if its process is up and running, then
    /// carries out what the consumer did.
    fn with_app_consumer<T>(
        &mut self,
        app: usize,
        mark: u64,
        call: impl FnOnce(&mut trial_model::Consumer, Millis) -> T,
    ) -> Option<T> {
        let node = self.app_consumer_node(app)?;
        if self.nodes[node].paused {
            return None;
        }
        let now = self.local_now(node);
        let Life::Up(Actor::Consumer(consumer)) = &mut self.nodes[node].life else { return None };
        let result = call(consumer, now);
        self.hash.add(mark ^ app as u64);
        self.after_input(node);
        Some(result)
    }

    /// `subscribe(topics)` of application `app`'s consumer.
    pub fn app_subscribe(&mut self, app: usize, topics: Vec<(String, TopicId)>) -> Option<()> {
        self.with_app_consumer(app, 0xa1_0000_0000, |c, now| c.app_subscribe(now, topics))
    }

    /// `poll()` of application `app`'s consumer.
    pub fn app_poll(&mut self, app: usize) -> Option<Polled> {
        self.with_app_consumer(app, 0xa2_0000_0000, |c, now| c.app_poll(now))
    }

    /// The rebalance callbacks of application `app`'s last poll have returned.
    pub fn app_listener_done(&mut self, app: usize) -> Option<()> {
        self.with_app_consumer(app, 0xa6_0000_0000, |c, _| c.app_listener_done())
    }

    /// A commit of application `app`'s consumer (`None`: every owned position); the
    /// answer comes in [`Engine::take_app_commits`] under the returned id.
    pub fn app_commit(&mut self, app: usize, offsets: Option<Vec<(TopicPartition, Offset)>>) -> Option<u64> {
        self.with_app_consumer(app, 0xa3_0000_0000, |c, now| c.app_commit(now, offsets))
    }

    /// `seek(tp, offset)`: Some(false) when the consumer does not own `tp`.
    pub fn app_seek(&mut self, app: usize, tp: TopicPartition, offset: Offset) -> Option<bool> {
        self.with_app_consumer(app, 0xa4_0000_0000, |c, now| c.app_seek(now, tp, offset))
    }

    /// Answers to application commits since the last call: (application, id, error).
    pub fn take_app_commits(&mut self) -> Vec<(usize, u64, ErrorCode)> {
        std::mem::take(&mut self.apps.commits)
    }

    pub(super) fn answer_app_commit(&mut self, consumer: u32, correlation: u64, error: ErrorCode) {
        if let Some(app) = self.apps.of_consumer(consumer) {
            if self.apps.commits.len() < COMMIT_ANSWERS_MAX {
                self.apps.commits.push((app, correlation, error));
            }
        }
    }

    /// Application `app` writes the record at `tp`/`offset` (carrying `write`) to sink
    /// `sink`. With `once`, a write whose (topic, partition, offset) the sink holds
    /// already is skipped (an idempotent, keyed sink). Returns whether it was written;
    /// None when the application has no consumer or its process is down or paused.
    pub fn app_sink(
        &mut self,
        app: usize,
        sink: &str,
        tp: TopicPartition,
        offset: Offset,
        write: WriteId,
        once: bool,
    ) -> Option<bool> {
        let node = self.app_consumer_node(app)?;
        if self.nodes[node].paused || !matches!(self.nodes[node].life, Life::Up(Actor::Consumer(_))) {
            return None;
        }
        let keys = self.apps.sinks.entry(sink.to_string()).or_default();
        if once && keys.contains(&(tp, offset)) {
            return Some(false);
        }
        if keys.len() < SINK_KEYS_MAX {
            keys.insert((tp, offset));
        }
        self.with_app_consumer(app, 0xa5_0000_0000 ^ write.0, |c, _| c.app_processed(tp, offset, write))?;
        Some(true)
    }

    pub fn app_node(&self, app: usize) -> usize {
        self.apps.slots[app].node
    }

    pub fn app_name(&self, app: usize) -> &str {
        &self.apps.slots[app].name
    }

    pub fn app_count(&self) -> usize {
        self.apps.slots.len()
    }

    /// Whether node `node` is an application's.
    pub fn is_app(&self, node: usize) -> bool {
        self.apps.hosts(node)
    }

    /// The history's producer index of application `app` (after the workload's).
    fn app_producer(&self, app: usize) -> u32 {
        (self.producers.len() + app) as u32
    }

    /// Application `app` sends one record: a new write, or `again` a write it sent before
    /// (the application's own retry: the same record, so a second copy in the log is a
    /// duplicate). None when the application's process is down or the topic unknown.
    pub fn app_send(
        &mut self,
        app: usize,
        topic: TopicId,
        key: Option<u32>,
        again: Option<WriteId>,
    ) -> Option<WriteId> {
        let node = self.apps.slots.get(app)?.node;
        if !matches!(self.nodes[node].life, Life::Up(Actor::Producer(_))) || self.nodes[node].paused {
            return None;
        }
        let producer = self.app_producer(app);
        let write = match again.filter(|w| self.history.ops.get(w.0 as usize).is_some_and(|op| op.producer == producer))
        {
            Some(write) => {
                // The latest attempt decides how the write ended.
                self.history.ops[write.0 as usize].completed = None;
                if let Some(trace) = self.trace.as_deref_mut() {
                    trace.invoke(self.now, write, producer, key);
                }
                write
            }
            None => self.invoke(producer, topic, key),
        };
        let draw = self.workload_rng.next_u64();
        let now = self.local_now(node);
        if let Life::Up(Actor::Producer(p)) = &mut self.nodes[node].life {
            p.send(now, write, topic, key, draw);
        }
        self.hash.add(0xa900_0000 ^ write.0);
        self.after_input(node);
        Some(write)
    }

    /// Outcomes of application writes since the last call.
    pub fn take_app_acks(&mut self) -> Vec<(WriteId, Option<TopicPartition>, WriteOutcome)> {
        std::mem::take(&mut self.apps.acks)
    }

    /// An application process died: every write it had not heard back about ends
    /// indefinite (it may or may not be in the log).
    pub(super) fn app_crashed(&mut self, node: usize) {
        let Some(app) = self.apps.slot_of(node) else {
            return;
        };
        self.apps.txn_offsets.retain(|_, (of, _)| *of != app);
        let producer = self.app_producer(app);
        let outcome = WriteOutcome::Failed { error: ErrorCode::NetworkException, definite: false };
        for op in self.history.ops.iter_mut().filter(|op| op.producer == producer && op.completed.is_none()) {
            op.completed = Some(Completion { at: self.now, tp: None, outcome });
        }
    }

    /// Moves the clock to `now` for an input that does not come from the queue (an
    /// application's call), never back.
    pub fn advance_to(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// Whether the safety phase (faults, workload) still lasts.
    pub fn in_safety_phase(&self) -> bool {
        self.producing
    }

    /// Queues a fault at `at`, as if the scenario had it (applications' faults).
    pub fn schedule_fault(&mut self, at: Millis, fault: crate::faults::Fault) {
        self.push(at, super::EventKind::Fault(fault));
    }
}
