//! The `[matrix]` table of a scenario file: a grid of producer × consumer settings that
//! `kafka-trial matrix` runs under the file's own faults.
//!
//! ```toml
//! [matrix]
//! commit = ["sync-before", "sync-after", "auto"]
//! acks = ["1", "all"]
//!
//! [[matrix.expect]]
//! when = "commit=sync-before"
//! hold = ["at-most-once"]
//! violate = ["at-least-once"]
//! ```
//!
//! Each axis sets one setting of every producer (`acks`, `retries`, `max_in_flight`,
//! `enable_idempotence`, resolved by Kafka's rule as in `[[producers]]`) or
//! of every group (`commit`, `max_poll_records`, `assignors`). Axes are kept in the order
//! the file writes them; a cell is named `key=value,...` in that order, which is also
//! what `kafka-trial run FILE --cell ...` takes to replay it. A plain `run` or `sweep` of
//! the file ignores the grid and uses the file's own settings and `[expect]`.
//!
//! A cell carries no per-seed expectations: `[[matrix.expect]]` claims are judged over a
//! seed range by `kafka-trial matrix` (`hold`: no seed violates the property; `violate`:
//! at least one seed does), because "may lose records" is a claim about some runs.

use super::{line_of, parse_expect, resolve_idempotence, Expect, ExpectList, ProducerSpec, Scenario, ScenarioError};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;
use trial_model::group::assignor::Assignor;
use trial_model::{Acks, CommitMode, IsolationLevel, ProducerConfig};

/// Bound on the cells of one grid, so that a typo cannot ask for a day of runs.
pub const CELLS_MAX: usize = 256;
/// Bound on `[[matrix.expect]]` entries.
pub const CELL_EXPECTS_MAX: usize = 256;
/// `auto.commit.interval.ms` when a group declares none (Kafka's default).
const AUTO_COMMIT_INTERVAL_MS_DEFAULT: u64 = 5_000;

/// Which setting an axis varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AxisKey {
    Acks,
    Retries,
    MaxInFlight,
    Idempotence,
    Commit,
    MaxPollRecords,
    Assignors,
    /// `[transactions] kip890`.
    Kip890,
    /// The groups' `isolation_level`.
    IsolationLevel,
    /// `[protocol] commit_fencing`: the group coordinators' generation checks on commits
    /// (OffsetCommit and, KIP-447, TxnOffsetCommit).
    CommitFencing,
    /// `[transactions] partition_verification` (KIP-890 part 1).
    PartitionVerification,
}

impl AxisKey {
    pub const ALL: [AxisKey; 11] = [
        AxisKey::Acks,
        AxisKey::Retries,
        AxisKey::MaxInFlight,
        AxisKey::Idempotence,
        AxisKey::Commit,
        AxisKey::MaxPollRecords,
        AxisKey::Assignors,
        AxisKey::Kip890,
        AxisKey::IsolationLevel,
        AxisKey::CommitFencing,
        AxisKey::PartitionVerification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AxisKey::Acks => "acks",
            AxisKey::Retries => "retries",
            AxisKey::MaxInFlight => "max_in_flight",
            AxisKey::Idempotence => "enable_idempotence",
            AxisKey::Commit => "commit",
            AxisKey::MaxPollRecords => "max_poll_records",
            AxisKey::Assignors => "assignors",
            AxisKey::Kip890 => "kip890",
            AxisKey::IsolationLevel => "isolation_level",
            AxisKey::CommitFencing => "commit_fencing",
            AxisKey::PartitionVerification => "partition_verification",
        }
    }

    /// Whether the axis sets producers (else groups).
    pub fn is_producer(self) -> bool {
        matches!(self, AxisKey::Acks | AxisKey::Retries | AxisKey::MaxInFlight | AxisKey::Idempotence)
    }
}

/// A commit mode without its interval: `auto` takes each group's own
/// `auto_commit_interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Auto,
    AutoInPoll,
    SyncAfter,
    SyncBefore,
    AsyncAfter,
}

impl Commit {
    const ALL: [Commit; 5] =
        [Commit::Auto, Commit::AutoInPoll, Commit::SyncAfter, Commit::SyncBefore, Commit::AsyncAfter];

