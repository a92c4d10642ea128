//! Your own async application code on the madsim host (issue 4): application nodes run
//! user code against the model's clients; the checkers judge their writes; faults kill,
//! restart and pause them. Built and run only with `--cfg madsim`.

use std::path::Path;
use trial_model::ProducerConfig;
use trial_sim::madsim::app::{Kafka, KafkaError, ProducerRecord, Simulation};
use trial_sim::{Property, Scenario};

fn cluster() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/app-cluster.toml");
    Scenario::load(&path).expect("scenarios/app-cluster.toml loads")
}

/// A client that gives up quickly and does not retry by itself: what happens next is
/// the application's choice. (Kafka refuses idempotence with retries = 0.)
fn impatient() -> ProducerConfig {
    ProducerConfig {
        retries: 0,
        request_timeout_ms: 1_000,
        delivery_timeout_ms: 2_000,
        enable_idempotence: false,
        ..ProducerConfig::default()
    }
}

/// A client that retries by itself until `delivery.timeout.ms`; the application never
/// resends.
fn patient(enable_idempotence: bool) -> ProducerConfig {
    ProducerConfig {
        request_timeout_ms: 1_000,
        delivery_timeout_ms: 8_000,
        enable_idempotence,
        ..ProducerConfig::default()
    }
}

