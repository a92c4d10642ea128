//! Consumer nodes: starting them, rebuilding one after a crash or a close, and turning
//! what consumers and coordinators report into each group's history.

use super::{Actor, Engine, Life, Node, CONSUMER_BASE};
use crate::groups::{Committer, GroupEvent as Recorded, GroupHistory, GroupProtocol};
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use trial_model::group::assignor::RebalanceProtocol;
use trial_model::group::coordinator::offsets_partition_for;
use trial_model::group::GroupEvent;
use trial_model::lag::{lag_records, OffsetTimeline};
use trial_model::{Consumer, ConsumerConfig, Millis, NodeId, Offset, TopicPartition};

/// How often the engine samples each group's lag.
pub const LAG_SAMPLE_MS: u64 = 1_000;
/// Samples kept per group (a day at one a second would be 86,400).
pub const LAG_SAMPLES_MAX: usize = 10_000;

/// A group's lag over the run, sampled from the coordinator's committed offsets and the
/// leaders' high watermarks with the exporter's arithmetic (`trial_model::lag`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LagSeries {
    pub group: String,
    pub partitions: Vec<TopicPartition>,
    /// (time, lag in records per partition in `partitions` order, worst lag in seconds).
    pub samples: Vec<(Millis, Vec<u64>, Option<f64>)>,
}

pub(super) struct ConsumerSlot {
    pub(super) node: usize,
    group: usize,
    config: ConsumerConfig,
    /// Closed by a `close` fault: it stays stopped until restarted.
    closed: bool,
}

/// Every consumer of the scenario and the history of each group.
pub(super) struct Consumers {
    pub(super) slots: Vec<ConsumerSlot>,
    histories: Vec<GroupHistory>,
    bootstrap: Vec<NodeId>,
    /// The consumer behind each member id a coordinator names.
    member_of: BTreeMap<String, u32>,
    /// Per group: the last generation that reached Stable, and whether a rebalance runs.
    stable: Vec<Option<i32>>,
    rebalancing: Vec<bool>,
    pub(super) lag: Vec<LagSeries>,
    timelines: BTreeMap<(usize, TopicPartition), OffsetTimeline>,
}

/// A process-level happening of a consumer node.
pub(super) enum Happened {
    Crashed,
    Restarted,
    Paused,
    Resumed,
}

/// Whether a member with `assignors` rebalances cooperatively: only when every assignor
/// it lists supports it (the Java client picks the protocol all of them support).
pub(super) fn protocol_of(config: &ConsumerConfig) -> GroupProtocol {
    let cooperative = !config.member.assignors.is_empty()
        && config.member.assignors.iter().all(|a| a.supported_protocols().contains(&RebalanceProtocol::Cooperative));
    if cooperative {
        GroupProtocol::Cooperative
    } else {
        GroupProtocol::Eager
    }
}

impl Consumers {
    pub(super) fn start(scenario: &Scenario, brokers: &[NodeId], nodes: &mut Vec<Node>) -> Consumers {
        let mut consumers = Consumers {
            slots: Vec::new(),
            histories: Vec::new(),
            bootstrap: brokers.to_vec(),
            member_of: BTreeMap::new(),
            stable: Vec::new(),
            rebalancing: Vec::new(),
            lag: Vec::new(),
            timelines: BTreeMap::new(),
        };
        for (group_index, group) in scenario.groups.iter().enumerate() {
            let topics = group.topics.iter().map(|(_, id)| *id).collect();
            consumers.histories.push(GroupHistory::new(group.name.clone(), protocol_of(&group.config), topics));
            consumers.stable.push(None);
            consumers.rebalancing.push(false);
            let partitions = group
                .topics
                .iter()
                .flat_map(|(_, topic)| {
                    let count = scenario.topics[topic.0 as usize].partitions;
                    (0..count).map(move |partition| TopicPartition { topic: *topic, partition })
                })
                .collect();
            consumers.lag.push(LagSeries { group: group.name.clone(), partitions, samples: Vec::new() });
            for member in 0..group.consumers {
                let mut config = group.config.clone();
                if group.static_membership {
                    config.member.group_instance_id = Some(format!("{}-{member}", group.name));
                }
                consumers.add(group_index, config, nodes);
            }
        }
        consumers
    }

