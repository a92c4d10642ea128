//! The active KRaft controller: broker registration and heartbeats, fencing, topic
//! creation with Kafka's replica placement, leader election, ISR/ELR changes with a
//! partition epoch, and metadata pushed to brokers.
//!
//! Its whole metadata state is durable (KRaft syncs its metadata log), so a restart
//! rebuilds it from `ControllerDisk`; only heartbeat sessions start afresh.

use crate::action::{Action, ClusterEvent};
use crate::config::{ControllerConfig, Registration, TopicConfig};
use crate::error::ErrorCode;
use crate::messages::{AlterPartitionItem, Message, MetadataDelta, PartitionState, TopicMeta};
use crate::placement::assign_replicas;
use crate::types::{BrokerEpoch, LeaderEpoch, Millis, NodeId, PartitionEpoch, TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub meta: TopicMeta,
    pub unclean_leader_election: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub broker_epoch: BrokerEpoch,
    pub incarnation: u64,
    pub fenced: bool,
    /// In controlled shutdown: not eligible as leader or ISR member (Kafka's
    /// `BrokerRegistrationChangeRecord.InControlledShutdown`); a new registration clears it.
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

/// The controller's durable state (its metadata log, replayed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerDisk {
    pub topics: Vec<TopicRecord>,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
    pub brokers: BTreeMap<NodeId, BrokerRecord>,
    pub next_broker_epoch: u64,
    pub metadata_version: u64,
}

impl ControllerDisk {
    /// Creates the topics at cluster start, placing replicas as Kafka's rack-unaware
    /// placement does; `start_index` and `replica_shift` are the placement's random draws.
    pub fn with_topics(brokers: &[NodeId], topics: &[TopicConfig], draws: &[(usize, usize)]) -> ControllerDisk {
        let mut disk = ControllerDisk::default();
        for (index, topic) in topics.iter().enumerate() {
            let id = TopicId(index as u32);
            let (start_index, shift) = draws.get(index).copied().unwrap_or((0, 0));
            let assignment = match &topic.replica_assignment {
                Some(explicit) => explicit.clone(),
                None => assign_replicas(brokers, topic.partitions, topic.replication_factor, start_index, shift),
            };
            for (partition, replicas) in assignment.into_iter().enumerate() {
                let tp = TopicPartition { topic: id, partition: partition as u32 };
                let state = PartitionState {
                    tp,
                    leader: replicas.first().copied(),
                    isr: replicas.clone(),
                    replicas,
                    elr: Vec::new(),
                    last_known_leader: None,
                    leader_epoch: LeaderEpoch(0),
                    partition_epoch: PartitionEpoch(0),
                };
                disk.partitions.insert(tp, state);
            }
            let meta = TopicMeta {
                id,
                name: topic.name.clone(),
                partitions: topic.partitions,
                min_insync_replicas: topic.min_insync_replicas,
            };
            disk.topics.push(TopicRecord { meta, unclean_leader_election: topic.unclean_leader_election });
        }
        for broker in brokers {
            let record = BrokerRecord {
                broker_epoch: BrokerEpoch(0),
                incarnation: 0,
                fenced: false,
                in_controlled_shutdown: false,
            };
            disk.brokers.insert(*broker, record);
        }
        disk.next_broker_epoch = 1;
        disk
    }
}

pub struct Controller {
    id: NodeId,
    config: ControllerConfig,
    disk: ControllerDisk,
    last_heartbeat: BTreeMap<NodeId, Millis>,
    /// The metadata version each broker last reported applied (Kafka's heartbeat
    /// `CurrentMetadataOffset`), for granting controlled shutdowns.
    reported_versions: BTreeMap<NodeId, u64>,
    /// Per broker in controlled shutdown: the metadata version that moved its leaders
    /// away (Kafka's `controlledShutdownOffset`). In memory, as in Kafka's heartbeat manager.
    shutdown_versions: BTreeMap<NodeId, u64>,
    next_session_check: Millis,
    outbox: VecDeque<Action>,
}

impl Controller {
    /// Starts (or restarts) the controller from its durable state at `now`. Every broker
    /// gets a fresh session, as after a KRaft controller failover.
    pub fn new(id: NodeId, config: ControllerConfig, disk: ControllerDisk, now: Millis) -> Controller {
        let last_heartbeat = disk.brokers.keys().map(|broker| (*broker, now)).collect();
        Controller {
            id,
            config,
            disk,
            last_heartbeat,
            reported_versions: BTreeMap::new(),
            shutdown_versions: BTreeMap::new(),
            next_session_check: now,
            outbox: VecDeque::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn disk(&self) -> &ControllerDisk {
        &self.disk
    }

    pub fn into_disk(self) -> ControllerDisk {
        self.disk
    }

    pub fn partition(&self, tp: TopicPartition) -> Option<&PartitionState> {
        self.disk.partitions.get(&tp)
    }

    pub fn partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.disk.partitions.values()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_session_check)
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if now < self.next_session_check {
            return;
        }
        // Half the session timeout bounds how late a fencing can come.
        self.next_session_check = now.plus(self.config.broker_session_timeout_ms / 2);
        let expired: Vec<NodeId> = self
            .disk
            .brokers
            .iter()
            .filter(|(broker, record)| {
                let last = self.last_heartbeat.get(broker).copied().unwrap_or(now);
                !record.fenced && now.since(last) > self.config.broker_session_timeout_ms
            })
            .map(|(broker, _)| *broker)
            .collect();
        for broker in expired {
            self.fence(broker);
        }
        self.next_session_check = self.next_session_check.min(self.earliest_expiry());
    }

