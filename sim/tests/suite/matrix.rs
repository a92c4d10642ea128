//! `[matrix]` in scenario files and `kafka-trial matrix`: the grid's parsing and
//! expansion, replaying one cell with `run --cell`, and the shipped
//! `scenarios/matrix-commit-modes.toml` reproducing the delivery semantics the Kafka
//! documentation states (KafkaConsumer javadoc, "Manual Offset Control" and "Automatic
//! Offset Committing"; Kafka documentation, design, "Message Delivery Semantics").

use std::path::{Path, PathBuf};
use std::process::Command;
use trial_model::{Acks, CommitMode};
use trial_sim::matrix::{run_matrix, run_matrix_with, CellSeed, Kind};
use trial_sim::scenario::matrix::{self, Matrix};
use trial_sim::{simulate, Scenario};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kafka-trial-matrix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

fn load(path: &Path) -> (Scenario, Matrix) {
    let (scenario, matrix) = matrix::load(path).unwrap_or_else(|e| panic!("{e}"));
    (scenario, matrix.expect("the file has a [matrix]"))
}

/// Two producers and two groups (auto-commit every 1 s and every 2 s), so that an axis
/// is seen to set all of them; `MATRIX` is replaced by the test's `[matrix]`.
const BASE: &str = r#"name = "tiny"
duration_ms = 20_000
liveness_ms = 60_000

[cluster]
brokers = 3
offsets_partitions = 3

[[topics]]
name = "orders"
partitions = 3
replication_factor = 3
min_insync_replicas = 2

[[producers]]
topic = "orders"
rate = 200
keys = 100
acks = "all"
count = 2

[[groups]]
name = "billing"
topics = ["orders"]
consumers = 2
commit = "sync-after"
auto_commit_interval_ms = 1_000
max_poll_records = 50
processing_ms = 6
auto_offset_reset = "earliest"
session_timeout_ms = 10_000
heartbeat_interval_ms = 1_000

[[groups]]
name = "audit"
topics = ["orders"]
consumers = 1
commit = "sync-after"
auto_commit_interval_ms = 2_000
auto_offset_reset = "earliest"
session_timeout_ms = 10_000
heartbeat_interval_ms = 1_000

[[faults]]
at_ms = 8_030
kind = "kill"
target = "consumer:0"

[[faults]]
at_ms = 12_000
kind = "restart"
target = "consumer:0"

MATRIX"#;

fn with_matrix(matrix: &str) -> String {
    BASE.replace("MATRIX", matrix)
}

/// The line of the first `needle` from the `[matrix]` table on.
fn line_of(text: &str, needle: &str) -> usize {
    let start = text.lines().position(|l| l.starts_with("[matrix]")).expect("a [matrix] table");
    text.lines().skip(start).position(|l| l.contains(needle)).map(|i| start + i + 1).expect("needle in text")
}

