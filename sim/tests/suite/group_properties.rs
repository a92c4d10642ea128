//! Property tests of consumer delivery semantics over generated schedules of consumer
//! crashes, pauses (GC, past the session timeout) and leave/rejoins (proptest).

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::path::PathBuf;
use trial_model::CommitMode;
use trial_sim::groups::GroupProperty;
use trial_sim::strategies::{consumer_plan, with_consumer_plan, ConsumerPlan};
use trial_sim::{simulate, Scenario};

/// Cases per search: each runs a 40-s scenario with a group of 3.
const CASES: u32 = 24;

/// A group of 3 consumers committing as `commit` says, on a healthy cluster, with no
/// faults of its own (the plans add them).
fn base(commit: CommitMode) -> Scenario {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut scenario = Scenario::load(&dir.join("group-crash-sync-after.toml")).unwrap_or_else(|e| panic!("{e}"));
    scenario.name = "group-property".into();
    scenario.path = None;
    scenario.faults.clear();
    scenario.duration_ms = 40_000;
    scenario.groups[0].config.commit = commit;
    scenario
}

fn runner(seed: u8) -> TestRunner {
    let config = Config { cases: CASES, failure_persistence: None, max_shrink_iters: 200, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

/// Runs "`property` holds for `commit`" over generated consumer plans; returns the shrunk
/// counterexample, or None when every case held. A counterexample is written as a
/// scenario file and its replay command printed.
fn search(commit: CommitMode, property: GroupProperty, seed: u8) -> Option<ConsumerPlan> {
    let base = base(commit);
    let strategy = consumer_plan(3, 3, 30_000, 20_000);
    let result = runner(seed).run(&strategy, |plan| {
        let outcome = simulate(&with_consumer_plan(&base, &plan), 1);
        let result = outcome.groups[0].result(property);
        if !result.held() {
            return Err(TestCaseError::fail(format!("{}: {:?}", property.name(), result.examples.first())));
        }
        Ok(())
    });
    match result {
        Ok(()) => None,
        Err(TestError::Fail(_, plan)) => {
            let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("group-counterexample-{seed}.toml"));
            std::fs::write(&path, with_consumer_plan(&base, &plan).to_toml()).expect("write the counterexample");
            eprintln!("minimal counterexample: {plan:?}\nreplay: kafka-trial run {} --seed 1", path.display());
            Some(plan)
        }
        Err(TestError::Abort(reason)) => panic!("proptest aborted: {reason}"),
    }
}

// Shows "commit after processing never loses a record" under generated consumer crashes,
// GC pauses and leave/rejoins: the Kafka consumer javadoc's at-least-once recipe
// ("Manual Offset Control": commit after the records are processed).
#[test]
fn commit_after_processing_never_loses_a_record() {
    if let Some(plan) = search(CommitMode::SyncAfter, GroupProperty::AtLeastOnce, 21) {
        panic!("commit after processing lost records; minimal plan: {plan:#?}");
    }
}

// Shows "commit before processing never duplicates a record" under the same schedules:
// the javadoc's at-most-once recipe (commit, then process; a batch whose commit failed is
// not processed).
#[test]
fn commit_before_processing_never_duplicates() {
    if let Some(plan) = search(CommitMode::SyncBefore, GroupProperty::AtMostOnce, 22) {
        panic!("commit before processing duplicated records; minimal plan: {plan:#?}");
    }
}

// Shows the opposite claims are false and shrink to one episode: commit after processing
// duplicates (a crash after processing, before the commit) and commit before processing
// loses (a crash after the commit, before processing) — Kafka docs, "Message Delivery
// Semantics".
#[test]
fn the_opposite_claims_fail_with_one_episode() {
    for (commit, property, seed) in [
        (CommitMode::SyncAfter, GroupProperty::AtMostOnce, 23),
        (CommitMode::SyncBefore, GroupProperty::AtLeastOnce, 24),
    ] {
        let Some(plan) = search(commit, property, seed) else {
            panic!("{commit:?}: no counterexample to {} in {CASES} cases", property.name());
        };
        eprintln!("{commit:?}: {} fails; minimal plan {plan:?}", property.name());
        assert_eq!(plan.len(), 1, "{commit:?}: minimal counterexample has {} episodes: {plan:?}", plan.len());
    }
}
