//! A map keyed by broker id for the handful of peers a broker tracks per partition or
//! per leader (followers, fetchers): a Vec sorted by id, iterated in id order like the
//! `BTreeMap` it replaces, without a tree walk on the fetch path.

use crate::types::NodeId;

#[derive(Clone, Debug)]
pub(super) struct NodeMap<V>(Vec<(NodeId, V)>);

impl<V> Default for NodeMap<V> {
    fn default() -> Self {
        NodeMap(Vec::new())
    }
}

impl<V> NodeMap<V> {
    pub(super) fn get(&self, id: &NodeId) -> Option<&V> {
        self.0.iter().find(|(key, _)| key == id).map(|(_, value)| value)
    }

    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<&mut V> {
        self.0.iter_mut().find(|(key, _)| key == id).map(|(_, value)| value)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, value)| value)
    }

    pub(super) fn remove(&mut self, id: &NodeId) -> Option<V> {
        let index = self.0.iter().position(|(key, _)| key == id)?;
        Some(self.0.remove(index).1)
    }

    /// The value of `id`, inserting `V::default()` in id order first if absent.
    pub(super) fn get_or_default(&mut self, id: NodeId) -> &mut V
    where
        V: Default,
    {
        let index = match self.0.binary_search_by_key(&id, |(key, _)| *key) {
            Ok(index) => index,
            Err(index) => {
                self.0.insert(index, (id, V::default()));
                index
            }
        };
        &mut self.0[index].1
    }
}

impl<V> FromIterator<(NodeId, V)> for NodeMap<V> {
    /// Sorted by id; of two entries with one id the first stays.
    fn from_iter<I: IntoIterator<Item = (NodeId, V)>>(iter: I) -> Self {
        let mut entries: Vec<_> = iter.into_iter().collect();
        entries.sort_by_key(|(id, _)| *id);
        entries.dedup_by_key(|(id, _)| *id);
        NodeMap(entries)
    }
}
