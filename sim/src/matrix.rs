//! `kafka-trial matrix`: every cell of a scenario's `[matrix]` (see
//! [`crate::scenario::matrix`]) over a seed range, on all cores, summed up per cell: the
//! weakest delivery semantics any seed showed, how many seeds showed each kind of
//! violation, and the first such seed with the command that replays it.
//!
//! A seed that panics is a failure of that seed; the matrix goes on. Running is
//! separate from rendering: [`run_matrix`] returns a [`MatrixReport`] of plain data, and
//! [`MatrixReport::text`] / [`MatrixReport::json`] are pure.

use crate::checkers::{Property, Semantics};
use crate::engine::Stop;
use crate::groups::GroupProperty;
use crate::report::Outcome;
use crate::scenario::matrix::{replay_command, AxisKey, Cell, Matrix};
use crate::scenario::Scenario;
use crate::txns::TxnProperty;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A kind of violation one seed of a cell can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A group property violated by some group of the scenario: `at-least-once` means a
    /// record the group was owed was never processed, `at-most-once` that one was
    /// processed twice.
    Group(GroupProperty),
    /// A cluster property: `no-lost-acked-writes` and `no-duplicates` are the producer
    /// side of delivery.
    Cluster(Property),
    /// A transaction property (scenarios with `[transactions]`).
    Txn(TxnProperty),
    /// The run hit the engine's event limit (a livelock?).
    EventLimit,
    Panic,
}

impl Kind {
    pub const CONSUMER_LOSS: Kind = Kind::Group(GroupProperty::AtLeastOnce);
    pub const CONSUMER_DUPLICATES: Kind = Kind::Group(GroupProperty::AtMostOnce);
    pub const PRODUCER_LOSS: Kind = Kind::Cluster(Property::NoLostAckedWrites);
    pub const PRODUCER_DUPLICATES: Kind = Kind::Cluster(Property::NoDuplicates);

    /// Property names are unique across cluster and group properties.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Group(p) => p.name(),
            Kind::Cluster(p) => p.name(),
            Kind::Txn(p) => p.name(),
            Kind::EventLimit => "event-limit",
            Kind::Panic => "panic",
        }
    }

    /// The kind as the replay list names it.
    pub fn describe(self) -> String {
        match self {
            Kind::CONSUMER_LOSS => "consumer loss (at-least-once violated)".into(),
            Kind::CONSUMER_DUPLICATES => "consumer duplicates (at-most-once violated)".into(),
            Kind::PRODUCER_LOSS => "lost acked writes (no-lost-acked-writes violated)".into(),
            Kind::PRODUCER_DUPLICATES => "duplicated writes (no-duplicates violated)".into(),
            Kind::EventLimit => "event limit hit".into(),
            Kind::Panic => "panic".into(),
            other => format!("{} violated", other.name()),
        }
    }

    /// Whether the table has a column of its own for this kind.
    fn has_column(self) -> bool {
        matches!(
            self,
            Kind::CONSUMER_LOSS | Kind::CONSUMER_DUPLICATES | Kind::PRODUCER_LOSS | Kind::PRODUCER_DUPLICATES
        )
    }

    /// Whether a seed showing this kind failed to run properly (the matrix fails).
    pub fn is_failure(self) -> bool {
        matches!(self, Kind::EventLimit | Kind::Panic)
    }
}

/// What one seed of one cell showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSeed {
    pub seed: u64,
    /// Violations per kind (summed over the groups for group properties); a kind that
    /// did not occur is absent.
    pub violations: BTreeMap<Kind, u64>,
    pub trace_hash: u64,
    /// The panic message when the run panicked.
    pub panic: Option<String>,
}

impl CellSeed {
    /// The kinds a finished run shows.
    pub fn of(outcome: &Outcome) -> CellSeed {
        let mut violations = BTreeMap::new();
        for result in outcome.verdicts.results.iter().filter(|r| !r.held()) {
            *violations.entry(Kind::Cluster(result.property)).or_default() += result.violations;
        }
        for group in &outcome.groups {
            for result in group.results.iter().filter(|r| !r.held()) {
                *violations.entry(Kind::Group(result.property)).or_default() += result.violations;
            }
        }
        for result in outcome.txns.iter().flat_map(|t| t.results.iter()).filter(|r| !r.held()) {
            *violations.entry(Kind::Txn(result.property)).or_default() += result.violations;
        }
        if outcome.run.stop == Stop::EventLimit {
            violations.insert(Kind::EventLimit, 1);
        }
        CellSeed { seed: outcome.seed, violations, trace_hash: outcome.run.trace_hash, panic: None }
    }

