//! Consumer-group partition assignors with the output of Kafka's Java client assignors.
//!
//! The group leader runs one of these on every rebalance: given each topic's partition count
//! and each member's subscription (and, for the sticky assignors, the partitions it owned and
//! the generation it owned them in), it says which partitions each member consumes.
//! [`Assignor::assign`] gives, for the same input, the same partitions per member as
//! `org.apache.kafka.clients.consumer.{Range,RoundRobin,Sticky,CooperativeSticky}Assignor`
//! (Kafka 3.5+, `AbstractStickyAssignor` with its constrained and general paths).
//!
//! How the input maps to Java's:
//! - `members` is the JoinGroup response in order: Java's leader (`ConsumerCoordinator`)
//!   puts it into a default-capacity `HashMap` in that order, and the sticky assignors'
//!   choices follow that map's walk, which the private `java_order` module reproduces.
//!   Range and round-robin do not depend on the order. (Some Kafka tests build their map
//!   with `new HashMap<>(n)`, whose smaller table can walk differently; the ported cases
//!   here do not depend on it.)
//! - Topic names and member ids compare as Java `String`s (UTF-16 units), and
//!   [`GroupPartition`] sorts by topic name, then partition, as Kafka sorts.
//! - Only topics that some member subscribes to and that have at least one partition take
//!   part, as in `AbstractPartitionAssignor.assign(Cluster, GroupSubscription)`.
//! - Each member's list comes out sorted; Java's list order is a by-product of its maps.
//!
//! Not modelled: rack-aware assignment (KIP-881): no member here has a `client.rack`, and
//! with no racks Kafka's range and sticky assignors take exactly the paths implemented here.
//!
//! Deliberate differences, on input a real group does not produce, are named where they are
//! handled: duplicate member ids (the assignment is empty), owned partitions beyond a topic's
//! count or listed twice (ignored), a topic listed twice in a subscription (Java's sticky
//! assignors would then take the general path), a member with an empty subscription (Java
//! may treat it as subscribed like the others; here it gets nothing), and two guards in the
//! general sticky path (see the private `sticky_general` module). No input panics.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod java_order;
mod sticky;
mod sticky_general;
#[cfg(test)]
mod tests;

use java_order::{java_cmp, string_hash, topic_partition_hash};

/// `member.id` given by the coordinator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberId(pub String);

impl MemberId {
    pub fn new(id: impl Into<String>) -> Self {
        MemberId(id.into())
    }
}

impl Ord for MemberId {
    fn cmp(&self, other: &Self) -> Ordering {
        java_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for MemberId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A partition named as the group protocol names it: by topic name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: u32,
}

impl GroupPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        GroupPartition { topic: topic.into(), partition }
    }
}

/// Kafka's order: topic name (as Java compares strings), then partition.
impl Ord for GroupPartition {
    fn cmp(&self, other: &Self) -> Ordering {
        java_cmp(&self.topic, &other.topic).then(self.partition.cmp(&other.partition))
    }
}

impl PartialOrd for GroupPartition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for GroupPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One member's JoinGroup subscription, as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub member_id: MemberId,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    pub topics: Vec<String>,
    /// Partitions the member owned before this rebalance (the sticky assignors' user data /
    /// `ownedPartitions`); the other assignors ignore it.
    pub owned: Vec<GroupPartition>,
    /// Generation in which it owned them (KIP-341, KIP-792); `None` for an old client.
    pub generation: Option<i32>,
}

/// Partition count per topic name (the leader's metadata).
pub type PartitionsPerTopic = BTreeMap<String, u32>;

/// Partitions per member; every member is present, maybe with an empty list.
pub type GroupAssignment = BTreeMap<MemberId, Vec<GroupPartition>>;

/// `ConsumerPartitionAssignor.RebalanceProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before it rejoins.
    Eager,
    /// Members keep what they own; a partition changing owner is revoked first and handed
    /// to its new owner in the follow-up rebalance (KIP-429).
    Cooperative,
}

