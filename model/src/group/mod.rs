//! Consumer groups: the pieces of Kafka's classic group protocol that are pure functions.
//!
//! For now this is the partition assignors ([`assignor`]), which the group leader runs on
//! the members' subscriptions. No IO, no clock, no randomness: the same members and
//! subscriptions always give the same assignment, and the same one Kafka's Java client gives.

pub mod assignor;
