//! The consume–transform–produce application of Kafka's exactly-once semantics, as the
//! Java documentation and KIP-447 write it: one process with a read_committed consumer
//! in a group and a transactional producer, looping
//!
//! ```text
//! records = consumer.poll()
//! producer.beginTransaction()
//! for r in records: producer.send(transform(r))
//! producer.sendOffsetsToTransaction(consumer positions, consumer.groupMetadata())
//! producer.commitTransaction()
//! ```
//!
//! and, when a transaction does not commit, looking every position up again from the
//! group's committed offsets (`seek(tp, committed(tp))`), so that the records of the
//! failed transaction are read and written again. The host decides what each polled
//! record becomes (it names the output writes); this actor runs the loop's client side.
//!
//! The consumer and the producer share the process's node id; the producer's correlation
//! ids start at [`PRODUCER_CORRELATION_BASE`], which is how answers find their client.

use crate::action::Action;
use crate::consumer::{CommitMode, Consumer, ConsumerConfig, IsolationLevel, PolledRecord};
use crate::messages::Message;
use crate::txn::producer::{TxnOffsets, TxnProducer, TxnProducerConfig, TxnWrite};
use crate::txn::{TxnEvent, TxnOutcome};
use crate::types::{Millis, NodeId};
use std::collections::VecDeque;

/// The producer's correlation ids start here (the consumer's stay below 2^49).
pub const PRODUCER_CORRELATION_BASE: u64 = 1 << 56;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The consumer: its commit mode is made manual and its isolation level
    /// read_committed, as exactly-once needs.
    pub consumer: ConsumerConfig,
    pub producer: TxnProducerConfig,
}

pub struct Pipeline {
    consumer: Consumer,
    producer: TxnProducer,
    group_instance_id: Option<String>,
    /// The transaction running, if any.
    running: Option<u64>,
    /// Actions of the producer held while the consumer's go first.
    outbox: VecDeque<Action>,
}

impl Pipeline {
    pub fn new(id: NodeId, config: PipelineConfig, bootstrap: Vec<NodeId>, now: Millis) -> Pipeline {
        let PipelineConfig { mut consumer, producer } = config;
        consumer.commit = CommitMode::Manual;
        consumer.isolation_level = IsolationLevel::ReadCommitted;
        let topics = consumer.topics.clone();
        let group_instance_id = consumer.member.group_instance_id.clone();
        let mut consumer = Consumer::new(id, consumer, bootstrap.clone(), now);
        consumer.app_subscribe(now, topics);
        let producer = TxnProducer::new(id, producer, bootstrap).with_correlation_base(PRODUCER_CORRELATION_BASE);
        Pipeline { consumer, producer, group_instance_id, running: None, outbox: VecDeque::new() }
    }

    pub fn id(&self) -> NodeId {
        self.consumer.id()
    }

    /// The same process with its producer's send order from `base` on
    /// ([`TxnProducer::with_send_order_base`]).
    pub fn with_send_order_base(mut self, base: u32) -> Pipeline {
        self.producer = self.producer.with_send_order_base(base);
        self
    }

    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    pub fn producer(&self) -> &TxnProducer {
        &self.producer
    }

    /// Whether the loop is at its `poll()`: the producer is initialized and no
    /// transaction runs.
    pub fn ready(&self) -> bool {
        self.running.is_none() && self.producer.ready()
    }

    /// The loop's `poll()`: the records to transform (none unless [`Pipeline::ready`]).
    /// No transaction is open at a poll, so a rebalance callback has nothing to commit.
    pub fn poll(&mut self, now: Millis) -> Vec<PolledRecord> {
        if !self.ready() {
            return Vec::new();
        }
        let polled = self.consumer.app_poll(now);
        if !polled.rebalances.is_empty() {
            self.consumer.app_listener_done();
        }
        polled.records
    }

    /// Runs transaction `txn`: `writes` (what the last poll's records became), then the
    /// consumer's positions committed in the transaction, then the commit. False if the
    /// producer refused it (not ready, no writes).
    pub fn begin(&mut self, now: Millis, txn: u64, writes: Vec<TxnWrite>) -> bool {
        let offsets = self.consumer.app_positions();
        let offsets = TxnOffsets {
            group: self.consumer.group().to_string(),
            member_id: self.consumer.member_id().to_string(),
            group_instance_id: self.group_instance_id.clone(),
            generation: self.consumer.generation(),
            offsets,
        };
        let begun = self.producer.begin_with_offsets(now, txn, writes, true, Some(offsets));
        if begun {
            self.running = Some(txn);
        }
        self.after_producer(now);
        begun
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.consumer.poll_action().or_else(|| self.outbox.pop_front())
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.consumer.poll_timeout(), self.producer.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.consumer.handle_timeout(now);
        self.producer.handle_timeout(now);
        self.after_producer(now);
    }

    /// An answer goes to the client whose correlation id it carries; a closed connection
    /// concerns both.
    pub fn handle_message(&mut self, now: Millis, from: NodeId, msg: Message) {
        match correlation(&msg) {
            Some(c) if c >= PRODUCER_CORRELATION_BASE => self.producer.handle_message(now, from, msg),
            Some(_) => self.consumer.handle_message(now, from, msg),
            None => {
                self.consumer.handle_message(now, from, msg.clone());
                self.producer.handle_message(now, from, msg);
            }
        }
        self.after_producer(now);
    }

    /// Takes the producer's actions; a transaction that ended without committing sends
    /// the consumer back to the committed offsets.
    fn after_producer(&mut self, now: Millis) {
        let mut refresh = false;
        // Bounded by the producer's own outbox.
        while let Some(action) = self.producer.poll_action() {
            if let Action::Txn(event) = &action {
                if let TxnEvent::Ended { txn, outcome, .. } = event.as_ref() {
                    if self.running == Some(*txn) {
                        self.running = None;
                        refresh |= *outcome != TxnOutcome::Committed;
                    }
                }
            }
            self.outbox.push_back(action);
        }
        if refresh {
            self.consumer.app_refresh_positions(now);
        }
    }
}

/// The correlation id of an answer a client gets.
fn correlation(msg: &Message) -> Option<u64> {
    match msg {
        Message::MetadataResponse { correlation, .. }
        | Message::ProduceResponse { correlation, .. }
        | Message::InitProducerIdResponse { correlation, .. }
        | Message::FindCoordinatorResponse { correlation, .. }
        | Message::GroupResponse { correlation, .. }
        | Message::ConsumerFetchResponse { correlation, .. }
        | Message::ListOffsetsResponse { correlation, .. }
        | Message::TxnResponse { correlation, .. } => Some(*correlation),
        _ => None,
    }
}
