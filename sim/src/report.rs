//! Reports of a run: readable text, and one JSON object for tools. Both end with the
//! verdict, the seed and the command that replays it.

use crate::checkers::{check, Property, Verdicts};
use crate::engine::{RunOutput, Stop};
use crate::groups::{check_groups, GroupVerdicts};
use crate::history::Happening;
use crate::scenario::Scenario;
use crate::txns::{check_txns, PipelineTopics, TxnVerdicts};
use serde_json::json;
use std::fmt::Write as _;
use trial_model::{ClusterEvent, Truncation};

/// Adds a failure line for every property of `hold` with violations and every one of
/// `violate` without: (name, violations) pairs, lines prefixed with `prefix`.
fn judge<'a>(
    failures: &mut Vec<String>,
    prefix: &str,
    hold: impl IntoIterator<Item = (&'a str, u64)>,
    violate: impl IntoIterator<Item = (&'a str, u64)>,
) {
    for (name, violations) in hold {
        if violations > 0 {
            failures.push(format!("{prefix}{name} was expected to hold but has {violations} violation(s)"));
        }
    }
    for (name, violations) in violate {
        if violations == 0 {
            failures.push(format!("{prefix}{name} was expected to be violated but held"));
        }
    }
}

/// Cluster events shown in a text report before it refers to `--trace`.
pub const REPORT_EVENTS_MAX: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    Hold,
    Violate,
    Free,
}

pub struct Outcome {
    pub scenario_name: String,
    pub seed: u64,
    pub run: RunOutput,
    pub verdicts: Verdicts,
    /// One per consumer group, in declaration order.
    pub groups: Vec<GroupVerdicts>,
    /// The transaction checkers' verdicts, when the scenario has transactions.
    pub txns: Option<TxnVerdicts>,
    /// Whether every expectation of the scenario was met.
    pub pass: bool,
    /// Why it failed, one line each.
    pub failures: Vec<String>,
    pub replay: String,
}

impl Outcome {
    pub fn new(scenario: &Scenario, seed: u64, run: RunOutput) -> Outcome {
        let verdicts = check(&run.history);
        let mut failures = Vec::new();
        let e = &scenario.expect;
        judge(
            &mut failures,
            "",
            e.hold.iter().map(|p| (p.name(), verdicts.result(*p).violations)),
            e.violate.iter().map(|p| (p.name(), verdicts.result(*p).violations)),
        );
        if run.stop == Stop::EventLimit {
            failures.push("the run hit the event limit (a livelock?)".into());
        }
        let groups = check_groups(&run.groups, &run.history);
        for group in &groups {
            judge(
                &mut failures,
                &format!("group {}: ", group.group),
                e.group_hold.iter().map(|p| (p.name(), group.result(*p).violations)),
                e.group_violate.iter().map(|p| (p.name(), group.result(*p).violations)),
            );
        }
        let txns = scenario.transactions.as_ref().map(|spec| {
            let pipeline = scenario.pipeline.as_ref().map(|p| PipelineTopics { input: p.input.1, output: p.output });
            let pipeline = pipeline.or(scenario.end_to_end.map(|(input, output)| PipelineTopics { input, output }));
            let mut topics = vec![spec.topic];
            topics.extend(pipeline.map(|p| p.output).filter(|t| *t != spec.topic));
            let mut verdicts = check_txns(&run.history, &topics, &run.groups, pipeline);
            if let (Some(counts), Some(group)) = (verdicts.counts.pipeline.as_mut(), &run.pipeline_group) {
                counts.rebalances = Some(crate::groups::rebalance_figures(group));
            }
            verdicts
        });
        if let Some(verdicts) = &txns {
            judge(
                &mut failures,
                "",
                e.txn_hold.iter().map(|p| (p.name(), verdicts.result(*p).violations)),
                e.txn_violate.iter().map(|p| (p.name(), verdicts.result(*p).violations)),
            );
        }
        Outcome {
            scenario_name: scenario.name.clone(),
            seed,
            pass: failures.is_empty(),
            failures,
            replay: scenario.replay_command(seed),
            run,
            verdicts,
            groups,
            txns,
        }
    }

    pub fn expectation(scenario: &Scenario, property: Property) -> Expectation {
        if scenario.expect.hold.contains(&property) {
            Expectation::Hold
        } else if scenario.expect.violate.contains(&property) {
            Expectation::Violate
        } else {
            Expectation::Free
        }
    }

