//! The general path of `AbstractStickyAssignor` (`GeneralAssignmentBuilder`, no racks), used
//! when members subscribe to different topics: keep every valid owned partition, give each
//! unassigned partition to the least-loaded member subscribed to its topic, then move
//! partitions from members holding two or more above another candidate until balanced,
//! preferring to move a partition back to its owner of the previous generation and undoing
//! a move rather than making a second one (`PartitionMovements`).
//!
//! Two guards where Kafka's code would fail or misassign, both only reachable when a member
//! of an older generation has dropped the topic it owned a partition of:
//! - a partition is moved back to its previous-generation owner only if that member is still
//!   a candidate for it (Kafka moves it regardless, or throws if that member is fixed);
//! - the rebalancing loop is bounded (Kafka's loop relies on each move improving balance).
//!
//! Kafka's `isBalanced` and balance score look at every member, each time, so this path
//! is quadratic; groups in the simulator are small.

use std::collections::{BTreeMap, BTreeSet};

use super::java_order::{java_cmp, JavaHashSet};
use super::sticky::{Prepared, DEFAULT_GENERATION};
use super::{Group, Tp};

/// Passes over the partition list before the rebalancing loop gives up (see module docs).
const REASSIGNMENT_PASSES_MAX: usize = 1_000;

pub(crate) fn assign(group: &Group, prepared: &Prepared) -> Vec<Vec<Tp>> {
    let mut builder = General::new(group, prepared);
    let prev = previous_owners(group, prepared.max_generation);
    let unassigned = builder.assign_owned();
    builder.balance(&prev, unassigned);
    builder.current
}

/// `prepopulateCurrentAssignments`: for each partition, the member that owned it in the
/// highest generation below the current one (the first of a tie in Java's map walk).
fn previous_owners(group: &Group, max_generation: i32) -> BTreeMap<Tp, (usize, i32)> {
    let mut prev: BTreeMap<Tp, (usize, i32)> = BTreeMap::new();
    for &m in &group.hash_order {
        let gen = match group.members[m].generation {
            Some(g) if g < max_generation => g,
            None if max_generation > DEFAULT_GENERATION => DEFAULT_GENERATION,
            _ => continue,
        };
        for tp in group.owned(m) {
            match prev.get(&tp) {
                Some(&(_, seen)) if gen <= seen => {}
                _ => {
                    prev.insert(tp, (m, gen));
                }
            }
        }
    }
    prev
}

struct General<'g> {
    group: &'g Group<'g>,
    /// Members subscribed to each topic.
    candidates: Vec<Vec<usize>>,
    /// Partition count of everything a member subscribes to: the most it could hold.
    capacity: Vec<usize>,
    current: Vec<Vec<Tp>>,
    owner: BTreeMap<Tp, usize>,
    /// Kafka's `sortedCurrentSubscriptions`: members by (partitions held, member id).
    by_load: BTreeSet<(usize, usize)>,
    /// Members that take part in reassignment (Kafka removes the others from its maps).
    active: Vec<bool>,
    /// All partitions, topics with fewer candidates first (Kafka's `TopicComparator`).
    sorted_partitions: Vec<Tp>,
    revocation_required: bool,
    movements: Movements,
}

impl<'g> General<'g> {
    fn new(group: &'g Group<'g>, prepared: &Prepared) -> Self {
        let members = group.member_count();
        let mut candidates = vec![Vec::new(); group.topics.len()];
        for &m in &group.hash_order {
            for &t in &group.subscribed[m] {
                candidates[t].push(m);
            }
        }
        let capacity =
            (0..members).map(|m| group.subscribed[m].iter().map(|&t| group.counts[t] as usize).sum()).collect();
        let mut topics: Vec<usize> = (0..group.topics.len()).collect();
        topics.sort_by(|&a, &b| {
            candidates[a].len().cmp(&candidates[b].len()).then(java_cmp(group.topics[a], group.topics[b]))
        });
        let sorted_partitions = topics.iter().flat_map(|&t| group.partitions_of(t)).collect();
        General {
            group,
            candidates,
            capacity,
            current: prepared.owned.clone(),
            owner: BTreeMap::new(),
            by_load: BTreeSet::new(),
            active: vec![true; members],
            sorted_partitions,
            revocation_required: false,
            movements: Movements::default(),
        }
    }

