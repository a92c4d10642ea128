//! The engine: a deterministic discrete-event loop that hosts the model.
//!
//! One event queue ordered by (time, sequence); a simulated network (latency ranges,
//! per-link FIFO like TCP, loss, duplication, partitions, dropped kinds); a disk per
//! broker held here while the broker is down; per-node clock offsets; kill, restart,
//! power loss and pause. The engine only translates and carries out: every decision
//! about Kafka is the model's.

use crate::checkers::InvariantMonitor;
use crate::faults::{draw_nemesis, Fault, ScheduledFault};
use crate::history::{Completion, Happening, History, Op};
use crate::queue::CalendarQueue;

mod apps;
pub use apps::{TxnRecord, TxnRefused, APP_TXN_HISTORY_BASE};
mod faults;
mod finish;
pub mod groups;
mod host;
pub use host::{Next, NodeRole, Outgoing};
mod network;
pub mod pipeline;
pub mod txns;
use crate::scenario::Scenario;
use crate::trace::TraceSink;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trial_model::group::GroupEvent;
use trial_model::{
    Action, Broker, BrokerDisk, ClusterEvent, Consumer, Controller, ControllerDisk, Message, MessageKind, Millis,
    NodeId, Offset, Producer, TopicPartition, WriteId,
};

/// Node id of the controller; brokers are 0..brokers, producers from `PRODUCER_BASE`.
pub const CONTROLLER_ID: NodeId = NodeId(1_000);
pub const PRODUCER_BASE: u32 = 2_000;
pub const CONSUMER_BASE: u32 = 3_000;
/// Application nodes of the madsim host (`sim::madsim::Simulation::app`).
pub const APP_BASE: u32 = 4_000;
/// Bound on events in one run: a run that needs more is reported as stuck.
pub const EVENTS_MAX: u64 = 2_000_000_000;
/// Bound on messages parked for a paused node.
pub const PAUSED_INBOX_MAX: usize = 100_000;
/// How often the liveness phase checks whether the cluster converged.
const CONVERGENCE_CHECK_MS: u64 = 1_000;

/// Sub-seeds of one run, derived from the run seed with ChaCha8 (stable across releases).
#[derive(Clone, Copy, Debug)]
pub struct SubSeeds {
    pub network: u64,
    pub faults: u64,
    pub workload: u64,
    pub placement: u64,
}

impl SubSeeds {
    pub fn derive(seed: u64) -> SubSeeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        SubSeeds {
            network: rng.next_u64(),
            faults: rng.next_u64(),
            workload: rng.next_u64(),
            placement: rng.next_u64(),
        }
    }
}

enum EventKind {
    /// `incarnation`: the destination's life when sent; a later life never gets it
    /// (its connections were reset).
    Deliver {
        from: NodeId,
        to: usize,
        incarnation: u64,
        msg: Message,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    /// A connection attempt of node `to` failed (`socket.connection.setup.timeout.ms`);
    /// void if `link`'s epoch moved on since.
    ConnectFailed {
        from: NodeId,
        to: usize,
        incarnation: u64,
        link: usize,
        epoch: u32,
    },
    /// A message another host carries (madsim): it arrives here by `token`.
    Carried {
        from: NodeId,
        to: usize,
        incarnation: u64,
        kind: MessageKind,
        token: u64,
    },
    /// A tick of the producers in `tick_groups[group]`.
    Produce {
        group: usize,
    },
    Fault(Fault),
    EndSafety,
    CheckConvergence,
    SampleLag,
    /// A tick of the transactional workload.
    TxnTick,
    /// A tick of the `[pipeline]` processes.
    PipelineTick,
}

enum Actor {
    Broker(Box<Broker>),
    Controller(Box<Controller>),
    Producer(Box<Producer>),
    Consumer(Box<Consumer>),
    TxnProducer(Box<trial_model::txn::TxnProducer>),
    Pipeline(Box<trial_model::txn::pipeline::Pipeline>),
}

enum Durable {
    Broker(BrokerDisk),
    Controller(ControllerDisk),
    /// A consumer keeps nothing: its progress is the group's committed offsets.
    Consumer,
    /// An application's process keeps nothing either; its restart makes new clients.
    App,
    /// Transactional producer N's application: its restart is a new producer instance.
    TxnProducer(u32),
    /// Pipeline process N: its restart is a new consumer and producer instance.
    Pipeline(u32),
}

enum Life {
    Up(Actor),
    /// Process gone; `machine_up` says whether the host still answers (kill) or not (power).
    Down {
        durable: Durable,
        machine_up: bool,
    },
}

struct Node {
    id: NodeId,
    life: Life,
    paused: bool,
    inbox: Vec<(NodeId, Message)>,
    clock_offset_ms: i64,
    timer_generation: u64,
    timer_at: Option<Millis>,
    /// The armed timer has no queue entry: the producer tick at `timer_at` runs it.
    timer_on_tick: bool,
    incarnation: u64,
    /// A restart came while the broker was still in its controlled shutdown: it starts
    /// again as soon as it stopped.
    restart_when_stopped: bool,
    /// A graceful stop (SIGTERM) came while the node was paused: it is delivered when the
    /// node resumes, as a stopped process takes its pending signals on SIGCONT.
    shutdown_when_resumed: bool,
}

struct ProducerLoad {
    node: usize,
    spec: usize,
    interval_ms: u64,
    per_tick: f64,
    carry: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub events: u64,
    pub messages: u64,
    pub sim_time_ms: u64,
}

/// Whether `run` stopped normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Finished,
    /// The run hit `EVENTS_MAX` (a livelock in the model or the scenario).
    EventLimit,
}