    fn earliest_expiry(&self) -> Millis {
        self.disk
            .brokers
            .iter()
            .filter(|(_, record)| !record.fenced)
            .filter_map(|(broker, _)| self.last_heartbeat.get(broker))
            .map(|last| last.plus(self.config.broker_session_timeout_ms + 1))
            .min()
            .unwrap_or(Millis::MAX)
    }

    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        match msg {
            Message::BrokerRegistration { incarnation, previous_broker_epoch } => {
                self.handle_registration(now, from, incarnation, previous_broker_epoch)
            }
            Message::BrokerHeartbeat { broker_epoch, metadata_version, want_shutdown } => {
                self.handle_heartbeat(now, from, broker_epoch, metadata_version, want_shutdown)
            }
            Message::AlterPartition { broker_epoch, items } => self.handle_alter_partition(from, broker_epoch, items),
            _ => {}
        }
    }

    fn handle_registration(&mut self, now: Millis, broker: NodeId, incarnation: u64, previous: Option<BrokerEpoch>) {
        let Some(record) = self.disk.brokers.get(&broker) else {
            // Not a broker of this cluster: refuse, as an unknown node id would be.
            let metadata = self.snapshot();
            let msg = Message::BrokerRegistrationResponse {
                error: ErrorCode::StaleBrokerEpoch,
                broker_epoch: BrokerEpoch(0),
                metadata: Box::new(metadata),
            };
            self.send(broker, msg);
            return;
        };
        // A broker's first registration has no earlier life that could have lost data.
        let clean_shutdown = record.incarnation == 0 || previous == Some(record.broker_epoch);
        let same_incarnation = record.incarnation == incarnation;
        let session_valid = !record.fenced
            && self
                .last_heartbeat
                .get(&broker)
                .is_some_and(|last| now.since(*last) <= self.config.broker_session_timeout_ms);
        if record.incarnation != 0
            && !same_incarnation
            && session_valid
            && self.config.protocol.registration == Registration::Kraft
        {
            // KRaft's ClusterControlManager: the old life must be fenced first.
            let metadata = MetadataDelta {
                version: 0,
                topics: Vec::new(),
                partitions: Vec::new(),
                ineligible_brokers: Vec::new(),
                base: None,
            };
            let error = ErrorCode::DuplicateBrokerRegistration;
            let metadata = Box::new(metadata);
            self.send(broker, Message::BrokerRegistrationResponse { error, broker_epoch: BrokerEpoch(0), metadata });
            return;
        }
        let broker_epoch = if same_incarnation {
            record.broker_epoch
        } else {
            let epoch = BrokerEpoch(self.disk.next_broker_epoch);
            self.disk.next_broker_epoch += 1;
            epoch
        };
        if !same_incarnation {
            let record = BrokerRecord { broker_epoch, incarnation, fenced: true, in_controlled_shutdown: false };
            self.shutdown_versions.remove(&broker);
            self.disk.brokers.insert(broker, record);
            self.event(ClusterEvent::BrokerRegistered { broker, broker_epoch, clean_shutdown });
            if self.config.protocol.eligible_leader_replicas && !clean_shutdown {
                self.handle_unclean_shutdown(broker);
            }
        }
        self.last_heartbeat.insert(broker, now);
        self.unfence(broker);
        let metadata = Box::new(self.snapshot());
        self.send(broker, Message::BrokerRegistrationResponse { error: ErrorCode::None, broker_epoch, metadata });
    }

    fn handle_heartbeat(
        &mut self,
        now: Millis,
        broker: NodeId,
        broker_epoch: BrokerEpoch,
        metadata_version: u64,
        want_shutdown: bool,
    ) {
        let current = self.disk.brokers.get(&broker).map(|record| record.broker_epoch);
        if current != Some(broker_epoch) {
            // A life the controller no longer knows leads nothing: it may stop at once.
            let error = ErrorCode::StaleBrokerEpoch;
            let msg = Message::BrokerHeartbeatResponse {
                error,
                fenced: true,
                metadata: None,
                should_shutdown: want_shutdown,
            };
            self.send(broker, msg);
            return;
        }
        self.last_heartbeat.insert(broker, now);
        self.reported_versions.insert(broker, metadata_version);
        let should_shutdown = if want_shutdown {
            self.controlled_shutdown(broker)
        } else {
            self.unfence(broker);
            false
        };
        let fenced = self.is_fenced(broker);
        let metadata = (metadata_version < self.disk.metadata_version).then(|| Box::new(self.snapshot()));
        let msg = Message::BrokerHeartbeatResponse { error: ErrorCode::None, fenced, metadata, should_shutdown };
        self.send(broker, msg);
    }

    /// A heartbeat asking to shut down, as `BrokerHeartbeatManager.calculateNextBrokerState`
    /// answers it: a fenced broker, or one that leads nothing, may stop now; otherwise the
    /// broker enters controlled shutdown, which moves its leaders away and takes it out of
    /// every ISR (`handleBrokerInControlledShutdown`), and it may stop once it leads nothing
    /// and every unfenced broker has applied that change. Stopping fences it. Returns
    /// whether the broker may stop.
    fn controlled_shutdown(&mut self, broker: NodeId) -> bool {
        if self.is_fenced(broker) {
            return true;
        }
        let in_shutdown = self.disk.brokers.get(&broker).is_some_and(|record| record.in_controlled_shutdown);
        if !in_shutdown && !self.leads_any(broker) {
            self.fence(broker);
            return true;
        }
        if !in_shutdown {
            if let Some(record) = self.disk.brokers.get_mut(&broker) {
                record.in_controlled_shutdown = true;
            }
            self.event(ClusterEvent::ControlledShutdown { broker });
        }
        self.move_away(broker);
        if self.leads_any(broker) {
            return false;
        }
        let version = *self.shutdown_versions.entry(broker).or_insert(self.disk.metadata_version);
        let caught_up = self
            .disk
            .brokers
            .iter()
            .filter(|(_, record)| !record.fenced)
            .all(|(id, _)| self.reported_versions.get(id).is_some_and(|reported| *reported >= version));
        if caught_up {
            self.shutdown_versions.remove(&broker);
            self.fence(broker);
        }
        caught_up
    }

    /// Moves a broker in controlled shutdown out of leadership and out of the ISRs (it
    /// stays where it is the last member and ELR is off: KRaft never empties an ISR).
    fn move_away(&mut self, broker: NodeId) {
        let elr_on = self.config.protocol.eligible_leader_replicas;
        let affected = self.remove_from_isrs(broker, false, |state| {
            state.leader == Some(broker) || (state.isr.contains(&broker) && (elr_on || state.isr.len() > 1))
        });
        if !affected.is_empty() {
            self.publish(&affected);
        }
    }

    fn leads_any(&self, broker: NodeId) -> bool {
        self.disk.partitions.values().any(|state| state.leader == Some(broker))
    }

    fn handle_alter_partition(&mut self, broker: NodeId, broker_epoch: BrokerEpoch, items: Vec<AlterPartitionItem>) {
        let current = self.disk.brokers.get(&broker).map(|record| record.broker_epoch);
        let mut results = Vec::with_capacity(items.len());
        let mut changed = Vec::new();
        for item in items {
            let error = if current != Some(broker_epoch) {
                ErrorCode::StaleBrokerEpoch
            } else {
                self.validate_alter_partition(broker, &item)
            };
            if error != ErrorCode::None {
                let state = self.disk.partitions.get(&item.tp).cloned();
                results.push((item.tp, error, state));
                continue;
            }
            let tp = item.tp;
            self.change_isr(tp, item.new_isr);
            changed.push(tp);
            results.push((tp, ErrorCode::None, self.disk.partitions.get(&tp).cloned()));
        }
        self.send(broker, Message::AlterPartitionResponse { items: results });
        if !changed.is_empty() {
            self.publish(&changed);
        }
    }

    fn validate_alter_partition(&self, broker: NodeId, item: &AlterPartitionItem) -> ErrorCode {
        let Some(state) = self.disk.partitions.get(&item.tp) else {
            return ErrorCode::UnknownTopicOrPartition;
        };
        if state.leader != Some(broker) {
            return ErrorCode::NotLeaderOrFollower;
        }
        if item.leader_epoch != state.leader_epoch {
            return ErrorCode::FencedLeaderEpoch;
        }
        if item.partition_epoch != state.partition_epoch {
            return ErrorCode::InvalidUpdateVersion;
        }
        if !item.new_isr.contains(&broker) {
            return ErrorCode::InvalidUpdateVersion;
        }
        // KIP-903/KIP-841: a fenced broker, or one in controlled shutdown, may not join the ISR.
        let added_fenced = item
            .new_isr
            .iter()
            .filter(|replica| !state.isr.contains(replica))
            .any(|replica| !self.is_eligible(*replica) || !state.replicas.contains(replica));
        if added_fenced {
            return ErrorCode::IneligibleReplica;
        }
        ErrorCode::None
    }

    fn is_fenced(&self, broker: NodeId) -> bool {
        self.disk.brokers.get(&broker).is_none_or(|record| record.fenced)
    }

    /// May lead or join an ISR: unfenced and not in controlled shutdown (KIP-841).
    fn is_eligible(&self, broker: NodeId) -> bool {
        self.disk.brokers.get(&broker).is_some_and(|record| !record.fenced && !record.in_controlled_shutdown)
    }

    fn min_isr(&self, tp: TopicPartition) -> usize {
        let topic = &self.disk.topics[tp.topic.0 as usize];
        let replicas = self.disk.partitions.get(&tp).map_or(0, |state| state.replicas.len());
        (topic.meta.min_insync_replicas as usize).min(replicas)
    }

    fn unclean_allowed(&self, tp: TopicPartition) -> bool {
        self.disk.topics[tp.topic.0 as usize].unclean_leader_election
    }

    /// Applies a leader-requested ISR change (already validated).
    fn change_isr(&mut self, tp: TopicPartition, new_isr: Vec<NodeId>) {
        let min_isr = self.min_isr(tp);
        let elr_on = self.config.protocol.eligible_leader_replicas;
        let Some(state) = self.disk.partitions.get_mut(&tp) else {
            return;
        };
        let old_isr = std::mem::replace(&mut state.isr, new_isr);
        update_elr(state, &old_isr, min_isr, elr_on, &[]);
        state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
        self.partition_event(tp, false);
    }

    fn fence(&mut self, broker: NodeId) {
        let Some(record) = self.disk.brokers.get_mut(&broker) else {
            return;
        };
        if record.fenced {
            return;
        }
        record.fenced = true;
        self.event(ClusterEvent::BrokerFenced { broker });
        let affected =
            self.remove_from_isrs(broker, false, |state| state.isr.contains(&broker) || state.leader == Some(broker));
        self.publish(&affected);
    }

    /// KIP-966: a broker back from an unclean shutdown may have lost data below the HW,
    /// so it leaves every ISR and ELR.
    fn handle_unclean_shutdown(&mut self, broker: NodeId) {
        // (publishes only when a partition changed)
        let affected =
            self.remove_from_isrs(broker, true, |state| state.isr.contains(&broker) || state.elr.contains(&broker));
        if !affected.is_empty() {
            self.publish(&affected);
        }
    }

    /// Takes `broker` out of the ISR (and leadership) of every partition `pick` selects;
    /// returns those partitions.
    fn remove_from_isrs(
        &mut self,
        broker: NodeId,
        unclean_shutdown: bool,
        pick: impl Fn(&PartitionState) -> bool,
    ) -> Vec<TopicPartition> {
        let affected: Vec<TopicPartition> =
            self.disk.partitions.values().filter(|state| pick(state)).map(|state| state.tp).collect();
        for tp in &affected {
            self.remove_from_isr(*tp, broker, unclean_shutdown);
        }
        affected
    }

    fn remove_from_isr(&mut self, tp: TopicPartition, broker: NodeId, unclean_shutdown: bool) {
        let min_isr = self.min_isr(tp);
        let elr_on = self.config.protocol.eligible_leader_replicas;
        let Some(state) = self.disk.partitions.get_mut(&tp) else {
            return;
        };
        let old_isr = state.isr.clone();
        let mut new_isr: Vec<NodeId> = old_isr.iter().copied().filter(|replica| *replica != broker).collect();
        // Without ELR, KRaft never empties the ISR: the last member stays, leaderless.
        if new_isr.is_empty() && !elr_on {
            new_isr = old_isr.clone();
        }
        // `maybeUpdateLastKnownLeader`: the first time the ISR empties, the controller
        // remembers who led.
        if elr_on && new_isr.is_empty() && !old_isr.is_empty() && state.leader.is_some() {
            state.last_known_leader = state.leader;
        }
        state.isr = new_isr;
        let excluded: &[NodeId] = if unclean_shutdown { &[broker] } else { &[] };
        update_elr(state, &old_isr, min_isr, elr_on, excluded);
        if unclean_shutdown {
            state.elr.retain(|replica| *replica != broker);
        }
        let leader_lost = state.leader == Some(broker);
        state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
        // A lost leader always changes (the broker is excluded), and the election records
        // the change; otherwise the ISR change is the event.
        if leader_lost {
            self.elect_leader(tp, Some(broker));
        } else {
            self.partition_event(tp, false);
        }
    }

    /// Elects a leader for `tp` as `PartitionChangeBuilder.electAnyLeader` does: the first
    /// unfenced ISR member in replica order, else (ELR on, ISR empty) the first unfenced ELR
    /// member, else (ELR on, ISR and ELR empty) the last known leader if it is unfenced —
    /// uncleanly, whatever the topic's unclean setting, as Kafka 4.x's balanced recovery
    /// does (`canElectLastKnownLeader`, with KAFKA-19522's liveness check) — else, if the
    /// topic allows it, the first unfenced replica (unclean). Bumps the leader epoch when
    /// the leader changes.
    fn elect_leader(&mut self, tp: TopicPartition, excluded: Option<NodeId>) {
        let unclean_allowed = self.unclean_allowed(tp);
        let Some(state) = self.disk.partitions.get(&tp) else {
            return;
        };
        let acceptable = |replica: &NodeId| Some(*replica) != excluded && self.is_eligible(*replica);
        let from_isr = state.replicas.iter().copied().find(|r| state.isr.contains(r) && acceptable(r));
        let from_elr = if state.isr.is_empty() {
            state.replicas.iter().copied().find(|r| state.elr.contains(r) && acceptable(r))
        } else {
            None
        };
        // Only ever set with ELR on (see `remove_from_isr`).
        let last_known = if state.isr.is_empty() && state.elr.is_empty() {
            state.last_known_leader.filter(|r| acceptable(r))
        } else {
            None
        };
        let unclean_pick = state.replicas.iter().copied().find(|r| acceptable(r));
        let (leader, unclean) = match (from_isr, from_elr, last_known) {
            (Some(leader), _, _) => (Some(leader), false),
            (None, Some(leader), _) => (Some(leader), false),
            (None, None, Some(leader)) => (Some(leader), true),
            (None, None, None) if unclean_allowed => (unclean_pick, unclean_pick.is_some()),
            (None, None, None) => (None, false),
        };
        if leader == state.leader {
            return;
        }
        let Some(state) = self.disk.partitions.get_mut(&tp) else {
            return;
        };
        if let Some(new_leader) = leader {
            if !state.isr.contains(&new_leader) {
                // Elected from the ELR, or uncleanly: the ISR restarts with the leader alone.
                state.isr = vec![new_leader];
                state.elr.retain(|replica| *replica != new_leader);
                if unclean {
                    state.elr.clear();
                }
            }
        }
        if leader.is_some() {
            state.last_known_leader = None;
        }
        state.leader = leader;
        state.leader_epoch = LeaderEpoch(state.leader_epoch.0 + 1);
        state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
        self.partition_event(tp, unclean);
    }

    fn unfence(&mut self, broker: NodeId) {
        let Some(record) = self.disk.brokers.get_mut(&broker) else {
            return;
        };
        if !record.fenced {
            return;
        }
        record.fenced = false;
        let broker_epoch = record.broker_epoch;
        self.event(ClusterEvent::BrokerUnfenced { broker, broker_epoch });
        let leaderless: Vec<TopicPartition> = self
            .disk
            .partitions
            .values()
            .filter(|state| state.leader.is_none() && state.replicas.contains(&broker))
            .map(|state| state.tp)
            .collect();
        let mut changed = Vec::new();
        for tp in leaderless {
            self.elect_leader(tp, None);
            if self.disk.partitions.get(&tp).is_some_and(|state| state.leader.is_some()) {
                changed.push(tp);
            }
        }
        // Publish even without partition changes: leaders learn the broker is unfenced.
        self.publish(&changed);
    }

    fn snapshot(&self) -> MetadataDelta {
        MetadataDelta {
            version: self.disk.metadata_version,
            topics: self.disk.topics.iter().map(|topic| topic.meta.clone()).collect(),
            partitions: self.disk.partitions.values().cloned().collect(),
            ineligible_brokers: self.ineligible_brokers(),
            base: None,
        }
    }

    fn ineligible_brokers(&self) -> Vec<NodeId> {
        self.disk.brokers.keys().copied().filter(|broker| !self.is_eligible(*broker)).collect()
    }

    /// Pushes changed partitions to every unfenced broker. Brokers that miss a push catch
    /// up through their next heartbeat, which carries their metadata version.
    fn publish(&mut self, changed: &[TopicPartition]) {
        self.disk.metadata_version += 1;
        let partitions: Vec<PartitionState> =
            changed.iter().filter_map(|tp| self.disk.partitions.get(tp).cloned()).collect();
        let ineligible_brokers = self.ineligible_brokers();
        let version = self.disk.metadata_version;
        let base = Some(version - 1);
        let delta = MetadataDelta { version, topics: Vec::new(), partitions, ineligible_brokers, base };
        let targets: Vec<NodeId> = self.disk.brokers.keys().copied().collect();
        for broker in targets {
            self.send(broker, Message::MetadataUpdate(Box::new(delta.clone())));
        }
    }

    fn partition_event(&mut self, tp: TopicPartition, unclean: bool) {
        let Some(state) = self.disk.partitions.get(&tp) else {
            return;
        };
        let event = ClusterEvent::PartitionChange {
            tp,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr: state.isr.clone(),
            elr: state.elr.clone(),
            unclean,
        };
        self.event(event);
    }

    fn event(&mut self, event: ClusterEvent) {
        self.outbox.push_back(Action::Event(event));
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.outbox.push_back(Action::Send { to, msg });
    }
}