    /// Drop owned partitions of topics the member no longer subscribes to; the rest stay.
    /// Returns the partitions nobody holds, in `sorted_partitions` order.
    fn assign_owned(&mut self) -> Vec<Tp> {
        for m in 0..self.group.member_count() {
            let subscribed = &self.group.subscribed[m];
            let before = self.current[m].len();
            self.current[m].retain(|tp| subscribed.contains(&tp.topic));
            self.revocation_required |= self.current[m].len() != before;
            for &tp in &self.current[m] {
                self.owner.insert(tp, m);
            }
        }
        self.by_load = (0..self.group.member_count()).map(|m| (self.current[m].len(), m)).collect();
        self.sorted_partitions.iter().copied().filter(|tp| !self.owner.contains_key(tp)).collect()
    }

    fn size(&self, m: usize) -> usize {
        self.current[m].len()
    }

    /// Move `tp` to `to`, keeping `by_load` ordered.
    fn give(&mut self, tp: Tp, to: usize) {
        let from = self.owner.get(&tp).copied();
        if let Some(from) = from {
            self.by_load.remove(&(self.size(from), from));
            self.current[from].retain(|x| *x != tp);
            self.by_load.insert((self.size(from), from));
        }
        self.by_load.remove(&(self.size(to), to));
        self.current[to].push(tp);
        self.by_load.insert((self.size(to), to));
        self.owner.insert(tp, to);
    }

    /// The least-loaded active member subscribed to `tp`'s topic.
    fn least_loaded_candidate(&self, tp: Tp) -> Option<usize> {
        self.by_load.iter().map(|&(_, m)| m).find(|&m| self.group.subscribed[m].contains(&tp.topic))
    }

    fn balance(&mut self, prev: &BTreeMap<Tp, (usize, i32)>, mut unassigned: Vec<Tp>) {
        let initializing = self.by_load.last().is_none_or(|&(size, _)| size == 0);
        for &tp in &unassigned {
            if let Some(m) = self.least_loaded_candidate(tp) {
                self.give(tp, m);
            }
        }
        // Partitions of a topic with one candidate, and members that hold all they could
        // and nothing another member could take, sit out the reassignment.
        let movable_topic: Vec<bool> = self.candidates.iter().map(|c| c.len() >= 2).collect();
        self.sorted_partitions.retain(|tp| movable_topic[tp.topic]);
        unassigned.retain(|tp| movable_topic[tp.topic]);
        for m in 0..self.group.member_count() {
            let can_grow = self.size(m) < self.capacity[m];
            if !can_grow && !self.current[m].iter().any(|tp| movable_topic[tp.topic]) {
                self.active[m] = false;
                self.by_load.remove(&(self.size(m), m));
            }
        }
        let snapshot = (self.current.clone(), self.owner.clone(), self.by_load.clone());
        let pre_score = self.balance_score();
        if !self.revocation_required {
            self.perform_reassignments(&unassigned, prev);
        }
        let all = std::mem::take(&mut self.sorted_partitions);
        let reassigned = self.perform_reassignments(&all, prev);
        // Kafka keeps the moves only if they improved the balance (or nothing was owned).
        if !initializing && reassigned && self.balance_score() >= pre_score {
            (self.current, self.owner, self.by_load) = snapshot;
        }
    }

    /// Sum over pairs of active members of the difference in partitions held.
    fn balance_score(&self) -> usize {
        let sizes: Vec<usize> =
            (0..self.group.member_count()).filter(|&m| self.active[m]).map(|m| self.size(m)).collect();
        let mut score = 0;
        for (i, a) in sizes.iter().enumerate() {
            score += sizes[i + 1..].iter().map(|b| a.abs_diff(*b)).sum::<usize>();
        }
        score
    }