/// `partition.assignment.strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl Assignor {
    pub const ALL: [Assignor; 4] =
        [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky, Assignor::CooperativeSticky];

    /// The protocol name Kafka sends in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The protocol the group follows when every member uses this assignor (the first of
    /// Kafka's `supportedProtocols()`).
    pub fn rebalance_protocol(self) -> RebalanceProtocol {
        match self {
            Assignor::CooperativeSticky => RebalanceProtocol::Cooperative,
            _ => RebalanceProtocol::Eager,
        }
    }

    /// `supportedProtocols()`: cooperative-sticky also runs under eager rebalancing.
    pub fn supported_protocols(self) -> &'static [RebalanceProtocol] {
        match self {
            Assignor::CooperativeSticky => &[RebalanceProtocol::Cooperative, RebalanceProtocol::Eager],
            _ => &[RebalanceProtocol::Eager],
        }
    }

    /// The assignment Kafka's Java assignor of this name computes. Bad input (duplicate
    /// member ids) gives an empty assignment, never a panic.
    pub fn assign(self, partitions_per_topic: &PartitionsPerTopic, members: &[Member]) -> GroupAssignment {
        let Some(group) = Group::new(partitions_per_topic, members) else {
            return GroupAssignment::new();
        };
        let lists = match self {
            Assignor::Range => range(&group),
            Assignor::RoundRobin => round_robin(&group),
            Assignor::Sticky => sticky::assign(&group, false),
            Assignor::CooperativeSticky => sticky::assign(&group, true),
        };
        group.output(lists)
    }
}

/// A partition inside the assignors: the topic as its index in [`Group::topics`], which is
/// in Java's name order, so the derived order is Kafka's `(topic, partition)` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tp {
    pub(crate) topic: usize,
    pub(crate) partition: u32,
}

/// The validated input, with members and topics numbered in Java's string order.
pub(crate) struct Group<'a> {
    /// Topics that take part (subscribed by someone, ≥ 1 partition), in Java name order.
    pub(crate) topics: Vec<&'a str>,
    pub(crate) counts: Vec<u32>,
    pub(crate) topic_hashes: Vec<i32>,
    /// Members in member-id order: a member's index is its rank.
    pub(crate) members: Vec<&'a Member>,
    /// Subscribed topics that take part, per member.
    pub(crate) subscribed: Vec<BTreeSet<usize>>,
    /// The subscription as sent, topics without metadata included (Kafka compares these).
    pub(crate) raw_topics: Vec<BTreeSet<&'a str>>,
    /// Member indices in the walk of Java's `HashMap<memberId, _>` filled in JoinGroup order.
    pub(crate) hash_order: Vec<usize>,
}