// Shows a bad [matrix] is rejected with the file, the line and the key, like every other
// scenario-file error (STYLE.md "Errors": bad input names file, line and field): unknown
// keys, bad values, empty or repeated axis values, an axis with nothing to set, a grid
// above CELLS_MAX cells, and bad [[matrix.expect]] entries.
#[test]
fn matrix_errors_name_file_line_and_key() {
    let no_groups = BASE.split("[[groups]]").next().expect("head").to_string() + "[matrix]\ncommit = [\"auto\"]\n";
    let retries: Vec<String> = (0..30).map(|r| r.to_string()).collect();
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (with_matrix("[matrix]\ncolour = [\"red\"]\n"), "colour", "", "unknown field `colour`"),
        (with_matrix("[matrix]\nacks = [\"1\", \"2\"]\n"), "acks =", "matrix.acks", "`2` is not one of"),
        (with_matrix("[matrix]\ncommit = []\n"), "commit =", "matrix.commit", "at least one value"),
        (with_matrix("[matrix]\nacks = [\"all\", \"-1\"]\n"), "acks =", "matrix.acks", "`all` is listed twice"),
        (with_matrix("[matrix]\ncommit = [\"later\"]\n"), "commit =", "matrix.commit", "`later` is not one of"),
        (with_matrix("[matrix]\nmax_poll_records = [0]\n"), "max_poll", "matrix.max_poll_records", "above 0"),
        (with_matrix("[matrix]\nassignors = [[\"range\"], [\"fair\"]]\n"), "assignors", "matrix.assignors", "unknown assignor `fair`"),
        (with_matrix("[matrix]\nacks = 1\n"), "acks =", "", "invalid type"),
        (with_matrix("[matrix]\n"), "[matrix]", "matrix", "declare at least one axis"),
        (no_groups, "commit =", "matrix.commit", "no [[groups]]"),
        (
            with_matrix(&format!(
                "[matrix]\ncommit = [\"auto\", \"sync-after\", \"sync-before\"]\nretries = [{}]\nacks = [\"0\", \"1\", \"all\"]\n",
                retries.join(", ")
            )),
            "[matrix]",
            "matrix",
            "the grid has 270 cells (3 × 30 × 3); at most 256",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\"]\n[[matrix.expect]]\nwhen = \"commit=auto\"\nhold = [\"at-least-once\"]\n"),
            "when =",
            "matrix.expect.when",
            "`commit` is not an axis of this [matrix]",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\"]\n[[matrix.expect]]\nwhen = \"acks=0\"\nhold = [\"at-least-once\"]\n"),
            "when =",
            "matrix.expect.when",
            "`0` is not a value of the `acks` axis",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\"]\n[[matrix.expect]]\nhold = [\"exactly-twice\"]\n"),
            "exactly-twice",
            "matrix.expect.hold",
            "unknown property `exactly-twice`",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\"]\n[[matrix.expect]]\nhold = [\"at-least-once\"]\nviolate = [\"at-least-once\"]\n"),
            "violate =",
            "matrix.expect.violate",
            "cannot both hold and be violated",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\"]\n[[matrix.expect]]\nwhen = \"acks=1\"\nmaybe = true\n"),
            "maybe",
            "",
            "unknown field `maybe`",
        ),
        (
            with_matrix("[matrix]\nacks = [\"1\", \"all\"]\nenable_idempotence = [true]\n"),
            "[matrix]",
            "matrix",
            "cell acks=1,enable_idempotence=true of producer `p0-0`: enable_idempotence needs acks = \"all\"",
        ),
    ];
    for (index, (text, needle, key, message)) in cases.iter().enumerate() {
        let file = format!("bad-matrix-{index}.toml");
        let error = match Scenario::parse(text, &file) {
            Ok(scenario) => matrix::parse(text, &file, &scenario).expect_err("a bad [matrix]"),
            Err(error) => panic!("case {index}: the scenario itself should parse: {error}"),
        };
        assert_eq!(error.file, file, "case {index}");
        assert_eq!(error.line, Some(line_of(text, needle)), "case {index}: {error}");
        assert_eq!(error.key, *key, "case {index}: {error}");
        assert!(error.message.contains(message), "case {index}: {error}");
    }
}

// Shows the grid expands in the file's axis order, the first axis outermost, and that a
// cell sets every producer and every group (an `auto` cell takes each group's own
// auto.commit.interval.ms, as enable.auto.commit does in the consumer javadoc), while a
// plain run keeps the file's own settings and [expect].
#[test]
fn grid_expands_in_file_order_and_sets_every_client() {
    let text = with_matrix(
        "[matrix]\nacks = [\"1\", \"all\"]\ncommit = [\"sync-before\", \"auto\"]\nretries = [0, 2147483647]\nassignors = [[\"range\"], [\"cooperative-sticky\", \"range\"]]\n",
    );
    let path = temp_file("grid.toml", &text);
    let (base, matrix) = load(&path);
    assert_eq!(base, Scenario::load(&path).expect("plain load"), "a plain run sees the file's own settings");
    assert_eq!(base.groups[0].config.commit, CommitMode::SyncAfter);
    assert_eq!(matrix.size(), 16);
    let labels: Vec<String> = matrix.cells().iter().map(|c| c.label()).collect();
    assert_eq!(labels.len(), 16);
    assert_eq!(labels[0], "acks=1,commit=sync-before,retries=0,assignors=range");
    assert_eq!(labels[1], "acks=1,commit=sync-before,retries=0,assignors=cooperative-sticky+range");
    assert_eq!(labels[2], "acks=1,commit=sync-before,retries=2147483647,assignors=range");
    assert_eq!(labels[15], "acks=all,commit=auto,retries=2147483647,assignors=cooperative-sticky+range");
    let cell = matrix.parse_cell(&labels[12]).expect("a printed label parses back");
    assert_eq!(cell, matrix.cells()[12]);
    let scenario = matrix.apply(&base, &cell);
    assert_eq!(scenario.producers.len(), 2);
    for producer in &scenario.producers {
        assert_eq!(producer.config.acks, Acks::All);
        assert_eq!(producer.config.retries, 0);
    }
    assert_eq!(scenario.groups[0].config.commit, CommitMode::Auto { interval_ms: 1_000 });
    assert_eq!(scenario.groups[1].config.commit, CommitMode::Auto { interval_ms: 2_000 });
    for group in &scenario.groups {
        let names: Vec<&str> = group.config.member.assignors.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["range"]);
    }
    assert!(
        scenario.expect.hold.is_empty() && scenario.expect.group_hold.is_empty(),
        "a cell has no expect of its own"
    );
    // A partial --cell keeps the file's setting on the axes it does not name.
    let partial = matrix.apply(&base, &matrix.parse_cell("commit=auto").expect("partial cell"));
    assert_eq!(partial.producers[0].config.acks, Acks::All);
    assert_eq!(partial.groups[0].config.member.assignors, base.groups[0].config.member.assignors);
    for bad in ["commit=auto,commit=auto", "linger=5", "acks=2", "acks"] {
        assert!(matrix.parse_cell(bad).is_err(), "{bad}");
    }
}

