//! The madsim host runs the same simulation as the engine (ARCHITECTURE.md, "one model,
//! two hosts"; issue 4's differential test): for every shipped scenario and a set of
//! seeds, the per-property verdicts, the semantics per group and the trace hash agree.
//! Built and run only with `--cfg madsim` (`cargo xtest` runs it so).

use std::path::{Path, PathBuf};
use trial_sim::{engine, madsim, simulate, Outcome, Scenario};

fn scenarios() -> Vec<(PathBuf, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ lists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        // The 600-second speed benchmarks say nothing a short scenario does not.
        .filter(|path| !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("bench-")))
        .collect();
    files.sort();
    files.into_iter().map(|path| (path.clone(), Scenario::load(&path).expect("a shipped scenario loads"))).collect()
}

/// Every property's result with its counts and examples, and every group's.
fn verdicts(outcome: &Outcome) -> (String, String) {
    (format!("{:?}", outcome.verdicts), format!("{:?}", outcome.groups))
}

// Shows both hosts give the same verdicts, group semantics and trace hash for every
// shipped scenario at seeds 0, 7 and 42 (traces could differ and verdicts could not, as
// issue 4 puts it; here the madsim host keeps the engine's event order, so neither does).
#[test]
fn madsim_host_agrees_with_the_engine_on_every_scenario() {
    let mut compared = 0;
    for (path, scenario) in scenarios() {
        for seed in [0, 7, 42] {
            let on_engine = simulate(&scenario, seed);
            let on_madsim = madsim::simulate(&scenario, seed);
            let name = path.display();
            assert_eq!(verdicts(&on_engine), verdicts(&on_madsim), "{name} seed {seed}: verdicts differ");
            assert_eq!(on_engine.pass, on_madsim.pass, "{name} seed {seed}");
            assert_eq!(on_engine.run.trace_hash, on_madsim.run.trace_hash, "{name} seed {seed}: trace hashes differ");
            assert_eq!(on_engine.run.stats, on_madsim.run.stats, "{name} seed {seed}: event counts differ");
            compared += 1;
        }
    }
    assert!(compared >= 60, "only {compared} runs compared");
}

// Shows the madsim host's replay line names the host, so a failure found there is
// replayed there.
#[test]
fn madsim_replay_command_names_the_host() {
    let (_, scenario) = scenarios().into_iter().find(|(p, _)| p.ends_with("steady.toml")).expect("steady.toml");
    let outcome = madsim::simulate(&scenario, 3);
    assert!(outcome.replay.ends_with("--seed 3 --host madsim"), "{}", outcome.replay);
}

// Shows madsim's own determinism check passes on a scenario with faults: it runs the
// simulation twice under one seed and compares every random draw madsim makes
// (madsim's `Runtime::check_determinism`).
#[test]
fn madsim_determinism_check_passes() {
    ::madsim::runtime::Runtime::check_determinism(11, ::madsim::Config::default(), || async {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/leader-crash-acks-all.toml");
        let scenario = Scenario::load(&path).expect("leader-crash-acks-all.toml loads");
        madsim::simulation(&scenario, 11, None).await.trace_hash
    });
}

// Shows a run on the madsim host of a scenario with crashes, restarts and power loss
// still matches the engine when the engine runs it with the same seed in one process
// after it (no state leaks across runtimes).
#[test]
fn madsim_runs_do_not_leak_state() {
    let (_, scenario) = scenarios().into_iter().find(|(p, _)| p.ends_with("nemesis-power-loss.toml")).expect("file");
    let first = madsim::run(&scenario, 5, None).trace_hash;
    let second = madsim::run(&scenario, 5, None).trace_hash;
    assert_eq!(first, second);
    assert_eq!(first, engine::run(&scenario, 5, None).trace_hash);
}

// Shows `kafka-trial matrix --host madsim` judges every cell of the shipped semantics
// matrix as the engine does (issue 4, item 5: any scenario on the madsim host; issue 3's
// matrix), and its replay commands name the host.
#[test]
fn matrix_on_the_madsim_host_agrees_with_the_engine() {
    use trial_sim::matrix::run_matrix_on;
    use trial_sim::Host;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/matrix-commit-modes.toml");
    let (base, grid) = trial_sim::scenario::matrix::load(&path).expect("the shipped matrix loads");
    let grid = grid.expect("it has a [matrix]");
    let engine = run_matrix_on(Host::Engine, &base, &grid, 0..1, 2, &|_| {}).expect("the engine is always there");
    let madsim = run_matrix_on(Host::Madsim, &base, &grid, 0..1, 2, &|_| {}).expect("this is the madsim build");
    assert_eq!(engine.claims, madsim.claims);
    for (e, m) in engine.cells.iter().zip(&madsim.cells) {
        assert_eq!(
            (&e.cell, e.group_semantics(), e.producer_semantics()),
            (&m.cell, m.group_semantics(), m.producer_semantics())
        );
        for ((kind, (seed, command)), (other, (other_seed, madsim_command))) in e.replays.iter().zip(&m.replays) {
            assert_eq!((kind, seed), (other, other_seed));
            assert_eq!(format!("{command} --host madsim"), *madsim_command);
        }
    }
}