/// A broker's disk at the end of a run and the high watermark of each of its partitions.
type FinalDisk = (BrokerDisk, Vec<(TopicPartition, Offset)>);

pub struct RunOutput {
    pub history: History,
    pub trace_hash: u64,
    pub stats: RunStats,
    pub faults: Vec<ScheduledFault>,
    pub stop: Stop,
    /// One history per consumer group, in declaration order.
    pub groups: Vec<crate::groups::GroupHistory>,
    /// Each group's lag over time.
    pub lag: Vec<groups::LagSeries>,
    /// The `[pipeline]`'s consumer group (memberships and rebalances only).
    pub pipeline_group: Option<crate::groups::GroupHistory>,
}

/// A multiply-xorshift hash over the run's events, one 64-bit word at a time: equal for
/// equal runs, cheap enough for every event.
struct TraceHash(u64);

impl TraceHash {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
}

pub struct Engine<'a> {
    scenario: &'a Scenario,
    now: Millis,
    queue: CalendarQueue,
    slab: Vec<Option<EventKind>>,
    free_slots: Vec<u32>,
    nodes: Vec<Node>,
    producers: Vec<ProducerLoad>,
    consumers: groups::Consumers,
    apps: apps::Apps,
    txns: txns::TxnProducers,
    pipelines: pipeline::Pipelines,
    /// Producers grouped by send interval (indices into `producers`).
    tick_groups: Vec<Vec<usize>>,
    brokers: usize,
    controller_index: usize,
    // network
    latency_ms: (u64, u64),
    loss: f64,
    duplicate: f64,
    drop_kinds: Vec<(MessageKind, f64)>,
    delay_kinds: Vec<(MessageKind, (u64, u64), f64)>,
    blocked: Vec<bool>,
    link_last: Vec<Millis>,
    /// Per link (both directions of a pair alike): whether a TCP connection is open.
    connected: Vec<bool>,
    /// Per link: until when a failing connection attempt is pending (see `open_connection`).
    connect_failing_until: Vec<Millis>,
    /// Per link: bumped whenever its connection opens or closes (voids stale attempts).
    link_epoch: Vec<u32>,
    net_rng: ChaCha8Rng,
    workload_rng: ChaCha8Rng,
    producing: bool,
    liveness_deadline: Millis,
    finished: bool,
    history: History,
    monitor: InvariantMonitor,
    hash: TraceHash,
    stats: RunStats,
    trace: Option<&'a mut dyn TraceSink>,
    /// Driven by another host (madsim): messages leave through here for that host to
    /// carry; the queue keeps their place in the order.
    external: Option<Vec<host::Outgoing>>,
    carried: u64,
}

impl<'a> Engine<'a> {
    pub fn new(
        scenario: &'a Scenario,
        seed: u64,
        trace: Option<&'a mut dyn TraceSink>,
    ) -> (Engine<'a>, Vec<ScheduledFault>) {
        Engine::build(scenario, seed, trace, false)
    }

