//! Application nodes of the madsim host: a process running the user's async code with
//! a model [`Producer`] as its client. Its writes are history operations like the
//! workload's; killing it kills the client, and what it had not heard back about ends
//! as indefinite (Jepsen's `info`), since nobody is left to learn the outcome.

use super::{Actor, Engine, Life, Node, APP_BASE};
use crate::history::{Completion, Op};
use rand_core::RngCore;
use trial_model::{
    ErrorCode, Millis, NodeId, Producer, ProducerConfig, TopicId, TopicPartition, WriteId, WriteOutcome,
};

#[derive(Default)]
pub(super) struct Apps {
    pub(super) slots: Vec<AppSlot>,
    /// Outcomes of application writes not yet handed to the application.
    pub(super) acks: Vec<(WriteId, Option<TopicPartition>, WriteOutcome)>,
}

pub(super) struct AppSlot {
    pub(super) node: usize,
    pub(super) name: String,
    pub(super) config: ProducerConfig,
}

impl Apps {
    pub(super) fn hosts(&self, node: usize) -> bool {
        self.slots.iter().any(|slot| slot.node == node)
    }

    pub(super) fn new_producer(&self, node: usize, id: NodeId, brokers: usize) -> Producer {
        let config = self.slots.iter().find(|slot| slot.node == node).map(|slot| slot.config.clone());
        Producer::new(id, config.unwrap_or_default(), (0..brokers as u32).map(NodeId).collect())
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
        self.apps.slots.push(AppSlot { node, name: name.to_string(), config });
        let count = self.nodes.len();
        // Links are indexed by node pairs: nothing is blocked or in flight yet.
        self.blocked = vec![false; count * count];
        self.link_last = vec![Millis::ZERO; count * count];
        self.reschedule(node);
        index
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
                write
            }
            None => {
                let write = WriteId(self.history.ops.len() as u64);
                self.history.ops.push(Op { write, producer, topic, key, invoked_at: self.now, completed: None });
                write
            }
        };
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.invoke(self.now, write, producer, key);
        }
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
        let Some(app) = self.apps.slots.iter().position(|slot| slot.node == node) else {
            return;
        };
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
