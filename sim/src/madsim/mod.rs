//! The madsim host: the same cluster as the engine's, with every broker, the controller
//! and every client a madsim node (built only with `--cfg madsim`).
//!
//! Each node's driver loop only moves things: the messages its actor sends go out on
//! madsim's network from the node's own endpoint; what arrives there, and the expiry of
//! the node's timer (a madsim sleep), go to the hub. The hub calls the model for the
//! node (`handle_message`, `handle_timeout`) once madsim has brought the event about,
//! in the engine's (time, sequence) order ([`Engine::external`]): the actors, their
//! durable state, the network model (latency, loss, partitions), the workload, history
//! and checkers are the engine's, so a run here is the same run as on the engine — same
//! history, same verdicts, same trace hash — and the differential tests hold the two
//! hosts to it. Faults reach madsim: a node the model kills is killed in madsim (its
//! tasks and socket go, messages to it are dropped), a restarted one is restarted (its
//! driver binds again). A paused broker keeps its driver: the model holds its inbox.
//!
//! madsim 0.2.34 pitfalls handled here: receive order is not FIFO (the hub takes
//! arrivals in the model's order, not madsim's); sends to an address not yet bound are
//! lost (the hub starts once every node has bound); `restart` needs a `kill` first
//! (only killed nodes are restarted); one receive task per node, never a task per send;
//! madsim's own latency is a fixed 10 µs (an empty range panics), far below the model's
//! millisecond latencies.

pub mod app;

use crate::engine::{Engine, Next, Outgoing, RunOutput, Stop};
use crate::scenario::Scenario;
use crate::trace::TraceSink;
use ::madsim::net::Endpoint;
use ::madsim::runtime::{Handle, Runtime};
use ::madsim::task::NodeId as MadsimNode;
use ::madsim::time::{sleep_until, Duration, Instant, Sleep, TimeHandle};
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use trial_model::{Message, Millis, WriteId};

/// The madsim tag of every simulator message.
const TAG: u64 = 0x6b61_666b_6121;
const PORT: u16 = 9092;
/// How long past its instant the hub waits for madsim to bring a message or a timer
/// expiry the model expects; one that never comes is counted as lost, not waited for.
const CARRY_WAIT_MS: u64 = 1_000;

/// A model message on madsim's network; `token` names its place in the model's queue.
#[derive(Clone)]
pub(crate) struct Envelope {
    token: u64,
    msg: Message,
}

/// Inputs of the hub, from node drivers.
pub(crate) enum HubIn {
    Up { node: usize, commands: mpsc::UnboundedSender<NodeCommand> },
    Arrived { envelope: Envelope },
    Fired { node: usize, at: Millis },
    App { app: usize, request: app::Request },
}

/// What the hub asks a node's driver to do.
pub(crate) enum NodeCommand {
    /// Send what waits in the node's outbox.
    Flush,
    Timer(Option<Millis>),
}

/// Messages a node's actor sent that its driver has not handed to madsim yet. It lives
/// outside the node, like a socket's send buffer in the kernel: when the node is killed,
/// what is left in it still goes out (the model delivers what was sent before a crash).
type Outbox = Arc<Mutex<VecDeque<(SocketAddr, Envelope)>>>;

fn drain(outbox: &Outbox) -> Vec<(SocketAddr, Envelope)> {
    outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..).collect()
}

/// Sends what waits in `outbox`, one message at a time. A message leaves the outbox only
/// once madsim took it: a kill during a send (madsim delays each send a little) leaves
/// it there for the relay, and nothing is sent twice (there is no await between madsim
/// taking a message and its removal here).
async fn flush(endpoint: &Endpoint, outbox: &Outbox) {
    loop {
        let front = outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).front().cloned();
        let Some((to, envelope)) = front else { return };
        // A destination without a process drops it, as madsim does.
        let _ = endpoint.send_to_raw(to, TAG, Box::new(envelope)).await;
        outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop_front();
    }
}

fn ip_of(node: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (node / 250) as u8, (node % 250) as u8 + 1))
}

