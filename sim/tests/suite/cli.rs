//! The `kafka-trial` binary as users run it: reports, JSON, traces, sweeps, validation
//! and exit codes (0 expectations held, 1 an expectation failed, 2 bad input).

use std::path::PathBuf;
use std::process::{Command, Output};

fn kafka_trial(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafka-trial")).args(args).current_dir(repo()).output().expect("the binary runs")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kafka-trial-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

// Shows `run` prints a report whose last line carries the verdict, the seed and the exact
// replay command, exits 0 when expectations hold, and is byte-identical for the same seed.
#[test]
fn run_prints_verdict_and_replay_command() {
    let first = kafka_trial(&["run", "scenarios/steady.toml", "--seed", "3"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let text = stdout(&first);
    let last = text.lines().last().expect("a last line");
    assert!(last.starts_with("PASS scenario=steady seed=3"), "{last}");
    assert!(last.ends_with("replay: kafka-trial run scenarios/steady.toml --seed 3"), "{last}");
    assert!(text.contains("properties:") && text.contains("cluster events"), "{text}");
    let second = kafka_trial(&["run", "scenarios/steady.toml", "--seed", "3"]);
    assert_eq!(stdout(&second), text);
}

// Shows `--json` prints one object with the fields the issue names.
#[test]
fn run_json_has_the_documented_fields() {
    let output = kafka_trial(&["run", "scenarios/acks1-leader-crash.toml", "--seed", "2", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    for key in [
        "scenario",
        "seed",
        "verdict",
        "trace_hash",
        "properties",
        "produced",
        "acked",
        "lost_acked",
        "duplicates",
        "sim_time_ms",
        "events",
    ] {
        assert!(value.get(key).is_some(), "missing {key}: {value}");
    }
    assert_eq!(value["verdict"], "pass");
    assert_eq!(value["seed"], 2);
    assert!(value["trace_hash"].as_str().is_some_and(|h| h.len() == 16));
    assert_eq!(value["properties"]["no-lost-acked-writes"]["held"], false);
    assert!(value["properties"]["no-lost-acked-writes"]["violations"].as_u64().unwrap_or(0) > 0);
    assert!(value["lost_acked"].as_u64().unwrap_or(0) > 0);
}

// Shows a failed expectation exits 1 and its last line names the seed and the replay
// command (TigerBeetle VOPR style: every failure says how to reproduce it).
#[test]
fn failed_expectation_exits_one_with_replay() {
    let text = std::fs::read_to_string(repo().join("scenarios/acks1-leader-crash.toml")).expect("shipped scenario");
    let text = text
        .replace("violate = [\"no-lost-acked-writes\"]", "violate = []")
        .replace("hold = [\"no-duplicates\"", "hold = [\"no-lost-acked-writes\", \"no-duplicates\"");
    let path = temp_file("expects-no-loss.toml", &text);
    let output = kafka_trial(&["run", path.to_str().expect("utf-8 path"), "--seed", "5"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    let last = text.lines().last().expect("a last line");
    assert!(last.starts_with("FAIL scenario=acks1-leader-crash seed=5"), "{last}");
    assert!(last.contains(&format!("replay: kafka-trial run {} --seed 5", path.display())), "{last}");
}

// Shows `--trace` writes the history as JSON lines (invokes, completions, cluster events).
#[test]
fn trace_writes_json_lines() {
    let path = std::env::temp_dir().join(format!("kafka-trial-trace-{}.jsonl", std::process::id()));
    let output =
        kafka_trial(&["run", "scenarios/kip966-elr.toml", "--seed", "1", "--trace", path.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = std::fs::read_to_string(&path).expect("trace written");
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        kinds.insert(value["type"].as_str().unwrap_or("").to_string());
    }
    for kind in ["invoke", "ok", "cluster", "happening"] {
        assert!(kinds.contains(kind), "no {kind} line in {kinds:?}");
    }
    let _ = std::fs::remove_file(path);
}

// Shows `check` accepts every shipped scenario and rejects bad input with exit 2 and a
// message naming the file, the line and the key (unknown key, impossible set-up, bad value,
// a graceful stop aimed at a producer, a producer configuration Kafka refuses).
#[test]
fn check_validates_with_file_line_and_key() {
    let mut args = vec!["check"];
    let files: Vec<String> = std::fs::read_dir(repo().join("scenarios"))
        .expect("scenarios/")
        .map(|e| format!("scenarios/{}", e.expect("entry").file_name().to_string_lossy()))
        .collect();
    args.extend(files.iter().map(String::as_str));
    let output = kafka_trial(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let base = "duration_ms = 1000\n[cluster]\nbrokers = 2\n";
    let cases = [
        (format!("{base}[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 3\n"), 7, "topics.replication_factor", "impossible with 2 broker(s)"),
        (format!("{base}colour = \"red\"\n[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n"), 4, "", "unknown field `colour`"),
        (format!("{base}[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n[[producers]]\ntopic = \"t\"\nrate = 10\nacks = \"2\"\n"), 11, "producers.acks", "is not one of"),
        (format!("{base}[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n[[faults]]\nat_ms = 10\nkind = \"kill\"\ntarget = \"broker:9\"\n"), 11, "faults.target", "brokers 0..1"),
        (format!("{base}[network]\nloss = 1.5\n[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n"), 5, "network.loss", "not a probability"),
        // A graceful stop is a broker's (or the controller's) controlled shutdown.
        (format!("{base}[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n[[producers]]\ntopic = \"t\"\nrate = 10\n[[faults]]\nat_ms = 10\nkind = \"shutdown\"\ntarget = \"producer:0\"\n"), 14, "faults.target", "apply to brokers and the controller"),
        // Kafka's producer refuses idempotence with acks=1 (KIP-98; a ConfigException).
        (format!("{base}[[topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 1\n[[producers]]\ntopic = \"t\"\nrate = 10\nacks = \"1\"\nenable_idempotence = true\n"), 12, "producers.enable_idempotence", "needs acks = \"all\""),
    ];
    for (index, (text, line, key, message)) in cases.iter().enumerate() {
        let path = temp_file(&format!("bad-{index}.toml"), text);
        let output = kafka_trial(&["check", path.to_str().expect("utf-8")]);
        assert_eq!(output.status.code(), Some(2), "case {index}");
        let err = stderr(&output);
        assert!(err.contains(&format!("{}:{line}:", path.display())), "case {index}: {err}");
        assert!(err.contains(key) && err.contains(message), "case {index}: {err}");
        let run = kafka_trial(&["run", path.to_str().expect("utf-8")]);
        assert_eq!(run.status.code(), Some(2), "run exits 2 on bad input too (case {index})");
    }
    let missing = kafka_trial(&["run", "scenarios/no-such-file.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no-such-file.toml"));
    let usage = kafka_trial(&["sweep", "scenarios/steady.toml", "--seeds", "9..3"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = kafka_trial(&["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

// Shows `sweep` runs a range on several threads and `--shard I/N` runs one slice of it, as a
// Kubernetes Indexed Job would (each pod its JOB_COMPLETION_INDEX).
#[test]
fn sweep_runs_seeds_and_shards() {
    let output = kafka_trial(&["sweep", "scenarios/kip966-elr.toml", "--seeds", "0..4", "--jobs", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).trim_end().ends_with("4 passed, 0 failed"), "{}", stdout(&output));
    let output = kafka_trial(&["sweep", "scenarios/kip966-elr.toml", "--seeds", "0..10", "--shard", "1/3", "--json"]);
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("JSON");
    assert_eq!(value["seeds"]["start"], 3);
    assert_eq!(value["seeds"]["end"], 6);
    assert_eq!(value["runs"], 3);
}

// Shows a failing seed in a sweep is listed with its replay command and makes the exit 1.
#[test]
fn sweep_lists_failing_seeds() {
    let text = std::fs::read_to_string(repo().join("scenarios/kip966-last-replica-standing.toml")).expect("shipped");
    let text = text.replace("violate = [\"no-lost-acked-writes\"]", "violate = []");
    let text =
        text.replace("hold = [\"one-leader-per-epoch\"", "hold = [\"no-lost-acked-writes\", \"one-leader-per-epoch\"");
    let path = temp_file("kip966-expect-no-loss.toml", &text);
    let output = kafka_trial(&["sweep", path.to_str().expect("utf-8"), "--seeds", "0..2"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains(&format!("replay: kafka-trial run {} --seed 1", path.display())), "{text}");
    assert!(text.trim_end().ends_with("0 passed, 2 failed"), "{text}");
}

// Shows one seed that panics is reported as a failure of that seed and the sweep goes on.
#[test]
fn a_panicking_seed_does_not_stop_the_sweep() {
    use trial_sim::sweep::{sweep_with, SeedResult, SeedSummary};
    let results = sweep_with(0..5, 2, &|_| {}, &|seed| {
        if seed == 2 {
            panic!("boom at seed {seed}");
        }
        SeedSummary { seed, result: SeedResult::Pass, trace_hash: seed, violations: Default::default() }
    });
    assert_eq!(results.len(), 5);
    assert_eq!(results[2].result, SeedResult::Panic("boom at seed 2".into()));
    assert!(results.iter().enumerate().all(|(i, r)| r.seed == i as u64));
    assert_eq!(results.iter().filter(|r| r.result == SeedResult::Pass).count(), 4);
}

// Shows `--bench` adds the speed line (simulated seconds per wall second, events/s, peak
// memory) to the report and a `bench` object to the JSON (issue 5, "Speed").
#[test]
fn bench_flag_reports_speed() {
    let output = kafka_trial(&["run", "scenarios/kip966-elr.toml", "--seed", "1", "--bench"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let line = text.lines().find(|l| l.starts_with("bench: ")).expect("a bench line");
    assert!(line.contains("x real time") && line.contains("M events/s") && line.contains("peak RSS"), "{line}");
    let output = kafka_trial(&["run", "scenarios/kip966-elr.toml", "--seed", "1", "--bench", "--json"]);
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("JSON");
    assert!(value["bench"]["sim_seconds_per_wall_second"].as_f64().is_some_and(|r| r > 1.0), "{value}");
    assert!(value["bench"]["events_per_second"].as_f64().is_some_and(|r| r > 0.0));
}

// Shows the plain build refuses `--host madsim` with exit code 2 and names the build that
// has it (issue 4: `kafka-trial run FILE --host madsim`; the madsim host needs
// `--cfg madsim`, which `cargo trial-madsim` sets).
#[cfg(not(madsim))]
#[test]
fn madsim_host_needs_the_madsim_build() {
    for command in ["run", "sweep", "matrix"] {
        let output = kafka_trial(&[command, "scenarios/steady.toml", "--host", "madsim"]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cargo trial-madsim"), "{command}: {stderr}");
    }
}
