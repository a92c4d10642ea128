//! Transactions (KIP-98): the transaction coordinator a broker runs for the
//! `__transaction_state` partitions it leads.
//!
//! [`coordinator::TxnCoordinator`] is sans-IO like the group coordinator: requests in
//! through `handle_request`, timers through `handle_timeout`, and out through
//! `poll_output` come answers, appends of [`coordinator::TxnRecord`]s to the
//! transactional id's `__transaction_state` partition, and the markers to write. A
//! record counts only once the host reports it below the partition's high watermark
//! (`handle_append_result`), so a coordinator failover loses or keeps exactly what
//! Kafka's would; a new coordinator rebuilds its state with `load` and finishes the
//! transactions it finds half-ended.

pub mod coordinator;
pub mod producer;

pub use coordinator::{
    txn_partition_for, TxnCoordinator, TxnCoordinatorConfig, TxnEvent, TxnOutcome, TxnOutput, TxnRecord, TxnRequest,
    TxnResponse, TxnState,
};
pub mod pipeline;

pub use producer::{TxnOffsets, TxnProducer, TxnProducerConfig, TxnWrite};
