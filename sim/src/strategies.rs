//! proptest strategies for property tests of delivery guarantees: fault schedules and
//! the scenarios that carry them.
//!
//! A schedule is two tracks of episodes at absolute start times: process episodes (kill or
//! power-loss a broker, restart it later) and network episodes (isolate a broker, cut it
//! from its peers, split it with the clients from the rest). Within a track an episode
//! that starts before the previous one ended is dropped, so at most one broker is down at a
//! time; the two tracks may overlap ([`fault_plan`]), or form one timeline with time to
//! settle between episodes ([`fault_plan_one_at_a_time`]). Start times are absolute so that
//! shrinking one episode away does not move the others.

use crate::faults::{Fault, ScheduledFault, Target};
use crate::scenario::Scenario;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessFault {
    Kill,
    PowerLoss,
    /// A graceful stop: the broker's controlled shutdown, then the process exits.
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFault {
    /// The broker reaches nobody and nobody reaches it.
    Isolate,
    /// The broker keeps the controller and the clients but loses its peer brokers; the
    /// peers lose the controller too (they get fenced, the ISR shrinks to this broker).
    CutFromPeers,
    /// The broker and the clients on one side, the other brokers and the controller on
    /// the other: the broker becomes a zombie leader.
    SplitWithClients,
}

/// One fault at `start_ms` with its healing `length_ms` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode<K> {
    pub start_ms: u64,
    pub length_ms: u64,
    pub broker: u32,
    pub kind: K,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FaultPlan {
    pub process: Vec<Episode<ProcessFault>>,
    pub network: Vec<Episode<NetworkFault>>,
    /// `None`: the tracks are independent and may overlap. `Some(ms)`: they are one
    /// timeline, and an episode of either track that starts less than `ms` after the
    /// previous one healed is dropped, so the cluster is whole again (restarted brokers
    /// registered, cut-off ones unfenced, both back in the ISR) before the next fault.
    pub settle_ms: Option<u64>,
}

impl FaultPlan {
    /// Number of episodes (each a fault and its healing) that take effect.
    pub fn len(&self) -> usize {
        let (process, network) = self.effective();
        process.len() + network.len()
    }

    /// The episodes that take effect, per track.
    fn effective(&self) -> (Vec<Episode<ProcessFault>>, Vec<Episode<NetworkFault>>) {
        let Some(settle_ms) = self.settle_ms else {
            return (effective(&self.process), effective(&self.network));
        };
        // One timeline: at equal starts, process episodes go first.
        let mut starts: Vec<(u64, usize, usize)> =
            self.process.iter().enumerate().map(|(i, e)| (e.start_ms, 0, i)).collect();
        starts.extend(self.network.iter().enumerate().map(|(i, e)| (e.start_ms, 1, i)));
        starts.sort_unstable();
        let (mut process, mut network) = (Vec::new(), Vec::new());
        let mut free_at = 0;
        for (start_ms, track, index) in starts {
            if start_ms < free_at {
                continue;
            }
            let length_ms = if track == 0 {
                process.push(self.process[index]);
                self.process[index].length_ms
            } else {
                network.push(self.network[index]);
                self.network[index].length_ms
            };
            free_at = start_ms + length_ms + settle_ms;
        }
        (process, network)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheduled faults, cut off at `duration_ms` (the liveness phase heals the rest).
    pub fn schedule(&self, brokers: u32, producers: u32, duration_ms: u64) -> Vec<ScheduledFault> {
        let mut faults = Vec::new();
        let (process, network) = self.effective();
        for episode in process {
            let target = Target::Broker(episode.broker % brokers);
            let start = match episode.kind {
                ProcessFault::Kill => Fault::Kill(target),
                ProcessFault::PowerLoss => Fault::PowerLoss(target),
                ProcessFault::Shutdown => Fault::Shutdown(target),
            };
            faults.push(ScheduledFault { at_ms: episode.start_ms, fault: start });
            faults.push(ScheduledFault { at_ms: episode.start_ms + episode.length_ms, fault: Fault::Restart(target) });
        }
        for episode in network {
            let broker = episode.broker % brokers;
            let peers: Vec<Target> = (0..brokers).filter(|b| *b != broker).map(Target::Broker).collect();
            let clients: Vec<Target> = (0..producers).map(Target::Producer).collect();
            let fault = match episode.kind {
                NetworkFault::Isolate => Fault::Isolate(Target::Broker(broker)),
                NetworkFault::CutFromPeers => {
                    let mut side = vec![Target::Broker(broker), Target::Controller];
                    side.extend(clients);
                    Fault::Partition { groups: vec![side, peers] }
                }
                NetworkFault::SplitWithClients => {
                    let mut side = vec![Target::Broker(broker)];
                    side.extend(clients);
                    let mut rest = peers;
                    rest.push(Target::Controller);
                    Fault::Partition { groups: vec![side, rest] }
                }
            };
            faults.push(ScheduledFault { at_ms: episode.start_ms, fault });
            faults.push(ScheduledFault { at_ms: episode.start_ms + episode.length_ms, fault: Fault::Heal });
        }
        faults.retain(|f| f.at_ms <= duration_ms);
        // Stable: at equal times, process faults (pushed first) go before network ones.
        faults.sort_by_key(|f| f.at_ms);
        faults
    }
}

/// The episodes of one track that take effect: sorted by start, overlaps dropped.
fn effective<K: Copy>(track: &[Episode<K>]) -> Vec<Episode<K>> {
    let mut sorted: Vec<Episode<K>> = track.to_vec();
    sorted.sort_by_key(|e| e.start_ms);
    let mut out: Vec<Episode<K>> = Vec::new();
    for episode in sorted {
        if out.last().is_none_or(|last| episode.start_ms >= last.start_ms + last.length_ms) {
            out.push(episode);
        }
    }
    out
}

fn episode<K: Clone + std::fmt::Debug>(
    kind: impl Strategy<Value = K>,
    brokers: u32,
    start_max_ms: u64,
    length_max_ms: u64,
) -> impl Strategy<Value = Episode<K>> {
    (0..start_max_ms, 1..length_max_ms, 0..brokers, kind).prop_map(|(start_ms, length_ms, broker, kind)| Episode {
        start_ms,
        length_ms,
        broker,
        kind,
    })
}

/// Which fault kinds a plan may use.
#[derive(Clone, Copy, Debug)]
pub struct PlanKinds {
    pub kill: bool,
    pub power_loss: bool,
    pub network: bool,
    /// Graceful stops (controlled shutdowns).
    pub shutdown: bool,
}

/// Fault plans with at most `episodes_max` episodes per track over `brokers` brokers,
/// starting within the first `horizon_ms`.
pub fn fault_plan(
    brokers: u32,
    episodes_max: usize,
    horizon_ms: u64,
    kinds: PlanKinds,
) -> impl Strategy<Value = FaultPlan> {
    let mut process_kinds = Vec::new();
    if kinds.kill {
        process_kinds.push(ProcessFault::Kill);
    }
    if kinds.power_loss {
        process_kinds.push(ProcessFault::PowerLoss);
    }
    if kinds.shutdown {
        process_kinds.push(ProcessFault::Shutdown);
    }
    let process_max = if process_kinds.is_empty() { 0 } else { episodes_max };
    let process_kinds = if process_kinds.is_empty() { vec![ProcessFault::Kill] } else { process_kinds };
    let network_max = if kinds.network { episodes_max } else { 0 };
    let process = proptest::collection::vec(
        episode(proptest::sample::select(process_kinds), brokers, horizon_ms, 30_000),
        0..=process_max,
    );
    let network_kinds = vec![NetworkFault::Isolate, NetworkFault::CutFromPeers, NetworkFault::SplitWithClients];
    let network = proptest::collection::vec(
        episode(proptest::sample::select(network_kinds), brokers, horizon_ms, 40_000),
        0..=network_max,
    );
    (process, network).prop_map(|(process, network)| FaultPlan { process, network, settle_ms: None })
}

/// As [`fault_plan`], but one episode at a time over both tracks, each starting at least
/// `settle_ms` after the previous one healed (see [`FaultPlan::settle_ms`]).
pub fn fault_plan_one_at_a_time(
    brokers: u32,
    episodes_max: usize,
    horizon_ms: u64,
    kinds: PlanKinds,
    settle_ms: u64,
) -> impl Strategy<Value = FaultPlan> {
    fault_plan(brokers, episodes_max, horizon_ms, kinds)
        .prop_map(move |plan| FaultPlan { settle_ms: Some(settle_ms), ..plan })
}

/// `base` with the plan's faults scheduled (the plan replaces any faults it had).
pub fn with_plan(base: &Scenario, plan: &FaultPlan) -> Scenario {
    let mut scenario = base.clone();
    scenario.faults = plan.schedule(base.brokers, base.producers.len() as u32, base.duration_ms);
    scenario.nemesis = None;
    scenario
}

/// Where generated episodes may start: up to 10 s before `scenario`'s safety phase ends.
pub fn horizon_ms(scenario: &Scenario) -> u64 {
    scenario.duration_ms.saturating_sub(10_000).max(1)
}

/// Scenarios: `base` under generated fault plans.
pub fn scenario_with_faults(
    base: Scenario,
    episodes_max: usize,
    kinds: PlanKinds,
) -> impl Strategy<Value = (Scenario, FaultPlan)> {
    let horizon_ms = horizon_ms(&base);
    fault_plan(base.brokers, episodes_max, horizon_ms, kinds).prop_map(move |plan| (with_plan(&base, &plan), plan))
}

/// Scenarios: `base` under generated fault plans of one episode at a time (see
/// [`fault_plan_one_at_a_time`]).
pub fn scenario_with_faults_one_at_a_time(
    base: Scenario,
    episodes_max: usize,
    kinds: PlanKinds,
    settle_ms: u64,
) -> impl Strategy<Value = (Scenario, FaultPlan)> {
    let horizon_ms = horizon_ms(&base);
    fault_plan_one_at_a_time(base.brokers, episodes_max, horizon_ms, kinds, settle_ms)
        .prop_map(move |plan| (with_plan(&base, &plan), plan))
}

/// What happens to a consumer in one episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerFault {
    /// Killed mid-batch; restarted (a new member) `length_ms` later.
    Crash,
    /// A GC pause of `length_ms` (past the session timeout, it comes back a zombie).
    Pause,
    /// A graceful close (commit, LeaveGroup), rejoining `length_ms` later: membership churn.
    Leave,
}

/// Consumer episodes at absolute start times; overlapping ones are dropped, so one
/// consumer at a time is affected and shrinking one away moves no other.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConsumerPlan {
    pub episodes: Vec<Episode<ConsumerFault>>,
}

