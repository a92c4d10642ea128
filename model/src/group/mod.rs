//! Consumer groups: Kafka's classic group protocol as pure code.
//!
//! - [`assignor`]: the partition assignors the group leader runs on the members'
//!   subscriptions (range, round-robin, sticky, cooperative-sticky), with the same output
//!   as Kafka's Java client.
//! - [`coordinator`]: the group coordinator a broker runs for the groups of the
//!   `__consumer_offsets` partitions it leads (join, sync, heartbeat, leave, commits).
//! - [`member`]: the client side (the Java client's `ConsumerCoordinator`): join and sync,
//!   the leader's assignment, heartbeats, eager and cooperative rebalancing, the poll
//!   interval, commits under the member's generation.
//!
//! No IO, no clock, no randomness: the same inputs always give the same outputs.

pub mod assignor;
pub mod coordinator;
pub mod member;
