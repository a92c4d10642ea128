//! The exporter's one integration-test binary: against a real Kafka-protocol broker
//! (noida-db from crates.io, installed and started by the tests themselves on 127.0.0.1).

#[path = "suite/binary.rs"]
mod binary;
#[path = "suite/broker.rs"]
mod broker;
#[path = "suite/collect.rs"]
mod collect;
#[path = "suite/http.rs"]
mod http;
#[path = "suite/prometheus.rs"]
mod prometheus;