// Shows the replay a matrix prints reproduces its cell: `kafka-trial run FILE --seed S
// --cell ...` has the same trace hash and the same violations as that cell's run in the
// matrix (TigerBeetle VOPR / madsim style: every failure names the command that replays
// it), and the run's own replay line carries the --cell.
#[test]
fn cell_replay_equals_the_matrix_cell() {
    let text = with_matrix("[matrix]\ncommit = [\"sync-before\", \"sync-after\", \"auto\"]\nacks = [\"1\", \"all\"]\n");
    let path = temp_file("replay.toml", &text);
    let (base, matrix) = load(&path);
    let seeds = 4..5;
    let report = run_matrix(&base, &matrix, seeds.clone(), 2, &|_| {});
    assert_eq!(report.cells.len(), 6);
    let mut replayed = 0;
    for (cell, scenario) in report.cells.iter().zip(matrix.cells().iter().map(|c| matrix.apply(&base, c))) {
        let direct = CellSeed::of(&simulate(&scenario, seeds.start));
        assert_eq!(cell.violations, direct.violations, "{}", cell.cell.label());
        let Some((seed, command)) =
            cell.replays.get(&Kind::CONSUMER_LOSS).or(cell.replays.get(&Kind::CONSUMER_DUPLICATES))
        else {
            continue;
        };
        assert_eq!(*seed, seeds.start);
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(args[..2], ["kafka-trial", "run"], "{command}");
        let output = Command::new(env!("CARGO_BIN_EXE_kafka-trial"))
            .args(&args[1..])
            .arg("--json")
            .current_dir(repo())
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(value["trace_hash"], format!("{:016x}", direct.trace_hash), "{command}");
        assert_eq!(value["replay"], command.as_str());
        let lost: u64 =
            value["groups"].as_array().expect("groups").iter().map(|g| g["lost"].as_u64().unwrap_or(0)).sum();
        let duplicates: u64 =
            value["groups"].as_array().expect("groups").iter().map(|g| g["duplicates"].as_u64().unwrap_or(0)).sum();
        assert_eq!(lost, cell.violations.get(&Kind::CONSUMER_LOSS).copied().unwrap_or(0), "{command}");
        assert_eq!(duplicates, cell.violations.get(&Kind::CONSUMER_DUPLICATES).copied().unwrap_or(0), "{command}");
        replayed += 1;
    }
    assert!(replayed >= 3, "the consumer crash should show violations in several cells, replayed {replayed}");
}

