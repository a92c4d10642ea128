//! The consume–transform–produce workload: `[pipeline]` processes, each a model
//! [`Pipeline`] (a read_committed consumer and a transactional producer on one node),
//! copying the input topic to the output topic for as long as the run lasts — through
//! the liveness phase too, so that it drains the input.
//!
//! Each poll that returns records becomes one transaction: one output write per input
//! record (same key, the partition of the same number modulo the output's partitions),
//! then the consumer's positions, committed in the transaction. The history keeps, per
//! transaction, which input record each output write copies (`TxnOp::sources`), which
//! the end-to-end exactly-once checker reads.
//!
//! A killed process is an application that dies: its restart is a new consumer (a new
//! member) and a new producer instance with the same transactional id.

use super::{Actor, Engine, EventKind, Life, Node};
use crate::groups::{GroupEvent as Recorded, GroupHistory};
use crate::history::{Source, TxnOp};
use crate::scenario::{PipelineSpec, Scenario};
use trial_model::group::coordinator::offsets_partition_for;
use trial_model::group::GroupEvent;
use trial_model::txn::pipeline::{Pipeline, PipelineConfig};
use trial_model::txn::TxnProducerConfig;
use trial_model::txn::TxnWrite;
use trial_model::{Millis, NodeId, TopicPartition};

/// Node ids of pipeline processes start here.
pub const PIPELINE_BASE: u32 = 6_000;
/// History producer index of pipeline process 0 (after the transactional producers').
pub const PIPELINE_HISTORY_BASE: u32 = 2_000_000;

#[derive(Default)]
pub(super) struct Pipelines {
    /// Node index of each process.
    pub(super) nodes: Vec<usize>,
    /// The pipeline's consumer group as the group checkers file groups (memberships,
    /// rebalances, crashes): only its rebalance figures are reported, since the pipeline
    /// is judged end to end and its records are processed inside transactions.
    pub(super) group: Option<GroupHistory>,
    /// Whether a rebalance of the group runs (its first trigger is filed, not the rest),
    /// and the last generation that reached Stable.
    pub(super) rebalancing: bool,
    pub(super) stable: Option<i32>,
}

impl Pipelines {
    pub(super) fn start(scenario: &Scenario, brokers: &[NodeId], nodes: &mut Vec<Node>) -> Pipelines {
        let mut slots = Pipelines::default();
        let Some(spec) = &scenario.pipeline else { return slots };
        slots.group =
            Some(GroupHistory::new(spec.group.clone(), super::groups::protocol_of(&spec.consumer), vec![spec.input.1]));
        for index in 0..spec.apps {
            let pipeline = new_pipeline(spec, index, brokers.len(), Millis::ZERO, 1);
            nodes.push(Node::new(pipeline.id(), Actor::Pipeline(Box::new(pipeline))));
            slots.nodes.push(nodes.len() - 1);
        }
        slots
    }

    pub(super) fn slot_of(&self, node: usize) -> Option<usize> {
        self.nodes.iter().position(|n| *n == node)
    }

    /// Files `event` in the group's history, if the scenario has a pipeline.
    pub(super) fn file(&mut self, at: Millis, event: Recorded) {
        if let Some(group) = self.group.as_mut() {
            group.push(at, event);
        }
    }

    /// Whether `name` is the pipeline's group.
    pub(super) fn is_group(&self, name: &str) -> bool {
        self.group.as_ref().is_some_and(|g| g.group == name)
    }

    pub(super) fn finish(&mut self, end: Millis) -> Option<GroupHistory> {
        let mut group = self.group.take()?;
        group.finish(end);
        Some(group)
    }
}

/// Pipeline process `index`, a new process (new clients), the node's `incarnation`th.
pub(super) fn new_pipeline(spec: &PipelineSpec, index: u32, brokers: usize, now: Millis, incarnation: u64) -> Pipeline {
    let producer =
        TxnProducerConfig { transactional_id: PipelineSpec::transactional_id(index), ..spec.producer.clone() };
    let config = PipelineConfig { consumer: spec.consumer.clone(), producer };
    Pipeline::new(NodeId(PIPELINE_BASE + index), config, (0..brokers as u32).map(NodeId).collect(), now)
        .with_send_order_base(super::txns::send_order_base(incarnation))
}