    pub fn verdict(&self) -> &'static str {
        if self.pass {
            "pass"
        } else {
            "fail"
        }
    }

    /// The last line of every report.
    pub fn verdict_line(&self) -> String {
        let head = if self.pass { "PASS" } else { "FAIL" };
        let why = if self.pass { "expectations held".to_string() } else { self.failures.join("; ") };
        format!("{head} scenario={} seed={} ({why}) · replay: {}", self.scenario_name, self.seed, self.replay)
    }

    pub fn text(&self, scenario: &Scenario) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "kafka-trial · scenario {} · seed {}", scenario.name, self.seed);
        for line in scenario.description.lines() {
            let _ = writeln!(out, "  {line}");
        }
        describe_setup(&mut out, scenario);
        let stats = &self.run.stats;
        let _ = writeln!(
            out,
            "  simulated {} ms ({} ms safety + liveness), {} events, {} messages, trace hash {:016x}",
            stats.sim_time_ms, scenario.duration_ms, stats.events, stats.messages, self.run.trace_hash
        );
        let _ = writeln!(out);
        self.describe_events(&mut out);
        let _ = writeln!(out);
        describe_final(&mut out, &self.run.history);
        let c = &self.verdicts.counts;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "writes: produced {} · acked {} · failed {} · indefinite {} · pending {}",
            c.produced, c.acked, c.failed, c.indefinite, c.pending
        );
        let _ = writeln!(
            out,
            "lost acked {} · duplicates {} · observed semantics: {}",
            c.lost_acked,
            c.duplicates,
            self.verdicts.semantics.name()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "properties:");
        for result in &self.verdicts.results {
            let expectation = match Outcome::expectation(scenario, result.property) {
                Expectation::Hold => "expected to hold",
                Expectation::Violate => "expected to be violated",
                Expectation::Free => "not constrained",
            };
            let status = if result.held() { "held    " } else { "VIOLATED" };
            let _ = writeln!(
                out,
                "  {status} {:<32} {:>8} violation(s)   {expectation}",
                result.property.name(),
                result.violations
            );
            for example in &result.examples {
                let _ = writeln!(out, "             {example}");
            }
        }
        if let Some(txns) = &self.txns {
            let _ = writeln!(out);
            let _ = write!(out, "{}", txns.text());
        }
        for (index, group) in self.groups.iter().enumerate() {
            let _ = writeln!(out);
            let _ = write!(out, "{}", group.text());
            if let Some(series) = self.run.lag.get(index) {
                describe_lag(&mut out, series);
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.verdict_line());
        out
    }

    fn describe_events(&self, out: &mut String) {
        let shown: Vec<String> = self.run.history.happenings.iter().filter_map(|(at, h)| describe(at.0, h)).collect();
        let _ = writeln!(out, "cluster events ({}):", shown.len());
        for line in shown.iter().take(REPORT_EVENTS_MAX) {
            let _ = writeln!(out, "  {line}");
        }
        if shown.len() > REPORT_EVENTS_MAX {
            let _ = writeln!(out, "  … {} more (write them all with --trace FILE)", shown.len() - REPORT_EVENTS_MAX);
        }
    }

    pub fn json(&self, scenario: &Scenario) -> serde_json::Value {
        let properties: serde_json::Map<String, serde_json::Value> = self
            .verdicts
            .results
            .iter()
            .map(|r| {
                let expected = match Outcome::expectation(scenario, r.property) {
                    Expectation::Hold => "hold",
                    Expectation::Violate => "violate",
                    Expectation::Free => "free",
                };
                (
                    r.property.name().to_string(),
                    json!({"held": r.held(), "violations": r.violations, "expected": expected, "examples": r.examples}),
                )
            })
            .collect();
        let c = &self.verdicts.counts;
        json!({
            "scenario": scenario.name,
            "seed": self.seed,
            "verdict": self.verdict(),
            "failures": self.failures,
            "trace_hash": format!("{:016x}", self.run.trace_hash),
            "properties": properties,
            "semantics": self.verdicts.semantics.name(),
            "produced": c.produced,
            "acked": c.acked,
            "failed": c.failed,
            "indefinite": c.indefinite,
            "pending": c.pending,
            "lost_acked": c.lost_acked,
            "duplicates": c.duplicates,
            "sim_time_ms": self.run.stats.sim_time_ms,
            "events": self.run.stats.events,
            "messages": self.run.stats.messages,
            "groups": self.groups.iter().map(group_json).collect::<Vec<_>>(),
            "transactions": self.txns,
            "lag": self.run.lag,
            "replay": self.replay,
        })
    }
}

/// Rows of the lag table in a text report (the JSON report has every sample).
const LAG_ROWS_MAX: usize = 16;
/// Partitions shown one by one in the lag table.
const LAG_COLUMNS_MAX: usize = 12;