    fn build(
        scenario: &'a Scenario,
        seed: u64,
        trace: Option<&'a mut dyn TraceSink>,
        external: bool,
    ) -> (Engine<'a>, Vec<ScheduledFault>) {
        let seeds = SubSeeds::derive(seed);
        let mut placement_rng = ChaCha8Rng::seed_from_u64(seeds.placement);
        let broker_ids: Vec<NodeId> = (0..scenario.brokers).map(NodeId).collect();
        let n = scenario.brokers as usize;
        // Kafka draws a random start index and replica shift per topic creation.
        let draws: Vec<(usize, usize)> = scenario
            .topics
            .iter()
            .map(|_| ((placement_rng.next_u32() as usize) % n, (placement_rng.next_u32() as usize) % n))
            .collect();
        let controller_disk = ControllerDisk::with_topics(&broker_ids, &scenario.topics, &draws);
        let mut nodes = Vec::new();
        for id in &broker_ids {
            let broker =
                Broker::new(*id, CONTROLLER_ID, scenario.broker.clone(), BrokerDisk::default(), 1, Millis::ZERO);
            nodes.push(Node::new(*id, Actor::Broker(Box::new(broker))));
        }
        let controller = Controller::new(CONTROLLER_ID, scenario.controller.clone(), controller_disk, Millis::ZERO);
        nodes.push(Node::new(CONTROLLER_ID, Actor::Controller(Box::new(controller))));
        let controller_index = nodes.len() - 1;
        let mut producers = Vec::new();
        for (index, spec) in scenario.producers.iter().enumerate() {
            let id = NodeId(PRODUCER_BASE + index as u32);
            let producer = Producer::new(id, spec.config.clone(), broker_ids.clone());
            nodes.push(Node::new(id, Actor::Producer(Box::new(producer))));
            // Whole milliseconds between sends; several records per tick above 1,000/s.
            let interval_ms = ((1_000.0 / spec.rate).floor() as u64).max(1);
            let per_tick = spec.rate * interval_ms as f64 / 1_000.0;
            producers.push(ProducerLoad { node: nodes.len() - 1, spec: index, interval_ms, per_tick, carry: 0.0 });
        }
        let consumers = groups::Consumers::start(scenario, &broker_ids, &mut nodes);
        let txns = txns::TxnProducers::start(scenario, &broker_ids, &mut nodes);
        let pipelines = pipeline::Pipelines::start(scenario, &broker_ids, &mut nodes);
        let count = nodes.len();
        let mut fault_rng = ChaCha8Rng::seed_from_u64(seeds.faults);
        let mut faults = scenario.faults.clone();
        if let Some(nemesis) = &scenario.nemesis {
            faults.extend(draw_nemesis(nemesis, scenario.brokers, scenario.duration_ms, &mut fault_rng));
            faults.sort_by_key(|f| f.at_ms);
        }
        let mut engine = Engine {
            scenario,
            now: Millis::ZERO,
            queue: CalendarQueue::default(),
            slab: Vec::with_capacity(1 << 16),
            free_slots: Vec::new(),
            nodes,
            producers,
            consumers,
            apps: apps::Apps::default(),
            txns,
            pipelines,
            tick_groups: Vec::new(),
            brokers: n,
            controller_index,
            latency_ms: scenario.network.latency_ms,
            loss: scenario.network.loss,
            duplicate: scenario.network.duplicate,
            drop_kinds: Vec::new(),
            delay_kinds: Vec::new(),
            blocked: vec![false; count * count],
            link_last: vec![Millis::ZERO; count * count],
            connected: vec![false; count * count],
            connect_failing_until: vec![Millis::ZERO; count * count],
            link_epoch: vec![0; count * count],
            net_rng: ChaCha8Rng::seed_from_u64(seeds.network),
            workload_rng: ChaCha8Rng::seed_from_u64(seeds.workload),
            producing: true,
            liveness_deadline: Millis(scenario.duration_ms.saturating_add(scenario.liveness_ms)),
            finished: false,
            history: History::default(),
            monitor: InvariantMonitor::default(),
            hash: TraceHash(0xcbf2_9ce4_8422_2325),
            stats: RunStats::default(),
            trace,
            external: external.then(Vec::new),
            carried: 0,
        };
        for fault in &faults {
            engine.push(Millis(fault.at_ms), EventKind::Fault(fault.fault.clone()));
        }
        engine.push(Millis(scenario.duration_ms), EventKind::EndSafety);
        if !scenario.groups.is_empty() {
            engine.push(Millis(groups::LAG_SAMPLE_MS), EventKind::SampleLag);
        }
        if scenario.transactions.is_some() {
            engine.push(Millis(1), EventKind::TxnTick);
        }
        if scenario.pipeline.is_some() {
            engine.push(Millis(1), EventKind::PipelineTick);
        }
        for index in 0..engine.producers.len() {
            let interval = engine.producers[index].interval_ms;
            match engine.tick_groups.iter().position(|g| engine.producers[g[0]].interval_ms == interval) {
                Some(group) => engine.tick_groups[group].push(index),
                None => engine.tick_groups.push(vec![index]),
            }
            // Armed here, before the tick events are queued: the order of the queue at
            // time 0, and so the golden trace hash, depends on it.
            let node = engine.producers[index].node;
            engine.reschedule(node);
        }
        for group in 0..engine.tick_groups.len() {
            engine.push(Millis(1), EventKind::Produce { group });
        }
        for index in 0..count {
            engine.reschedule(index);
        }
        (engine, faults)
    }