    /// Adds a consumer to scenario group `group` (the scenario's, or an application's);
    /// returns its index.
    pub(super) fn add(&mut self, group: usize, config: ConsumerConfig, nodes: &mut Vec<Node>) -> u32 {
        let index = self.slots.len() as u32;
        let id = NodeId(CONSUMER_BASE + index);
        let consumer = Consumer::new(id, config.clone(), self.bootstrap.clone(), Millis::ZERO);
        nodes.push(Node::new(id, Actor::Consumer(Box::new(consumer))));
        self.slots.push(ConsumerSlot { node: nodes.len() - 1, group, config, closed: false });
        index
    }

    pub(super) fn new_consumer(&mut self, id: NodeId, now: Millis) -> Consumer {
        let index = (id.0 - CONSUMER_BASE) as usize;
        self.slots[index].closed = false;
        Consumer::new(id, self.slots[index].config.clone(), self.bootstrap.clone(), now)
    }

    pub(super) fn take_lag(&mut self) -> Vec<LagSeries> {
        std::mem::take(&mut self.lag)
    }

    pub(super) fn finish(&mut self, end: Millis) -> Vec<GroupHistory> {
        let mut histories = std::mem::take(&mut self.histories);
        for history in &mut histories {
            history.finish(end);
        }
        histories
    }

    /// Consumer `consumer`'s `group.instance.id`, if it is a static member.
    pub(super) fn instance_id(&self, consumer: u32) -> Option<String> {
        self.slots.get(consumer as usize)?.config.member.group_instance_id.clone()
    }

    fn slot_of(&self, node: usize) -> Option<u32> {
        self.slots.iter().position(|s| s.node == node).map(|i| i as u32)
    }

    fn group_named(&self, name: &str) -> Option<usize> {
        self.histories.iter().position(|h| h.group == name)
    }
}

impl Engine<'_> {
    /// Files `event` in group `group`'s history (and the trace).
    fn file(&mut self, group: usize, event: Recorded) {
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.group(self.now, &self.consumers.histories[group].group, &event);
        }
        self.consumers.histories[group].push(self.now, event);
    }
}

