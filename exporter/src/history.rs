//! What the exporter remembers between collections of one cluster, to turn offsets into
//! lag in seconds and a lag status: a bounded (time, log end) timeline per partition and a
//! bounded window of commit samples per group and partition. Pure: time comes in.

use crate::snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use trial_model::lag::{group_status, lag_records, partition_status, CommitSample, OffsetTimeline};
use trial_model::{Millis, Offset};

/// Points kept per partition timeline (one per collection).
pub const TIMELINE_POINTS_MAX: usize = 64;
/// Commit samples kept per group and partition (Burrow's default window is 10).
pub const WINDOW_SAMPLES_MAX: usize = 10;

#[derive(Default)]
pub struct LagHistory {
    timelines: BTreeMap<(String, i32), OffsetTimeline>,
    windows: BTreeMap<(String, String, i32), VecDeque<CommitSample>>,
}

fn offset(value: i64) -> Offset {
    Offset(value.max(0) as u64)
}

impl LagHistory {
    /// Adds this collection to the history and fills in lag seconds and statuses. Series
    /// for partitions and groups that are gone are forgotten, so memory stays bounded.
    pub fn annotate(&mut self, snapshot: &mut Snapshot, now: Millis) {
        // Sets, not lists: a cluster can have 100,000 group partitions.
        let mut seen = BTreeSet::new();
        for p in &snapshot.partitions {
            if let Some(high) = p.high_watermark {
                let key = (p.topic.clone(), p.partition);
                self.timelines
                    .entry(key.clone())
                    .or_insert_with(|| OffsetTimeline::new(TIMELINE_POINTS_MAX))
                    .observe(now, offset(high));
                seen.insert(key);
            }
        }
        self.timelines.retain(|key, _| seen.contains(key));
        let mut live = BTreeSet::new();
        let index: BTreeMap<(&str, i32), usize> =
            snapshot.partitions.iter().enumerate().map(|(i, p)| ((p.topic.as_str(), p.partition), i)).collect();
        let ends: Vec<(Option<i64>, Option<i64>)> =
            snapshot.partitions.iter().map(|p| (snapshot.readable_end(p), p.low_watermark)).collect();
        for group in &mut snapshot.groups {
            for o in &mut group.offsets {
                let Some(&at) = index.get(&(o.topic.as_str(), o.partition)) else { continue };
                let (Some(end), Some(low)) = ends[at] else { continue };
                let lag = lag_records(offset(end), offset(low), offset(o.committed));
                let key = (group.group.clone(), o.topic.clone(), o.partition);
                let window = self.windows.entry(key.clone()).or_default();
                if window.len() == WINDOW_SAMPLES_MAX {
                    window.pop_front();
                }
                window.push_back(CommitSample { at: now, committed: offset(o.committed), lag });
                o.status = partition_status(window.make_contiguous(), now);
                o.lag_seconds = self
                    .timelines
                    .get(&(o.topic.clone(), o.partition))
                    .and_then(|t| t.lag_seconds(offset(o.committed), now));
                live.insert(key);
            }
            group.status = group_status(group.offsets.iter().map(|o| o.status));
        }
        self.windows.retain(|key, _| live.contains(key));
    }

    pub fn is_empty(&self) -> bool {
        self.timelines.is_empty() && self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{GroupInfo, GroupOffset, LagStatus, PartitionInfo};

    fn snapshot(high: i64, committed: i64) -> Snapshot {
        let partition = PartitionInfo {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            replicas: 1,
            in_sync_replicas: 1,
            low_watermark: Some(0),
            high_watermark: Some(high),
            last_stable_offset: Some(high),
            max_timestamp_ms: None,
        };
        let offset =
            GroupOffset { topic: "t".into(), partition: 0, committed, lag_seconds: None, status: LagStatus::Ok };
        let group = GroupInfo { group: "g".into(), offsets: vec![offset], ..GroupInfo::default() };
        Snapshot { partitions: vec![partition], groups: vec![group], ..Snapshot::default() }
    }

    // Shows lag in seconds: 0 when caught up, then the age of the first unconsumed record,
    // interpolated from the log ends seen at past collections (issue 2, "Lag in seconds").
    #[test]
    fn lag_seconds_over_collections() {
        let mut history = LagHistory::default();
        let mut first = snapshot(100, 100);
        history.annotate(&mut first, Millis(10_000));
        assert_eq!(first.groups[0].offsets[0].lag_seconds, Some(0.0), "caught up");
        let mut second = snapshot(200, 100);
        history.annotate(&mut second, Millis(20_000));
        // Offset 100 was the log end at 10 s: the first unconsumed record is 10 s old.
        assert_eq!(second.groups[0].offsets[0].lag_seconds, Some(10.0));
        assert_eq!(second.groups[0].offsets[0].status, LagStatus::Ok, "lag was zero in the window");
    }

    // Shows a group committing the same offset while the log grows is STALL, and the group's
    // status is its worst partition's (Burrow's rules, issue 2 "lag status").
    #[test]
    fn stalled_consumer_is_reported() {
        let mut history = LagHistory::default();
        for (at, high) in [(10_000, 150), (20_000, 200), (30_000, 300)] {
            let mut s = snapshot(high, 100);
            history.annotate(&mut s, Millis(at));
            if at == 30_000 {
                assert_eq!(s.groups[0].offsets[0].status, LagStatus::Stall);
                assert_eq!(s.groups[0].status, LagStatus::Stall);
                // Extrapolated from the first two points: offset 100 was written at 0 s.
                assert_eq!(s.groups[0].offsets[0].lag_seconds, Some(30.0));
            }
        }
    }

    // Shows the history forgets partitions and groups that are gone.
    #[test]
    fn forgets_what_is_gone() {
        let mut history = LagHistory::default();
        history.annotate(&mut snapshot(10, 5), Millis(1_000));
        assert!(!history.is_empty());
        history.annotate(&mut Snapshot::default(), Millis(2_000));
        assert!(history.is_empty());
    }
}