    fn panicked(seed: u64, message: String) -> CellSeed {
        CellSeed { seed, violations: BTreeMap::from([(Kind::Panic, 1)]), trace_hash: 0, panic: Some(message) }
    }
}

/// One cell over the seed range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSummary {
    pub cell: Cell,
    pub runs: u64,
    /// Runs that did not panic.
    pub completed: u64,
    pub has_groups: bool,
    /// Seeds that showed each kind.
    pub seeds_with: BTreeMap<Kind, u64>,
    /// Violations summed over the seeds (records, for the delivery kinds).
    pub violations: BTreeMap<Kind, u64>,
    /// The first seed that showed each kind, and the command that replays it.
    pub replays: BTreeMap<Kind, (u64, String)>,
    /// The first panic message, if a seed panicked.
    pub panic: Option<String>,
}

impl CellSummary {
    pub fn summarize(base: &Scenario, cell: Cell, seeds: &[CellSeed]) -> CellSummary {
        let mut summary = CellSummary {
            runs: seeds.len() as u64,
            completed: seeds.iter().filter(|s| s.panic.is_none()).count() as u64,
            has_groups: !base.groups.is_empty(),
            seeds_with: BTreeMap::new(),
            violations: BTreeMap::new(),
            replays: BTreeMap::new(),
            panic: seeds.iter().find_map(|s| s.panic.clone()),
            cell,
        };
        for seed in seeds {
            for (kind, count) in &seed.violations {
                *summary.seeds_with.entry(*kind).or_default() += 1;
                *summary.violations.entry(*kind).or_default() += count;
                summary
                    .replays
                    .entry(*kind)
                    .or_insert_with(|| (seed.seed, replay_command(base, seed.seed, &summary.cell)));
            }
        }
        summary
    }

    pub fn seeds(&self, kind: Kind) -> u64 {
        self.seeds_with.get(&kind).copied().unwrap_or(0)
    }

    /// The weakest semantics any seed showed for the groups (a loss in one seed and a
    /// duplicate in another is neither at-least- nor at-most-once); None without groups
    /// or without a finished run.
    pub fn group_semantics(&self) -> Option<Semantics> {
        (self.has_groups && self.completed > 0)
            .then(|| semantics(self.seeds(Kind::CONSUMER_LOSS) > 0, self.seeds(Kind::CONSUMER_DUPLICATES) > 0))
    }

    /// The same for the written log: lost acked writes and duplicated writes.
    pub fn producer_semantics(&self) -> Option<Semantics> {
        (self.completed > 0)
            .then(|| semantics(self.seeds(Kind::PRODUCER_LOSS) > 0, self.seeds(Kind::PRODUCER_DUPLICATES) > 0))
    }

    fn failed_seeds(&self) -> u64 {
        self.seeds(Kind::Panic) + self.seeds(Kind::EventLimit)
    }
}

fn semantics(lost: bool, duplicated: bool) -> Semantics {
    match (lost, duplicated) {
        (false, false) => Semantics::ExactlyOnce,
        (false, true) => Semantics::AtLeastOnce,
        (true, false) => Semantics::AtMostOnce,
        (true, true) => Semantics::None,
    }
}

/// One `[[matrix.expect]]` property judged on one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimResult {
    /// Index into [`MatrixReport::cells`].
    pub cell: usize,
    pub kind: Kind,
    /// `hold`: no seed may violate it; else at least one seed must.
    pub hold: bool,
    pub seeds_violated: u64,
    pub met: bool,
}