/// Sends one record per 10 ms until the safety phase ends; resends a record whose
/// outcome it does not know when `resend` (the application's own retry loop).
async fn writer(kafka: Kafka, resend: bool) {
    let producer = kafka.producer();
    let mut key = 0u32;
    while kafka.running() {
        key = key.wrapping_add(1);
        let mut record = ProducerRecord::new("events").key(key % 64);
        for _attempt in 0..5 {
            match producer.send(record.clone()).await {
                Err(KafkaError::Unknown { write, .. } | KafkaError::Rejected { write, .. }) if resend => {
                    record = record.retry_of(write);
                }
                _ => break,
            }
        }
        ::madsim::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

// Shows an application loop that resends a record it did not hear back about duplicates
// records when produce responses are lost (the broker appended, the client timed out):
// the no-duplicates checker names them, and the report line carries the seed and how
// to replay it (Kafka's documentation: without idempotence a retry may write twice).
#[test]
fn own_retries_without_idempotence_duplicate_records() {
    let outcome = Simulation::new(cluster()).app_with("resender", impatient(), |k| writer(k, true)).run(3);
    let duplicates = outcome.verdicts.result(Property::NoDuplicates);
    assert!(duplicates.violations > 0, "no duplicate found: {}", outcome.verdict_line());
    assert!(outcome.verdicts.result(Property::NoLostAckedWrites).held());
    assert!(outcome.replay.contains(".run(3)"), "{}", outcome.replay);
    assert!(outcome.verdict_line().contains("seed=3"), "{}", outcome.verdict_line());
}

// Shows the same loop without its own resends writes every record at most once under
// the same faults (the seed and the lost responses are the same), and every write it was
// told was acknowledged is in the log.
#[test]
fn no_resend_means_no_duplicates() {
    let outcome = Simulation::new(cluster()).app_with("once", impatient(), |k| writer(k, false)).run(3);
    assert!(outcome.pass, "{}", outcome.verdict_line());
    assert!(outcome.verdicts.result(Property::NoDuplicates).held(), "{}", outcome.verdict_line());
    assert!(outcome.verdicts.counts.acked > 300, "{:?}", outcome.verdicts.counts);
    assert!(outcome.verdicts.counts.failed + outcome.verdicts.counts.indefinite > 0, "the faults cost some writes");
}

// Shows an application node killed mid-work loses its process (its code stops; writes in
// flight end indefinite, as Jepsen's `info`), and a restart runs it again from the
// start: it writes after the restart too, and the history still resolves every write.
#[test]
fn killed_app_restarts_from_the_start() {
    // The application closure must be Send + Sync (madsim keeps it to restart the node).
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let in_app = counter.clone();
    let outcome = Simulation::new(cluster())
        .app_with("writer", impatient(), move |kafka| {
            in_app.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            writer(kafka, false)
        })
        .kill_app("writer", 4_000)
        .restart_app("writer", 7_000)
        .run(5);
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 2, "started once, restarted once");
    assert!(outcome.verdicts.result(Property::AllWritesResolved).held(), "{}", outcome.verdict_line());
    let after_restart = outcome.run.history.ops.iter().filter(|op| op.invoked_at.0 > 7_000).count();
    assert!(after_restart > 100, "only {after_restart} writes after the restart");
    let during_outage = outcome.run.history.ops.iter().filter(|op| (4_100..7_000).contains(&op.invoked_at.0)).count();
    assert_eq!(during_outage, 0, "a killed app wrote");
}

// Shows a paused application (a GC pause) stops sending while paused and carries on after.
#[test]
fn paused_app_stops_and_resumes() {
    let outcome = Simulation::new(cluster())
        .app_with("writer", impatient(), |k| writer(k, false))
        .pause_app("writer", 2_000)
        .resume_app("writer", 6_000)
        .run(8);
    let during = outcome.run.history.ops.iter().filter(|op| (2_100..6_000).contains(&op.invoked_at.0)).count();
    let after = outcome.run.history.ops.iter().filter(|op| op.invoked_at.0 > 6_000).count();
    assert_eq!(during, 0, "a paused app wrote");
    assert!(after > 100, "only {after} writes after the pause");
}

// Shows an application cut off from the cluster (isolated) cannot get its writes
// through: with a 2 s delivery timeout its sends fail while it is isolated, and succeed
// again after the network heals (the producer's request and delivery timeouts, KIP-91).
#[test]
fn isolated_app_fails_its_writes_until_healed() {
    let outcome = Simulation::new(cluster())
        .app_with("writer", impatient(), |k| writer(k, false))
        .isolate_app("writer", 1_000)
        .heal_network(2_500)
        .run(4);
    let ops = &outcome.run.history.ops;
    let acked_in =
        |from: u64, to: u64| ops.iter().filter(|op| (from..to).contains(&op.invoked_at.0) && op.acked()).count();
    assert_eq!(acked_in(1_100, 2_400), 0, "an isolated app's write was acknowledged");
    let failed_while_isolated =
        ops.iter().filter(|op| (1_000..2_500).contains(&op.invoked_at.0) && !op.acked()).count();
    assert!(failed_while_isolated > 0);
    let first_after = ops.iter().filter(|op| op.invoked_at.0 >= 2_500 && op.acked()).map(|op| op.invoked_at.0).min();
    assert!(first_after.is_some_and(|t| t < 5_000), "first write acknowledged after the heal: {first_after:?}");
    assert!(acked_in(2_500, 20_000) > 100, "acked after the heal: {}", acked_in(2_500, 20_000));
}

// Shows a simulation with application code is deterministic: the same seed gives the same
// trace hash and report; another seed gives another run (ARCHITECTURE.md, determinism).
#[test]
fn app_simulation_is_deterministic() {
    let run = |seed| {
        Simulation::new(cluster())
            .app_with("resender", impatient(), |k| writer(k, true))
            .kill_app("resender", 6_000)
            .run(seed)
    };
    let (a, b, c) = (run(11), run(11), run(12));
    assert_eq!(a.run.trace_hash, b.run.trace_hash);
    assert_eq!(a.verdict_line(), b.verdict_line());
    assert_ne!(a.run.trace_hash, c.run.trace_hash);
}

// Shows a fault naming an application the simulation does not have fails the run with
// a clear reason instead of being ignored.
#[test]
fn unknown_app_in_a_fault_is_reported() {
    let outcome = Simulation::new(cluster()).app("writer", |k| writer(k, false)).kill_app("writr", 1_000).run(1);
    assert!(!outcome.pass);
    assert!(outcome.failures.iter().any(|f| f.contains("`writr`")), "{:?}", outcome.failures);
}

// Shows the README's example ("Test your own application code") as written there: the
// resending loop, killed and restarted mid-work, duplicates records at seed 3.
#[test]
fn my_retry_loop_duplicates_records() {
    let scenario = Scenario::load(std::path::Path::new("../scenarios/app-cluster.toml")).unwrap();
    let client = ProducerConfig {
        retries: 0,
        request_timeout_ms: 1_000,
        delivery_timeout_ms: 2_000,
        enable_idempotence: false,
        ..ProducerConfig::default()
    };
    let outcome = Simulation::new(scenario)
        .app_with("resender", client, |kafka| writer(kafka, true))
        .kill_app("resender", 6_000)
        .restart_app("resender", 8_000)
        .run(3);
    println!("{}", outcome.verdict_line());
    assert!(outcome.verdicts.result(Property::NoDuplicates).violations > 0);
}

// Shows the producer loop of issue 4 with the retries left to the client: without
// idempotence a retry after a lost response writes the record twice; with it (KIP-98:
// producer id, sequence numbers, the broker's five-batch cache) the broker answers the
// retry with the first append's offset and every record is written once.
#[test]
fn client_retries_duplicate_without_idempotence_and_not_with_it() {
    let off = Simulation::new(cluster()).app_with("writer", patient(false), |k| writer(k, false)).run(3);
    assert!(off.verdicts.result(Property::NoDuplicates).violations > 0, "{}", off.verdict_line());
    let on = Simulation::new(cluster()).app_with("writer", patient(true), |k| writer(k, false)).run(3);
    assert!(on.pass, "{}", on.verdict_line());
    assert!(on.verdicts.result(Property::NoDuplicates).held(), "{}", on.verdict_line());
    assert!(on.verdicts.result(Property::NoReordering).held(), "{}", on.verdict_line());
    assert!(on.verdicts.counts.acked > 300, "{:?}", on.verdicts.counts);
}

// Shows what idempotence does not cover (Kafka's docs: it dedupes the producer's own
// retries within a session): an application that resends a record it gave up on sends a
// new record, and the broker writes both.
#[test]
fn own_resends_duplicate_even_with_idempotence() {
    let client = ProducerConfig { request_timeout_ms: 1_000, delivery_timeout_ms: 2_000, ..ProducerConfig::default() };
    assert!(client.enable_idempotence, "Kafka 3.x's default");
    let outcome = Simulation::new(cluster()).app_with("resender", client, |k| writer(k, true)).run(3);
    assert!(outcome.verdicts.result(Property::NoDuplicates).violations > 0, "{}", outcome.verdict_line());
}

// Shows a producer configuration Kafka refuses (enable.idempotence with retries = 0,
// ProducerConfig.postProcessAndValidateIdempotenceConfigs) fails the run with the reason.
#[test]
fn a_refused_producer_configuration_is_reported() {
    let client = ProducerConfig { retries: 0, ..ProducerConfig::default() };
    let outcome = Simulation::new(cluster()).app_with("bad", client, |k| writer(k, false)).run(1);
    assert!(!outcome.pass);
    assert!(outcome.failures.iter().any(|f| f.contains("retries > 0")), "{:?}", outcome.failures);
}