    fn push(&mut self, at: Millis, kind: EventKind) {
        let kind = match (kind, &mut self.external) {
            (EventKind::Deliver { from, to, incarnation, msg }, Some(outgoing)) => {
                // Another host carries the message; the queue keeps its place in the order.
                self.carried += 1;
                let token = self.carried;
                let kind = msg.kind();
                outgoing.push(host::Outgoing { token, from, to, at, incarnation, msg });
                EventKind::Carried { from, to, incarnation, kind, token }
            }
            (kind, _) => kind,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(kind);
                slot
            }
            None => {
                self.slab.push(Some(kind));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(at.0, slot);
    }

    fn pop(&mut self) -> Option<(Millis, EventKind)> {
        let (at, slot) = self.queue.pop()?;
        self.free_slots.push(slot);
        // Every queued slot holds its event until popped, once.
        let kind = self.slab[slot as usize].take()?;
        Some((Millis(at), kind))
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        if (id.0 as usize) < self.brokers {
            return Some(id.0 as usize);
        }
        if id == CONTROLLER_ID {
            return Some(self.controller_index);
        }
        if let Some(index) = id.0.checked_sub(pipeline::PIPELINE_BASE) {
            return self.pipelines.nodes.get(index as usize).copied();
        }
        if let Some(index) = id.0.checked_sub(txns::TXN_PRODUCER_BASE) {
            return self.txns.nodes.get(index as usize).copied();
        }
        if let Some(app) = id.0.checked_sub(APP_BASE) {
            return self.apps.slots.get(app as usize).map(|slot| slot.node);
        }
        if let Some(consumer) = id.0.checked_sub(CONSUMER_BASE) {
            return self.consumers.slots.get(consumer as usize).map(|slot| slot.node);
        }
        let producer = id.0.checked_sub(PRODUCER_BASE)? as usize;
        (producer < self.producers.len()).then(|| self.controller_index + 1 + producer)
    }

    fn local_now(&self, node: usize) -> Millis {
        let offset = self.nodes[node].clock_offset_ms;
        Millis(self.now.0.saturating_add_signed(offset))
    }

    /// Runs the safety phase, heals everything, runs the liveness phase until the cluster
    /// converges (or `liveness_ms` runs out), and returns the history.
    pub fn run(mut self) -> RunOutput {
        let mut stop = Stop::Finished;
        while let Some((at, kind)) = self.pop() {
            if let Err(reason) = self.step(at, kind, None) {
                stop = reason;
                break;
            }
        }
        self.finish(stop)
    }

    /// Runs one event popped from the queue (both hosts); `carried` as for `dispatch`.
    fn step(&mut self, at: Millis, kind: EventKind, carried: Option<Message>) -> Result<(), Stop> {
        if self.finished {
            return Err(Stop::Finished);
        }
        if self.stats.events >= EVENTS_MAX {
            return Err(Stop::EventLimit);
        }
        self.stats.events += 1;
        assert!(at >= self.now, "simulated time never goes back");
        self.now = at;
        self.dispatch(at, kind, carried);
        Ok(())
    }

    /// `carried`: the message of a `Carried` event, as the other host delivered it (none
    /// when it was lost with a killed process, which the model drops too).
    fn dispatch(&mut self, at: Millis, kind: EventKind, carried: Option<Message>) {
        self.hash.add(at.0);
        match kind {
            EventKind::Deliver { from, to, incarnation, msg } => {
                self.arrive(from, to, incarnation, msg.kind(), Some(msg))
            }
            EventKind::Carried { from, to, incarnation, kind, .. } => self.arrive(from, to, incarnation, kind, carried),
            EventKind::Timer { node, generation } => {
                if self.nodes[node].timer_generation != generation || self.nodes[node].paused {
                    return;
                }
                self.fire(node);
            }
            EventKind::Produce { group } => self.produce_tick(group),
            EventKind::ConnectFailed { from, to, incarnation, link, epoch } => {
                self.connect_failed(from, to, incarnation, link, epoch)
            }
            EventKind::Fault(fault) => {
                self.hash.add(0xfa00_0000);
                self.apply_fault(fault);
            }
            EventKind::EndSafety => self.end_safety(),
            EventKind::TxnTick => self.txn_tick(),
            EventKind::PipelineTick => self.pipeline_tick(),
            EventKind::SampleLag => {
                self.sample_lag();
                self.push(self.now.plus(groups::LAG_SAMPLE_MS), EventKind::SampleLag);
            }
            EventKind::CheckConvergence => {
                if !self.check_convergence() {
                    self.push(self.now.plus(CONVERGENCE_CHECK_MS), EventKind::CheckConvergence);
                }
            }
        }
    }

    /// The liveness phase ends once the cluster converged or its time ran out; returns
    /// whether it ended (both hosts).
    fn check_convergence(&mut self) -> bool {
        if self.converged() {
            self.history.converged = true;
            self.finished = true;
        } else if self.now >= self.liveness_deadline {
            self.finished = true;
        }
        self.finished
    }

    /// A message of `kind` reaches node `to` (both hosts). `msg` is none when another
    /// host lost it with a killed process: the model drops such a message anyway (the
    /// life it was sent to is over), so it only counts.
    fn arrive(&mut self, from: NodeId, to: usize, incarnation: u64, kind: MessageKind, msg: Option<Message>) {
        self.hash.add(((from.0 as u64) << 32) | ((self.nodes[to].id.0 as u64) << 8) | kind as u64);
        self.stats.messages += 1;
        if let Some(msg) = msg.filter(|_| incarnation == self.nodes[to].incarnation) {
            self.deliver(from, to, msg);
        }
    }

    /// Node `node`'s armed timer fires (both hosts).
    fn fire(&mut self, node: usize) {
        self.hash.add(0x7100_0000 | node as u64);
        self.nodes[node].timer_at = None;
        if self.timeout_actor(node) {
            self.after_input(node);
        }
    }

    /// Hands the node's actor a timeout; false when the node has no process.
    fn timeout_actor(&mut self, node: usize) -> bool {
        let now = self.local_now(node);
        match &mut self.nodes[node].life {
            Life::Up(Actor::Broker(b)) => b.handle_timeout(now),
            Life::Up(Actor::Controller(c)) => c.handle_timeout(now),
            Life::Up(Actor::Producer(p)) => p.handle_timeout(now),
            Life::Up(Actor::Consumer(c)) => c.handle_timeout(now),
            Life::Up(Actor::TxnProducer(p)) => p.handle_timeout(now),
            Life::Up(Actor::Pipeline(p)) => p.handle_timeout(now),
            Life::Down { .. } => return false,
        }
        true
    }

    fn deliver(&mut self, from: NodeId, to: usize, msg: Message) {
        let node = &mut self.nodes[to];
        match &node.life {
            // Sent before the crash: the crash already reset the sender's connection.
            Life::Down { .. } => return,
            Life::Up(_) if node.paused => {
                if node.inbox.len() < PAUSED_INBOX_MAX {
                    node.inbox.push((from, msg));
                }
                return;
            }
            Life::Up(_) => {}
        }
        let now = self.local_now(to);
        match &mut self.nodes[to].life {
            Life::Up(Actor::Broker(b)) => b.handle_message(now, from, msg),
            Life::Up(Actor::Controller(c)) => c.handle_message(now, from, msg),
            Life::Up(Actor::Producer(p)) => p.handle_message(now, from, msg),
            Life::Up(Actor::Consumer(c)) => c.handle_message(now, from, msg),
            Life::Up(Actor::TxnProducer(p)) => p.handle_message(now, from, msg),
            Life::Up(Actor::Pipeline(p)) => p.handle_message(now, from, msg),
            Life::Down { .. } => return,
        }
        self.after_input(to);
    }

    /// Drains the node's actions and re-arms its timer.
    fn after_input(&mut self, node: usize) {
        let from = self.nodes[node].id;
        // One action at a time, straight from the actor: carrying one out only queues
        // events and records history, never feeds the actor, so the order is the same as
        // draining them all first, without moving each action through a buffer.
        loop {
            let action = match &mut self.nodes[node].life {
                Life::Up(Actor::Broker(b)) => b.poll_action(),
                Life::Up(Actor::Controller(c)) => c.poll_action(),
                Life::Up(Actor::Producer(p)) => p.poll_action(),
                Life::Up(Actor::Consumer(c)) => c.poll_action(),
                Life::Up(Actor::TxnProducer(p)) => p.poll_action(),
                Life::Up(Actor::Pipeline(p)) => p.poll_action(),
                Life::Down { .. } => None,
            };
            let Some(action) = action else { break };
            match action {
                Action::Send { to, msg } => {
                    if let Some(target) = self.index_of(to) {
                        self.transmit(from, target, msg);
                    }
                }
                Action::Ack { write, tp, outcome } => self.record_ack(write, tp, outcome),
                Action::Event(event) => self.record_event(node, event),
                Action::Group(event) => self.route_group_event(node, *event),
                Action::Processed { tp, offset, write } => {
                    self.route_group_event(node, GroupEvent::Processed { tp, offset, write })
                }
                // The clients' ends of transactions; the coordinators' events stay out
                // of the history (the checkers judge what clients and readers see).
                Action::Txn(event) => {
                    let app = self.apps.slot_of(node);
                    if let (Some(app), trial_model::txn::TxnEvent::Ended { txn, outcome, error, .. }) = (app, &*event) {
                        self.push_txn_end(app, *txn, *outcome, *error);
                    }
                    if self.txns.slot_of(node).is_some() || self.pipelines.slot_of(node).is_some() || app.is_some() {
                        self.record_txn_event(*event);
                    }
                }
                Action::Stopped => {
                    self.stopped(node);
                    break;
                }
            }
        }
        self.reschedule(node);
    }

    /// A group happening of `node`: the pipeline's group keeps its own history.
    fn route_group_event(&mut self, node: usize, event: GroupEvent) {
        match self.pipelines.slot_of(node) {
            Some(slot) => self.record_pipeline_group_event(slot, event),
            None => self.record_group_event(node, event),
        }
    }

    fn reschedule(&mut self, node: usize) {
        let offset = self.nodes[node].clock_offset_ms;
        let deadline = match &self.nodes[node].life {
            Life::Up(Actor::Broker(b)) => b.poll_timeout(),
            Life::Up(Actor::Controller(c)) => c.poll_timeout(),
            Life::Up(Actor::Producer(p)) => p.poll_timeout(),
            Life::Up(Actor::Consumer(c)) => c.poll_timeout(),
            Life::Up(Actor::TxnProducer(p)) => p.poll_timeout(),
            Life::Up(Actor::Pipeline(p)) => p.poll_timeout(),
            Life::Down { .. } => None,
        };
        // Local deadline to global time; a deadline already due fires one tick later so a
        // node that cannot make progress yet does not spin.
        let global = deadline.map(|d| Millis(d.0.saturating_add_signed(-offset)).max(self.now.plus(1)));
        let node_ref = &mut self.nodes[node];
        // An armed timer that fires no later than needed stays: firing early is harmless
        // (handlers check their own deadlines) and costs less than a new queue entry.
        let keep = match (node_ref.timer_at, global) {
            (Some(armed), Some(wanted)) => armed <= wanted,
            (armed, wanted) => armed == wanted,
        };
        if keep {
            return;
        }
        node_ref.timer_generation += 1;
        node_ref.timer_at = global;
        node_ref.timer_on_tick = false;
        let Some(at) = global else { return };
        if self.on_producer_tick(node, at) {
            // The tick at `at` runs this timeout first: a producer's linger deadlines fall
            // on its ticks, and this saves a queue entry and a dispatch for each of them.
            self.nodes[node].timer_on_tick = true;
            return;
        }
        let generation = self.nodes[node].timer_generation;
        self.push(at, EventKind::Timer { node, generation });
    }

    /// Whether `node` is a producer whose workload ticks at `at` (ticks run at
    /// 1 + k·interval ms while the safety phase lasts).
    fn on_producer_tick(&self, node: usize, at: Millis) -> bool {
        let Some(load) = node.checked_sub(self.controller_index + 1).and_then(|i| self.producers.get(i)) else {
            return false;
        };
        self.producing && at.0 >= 1 && at.0 < self.scenario.duration_ms && (at.0 - 1).is_multiple_of(load.interval_ms)
    }

    /// Runs a producer's timeout that was left to this tick (see `reschedule`).
    fn run_timer_on_tick(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        if !slot.timer_on_tick || slot.paused || slot.timer_at.is_none_or(|at| at > self.now) {
            return;
        }
        slot.timer_on_tick = false;
        slot.timer_at = None;
        self.hash.add(0x7100_0000 | node as u64);
        let now = self.local_now(node);
        if let Life::Up(Actor::Producer(p)) = &mut self.nodes[node].life {
            p.handle_timeout(now);
            self.after_input(node);
        }
    }

    /// One tick of a group of producers that share a send interval: one queue entry per
    /// tick, not one per producer.
    fn produce_tick(&mut self, group: usize) {
        if !self.producing {
            return;
        }
        let members = std::mem::take(&mut self.tick_groups[group]);
        let interval = self.producers[members[0]].interval_ms;
        self.push(self.now.plus(interval), EventKind::Produce { group });
        for index in &members {
            self.tick_one(*index);
        }
        self.tick_groups[group] = members;
    }

    fn tick_one(&mut self, index: usize) {
        self.run_timer_on_tick(self.producers[index].node);
        let load = &mut self.producers[index];
        load.carry += load.per_tick;
        let count = load.carry.floor() as u64;
        load.carry -= count as f64;
        let (node, spec_index) = (load.node, load.spec);
        let spec = &self.scenario.producers[spec_index];
        if self.nodes[node].paused || count == 0 {
            return;
        }
        let now = self.local_now(node);
        for _ in 0..count {
            let key = (spec.keys > 0).then(|| (self.workload_rng.next_u64() % spec.keys as u64) as u32);
            let draw = self.workload_rng.next_u64();
            let write = self.invoke(spec_index as u32, spec.topic, key);
            if let Life::Up(Actor::Producer(p)) = &mut self.nodes[node].life {
                p.send(now, write, spec.topic, key, draw);
            }
        }
        self.hash.add(0x5e00_0000 | count);
        self.after_input(node);
    }

    /// A new write of history producer `producer`: its operation (invoked now) and its
    /// trace line; the write id is the next one.
    fn invoke(&mut self, producer: u32, topic: trial_model::TopicId, key: Option<u32>) -> WriteId {
        let write = WriteId(self.history.ops.len() as u64);
        self.history.ops.push(Op { write, producer, topic, key, invoked_at: self.now, completed: None });
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.invoke(self.now, write, producer, key);
        }
        write
    }