    /// Kafka's `isBalanced`: loads within one of each other, or no member could take a
    /// partition from one holding two or more above it.
    fn is_balanced(&self) -> bool {
        let (Some(&(min, _)), Some(&(max, _))) = (self.by_load.first(), self.by_load.last()) else { return true };
        if min + 1 >= max {
            return true;
        }
        for &(count, m) in &self.by_load {
            if count == self.capacity[m] {
                continue;
            }
            let held: BTreeSet<Tp> = self.current[m].iter().copied().collect();
            for &topic in &self.group.subscribed[m] {
                for tp in self.group.partitions_of(topic) {
                    let other = self.owner.get(&tp).copied();
                    if held.contains(&tp) || other.is_none_or(|o| !self.active[o]) {
                        continue;
                    }
                    if other.is_some_and(|o| count + 1 < self.size(o)) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Repeat passes over `partitions` until one moves nothing; each pass stops early once
    /// balanced. Returns whether anything moved.
    fn perform_reassignments(&mut self, partitions: &[Tp], prev: &BTreeMap<Tp, (usize, i32)>) -> bool {
        let mut reassigned = false;
        for _ in 0..REASSIGNMENT_PASSES_MAX {
            let mut modified = false;
            for &tp in partitions {
                if self.is_balanced() {
                    break;
                }
                if self.reassign_one(tp, prev) {
                    reassigned = true;
                    modified = true;
                }
            }
            if !modified {
                break;
            }
        }
        reassigned
    }

    fn reassign_one(&mut self, tp: Tp, prev: &BTreeMap<Tp, (usize, i32)>) -> bool {
        let Some(consumer) = self.owner.get(&tp).copied().filter(|&c| self.active[c]) else { return false };
        let load = self.size(consumer);
        if let Some(&(prev_owner, _)) = prev.get(&tp) {
            let prev_is_candidate = self.active[prev_owner] && self.group.subscribed[prev_owner].contains(&tp.topic);
            if prev_is_candidate && load > self.size(prev_owner) + 1 {
                self.reassign(tp, prev_owner);
                return true;
            }
        }
        let lighter = self.candidates[tp.topic].iter().any(|&o| self.active[o] && load > self.size(o) + 1);
        if !lighter {
            return false;
        }
        match self.least_loaded_candidate(tp) {
            Some(to) => {
                self.reassign(tp, to);
                true
            }
            None => false,
        }
    }

    /// Move `tp` (or, if an earlier move went the other way between the same two members in
    /// this topic, undo that one instead) to `to`.
    fn reassign(&mut self, tp: Tp, to: usize) {
        let Some(from) = self.owner.get(&tp).copied() else { return };
        let actual = self.movements.partition_to_move(tp, from, to);
        let Some(actual_from) = self.owner.get(&actual).copied() else { return };
        let hash = self.group.tp_hash(actual);
        self.movements.record(actual, actual_from, to, hash);
        self.give(actual, to);
    }
}

/// Kafka's `PartitionMovements`: where each partition moved from and to in this rebalance,
/// and per topic which partitions moved between each ordered pair of members (a Java
/// `HashSet`, whose walk picks the partition that is moved back).
#[derive(Default)]
struct Movements {
    moved: BTreeMap<Tp, (usize, usize)>,
    by_topic: BTreeMap<usize, BTreeMap<(usize, usize), JavaHashSet<Tp>>>,
}

impl Movements {
    fn partition_to_move(&self, tp: Tp, from: usize, to: usize) -> Tp {
        let Some(pairs) = self.by_topic.get(&tp.topic) else { return tp };
        // A partition that already moved counts as moving from where it started.
        let from = self.moved.get(&tp).map_or(from, |&(src, _)| src);
        pairs.get(&(to, from)).and_then(JavaHashSet::first_java).copied().unwrap_or(tp)
    }

    fn record(&mut self, tp: Tp, from: usize, to: usize, hash: i32) {
        match self.forget(tp) {
            // Moving back where it started cancels the move.
            Some((src, _)) if src == to => {}
            Some((src, _)) => self.remember(tp, src, to, hash),
            None => self.remember(tp, from, to, hash),
        }
    }

    fn forget(&mut self, tp: Tp) -> Option<(usize, usize)> {
        let pair = self.moved.remove(&tp)?;
        if let Some(pairs) = self.by_topic.get_mut(&tp.topic) {
            if let Some(set) = pairs.get_mut(&pair) {
                set.remove(&tp);
                if set.is_empty() {
                    pairs.remove(&pair);
                }
            }
            if pairs.is_empty() {
                self.by_topic.remove(&tp.topic);
            }
        }
        Some(pair)
    }

    fn remember(&mut self, tp: Tp, src: usize, dst: usize, hash: i32) {
        self.moved.insert(tp, (src, dst));
        self.by_topic.entry(tp.topic).or_default().entry((src, dst)).or_insert_with(JavaHashSet::new).insert(tp, hash);
    }
}
