//! Faults: what can be done to nodes and the network, scheduled in a scenario or drawn by
//! a seeded nemesis.

use crate::scenario::{NemesisKind, NemesisSpec};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use serde::Serialize;
use std::fmt;
use trial_model::{MessageKind, TopicConfig, TopicId, TopicPartition};

/// A node named in a fault, resolved to a node id when the fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Target {
    Broker(u32),
    Controller,
    Producer(u32),
    /// A consumer, counted over every group in declaration order.
    Consumer(u32),
    /// Whichever broker leads this partition when the fault fires.
    LeaderOf(TopicPartition),
    /// An application node of the madsim host, by registration order (its producer's
    /// node and its consumer's).
    App(u32),
    /// Whichever broker coordinates the scenario's group with this index when the fault
    /// fires (the leader of the group's `__consumer_offsets` partition).
    CoordinatorOf(u32),
    /// A transactional producer of the scenario's `[transactions]`, by index.
    TxnProducer(u32),
    /// Whichever broker coordinates transactional producer N's transactional id when the
    /// fault fires (the leader of its `__transaction_state` partition).
    TxnCoordinatorOf(u32),
    /// Process N of the `[pipeline]` (its consumer and its transactional producer).
    Pipeline(u32),
}

impl Target {
    pub fn parse(
        text: &str,
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
    ) -> Result<Target, String> {
        let text = text.trim();
        if text == "controller" {
            return Ok(Target::Controller);
        }
        if let Some(id) = text.strip_prefix("broker:") {
            let id: u32 = id.parse().map_err(|_| format!("`{text}`: broker id must be a number"))?;
            if id >= brokers {
                return Err(format!("`{text}`: the cluster has brokers 0..{}", brokers - 1));
            }
            return Ok(Target::Broker(id));
        }
        if let Some(id) = text.strip_prefix("producer:") {
            let id: u32 = id.parse().map_err(|_| format!("`{text}`: producer index must be a number"))?;
            if id as usize >= producers {
                return Err(format!("`{text}`: the scenario has {producers} producer(s)"));
            }
            return Ok(Target::Producer(id));
        }
        if let Some(id) = text.strip_prefix("consumer:") {
            let id: u32 = id.parse().map_err(|_| format!("`{text}`: consumer index must be a number"))?;
            if id as usize >= consumers {
                return Err(format!("`{text}`: the scenario has {consumers} consumer(s)"));
            }
            return Ok(Target::Consumer(id));
        }
        if let Some(rest) = text.strip_prefix("leader:") {
            let (topic, partition) =
                rest.rsplit_once('/').ok_or_else(|| format!("`{text}`: write leader:TOPIC/PARTITION"))?;
            let index = topics
                .iter()
                .position(|t| t.name == topic)
                .ok_or_else(|| format!("`{text}`: no topic named `{topic}`"))?;
            let partition: u32 = partition.parse().map_err(|_| format!("`{text}`: partition must be a number"))?;
            if partition >= topics[index].partitions {
                return Err(format!("`{text}`: topic `{topic}` has {} partition(s)", topics[index].partitions));
            }
            return Ok(Target::LeaderOf(TopicPartition { topic: TopicId(index as u32), partition }));
        }
        Err(format!("`{text}` is not a node: write \"broker:N\", \"controller\", \"producer:N\", \"consumer:N\" or \"leader:TOPIC/P\""))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Broker(id) => write!(f, "broker:{id}"),
            Target::Controller => write!(f, "controller"),
            Target::Producer(id) => write!(f, "producer:{id}"),
            Target::Consumer(id) => write!(f, "consumer:{id}"),
            Target::App(id) => write!(f, "app:{id}"),
            Target::CoordinatorOf(group) => write!(f, "coordinator-of-group:{group}"),
            Target::TxnProducer(index) => write!(f, "txn-producer:{index}"),
            Target::TxnCoordinatorOf(index) => write!(f, "txn-coordinator:{index}"),
            Target::Pipeline(index) => write!(f, "pipeline:{index}"),
            Target::LeaderOf(tp) => write!(f, "leader:{tp}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Fault {
    /// Kill the process; the page cache survives and peers see connections refused.
    Kill(Target),
    Restart(Target),
    /// Cut the power: unflushed data is gone and peers see silence.
    PowerLoss(Target),
    /// A graceful stop (SIGTERM): a broker's controlled shutdown, then the process exits
    /// with its logs flushed (restart starts it again, once it has stopped).
    Shutdown(Target),
    Pause(Target),
    Resume(Target),
    /// A consumer's graceful `close()`: commit, leave the group, stop (restart rejoins).
    Close(Target),
    /// Cut the node off from every other node, both ways.
    Isolate(Target),
    /// No traffic between nodes of different groups.
    Partition {
        groups: Vec<Vec<Target>>,
    },
    /// Traffic from `from` to `to` is dropped; the other way still flows.
    OneWay {
        from: Vec<Target>,
        to: Vec<Target>,
    },
    /// Heals every network fault (partitions, loss, latency, dropped kinds).
    Heal,
    Loss(f64),
    Duplicate(f64),
    Latency(u64, u64),
    DropKind(MessageKind, f64),
    /// Messages of this kind take `[low, high]` ms instead of the network's latency, with
    /// this probability (a slow path for one request type; links stay FIFO).
    DelayKind(MessageKind, u64, u64, f64),
    ClockOffset(Target, i64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |targets: &[Target]| targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        match self {
            Fault::Kill(t) => write!(f, "kill {t}"),
            Fault::Restart(t) => write!(f, "restart {t}"),
            Fault::PowerLoss(t) => write!(f, "power-loss {t}"),
            Fault::Shutdown(t) => write!(f, "shutdown {t}"),
            Fault::Pause(t) => write!(f, "pause {t}"),
            Fault::Resume(t) => write!(f, "resume {t}"),
            Fault::Close(t) => write!(f, "close {t}"),
            Fault::Isolate(t) => write!(f, "isolate {t}"),
            Fault::Partition { groups } => {
                let groups: Vec<String> = groups.iter().map(|g| format!("[{}]", list(g))).collect();
                write!(f, "partition {}", groups.join(" | "))
            }
            Fault::OneWay { from, to } => {
                write!(f, "partition-one-way [{}] -> [{}]", list(from), list(to))
            }
            Fault::Heal => write!(f, "heal network"),
            Fault::Loss(p) => write!(f, "loss p={p}"),
            Fault::Duplicate(p) => write!(f, "duplicate p={p}"),
            Fault::Latency(low, high) => write!(f, "latency {low}..{high} ms"),
            Fault::DropKind(kind, p) => write!(f, "drop {} p={p}", kind.name()),
            Fault::DelayKind(kind, low, high, p) => write!(f, "delay {} by {low}..{high} ms p={p}", kind.name()),
            Fault::ClockOffset(t, ms) => write!(f, "clock-offset {t} {ms} ms"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledFault {
    pub at_ms: u64,
    pub fault: Fault,
}

/// Bound on the faults one nemesis draws for a run.
pub const NEMESIS_FAULTS_MAX: usize = 5_000;

fn uniform(rng: &mut ChaCha8Rng, (low, high): (u64, u64)) -> u64 {
    if high <= low {
        return low;
    }
    low + rng.next_u64() % (high - low + 1)
}

/// Draws a fault schedule for the safety phase `[0, duration_ms)`. Each fault comes with
/// its own end (restart, resume, heal) within the phase; at most `max_down` brokers are
/// down or paused at once. With `swarm`, the seed first picks which kinds are on.
pub fn draw_nemesis(spec: &NemesisSpec, brokers: u32, duration_ms: u64, rng: &mut ChaCha8Rng) -> Vec<ScheduledFault> {
    let mut kinds = spec.kinds.clone();
    if spec.swarm {
        let on: Vec<NemesisKind> = kinds.iter().copied().filter(|_| rng.next_u32().is_multiple_of(2)).collect();
        kinds = if on.is_empty() { vec![kinds[(rng.next_u32() as usize) % kinds.len()]] } else { on };
    }
    let mut faults = Vec::new();
    // (until, broker) of brokers down or paused.
    let mut down: Vec<(u64, u32)> = Vec::new();
    let mut network_busy_until = 0;
    let mut at = uniform(rng, spec.interval_ms);
    while at < duration_ms && faults.len() < NEMESIS_FAULTS_MAX {
        let kind = kinds[(rng.next_u32() as usize) % kinds.len()];
        let length = uniform(rng, spec.fault_duration_ms).max(1);
        let end = (at + length).min(duration_ms);
        down.retain(|(until, _)| *until > at);
        let target = pick_target(spec, brokers, rng);
        match kind {
            NemesisKind::Kill | NemesisKind::PowerLoss | NemesisKind::Shutdown | NemesisKind::Pause => {
                let broker_index = match target {
                    Target::Broker(id) => Some(id),
                    _ => None,
                };
                let busy = broker_index.is_some_and(|id| down.iter().any(|(_, b)| *b == id));
                let full = broker_index.is_some() && down.len() as u32 >= spec.max_down;
                if !busy && !full {
                    if let Some(id) = broker_index {
                        down.push((end, id));
                    }
                    let (start, stop) = match kind {
                        NemesisKind::Kill => (Fault::Kill(target), Fault::Restart(target)),
                        NemesisKind::PowerLoss => (Fault::PowerLoss(target), Fault::Restart(target)),
                        NemesisKind::Shutdown => (Fault::Shutdown(target), Fault::Restart(target)),
                        _ => (Fault::Pause(target), Fault::Resume(target)),
                    };
                    faults.push(ScheduledFault { at_ms: at, fault: start });
                    faults.push(ScheduledFault { at_ms: end, fault: stop });
                }
            }
            _ if at < network_busy_until => {}
            _ => {
                let fault = network_fault(kind, target, brokers, rng);
                faults.push(ScheduledFault { at_ms: at, fault });
                let heal = match kind {
                    NemesisKind::ClockOffset => Fault::ClockOffset(target, 0),
                    _ => Fault::Heal,
                };
                faults.push(ScheduledFault { at_ms: end, fault: heal });
                network_busy_until = end;
            }
        }
        at += uniform(rng, spec.interval_ms).max(1);
    }
    faults.sort_by_key(|f| f.at_ms);
    faults
}

fn pick_target(spec: &NemesisSpec, brokers: u32, rng: &mut ChaCha8Rng) -> Target {
    let choices = brokers + u32::from(spec.controller);
    let pick = rng.next_u32() % choices.max(1);
    if pick >= brokers {
        Target::Controller
    } else {
        Target::Broker(pick)
    }
}

fn network_fault(kind: NemesisKind, target: Target, brokers: u32, rng: &mut ChaCha8Rng) -> Fault {
    match kind {
        NemesisKind::Partition => {
            // A random split of the brokers into two non-empty sides.
            let mut left = Vec::new();
            let mut right = Vec::new();
            for id in 0..brokers {
                if rng.next_u32().is_multiple_of(2) {
                    left.push(Target::Broker(id));
                } else {
                    right.push(Target::Broker(id));
                }
            }
            if left.is_empty() {
                left.extend(right.pop());
            }
            if right.is_empty() {
                right.extend(left.pop());
            }
            Fault::Partition { groups: vec![left, right] }
        }
        NemesisKind::Isolate => Fault::Isolate(target),
        NemesisKind::Loss => Fault::Loss(0.01 + (rng.next_u32() % 20) as f64 / 100.0),
        NemesisKind::Duplicate => Fault::Duplicate(0.01 + (rng.next_u32() % 10) as f64 / 100.0),
        NemesisKind::Latency => {
            let low = rng.next_u64() % 50;
            Fault::Latency(low, low + rng.next_u64() % 500)
        }
        NemesisKind::DropKind => {
            const KINDS: [MessageKind; 5] = [
                MessageKind::ProduceResponse,
                MessageKind::FetchResponse,
                MessageKind::BrokerHeartbeat,
                MessageKind::AlterPartitionResponse,
                MessageKind::MetadataUpdate,
            ];
            Fault::DropKind(KINDS[(rng.next_u32() as usize) % KINDS.len()], 1.0)
        }
        NemesisKind::ClockOffset => Fault::ClockOffset(target, (rng.next_u64() % 120_000) as i64 - 60_000),
        NemesisKind::Kill | NemesisKind::PowerLoss | NemesisKind::Shutdown | NemesisKind::Pause => Fault::Heal,
    }
}