    pub fn name(self) -> &'static str {
        match self {
            Commit::Auto => "auto",
            Commit::AutoInPoll => "auto-in-poll",
            Commit::SyncAfter => "sync-after",
            Commit::SyncBefore => "sync-before",
            Commit::AsyncAfter => "async-after",
        }
    }

    fn mode(self, interval_ms: u64) -> CommitMode {
        match self {
            Commit::Auto => CommitMode::Auto { interval_ms },
            Commit::AutoInPoll => CommitMode::AutoInPoll { interval_ms },
            Commit::SyncAfter => CommitMode::SyncAfter,
            Commit::SyncBefore => CommitMode::SyncBefore,
            Commit::AsyncAfter => CommitMode::AsyncAfter,
        }
    }
}

/// One value of one axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    Acks(Acks),
    Retries(u32),
    MaxInFlight(u32),
    Idempotence(bool),
    Commit(Commit),
    MaxPollRecords(u32),
    Assignors(Vec<Assignor>),
    Kip890(bool),
    ReadCommitted(bool),
    CommitFencing(bool),
    PartitionVerification(bool),
}

impl fmt::Display for Setting {
    /// The value as a cell names it (assignor lists joined by `+`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Acks(acks) => write!(f, "{}", acks.name()),
            Setting::Retries(v) | Setting::MaxInFlight(v) | Setting::MaxPollRecords(v) => write!(f, "{v}"),
            Setting::Idempotence(on)
            | Setting::Kip890(on)
            | Setting::CommitFencing(on)
            | Setting::PartitionVerification(on) => write!(f, "{on}"),
            Setting::ReadCommitted(true) => write!(f, "read_committed"),
            Setting::ReadCommitted(false) => write!(f, "read_uncommitted"),
            Setting::Commit(commit) => write!(f, "{}", commit.name()),
            Setting::Assignors(list) => {
                let names: Vec<&str> = list.iter().map(|a| a.name()).collect();
                write!(f, "{}", names.join("+"))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Axis {
    pub key: AxisKey,
    pub values: Vec<Setting>,
}

/// Some settings, each from a different axis, in the matrix's axis order: a grid cell
/// names every axis; a `--cell` or a `when` may name fewer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cell {
    pub settings: Vec<(AxisKey, Setting)>,
}

impl Cell {
    /// `key=value,...`, the form `--cell` and `when` take.
    pub fn label(&self) -> String {
        let parts: Vec<String> = self.settings.iter().map(|(key, value)| format!("{}={value}", key.name())).collect();
        parts.join(",")
    }

    pub fn setting(&self, key: AxisKey) -> Option<&Setting> {
        self.settings.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether every setting of `selector` is also one of this cell's.
    pub fn matches(&self, selector: &Cell) -> bool {
        selector.settings.iter().all(|(key, value)| self.setting(*key) == Some(value))
    }
}

/// A claim about the cells a `when` selects, judged over a seed range.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CellExpect {
    /// Empty: every cell.
    pub when: Cell,
    pub expect: Expect,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// In the order the file declares them.
    pub axes: Vec<Axis>,
    pub expects: Vec<CellExpect>,
    /// Each group's `auto_commit_interval_ms`, which an `auto` or `auto-in-poll` cell uses.
    pub auto_commit_intervals_ms: Vec<u64>,
}

impl Matrix {
    /// Every cell of the grid, the first axis outermost.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = vec![Cell::default()];
        for axis in &self.axes {
            cells = cells
                .into_iter()
                .flat_map(|cell| {
                    axis.values.iter().map(move |value| {
                        let mut next = cell.clone();
                        next.settings.push((axis.key, value.clone()));
                        next
                    })
                })
                .collect();
        }
        cells
    }

