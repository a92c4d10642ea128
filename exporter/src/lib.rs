//! `trial-exporter`: a Prometheus exporter for real Kafka clusters (issue 2, in progress).
//!
//! Shape: [`collect`] (IO against brokers, bounded, with timeouts) → [`snapshot::Snapshot`]
//! (plain data) → [`render`] (pure). It never depends on the simulator or madsim. Lag math
//! comes from `trial_model::lag`, which the simulator can check against ground truth.

pub mod client;
pub mod collect;
pub mod config;
pub mod history;
pub mod render;
pub mod sasl;
pub mod security;
pub mod server;
pub mod snapshot;
pub mod tls;