impl ClaimResult {
    fn text(&self, report: &MatrixReport) -> String {
        let cell = &report.cells[self.cell];
        let (verb, status) = match (self.hold, self.met) {
            (true, true) => ("hold", "held"),
            (true, false) => ("hold", "FAILED"),
            (false, true) => ("be violated", "held"),
            (false, false) => ("be violated", "FAILED"),
        };
        format!(
            "{status}: {} expected to {verb} in cell {}: violated in {} of {} seed(s)",
            self.kind.name(),
            cell.cell.label(),
            self.seeds_violated,
            cell.completed
        )
    }
}

/// A whole matrix run: plain data, rendered by [`MatrixReport::text`] and [`MatrixReport::json`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixReport {
    pub scenario: String,
    pub seeds: Range<u64>,
    pub axes: Vec<AxisKey>,
    /// In [`Matrix::cells`] order.
    pub cells: Vec<CellSummary>,
    pub claims: Vec<ClaimResult>,
}

/// Runs every cell of `matrix` over `seeds` on `jobs` threads; `progress` is called after
/// each run with the count done (of cells × seeds).
pub fn run_matrix(
    base: &Scenario,
    matrix: &Matrix,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> MatrixReport {
    run_matrix_with(base, matrix, seeds, jobs, progress, &|scenario, seed| {
        CellSeed::of(&crate::simulate(scenario, seed))
    })
}

/// `run_matrix` on `host`; None when this build has no such host. Replay commands name
/// the host.
pub fn run_matrix_on(
    host: crate::Host,
    base: &Scenario,
    matrix: &Matrix,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Option<MatrixReport> {
    if !host.available() {
        return None;
    }
    let mut report = run_matrix_with(base, matrix, seeds, jobs, progress, &|scenario, seed| {
        // Available was checked: a missing host here is a failure of this run, not a panic.
        crate::simulate_on(host, scenario, seed).map_or_else(
            || CellSeed::panicked(seed, "this build has no such host".into()),
            |outcome| CellSeed::of(&outcome),
        )
    });
    if host == crate::Host::Madsim {
        for cell in &mut report.cells {
            for (_, command) in cell.replays.values_mut() {
                command.push_str(" --host madsim");
            }
        }
    }
    Some(report)
}

/// `run_matrix` with the per-run work given (tests use it to make a run panic).
pub fn run_matrix_with(
    base: &Scenario,
    matrix: &Matrix,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
    work: &(dyn Fn(&Scenario, u64) -> CellSeed + Sync),
) -> MatrixReport {
    let cells = matrix.cells();
    let scenarios: Vec<Scenario> = cells.iter().map(|cell| matrix.apply(base, cell)).collect();
    let per_cell = seeds.end.saturating_sub(seeds.start);
    let runs = per_cell * cells.len() as u64;
    let results = parallel(runs, jobs, progress, &|index| {
        let seed = seeds.start + index % per_cell;
        let scenario = &scenarios[(index / per_cell) as usize];
        match catch_unwind(AssertUnwindSafe(|| work(scenario, seed))) {
            Ok(result) => result,
            Err(payload) => CellSeed::panicked(seed, panic_message(payload.as_ref())),
        }
    });
    let cells: Vec<CellSummary> = if per_cell == 0 {
        cells.into_iter().map(|cell| CellSummary::summarize(base, cell, &[])).collect()
    } else {
        cells
            .into_iter()
            .zip(results.chunks(per_cell as usize))
            .map(|(c, s)| CellSummary::summarize(base, c, s))
            .collect()
    };
    let claims = judge(matrix, &cells);
    MatrixReport {
        scenario: base.name.clone(),
        seeds,
        axes: matrix.axes.iter().map(|a| a.key).collect(),
        cells,
        claims,
    }
}

/// Every `[[matrix.expect]]` property on every cell its `when` selects.
fn judge(matrix: &Matrix, cells: &[CellSummary]) -> Vec<ClaimResult> {
    let mut claims = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        for entry in matrix.expects.iter().filter(|e| cell.cell.matches(&e.when)) {
            let e = &entry.expect;
            let hold = e.hold.iter().map(|p| (Kind::Cluster(*p), true));
            let group_hold = e.group_hold.iter().map(|p| (Kind::Group(*p), true));
            let violate = e.violate.iter().map(|p| (Kind::Cluster(*p), false));
            let group_violate = e.group_violate.iter().map(|p| (Kind::Group(*p), false));
            let txn_hold = e.txn_hold.iter().map(|p| (Kind::Txn(*p), true));
            let txn_violate = e.txn_violate.iter().map(|p| (Kind::Txn(*p), false));
            let claims_of =
                hold.chain(group_hold).chain(txn_hold).chain(violate).chain(group_violate).chain(txn_violate);
            for (kind, must_hold) in claims_of {
                let seeds_violated = cell.seeds(kind);
                let met = if must_hold { seeds_violated == 0 } else { seeds_violated > 0 };
                claims.push(ClaimResult { cell: index, kind, hold: must_hold, seeds_violated, met });
            }
        }
    }
    claims
}

/// Runs `count` items on `jobs` threads; results in item order.
fn parallel<T: Send>(
    count: u64,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
    work: &(dyn Fn(u64) -> T + Sync),
) -> Vec<T> {
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let result = work(index);
                // `work` catches its panics, so no worker poisons the lock; keep the results anyway.
                results.lock().unwrap_or_else(|e| e.into_inner()).push((index, result));
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}

impl MatrixReport {
    /// Whether no run panicked or hit the event limit and every claim was met.
    pub fn pass(&self) -> bool {
        self.failed_seeds() == 0 && self.claims.iter().all(|c| c.met)
    }

    pub fn runs(&self) -> u64 {
        self.cells.iter().map(|c| c.runs).sum()
    }

    fn failed_seeds(&self) -> u64 {
        self.cells.iter().map(CellSummary::failed_seeds).sum()
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.table());
        let has_groups = self.cells.iter().any(|c| c.has_groups);
        if has_groups {
            let _ = writeln!(out, "group: the weakest semantics the consumer groups showed over the seeds; lost / dup: seeds in which a group never processed a record it was owed (at-least-once violated) / processed one twice (at-most-once violated).");
        }
        let _ = writeln!(out, "producer: the same for the written log; lost / dup: seeds with acknowledged writes missing from the log (no-lost-acked-writes) / written twice (no-duplicates).");
        let _ = writeln!(
            out,
            "other: further violated properties (seeds); claims: the cell's [[matrix.expect]] claims met / judged."
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "replay (the first seed of each kind, per cell):");
        let mut any = false;
        for (index, cell) in self.cells.iter().enumerate() {
            for (kind, (seed, command)) in &cell.replays {
                any = true;
                let _ = writeln!(out, "  {:>3} {} · seed {seed}: {command}", index + 1, kind.describe());
            }
            if let Some(message) = &cell.panic {
                let _ = writeln!(out, "      panic: {message}");
            }
        }
        if !any {
            let _ = writeln!(out, "  (no seed violated anything)");
        }
        let failed: Vec<&ClaimResult> = self.claims.iter().filter(|c| !c.met).collect();
        if !self.claims.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "claims: {} met, {} failed", self.claims.len() - failed.len(), failed.len());
            for claim in &failed {
                let _ = writeln!(out, "  {}", claim.text(self));
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.verdict_line());
        out
    }

    /// The last line of the text report.
    pub fn verdict_line(&self) -> String {
        let failed_claims = self.claims.iter().filter(|c| !c.met).count();
        let failed_seeds = self.failed_seeds();
        let mut why = Vec::new();
        if failed_seeds > 0 {
            why.push(format!("{failed_seeds} run(s) panicked or hit the event limit"));
        }
        if failed_claims > 0 {
            why.push(format!("{failed_claims} claim(s) failed"));
        }
        if why.is_empty() {
            why.push(if self.claims.is_empty() { "no claims".to_string() } else { "claims met".to_string() });
        }
        format!(
            "{} matrix={} seeds={}..{} ({} cells, {} runs; {})",
            if self.pass() { "PASS" } else { "FAIL" },
            self.scenario,
            self.seeds.start,
            self.seeds.end,
            self.cells.len(),
            self.runs(),
            why.join("; ")
        )
    }

    fn table(&self) -> String {
        let has_groups = self.cells.iter().any(|c| c.has_groups);
        let has_claims = !self.claims.is_empty();
        let mut header: Vec<String> = vec!["cell".into()];
        header.extend(self.axes.iter().map(|a| a.name().to_string()));
        if has_groups {
            header.extend(["group".into(), "lost".into(), "dup".into()]);
        }
        header.extend(["producer".into(), "lost".into(), "dup".into(), "other".into()]);
        if has_claims {
            header.push("claims".into());
        }
        let mut rows = vec![header];
        for (index, cell) in self.cells.iter().enumerate() {
            rows.push(self.row(index, cell, has_groups, has_claims));
        }
        let numeric = |column: &str| matches!(column, "cell" | "lost" | "dup");
        let right: Vec<bool> = rows[0].iter().map(|h| numeric(h)).collect();
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> =
                row.iter()
                    .enumerate()
                    .map(|(i, text)| {
                        if right[i] {
                            format!("{text:>w$}", w = widths[i])
                        } else {
                            format!("{text:<w$}", w = widths[i])
                        }
                    })
                    .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    fn row(&self, index: usize, cell: &CellSummary, has_groups: bool, has_claims: bool) -> Vec<String> {
        let name = |s: Option<Semantics>| s.map_or("-".to_string(), |s| s.name().to_string());
        let mut row = vec![(index + 1).to_string()];
        row.extend(self.axes.iter().map(|key| cell.cell.setting(*key).map_or("-".into(), |v| v.to_string())));
        if has_groups {
            row.push(name(cell.group_semantics()));
            row.push(cell.seeds(Kind::CONSUMER_LOSS).to_string());
            row.push(cell.seeds(Kind::CONSUMER_DUPLICATES).to_string());
        }
        row.push(name(cell.producer_semantics()));
        row.push(cell.seeds(Kind::PRODUCER_LOSS).to_string());
        row.push(cell.seeds(Kind::PRODUCER_DUPLICATES).to_string());
        let other: Vec<String> = cell
            .seeds_with
            .iter()
            .filter(|(kind, _)| !kind.has_column())
            .map(|(kind, seeds)| format!("{}({seeds})", kind.name()))
            .collect();
        row.push(if other.is_empty() { "-".into() } else { other.join(" ") });
        if has_claims {
            let mine: Vec<&ClaimResult> = self.claims.iter().filter(|c| c.cell == index).collect();
            let met = mine.iter().filter(|c| c.met).count();
            row.push(if mine.is_empty() { "-".into() } else { format!("{met}/{}", mine.len()) });
        }
        row
    }

    pub fn json(&self) -> serde_json::Value {
        let cells: Vec<serde_json::Value> = self.cells.iter().enumerate().map(|(i, c)| self.cell_json(i, c)).collect();
        let claims: Vec<serde_json::Value> = self
            .claims
            .iter()
            .map(|c| {
                json!({
                    "cell": self.cells[c.cell].cell.label(),
                    "property": c.kind.name(),
                    "expected": if c.hold { "hold" } else { "violate" },
                    "seeds_violated": c.seeds_violated,
                    "met": c.met,
                })
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "seeds": {"start": self.seeds.start, "end": self.seeds.end},
            "axes": self.axes.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "runs": self.runs(),
            "verdict": if self.pass() { "pass" } else { "fail" },
            "cells": cells,
            "claims": claims,
        })
    }

    fn cell_json(&self, index: usize, cell: &CellSummary) -> serde_json::Value {
        let settings: serde_json::Map<String, serde_json::Value> =
            cell.cell.settings.iter().map(|(key, value)| (key.name().to_string(), json!(value.to_string()))).collect();
        let kinds: serde_json::Map<String, serde_json::Value> = cell
            .seeds_with
            .iter()
            .map(|(kind, seeds)| {
                let (seed, command) = cell.replays.get(kind).cloned().unwrap_or_default();
                let violations = cell.violations.get(kind).copied().unwrap_or(0);
                let value = json!({"seeds": seeds, "violations": violations, "replay_seed": seed, "replay": command});
                (kind.name().to_string(), value)
            })
            .collect();
        json!({
            "index": index + 1,
            "cell": cell.cell.label(),
            "settings": settings,
            "runs": cell.runs,
            "completed": cell.completed,
            "group_semantics": cell.group_semantics().map(Semantics::name),
            "producer_semantics": cell.producer_semantics().map(Semantics::name),
            "violations": kinds,
            "panic": cell.panic,
        })
    }
}
