//! The simulated network: latency ranges, per-link FIFO (like TCP), partitions, resets,
//! duplication and dropped message kinds.

use super::{Engine, EventKind, Life};
use rand_core::RngCore;
use trial_model::{Message, MessageKind, NodeId};

impl Engine<'_> {
    pub(super) fn transmit(&mut self, from: NodeId, to: usize, msg: Message) {
        let Some(from_index) = self.index_of(from) else {
            return;
        };
        let mut link = from_index * self.nodes.len() + to;
        if self.blocked[link] {
            return;
        }
        if self.loss > 0.0 && self.chance(self.loss) {
            // TCP does not lose one message and carry on: a connection that cannot get
            // it through is reset, and both ends learn it (neither knows whether the
            // other side acted on it).
            if msg.kind() != MessageKind::ConnectionClosed {
                self.reset_connection(from_index, to);
            }
            return;
        }
        if !self.drop_kinds.is_empty() {
            let kind = msg.kind();
            if let Some((_, p)) = self.drop_kinds.iter().find(|(k, _)| *k == kind).copied() {
                if self.chance(p) {
                    return;
                }
            }
        }
        let (mut low, mut high) = self.latency_ms;
        if !self.delay_kinds.is_empty() {
            let kind = msg.kind();
            if let Some((_, range, p)) = self.delay_kinds.iter().find(|(k, _, _)| *k == kind).copied() {
                if self.chance(p) {
                    (low, high) = range;
                }
            }
        }
        let mut msg = msg;
        let mut from = from;
        let mut to = to;
        match &self.nodes[to].life {
            Life::Down { machine_up: false, .. } => return,
            Life::Down { machine_up: true, .. } => {
                // A host whose process is gone refuses the connection: the sender learns
                // it one network delay later.
                if msg.kind() == MessageKind::ConnectionClosed {
                    return;
                }
                msg = Message::ConnectionClosed;
                let refused_by = self.nodes[to].id;
                link = to * self.nodes.len() + from_index;
                to = from_index;
                from = refused_by;
            }
            Life::Up(_) => {}
        }
        let latency = if high > low { low + self.net_rng.next_u64() % (high - low + 1) } else { low };
        // TCP keeps a link's messages in order: nothing overtakes what was sent before.
        let at = self.now.plus(latency).max(self.link_last[link]);
        self.link_last[link] = at;
        let incarnation = self.nodes[to].incarnation;
        if self.duplicate > 0.0 && self.chance(self.duplicate) {
            self.push(at.plus(1), EventKind::Deliver { from, to, incarnation, msg: msg.clone() });
        }
        self.push(at, EventKind::Deliver { from, to, incarnation, msg });
    }

    pub(super) fn reset_connection(&mut self, a: usize, b: usize) {
        let (a_id, b_id) = (self.nodes[a].id, self.nodes[b].id);
        for (from, to) in [(a_id, b), (b_id, a)] {
            if matches!(self.nodes[to].life, Life::Up(_)) {
                let latency = self.latency_ms.1.max(1);
                let incarnation = self.nodes[to].incarnation;
                self.push(
                    self.now.plus(latency),
                    EventKind::Deliver { from, to, incarnation, msg: Message::ConnectionClosed },
                );
            }
        }
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        ((self.net_rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub(super) fn heal_network(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.loss = self.scenario.network.loss;
        self.duplicate = self.scenario.network.duplicate;
        self.latency_ms = self.scenario.network.latency_ms;
        self.drop_kinds.clear();
        self.delay_kinds.clear();
        if !self.producing {
            // The liveness phase runs on a clean network.
            self.loss = 0.0;
            self.duplicate = 0.0;
        }
    }
}
