//! Consumer lag math, pure: lag in records, lag in seconds, and a lag status after
//! Burrow's evaluation rules. The exporter feeds it what it collects from real clusters;
//! the simulator can check it against the ground truth only it knows.

use crate::types::{Millis, Offset};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Lag in records: the end a consumer can read to (the high watermark, or the last
/// stable offset for read_committed) minus where it resumes — its committed offset, or the
/// log start when retention already deleted past the commit. Never negative.
pub fn lag_records(readable_end: Offset, log_start: Offset, committed: Offset) -> u64 {
    readable_end.0.saturating_sub(committed.0.max(log_start.0))
}

/// Records deleted by retention before the group consumed them (commit below log start).
pub fn messages_lost(log_start: Offset, committed: Offset) -> u64 {
    log_start.0.saturating_sub(committed.0)
}

/// Points (time observed, log end then) of one partition from past collections, bounded.
/// Only rising log ends are kept, so the table maps an offset to when it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetTimeline {
    points: VecDeque<(Millis, Offset)>,
    points_max: usize,
}

impl OffsetTimeline {
    /// A timeline keeping at most `points_max` points (at least 2).
    pub fn new(points_max: usize) -> OffsetTimeline {
        OffsetTimeline { points: VecDeque::new(), points_max: points_max.max(2) }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Records that the log ended at `end` at time `at`. A log end that went back (a
    /// truncated or recreated partition) restarts the timeline.
    pub fn observe(&mut self, at: Millis, end: Offset) {
        match self.points.back() {
            Some((_, last)) if end < *last => self.points.clear(),
            Some((last_at, last)) if end == *last || at <= *last_at => return,
            _ => {}
        }
        if self.points.len() == self.points_max {
            self.points.pop_front();
        }
        self.points.push_back((at, end));
    }

    /// When the record at `offset` was written, estimated from the points around it, or
    /// extrapolated from the nearest two; `None` with fewer than two points.
    pub fn time_of(&self, offset: Offset) -> Option<f64> {
        if self.points.len() < 2 {
            return None;
        }
        let index = self.points.iter().position(|(_, end)| *end > offset).unwrap_or(self.points.len() - 1).max(1);
        let (t0, o0) = self.points[index - 1];
        let (t1, o1) = self.points[index];
        let rate = (t1.0 as f64 - t0.0 as f64) / (o1.0 as f64 - o0.0 as f64);
        Some(t0.0 as f64 + (offset.0 as f64 - o0.0 as f64) * rate)
    }

    /// Lag in seconds of a consumer at `committed`: how long ago the first record it has
    /// not consumed was written. 0 when caught up; `None` (never NaN or negative) when the
    /// timeline is too short to say.
    pub fn lag_seconds(&self, committed: Offset, now: Millis) -> Option<f64> {
        let (_, latest) = *self.points.back()?;
        if committed >= latest {
            return Some(0.0);
        }
        let written = self.time_of(committed)?;
        Some(((now.0 as f64 - written) / 1_000.0).max(0.0))
    }
}

/// Status of a consumer's progress on one partition (or, worst of all, a group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LagStatus {
    Ok,
    /// Committing, but the lag does not shrink.
    Warn,
    /// The committed offset went back.
    Rewind,
    /// Committing the same offset while lag stays above zero.
    Stall,
    /// No commit for longer than the window spans.
    Stop,
}

impl LagStatus {
    pub const ALL: [LagStatus; 5] =
        [LagStatus::Ok, LagStatus::Warn, LagStatus::Rewind, LagStatus::Stall, LagStatus::Stop];

    pub fn name(self) -> &'static str {
        match self {
            LagStatus::Ok => "OK",
            LagStatus::Warn => "WARN",
            LagStatus::Rewind => "REWIND",
            LagStatus::Stall => "STALL",
            LagStatus::Stop => "STOP",
        }
    }
}

/// One observation of a group's commit on a partition: when, where, and the lag then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSample {
    pub at: Millis,
    pub committed: Offset,
    pub lag: u64,
}

/// Burrow's rules over a window of samples (oldest first), judged at `now`:
/// no lag now is OK; no commit for longer than the window spans is STOP; an offset that
/// went back is REWIND; the same offset throughout with lag is STALL; a lag that was never
/// zero and never shrank is WARN; anything else is OK. A window of one sample says OK.
pub fn partition_status(window: &[CommitSample], now: Millis) -> LagStatus {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return LagStatus::Ok;
    };
    if last.lag == 0 || window.len() < 2 {
        return LagStatus::Ok;
    }
    if now.since(last.at) > last.at.since(first.at) {
        return LagStatus::Stop;
    }
    if window.iter().any(|s| s.lag == 0) {
        return LagStatus::Ok;
    }
    if window.windows(2).any(|w| w[1].committed < w[0].committed) {
        return LagStatus::Rewind;
    }
    if window.iter().all(|s| s.committed == first.committed) {
        return LagStatus::Stall;
    }
    if window.windows(2).all(|w| w[1].lag >= w[0].lag) {
        return LagStatus::Warn;
    }
    LagStatus::Ok
}

