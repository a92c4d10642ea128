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
//!
//! An application registered with [`Simulation::consumer_app`] also has a consumer in
//! one of the scenario's groups (the group's `[[groups]]` settings: session timeout,
//! `max.poll.records`, assignors…): `subscribe`, `poll(timeout)`, `commit_sync`,
//! `commit_async`, `seek` and a [`RebalanceListener`], behind which runs the model's
//! [`trial_model::Consumer`] — the same group protocol the engine's consumers run. What
//! the application processed it writes to a [`Sink`]; each sink write is a processing
//! of that record by the group, so the group checkers (at-least-once, at-most-once,
//! order, ownership) judge the application's code.
//!
//! An application registered with [`Simulation::txn_app`] or
//! [`Simulation::txn_consumer_app`] has a transactional producer instead
//! ([`Kafka::transactional_producer`]): each [`AppTxnProducer::commit`] is one
//! transaction of the model's [`trial_model::txn::TxnProducer`], with the consumer's
//! positions and group metadata committed in it when given (KIP-447), judged by the
//! transaction checkers and, with [`Simulation::expect_exactly_once`], end to end.

use super::{simulation_with, Carrier, HubIn};
use crate::engine::{TxnRecord, TxnRefused};
use crate::faults::{Fault, Target};
use crate::history::Source;
use crate::scenario::Scenario;
use crate::Outcome;
use futures::channel::{mpsc, oneshot};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trial_model::consumer::{Polled, PolledRecord, Rebalance};
use trial_model::txn::TxnOutcome;
use trial_model::{ErrorCode, Millis, Offset, ProducerConfig, TopicId, TopicPartition, WriteId, WriteOutcome};

type Body = Arc<dyn Fn(Kafka) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

pub(crate) struct AppEntry {
    pub(crate) name: String,
    pub(crate) config: ProducerConfig,
    /// Its client is a transactional producer (`Simulation::txn_app`).
    pub(crate) transactional: bool,
    /// The scenario group its consumer joins, if it has one.
    pub(crate) group: Option<String>,
    pub(crate) body: Body,
}

pub(crate) type Reply = oneshot::Sender<Result<RecordMetadata, KafkaError>>;
pub(crate) type CommitReply = oneshot::Sender<Result<(), KafkaError>>;
/// Answered at once when the transaction could not begin, else at its end.
pub(crate) type TxnReply = oneshot::Sender<Result<Result<u64, KafkaError>, TxnRefused>>;

pub(crate) enum Request {
    Send {
        topic: TopicId,
        key: Option<u32>,
        again: Option<WriteId>,
        reply: Reply,
    },
    Subscribe {
        topics: Vec<(String, TopicId)>,
        reply: oneshot::Sender<bool>,
    },
    Poll {
        reply: oneshot::Sender<Option<Polled>>,
    },
    /// `reply` None: `commitAsync`, nobody waits.
    Commit {
        offsets: Option<Vec<(TopicPartition, Offset)>>,
        reply: Option<CommitReply>,
    },
    /// The callbacks of the last poll have returned.
    ListenerDone,
    Seek {
        tp: TopicPartition,
        offset: Offset,
        reply: oneshot::Sender<Option<bool>>,
    },
    Sink {
        sink: String,
        record: ConsumerRecord,
        once: bool,
        reply: oneshot::Sender<Option<bool>>,
    },
    Transaction {
        records: Vec<TxnRecord>,
        offsets: Option<Vec<(TopicPartition, Offset)>>,
        commit: bool,
        reply: TxnReply,
    },
    SeekToCommitted {
        reply: oneshot::Sender<Option<()>>,
    },
}

/// How long one `poll` waits between looks at the consumer's buffer.
const POLL_STEP_MS: u64 = 5;

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
    /// The coordinator (or the client, while it rejoins) refused the commit:
    /// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID… (Java's
    /// `CommitFailedException` and its retriable kin).
    #[error("the commit failed: {0:?}")]
    CommitFailed(ErrorCode),
    /// `seek` on a partition this consumer does not own (Java's IllegalStateException).
    #[error("{0} is not assigned to this consumer")]
    NotAssigned(TopicPartition),
    /// The application was registered without a consumer (`Simulation::app`, not
    /// `consumer_app`).
    #[error("this application has no consumer: register it with Simulation::consumer_app")]
    NoConsumer,
    /// The transaction was aborted: asked for (`abort`), or the commit failed (fenced
    /// by a newer instance, a refused offset commit of a stale generation, a timeout…).
    #[error("transaction {txn} aborted: {error:?}")]
    TransactionAborted { txn: u64, error: ErrorCode },
    /// The producer failed after it asked to commit: the transaction may have committed.
    #[error("transaction {txn} ended unknown: {error:?}")]
    TransactionUnknown { txn: u64, error: ErrorCode },
    /// A transaction the producer cannot run: no records, too many, or offsets without
    /// a consumer; or an application registered without a transactional producer.
    #[error("transaction refused: {0}")]
    TransactionRefused(String),
}