    /// Cells in the grid; never above [`CELLS_MAX`] once parsed.
    pub fn size(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// `base` with `cell`'s settings on every producer and group and no expectations of
    /// its own (see the module comment). Settings the cell does not name stay the file's.
    pub fn apply(&self, base: &Scenario, cell: &Cell) -> Scenario {
        let mut scenario = base.clone();
        scenario.expect = Expect::default();
        for producer in &mut scenario.producers {
            // Checked for every cell when the file was read.
            if let Ok(config) = Matrix::producer_config(producer, cell) {
                producer.config = config;
            }
            if let Some(Setting::Idempotence(on)) = cell.setting(AxisKey::Idempotence) {
                producer.idempotence = Some(*on);
            }
        }
        for (key, value) in &cell.settings {
            if let (Setting::Kip890(on), Some(txn)) = (value, scenario.broker.txn.as_mut()) {
                txn.coordinator.bump_epoch_per_transaction = *on;
                continue;
            }
            if let (Setting::PartitionVerification(on), Some(txn)) = (value, scenario.broker.txn.as_mut()) {
                txn.partition_verification = *on;
                continue;
            }
            if let (Setting::CommitFencing(on), Some(groups)) = (value, scenario.broker.groups.as_mut()) {
                groups.coordinator.fencing = *on;
                continue;
            }
            for (index, group) in scenario.groups.iter_mut().enumerate() {
                let config = &mut group.config;
                match value {
                    Setting::Commit(commit) => {
                        let interval_ms = self
                            .auto_commit_intervals_ms
                            .get(index)
                            .copied()
                            .unwrap_or(AUTO_COMMIT_INTERVAL_MS_DEFAULT);
                        config.commit = commit.mode(interval_ms);
                    }
                    Setting::MaxPollRecords(v) => config.max_poll_records = *v as usize,
                    Setting::Assignors(list) => config.member.assignors = list.clone(),
                    Setting::ReadCommitted(on) => {
                        config.isolation_level =
                            if *on { IsolationLevel::ReadCommitted } else { IsolationLevel::ReadUncommitted }
                    }
                    _ => debug_assert!(key.is_producer()),
                }
            }
        }
        scenario
    }

    /// One producer's configuration in `cell`, with `enable_idempotence` resolved by
    /// Kafka's rule (an explicit `true` that the cell's settings break is an error).
    pub fn producer_config(producer: &ProducerSpec, cell: &Cell) -> Result<ProducerConfig, &'static str> {
        let mut config = producer.config.clone();
        let mut idempotence = producer.idempotence;
        for (_, value) in &cell.settings {
            match value {
                Setting::Acks(acks) => config.acks = *acks,
                Setting::Retries(v) => config.retries = *v,
                Setting::MaxInFlight(v) => config.max_in_flight_requests_per_connection = *v,
                Setting::Idempotence(on) => idempotence = Some(*on),
                _ => {}
            }
        }
        resolve_idempotence(&mut config, idempotence)?;
        Ok(config)
    }

    /// Parses `key=value,...` (a `--cell` or a `when`) against this grid's axes: each key
    /// an axis, each value one of its values, no axis twice.
    pub fn parse_cell(&self, text: &str) -> Result<Cell, String> {
        let mut named: Vec<(usize, Setting)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("`{part}`: write KEY=VALUE, e.g. {}", self.example_label()));
            };
            let (key, value) = (key.trim(), value.trim());
            let Some(index) = self.axes.iter().position(|a| a.key.name() == key) else {
                let keys: Vec<&str> = self.axes.iter().map(|a| a.key.name()).collect();
                return Err(format!("`{key}` is not an axis of this [matrix]; its axes: {}", keys.join(", ")));
            };
            if named.iter().any(|(i, _)| *i == index) {
                return Err(format!("`{key}` is named twice"));
            }
            let axis = &self.axes[index];
            let Some(setting) = axis.values.iter().find(|v| v.to_string() == value) else {
                let values: Vec<String> = axis.values.iter().map(|v| v.to_string()).collect();
                return Err(format!("`{value}` is not a value of the `{key}` axis; one of: {}", values.join(", ")));
            };
            named.push((index, setting.clone()));
        }
        named.sort_by_key(|(index, _)| *index);
        Ok(Cell { settings: named.into_iter().map(|(index, value)| (self.axes[index].key, value)).collect() })
    }

    fn example_label(&self) -> String {
        self.cells().first().map(Cell::label).unwrap_or_default()
    }
}