impl Engine<'_> {
    /// Files what a consumer or a coordinator reported under its group.
    pub(super) fn record_group_event(&mut self, node: usize, event: GroupEvent) {
        if let Some(consumer) = self.consumers.slot_of(node) {
            let generation = match &self.nodes[node].life {
                Life::Up(Actor::Consumer(c)) => c.generation(),
                _ => -1,
            };
            self.record_consumer_event(consumer, generation, event);
        } else {
            self.record_coordinator_event(node, event);
        }
    }

    fn record_consumer_event(&mut self, consumer: u32, generation: i32, event: GroupEvent) {
        let group = self.consumers.slots[consumer as usize].group;
        let recorded = match event {
            GroupEvent::Processed { tp, offset, write, .. } => {
                Recorded::Processed { consumer, generation, tp, offset, write }
            }
            GroupEvent::Joining { .. } => {
                if std::mem::replace(&mut self.consumers.rebalancing[group], true) {
                    return;
                }
                let generation = self.consumers.stable[group].unwrap_or(-1);
                Recorded::RebalanceStarted { generation, reason: format!("consumer {consumer} joins") }
            }
            GroupEvent::Assigned { member_id, generation, partitions, .. } => {
                self.consumers.member_of.insert(member_id.clone(), consumer);
                Recorded::Assigned { consumer, member_id, generation, partitions }
            }
            GroupEvent::Revoked { partitions, .. } => Recorded::Revoked { consumer, partitions },
            GroupEvent::Lost { partitions, .. } => Recorded::Lost { consumer, partitions },
            GroupEvent::CommitSent { member_id, generation, offsets, .. } => {
                self.consumers.member_of.insert(member_id.clone(), consumer);
                Recorded::CommitSent { consumer, member_id, generation, offsets }
            }
            GroupEvent::CommitDone { correlation, generation, offsets, error, .. } => {
                self.answer_app_commit(consumer, correlation, error);
                Recorded::CommitResult { consumer, generation, offsets, error }
            }
            GroupEvent::PositionReset { tp, from, to, .. } => Recorded::PositionReset { consumer, tp, from, to },
            GroupEvent::Fatal { error, .. } => Recorded::Fenced { consumer, error },
            _ => return,
        };
        self.file(group, recorded);
    }

    fn record_coordinator_event(&mut self, node: usize, event: GroupEvent) {
        match event {
            GroupEvent::Rebalanced { group, generation, members } if self.pipelines.is_group(&group) => {
                self.pipelines.rebalancing = false;
                self.pipelines.stable = Some(generation);
                self.pipelines.file(self.now, Recorded::Stable { generation, members: members as u32 });
            }
            GroupEvent::Rebalanced { group, generation, members } => {
                let Some(index) = self.consumers.group_named(&group) else { return };
                self.consumers.stable[index] = Some(generation);
                self.consumers.rebalancing[index] = false;
                let stable = Recorded::Stable { generation, members: members as u32 };
                self.file(index, stable);
            }
            GroupEvent::OffsetsStored { group, member_id, generation, group_generation, validated_at, offsets } => {
                let Some(index) = self.consumers.group_named(&group) else { return };
                let consumer = self.consumers.member_of.get(&member_id).copied().unwrap_or(u32::MAX);
                for (tp, offset) in offsets {
                    let by = Committer::Member { consumer, member_id: member_id.clone(), generation, validated_at };
                    let stored = Recorded::OffsetStored { tp, offset, by, group_generation };
                    self.file(index, stored);
                }
            }
            GroupEvent::MemberRemoved { group, member_id, generation, reason } => {
                let Some(index) = self.consumers.group_named(&group) else { return };
                let consumer = self.consumers.member_of.get(&member_id).copied().unwrap_or(u32::MAX);
                let coordinator = self.nodes[node].id;
                self.file(index, Recorded::MemberRemoved { consumer, member_id, generation, reason, coordinator });
            }
            GroupEvent::CoordinatorLoaded { partition, .. } => {
                let Some(groups) = self.scenario.broker.groups.as_ref() else { return };
                let Life::Up(Actor::Broker(broker)) = &self.nodes[node].life else { return };
                let coordinator = self.nodes[node].id;
                let mut loaded = Vec::new();
                for (index, spec) in self.scenario.groups.iter().enumerate() {
                    if offsets_partition_for(&spec.name, groups.offsets_partitions) != partition {
                        continue;
                    }
                    for (_, topic) in &spec.topics {
                        let partitions = self.scenario.topics[topic.0 as usize].partitions;
                        for p in 0..partitions {
                            let tp = TopicPartition { topic: *topic, partition: p };
                            loaded.push((index, tp, broker.group_committed(&spec.name, tp)));
                        }
                    }
                }
                for (index, tp, offset) in loaded {
                    let event = Recorded::OffsetLoaded { tp, offset, coordinator };
                    self.file(index, event);
                }
            }
            _ => {}
        }
    }

    pub(super) fn consumer_happening(&mut self, node: usize, happened: Happened) {
        let event = |consumer: u32| match happened {
            Happened::Crashed => Recorded::ConsumerCrashed { consumer },
            Happened::Restarted => Recorded::ConsumerRestarted { consumer },
            Happened::Paused => Recorded::ConsumerPaused { consumer },
            Happened::Resumed => Recorded::ConsumerResumed { consumer },
        };
        if let Some(slot) = self.pipelines.slot_of(node) {
            return self.pipelines.file(self.now, event(slot as u32));
        }
        let Some(consumer) = self.consumers.slot_of(node) else { return };
        let group = self.consumers.slots[consumer as usize].group;
        self.file(group, event(consumer));
    }

    /// A `close` fault: the consumer commits, leaves its group and stops.
    pub(super) fn close_consumer(&mut self, node: usize) {
        let Some(consumer) = self.consumers.slot_of(node) else { return };
        let now = self.local_now(node);
        if let Life::Up(Actor::Consumer(c)) = &mut self.nodes[node].life {
            c.close(now);
            self.consumers.slots[consumer as usize].closed = true;
            self.after_input(node);
        }
    }

    /// Consumers closed during the safety phase, to restart when everything heals.
    pub(super) fn closed_consumers(&self) -> Vec<usize> {
        self.consumers.slots.iter().filter(|s| s.closed).map(|s| s.node).collect()
    }

    /// Every group has processed its subscribed partitions up to their log end.
    pub(super) fn groups_caught_up(&self) -> bool {
        for (index, spec) in self.scenario.groups.iter().enumerate() {
            // A group nobody consumes for (no application joined it) waits for nothing.
            if !self.consumers.slots.iter().any(|s| s.group == index) {
                continue;
            }
            let mut reached: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
            for slot in self.consumers.slots.iter().filter(|s| s.group == index) {
                let node = &self.nodes[slot.node];
                let Life::Up(Actor::Consumer(c)) = &node.life else { continue };
                if node.paused {
                    continue;
                }
                for (tp, position) in c.positions() {
                    if let Some(position) = position {
                        let entry = reached.entry(tp).or_default();
                        *entry = (*entry).max(position);
                    }
                }
            }
            for (_, topic) in &spec.topics {
                for p in 0..self.scenario.topics[topic.0 as usize].partitions {
                    let tp = TopicPartition { topic: *topic, partition: p };
                    let end = self.leader_end(tp);
                    if end.is_some_and(|end| reached.get(&tp).copied().unwrap_or_default() < end) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// One lag sample per group: the coordinator's committed offset against the leader's
    /// high watermark, in records and (from the HW timeline) in seconds.
    pub(super) fn sample_lag(&mut self) {
        let Some(settings) = self.scenario.broker.groups.as_ref() else { return };
        for index in 0..self.consumers.lag.len() {
            if self.consumers.lag[index].samples.len() >= LAG_SAMPLES_MAX {
                continue;
            }
            let name = self.scenario.groups[index].name.clone();
            let offsets_tp = TopicPartition {
                topic: settings.offsets_topic,
                partition: offsets_partition_for(&name, settings.offsets_partitions),
            };
            // No coordinator (its partition offline): the committed offsets are unknown,
            // so there is no sample — a gap, not a made-up lag.
            let Some(coordinator) = self.leader_of(offsets_tp).filter(|c| self.broker(*c).is_some()) else {
                continue;
            };
            let mut lags = Vec::new();
            let mut worst: Option<f64> = None;
            for tp in self.consumers.lag[index].partitions.clone() {
                let end = self.leader_end(tp).unwrap_or_default();
                let committed = self.broker(coordinator).and_then(|b| b.group_committed(&name, tp)).unwrap_or_default();
                let timeline = self.consumers.timelines.entry((index, tp)).or_insert_with(|| OffsetTimeline::new(120));
                timeline.observe(self.now, end);
                if let Some(seconds) = timeline.lag_seconds(committed, self.now) {
                    worst = Some(worst.map_or(seconds, |w| w.max(seconds)));
                }
                lags.push(lag_records(end, Offset(0), committed));
            }
            self.consumers.lag[index].samples.push((self.now, lags, worst));
        }
    }

    pub(super) fn leader_of(&self, tp: TopicPartition) -> Option<NodeId> {
        let Life::Up(Actor::Controller(controller)) = &self.nodes[self.controller_index].life else {
            return None;
        };
        controller.partition(tp)?.leader
    }

    pub(super) fn leader_end(&self, tp: TopicPartition) -> Option<Offset> {
        let Life::Up(Actor::Controller(controller)) = &self.nodes[self.controller_index].life else {
            return None;
        };
        let leader = controller.partition(tp)?.leader?;
        self.broker(leader)?.high_watermark(tp)
    }
}