// Shows a run that panics counts as a failure of that seed of that cell, with its replay
// command, and the matrix goes on and fails (as `sweep` treats a panicking seed).
#[test]
fn a_panicking_run_fails_its_cell_and_the_matrix_goes_on() {
    let text = with_matrix("[matrix]\ncommit = [\"sync-before\", \"sync-after\"]\n");
    let path = temp_file("panic.toml", &text);
    let (base, matrix) = load(&path);
    let report = run_matrix_with(&base, &matrix, 0..3, 2, &|_| {}, &|scenario, seed| {
        if seed == 1 && scenario.groups[0].config.commit == CommitMode::SyncAfter {
            panic!("boom at seed {seed}");
        }
        CellSeed { seed, violations: Default::default(), trace_hash: seed, panic: None }
    });
    assert_eq!(report.runs(), 6);
    assert_eq!(report.cells[0].seeds(Kind::Panic), 0);
    assert_eq!(report.cells[1].seeds(Kind::Panic), 1);
    assert_eq!(report.cells[1].completed, 2);
    assert_eq!(report.cells[1].panic.as_deref(), Some("boom at seed 1"));
    let (seed, command) = &report.cells[1].replays[&Kind::Panic];
    assert_eq!(*seed, 1);
    assert!(command.ends_with("--seed 1 --cell commit=sync-after"), "{command}");
    assert!(!report.pass());
    assert!(report.text().lines().last().expect("verdict").starts_with("FAIL matrix=tiny"));
}

// Shows the shipped matrix reproduces the delivery semantics the Kafka documentation
// states for consumers that crash mid-batch (docs, design, "Message Delivery Semantics":
// save the position, then process, is at-most-once; process, then save, at-least-once;
// KafkaConsumer javadoc "Manual Offset Control" for commitSync after processing and
// "Automatic Offset Committing" for the Java auto-commit in poll(), both at-least-once):
// before processing loses and never repeats, after processing (sync, async, auto in poll)
// repeats and never loses, and a background auto-commit shows both. acks does not change
// it, since only consumers crash.
#[test]
fn shipped_matrix_reproduces_the_documented_claims() {
    let (base, matrix) = load(&repo().join("scenarios/matrix-commit-modes.toml"));
    assert_eq!(matrix.size(), 10);
    let report = run_matrix(&base, &matrix, 0..2, 2, &|_| {});
    let failed: Vec<_> = report.claims.iter().filter(|c| !c.met).collect();
    assert!(report.pass(), "claims failed: {failed:?}\n{}", report.text());
    for cell in &report.cells {
        let commit = cell.cell.setting(matrix::AxisKey::Commit).expect("commit axis").to_string();
        let (lost, duplicated) = (cell.seeds(Kind::CONSUMER_LOSS), cell.seeds(Kind::CONSUMER_DUPLICATES));
        let semantics = cell.group_semantics().expect("a group").name();
        match commit.as_str() {
            "sync-before" => {
                assert!(lost > 0 && duplicated == 0 && semantics == "at-most-once", "{}", cell.cell.label())
            }
            "sync-after" | "async-after" | "auto-in-poll" => {
                assert!(lost == 0 && duplicated > 0 && semantics == "at-least-once", "{}", cell.cell.label())
            }
            "auto" => assert!(lost > 0 && duplicated > 0 && semantics == "none", "{}", cell.cell.label()),
            other => panic!("unexpected commit axis value {other}"),
        }
        assert_eq!(cell.producer_semantics().map(|s| s.name()), Some("exactly-once"), "{}", cell.cell.label());
    }
}

// Shows the producer matrix reproduces Kafka's producer docs: without idempotence a
// retry duplicates, and with five requests in flight it also reorders (one in flight keeps
// the order); with idempotence (KIP-98) each record is written once and in order.
#[test]
fn producer_matrix_reproduces_the_documented_claims() {
    let (base, matrix) = load(&repo().join("scenarios/matrix-producer.toml"));
    assert_eq!(matrix.size(), 4);
    let report = run_matrix(&base, &matrix, 0..4, 2, &|_| {});
    let failed: Vec<_> = report.claims.iter().filter(|c| !c.met).collect();
    assert!(report.pass(), "claims failed: {failed:?}\n{}", report.text());
    for cell in &report.cells {
        let idempotent = cell.cell.setting(matrix::AxisKey::Idempotence).expect("idempotence axis").to_string();
        let semantics = cell.producer_semantics().map(|s| s.name());
        let expected = if idempotent == "true" { "exactly-once" } else { "at-least-once" };
        assert_eq!(semantics, Some(expected), "{}", cell.cell.label());
    }
}