/// How a transaction ended, for the application.
pub(crate) fn txn_answer(txn: u64, outcome: TxnOutcome, error: ErrorCode) -> Result<u64, KafkaError> {
    match outcome {
        TxnOutcome::Committed => Ok(txn),
        TxnOutcome::Aborted => Err(KafkaError::TransactionAborted { txn, error }),
        TxnOutcome::Unknown => Err(KafkaError::TransactionUnknown { txn, error }),
    }
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
    source: Option<Source>,
}

impl ProducerRecord {
    pub fn new(topic: &str) -> ProducerRecord {
        ProducerRecord { topic: topic.to_string(), key: None, again: None, source: None }
    }

    /// A transformed copy of the consumed record `input`: in a transaction, the
    /// end-to-end exactly-once checker counts each input record's copies in the output
    /// topic (per topic, partition and offset, so that two copies of one write in the
    /// input are two records to copy).
    pub fn copy_of(mut self, input: &ConsumerRecord) -> ProducerRecord {
        self.source = Some(Source { tp: input.tp, offset: Offset(input.offset), write: input.value });
        self
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

/// A record `poll` returned (Java's `ConsumerRecord`); its value is the write id the
/// producer's record carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub tp: TopicPartition,
    pub offset: u64,
    pub key: Option<u32>,
    pub value: WriteId,
}

impl ConsumerRecord {
    pub fn partition(&self) -> u32 {
        self.tp.partition
    }
}

/// `ConsumerRebalanceListener`. Callbacks run inside `poll_with`, before it returns
/// records, as the Java client runs them inside `poll`: a commit made in
/// `on_partitions_revoked` goes out before the consumer rejoins (the rejoin waits for it),
/// so the next owner starts where this one stopped.
// madsim runs every node's tasks on one thread: no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub trait RebalanceListener {
    async fn on_partitions_revoked(&mut self, consumer: &AppConsumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    async fn on_partitions_assigned(&mut self, consumer: &AppConsumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// The membership is gone (another member may own these already); by default the
    /// same as a revoke, as in the Java client.
    async fn on_partitions_lost(&mut self, consumer: &AppConsumer, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(consumer, partitions).await
    }
}

/// No listener.
impl RebalanceListener for () {}

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

    /// The application's consumer (registered with [`Simulation::consumer_app`]).
    pub fn consumer(&self) -> AppConsumer {
        AppConsumer { kafka: self.clone() }
    }

    /// The application's transactional producer (registered with
    /// [`Simulation::txn_app`] or [`Simulation::txn_consumer_app`]).
    pub fn transactional_producer(&self) -> AppTxnProducer {
        AppTxnProducer { kafka: self.clone() }
    }

    /// Sink `name`: an external store (a database, a file) the application writes what it
    /// processed to. It outlives the application's process; every application writing to
    /// the same name writes to the same store.
    pub fn sink(&self, name: &str) -> Sink {
        Sink { kafka: self.clone(), name: name.to_string() }
    }

    fn topic_id(&self, name: &str) -> Option<TopicId> {
        self.topics.iter().position(|t| t == name).map(|index| TopicId(index as u32))
    }

    /// Sends `request` to the hub and waits for its answer; None when the run is over.
    async fn call<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.hub.unbounded_send(HubIn::App { app: self.app, request: request(reply) }).ok()?;
        answer.await.ok()
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

/// An application's transactional producer (`transactional.id` = `app-<name>`, the
/// scenario's `[transactions]` settings). One call is one transaction, as the Java
/// client's `beginTransaction()`, a `send` per record, `sendOffsetsToTransaction(offsets,
/// consumer.groupMetadata())` and `commitTransaction()` (or `abortTransaction()`) make one;
/// the records go out when the call is made, not one `send` at a time. It waits while the
/// producer gets its id and epoch (`initTransactions()`) or ends the previous
/// transaction, and resolves when the transaction has ended, with its id in the history.
pub struct AppTxnProducer {
    kafka: Kafka,
}

/// How long a transaction call waits between tries while the producer is not ready.
const TXN_RETRY_MS: u64 = 5;
/// Bound on those tries (10 s of simulated time).
const TXN_RETRIES_MAX: u32 = 2_000;

impl AppTxnProducer {
    /// Commits `records` and, with `offsets` (the next offset to read per input
    /// partition, as `sendOffsetsToTransaction` takes them), the application's consumer
    /// positions in one transaction.
    pub async fn commit(
        &self,
        records: &[ProducerRecord],
        offsets: Option<&[(TopicPartition, u64)]>,
    ) -> Result<u64, KafkaError> {
        self.run(records, offsets, true).await
    }

    /// Writes `records` in a transaction and aborts it: read_committed readers never see them.
    pub async fn abort(&self, records: &[ProducerRecord]) -> Result<u64, KafkaError> {
        self.run(records, None, false).await
    }

    async fn run(
        &self,
        records: &[ProducerRecord],
        offsets: Option<&[(TopicPartition, u64)]>,
        commit: bool,
    ) -> Result<u64, KafkaError> {
        let mut txn = Vec::with_capacity(records.len());
        for record in records {
            let topic =
                self.kafka.topic_id(&record.topic).ok_or_else(|| KafkaError::UnknownTopic(record.topic.clone()))?;
            txn.push(TxnRecord { topic, key: record.key, source: record.source });
        }
        let offsets: Option<Vec<(TopicPartition, Offset)>> =
            offsets.map(|o| o.iter().map(|(tp, offset)| (*tp, Offset(*offset))).collect());
        for _ in 0..TXN_RETRIES_MAX {
            let request =
                |reply| Request::Transaction { records: txn.clone(), offsets: offsets.clone(), commit, reply };
            match self.kafka.call(request).await {
                Some(Ok(result)) => return result,
                Some(Err(TxnRefused::NotReady)) => {
                    ::madsim::time::sleep(std::time::Duration::from_millis(TXN_RETRY_MS)).await;
                }
                Some(Err(TxnRefused::Invalid(why))) => return Err(KafkaError::TransactionRefused(why)),
                Some(Err(TxnRefused::Unavailable)) | None => return Err(KafkaError::Unavailable),
            }
        }
        Err(KafkaError::Unavailable)
    }
}

/// An application's consumer: the Java client's `KafkaConsumer` calls, async.
pub struct AppConsumer {
    kafka: Kafka,
}

impl AppConsumer {
    /// `subscribe(topics)`: the consumer joins its group at the next `poll`. Subscribing
    /// again replaces the subscription: the next poll revokes the old topics' partitions
    /// (all of them under the eager protocol) and rejoins. The group checkers owe the
    /// records of the topics the scenario's `[[groups]]` entry names; a record of another
    /// topic processed twice still counts as a duplicate.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<(), KafkaError> {
        let mut ids = Vec::new();
        for topic in topics {
            let id = self.kafka.topic_id(topic).ok_or_else(|| KafkaError::UnknownTopic(topic.to_string()))?;
            ids.push((topic.to_string(), id));
        }
        match self.kafka.call(|reply| Request::Subscribe { topics: ids, reply }).await {
            Some(true) => Ok(()),
            Some(false) => Err(KafkaError::NoConsumer),
            None => Err(KafkaError::Unavailable),
        }
    }

    /// `poll(timeout)` without a rebalance listener.
    pub async fn poll(&self, timeout_ms: u64) -> Result<Vec<ConsumerRecord>, KafkaError> {
        self.poll_with(timeout_ms, &mut ()).await
    }

    /// `poll(timeout)`: waits up to `timeout_ms` for records (at most `max.poll.records`
    /// of the group's settings), running `listener`'s callbacks first when the group
    /// rebalanced. Polling is also what keeps the member in its group
    /// (`max.poll.interval.ms`) and what lets a rebalance go on.
    pub async fn poll_with<L: RebalanceListener>(
        &self,
        timeout_ms: u64,
        listener: &mut L,
    ) -> Result<Vec<ConsumerRecord>, KafkaError> {
        let deadline = now().plus(timeout_ms);
        // Bounded: every pass waits at least POLL_STEP_MS of the timeout, or returns.
        loop {
            let polled = match self.kafka.call(|reply| Request::Poll { reply }).await {
                Some(Some(polled)) => polled,
                Some(None) => return Err(self.why_not().await),
                None => return Err(KafkaError::Unavailable),
            };
            for rebalance in &polled.rebalances {
                match rebalance {
                    Rebalance::Revoked(partitions) => listener.on_partitions_revoked(self, partitions).await,
                    Rebalance::Assigned(partitions) => listener.on_partitions_assigned(self, partitions).await,
                    Rebalance::Lost(partitions) => listener.on_partitions_lost(self, partitions).await,
                }
            }
            if !polled.rebalances.is_empty() {
                let request = Request::ListenerDone;
                let _ = self.kafka.hub.unbounded_send(HubIn::App { app: self.kafka.app, request });
            }
            let now = now();
            if !polled.records.is_empty() || now >= deadline {
                let records = polled.records.into_iter().map(|r| self.record(r)).collect();
                return Ok(records);
            }
            let wait = POLL_STEP_MS.min(deadline.since(now));
            ::madsim::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
    }

    /// `commitSync()`: commits the position of every owned partition (the offsets after
    /// the records polls returned, processed or not), and waits for the answer.
    pub async fn commit_sync(&self) -> Result<(), KafkaError> {
        self.commit(None).await
    }

    /// `commitSync(offsets)`: each offset is the next one to read (the last processed
    /// record's offset + 1), as in Kafka.
    pub async fn commit_sync_offsets(&self, offsets: &[(TopicPartition, u64)]) -> Result<(), KafkaError> {
        self.commit(Some(offsets.iter().map(|(tp, o)| (*tp, Offset(*o))).collect())).await
    }

    /// `commitAsync()`: sends the commit and does not wait; its outcome is in the history.
    pub fn commit_async(&self) {
        let request = Request::Commit { offsets: None, reply: None };
        let _ = self.kafka.hub.unbounded_send(HubIn::App { app: self.kafka.app, request });
    }

    async fn commit(&self, offsets: Option<Vec<(TopicPartition, Offset)>>) -> Result<(), KafkaError> {
        match self.kafka.call(|reply| Request::Commit { offsets, reply: Some(reply) }).await {
            Some(result) => result,
            None => Err(KafkaError::Unavailable),
        }
    }

    /// `seek(tp, committed(tp))` for every owned partition: after a transaction that did
    /// not commit, an exactly-once application reads its input again from the offsets
    /// its group committed.
    pub async fn seek_to_committed(&self) -> Result<(), KafkaError> {
        match self.kafka.call(|reply| Request::SeekToCommitted { reply }).await {
            Some(Some(())) => Ok(()),
            Some(None) | None => Err(KafkaError::Unavailable),
        }
    }

    /// `seek(tp, offset)`: the next poll returns `tp`'s records from `offset` on.
    pub async fn seek(&self, tp: TopicPartition, offset: u64) -> Result<(), KafkaError> {
        match self.kafka.call(|reply| Request::Seek { tp, offset: Offset(offset), reply }).await {
            Some(Some(true)) => Ok(()),
            Some(Some(false)) => Err(KafkaError::NotAssigned(tp)),
            Some(None) => Err(self.why_not().await),
            None => Err(KafkaError::Unavailable),
        }
    }

    /// Why a consumer call found no consumer: none registered, or its process is down.
    async fn why_not(&self) -> KafkaError {
        match self.kafka.call(|reply| Request::Subscribe { topics: Vec::new(), reply }).await {
            Some(false) => KafkaError::NoConsumer,
            _ => KafkaError::Unavailable,
        }
    }

    fn record(&self, polled: PolledRecord) -> ConsumerRecord {
        let topic = self.kafka.topics.get(polled.tp.topic.0 as usize).cloned().unwrap_or_default();
        ConsumerRecord { topic, tp: polled.tp, offset: polled.offset.0, key: polled.key, value: polled.write }
    }
}

/// An external store an application writes what it processed to (see [`Kafka::sink`]).
pub struct Sink {
    kafka: Kafka,
    name: String,
}

impl Sink {
    /// Writes `record`'s effect: one more processing of it.
    pub async fn write(&self, record: &ConsumerRecord) -> Result<(), KafkaError> {
        self.put(record, false).await.map(|_| ())
    }

    /// An idempotent write keyed by (topic, partition, offset): a record the sink holds
    /// already is skipped. Returns whether it was written.
    pub async fn write_once(&self, record: &ConsumerRecord) -> Result<bool, KafkaError> {
        self.put(record, true).await
    }

    async fn put(&self, record: &ConsumerRecord, once: bool) -> Result<bool, KafkaError> {
        let request = |reply| Request::Sink { sink: self.name.clone(), record: record.clone(), once, reply };
        match self.kafka.call(request).await {
            Some(Some(written)) => Ok(written),
            Some(None) => Err(KafkaError::NoConsumer),
            None => Err(KafkaError::Unavailable),
        }
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
        // A reply whose application died meanwhile has nobody to go to: dropped.
        match request {
            Request::Send { topic, key, again, reply } => match engine.app_send(app, topic, key, again) {
                Some(write) => {
                    self.replies.insert(write, reply);
                }
                None => {
                    let _ = reply.send(Err(KafkaError::Unavailable));
                }
            },
            Request::Subscribe { topics, reply } if topics.is_empty() => {
                let _ = reply.send(engine.app_consumer_node(app).is_some());
            }
            Request::Subscribe { topics, reply } => {
                let _ = reply.send(engine.app_subscribe(app, topics).is_some());
            }
            Request::Poll { reply } => {
                let _ = reply.send(engine.app_poll(app));
            }
            Request::Commit { offsets, reply } => match (engine.app_commit(app, offsets), reply) {
                (Some(correlation), Some(reply)) => {
                    self.commit_replies.insert((app, correlation), reply);
                }
                (None, Some(reply)) => {
                    let _ = reply.send(Err(KafkaError::Unavailable));
                }
                (_, None) => {}
            },
            Request::ListenerDone => {
                let _ = engine.app_listener_done(app);
            }
            Request::Seek { tp, offset, reply } => {
                let _ = reply.send(engine.app_seek(app, tp, offset));
            }
            Request::Sink { sink, record, once, reply } => {
                let written = engine.app_sink(app, &sink, record.tp, Offset(record.offset), record.value, once);
                let _ = reply.send(written);
            }
            Request::Transaction { records, offsets, commit, reply } => {
                match engine.app_transaction(app, &records, offsets, commit) {
                    Ok(txn) => {
                        self.txn_replies.insert((app, txn), reply);
                    }
                    Err(refused) => {
                        let _ = reply.send(Err(refused));
                    }
                }
            }
            Request::SeekToCommitted { reply } => {
                let _ = reply.send(engine.app_seek_to_committed(app));
            }
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
    /// Cut off from its group's coordinator only (the broker leading the group's
    /// `__consumer_offsets` partition when the fault fires); it still fetches.
    IsolateFromCoordinator,
    Heal,
}

/// A scenario plus application nodes running your async code, on the madsim host.
pub struct Simulation {
    scenario: Scenario,
    apps: Vec<AppEntry>,
    faults: Vec<(u64, String, AppFault)>,
    /// Settings refused while building it: the run fails with these.
    invalid: Vec<String>,
}

impl Simulation {
    pub fn new(scenario: Scenario) -> Simulation {
        Simulation { scenario, apps: Vec::new(), faults: Vec::new(), invalid: Vec::new() }
    }

    /// Adds an application whose producer has the default client settings (acks=all,
    /// retries, `delivery.timeout.ms`, idempotence on, as in Kafka 3.x).
    pub fn app<F, Fut>(self, name: &str, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.app_with(name, ProducerConfig::default(), body)
    }

    /// Adds an application with a consumer in the scenario's group `group` (its
    /// `[[groups]]` entry gives the consumer settings; `consumers = 0` there leaves the
    /// group to applications) and a producer with the default settings.
    pub fn consumer_app<F, Fut>(mut self, name: &str, group: &str, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self = self.app(name, body);
        if let Some(entry) = self.apps.last_mut() {
            entry.group = Some(group.to_string());
        }
        self
    }

    /// Adds an application whose producer has `config`. A configuration Kafka's producer
    /// refuses (idempotence on with acks other than all, retries 0 or more than 5 in
    /// flight) fails the run with the reason.
    pub fn app_with<F, Fut>(mut self, name: &str, config: ProducerConfig, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let body: Body = Arc::new(move |kafka| Box::pin(body(kafka)));
        self.apps.push(AppEntry { name: name.to_string(), config, transactional: false, group: None, body });
        self
    }

    /// Adds an application whose client is a transactional producer
    /// ([`Kafka::transactional_producer`], `transactional.id` `app-<name>`, the scenario's
    /// `[transactions]` settings). A killed one comes back as a new instance with the same
    /// transactional id, which fences the old one and aborts what it left open.
    pub fn txn_app<F, Fut>(mut self, name: &str, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self = self.app(name, body);
        if let Some(entry) = self.apps.last_mut() {
            entry.transactional = true;
        }
        self
    }

    /// A transactional application with a consumer in the scenario's group `group`: the
    /// consume–transform–produce loop, its consumer's positions committed in each
    /// transaction with the consumer's group metadata (KIP-447).
    pub fn txn_consumer_app<F, Fut>(mut self, name: &str, group: &str, body: F) -> Simulation
    where
        F: Fn(Kafka) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self = self.txn_app(name, body);
        if let Some(entry) = self.apps.last_mut() {
            entry.group = Some(group.to_string());
        }
        self
    }

    /// Requires `property` of every group (the scenario's `[expect] group_hold`): a run
    /// where it does not hold fails, with its seed and replay line.
    pub fn expect(mut self, property: crate::groups::GroupProperty) -> Simulation {
        if !self.scenario.expect.group_hold.contains(&property) {
            self.scenario.expect.group_hold.push(property);
        }
        self
    }

    /// Requires every record of topic `input` to be in topic `output` exactly once at the
    /// end, each copy made with [`ProducerRecord::copy_of`] (the `pipeline-exactly-once`
    /// checker, as for a `[pipeline]`), and the transaction checkers to hold. Unknown
    /// topics fail the run with the reason.
    pub fn expect_exactly_once(mut self, input: &str, output: &str) -> Simulation {
        let id = |name: &str| self.scenario.topics.iter().position(|t| t.name == name).map(|i| TopicId(i as u32));
        match (id(input), id(output)) {
            (Some(input), Some(output)) if input != output => self.scenario.end_to_end = Some((input, output)),
            _ => self.invalid.push(format!(
                "expect_exactly_once(`{input}`, `{output}`): two different topics the scenario declares"
            )),
        }
        use crate::txns::TxnProperty;
        for property in TxnProperty::ALL {
            if !self.scenario.expect.txn_hold.contains(&property) {
                self.scenario.expect.txn_hold.push(property);
            }
        }
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

    /// Cuts application `name` off from its group's coordinator at `at_ms`.
    pub fn isolate_app_from_coordinator(self, name: &str, at_ms: u64) -> Simulation {
        self.fault(name, at_ms, AppFault::IsolateFromCoordinator)
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
        super::runtime(seed).block_on(self.simulate(seed))
    }

    /// `run` inside a madsim runtime the caller made (e.g. madsim's
    /// `Runtime::check_determinism`, which runs it twice and compares every random draw).
    pub async fn simulate(&self, seed: u64) -> Outcome {
        let mut faults = Vec::new();
        let mut unknown = self.invalid.clone();
        for entry in &self.apps {
            let Some(group) = &entry.group else { continue };
            if !self.scenario.groups.iter().any(|g| g.name == *group) {
                let names: Vec<&str> = self.scenario.groups.iter().map(|g| g.name.as_str()).collect();
                unknown.push(format!(
                    "app `{}` joins group `{group}`, which the scenario does not declare (its groups: {})",
                    entry.name,
                    names.join(", ")
                ));
            }
        }
        for entry in self.apps.iter().filter(|e| e.transactional && self.scenario.transactions.is_none()) {
            unknown.push(format!(
                "app `{}` is transactional, but the scenario has no [transactions] section (its coordinators' settings)",
                entry.name
            ));
        }
        for entry in &self.apps {
            if let Some(why) = entry.config.idempotence_conflict() {
                unknown.push(format!(
                    "app `{}`: {why} (Kafka's producer refuses this configuration; set enable_idempotence: false)",
                    entry.name
                ));
            }
        }
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
                AppFault::IsolateFromCoordinator => {
                    let group = self.apps[index].group.as_ref();
                    let Some(group) = group.and_then(|g| self.scenario.groups.iter().position(|s| s.name == *g)) else {
                        unknown.push(format!(
                            "a fault at {at} ms cuts app `{name}` from its coordinator, but it has no group"
                        ));
                        continue;
                    };
                    Fault::Partition { groups: vec![vec![target], vec![Target::CoordinatorOf(group as u32)]] }
                }
                AppFault::Heal => continue,
            };
            faults.push((*at, fault));
        }
        let output = simulation_with(&self.scenario, seed, None, &self.apps, &faults).await;
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
