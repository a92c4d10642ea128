//! `trial-model`: Kafka's semantics as sans-IO state machines.
//!
//! Every actor of a cluster — [`Broker`], [`Controller`], [`Producer`] — is a plain struct
//! with `handle_message(now, from, msg)` and `handle_timeout(now)` for inputs,
//! `poll_timeout()` for its next deadline and `poll_action()` for its outputs
//! ([`Action::Send`], [`Action::Ack`], [`Action::Event`]). Hosts (the simulator's engine,
//! later the madsim host) move messages and arm timers; they decide nothing.
//!
//! This crate never does IO, never reads a clock and never draws a random number: time
//! comes in as [`Millis`], random choices as arguments. Kafka errors are data
//! ([`ErrorCode`]), never Rust `Err`. Durable state is explicit ([`BrokerDisk`],
//! [`ControllerDisk`]): a host keeps it while a node is down and hands it back on restart.

pub mod action;
pub mod broker;
pub mod config;
pub mod consumer;
pub mod controller;
pub mod error;
pub mod group;
pub mod lag;
pub mod log;
pub mod messages;
pub mod partitioner;
pub mod placement;
pub mod producer;
pub mod tpmap;
pub mod txn;
pub mod types;

pub use action::{Action, ClusterEvent, TruncationReason, WriteOutcome};
pub use broker::Broker;
pub use config::{
    Acks, BrokerConfig, ControllerConfig, GroupsConfig, NullKeyPartitioner, ProducerConfig, Protocol, Registration,
    TopicConfig, Truncation, TxnConfig,
};
pub use consumer::{CommitMode, Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
pub use controller::{Controller, ControllerDisk};
pub use error::ErrorCode;
pub use log::{BrokerDisk, LogEntry, PartitionLog, Record};
pub use messages::{Message, MessageKind, PartitionState};
pub use producer::Producer;
pub use tpmap::TpMap;
pub use types::*;
