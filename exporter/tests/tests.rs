//! The exporter's one integration-test binary: against a real Kafka-protocol broker
//! (noida-db from crates.io, installed and started by the tests themselves on 127.0.0.1),
//! and an in-test fake cluster for faults and topologies one real broker cannot show.

#[path = "suite/binary.rs"]
mod binary;
#[path = "suite/broker.rs"]
mod broker;
#[path = "suite/collect.rs"]
mod collect;
#[path = "suite/debian.rs"]
mod debian;
#[path = "suite/fake.rs"]
mod fake;
#[path = "suite/fake_sasl.rs"]
mod fake_sasl;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/http.rs"]
mod http;
#[path = "suite/kcat.rs"]
mod kcat;
#[path = "suite/prometheus.rs"]
mod prometheus;
#[path = "suite/routing.rs"]
mod routing;
#[path = "suite/sasl.rs"]
mod sasl;
#[path = "suite/tls.rs"]
mod tls;
#[path = "suite/tls_proxy.rs"]
mod tls_proxy;