/// A group's status: the worst of its partitions'.
pub fn group_status(partitions: impl IntoIterator<Item = LagStatus>) -> LagStatus {
    partitions.into_iter().max().unwrap_or(LagStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Table test of the lag formula the issue gives: max(0, end − max(committed, log
    // start)); commits below the log start count as lost records, not as lag.
    #[test]
    fn lag_in_records_table() {
        // (end, log start, committed, lag, lost)
        let table =
            [(100, 0, 40, 60, 0), (100, 0, 100, 0, 0), (100, 0, 120, 0, 0), (100, 50, 10, 50, 40), (0, 0, 0, 0, 0)];
        for (end, start, committed, lag, lost) in table {
            assert_eq!(lag_records(Offset(end), Offset(start), Offset(committed)), lag, "{end} {start} {committed}");
            assert_eq!(messages_lost(Offset(start), Offset(committed)), lost);
        }
    }

    // Shows lag in seconds interpolates between observed (time, log end) points,
    // extrapolates beyond them, is 0 when caught up, and absent with too little data.
    #[test]
    fn lag_in_seconds_table() {
        let mut timeline = OffsetTimeline::new(10);
        assert_eq!(timeline.lag_seconds(Offset(0), Millis(0)), None);
        timeline.observe(Millis(10_000), Offset(100));
        assert_eq!(timeline.lag_seconds(Offset(50), Millis(20_000)), None, "one point is too little");
        assert_eq!(timeline.lag_seconds(Offset(100), Millis(20_000)), Some(0.0), "caught up");
        timeline.observe(Millis(20_000), Offset(200));
        timeline.observe(Millis(30_000), Offset(400));
        // (committed, now, expected seconds)
        let table = [
            (150, 30_000, 15.0),
            (300, 30_000, 5.0),
            (200, 40_000, 20.0),
            (50, 30_000, 25.0),
            (400, 31_000, 0.0),
            (999, 31_000, 0.0),
        ];
        for (committed, now, expected) in table {
            let got = timeline.lag_seconds(Offset(committed), Millis(now)).expect("enough points");
            assert!((got - expected).abs() < 1e-9, "committed {committed} now {now}: {got} != {expected}");
        }
        // Never negative, even when the clock says the record is from the future.
        assert_eq!(timeline.lag_seconds(Offset(300), Millis(0)), Some(0.0));
    }

    // Shows the timeline is bounded, ignores repeats and restarts when the log end goes back.
    #[test]
    fn timeline_is_bounded_and_monotone() {
        let mut timeline = OffsetTimeline::new(3);
        for (at, end) in [(1, 10), (2, 10), (3, 20), (4, 30), (5, 40)] {
            timeline.observe(Millis(at), Offset(end));
        }
        assert_eq!(timeline.len(), 3);
        timeline.observe(Millis(6), Offset(5));
        assert_eq!(timeline.len(), 1);
    }

    fn window(samples: &[(u64, u64, u64)]) -> Vec<CommitSample> {
        samples
            .iter()
            .map(|(at, committed, lag)| CommitSample { at: Millis(*at), committed: Offset(*committed), lag: *lag })
            .collect()
    }

    // Table test of Burrow's consumer lag evaluation rules (Burrow wiki, "Consumer Lag
    // Evaluation Rules"): OK, WARN, STALL, STOP and REWIND.
    #[test]
    fn burrow_status_table() {
        let table: [(&str, Vec<CommitSample>, u64, LagStatus); 8] = [
            ("caught up now", window(&[(0, 10, 5), (10, 20, 0)]), 12, LagStatus::Ok),
            ("lag shrinking", window(&[(0, 10, 50), (10, 40, 30), (20, 70, 10)]), 22, LagStatus::Ok),
            ("lag zero once", window(&[(0, 10, 0), (10, 20, 5), (20, 30, 9)]), 22, LagStatus::Ok),
            ("lag growing while committing", window(&[(0, 10, 5), (10, 20, 8), (20, 30, 9)]), 22, LagStatus::Warn),
            ("same offset, lag", window(&[(0, 10, 5), (10, 10, 8), (20, 10, 9)]), 22, LagStatus::Stall),
            ("went back", window(&[(0, 30, 5), (10, 20, 8), (20, 25, 9)]), 22, LagStatus::Rewind),
            ("no commit for longer than the window", window(&[(0, 10, 5), (10, 20, 8)]), 25, LagStatus::Stop),
            ("a single sample", window(&[(0, 10, 5)]), 1_000, LagStatus::Ok),
        ];
        for (name, samples, now, expected) in table {
            assert_eq!(partition_status(&samples, Millis(now)), expected, "{name}");
        }
        assert_eq!(group_status([LagStatus::Ok, LagStatus::Stall, LagStatus::Warn]), LagStatus::Stall);
        assert_eq!(group_status([]), LagStatus::Ok);
    }
}
