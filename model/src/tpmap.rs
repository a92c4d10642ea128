//! A map keyed by [`TopicPartition`], stored densely as `[topic][partition]`.
//!
//! Topic ids and partition numbers are small and dense in a cluster, and replicas, logs,
//! batches and sequences are looked up by partition on every produce and fetch: a
//! `BTreeMap` search there cost a quarter of a simulated run. Iteration is in
//! `(topic, partition)` order, the order a `BTreeMap<TopicPartition, _>` iterates in, so
//! swapping one for the other changes no run.

use crate::types::TopicPartition;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Bound on a partition or topic index this map will allocate for: an id above it is a
/// bug in the caller, not a cluster (Kafka's own limit is far lower in practice).
const INDEX_MAX: usize = 1 << 20;

#[derive(Clone, PartialEq, Eq)]
pub struct TpMap<V> {
    /// `slots[topic][partition]`; the key is kept beside the value so iteration can lend it.
    slots: Vec<Vec<Option<(TopicPartition, V)>>>,
    len: usize,
}

impl<V> Default for TpMap<V> {
    fn default() -> Self {
        TpMap { slots: Vec::new(), len: 0 }
    }
}

impl<V> TpMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn slot(&self, tp: &TopicPartition) -> Option<&Option<(TopicPartition, V)>> {
        self.slots.get(tp.topic.0 as usize)?.get(tp.partition as usize)
    }

    #[inline]
    fn slot_mut(&mut self, tp: &TopicPartition) -> Option<&mut Option<(TopicPartition, V)>> {
        self.slots.get_mut(tp.topic.0 as usize)?.get_mut(tp.partition as usize)
    }

    /// Grows the table to hold `tp` and returns its indices.
    #[cold]
    fn grow(&mut self, tp: TopicPartition) -> (usize, usize) {
        let (topic, partition) = (tp.topic.0 as usize, tp.partition as usize);
        assert!(topic < INDEX_MAX, "topic id {topic} out of range");
        assert!(partition < INDEX_MAX, "partition {partition} out of range");
        if self.slots.len() <= topic {
            self.slots.resize_with(topic + 1, Vec::new);
        }
        let row = &mut self.slots[topic];
        if row.len() <= partition {
            row.resize_with(partition + 1, || None);
        }
        (topic, partition)
    }

    #[inline(always)]
    pub fn get(&self, tp: &TopicPartition) -> Option<&V> {
        self.slot(tp)?.as_ref().map(|(_, v)| v)
    }

    #[inline(always)]
    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut V> {
        self.slot_mut(tp)?.as_mut().map(|(_, v)| v)
    }

    pub fn contains_key(&self, tp: &TopicPartition) -> bool {
        self.get(tp).is_some()
    }

    pub fn insert(&mut self, tp: TopicPartition, value: V) -> Option<V> {
        let (topic, partition) = self.grow(tp);
        let previous = self.slots[topic][partition].replace((tp, value)).map(|(_, v)| v);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    pub fn remove(&mut self, tp: &TopicPartition) -> Option<V> {
        let removed = self.slot_mut(tp)?.take().map(|(_, v)| v);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The value of `tp`, inserting `V::default()` first if absent (`entry().or_default()`).
    #[inline(always)]
    pub fn get_or_default(&mut self, tp: TopicPartition) -> &mut V
    where
        V: Default,
    {
        let (topic, partition) = (tp.topic.0 as usize, tp.partition as usize);
        let present = self.slots.get(topic).and_then(|row| row.get(partition)).is_some_and(Option::is_some);
        if !present {
            self.insert_default(tp);
        }
        match &mut self.slots[topic][partition] {
            Some((_, value)) => value,
            None => unreachable!("inserted above"),
        }
    }

    /// The slow half of `get_or_default`, out of line so the lookup inlines small.
    #[cold]
    #[inline(never)]
    fn insert_default(&mut self, tp: TopicPartition)
    where
        V: Default,
    {
        self.insert(tp, V::default());
    }

    pub fn iter(&self) -> Iter<'_, V> {
        Iter { rows: self.slots.iter(), row: [].iter() }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&TopicPartition, &mut V)> + '_ {
        self.slots.iter_mut().flatten().filter_map(|slot| slot.as_mut().map(|(k, v)| (&*k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.iter_mut().map(|(_, v)| v)
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&TopicPartition, &mut V) -> bool) {
        for slot in self.slots.iter_mut().flatten() {
            if let Some((k, v)) = slot {
                if !keep(k, v) {
                    *slot = None;
                    self.len -= 1;
                }
            }
        }
    }
}

impl<V> std::ops::Index<&TopicPartition> for TpMap<V> {
    type Output = V;

    fn index(&self, tp: &TopicPartition) -> &V {
        match self.get(tp) {
            Some(value) => value,
            None => panic!("no entry for {tp}"),
        }
    }
}

/// Iterator over a [`TpMap`] in `(topic, partition)` order.
pub struct Iter<'a, V> {
    rows: std::slice::Iter<'a, Vec<Option<(TopicPartition, V)>>>,
    row: std::slice::Iter<'a, Option<(TopicPartition, V)>>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a TopicPartition, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.row.by_ref().flatten().next() {
                return Some((k, v));
            }
            self.row = self.rows.next()?.iter();
        }
    }
}

impl<'a, V> IntoIterator for &'a TpMap<V> {
    type Item = (&'a TopicPartition, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<V> FromIterator<(TopicPartition, V)> for TpMap<V> {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, V)>>(iter: I) -> Self {
        let mut map = TpMap::new();
        for (tp, value) in iter {
            map.insert(tp, value);
        }
        map
    }
}

impl<V: fmt::Debug> fmt::Debug for TpMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Serialized as the `BTreeMap` it replaces, so files and traces keep their shape.
impl<V: Serialize> Serialize for TpMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for TpMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<TopicPartition, V>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shows that the dense map behaves as the BTreeMap it replaces: same lookups, same
    // iteration order (topic, then partition), same length after inserts and removals.
    #[test]
    fn behaves_as_a_btreemap() {
        let keys = [(2, 0), (0, 5), (0, 1), (1, 3), (0, 0), (2, 7)];
        let mut dense = TpMap::new();
        let mut tree = BTreeMap::new();
        for (i, (t, p)) in keys.iter().enumerate() {
            dense.insert(TopicPartition::new(*t, *p), i);
            tree.insert(TopicPartition::new(*t, *p), i);
        }
        assert_eq!(dense.remove(&TopicPartition::new(0, 1)), tree.remove(&TopicPartition::new(0, 1)));
        assert_eq!(dense.remove(&TopicPartition::new(9, 9)), None);
        *dense.get_or_default(TopicPartition::new(3, 2)) += 40;
        *tree.entry(TopicPartition::new(3, 2)).or_default() += 40;
        *dense.get_or_default(TopicPartition::new(2, 0)) += 1;
        *tree.entry(TopicPartition::new(2, 0)).or_default() += 1;
        let dense_items: Vec<_> = dense.iter().map(|(k, v)| (*k, *v)).collect();
        let tree_items: Vec<_> = tree.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(dense_items, tree_items);
        assert_eq!(dense.len(), tree.len());
        dense.retain(|_, v| *v % 2 == 0);
        tree.retain(|_, v| *v % 2 == 0);
        assert_eq!(dense.values().copied().collect::<Vec<_>>(), tree.values().copied().collect::<Vec<_>>());
        assert_eq!(dense.len(), tree.len());
    }
}
