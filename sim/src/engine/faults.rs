//! Faults applied to nodes: kill, power loss, restart, pause/resume, partitions and
//! clock offsets, with targets resolved when the fault fires.

use super::{groups, Actor, Durable, Engine, Life, CONTROLLER_ID};
use crate::faults::{Fault, Target};
use crate::history::Happening;
use trial_model::{Broker, ClusterEvent, Controller, ControllerDisk, Message, NodeId, TopicPartition};

impl Engine<'_> {
    pub(super) fn resolve(&self, target: Target) -> Option<usize> {
        match target {
            Target::Broker(id) => Some(id as usize),
            Target::Controller => Some(self.controller_index),
            Target::Producer(index) => self.producers.get(index as usize).map(|p| p.node),
            Target::Consumer(index) => self.consumers.slots.get(index as usize).map(|c| c.node),
            Target::App(index) => self.apps.slots.get(index as usize).map(|a| a.node),
            Target::TxnProducer(index) => self.txns.nodes.get(index as usize).copied(),
            Target::Pipeline(index) => self.pipelines.nodes.get(index as usize).copied(),
            Target::TxnCoordinatorOf(index) => {
                let settings = self.scenario.broker.txn.as_ref()?;
                let id = crate::scenario::TxnSpec::transactional_id(index);
                let partition = trial_model::txn::txn_partition_for(&id, settings.coordinator.partitions);
                self.resolve(Target::LeaderOf(TopicPartition { topic: settings.state_topic, partition }))
            }
            Target::CoordinatorOf(group) => {
                let settings = self.scenario.broker.groups.as_ref()?;
                let name = &self.scenario.groups.get(group as usize)?.name;
                let partition =
                    trial_model::group::coordinator::offsets_partition_for(name, settings.offsets_partitions);
                self.resolve(Target::LeaderOf(TopicPartition { topic: settings.offsets_topic, partition }))
            }
            Target::LeaderOf(tp) => {
                let Life::Up(Actor::Controller(c)) = &self.nodes[self.controller_index].life else {
                    return self.last_known_leader(tp);
                };
                c.partition(tp).and_then(|s| s.leader).map(|id| id.0 as usize)
            }
        }
    }

    /// Every node a target stands for: an application's process holds its producer's
    /// node and its consumer's.
    pub(super) fn resolve_all(&self, target: Target) -> Vec<usize> {
        let mut nodes: Vec<usize> = self.resolve(target).into_iter().collect();
        if let Target::App(index) = target {
            nodes.extend(self.app_consumer_node(index as usize));
        }
        nodes
    }

    pub(super) fn last_known_leader(&self, tp: TopicPartition) -> Option<usize> {
        self.history.happenings.iter().rev().find_map(|(_, h)| match h {
            Happening::Cluster { event: ClusterEvent::PartitionChange { tp: t, leader, .. } } if *t == tp => {
                leader.map(|l| l.0 as usize)
            }
            _ => None,
        })
    }

    pub(super) fn apply_fault(&mut self, fault: Fault) {
        let mut description = fault.to_string();
        let mut node_id = None;
        match fault {
            Fault::Kill(target)
            | Fault::PowerLoss(target)
            | Fault::Shutdown(target)
            | Fault::Restart(target)
            | Fault::Pause(target)
            | Fault::Close(target)
            | Fault::Resume(target) => {
                let nodes = self.resolve_all(target);
                if nodes.is_empty() {
                    self.note_fault(format!("{description} (no such node now: skipped)"), None);
                    return;
                }
                node_id = Some(self.nodes[nodes[0]].id);
                if matches!(fault, Fault::Restart(_)) && nodes.iter().any(|node| self.shutting_down(*node)) {
                    description.push_str(" (once its controlled shutdown ends)");
                }
                if matches!(fault, Fault::Shutdown(_)) && nodes.iter().any(|node| self.nodes[*node].paused) {
                    description.push_str(" (taken when it resumes)");
                }
                if matches!(fault, Fault::Shutdown(_)) && nodes.iter().all(|node| !self.is_up(*node)) {
                    description.push_str(" (not running: nothing to stop)");
                }
                for node in nodes {
                    // An application's process restarts only if it is down: its consumer
                    // alone never starts over under running code.
                    if matches!(fault, Fault::Restart(Target::App(_))) && matches!(self.nodes[node].life, Life::Up(_)) {
                        continue;
                    }
                    match fault {
                        Fault::Kill(_) => self.crash(node, false),
                        Fault::PowerLoss(_) => self.crash(node, true),
                        Fault::Shutdown(_) => self.shutdown(node),
                        Fault::Restart(_) => self.restart(node),
                        Fault::Pause(_) => {
                            self.nodes[node].paused = true;
                            self.consumer_happening(node, groups::Happened::Paused);
                        }
                        Fault::Close(_) => self.close_consumer(node),
                        _ => self.resume(node),
                    }
                }
            }
            Fault::Isolate(target) => {
                let nodes = self.resolve_all(target);
                node_id = nodes.first().map(|node| self.nodes[*node].id);
                for node in nodes {
                    let count = self.nodes.len();
                    for other in 0..count {
                        if other != node {
                            self.blocked[node * count + other] = true;
                            self.blocked[other * count + node] = true;
                        }
                    }
                }
            }
            Fault::Partition { groups } => {
                let resolved: Vec<Vec<usize>> =
                    groups.iter().map(|g| g.iter().flat_map(|t| self.resolve_all(*t)).collect()).collect();
                let count = self.nodes.len();
                for (i, a) in resolved.iter().enumerate() {
                    for b in resolved.iter().skip(i + 1) {
                        for x in a {
                            for y in b {
                                self.blocked[x * count + y] = true;
                                self.blocked[y * count + x] = true;
                            }
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => {
                let count = self.nodes.len();
                let from: Vec<usize> = from.iter().flat_map(|t| self.resolve_all(*t)).collect();
                let to: Vec<usize> = to.iter().flat_map(|t| self.resolve_all(*t)).collect();
                for x in &from {
                    for y in &to {
                        self.blocked[x * count + y] = true;
                    }
                }
            }
            Fault::Heal => self.heal_network(),
            Fault::Loss(p) => self.loss = p,
            Fault::Duplicate(p) => self.duplicate = p,
            Fault::Latency(low, high) => self.latency_ms = (low, high),
            Fault::DropKind(kind, p) => {
                self.drop_kinds.retain(|(k, _)| *k != kind);
                self.drop_kinds.push((kind, p));
            }
            Fault::DelayKind(kind, low, high, p) => {
                self.delay_kinds.retain(|(k, _, _)| *k != kind);
                self.delay_kinds.push((kind, (low, high), p));
            }
            Fault::ClockOffset(target, ms) => {
                if let Some(node) = self.resolve(target) {
                    node_id = Some(self.nodes[node].id);
                    self.nodes[node].clock_offset_ms = ms;
                    self.reschedule(node);
                }
            }
        }
        self.note_fault(description, node_id);
    }

    pub(super) fn note_fault(&mut self, fault: String, node: Option<NodeId>) {
        let happening = Happening::Fault { fault, node };
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.happening(self.now, &happening);
        }
        self.history.push(self.now, happening);
    }

    pub(super) fn shutting_down(&self, node: usize) -> bool {
        matches!(&self.nodes[node].life, Life::Up(Actor::Broker(b)) if b.is_shutting_down())
    }

    /// A graceful stop (SIGTERM): a broker goes through its controlled shutdown and
    /// stops by itself (`stopped`); the controller's state is all synced, so its stop is a
    /// kill.
    fn shutdown(&mut self, node: usize) {
        if self.nodes[node].paused {
            self.nodes[node].shutdown_when_resumed = true;
            return;
        }
        let now = self.local_now(node);
        match &mut self.nodes[node].life {
            Life::Up(Actor::Broker(b)) => b.begin_controlled_shutdown(now),
            Life::Up(Actor::Controller(_)) => return self.crash(node, false),
            _ => return,
        }
        self.after_input(node);
    }

    /// A broker finished its controlled shutdown: the process exits (its sockets close
    /// as a killed one's do), and starts again if a restart was waiting for that.
    pub(super) fn stopped(&mut self, node: usize) {
        let restart = self.nodes[node].restart_when_stopped;
        self.crash(node, false);
        if restart {
            self.restart(node);
        }
    }

    pub(super) fn crash(&mut self, node: usize, power_loss: bool) {
        let slot = &mut self.nodes[node];
        slot.restart_when_stopped = false;
        slot.shutdown_when_resumed = false;
        slot.paused = false;
        slot.inbox.clear();
        slot.timer_generation += 1;
        slot.timer_at = None;
        let life = std::mem::replace(
            &mut slot.life,
            Life::Down { durable: Durable::Controller(ControllerDisk::default()), machine_up: false },
        );
        let mut durable = match life {
            Life::Up(Actor::Broker(b)) => Durable::Broker(b.into_disk()),
            Life::Up(Actor::Controller(c)) => Durable::Controller(c.into_disk()),
            Life::Up(Actor::Producer(p)) if !self.apps.hosts(node) => {
                // Validation keeps process faults off producers; put it back untouched.
                slot.life = Life::Up(Actor::Producer(p));
                return;
            }
            // An application's process dies with its clients.
            Life::Up(Actor::Producer(_)) => Durable::App,
            Life::Up(Actor::Consumer(_)) => Durable::Consumer,
            Life::Up(Actor::TxnProducer(p)) => {
                self.txn_producer_crashed(&p);
                if self.apps.hosts(node) {
                    // A transactional application's process dies with its client and its code.
                    Durable::App
                } else {
                    Durable::TxnProducer(self.txns.slot_of(node).unwrap_or(0) as u32)
                }
            }
            Life::Up(Actor::Pipeline(p)) => {
                self.txn_producer_crashed(p.producer());
                Durable::Pipeline(self.pipelines.slot_of(node).unwrap_or(0) as u32)
            }
            Life::Down { durable, .. } => durable,
        };
        if matches!(durable, Durable::Consumer) {
            self.consumer_happening(node, groups::Happened::Crashed);
        }
        if matches!(durable, Durable::App) {
            self.app_crashed(node);
        }
        let slot = &mut self.nodes[node];
        if power_loss {
            // KRaft syncs its metadata log, so only a broker's page cache is lost.
            if let Durable::Broker(disk) = &mut durable {
                disk.lose_unflushed();
            }
        }
        slot.life = Life::Down { durable, machine_up: !power_loss };
        if !power_loss {
            // The kernel of a killed process closes its sockets: every peer sees its
            // connection reset. A machine without power says nothing.
            let id = self.nodes[node].id;
            for peer in 0..self.nodes.len() {
                if peer != node && matches!(self.nodes[peer].life, Life::Up(_)) {
                    self.transmit(id, peer, Message::ConnectionClosed);
                }
            }
        }
    }

    pub(super) fn restart(&mut self, node: usize) {
        if self.shutting_down(node) {
            self.nodes[node].restart_when_stopped = true;
            return;
        }
        let now = self.local_now(node);
        if matches!(self.nodes[node].life, Life::Up(Actor::Consumer(_))) {
            // A closed (or running) consumer restarts as a new process.
            self.nodes[node].life = Life::Down { durable: Durable::Consumer, machine_up: true };
        }
        let slot = &mut self.nodes[node];
        let Life::Down { .. } = slot.life else { return };
        let life = std::mem::replace(
            &mut slot.life,
            Life::Down { durable: Durable::Controller(ControllerDisk::default()), machine_up: false },
        );
        let Life::Down { durable, .. } = life else {
            return;
        };
        slot.incarnation += 1;
        slot.paused = false;
        let id = slot.id;
        let incarnation = slot.incarnation;
        slot.life = match durable {
            Durable::Broker(disk) => {
                let broker = Broker::new(id, CONTROLLER_ID, self.scenario.broker.clone(), disk, slot.incarnation, now);
                Life::Up(Actor::Broker(Box::new(broker)))
            }
            Durable::Controller(disk) => {
                let controller = Controller::new(id, self.scenario.controller.clone(), disk, now);
                Life::Up(Actor::Controller(Box::new(controller)))
            }
            Durable::Consumer => Life::Up(Actor::Consumer(Box::new(self.consumers.new_consumer(id, now)))),
            Durable::App => Life::Up(self.apps.new_client(node, id, self.brokers, incarnation)),
            Durable::TxnProducer(index) => match self.scenario.transactions.as_ref() {
                Some(spec) => Life::Up(Actor::TxnProducer(Box::new(super::txns::new_producer(
                    spec,
                    index,
                    self.brokers,
                    incarnation,
                )))),
                None => Life::Down { durable: Durable::TxnProducer(index), machine_up: true },
            },
            Durable::Pipeline(index) => match self.scenario.pipeline.as_ref() {
                Some(spec) => Life::Up(Actor::Pipeline(Box::new(super::pipeline::new_pipeline(
                    spec,
                    index,
                    self.brokers,
                    now,
                    incarnation,
                )))),
                None => Life::Down { durable: Durable::Pipeline(index), machine_up: true },
            },
        };
        if matches!(self.nodes[node].life, Life::Up(Actor::Consumer(_))) {
            self.consumer_happening(node, groups::Happened::Restarted);
        }
        self.monitor.forget_node(id);
        self.forget_connections(node);
        self.reschedule(node);
    }

    pub(super) fn resume(&mut self, node: usize) {
        if !self.nodes[node].paused {
            return;
        }
        self.nodes[node].paused = false;
        let inbox = std::mem::take(&mut self.nodes[node].inbox);
        let now = self.local_now(node);
        for (from, msg) in inbox {
            match &mut self.nodes[node].life {
                Life::Up(Actor::Broker(b)) => b.handle_message(now, from, msg),
                Life::Up(Actor::Controller(c)) => c.handle_message(now, from, msg),
                Life::Up(Actor::Producer(p)) => p.handle_message(now, from, msg),
                Life::Up(Actor::Consumer(c)) => c.handle_message(now, from, msg),
                Life::Up(Actor::TxnProducer(p)) => p.handle_message(now, from, msg),
                Life::Up(Actor::Pipeline(p)) => p.handle_message(now, from, msg),
                Life::Down { .. } => break,
            }
        }
        // A paused node's timers were held; whatever is due fires now.
        self.nodes[node].timer_at = None;
        self.nodes[node].timer_generation += 1;
        self.timeout_actor(node);
        self.consumer_happening(node, groups::Happened::Resumed);
        self.after_input(node);
        if std::mem::take(&mut self.nodes[node].shutdown_when_resumed) {
            self.shutdown(node);
        }
    }
}