impl ConsumerPlan {
    pub fn len(&self) -> usize {
        effective(&self.episodes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheduled faults over `consumers` consumers (`Episode::broker` names the
    /// consumer here), cut off at `duration_ms`.
    pub fn schedule(&self, consumers: u32, duration_ms: u64) -> Vec<ScheduledFault> {
        let mut faults = Vec::new();
        for episode in effective(&self.episodes) {
            let target = Target::Consumer(episode.broker % consumers.max(1));
            let (start, end) = match episode.kind {
                ConsumerFault::Crash => (Fault::Kill(target), Fault::Restart(target)),
                ConsumerFault::Pause => (Fault::Pause(target), Fault::Resume(target)),
                ConsumerFault::Leave => (Fault::Close(target), Fault::Restart(target)),
            };
            faults.push(ScheduledFault { at_ms: episode.start_ms, fault: start });
            faults.push(ScheduledFault { at_ms: episode.start_ms + episode.length_ms, fault: end });
        }
        faults.retain(|f| f.at_ms <= duration_ms);
        faults.sort_by_key(|f| f.at_ms);
        faults
    }
}

/// Consumer plans: up to `episodes_max` crashes, pauses (up to `pause_max_ms`) and
/// leave/rejoins of `consumers` consumers within the first `horizon_ms`.
pub fn consumer_plan(
    consumers: u32,
    episodes_max: usize,
    horizon_ms: u64,
    pause_max_ms: u64,
) -> impl Strategy<Value = ConsumerPlan> {
    let kinds = proptest::sample::select(vec![ConsumerFault::Crash, ConsumerFault::Pause, ConsumerFault::Leave]);
    proptest::collection::vec(episode(kinds, consumers.max(1), horizon_ms, pause_max_ms.max(2)), 0..=episodes_max)
        .prop_map(|episodes| ConsumerPlan { episodes })
}

/// `base` (a scenario with consumer groups) with the plan's consumer faults added to its
/// own faults.
pub fn with_consumer_plan(base: &Scenario, plan: &ConsumerPlan) -> Scenario {
    let mut scenario = base.clone();
    let consumers = base.groups.iter().map(|g| g.consumers).sum();
    scenario.faults.extend(plan.schedule(consumers, base.duration_ms));
    scenario.faults.sort_by_key(|f| f.at_ms);
    scenario.nemesis = None;
    scenario
}

/// What a member needs after its JoinGroup timed out: find the coordinator, rejoin, sync
/// and drain what it owes.
const JOIN_WAIT_MARGIN_MS: u64 = 60_000;

/// A scenario file's scenario made ready for exploration (`examples/explore.rs`): its
/// `violate` expectations dropped, since generated faults need not produce the anomaly the
/// file was written to show, and its liveness phase made at least a minute longer than
/// its consumers' longest JoinGroup timeout (`max.poll.interval.ms` + 5 s, 305 s by
/// default). A member whose JoinGroup reached a coordinator that then lost power or was cut
/// off hears nothing on its open connection and waits that long before it looks for the
/// coordinator again, as Kafka's client does; a shorter phase would report that wait as a
/// fault. The phase ends as soon as the cluster converged, so a passing case costs nothing
/// more.
pub fn exploration_base(mut base: Scenario) -> Scenario {
    base.expect.violate.clear();
    base.expect.group_violate.clear();
    base.expect.txn_violate.clear();
    let join_timeout_ms = base
        .groups
        .iter()
        .map(|g| &g.config)
        .chain(base.pipeline.iter().map(|p| &p.consumer))
        .map(|c| c.member.join_timeout_ms())
        .max();
    if let Some(join_timeout_ms) = join_timeout_ms {
        base.liveness_ms = base.liveness_ms.max(join_timeout_ms + JOIN_WAIT_MARGIN_MS);
    }
    base
}

/// The explorer's cases: `base` under generated fault plans of `kinds` (up to three
/// episodes a track), plus up to `consumer_episodes` consumer crashes, pauses and
/// leave/rejoins where it has groups, drawn with proptest's ChaCha RNG from `rng_seed`, so
/// the same arguments give the same cases. Endless: take as many as wanted. An error is a
/// plan proptest could not generate.
pub fn exploration_cases(
    base: Scenario,
    kinds: PlanKinds,
    consumer_episodes: usize,
    rng_seed: u8,
) -> impl Iterator<Item = Result<Scenario, String>> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let consumers: u32 = base.groups.iter().map(|g| g.consumers).sum();
    let consumer_plans = consumer_plan(consumers.max(1), consumer_episodes, horizon_ms(&base), 20_000);
    let plans = scenario_with_faults(base, 3, kinds);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[rng_seed; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    std::iter::from_fn(move || {
        let generated = plans.new_tree(&mut runner).and_then(|tree| {
            let (mut scenario, _) = tree.current();
            if consumer_episodes > 0 && consumers > 0 {
                scenario = with_consumer_plan(&scenario, &consumer_plans.new_tree(&mut runner)?.current());
            }
            Ok(scenario)
        });
        Some(generated.map_err(|reason| reason.to_string()))
    })
}
