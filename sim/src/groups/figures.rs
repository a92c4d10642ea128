//! Rebalance figures of one group: how often it rebalanced, how long each rebalance took
//! from trigger to Stable, and how long partitions stood without an owner.

use super::history::{GroupEvent, GroupHistory};
use super::replay::Members;
use serde::Serialize;
use std::collections::BTreeMap;
use trial_model::{Millis, TopicPartition};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RebalanceFigures {
    /// Rebalances triggered: a `RebalanceStarted` while the group was not already
    /// rebalancing (further triggers before it settles belong to the same one). A
    /// cooperative handover (KIP-429) takes two: the revoke and the follow-up.
    pub rebalances: u64,
    /// Of those, the ones that reached Stable (the others ended Empty or with the run).
    pub stabilized: u64,
    /// From the trigger to Stable, over the stabilized ones (rounded down).
    pub trigger_to_stable_ms_mean: Option<u64>,
    pub trigger_to_stable_ms_max: Option<u64>,
    /// Summed over partitions: time with no live member owning a partition the group had
    /// owned before (a crashed owner owns nothing; a paused one still owns).
    pub unowned_partition_ms: u64,
    /// The longest stretch one partition stood unowned.
    pub unowned_ms_max: u64,
}

impl RebalanceFigures {
    /// One line of the report.
    pub fn text(&self) -> String {
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
        format!(
            "rebalances {} ({} reached Stable) · trigger to Stable mean {}, max {} · unowned {} partition-ms (longest {} ms)",
            self.rebalances,
            self.stabilized,
            ms(self.trigger_to_stable_ms_mean),
            ms(self.trigger_to_stable_ms_max),
            self.unowned_partition_ms,
            self.unowned_ms_max
        )
    }
}

pub fn rebalance_figures(history: &GroupHistory) -> RebalanceFigures {
    let mut figures = RebalanceFigures::default();
    let mut durations: Vec<u64> = Vec::new();
    let mut triggered: Option<Millis> = None;
    for (at, event) in &history.events {
        match event {
            GroupEvent::RebalanceStarted { .. } if triggered.is_none() => {
                figures.rebalances += 1;
                triggered = Some(*at);
            }
            GroupEvent::Stable { .. } => {
                if let Some(start) = triggered.take() {
                    figures.stabilized += 1;
                    durations.push(at.since(start));
                }
            }
            GroupEvent::Empty { .. } => triggered = None,
            _ => {}
        }
    }
    if !durations.is_empty() {
        figures.trigger_to_stable_ms_mean = Some(durations.iter().sum::<u64>() / durations.len() as u64);
        figures.trigger_to_stable_ms_max = durations.iter().max().copied();
    }
    let (total, longest) = unowned(history);
    figures.unowned_partition_ms = total;
    figures.unowned_ms_max = longest;
    figures
}

/// Partition-ms unowned and the longest single stretch, counted from each partition's
/// first owner to the end of the history.
fn unowned(history: &GroupHistory) -> (u64, u64) {
    let mut members = Members::default();
    // Present once the partition had an owner; `Some(t)` while unowned since t.
    let mut unowned_since: BTreeMap<TopicPartition, Option<Millis>> = BTreeMap::new();
    let (mut total, mut longest) = (0u64, 0u64);
    let mut close = |since: Millis, until: Millis| {
        total += until.since(since);
        longest = longest.max(until.since(since));
    };
    for (index, (at, event)) in history.events.iter().enumerate() {
        if !members.apply(index, event) {
            continue;
        }
        if let GroupEvent::Assigned { partitions, .. } = event {
            for tp in partitions {
                unowned_since.entry(*tp).or_insert(Some(*at));
            }
        }
        for (tp, since) in unowned_since.iter_mut() {
            let owned = members.owners(*tp).next().is_some();
            match (*since, owned) {
                (None, false) => *since = Some(*at),
                (Some(start), true) => {
                    close(start, *at);
                    *since = None;
                }
                _ => {}
            }
        }
    }
    let end = history.end();
    for start in unowned_since.values().flatten() {
        close(*start, end);
    }
    (total, longest)
}