/// The command that replays `seed` of `cell`.
pub fn replay_command(base: &Scenario, seed: u64, cell: &Cell) -> String {
    format!("{} --cell {}", base.replay_command(seed), cell.label())
}

/// Loads a scenario file and its `[matrix]`, if it has one.
pub fn load(path: &Path) -> Result<(Scenario, Option<Matrix>), ScenarioError> {
    let (scenario, text) = Scenario::load_with_text(path)?;
    let matrix = parse(&text, &path.display().to_string(), &scenario)?;
    Ok((scenario, matrix))
}

/// The `[matrix]` of a scenario file that parsed into `scenario`.
pub fn parse(text: &str, file: &str, scenario: &Scenario) -> Result<Option<Matrix>, ScenarioError> {
    let raw: RawFile = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| line_of(text, span.start));
        ScenarioError { file: file.into(), line, key: String::new(), message: error.message().trim().to_string() }
    })?;
    let Some(matrix) = raw.matrix else { return Ok(None) };
    let intervals = raw.groups.iter().map(|g| g.auto_commit_interval_ms.unwrap_or(AUTO_COMMIT_INTERVAL_MS_DEFAULT));
    Validator { text, file }.matrix(&matrix, scenario, intervals.collect()).map(Some)
}

/// The parts of the file this module reads; the rest is the scenario parser's, which
/// rejects unknown keys there (so no `deny_unknown_fields` here).
#[derive(Deserialize)]
struct RawFile {
    matrix: Option<Spanned<RawMatrix>>,
    #[serde(default)]
    groups: Vec<RawGroupInterval>,
}