impl Engine<'_> {
    /// What pipeline process `slot`'s consumer reported: its memberships go to the
    /// group's history, its commits do not (they are the transactions').
    pub(super) fn record_pipeline_group_event(&mut self, slot: usize, event: GroupEvent) {
        let consumer = slot as u32;
        let recorded = match event {
            GroupEvent::Joining { .. } => {
                if std::mem::replace(&mut self.pipelines.rebalancing, true) {
                    return;
                }
                let generation = self.pipelines.stable.unwrap_or(-1);
                Recorded::RebalanceStarted { generation, reason: format!("pipeline process {slot} joins") }
            }
            GroupEvent::Assigned { member_id, generation, partitions, .. } => {
                Recorded::Assigned { consumer, member_id, generation, partitions }
            }
            GroupEvent::Revoked { partitions, .. } => Recorded::Revoked { consumer, partitions },
            GroupEvent::Lost { partitions, .. } => Recorded::Lost { consumer, partitions },
            _ => return,
        };
        self.pipelines.file(self.now, recorded);
    }

    /// Every `poll_interval_ms`: each process at its `poll()` polls, and what it got
    /// becomes a transaction.
    pub(super) fn pipeline_tick(&mut self) {
        let Some(spec) = self.scenario.pipeline.as_ref() else { return };
        self.push(self.now.plus(spec.poll_interval_ms), EventKind::PipelineTick);
        let outputs = self.scenario.topics.get(spec.output.0 as usize).map_or(1, |t| t.partitions).max(1);
        for index in 0..self.pipelines.nodes.len() {
            let node = self.pipelines.nodes[index];
            if self.nodes[node].paused {
                continue;
            }
            let now = self.local_now(node);
            let Life::Up(Actor::Pipeline(p)) = &mut self.nodes[node].life else { continue };
            if !p.ready() {
                continue;
            }
            let records = p.poll(now);
            if records.is_empty() {
                self.after_input(node);
                continue;
            }
            let txn = self.history.txns.len() as u64;
            let producer = PIPELINE_HISTORY_BASE + index as u32;
            let mut writes = Vec::with_capacity(records.len());
            let mut sources = Vec::with_capacity(records.len());
            for record in &records {
                let tp = TopicPartition { topic: spec.output, partition: record.tp.partition % outputs };
                let write = self.invoke(producer, spec.output, record.key);
                writes.push(TxnWrite { write, tp, key: record.key });
                sources.push(Source { tp: record.tp, offset: record.offset, write: record.write });
            }
            self.history.txns.push(TxnOp {
                client: PipelineSpec::transactional_id(index as u32),
                writes: writes.iter().map(|w| w.write).collect(),
                commit: true,
                begun_at: self.now,
                ended: None,
                sources,
            });
            if let Life::Up(Actor::Pipeline(p)) = &mut self.nodes[node].life {
                p.begin(now, txn, writes);
            }
            self.hash.add(0x7b00_0000 ^ txn);
            self.after_input(node);
        }
    }

    /// The pipeline's group has committed every input partition up to its high
    /// watermark (and no process has a transaction running).
    pub(super) fn pipeline_caught_up(&self) -> bool {
        let Some(spec) = self.scenario.pipeline.as_ref() else { return true };
        for node in &self.pipelines.nodes {
            if let Life::Up(Actor::Pipeline(p)) = &self.nodes[*node].life {
                if p.producer().running().is_some() {
                    return false;
                }
            }
        }
        let Some(settings) = self.scenario.broker.groups.as_ref() else { return true };
        let offsets_tp = TopicPartition {
            topic: settings.offsets_topic,
            partition: offsets_partition_for(&spec.group, settings.offsets_partitions),
        };
        let Some(coordinator) = self.leader_of(offsets_tp).and_then(|c| self.broker(c)) else { return false };
        let input = spec.input.1;
        for partition in 0..self.scenario.topics[input.0 as usize].partitions {
            let tp = TopicPartition { topic: input, partition };
            let end = self.leader_end(tp).unwrap_or_default();
            if coordinator.group_committed(&spec.group, tp).unwrap_or_default() < end {
                return false;
            }
        }
        true
    }
}
