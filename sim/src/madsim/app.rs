//! Your own async application code inside the simulated cluster (the madsim host).
//!
//! ```ignore
//! let outcome = Simulation::new(scenario)
//!     .app("loader", |kafka| async move {
//!         let producer = kafka.producer();
//!         while kafka.running() {
//!             let _ = producer.send(ProducerRecord::new("events").key(7)).await;
//!         }
//!     })
//!     .kill_app("loader", 5_000)
//!     .restart_app("loader", 6_000)
//!     .run(7);
//! assert!(outcome.pass, "{}", outcome.verdict_line());
//! ```
//!
//! Each application is a madsim node: its code runs there, with madsim's time
//! (`madsim::time::sleep`), and dies with the node when a fault kills it; a restart runs
//! it again from the start with new clients, as a restarted process would. Its client is
//! the model's own [`trial_model::Producer`] (acks, retries, batching, timeouts as the
//! Java client has them): `send` resolves when that client has the outcome. Every write
//! is an operation in the history, so the same checkers judge the application's writes:
//! an application that resends a record it was not sure about, with
//! [`ProducerRecord::retry_of`], shows up as a duplicate if both copies landed.

use super::{simulation_with, Carrier, HubIn};
use crate::faults::{Fault, Target};
use crate::scenario::Scenario;
use crate::Outcome;
use futures::channel::{mpsc, oneshot};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trial_model::{ErrorCode, Millis, ProducerConfig, TopicId, TopicPartition, WriteId, WriteOutcome};

type Body = Arc<dyn Fn(Kafka) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

pub(crate) struct AppEntry {
    pub(crate) name: String,
    pub(crate) config: ProducerConfig,
    pub(crate) body: Body,
}

pub(crate) type Reply = oneshot::Sender<Result<RecordMetadata, KafkaError>>;

pub(crate) enum Request {
    Send { topic: TopicId, key: Option<u32>, again: Option<WriteId>, reply: Reply },
}

/// What a sent record became (Java's `RecordMetadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The record's identity in the history (its value).
    pub write: WriteId,
    pub partition: u32,
    /// None with acks=0, which learns no offset.
    pub offset: Option<u64>,
}

/// A failed send, as the client reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The broker said the record was not appended (or the client gave up before
    /// sending it).
    #[error("write {write} failed: {error:?} (definitely not written)")]
    Rejected { write: WriteId, error: ErrorCode },
    /// The client gave up without knowing: the record may be in the log.
    #[error("write {write} failed: {error:?} (it may have been written)")]
    Unknown { write: WriteId, error: ErrorCode },
    #[error("no topic named `{0}` in the scenario")]
    UnknownTopic(String),
    /// The application's process is down or paused, or the run is over.
    #[error("the client cannot send now (its process is down or paused)")]
    Unavailable,
}

impl KafkaError {
    /// The write a failed send was about, to send it again.
    pub fn write(&self) -> Option<WriteId> {
        match self {
            KafkaError::Rejected { write, .. } | KafkaError::Unknown { write, .. } => Some(*write),
            _ => None,
        }
    }
}

pub(crate) fn answer(
    write: WriteId,
    tp: Option<TopicPartition>,
    outcome: WriteOutcome,
) -> Result<RecordMetadata, KafkaError> {
    match outcome {
        WriteOutcome::Ok { offset } => {
            Ok(RecordMetadata { write, partition: tp.map_or(0, |tp| tp.partition), offset: offset.map(|o| o.0) })
        }
        WriteOutcome::Failed { error, definite: true } => Err(KafkaError::Rejected { write, error }),
        WriteOutcome::Failed { error, definite: false } => Err(KafkaError::Unknown { write, error }),
    }
}

/// A record to send: a topic, a key, and a value the simulator gives it (its write id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    topic: String,
    key: Option<u32>,
    again: Option<WriteId>,
}

impl ProducerRecord {
    pub fn new(topic: &str) -> ProducerRecord {
        ProducerRecord { topic: topic.to_string(), key: None, again: None }
    }

    pub fn key(mut self, key: u32) -> ProducerRecord {
        self.key = Some(key);
        self
    }

    /// The same record as write `write`, sent again by the application (its own retry):
    /// a second copy in the log is a duplicate.
    pub fn retry_of(mut self, write: WriteId) -> ProducerRecord {
        self.again = Some(write);
        self
    }
}

/// An application's handle on the cluster.
#[derive(Clone)]
pub struct Kafka {
    app: usize,
    hub: mpsc::UnboundedSender<HubIn>,
    running: Arc<AtomicBool>,
    topics: Arc<Vec<String>>,
}

impl Kafka {
    pub(crate) fn new(
        app: usize,
        hub: mpsc::UnboundedSender<HubIn>,
        running: Arc<AtomicBool>,
        scenario: &Scenario,
    ) -> Kafka {
        let topics = Arc::new(scenario.topics.iter().map(|t| t.name.clone()).collect());
        Kafka { app, hub, running, topics }
    }

    /// The application's producer (one per process; the model's client state machine).
    pub fn producer(&self) -> AppProducer {
        AppProducer { kafka: self.clone() }
    }