/// madsim's virtual clock (never the wall clock: this runs inside a madsim runtime).
fn madsim_now() -> Instant {
    TimeHandle::current().now_instant()
}

fn millis_since(start: Instant) -> Millis {
    Millis(madsim_now().saturating_duration_since(start).as_millis() as u64)
}

fn instant_of(start: Instant, at: Millis) -> Instant {
    start + Duration::from_millis(at.0)
}

/// A sleep that ends exactly at `deadline`: madsim's `sleep_until` lasts at least a
/// millisecond, which would put madsim's clock behind the model's by that much at every
/// wait (`reset` sets the deadline without that floor).
fn sleep_exactly(deadline: Instant) -> Pin<Box<Sleep>> {
    let mut sleep = Box::pin(sleep_until(deadline));
    sleep.as_mut().reset(deadline);
    sleep
}

fn runtime(seed: u64) -> Runtime {
    let mut config = ::madsim::Config::default();
    // madsim carries each message in a fixed 10 µs; the model's network decides when it
    // is delivered (its latencies are whole milliseconds).
    config.net.send_latency = Duration::from_micros(10)..Duration::from_nanos(10_001);
    Runtime::with_seed_and_config(seed, config)
}

/// Runs one scenario with one seed on the madsim host.
pub fn run<'a>(scenario: &'a Scenario, seed: u64, trace: Option<&'a mut dyn TraceSink>) -> RunOutput {
    runtime(seed).block_on(simulation(scenario, seed, trace))
}

/// Runs `scenario` with `seed` on the madsim host and judges it.
pub fn simulate(scenario: &Scenario, seed: u64) -> crate::Outcome {
    let output = run(scenario, seed, None);
    let mut outcome = crate::Outcome::new(scenario, seed, output);
    outcome.replay = crate::replay_on(crate::Host::Madsim, scenario, seed);
    outcome
}