fn describe_lag(out: &mut String, series: &crate::engine::groups::LagSeries) {
    if series.samples.is_empty() {
        return;
    }
    let shown = series.partitions.len().min(LAG_COLUMNS_MAX);
    let names: Vec<String> = series.partitions.iter().take(shown).map(|tp| format!("{:>7}", tp.to_string())).collect();
    let _ = writeln!(
        out,
        "  lag over time (records behind the committed offset, sampled every {} ms; worst lag in seconds):",
        crate::engine::groups::LAG_SAMPLE_MS
    );
    let _ = writeln!(out, "    {:>9} {:>8} {:>8} {}", "t", "total", "seconds", names.join(""));
    let step = series.samples.len().div_ceil(LAG_ROWS_MAX).max(1);
    let mut rows: Vec<usize> = (0..series.samples.len()).step_by(step).collect();
    if rows.last() != Some(&(series.samples.len() - 1)) {
        rows.push(series.samples.len() - 1);
    }
    for row in rows {
        let (at, lags, seconds) = &series.samples[row];
        let total: u64 = lags.iter().sum();
        let seconds = seconds.map_or("-".to_string(), |s| format!("{s:.1}"));
        let cells: Vec<String> = lags.iter().take(shown).map(|l| format!("{l:>7}")).collect();
        let _ = writeln!(out, "    {:>7}ms {total:>8} {seconds:>8} {}", at.0, cells.join(""));
    }
}

fn group_json(group: &GroupVerdicts) -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = group
        .results
        .iter()
        .map(|r| {
            let value =
                json!({"held": r.held(), "checked": r.checked, "violations": r.violations, "examples": r.examples});
            (r.property.name().to_string(), value)
        })
        .collect();
    let f = &group.rebalances;
    json!({
        "group": group.group,
        "protocol": group.protocol.name(),
        "semantics": group.semantics.name(),
        "expected": group.counts.expected,
        "processed": group.counts.processed,
        "lost": group.counts.lost,
        "duplicates": group.counts.duplicates,
        "properties": properties,
        "rebalances": {
            "count": f.rebalances,
            "stabilized": f.stabilized,
            "trigger_to_stable_ms_mean": f.trigger_to_stable_ms_mean,
            "trigger_to_stable_ms_max": f.trigger_to_stable_ms_max,
            "unowned_partition_ms": f.unowned_partition_ms,
            "unowned_ms_max": f.unowned_ms_max,
        },
    })
}

fn describe_setup(out: &mut String, scenario: &Scenario) {
    let protocol = &scenario.broker.protocol;
    let truncation = match protocol.truncation {
        Truncation::LeaderEpoch => "leader-epoch truncation (KIP-101)",
        Truncation::HighWatermark => "high-watermark truncation (pre-KIP-101)",
    };
    let elr = if protocol.eligible_leader_replicas { "ELR on (KIP-966)" } else { "ELR off" };
    let mut flush = match (scenario.broker.flush_messages, scenario.broker.flush_ms) {
        (None, None) => "no fsync (Kafka default)".to_string(),
        (m, ms) => format!(
            "flush every {} messages / {} ms",
            m.map_or("-".into(), |v| v.to_string()),
            ms.map_or("-".into(), |v| v.to_string())
        ),
    };
    match scenario.broker.os_dirty_expire_ms {
        Some(ms) => flush.push_str(&format!(
            ", OS writeback of logs dirty {} s (checked every {} s)",
            ms / 1_000,
            scenario.broker.os_writeback_interval_ms / 1_000
        )),
        None => flush.push_str(", no OS writeback"),
    }
    let _ = writeln!(out, "  {} brokers · {truncation} · {elr} · {flush}", scenario.brokers);
    for topic in &scenario.topics {
        let election = if topic.unclean_leader_election { "unclean election on" } else { "clean election" };
        let _ = writeln!(
            out,
            "  topic {}: {} partition(s), RF {}, min.insync.replicas {}, {election}",
            topic.name, topic.partitions, topic.replication_factor, topic.min_insync_replicas
        );
    }
    for producer in &scenario.producers {
        let keys = if producer.keys == 0 { "null keys".to_string() } else { format!("{} keys", producer.keys) };
        let _ = writeln!(
            out,
            "  producer {}: acks={} retries={} max.in.flight={} linger.ms={} enable.idempotence={} · {}/s · {keys}",
            producer.name,
            producer.config.acks.name(),
            producer.config.retries,
            producer.config.max_in_flight_requests_per_connection,
            producer.config.linger_ms,
            producer.config.enable_idempotence,
            producer.rate
        );
    }
    for group in &scenario.groups {
        let topics: Vec<&str> = group.topics.iter().map(|(name, _)| name.as_str()).collect();
        let assignors: Vec<&str> = group.config.member.assignors.iter().map(|a| a.name()).collect();
        let commit = match group.config.commit {
            trial_model::CommitMode::Auto { interval_ms } => format!("auto-commit every {interval_ms} ms (background)"),
            trial_model::CommitMode::AutoInPoll { interval_ms } => {
                format!("auto-commit every {interval_ms} ms (in poll)")
            }
            trial_model::CommitMode::SyncAfter => "commitSync after processing".into(),
            trial_model::CommitMode::SyncBefore => "commitSync before processing".into(),
            trial_model::CommitMode::AsyncAfter => "commitAsync after processing".into(),
            trial_model::CommitMode::Manual => "the application's own code commits".into(),
        };
        let membership = if group.static_membership { " · static membership" } else { "" };
        let _ = writeln!(
            out,
            "  group {}: {} consumer(s) on {} · {commit} · max.poll.records={} · {} ms/record · session {} ms · {}{membership}",
            group.name,
            group.consumers,
            topics.join(","),
            group.config.max_poll_records,
            group.config.processing_ms,
            group.config.member.session_timeout_ms,
            assignors.join(",")
        );
    }
}