    /// Whether the safety phase lasts: a loop that produces should stop when it ends,
    /// so that the cluster can settle and the checkers judge a finished history.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

/// An application's producer: `send(record).await` like the Java client's
/// `send(record).get()`.
pub struct AppProducer {
    kafka: Kafka,
}

impl AppProducer {
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata, KafkaError> {
        let Some(topic) = self.kafka.topics.iter().position(|t| *t == record.topic) else {
            return Err(KafkaError::UnknownTopic(record.topic));
        };
        let (reply, answer) = oneshot::channel();
        let request = Request::Send { topic: TopicId(topic as u32), key: record.key, again: record.again, reply };
        if self.kafka.hub.unbounded_send(HubIn::App { app: self.kafka.app, request }).is_err() {
            return Err(KafkaError::Unavailable);
        }
        answer.await.unwrap_or(Err(KafkaError::Unavailable))
    }
}

impl Carrier {
    /// Carries out an application's call at madsim's current time, but no later than
    /// `next`, the model's next event: madsim's clock may run ahead of the model's while
    /// the hub waits for a message, and the model's time never goes back.
    pub(crate) fn app(
        &mut self,
        engine: &mut crate::engine::Engine<'_>,
        app: usize,
        request: Request,
        start: super::Instant,
        next: Millis,
    ) {
        engine.advance_to(super::millis_since(start).min(next));
        match request {
            Request::Send { topic, key, again, reply } => match engine.app_send(app, topic, key, again) {
                Some(write) => {
                    self.replies.insert(write, reply);
                }
                None => {
                    let _ = reply.send(Err(KafkaError::Unavailable));
                }
            },
        }
    }
}

/// What can happen to an application node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppFault {
    /// The process dies (its code and clients go); `restart` runs it again.
    Kill,
    Restart,
    /// A stop-the-world pause: its code and its client stop, messages wait.
    Pause,
    Resume,
    /// Cut off from every other node (a network partition around it); `Heal` ends it
    /// (and every other network fault).
    Isolate,
    Heal,
}

/// A scenario plus application nodes running your async code, on the madsim host.
pub struct Simulation {
    scenario: Scenario,
    apps: Vec<AppEntry>,
    faults: Vec<(u64, String, AppFault)>,
}

impl Simulation {
    pub fn new(scenario: Scenario) -> Simulation {
        Simulation { scenario, apps: Vec::new(), faults: Vec::new() }
    }

    /// Adds an application whose producer has the default client settings (acks=all,
    /// retries, `delivery.timeout.ms` as in Kafka 3.x).
    pub fn app<F, Fut>(self, name: &str, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.app_with(name, ProducerConfig::default(), body)
    }

    /// Adds an application whose producer has `config`.
    pub fn app_with<F, Fut>(mut self, name: &str, config: ProducerConfig, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let body: Body = Arc::new(move |kafka| Box::pin(body(kafka)));
        self.apps.push(AppEntry { name: name.to_string(), config, body });
        self
    }

    /// `fault` on application `name` at `at_ms` (simulated milliseconds).
    pub fn fault(mut self, name: &str, at_ms: u64, fault: AppFault) -> Simulation {
        self.faults.push((at_ms, name.to_string(), fault));
        self
    }

    pub fn kill_app(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::Kill)
    }

    pub fn restart_app(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::Restart)
    }

    pub fn pause_app(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::Pause)
    }

    pub fn resume_app(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::Resume)
    }

    pub fn isolate_app(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::Isolate)
    }

    /// Heals the network at `at_ms` (every partition, the application's included).
    pub fn heal_network(mut self, at_ms: u64) -> Simulation {
        self.faults.push((at_ms, String::new(), AppFault::Heal));
        self
    }

    /// The command-like line that replays `seed`: this simulation, run with that seed.
    pub fn replay_command(&self, seed: u64) -> String {
        let names: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
        let file = self.scenario.path.as_ref().map_or(self.scenario.name.clone(), |p| p.display().to_string());
        format!("Simulation::new({file}) with app(s) {} .run({seed}) on the madsim host", names.join(", "))
    }

    /// Runs the cluster and the applications with `seed` and judges the history: the
    /// same report and verdicts as `kafka-trial run`, with this simulation's replay line.
    pub fn run(&self, seed: u64) -> Outcome {
        let mut faults = Vec::new();
        let mut unknown = Vec::new();
        for (at, name, kind) in &self.faults {
            if *kind == AppFault::Heal {
                faults.push((*at, Fault::Heal));
                continue;
            }
            let Some(index) = self.apps.iter().position(|a| a.name == *name) else {
                unknown.push(format!("a fault at {at} ms names app `{name}`, which this simulation does not have"));
                continue;
            };
            let target = Target::App(index as u32);
            let fault = match kind {
                AppFault::Kill => Fault::Kill(target),
                AppFault::Restart => Fault::Restart(target),
                AppFault::Pause => Fault::Pause(target),
                AppFault::Resume => Fault::Resume(target),
                AppFault::Isolate => Fault::Isolate(target),
                AppFault::Heal => continue,
            };
            faults.push((*at, fault));
        }
        let output = super::runtime(seed).block_on(simulation_with(&self.scenario, seed, None, &self.apps, &faults));
        let mut outcome = Outcome::new(&self.scenario, seed, output);
        outcome.replay = self.replay_command(seed);
        if !unknown.is_empty() {
            outcome.pass = false;
            outcome.failures.extend(unknown);
        }
        outcome
    }
}

/// Simulated milliseconds since the run started, for an application (madsim's clock).
pub fn now() -> Millis {
    Millis(::madsim::time::TimeHandle::current().elapsed().as_millis() as u64)
}
