//! The simulated network: latency ranges, per-link FIFO (like TCP), partitions, resets,
//! duplication and dropped message kinds.

use super::{Engine, EventKind, Life};
use rand_core::RngCore;
use trial_model::{Message, MessageKind, Millis, NodeId};

/// Kafka's `socket.connection.setup.timeout.ms` default (KIP-601), for clients and
/// brokers alike: how long a connection attempt to an unreachable host takes to fail.
const CONNECTION_SETUP_TIMEOUT_MS: u64 = 10_000;

impl Engine<'_> {
    pub(super) fn transmit(&mut self, from: NodeId, to: usize, msg: Message) {
        let Some(from_index) = self.index_of(from) else {
            return;
        };
        let mut link = from_index * self.nodes.len() + to;
        let back = to * self.nodes.len() + from_index;
        if msg.kind() == MessageKind::ConnectionClosed {
            // Either end closing (or a killed process's kernel) ends the connection, or
            // the closer's attempt to open one.
            self.close_connection(link, back);
        } else if !self.connected[link] && !self.open_connection(from_index, to, link, back) {
            return;
        }
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

    /// A message between two nodes with no connection opens one first. The handshake
    /// needs both directions and a powered host; without them the message is lost and the
    /// sender learns after `socket.connection.setup.timeout.ms` (KIP-601: 10 s), once per
    /// attempt, as Kafka's `NetworkClient` fails the requests queued for that node. An
    /// established connection to a host that went silent (power loss, a partition) gives
    /// no such sign: its requests wait for their own timeouts. Returns whether the message
    /// goes on (delivered, or refused by a host whose process is down).
    fn open_connection(&mut self, from: usize, to: usize, link: usize, back: usize) -> bool {
        let powered = !matches!(self.nodes[to].life, Life::Down { machine_up: false, .. });
        if powered && !self.blocked[link] && !self.blocked[back] {
            if matches!(self.nodes[to].life, Life::Up(_)) {
                self.set_connected(link, back);
            }
            return true;
        }
        if self.now >= self.connect_failing_until[link] {
            let at = self.now.plus(CONNECTION_SETUP_TIMEOUT_MS);
            self.connect_failing_until[link] = at;
            let (refused_by, incarnation, epoch) =
                (self.nodes[to].id, self.nodes[from].incarnation, self.link_epoch[link]);
            self.push(at, EventKind::ConnectFailed { from: refused_by, to: from, incarnation, link, epoch });
        }
        false
    }

    /// A failed connection attempt reaches its sender, unless the link's epoch moved on
    /// since (one end closed it, or a connection opened).
    pub(super) fn connect_failed(&mut self, from: NodeId, to: usize, incarnation: u64, link: usize, epoch: u32) {
        if self.link_epoch[link] == epoch {
            self.arrive(from, to, incarnation, MessageKind::ConnectionClosed, Some(Message::ConnectionClosed));
        }
    }

    /// The pair's connection is up: attempts either way are over.
    fn set_connected(&mut self, link: usize, back: usize) {
        for index in [link, back] {
            self.connected[index] = true;
            self.end_attempt(index);
        }
    }

    /// The node at the start of `link` closes its connection to the other, or gives up
    /// its attempt to open one; an attempt the other end has under way goes on (its
    /// packets still go nowhere).
    fn close_connection(&mut self, link: usize, back: usize) {
        if self.connected[link] {
            self.connected[link] = false;
            self.connected[back] = false;
            self.end_attempt(back);
        }
        self.end_attempt(link);
    }

    fn end_attempt(&mut self, link: usize) {
        self.link_epoch[link] = self.link_epoch[link].wrapping_add(1);
        self.connect_failing_until[link] = Millis::ZERO;
    }

    /// A restarted process holds no connections: its peers' next messages open new ones
    /// (their attempts under way go on; its own died with its last life).
    pub(super) fn forget_connections(&mut self, node: usize) {
        let count = self.nodes.len();
        for other in 0..count {
            self.close_connection(node * count + other, other * count + node);
        }
    }

    pub(super) fn reset_connection(&mut self, a: usize, b: usize) {
        let (a_id, b_id) = (self.nodes[a].id, self.nodes[b].id);
        let count = self.nodes.len();
        self.close_connection(a * count + b, b * count + a);
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
