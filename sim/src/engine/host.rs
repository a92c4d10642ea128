//! The engine driven by another host (the madsim host): the same nodes, network model,
//! faults, queue, history and checkers, but the messages travel on the other host's
//! network and its clock decides when each event is due.
//!
//! Every message a node sends leaves through [`Engine::take_outgoing`] with a token;
//! the queue keeps a `Carried` event in its place, so events run in the engine's own
//! (time, sequence) order and a run on the other host is the same run: same history,
//! same verdicts, same trace hash. The host calls [`Engine::peek_external`] to learn what
//! is next, waits until its own clock, network and timers have brought that about, and
//! then calls [`Engine::step_external`] with the message its network carried.

use super::{Engine, EventKind, Life, RunOutput, Stop};
use crate::faults::ScheduledFault;
use crate::scenario::Scenario;
use crate::trace::TraceSink;
use trial_model::{Message, Millis, NodeId};

/// A message on its way: from node id `from` to node index `to`, due at `at`, for the
/// destination's life `incarnation`; `token` names its place in the queue.
#[derive(Debug)]
pub struct Outgoing {
    pub token: u64,
    pub from: NodeId,
    pub to: usize,
    pub at: Millis,
    pub incarnation: u64,
    pub msg: Message,
}

/// What a node is, for the host that gives it a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    Broker,
    Controller,
    Producer,
    Consumer,
    /// An application node of the madsim host.
    App,
    /// A transactional producer of `[transactions]`.
    TxnProducer,
    /// A process of the `[pipeline]`.
    Pipeline,
}

/// The next event, as far as the host has to bring it about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Message `token` arrives at node `to`; `expected` when the model would deliver it
    /// (the destination runs the life it was sent to), so its network must carry it.
    Carried { token: u64, to: usize, expected: bool },
    /// Node `node`'s timer fires; `live` when it is still armed (the node's driver
    /// reports the expiry), not a stale entry the model skips.
    Timer { node: usize, live: bool },
    /// Anything the model does by itself: a producer tick, a fault, a phase change.
    Other,
}

impl<'a> Engine<'a> {
    /// An engine for another host: messages leave through `take_outgoing`.
    pub fn external(
        scenario: &'a Scenario,
        seed: u64,
        trace: Option<&'a mut dyn TraceSink>,
    ) -> (Engine<'a>, Vec<ScheduledFault>) {
        Engine::build(scenario, seed, trace, true)
    }

    /// The next event and its instant, left in the queue.
    pub fn peek_external(&self) -> Option<(Millis, Next)> {
        let (at, slot) = self.queue.peek()?;
        let next = match self.slab[slot as usize].as_ref()? {
            EventKind::Carried { to, incarnation, token, .. } => {
                let node = &self.nodes[*to];
                let expected = matches!(node.life, Life::Up(_)) && node.incarnation == *incarnation;
                Next::Carried { token: *token, to: *to, expected }
            }
            EventKind::Timer { node, generation } => {
                let slot = &self.nodes[*node];
                Next::Timer { node: *node, live: slot.timer_generation == *generation && !slot.paused }
            }
            _ => Next::Other,
        };
        Some((Millis(at), next))
    }

    /// Runs the next event; `carried` is the message of a `Carried` event as the host's
    /// network delivered it (none when it was lost with a killed process).
    pub fn step_external(&mut self, carried: Option<Message>) -> Result<(), Stop> {
        let Some((at, kind)) = self.pop() else {
            return Err(Stop::Finished);
        };
        self.step(at, kind, carried)
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        self.external.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_id(&self, node: usize) -> NodeId {
        self.nodes[node].id
    }

    /// The node index of node id `id`.
    pub fn node_index(&self, id: NodeId) -> Option<usize> {
        self.index_of(id)
    }

    pub fn node_role(&self, node: usize) -> NodeRole {
        if node < self.brokers {
            NodeRole::Broker
        } else if node == self.controller_index {
            NodeRole::Controller
        } else if self.is_app(node) {
            NodeRole::App
        } else if self.txns.slot_of(node).is_some() {
            NodeRole::TxnProducer
        } else if self.pipelines.slot_of(node).is_some() {
            NodeRole::Pipeline
        } else if node <= self.controller_index + self.producers.len() {
            NodeRole::Producer
        } else {
            NodeRole::Consumer
        }
    }

    /// Whether the node's process runs (not killed, not without power).
    pub fn is_up(&self, node: usize) -> bool {
        matches!(self.nodes[node].life, Life::Up(_))
    }

    pub fn is_paused(&self, node: usize) -> bool {
        self.nodes[node].paused
    }

    /// The node's armed timer in global time, unless a producer tick runs it.
    pub fn timer_at(&self, node: usize) -> Option<Millis> {
        let slot = &self.nodes[node];
        if slot.timer_on_tick {
            return None;
        }
        slot.timer_at
    }

    pub fn finish_external(self, stop: Stop, faults: Vec<ScheduledFault>) -> RunOutput {
        let mut output = self.finish(stop);
        output.faults = faults;
        output
    }
}