    fn record_ack(&mut self, write: WriteId, tp: Option<TopicPartition>, outcome: trial_model::WriteOutcome) {
        self.hash.add(write.0 ^ 0xac00_0000_0000);
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.complete(self.now, write, tp, outcome);
        }
        if let Some(op) = self.history.ops.get_mut(write.0 as usize) {
            if op.completed.is_none() {
                op.completed = Some(Completion { at: self.now, tp, outcome });
            }
            if op.producer as usize >= self.producers.len() && op.producer < txns::TXN_HISTORY_BASE {
                self.apps.acks.push((write, tp, outcome));
            }
        }
    }

    fn record_event(&mut self, node: usize, event: ClusterEvent) {
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.event(self.now, &event);
        }
        if let Some(violation) = self.monitor.observe(&event) {
            if let Some(trace) = self.trace.as_deref_mut() {
                trace.happening(self.now, &violation);
            }
            self.history.push(self.now, violation);
        }
        match &event {
            ClusterEvent::HighWatermark { tp, leader: true, high_watermark, .. } => {
                self.note_readable(node, *tp, *high_watermark);
            }
            ClusterEvent::HighWatermark { .. } => {}
            _ => self.history.push(self.now, Happening::Cluster { event }),
        }
    }

    /// Records what a consumer could now read: the leader's records below its new HW.
    fn note_readable(&mut self, node: usize, tp: TopicPartition, hw: Offset) {
        let Life::Up(Actor::Broker(b)) = &self.nodes[node].life else {
            return;
        };
        let Some(log) = b.log(tp) else { return };
        let readable = self.history.readable.get_or_default(tp);
        let from = readable.len() as u64;
        for offset in from..hw.0 {
            match log.entry(Offset(offset)) {
                Some(entry) => readable.push(entry.record.write),
                None => break,
            }
        }
    }

    fn end_safety(&mut self) {
        self.history.safety_end = self.now;
        self.history.push(
            self.now,
            Happening::Phase {
                phase: "liveness: network healed, every node restarted and resumed, producers stopped".into(),
            },
        );
        self.producing = false;
        // Ticks stop here: timers left to them get queue entries of their own.
        for node in 0..self.nodes.len() {
            if self.nodes[node].timer_on_tick {
                self.nodes[node].timer_on_tick = false;
                self.nodes[node].timer_at = None;
                self.reschedule(node);
            }
        }
        self.heal_network();
        for node in self.closed_consumers() {
            self.restart(node);
        }
        for node in 0..self.nodes.len() {
            self.nodes[node].clock_offset_ms = 0;
            if self.nodes[node].paused {
                self.resume(node);
            }
            // (a broker still in its controlled shutdown starts again once it stopped)
            if matches!(self.nodes[node].life, Life::Down { .. }) || self.shutting_down(node) {
                self.restart(node);
            }
        }
        self.push(self.now.plus(CONVERGENCE_CHECK_MS), EventKind::CheckConvergence);
    }

    /// Converged: no write outstanding, every partition led, every replica in the ISR and
    /// level with the leader, and every HW at the log end.
    fn converged(&self) -> bool {
        for node in &self.nodes {
            match &node.life {
                Life::Up(Actor::Producer(p)) if p.outstanding() > 0 => return false,
                Life::Up(Actor::TxnProducer(p)) if p.running().is_some() => return false,
                _ => {}
            }
        }
        // No op-by-op scan: a producer counts every write until it is answered.
        let Life::Up(Actor::Controller(controller)) = &self.nodes[self.controller_index].life else {
            return false;
        };
        for state in controller.partitions() {
            let Some(leader) = state.leader else {
                return false;
            };
            if state.isr.len() != state.replicas.len() {
                return false;
            }
            // The coordinators write to `__consumer_offsets` for as long as consumers commit:
            // it is never at rest, so it only needs a leader and a full ISR.
            if self.scenario.broker.groups.as_ref().is_some_and(|g| g.offsets_topic == state.tp.topic) {
                continue;
            }
            let Some(leader_end) = self.broker(leader).and_then(|b| b.log(state.tp)).map(|l| l.log_end_offset()) else {
                return false;
            };
            for replica in &state.replicas {
                let Some(broker) = self.broker(*replica) else {
                    return false;
                };
                let end = broker.log(state.tp).map_or(Offset(0), |l| l.log_end_offset());
                if end != leader_end || broker.high_watermark(state.tp) != Some(leader_end) {
                    return false;
                }
            }
        }
        self.groups_caught_up() && self.pipeline_caught_up()
    }

    fn broker(&self, id: NodeId) -> Option<&Broker> {
        match &self.nodes.get(id.0 as usize)?.life {
            Life::Up(Actor::Broker(b)) if (id.0 as usize) < self.brokers => Some(b),
            _ => None,
        }
    }
}

impl Node {
    fn new(id: NodeId, actor: Actor) -> Node {
        Node {
            id,
            life: Life::Up(actor),
            paused: false,
            inbox: Vec::new(),
            clock_offset_ms: 0,
            timer_generation: 0,
            timer_at: None,
            timer_on_tick: false,
            incarnation: 1,
            restart_when_stopped: false,
            shutdown_when_resumed: false,
        }
    }
}

/// Runs one scenario with one seed on the engine.
pub fn run<'a>(scenario: &'a Scenario, seed: u64, trace: Option<&'a mut dyn TraceSink>) -> RunOutput {
    let (engine, faults) = Engine::new(scenario, seed, trace);
    let mut output = engine.run();
    output.faults = faults;
    output
}