// Shows the transactions matrix reproduces KIP-890 and KIP-98's isolation levels: without
// the epoch bump per transaction (part 2) and the leaders' partition verification (part
// 1) a late produce makes aborted data visible (Jepsen's G1a) whatever the group reads
// with; with either, only a read_uncommitted group processes aborted records, and a
// read_committed group processes every committed record exactly once.
#[test]
fn transactions_matrix_reproduces_kip890_and_isolation_levels() {
    let (base, matrix) = load(&repo().join("scenarios/matrix-transactions.toml"));
    assert_eq!(matrix.size(), 8);
    let report = run_matrix(&base, &matrix, 0..3, 2, &|_| {});
    let failed: Vec<_> = report.claims.iter().filter(|c| !c.met).collect();
    assert!(report.pass(), "claims failed: {failed:?}\n{}", report.text());
    let aborted_reads = trial_sim::matrix::Kind::Txn(trial_sim::txns::TxnProperty::NoAbortedReads);
    for cell in &report.cells {
        let label = cell.cell.label();
        let either = label.contains("kip890=true") || label.contains("partition_verification=true");
        let safe = either && label.contains("read_committed");
        assert_eq!(cell.seeds(aborted_reads) == 0, safe, "{label}");
        assert_eq!(cell.group_semantics().map(|s| s.name()), Some("exactly-once"), "{label}");
    }
}

// Shows the pipeline matrix reproduces what KIP-447's generation check on TxnOffsetCommit
// buys: with commit fencing on, a zombie process's transaction is refused and every input
// record is in the output once; with it off, the zombie commits after the new owner
// re-read its records and records are in the output twice.
#[test]
fn pipeline_matrix_shows_what_commit_fencing_buys() {
    let (base, matrix) = load(&repo().join("scenarios/matrix-pipeline.toml"));
    assert_eq!(matrix.size(), 2);
    let report = run_matrix(&base, &matrix, 0..4, 2, &|_| {});
    let failed: Vec<_> = report.claims.iter().filter(|c| !c.met).collect();
    assert!(report.pass(), "claims failed: {failed:?}\n{}", report.text());
    let exactly_once = trial_sim::matrix::Kind::Txn(trial_sim::txns::TxnProperty::PipelineExactlyOnce);
    for cell in &report.cells {
        let fenced = cell.cell.label() == "commit_fencing=true";
        assert_eq!(cell.seeds(exactly_once) == 0, fenced, "{}", cell.cell.label());
    }
}

// Shows the CLI: `matrix` prints the table with one row per cell and exits 0 when the
// claims are met, 1 when one fails, 2 without a [matrix]; `run --cell` exits 2 on a cell
// the grid does not have (exit codes as for run and sweep).
#[test]
fn matrix_cli_table_json_and_exit_codes() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kafka-trial")).args(args).current_dir(repo()).output().expect("runs")
    };
    let text = with_matrix(
        "[matrix]\ncommit = [\"sync-before\", \"sync-after\"]\n[[matrix.expect]]\nwhen = \"commit=sync-after\"\nhold = [\"at-least-once\"]\n",
    );
    let path = temp_file("cli.toml", &text);
    let file = path.to_str().expect("utf-8");
    let output = run(&["matrix", file, "--seeds", "0..1", "--jobs", "2"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let header = stdout.lines().nth(1).expect("table header");
    for column in ["cell", "commit", "group", "lost", "dup", "producer", "other", "claims"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("1  sync-before")), "{stdout}");
    assert!(stdout.contains(&format!("kafka-trial run {file} --seed 0 --cell commit=")), "{stdout}");
    assert!(stdout.trim_end().ends_with("(2 cells, 2 runs; claims met)"), "{stdout}");

    let output = run(&["matrix", file, "--seeds", "0..1", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(value["cells"].as_array().map(Vec::len), Some(2));
    assert_eq!(value["cells"][1]["cell"], "commit=sync-after");
    assert_eq!(value["verdict"], "pass");

    let failing = text.replace("hold = [\"at-least-once\"]", "hold = [\"at-most-once\"]");
    let failing = temp_file("cli-failing.toml", &failing);
    let output = run(&["matrix", failing.to_str().expect("utf-8"), "--seeds", "0..1"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: at-most-once expected to hold in cell commit=sync-after"), "{stdout}");

    let output = run(&["matrix", "scenarios/steady.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no [matrix] table"));
    let output = run(&["run", "scenarios/steady.toml", "--cell", "acks=1"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["run", file, "--cell", "commit=auto"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`auto` is not a value of the `commit` axis"));
}
