//! The transactional workload: `[transactions]` producers, each a model
//! [`TxnProducer`] on a node of its own, running one transaction after another during
//! the safety phase. Every transaction's writes are history operations (acknowledged
//! when it commits) and a [`TxnOp`] that says which writes formed it and how it ended,
//! for the transaction checkers.
//!
//! A killed transactional producer is an application that dies: what it ran ends unknown
//! to it (aborted, if it had not asked to commit: its successor's InitProducerId aborts
//! it), and its restart is a new producer instance with the same transactional id, which
//! fences the old one. A paused one is the classic zombie.

use super::{Actor, Engine, EventKind, Life, Node};
use crate::history::{Completion, TxnEnd, TxnOp};
use crate::scenario::{Scenario, TxnSpec};
use rand_core::RngCore;
use trial_model::txn::{TxnEvent, TxnOutcome, TxnProducer, TxnWrite};
use trial_model::{ErrorCode, NodeId, TopicPartition, WriteOutcome};

/// Node ids of transactional producers start here.
pub const TXN_PRODUCER_BASE: u32 = 5_000;
/// History producer index of transactional producer 0 (the workload's producers and the
/// applications come first).
pub const TXN_HISTORY_BASE: u32 = 1_000_000;

#[derive(Default)]
pub(super) struct TxnProducers {
    /// Node index of each transactional producer.
    pub(super) nodes: Vec<usize>,
}

impl TxnProducers {
    pub(super) fn start(scenario: &Scenario, brokers: &[NodeId], nodes: &mut Vec<Node>) -> TxnProducers {
        let mut slots = TxnProducers::default();
        let Some(spec) = &scenario.transactions else { return slots };
        for index in 0..spec.producers {
            let producer = new_producer(spec, index, brokers.len(), 1);
            nodes.push(Node::new(producer.id(), Actor::TxnProducer(Box::new(producer))));
            slots.nodes.push(nodes.len() - 1);
        }
        slots
    }

    pub(super) fn slot_of(&self, node: usize) -> Option<usize> {
        self.nodes.iter().position(|n| *n == node)
    }
}

/// Where the send order of a node's `incarnation`th process starts: each process of an
/// application gets 2^20 sends per partition, so one node's processes make one order.
pub(super) fn send_order_base(incarnation: u64) -> u32 {
    (incarnation.saturating_sub(1).min(4_095) as u32) << 20
}

/// Transactional producer `index`, a new instance (a new process of its application),
/// the node's `incarnation`th.
pub(super) fn new_producer(spec: &TxnSpec, index: u32, brokers: usize, incarnation: u64) -> TxnProducer {
    let config = trial_model::txn::TxnProducerConfig {
        transactional_id: TxnSpec::transactional_id(index),
        ..spec.config.clone()
    };
    TxnProducer::new(NodeId(TXN_PRODUCER_BASE + index), config, (0..brokers as u32).map(NodeId).collect())
        .with_send_order_base(send_order_base(incarnation))
}

impl Engine<'_> {
    /// Every `interval_ms` of the safety phase: each idle producer begins a transaction.
    pub(super) fn txn_tick(&mut self) {
        let Some(spec) = self.scenario.transactions.as_ref() else { return };
        if !self.producing {
            return;
        }
        self.push(self.now.plus(spec.interval_ms), EventKind::TxnTick);
        let partitions = self.scenario.topics.get(spec.topic.0 as usize).map_or(1, |t| t.partitions).max(1);
        for index in 0..self.txns.nodes.len() {
            let node = self.txns.nodes[index];
            let ready = matches!(&self.nodes[node].life, Life::Up(Actor::TxnProducer(p)) if p.ready());
            if !ready || self.nodes[node].paused {
                continue;
            }
            let txn = self.history.txns.len() as u64;
            let producer = TXN_HISTORY_BASE + index as u32;
            let mut writes = Vec::with_capacity(spec.records_per_txn as usize);
            for _ in 0..spec.records_per_txn {
                let partition = (self.workload_rng.next_u64() % partitions as u64) as u32;
                let tp = TopicPartition { topic: spec.topic, partition };
                let write = self.invoke(producer, spec.topic, None);
                writes.push(TxnWrite { write, tp, key: None });
            }
            // A draw in [0, 1): below the ratio, the application aborts.
            let draw = (self.workload_rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let commit = draw >= spec.abort_ratio;
            self.history.txns.push(TxnOp {
                client: TxnSpec::transactional_id(index as u32),
                writes: writes.iter().map(|w| w.write).collect(),
                commit,
                begun_at: self.now,
                ended: None,
                sources: Vec::new(),
            });
            let now = self.local_now(node);
            if let Life::Up(Actor::TxnProducer(p)) = &mut self.nodes[node].life {
                p.begin(now, txn, writes, commit);
            }
            self.hash.add(0x7a00_0000 ^ txn);
            self.after_input(node);
        }
    }

    /// A transactional producer's event: a transaction's end goes to the history.
    pub(super) fn record_txn_event(&mut self, event: TxnEvent) {
        if let TxnEvent::Ended { txn, outcome, error, .. } = event {
            self.hash.add(0x7e00_0000 ^ txn);
            if let Some(op) = self.history.txns.get_mut(txn as usize) {
                op.ended.get_or_insert(TxnEnd { at: self.now, outcome, error });
            }
        }
    }

    /// Transactional producer on `node` dies with `producer`'s transaction running: it
    /// ends unknown (or aborted, if no commit was asked for), and so do its writes.
    pub(super) fn txn_producer_crashed(&mut self, producer: &TxnProducer) {
        let Some(txn) = producer.running() else { return };
        let asked = producer.commit_asked();
        let outcome = if asked { TxnOutcome::Unknown } else { TxnOutcome::Aborted };
        let now = self.now;
        let Some(op) = self.history.txns.get_mut(txn as usize) else { return };
        op.ended.get_or_insert(TxnEnd { at: now, outcome, error: ErrorCode::NetworkException });
        let writes = op.writes.clone();
        let write_outcome = WriteOutcome::Failed { error: ErrorCode::NetworkException, definite: !asked };
        for write in writes {
            if let Some(op) = self.history.ops.get_mut(write.0 as usize).filter(|op| op.completed.is_none()) {
                op.completed = Some(Completion { at: now, tp: None, outcome: write_outcome });
            }
        }
    }
}