/// KIP-966 (`PartitionChangeBuilder.maybePopulateTargetElr`): with the ISR at or above
/// min ISR the ELR is empty; below it, replicas that leave the ISR join the ELR (minus any
/// back from an unclean shutdown).
fn update_elr(state: &mut PartitionState, old_isr: &[NodeId], min_isr: usize, elr_on: bool, excluded: &[NodeId]) {
    if !elr_on {
        state.elr.clear();
        return;
    }
    if state.isr.len() >= min_isr {
        state.elr.clear();
        return;
    }
    let mut elr: Vec<NodeId> = state.elr.iter().chain(old_isr.iter()).copied().collect();
    elr.retain(|replica| !state.isr.contains(replica) && !excluded.contains(replica));
    elr.sort_unstable();
    elr.dedup();
    state.elr = elr;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(unclean: bool, min_isr: u32) -> TopicConfig {
        TopicConfig {
            name: "t".into(),
            partitions: 1,
            replication_factor: 3,
            min_insync_replicas: min_isr,
            unclean_leader_election: unclean,
            replica_assignment: None,
        }
    }

    fn controller(unclean: bool, elr: bool) -> Controller {
        let brokers = [NodeId(0), NodeId(1), NodeId(2)];
        let disk = ControllerDisk::with_topics(&brokers, &[topic(unclean, 2)], &[]);
        let mut config = ControllerConfig::default();
        config.protocol.eligible_leader_replicas = elr;
        let mut controller = Controller::new(NodeId(100), config, disk, Millis(0));
        // Every broker registers once, so that later registrations are restarts.
        for broker in brokers {
            controller.handle_message(
                Millis(0),
                broker,
                Message::BrokerRegistration { incarnation: 1, previous_broker_epoch: None },
            );
        }
        while controller.poll_action().is_some() {}
        controller
    }

    fn state(controller: &Controller) -> PartitionState {
        controller.partition(TopicPartition::new(0, 0)).cloned().expect("partition 0 exists")
    }

    // Shows KRaft's clean election (PartitionChangeBuilder): fencing the leader moves
    // leadership to the next ISR member in replica order and bumps the leader epoch; the
    // last ISR member is never removed without ELR, and the partition goes leaderless.
    #[test]
    fn fencing_elects_from_isr_and_keeps_the_last_member() {
        let mut c = controller(false, false);
        c.fence(NodeId(0));
        let s = state(&c);
        assert_eq!(s.leader, Some(NodeId(1)));
        assert_eq!(s.leader_epoch, LeaderEpoch(1));
        assert_eq!(s.isr, vec![NodeId(1), NodeId(2)]);
        c.fence(NodeId(1));
        c.fence(NodeId(2));
        let s = state(&c);
        assert_eq!(s.leader, None);
        assert_eq!(s.isr, vec![NodeId(2)]);
        // Broker 0 comes back: not in the ISR, no unclean election, so still leaderless.
        c.handle_message(
            Millis(1),
            NodeId(0),
            Message::BrokerRegistration { incarnation: 7, previous_broker_epoch: None },
        );
        assert_eq!(state(&c).leader, None);
        c.handle_message(
            Millis(1),
            NodeId(2),
            Message::BrokerRegistration { incarnation: 8, previous_broker_epoch: None },
        );
        assert_eq!(state(&c).leader, Some(NodeId(2)));
    }

    // Shows unclean.leader.election.enable: an out-of-sync replica is elected when no ISR
    // member is alive, and the ISR restarts with it alone.
    #[test]
    fn unclean_election_picks_an_out_of_sync_replica() {
        let mut c = controller(true, false);
        c.fence(NodeId(1));
        c.fence(NodeId(2));
        c.fence(NodeId(0));
        assert_eq!(state(&c).isr, vec![NodeId(0)]);
        c.handle_message(
            Millis(1),
            NodeId(2),
            Message::BrokerRegistration { incarnation: 3, previous_broker_epoch: None },
        );
        let s = state(&c);
        assert_eq!(s.leader, Some(NodeId(2)));
        assert_eq!(s.isr, vec![NodeId(2)]);
    }

    // Shows KIP-966: replicas leaving the ISR below min ISR join the ELR; a broker back
    // from an unclean shutdown leaves ISR and ELR; an ELR member is elected when the ISR
    // is empty.
    #[test]
    fn eligible_leader_replicas_follow_kip_966() {
        let mut c = controller(false, true);
        c.fence(NodeId(2));
        assert_eq!(state(&c).elr, Vec::<NodeId>::new());
        c.fence(NodeId(1));
        assert_eq!(state(&c).isr, vec![NodeId(0)]);
        assert_eq!(state(&c).elr, vec![NodeId(1)]);
        c.fence(NodeId(0));
        let s = state(&c);
        assert_eq!(s.isr, Vec::<NodeId>::new());
        assert_eq!(s.elr, vec![NodeId(0), NodeId(1)]);
        c.handle_message(
            Millis(1),
            NodeId(0),
            Message::BrokerRegistration { incarnation: 5, previous_broker_epoch: None },
        );
        let s = state(&c);
        assert_eq!(s.elr, vec![NodeId(1)]);
        assert_eq!(s.leader, None);
        let broker_1_epoch = c.disk().brokers[&NodeId(1)].broker_epoch;
        c.handle_message(
            Millis(1),
            NodeId(1),
            // A clean shutdown: the broker names the epoch it had, so it keeps its ELR seat.
            Message::BrokerRegistration { incarnation: 6, previous_broker_epoch: Some(broker_1_epoch) },
        );
        let s = state(&c);
        assert_eq!(s.leader, Some(NodeId(1)));
        assert_eq!(s.isr, vec![NodeId(1)]);
    }

    // Shows Kafka 4.x's last-known-leader election (KIP-966 balanced recovery,
    // PartitionChangeBuilder.canElectLastKnownLeader and PartitionChangeBuilderTest's
    // testEligibleLeaderReplicas_ElectLastKnownLeader): once every ELR member is back from
    // an unclean shutdown, ISR and ELR are empty, and the leader the partition had when its
    // ISR emptied is elected again as soon as it is unfenced, uncleanly although the topic
    // does not allow unclean elections; no other replica is.
    #[test]
    fn the_last_known_leader_is_elected_when_isr_and_elr_are_empty() {
        let mut c = controller(false, true);
        c.fence(NodeId(2));
        c.fence(NodeId(1));
        c.fence(NodeId(0));
        let s = state(&c);
        assert_eq!((s.isr.clone(), s.elr.clone()), (vec![], vec![NodeId(0), NodeId(1)]));
        assert_eq!(s.last_known_leader, Some(NodeId(0)), "broker 0 led when the ISR emptied");
        let register = |c: &mut Controller, broker: u32, incarnation: u64| {
            // No previous broker epoch: an unclean shutdown.
            let msg = Message::BrokerRegistration { incarnation, previous_broker_epoch: None };
            c.handle_message(Millis(1), NodeId(broker), msg);
        };
        register(&mut c, 2, 7);
        assert_eq!(state(&c).leader, None, "broker 2 left the ISR above min ISR: never eligible");
        register(&mut c, 1, 8);
        let s = state(&c);
        assert_eq!((s.leader, s.elr.clone()), (None, vec![NodeId(0)]), "broker 0 is still in the ELR");
        while c.poll_action().is_some() {}
        register(&mut c, 0, 9);
        let s = state(&c);
        assert_eq!(s.leader, Some(NodeId(0)));
        assert_eq!((s.isr.clone(), s.elr.clone(), s.last_known_leader), (vec![NodeId(0)], vec![], None));
        let unclean = std::iter::from_fn(|| c.poll_action()).find_map(|action| match action {
            Action::Event(ClusterEvent::PartitionChange { leader: Some(NodeId(0)), unclean, .. }) => Some(unclean),
            _ => None,
        });
        assert_eq!(unclean, Some(true), "an unclean election");
    }

    // Shows the last known leader is remembered with ELR on only: without it, Kafka keeps
    // the last ISR member and waits for it (the KRaft rule the first test shows).
    #[test]
    fn without_elr_no_last_known_leader_is_kept() {
        let mut c = controller(false, false);
        for broker in [2, 1, 0] {
            c.fence(NodeId(broker));
        }
        assert_eq!(state(&c).last_known_leader, None);
    }

    // Shows that AlterPartition is fenced by the partition epoch (KIP-497): a request made
    // against an older partition epoch is rejected with INVALID_UPDATE_VERSION.
    #[test]
    fn stale_alter_partition_is_rejected() {
        let mut c = controller(false, false);
        let item = AlterPartitionItem {
            tp: TopicPartition::new(0, 0),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            new_isr: vec![NodeId(0), NodeId(1)],
        };
        let broker_epoch = c.disk().brokers[&NodeId(0)].broker_epoch;
        c.handle_message(Millis(0), NodeId(0), Message::AlterPartition { broker_epoch, items: vec![item.clone()] });
        assert_eq!(state(&c).isr, vec![NodeId(0), NodeId(1)]);
        while c.poll_action().is_some() {}
        c.handle_message(Millis(0), NodeId(0), Message::AlterPartition { broker_epoch, items: vec![item] });
        let response = std::iter::from_fn(|| c.poll_action()).find_map(|action| match action {
            Action::Send { msg: Message::AlterPartitionResponse { items }, .. } => Some(items),
            _ => None,
        });
        assert_eq!(response.expect("a response")[0].1, ErrorCode::InvalidUpdateVersion);
    }

    /// Broker `broker` heartbeats (caught up to `version`); returns the answer's
    /// ShouldShutDown.
    fn heartbeat(c: &mut Controller, broker: u32, version: u64, want_shutdown: bool) -> bool {
        let broker_epoch = c.disk().brokers[&NodeId(broker)].broker_epoch;
        let msg = Message::BrokerHeartbeat { broker_epoch, metadata_version: version, want_shutdown };
        c.handle_message(Millis(1), NodeId(broker), msg);
        std::iter::from_fn(|| c.poll_action())
            .filter_map(|action| match action {
                Action::Send { to, msg: Message::BrokerHeartbeatResponse { should_shutdown, .. } }
                    if to.0 == broker =>
                {
                    Some(should_shutdown)
                }
                _ => None,
            })
            .last()
            .expect("a heartbeat response")
    }

    // Shows KRaft's controlled shutdown (BrokerHeartbeatManager.calculateNextBrokerState,
    // ReplicationControlManager.handleBrokerInControlledShutdown, KIP-841): the leader's
    // first WantShutDown moves its leadership to the next ISR member and takes it out of
    // the ISR; while it is in controlled shutdown it may not rejoin an ISR; the grant waits
    // until every unfenced broker has applied that change, and fences it. Found by
    // rolling-restart: before leaders' metadata listed such a broker as ineligible, they
    // proposed it for their ISRs on each of its fetches, ~930 refused proposals a second.
    #[test]
    fn a_controlled_shutdown_moves_leaders_and_waits_for_every_broker_to_catch_up() {
        let mut c = controller(false, false);
        let version = c.disk().metadata_version;
        assert!(!heartbeat(&mut c, 0, version, true), "broker 0 leads: not yet");
        let s = state(&c);
        assert_eq!((s.leader, s.isr.clone()), (Some(NodeId(1)), vec![NodeId(1), NodeId(2)]));
        assert!(c.disk().brokers[&NodeId(0)].in_controlled_shutdown);
        // Leaders learn it too, so they do not propose broker 0 for their ISRs.
        assert_eq!(c.snapshot().ineligible_brokers, vec![NodeId(0)]);
        let moved = c.disk().metadata_version;
        assert!(moved > version);
        // The new leader tries to take broker 0 back into the ISR: ineligible.
        let item = AlterPartitionItem {
            tp: TopicPartition::new(0, 0),
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr: vec![NodeId(1), NodeId(2), NodeId(0)],
        };
        let broker_epoch = c.disk().brokers[&NodeId(1)].broker_epoch;
        c.handle_message(Millis(1), NodeId(1), Message::AlterPartition { broker_epoch, items: vec![item] });
        let response = std::iter::from_fn(|| c.poll_action()).find_map(|action| match action {
            Action::Send { msg: Message::AlterPartitionResponse { items }, .. } => Some(items),
            _ => None,
        });
        assert_eq!(response.expect("a response")[0].1, ErrorCode::IneligibleReplica);
        // Brokers 1 and 2 have not applied the move yet.
        assert!(!heartbeat(&mut c, 0, moved, true));
        assert!(!heartbeat(&mut c, 1, moved, false));
        assert!(!heartbeat(&mut c, 0, moved, true), "broker 2 is still behind");
        assert!(!heartbeat(&mut c, 2, moved, false));
        assert!(heartbeat(&mut c, 0, moved, true), "everyone caught up: granted");
        assert!(c.disk().brokers[&NodeId(0)].fenced);
    }

    // Shows KIP-966 with a clean shutdown: a broker that leaves an ISR below min ISR in
    // its controlled shutdown joins the ELR (a broker leading nothing is granted at once,
    // SHUTDOWN_NOW); back with its clean-shutdown marker (the epoch it stopped with) it
    // stays there and is elected when the ISR is empty. Back without the marker (a kill),
    // it would leave the ELR.
    #[test]
    fn a_clean_shutdown_keeps_the_broker_in_the_elr_and_electable() {
        for clean in [true, false] {
            let mut c = controller(false, true);
            c.fence(NodeId(2));
            let version = c.disk().metadata_version;
            let epoch_1 = c.disk().brokers[&NodeId(1)].broker_epoch;
            assert!(heartbeat(&mut c, 1, version, true), "broker 1 leads nothing: stops now");
            let s = state(&c);
            assert_eq!((s.isr.clone(), s.elr.clone()), (vec![NodeId(0)], vec![NodeId(1)]));
            c.fence(NodeId(0));
            assert_eq!(state(&c).leader, None);
            let previous_broker_epoch = clean.then_some(epoch_1);
            c.handle_message(
                Millis(2),
                NodeId(1),
                Message::BrokerRegistration { incarnation: 5, previous_broker_epoch },
            );
            let s = state(&c);
            if clean {
                assert_eq!((s.leader, s.isr.clone()), (Some(NodeId(1)), vec![NodeId(1)]));
            } else {
                assert_eq!(s.leader, None);
                assert!(!s.elr.contains(&NodeId(1)));
            }
        }
    }
}
