//! `StickyAssignor` and `CooperativeStickyAssignor` (KIP-54, KIP-341, KIP-429, KIP-792):
//! the shared preparation of `AbstractStickyAssignor` and its constrained path, used when
//! every member has the same subscription. The general path is in [`super::sticky_general`].
//!
//! Stickiness is generation-aware: when two members claim one partition, the one that owned
//! it in the higher generation keeps the claim; two claims from the same generation void
//! both (the partition is then assigned afresh and, under cooperative rebalancing, withheld
//! for one round like any partition that changes owner).
//!
//! Kafka's eager `StickyAssignor` reads a member's generation from its user data and the
//! conflict check reads the subscription's generation field; a simulated member carries one
//! generation, [`Member::generation`](super::Member::generation), used for both.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{sticky_general, Group, Tp};

/// Kafka's `DEFAULT_GENERATION`: the generation of a member that reports none.
pub(crate) const DEFAULT_GENERATION: i32 = -1;

/// What `allSubscriptionsEqual` learns about the members.
pub(crate) struct Prepared {
    /// Whether every member sent the same subscription (the constrained path applies).
    pub(crate) all_equal: bool,
    /// Per member: the owned partitions it keeps a claim on after conflicts are settled.
    pub(crate) owned: Vec<Vec<Tp>>,
    /// Partitions claimed by two members of one generation: nobody keeps them.
    pub(crate) multi_claimed: BTreeSet<Tp>,
    pub(crate) max_generation: i32,
}

pub(crate) fn generation(group: &Group, member: usize) -> i32 {
    group.members[member].generation.unwrap_or(DEFAULT_GENERATION)
}

impl Prepared {
    /// Members are visited in the walk of Java's subscription map, as Kafka visits them:
    /// with three claimants the order decides who is left holding the partition.
    pub(crate) fn new(group: &Group) -> Prepared {
        let mut owned = vec![Vec::new(); group.member_count()];
        let mut owner_of: BTreeMap<Tp, usize> = BTreeMap::new();
        let mut multi_claimed = BTreeSet::new();
        let mut max_generation = DEFAULT_GENERATION;
        for &m in &group.hash_order {
            let gen = generation(group, m);
            max_generation = max_generation.max(gen);
            for tp in group.owned(m) {
                let Some(&other) = owner_of.get(&tp) else {
                    owned[m].push(tp);
                    owner_of.insert(tp, m);
                    continue;
                };
                let other_gen = generation(group, other);
                if gen < other_gen {
                    continue;
                }
                if gen == other_gen {
                    multi_claimed.insert(tp);
                } else {
                    owned[m].push(tp);
                }
                owned[other].retain(|x| *x != tp);
                owner_of.insert(tp, m);
            }
        }
        Prepared { all_equal: all_subscriptions_equal(group), owned, multi_claimed, max_generation }
    }
}

/// Kafka compares the subscriptions as sent, topics without metadata included. Kafka takes
/// the first non-empty subscription as the reference, so a member with an empty one can pass
/// as equal and be handed partitions of topics it never subscribed to; here every
/// subscription must equal the first, empty or not.
fn all_subscriptions_equal(group: &Group) -> bool {
    let mut walk = group.hash_order.iter();
    let Some(&first) = walk.next() else { return true };
    walk.all(|&m| group.raw_topics[m] == group.raw_topics[first])
}

/// The assignment of either sticky assignor; `cooperative` withholds every partition that
/// changes owner in this round.
pub(crate) fn assign(group: &Group, cooperative: bool) -> Vec<Vec<Tp>> {
    if group.member_count() == 0 {
        return Vec::new();
    }
    let prepared = Prepared::new(group);
    let (mut lists, transferring) = if prepared.all_equal {
        match Constrained::new(group, &prepared).build() {
            Some(done) => done,
            // Kafka throws IllegalStateException here; it cannot happen on valid input.
            None => return Vec::new(),
        }
    } else {
        let lists = sticky_general::assign(group, &prepared);
        let transferring = if cooperative { transferring_by_diff(group, &lists) } else { BTreeMap::new() };
        (lists, transferring)
    };
    if cooperative {
        for (tp, new_owner) in transferring {
            lists[new_owner].retain(|x| *x != tp);
        }
    }
    lists
}