#[derive(Deserialize)]
struct RawGroupInterval {
    auto_commit_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    acks: Option<Spanned<Vec<String>>>,
    retries: Option<Spanned<Vec<u32>>>,
    max_in_flight: Option<Spanned<Vec<u32>>>,
    enable_idempotence: Option<Spanned<Vec<bool>>>,
    commit: Option<Spanned<Vec<String>>>,
    max_poll_records: Option<Spanned<Vec<u32>>>,
    assignors: Option<Spanned<Vec<Vec<String>>>>,
    kip890: Option<Spanned<Vec<bool>>>,
    isolation_level: Option<Spanned<Vec<String>>>,
    commit_fencing: Option<Spanned<Vec<bool>>>,
    partition_verification: Option<Spanned<Vec<bool>>>,
    #[serde(default)]
    expect: Vec<Spanned<RawCellExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCellExpect {
    when: Option<Spanned<String>>,
    hold: Option<Spanned<Vec<String>>>,
    violate: Option<Spanned<Vec<String>>>,
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
}

type Span = std::ops::Range<usize>;

impl Validator<'_> {
    fn error<T>(&self, span: Span, key: &str, message: impl Into<String>) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.into(),
            line: Some(line_of(self.text, span.start)),
            key: key.into(),
            message: message.into(),
        })
    }

    fn matrix(
        &self,
        raw: &Spanned<RawMatrix>,
        scenario: &Scenario,
        auto_commit_intervals_ms: Vec<u64>,
    ) -> Result<Matrix, ScenarioError> {
        let m = raw.get_ref();
        let mut axes: Vec<(Span, Axis)> = Vec::new();
        if let Some(list) = &m.acks {
            axes.push((list.span(), self.axis(AxisKey::Acks, list, |v| self.acks(v, list.span()))?));
        }
        if let Some(list) = &m.retries {
            axes.push((list.span(), self.axis(AxisKey::Retries, list, |v| Ok(Setting::Retries(*v)))?));
        }
        if let Some(list) = &m.max_in_flight {
            let at_least_one = |v: &u32| self.at_least_one(*v, list.span(), "matrix.max_in_flight");
            axes.push((
                list.span(),
                self.axis(AxisKey::MaxInFlight, list, |v| at_least_one(v).map(Setting::MaxInFlight))?,
            ));
        }
        if let Some(list) = &m.enable_idempotence {
            axes.push((list.span(), self.axis(AxisKey::Idempotence, list, |v| Ok(Setting::Idempotence(*v)))?));
        }
        if let Some(list) = &m.commit {
            axes.push((list.span(), self.axis(AxisKey::Commit, list, |v| self.commit(v, list.span()))?));
        }
        if let Some(list) = &m.max_poll_records {
            let at_least_one = |v: &u32| self.at_least_one(*v, list.span(), "matrix.max_poll_records");
            axes.push((
                list.span(),
                self.axis(AxisKey::MaxPollRecords, list, |v| at_least_one(v).map(Setting::MaxPollRecords))?,
            ));
        }
        if let Some(list) = &m.assignors {
            axes.push((list.span(), self.axis(AxisKey::Assignors, list, |v| self.assignors(v, list.span()))?));
        }
        if let Some(list) = &m.kip890 {
            if scenario.transactions.is_none() {
                return self.error(
                    list.span(),
                    "matrix.kip890",
                    "the scenario has no [transactions] for this axis to set",
                );
            }
            axes.push((list.span(), self.axis(AxisKey::Kip890, list, |v| Ok(Setting::Kip890(*v)))?));
        }
        if let Some(list) = &m.isolation_level {
            let parse = |v: &String| match v.as_str() {
                "read_committed" => Ok(Setting::ReadCommitted(true)),
                "read_uncommitted" => Ok(Setting::ReadCommitted(false)),
                other => self.error(
                    list.span(),
                    "matrix.isolation_level",
                    format!("`{other}` is not an isolation level; one of: read_uncommitted, read_committed"),
                ),
            };
            axes.push((list.span(), self.axis(AxisKey::IsolationLevel, list, parse)?));
        }
        if let Some(list) = &m.partition_verification {
            if scenario.transactions.is_none() {
                return self.error(
                    list.span(),
                    "matrix.partition_verification",
                    "the scenario has no [transactions] for this axis to set",
                );
            }
            let setting = |v: &bool| Ok(Setting::PartitionVerification(*v));
            axes.push((list.span(), self.axis(AxisKey::PartitionVerification, list, setting)?));
        }
        if let Some(list) = &m.commit_fencing {
            if scenario.broker.groups.is_none() {
                return self.error(
                    list.span(),
                    "matrix.commit_fencing",
                    "the scenario has no [[groups]] or [pipeline] for this axis to set",
                );
            }
            axes.push((list.span(), self.axis(AxisKey::CommitFencing, list, |v| Ok(Setting::CommitFencing(*v)))?));
        }
        if axes.is_empty() {
            let keys: Vec<&str> = AxisKey::ALL.iter().map(|k| k.name()).collect();
            return self.error(raw.span(), "matrix", format!("declare at least one axis: {}", keys.join(", ")));
        }
        for (span, axis) in &axes {
            let key = format!("matrix.{}", axis.key.name());
            if axis.key.is_producer() && scenario.producers.is_empty() {
                return self.error(span.clone(), &key, "the scenario has no producers for this axis to set");
            }
            let cluster_wide =
                matches!(axis.key, AxisKey::Kip890 | AxisKey::CommitFencing | AxisKey::PartitionVerification);
            if !axis.key.is_producer() && !cluster_wide && scenario.groups.is_empty() {
                return self.error(span.clone(), &key, "the scenario has no [[groups]] for this axis to set");
            }
        }
        axes.sort_by_key(|(span, _)| span.start);
        let axes: Vec<Axis> = axes.into_iter().map(|(_, axis)| axis).collect();
        let size = axes.iter().try_fold(1usize, |n, a| n.checked_mul(a.values.len())).unwrap_or(usize::MAX);
        if size > CELLS_MAX {
            let factors: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
            return self.error(
                raw.span(),
                "matrix",
                format!("the grid has {size} cells ({}); at most {CELLS_MAX}", factors.join(" × ")),
            );
        }
        let mut matrix = Matrix { axes, expects: Vec::new(), auto_commit_intervals_ms };
        for cell in matrix.cells() {
            for producer in &scenario.producers {
                if let Err(why) = Matrix::producer_config(producer, &cell) {
                    let message = format!(
                        "cell {} of producer `{}`: {why}; Kafka's producer refuses this configuration",
                        cell.label(),
                        producer.name
                    );
                    return self.error(raw.span(), "matrix", message);
                }
            }
        }
        matrix.expects = self.expects(&m.expect, &matrix)?;
        Ok(matrix)
    }

    /// One axis: every value parsed, at least one, none twice.
    fn axis<T>(
        &self,
        key: AxisKey,
        list: &Spanned<Vec<T>>,
        parse: impl Fn(&T) -> Result<Setting, ScenarioError>,
    ) -> Result<Axis, ScenarioError> {
        let name = format!("matrix.{}", key.name());
        let mut values: Vec<Setting> = Vec::new();
        for raw in list.get_ref() {
            let value = parse(raw)?;
            if values.contains(&value) {
                return self.error(list.span(), &name, format!("`{value}` is listed twice"));
            }
            values.push(value);
        }
        if values.is_empty() {
            return self.error(list.span(), &name, "an axis needs at least one value");
        }
        Ok(Axis { key, values })
    }

    fn acks(&self, value: &str, span: Span) -> Result<Setting, ScenarioError> {
        match value {
            "0" => Ok(Setting::Acks(Acks::None)),
            "1" => Ok(Setting::Acks(Acks::Leader)),
            "all" | "-1" => Ok(Setting::Acks(Acks::All)),
            other => self.error(span, "matrix.acks", format!("`{other}` is not one of \"0\", \"1\", \"all\"")),
        }
    }

    fn at_least_one(&self, value: u32, span: Span, key: &str) -> Result<u32, ScenarioError> {
        if value == 0 {
            return self.error(span, key, "0 must be above 0");
        }
        Ok(value)
    }

    fn commit(&self, value: &str, span: Span) -> Result<Setting, ScenarioError> {
        match Commit::ALL.into_iter().find(|c| c.name() == value) {
            Some(commit) => Ok(Setting::Commit(commit)),
            None => {
                let names: Vec<String> = Commit::ALL.iter().map(|c| format!("\"{}\"", c.name())).collect();
                self.error(span, "matrix.commit", format!("`{value}` is not one of {}", names.join(", ")))
            }
        }
    }

    fn assignors(&self, names: &[String], span: Span) -> Result<Setting, ScenarioError> {
        let mut list = Vec::new();
        for name in names {
            match Assignor::from_name(name) {
                Some(assignor) => list.push(assignor),
                None => {
                    return self.error(
                        span,
                        "matrix.assignors",
                        format!("unknown assignor `{name}`; one of: range, roundrobin, sticky, cooperative-sticky"),
                    )
                }
            }
        }
        if list.is_empty() {
            return self.error(span, "matrix.assignors", "each value names at least one assignor, e.g. [\"range\"]");
        }
        Ok(Setting::Assignors(list))
    }

    fn expects(&self, raw: &[Spanned<RawCellExpect>], matrix: &Matrix) -> Result<Vec<CellExpect>, ScenarioError> {
        if raw.len() > CELL_EXPECTS_MAX {
            return self.error(raw[0].span(), "matrix.expect", format!("at most {CELL_EXPECTS_MAX} entries"));
        }
        let mut expects = Vec::new();
        for spanned in raw {
            let e = spanned.get_ref();
            let when = match &e.when {
                Some(when) => match matrix.parse_cell(when.get_ref()) {
                    Ok(cell) => cell,
                    Err(message) => return self.error(when.span(), "matrix.expect.when", message),
                },
                None => Cell::default(),
            };
            if e.hold.is_none() && e.violate.is_none() {
                return self.error(spanned.span(), "matrix.expect", "an entry needs `hold` or `violate`");
            }
            let names = |list: &Option<Spanned<Vec<String>>>| list.as_ref().map_or(Vec::new(), |l| l.get_ref().clone());
            let expect = match parse_expect(&names(&e.hold), &names(&e.violate)) {
                Ok(expect) => expect,
                Err((list, message)) => {
                    let (list, key) = match list {
                        ExpectList::Hold => (&e.hold, "matrix.expect.hold"),
                        ExpectList::Violate => (&e.violate, "matrix.expect.violate"),
                    };
                    return self.error(list.as_ref().map_or(spanned.span(), |l| l.span()), key, message);
                }
            };
            expects.push(CellExpect { when, expect });
        }
        Ok(expects)
    }
}
