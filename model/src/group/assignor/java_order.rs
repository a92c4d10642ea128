//! Iteration order of Java's `HashMap` / `HashSet`, reproduced.
//!
//! Kafka's assignors walk `HashMap`s keyed by member id and `HashSet`s of `TopicPartition`,
//! and some of their choices depend on that walk (which member keeps `maxQuota` owned
//! partitions, which earlier-moved partition is moved back). To give the same output we
//! compute the same order: Java hashes (`String.hashCode`, `TopicPartition.hashCode`), the
//! `HashMap` spread `h ^ (h >>> 16)`, a table of 16 buckets doubled when the size passes
//! 3/4 of it or when a bucket reaches 9 entries in a table below 64 buckets, and entries
//! kept in insertion order inside a bucket (which `resize` preserves).
//!
//! Not reproduced: a bucket of a table of ≥ 64 buckets that reaches 9 entries becomes a red-
//! black tree, whose walk may differ. That needs 9 keys with equal low hash bits in one map
//! of at least 48 members, or one set of at least 48 partitions.

/// Buckets of a fresh `HashMap` / `HashSet` (`DEFAULT_INITIAL_CAPACITY`).
const CAPACITY_INITIAL: usize = 16;
/// Below this table size a crowded bucket doubles the table instead of becoming a tree.
const CAPACITY_MIN_TREEIFY: usize = 64;
/// A bucket holding this many entries after an insert triggers `treeifyBin`.
const BUCKET_TREEIFY: usize = 9;

/// Java's `String.hashCode`: over UTF-16 code units, wrapping.
pub(crate) fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// Kafka's `TopicPartition.hashCode`: `31 * (31 + partition) + topic.hashCode()`.
pub(crate) fn topic_partition_hash(topic_hash: i32, partition: u32) -> i32 {
    // Kafka's partition is an `int`; the wrap only matters for counts no broker allows.
    let partition = partition as i32;
    31i32.wrapping_add(partition).wrapping_mul(31).wrapping_add(topic_hash)
}

/// Java's `String.compareTo`: UTF-16 code units in order (differs from Rust's byte order only
/// for characters above U+FFFF against U+E000..=U+FFFF).
pub(crate) fn java_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn bucket(hash: i32, capacity: usize) -> usize {
    let h = hash as u32;
    ((h ^ (h >> 16)) as usize) & (capacity - 1)
}

/// An insertion-ordered list of keys with the bucket table a Java `HashSet` would have.
#[derive(Clone, Debug)]
pub(crate) struct JavaHashSet<T> {
    entries: Vec<(T, i32)>,
    capacity: usize,
}

impl<T: PartialEq> JavaHashSet<T> {
    pub(crate) fn new() -> Self {
        JavaHashSet { entries: Vec::new(), capacity: CAPACITY_INITIAL }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn insert(&mut self, key: T, hash: i32) {
        if self.entries.iter().any(|(k, _)| *k == key) {
            return;
        }
        self.entries.push((key, hash));
        let home = bucket(hash, self.capacity);
        let crowd = self.entries.iter().filter(|(_, h)| bucket(*h, self.capacity) == home).count();
        if crowd >= BUCKET_TREEIFY && self.capacity < CAPACITY_MIN_TREEIFY {
            self.capacity *= 2;
        }
        // `++size > threshold` with threshold = capacity * 0.75.
        if self.entries.len() > self.capacity / 4 * 3 {
            self.capacity *= 2;
        }
    }

    /// Removing never shrinks a Java table.
    pub(crate) fn remove(&mut self, key: &T) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// Keys in Java's iteration order: by bucket, then by insertion inside a bucket.
    pub(crate) fn iter_java(&self) -> impl Iterator<Item = &T> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        // A stable sort: keys of one bucket keep their insertion order.
        order.sort_by_key(|&i| bucket(self.entries[i].1, self.capacity));
        order.into_iter().map(move |i| &self.entries[i].0)
    }

    pub(crate) fn first_java(&self) -> Option<&T> {
        self.iter_java().next()
    }
}

/// Positions of `hashes` (keys put in this order into a fresh `HashMap`) in Java's walk.
pub(crate) fn hash_map_order(hashes: &[i32]) -> Vec<usize> {
    let mut set = JavaHashSet::new();
    for (i, &h) in hashes.iter().enumerate() {
        set.insert(i, h);
    }
    set.iter_java().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shows that the hashes are Java's, from the definition s[0]*31^(n-1) + ... + s[n-1]
    // and a well-known value ("polygenelubricants".hashCode() == Integer.MIN_VALUE).
    #[test]
    fn string_hash_matches_java_definition() {
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("ab"), 97 * 31 + 98);
        assert_eq!(string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(topic_partition_hash(string_hash("t"), 0), 31 * 31 + 116);
    }

    // Shows the walk is by bucket, then insertion: hashes 98 and 97 land in buckets 2 and 1
    // of 16, so a map filled 98, 97 walks 97 first; keys 16 apart share a bucket and keep
    // insertion order.
    #[test]
    fn walk_is_bucket_then_insertion_order() {
        assert_eq!(hash_map_order(&[98, 97]), vec![1, 0]);
        assert_eq!(hash_map_order(&[33, 17, 1]), vec![0, 1, 2]);
        assert_eq!(hash_map_order(&[34, 17, 1]), vec![1, 2, 0]);
        // 13 keys resize 16 -> 32: 17 and 1 no longer share a bucket, and 17 (bucket 17)
        // now walks after 100..=110 (buckets 4..=14).
        let mut hashes: Vec<i32> = (100..111).collect();
        hashes.push(17);
        hashes.push(1);
        let mut expected = vec![12];
        expected.extend(0..11);
        expected.push(11);
        assert_eq!(hash_map_order(&hashes), expected);
    }
}