/// Shown partitions in the final-state table before it is cut.
const REPORT_PARTITIONS_MAX: usize = 24;

fn describe_final(out: &mut String, history: &crate::history::History) {
    let _ = writeln!(out, "final state (log end / high watermark per replica):");
    for partition in history.partitions.iter().take(REPORT_PARTITIONS_MAX) {
        let leader = partition.leader.map_or("none".to_string(), |l| format!("broker {l}"));
        let elr = if partition.elr.is_empty() { String::new() } else { format!(" elr {}", list(&partition.elr)) };
        let replicas: Vec<String> =
            partition.replicas.iter().map(|r| format!("{}:{}/{}", r.broker, r.log.len(), r.high_watermark)).collect();
        let _ = writeln!(
            out,
            "  {} leader {leader} epoch {} isr {}{elr} · {}",
            partition.tp,
            partition.leader_epoch,
            list(&partition.isr),
            replicas.join(" ")
        );
    }
    if history.partitions.len() > REPORT_PARTITIONS_MAX {
        let _ = writeln!(out, "  … {} more partitions", history.partitions.len() - REPORT_PARTITIONS_MAX);
    }
}

fn list(nodes: &[trial_model::NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| n.0.to_string()).collect();
    format!("[{}]", names.join(","))
}

fn describe(at: u64, happening: &Happening) -> Option<String> {
    let text = match happening {
        Happening::Fault { fault, .. } => format!("fault      {fault}"),
        Happening::Phase { phase } => format!("phase      {phase}"),
        Happening::Invariant { property, detail } => format!("INVARIANT  {property}: {detail}"),
        Happening::Cluster { event } => match event {
            ClusterEvent::PartitionChange { tp, leader, leader_epoch, isr, elr, unclean, .. } => {
                let leader = leader.map_or("none".to_string(), |l| format!("broker {l}"));
                let elr = if elr.is_empty() { String::new() } else { format!(" elr {}", list(elr)) };
                let unclean = if *unclean { " UNCLEAN ELECTION" } else { "" };
                format!("partition  {tp} leader {leader} epoch {} isr {}{elr}{unclean}", leader_epoch.0, list(isr))
            }
            ClusterEvent::BrokerFenced { broker } => format!("controller fenced broker {broker}"),
            ClusterEvent::BrokerUnfenced { broker, .. } => {
                format!("controller unfenced broker {broker}")
            }
            ClusterEvent::BrokerRegistered { broker, broker_epoch, clean_shutdown } => {
                let how = if *clean_shutdown { "clean" } else { "unclean" };
                format!("controller registered broker {broker} (epoch {}, {how} shutdown before)", broker_epoch.0)
            }
            ClusterEvent::ControlledShutdown { broker } => {
                format!("controller took broker {broker} into controlled shutdown")
            }
            ClusterEvent::BrokerStopped { broker, granted } => {
                let how = if *granted { "done" } else { "timed out waiting for the controller" };
                format!("stopped    broker {broker} after a clean shutdown (controlled shutdown {how})")
            }
            ClusterEvent::Truncated { broker, tp, from, to, reason } => {
                format!("truncate   broker {broker} {tp} {from} -> {to} ({reason:?})")
            }
            ClusterEvent::BecameLeader { .. }
            | ClusterEvent::BecameFollower { .. }
            | ClusterEvent::HighWatermark { .. }
            | ClusterEvent::IsrChangeRequested { .. } => return None,
        },
    };
    Some(format!("t={at:>7}ms  {text}"))
}
