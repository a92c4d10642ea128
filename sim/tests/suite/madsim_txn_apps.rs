//! Your own exactly-once code on the madsim host (issue 6 on the application API): an
//! application with a consumer in a group and a transactional producer copies `orders`
//! to `shipments`, each poll one transaction, and the transaction and end-to-end
//! checkers judge it. Built and run only with `--cfg madsim`.

use std::collections::BTreeMap;
use std::path::Path;
use trial_model::{TopicId, TopicPartition};
use trial_sim::madsim::app::{Kafka, KafkaError, ProducerRecord, Simulation};
use trial_sim::txns::{check_txns, PipelineCounts, PipelineTopics, TxnProperty};
use trial_sim::{Outcome, Scenario};

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Where the copier commits its input offsets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Offsets {
    /// In each transaction (`sendOffsetsToTransaction`): exactly-once.
    InTransaction,
    /// With `commitSync()` after every 10th transaction, outside them.
    Outside,
}

/// Idle polls (100 ms each) after the safety phase before the copier stops.
const DRAIN_POLLS: u32 = 50;

async fn copier(kafka: Kafka, offsets: Offsets) {
    let consumer = kafka.consumer();
    let producer = kafka.transactional_producer();
    if consumer.subscribe(&["orders"]).await.is_err() {
        return;
    }
    let (mut idle, mut transactions) = (0, 0u64);
    while idle < DRAIN_POLLS {
        let Ok(records) = consumer.poll(100).await else { return };
        if records.is_empty() {
            if !kafka.running() {
                idle += 1;
            }
            continue;
        }
        idle = 0;
        let copies: Vec<ProducerRecord> = records
            .iter()
            .map(|r| {
                let copy = ProducerRecord::new("shipments").copy_of(r);
                match r.key {
                    Some(key) => copy.key(key),
                    None => copy,
                }
            })
            .collect();
        let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for record in &records {
            let entry = next.entry(record.tp).or_default();
            *entry = (*entry).max(record.offset + 1);
        }
        let positions: Vec<(TopicPartition, u64)> = next.into_iter().collect();
        let in_txn = (offsets == Offsets::InTransaction).then_some(&positions[..]);
        if producer.commit(&copies, in_txn).await.is_err() {
            // Not committed (or not known to be): read the input again from the
            // group's committed offsets, as the Java pattern does.
            let _ = consumer.seek_to_committed().await;
            continue;
        }
        transactions += 1;
        if offsets == Offsets::Outside && transactions.is_multiple_of(10) {
            let _ = consumer.commit_sync_offsets(&positions.iter().map(|(tp, o)| (*tp, *o)).collect::<Vec<_>>()).await;
        }
    }
}

fn topic(scenario: &Scenario, name: &str) -> TopicId {
    TopicId(scenario.topics.iter().position(|t| t.name == name).expect("declared") as u32)
}

/// The end-to-end verdict: every `orders` record in `shipments` once.
fn end_to_end(scenario: &Scenario, outcome: &Outcome) -> (bool, PipelineCounts) {
    let topics = PipelineTopics { input: topic(scenario, "orders"), output: topic(scenario, "shipments") };
    let verdicts = check_txns(&outcome.run.history, &[topics.output], &outcome.run.groups, Some(topics));
    let counts = verdicts.counts.pipeline.expect("pipeline counts");
    (verdicts.result(TxnProperty::PipelineExactlyOnce).held(), counts)
}

/// One copier, killed at 8 s (it is mostly inside a transaction) and back at 9 s,
/// judged end to end.
fn crashing(offsets: Offsets) -> Simulation {
    Simulation::new(load("app-transactions"))
        .txn_consumer_app("copier", "copier", move |kafka| copier(kafka, offsets))
        .kill_app("copier", 8_003)
        .restart_app("copier", 9_000)
        .expect_exactly_once("orders", "shipments")
}

// Shows user code that commits its input offsets inside each transaction (KIP-98's
// sendOffsetsToTransaction with KIP-447's group metadata) copies every record exactly
// once through a crash: the restarted instance's InitProducerId aborts what the old one
// left open, and its consumer starts from the offsets the last committed transaction
// stored. The transaction checkers hold too.
#[test]
fn offsets_in_the_transaction_copy_exactly_once_through_a_crash() {
    let scenario = load("app-transactions");
    for seed in 0..3 {
        let outcome = crashing(Offsets::InTransaction).run(seed);
        assert!(outcome.pass, "{}", outcome.verdict_line());
        let (held, counts) = end_to_end(&scenario, &outcome);
        assert!(held, "seed {seed}: {counts:?}");
        assert!(counts.input > 3_000 && counts.once == counts.input, "seed {seed}: {counts:?}");
        let txns = outcome.txns.as_ref().expect("transaction verdicts");
        assert!(txns.counts.committed > 50, "seed {seed}: {:?}", txns.counts);
    }
}

// Shows the contrast: the same copier committing its offsets outside the transactions
// (every 10th, with commitSync) copies records twice after the crash — the restarted
// instance re-reads from an older offset what committed transactions already copied,
// which is what Kafka's exactly-once design (KIP-98) puts the offsets in the transaction
// to prevent. The end-to-end checker fires.
#[test]
fn offsets_outside_the_transaction_duplicate_after_a_crash() {
    let scenario = load("app-transactions");
    let outcome = crashing(Offsets::Outside).run(0);
    let (held, counts) = end_to_end(&scenario, &outcome);
    assert!(!held && counts.duplicated > 0, "{counts:?}");
    assert!(!outcome.pass);
    let line = outcome.verdict_line();
    assert!(line.contains("pipeline-exactly-once") && line.contains(".run(0)"), "{line}");
}

// Shows the refusals a user gets instead of a hang or a panic: a transactional app in a
// scenario without [transactions] fails the run with the reason, so does an end-to-end
// claim on a topic the scenario lacks, and an empty transaction is refused with its
// reason.
#[test]
fn bad_transactional_apps_are_refused_with_a_reason() {
    let outcome = Simulation::new(load("app-consumers")).txn_app("copier", |kafka| async move { drop(kafka) }).run(0);
    assert!(!outcome.pass);
    assert!(outcome.failures.iter().any(|f| f.contains("[transactions]")), "{:?}", outcome.failures);
    let outcome = Simulation::new(load("app-transactions")).expect_exactly_once("orders", "invoices").run(0);
    assert!(outcome.failures.iter().any(|f| f.contains("invoices")), "{:?}", outcome.failures);
    let refused = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = refused.clone();
    let outcome = Simulation::new(load("app-transactions"))
        .txn_app("empty", move |kafka| {
            let seen = seen.clone();
            async move {
                let result = kafka.transactional_producer().commit(&[], None).await;
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            }
        })
        .run(0);
    assert!(outcome.pass, "{}", outcome.verdict_line());
    let result = refused.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(matches!(result, Some(Err(KafkaError::TransactionRefused(_)))), "{result:?}");
}
