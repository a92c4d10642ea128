//! `kafka-trial sweep`: many seeds on all cores, one shard of a range at a time if asked.
//! A seed that panics is a failure of that seed; the sweep goes on.

use crate::report::Outcome;
use crate::scenario::Scenario;
use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Bound on seeds in one sweep invocation (shard a larger range).
pub const SWEEP_SEEDS_MAX: u64 = 100_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedResult {
    Pass,
    /// Expectations failed: the reasons.
    Fail(Vec<String>),
    /// The run panicked: the panic message.
    Panic(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSummary {
    pub seed: u64,
    pub result: SeedResult,
    pub trace_hash: u64,
    /// Violations per property name.
    pub violations: BTreeMap<&'static str, u64>,
}

/// The slice `shard` (0-based) of `shards` of `range`, in contiguous chunks.
pub fn shard_range(range: Range<u64>, shard: u64, shards: u64) -> Range<u64> {
    let len = range.end.saturating_sub(range.start);
    let shards = shards.max(1);
    let start = range.start + len * shard / shards;
    let end = range.start + len * (shard + 1) / shards;
    start..end
}

pub fn run_seed(scenario: &Scenario, seed: u64) -> SeedSummary {
    guarded(seed, || summarize(&crate::simulate(scenario, seed)))
}

/// Runs one seed's work, turning a panic into a failure of that seed.
pub fn guarded(seed: u64, work: impl FnOnce() -> SeedSummary) -> SeedSummary {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(summary) => summary,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".into());
            SeedSummary { seed, result: SeedResult::Panic(message), trace_hash: 0, violations: BTreeMap::new() }
        }
    }
}

pub fn summarize(outcome: &Outcome) -> SeedSummary {
    let violations = outcome.verdicts.results.iter().map(|r| (r.property.name(), r.violations)).collect();
    let result = if outcome.pass { SeedResult::Pass } else { SeedResult::Fail(outcome.failures.clone()) };
    SeedSummary { seed: outcome.seed, result, trace_hash: outcome.run.trace_hash, violations }
}

/// Runs `seeds` on `jobs` threads; `progress` is called after each seed with the count
/// done. Results come back sorted by seed, whatever order the threads finished in.
pub fn sweep(scenario: &Scenario, seeds: Range<u64>, jobs: usize, progress: &(dyn Fn(u64) + Sync)) -> Vec<SeedSummary> {
    sweep_with(seeds, jobs, progress, &|seed| summarize(&crate::simulate(scenario, seed)))
}

/// `sweep` on `host` (each worker thread makes its own madsim runtime per seed); `None`
/// when this build lacks the host.
pub fn sweep_on(
    host: crate::Host,
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Option<Vec<SeedSummary>> {
    if !host.available() {
        return None;
    }
    Some(sweep_with(seeds, jobs, progress, &|seed| match crate::simulate_on(host, scenario, seed) {
        Some(outcome) => summarize(&outcome),
        None => SeedSummary {
            seed,
            result: SeedResult::Fail(vec!["this build has no such host".into()]),
            trace_hash: 0,
            violations: BTreeMap::new(),
        },
    }))
}

/// `sweep` with the per-seed work given (tests use it to make a seed panic).
pub fn sweep_with(
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
    run: &(dyn Fn(u64) -> SeedSummary + Sync),
) -> Vec<SeedSummary> {
    let next = AtomicU64::new(seeds.start);
    let done = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let summary = guarded(seed, || run(seed));
                // A poisoned lock means another worker panicked outside catch_unwind,
                // which cannot happen; keep the results anyway.
                results.lock().unwrap_or_else(|e| e.into_inner()).push(summary);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|s| s.seed);
    results
}