/// The driver of node `node`: binds its endpoint, tells the hub, then moves messages and
/// timer expiries until madsim kills it.
async fn drive_node(node: usize, outbox: Outbox, hub: mpsc::UnboundedSender<HubIn>, start: Instant) {
    let endpoint = match Endpoint::bind(SocketAddr::new(ip_of(node), PORT)).await {
        Ok(endpoint) => Arc::new(endpoint),
        Err(error) => panic!("node {node}: cannot bind its madsim endpoint: {error}"),
    };
    let (commands_tx, mut commands) = mpsc::unbounded();
    let receiver = endpoint.clone();
    let arrivals = hub.clone();
    // One receive loop per node: each receive hides a madsim delay, so it runs beside
    // the driver instead of inside it.
    ::madsim::task::spawn_local(async move {
        while let Ok((payload, _)) = receiver.recv_from_raw(TAG).await {
            if let Ok(envelope) = payload.downcast::<Envelope>() {
                if arrivals.unbounded_send(HubIn::Arrived { envelope: *envelope }).is_err() {
                    break;
                }
            }
        }
    });
    if hub.unbounded_send(HubIn::Up { node, commands: commands_tx }).is_err() {
        return;
    }
    // What was posted while no driver ran goes now.
    flush(&endpoint, &outbox).await;
    let mut timer: Option<Millis> = None;
    loop {
        let sleep = async move {
            match timer {
                Some(at) => sleep_exactly(instant_of(start, at)).await,
                None => futures::future::pending::<()>().await,
            }
        }
        .fuse();
        futures::pin_mut!(sleep);
        // Biased, not random: which ready branch goes first depends on the run only.
        futures::select_biased! {
            command = commands.next() => match command {
                Some(NodeCommand::Flush) => flush(&endpoint, &outbox).await,
                Some(NodeCommand::Timer(Some(at))) if at <= millis_since(start) => {
                    // Already due: report it now (a madsim sleep lasts at least 1 ms).
                    timer = None;
                    if hub.unbounded_send(HubIn::Fired { node, at }).is_err() {
                        return;
                    }
                }
                Some(NodeCommand::Timer(at)) => timer = at,
                None => return,
            },
            () = sleep => {
                if let Some(at) = timer.take() {
                    if hub.unbounded_send(HubIn::Fired { node, at }).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What madsim knows of each model node.
struct Process {
    madsim: MadsimNode,
    outbox: Outbox,
    commands: Option<mpsc::UnboundedSender<NodeCommand>>,
    killed: bool,
    paused: bool,
    armed: Option<Millis>,
    fired: Option<Millis>,
}

/// The hub's view of madsim: processes, messages that arrived, and what was lost.
struct Carrier {
    processes: Vec<Process>,
    arrived: BTreeMap<u64, Message>,
    /// Index of the relay: a node of its own that sends what a node without a process
    /// left behind (its unsent messages, its kernel's connection resets).
    relay: usize,
    lost: u64,
    /// Applications waiting for the outcome of a write.
    replies: BTreeMap<WriteId, app::Reply>,
    /// Applications waiting for a commit's answer: (application, correlation id).
    commit_replies: BTreeMap<(usize, u64), app::CommitReply>,
    /// Applications waiting for a transaction's end: (application, transaction id).
    txn_replies: BTreeMap<(usize, u64), app::TxnReply>,
}

impl Carrier {
    fn take(&mut self, input: HubIn) {
        match input {
            HubIn::Up { node, commands } => {
                let process = &mut self.processes[node];
                process.commands = Some(commands);
                process.armed = None;
            }
            HubIn::Arrived { envelope } => {
                self.arrived.insert(envelope.token, envelope.msg);
            }
            HubIn::Fired { node, at } => {
                let fired = &mut self.processes[node].fired;
                *fired = (*fired).max(Some(at));
            }
            HubIn::App { .. } => {}
        }
    }

    fn ready(&self, at: Millis, next: Next) -> bool {
        match next {
            Next::Carried { token, expected, .. } => !expected || self.arrived.contains_key(&token),
            Next::Timer { node, live } => !live || self.processes[node].fired.is_some_and(|fired| fired >= at),
            Next::Other => true,
        }
    }
}

/// The run itself, for a madsim runtime the caller made (`run` makes one per seed).
pub async fn simulation<'a>(scenario: &'a Scenario, seed: u64, trace: Option<&'a mut dyn TraceSink>) -> RunOutput {
    simulation_with(scenario, seed, trace, &[], &[]).await
}

/// The run with application nodes and their faults.
pub(crate) async fn simulation_with<'a>(
    scenario: &'a Scenario,
    seed: u64,
    trace: Option<&'a mut dyn TraceSink>,
    apps: &[app::AppEntry],
    app_faults: &[(u64, crate::faults::Fault)],
) -> RunOutput {
    let start = madsim_now();
    let (mut engine, faults) = Engine::external(scenario, seed, trace);
    for entry in apps {
        // `Simulation::run` reports a transactional app without [transactions]; it then
        // runs with a plain producer, so application indices stay as declared.
        let txn = if entry.transactional { engine.add_txn_app(&entry.name).ok() } else { None };
        let app = txn.unwrap_or_else(|| engine.add_app(&entry.name, entry.config.clone()));
        if let Some(group) = &entry.group {
            // `Simulation::run` reports an unknown group; the application runs without.
            let _ = engine.add_app_consumer(app, group);
        }
    }
    for (at, fault) in app_faults {
        engine.schedule_fault(Millis(*at), fault.clone());
    }
    let (hub_tx, mut hub_rx) = mpsc::unbounded::<HubIn>();
    let handle = Handle::current();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let count = engine.node_count();
    let mut processes = Vec::with_capacity(count + 1);
    for node in 0..=count {
        let hub = hub_tx.clone();
        let outbox = Outbox::default();
        let kept = outbox.clone();
        let app = (0..engine.app_count()).find(|app| node < count && engine.app_node(*app) == node);
        let consumer_of = (0..engine.app_count()).find(|app| engine.app_consumer_node(*app) == Some(node));
        let name = match (node < count, app, consumer_of) {
            (true, Some(app), _) => format!("app-{}", engine.app_name(app)),
            (true, None, Some(app)) => format!("app-{}-consumer", engine.app_name(app)),
            (true, None, None) => format!("{:?}-{}", engine.node_role(node), engine.node_id(node).0).to_lowercase(),
            (false, _, _) => "relay".to_string(),
        };
        let builder = handle.create_node().name(name).ip(ip_of(node));
        let builder = match app {
            Some(app) => {
                let body = apps[app].body.clone();
                let kafka = app::Kafka::new(app, hub.clone(), running.clone(), scenario);
                builder.init(move || {
                    let driver = drive_node(node, kept.clone(), hub.clone(), start);
                    let user = body(kafka.clone());
                    async move {
                        ::madsim::task::spawn_local(driver);
                        user.await;
                        // The application returned; its client stays until the run ends.
                        futures::future::pending::<()>().await;
                    }
                })
            }
            None => builder.init(move || drive_node(node, kept.clone(), hub.clone(), start)),
        };
        let madsim = builder.build().id();
        processes.push(Process {
            madsim,
            outbox,
            commands: None,
            killed: false,
            paused: false,
            armed: None,
            fired: None,
        });
    }
    drop(hub_tx);
    let mut carrier = Carrier {
        processes,
        arrived: BTreeMap::new(),
        relay: count,
        lost: 0,
        replies: BTreeMap::new(),
        commit_replies: BTreeMap::new(),
        txn_replies: BTreeMap::new(),
    };
    // Nothing may be sent before every node is bound: madsim drops such messages.
    while carrier.processes.iter().any(|p| p.commands.is_none()) {
        match hub_rx.next().await {
            Some(HubIn::App { app, request }) => carrier.app(&mut engine, app, request, start, Millis::ZERO),
            Some(input) => carrier.take(input),
            None => break,
        }
    }
    // What applications sent meanwhile goes out now, and every driver gets its timer.
    carrier.after_step(&mut engine, &handle);
    let stop = 'run: loop {
        let Some((at, next)) = engine.peek_external() else {
            break Stop::Finished;
        };
        // Wait until madsim's clock reaches the event and its network or timer brought
        // it about. madsim's clock may run ahead of the model's (a sleep lasts at least
        // a millisecond), never behind; what never comes within `CARRY_WAIT_MS` of
        // waiting is counted as lost, not waited for.
        let mut give_up = None;
        loop {
            let now = millis_since(start);
            if now >= at && carrier.ready(at, next) {
                break;
            }
            let limit = *give_up.get_or_insert(now.max(at).plus(CARRY_WAIT_MS));
            if now >= limit {
                carrier.lost += 1;
                break;
            }
            let wake = if now < at { at } else { limit };
            let sleep = sleep_exactly(instant_of(start, wake)).fuse();
            futures::pin_mut!(sleep);
            futures::select_biased! {
                input = hub_rx.next() => match input {
                    Some(HubIn::App { app, request }) => {
                        // An application's call runs now; what it sends may come before
                        // the event waited for, so look again.
                        carrier.app(&mut engine, app, request, start, at);
                        carrier.after_step(&mut engine, &handle);
                        continue 'run;
                    }
                    Some(input) => {
                        carrier.take(input);
                        // A driver that just bound again needs its timer.
                        carrier.arm_timers(&engine);
                    }
                    None => sleep.await,
                },
                () = sleep => {}
            }
        }
        let carried = match next {
            Next::Carried { token, .. } => carrier.arrived.remove(&token),
            Next::Timer { node, live: true } => {
                carrier.processes[node].fired = None;
                None
            }
            Next::Timer { .. } | Next::Other => None,
        };
        if let Err(stop) = engine.step_external(carried) {
            break stop;
        }
        carrier.after_step(&mut engine, &handle);
        if !engine.in_safety_phase() {
            running.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    };
    if carrier.lost > 0 {
        eprintln!(
            "kafka-trial: the madsim host lost {} message(s) or timer(s) the model expected (a host bug; seed {seed})",
            carrier.lost
        );
    }
    engine.finish_external(stop, faults)
}

impl Carrier {
    /// Gives madsim the process state the model decided: kill what went down, restart
    /// what came back (its driver binds again and reports `Up`).
    /// After the model ran: madsim's processes, the messages sent, the timers, and the
    /// answers for applications.
    fn after_step(&mut self, engine: &mut Engine<'_>, handle: &Handle) {
        self.reconcile(engine, handle);
        for outgoing in engine.take_outgoing() {
            self.send(engine, outgoing);
        }
        self.arm_timers(engine);
        for (write, tp, outcome) in engine.take_app_acks() {
            if let Some(reply) = self.replies.remove(&write) {
                // An application that died with its process asks no more.
                let _ = reply.send(app::answer(write, tp, outcome));
            }
        }
        for (app, correlation, error) in engine.take_app_commits() {
            if let Some(reply) = self.commit_replies.remove(&(app, correlation)) {
                let result = if error == trial_model::ErrorCode::None {
                    Ok(())
                } else {
                    Err(app::KafkaError::CommitFailed(error))
                };
                let _ = reply.send(result);
            }
        }
        for (app, txn, outcome, error) in engine.take_app_txn_ends() {
            if let Some(reply) = self.txn_replies.remove(&(app, txn)) {
                let _ = reply.send(Ok(app::txn_answer(txn, outcome, error)));
            }
        }
        // A killed application's commits are never answered; nobody waits for them.
        self.commit_replies.retain(|_, reply| !reply.is_canceled());
        self.txn_replies.retain(|_, reply| !reply.is_canceled());
    }

    fn reconcile(&mut self, engine: &Engine<'_>, handle: &Handle) {
        let mut relay = Vec::new();
        for (node, process) in self.processes.iter_mut().enumerate().take(self.relay) {
            let up = engine.is_up(node);
            if !up && !process.killed {
                let left = drain(&process.outbox);
                relay.extend(left);
                handle.kill(process.madsim);
                process.killed = true;
                process.commands = None;
                process.armed = None;
                process.fired = None;
            } else if up && process.killed {
                handle.restart(process.madsim);
                process.killed = false;
            }
            // An application's own code stops while it is paused (a GC pause); a
            // broker's driver keeps going, as the model holds its inbox.
            let paused = up && engine.is_app(node) && engine.is_paused(node);
            if paused != process.paused {
                match paused {
                    true => handle.pause(process.madsim),
                    false => handle.resume(process.madsim),
                }
                process.paused = paused;
            }
        }
        for (to, envelope) in relay {
            self.post(self.relay, to, envelope);
        }
    }

    /// Puts a message in node `node`'s outbox and rings its driver.
    fn post(&mut self, node: usize, to: SocketAddr, envelope: Envelope) {
        let process = &self.processes[node];
        process.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_back((to, envelope));
        if let Some(commands) = &process.commands {
            // A driver that is gone leaves it for its next life or for the relay.
            let _ = commands.unbounded_send(NodeCommand::Flush);
        }
    }

    fn arm_timers(&mut self, engine: &Engine<'_>) {
        for (node, process) in self.processes.iter_mut().enumerate().take(self.relay) {
            let at = if engine.is_up(node) { engine.timer_at(node) } else { None };
            if at != process.armed {
                if let Some(commands) = &process.commands {
                    if commands.unbounded_send(NodeCommand::Timer(at)).is_ok() {
                        process.armed = at;
                        process.fired = None;
                    }
                }
            }
        }
    }

    /// Sends a message from its sender's own endpoint, or through the relay when the
    /// sender has no process (the connection resets of a killed node's kernel).
    fn send(&mut self, engine: &Engine<'_>, outgoing: Outgoing) {
        let Outgoing { token, from, to, msg, .. } = outgoing;
        let address = SocketAddr::new(ip_of(to), PORT);
        let sender = engine.node_index(from).filter(|node| engine.is_up(*node)).unwrap_or(self.relay);
        self.post(sender, address, Envelope { token, msg });
    }
}