/// `computePartitionsTransferringOwnership`, for the general path, which does not track
/// moves: a partition is transferring if some member gains it and some member (by its raw
/// `ownedPartitions`, before conflicts are settled) loses it.
fn transferring_by_diff(group: &Group, lists: &[Vec<Tp>]) -> BTreeMap<Tp, usize> {
    let mut added = BTreeMap::new();
    let mut revoked = BTreeSet::new();
    for (m, assigned) in lists.iter().enumerate() {
        let owned: BTreeSet<Tp> = group.owned(m).into_iter().collect();
        let assigned_set: BTreeSet<Tp> = assigned.iter().copied().collect();
        added.extend(assigned.iter().filter(|tp| !owned.contains(tp)).map(|tp| (*tp, m)));
        revoked.extend(owned.difference(&assigned_set).copied());
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

/// Partitions per member, and the partitions changing owner with their new owner.
type Outcome = (Vec<Vec<Tp>>, BTreeMap<Tp, usize>);

/// `ConstrainedAssignmentBuilder` without racks: keep owned partitions up to the quota, then
/// deal the rest round-robin to the members still under it.
struct Constrained<'g> {
    group: &'g Group<'g>,
    owned: &'g [Vec<Tp>],
    multi_claimed: &'g BTreeSet<Tp>,
    min_quota: usize,
    max_quota: usize,
    /// How many members end with `max_quota` (zero when the partitions divide evenly).
    expected_over_min: usize,
    current_over_min: usize,
    under_min: Vec<usize>,
    exactly_min: VecDeque<usize>,
    revoked: BTreeSet<Tp>,
    assignment: Vec<Vec<Tp>>,
    transferring: BTreeMap<Tp, usize>,
}

impl<'g> Constrained<'g> {
    fn new(group: &'g Group<'g>, prepared: &'g Prepared) -> Self {
        let members = group.member_count();
        let total: usize = group.counts.iter().map(|&c| c as usize).sum();
        Constrained {
            group,
            owned: &prepared.owned,
            multi_claimed: &prepared.multi_claimed,
            min_quota: total / members,
            max_quota: total.div_ceil(members),
            expected_over_min: total % members,
            current_over_min: 0,
            under_min: Vec::new(),
            exactly_min: VecDeque::new(),
            revoked: BTreeSet::new(),
            assignment: vec![Vec::new(); members],
            transferring: BTreeMap::new(),
        }
    }

    fn build(mut self) -> Option<Outcome> {
        self.assign_owned();
        let assigned: BTreeSet<Tp> = self.assignment.iter().flatten().copied().collect();
        let unassigned: Vec<Tp> = self.group.all_partitions().into_iter().filter(|tp| !assigned.contains(tp)).collect();
        // Member ids sort as ranks.
        self.under_min.sort_unstable();
        self.exactly_min.make_contiguous().sort_unstable();
        self.assign_round_robin(&unassigned)?;
        Some((self.assignment, self.transferring))
    }

    /// Each member keeps its owned partitions, lowest partition number first (then topic),
    /// up to `min_quota`, or `max_quota` while fewer than `expected_over_min` members have
    /// taken that many. Members are visited in Java's map walk, which decides who those are.
    fn assign_owned(&mut self) {
        for &m in &self.group.hash_order {
            let mut owned: Vec<Tp> =
                self.owned[m].iter().copied().filter(|tp| !self.multi_claimed.contains(tp)).collect();
            owned.sort_by_key(|tp| (tp.partition, tp.topic));
            let keep = if owned.len() < self.min_quota {
                self.under_min.push(m);
                owned.len()
            } else if owned.len() >= self.max_quota && self.current_over_min < self.expected_over_min {
                self.current_over_min += 1;
                if self.current_over_min == self.expected_over_min {
                    self.exactly_min.clear();
                }
                self.max_quota
            } else {
                if self.current_over_min < self.expected_over_min {
                    self.exactly_min.push_back(m);
                }
                self.min_quota
            };
            self.revoked.extend(owned.drain(keep..));
            self.assignment[m] = owned;
        }
    }

    /// Deal the unassigned partitions (in `(topic, partition)` order) around the members
    /// under `min_quota`; once none is left, one each to members at exactly `min_quota`.
    /// `None` if partitions remain with no member to take them (Kafka throws).
    fn assign_round_robin(&mut self, unassigned: &[Tp]) -> Option<()> {
        // A cursor into `under_min` standing in for Java's list iterator.
        let mut cursor = 0;
        for &tp in unassigned {
            let from_under_min = if cursor < self.under_min.len() {
                true
            } else if !self.under_min.is_empty() {
                cursor = 0;
                true
            } else {
                false
            };
            let consumer = if from_under_min {
                cursor += 1;
                self.under_min[cursor - 1]
            } else {
                self.exactly_min.pop_front()?
            };
            let count = self.assign_new(tp, consumer);
            if count == self.min_quota && from_under_min {
                cursor -= 1;
                self.under_min.remove(cursor);
                self.exactly_min.push_back(consumer);
            } else if count == self.max_quota {
                self.current_over_min += 1;
            }
        }
        Some(())
    }

    fn assign_new(&mut self, tp: Tp, consumer: usize) -> usize {
        self.assignment[consumer].push(tp);
        // Owned partitions were all placed already, so this one is new to `consumer`; if it
        // was revoked from someone (or voided by a double claim) it changes owner.
        if self.revoked.contains(&tp) || self.multi_claimed.contains(&tp) {
            self.transferring.insert(tp, consumer);
        }
        self.assignment[consumer].len()
    }
}