impl<'a> Group<'a> {
    fn new(partitions_per_topic: &'a PartitionsPerTopic, input: &'a [Member]) -> Option<Group<'a>> {
        let mut members: Vec<&Member> = input.iter().collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        // Duplicate member ids: the coordinator never sends them; refuse rather than guess.
        if members.windows(2).any(|w| w[0].member_id == w[1].member_id) {
            return None;
        }
        let wanted: BTreeSet<&str> = input.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
        let mut topics: Vec<&str> = partitions_per_topic
            .iter()
            .filter(|(t, &n)| n > 0 && wanted.contains(t.as_str()))
            .map(|(t, _)| t.as_str())
            .collect();
        topics.sort_by(|a, b| java_cmp(a, b));
        let index: BTreeMap<&str, usize> = topics.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let counts = topics.iter().map(|t| partitions_per_topic.get(*t).copied().unwrap_or(0)).collect();
        let topic_hashes = topics.iter().map(|t| string_hash(t)).collect();
        let subscribed =
            members.iter().map(|m| m.topics.iter().filter_map(|t| index.get(t.as_str()).copied()).collect()).collect();
        let raw_topics = members.iter().map(|m| m.topics.iter().map(String::as_str).collect()).collect();
        let rank: BTreeMap<&MemberId, usize> = members.iter().enumerate().map(|(i, m)| (&m.member_id, i)).collect();
        let hashes: Vec<i32> = input.iter().map(|m| string_hash(&m.member_id.0)).collect();
        let hash_order = java_order::hash_map_order(&hashes)
            .into_iter()
            .filter_map(|i| rank.get(&input[i].member_id).copied())
            .collect();
        Some(Group { topics, counts, topic_hashes, members, subscribed, raw_topics, hash_order })
    }

    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn partitions_of(&self, topic: usize) -> impl Iterator<Item = Tp> {
        (0..self.counts[topic]).map(move |partition| Tp { topic, partition })
    }

    /// Every partition that takes part, in Kafka's `(topic, partition)` order.
    pub(crate) fn all_partitions(&self) -> Vec<Tp> {
        (0..self.topics.len()).flat_map(|t| self.partitions_of(t)).collect()
    }

    pub(crate) fn tp_hash(&self, tp: Tp) -> i32 {
        topic_partition_hash(self.topic_hashes[tp.topic], tp.partition)
    }

    /// A member's reported owned partitions of topics that take part, first listing kept.
    /// Kafka would also keep a partition at or past the topic's count, and a repeat; both
    /// only come from a corrupt subscription, and keeping them could assign a partition
    /// that does not exist, so they are dropped.
    pub(crate) fn owned(&self, member: usize) -> Vec<Tp> {
        let topic_index = |name: &str| self.topics.binary_search_by(|t| java_cmp(t, name)).ok();
        let mut seen = BTreeSet::new();
        self.members[member]
            .owned
            .iter()
            .filter_map(|gp| topic_index(&gp.topic).map(|topic| Tp { topic, partition: gp.partition }))
            .filter(|tp| tp.partition < self.counts[tp.topic] && seen.insert(*tp))
            .collect()
    }

    /// `MemberInfo.compareTo`: static members (by `group.instance.id`) before dynamic ones
    /// (by `member.id`).
    pub(crate) fn member_info_cmp(&self, a: usize, b: usize) -> Ordering {
        let (ma, mb) = (self.members[a], self.members[b]);
        match (&ma.group_instance_id, &mb.group_instance_id) {
            (Some(ia), Some(ib)) => java_cmp(ia, ib),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => ma.member_id.cmp(&mb.member_id),
        }
    }

    /// Members in `MemberInfo` order. Java sorts a list built in its map's walk with a
    /// stable sort, so members that compare equal (a shared instance id) keep that walk.
    pub(crate) fn members_by_info(&self, filter: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut list: Vec<usize> = self.hash_order.iter().copied().filter(|&m| filter(m)).collect();
        list.sort_by(|&a, &b| self.member_info_cmp(a, b));
        list
    }

    fn output(&self, lists: Vec<Vec<Tp>>) -> GroupAssignment {
        let mut out = GroupAssignment::new();
        for (m, member) in self.members.iter().enumerate() {
            let mut list: Vec<GroupPartition> = lists
                .get(m)
                .map(|l| l.iter().map(|tp| GroupPartition::new(self.topics[tp.topic], tp.partition)).collect())
                .unwrap_or_default();
            list.sort();
            out.insert(member.member_id.clone(), list);
        }
        out
    }
}

/// `RangeAssignor`: per topic, its members in `MemberInfo` order get consecutive ranges, the
/// first `count % members` one partition more.
fn range(group: &Group) -> Vec<Vec<Tp>> {
    let mut lists = vec![Vec::new(); group.member_count()];
    for topic in 0..group.topics.len() {
        let consumers = group.members_by_info(|m| group.subscribed[m].contains(&topic));
        if consumers.is_empty() {
            continue;
        }
        let n = consumers.len() as u32;
        let (per_member, with_extra) = (group.counts[topic] / n, group.counts[topic] % n);
        for (i, &m) in consumers.iter().enumerate() {
            let i = i as u32;
            let start = per_member * i + i.min(with_extra);
            let length = per_member + u32::from(i < with_extra);
            lists[m].extend((start..start + length).map(|partition| Tp { topic, partition }));
        }
    }
    lists
}

/// `RoundRobinAssignor`: all partitions in `(topic, partition)` order dealt around the members
/// in `MemberInfo` order, skipping a member not subscribed to the partition's topic.
fn round_robin(group: &Group) -> Vec<Vec<Tp>> {
    let mut lists = vec![Vec::new(); group.member_count()];
    let circle = group.members_by_info(|_| true);
    let mut next = 0;
    for tp in group.all_partitions() {
        // Every topic that takes part has a subscriber, so at most one lap is needed; the
        // bound keeps a bug from looping.
        let found = (0..circle.len())
            .map(|step| (next + step) % circle.len())
            .find(|&i| group.subscribed[circle[i]].contains(&tp.topic));
        if let Some(i) = found {
            lists[circle[i]].push(tp);
            next = (i + 1) % circle.len();
        }
    }
    lists
}
