//! The scenario file format (raw TOML structs) and its validation into a [`Scenario`].

use super::*;
use crate::faults::{Fault, Target};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    duration_ms: Spanned<u64>,
    liveness_ms: Option<Spanned<u64>>,
    cluster: Spanned<RawCluster>,
    #[serde(default)]
    protocol: RawProtocol,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    topics: Vec<Spanned<RawTopic>>,
    #[serde(default)]
    producers: Vec<Spanned<RawProducer>>,
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
    transactions: Option<Spanned<RawTransactions>>,
    pipeline: Option<Spanned<RawPipeline>>,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    nemesis: Option<Spanned<RawNemesis>>,
    expect: Option<RawExpect>,
    /// A grid of settings for `kafka-trial matrix`, parsed by [`super::matrix`].
    #[allow(dead_code)]
    matrix: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    brokers: Spanned<u32>,
    replica_lag_time_max_ms: Option<u64>,
    replica_fetch_wait_max_ms: Option<u64>,
    replica_socket_timeout_ms: Option<u64>,
    broker_heartbeat_interval_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    controlled_shutdown_timeout_ms: Option<u64>,
    flush_messages: Option<Spanned<u64>>,
    flush_ms: Option<Spanned<u64>>,
    replica_high_watermark_checkpoint_interval_ms: Option<u64>,
    /// 0 turns OS writeback off.
    os_dirty_expire_ms: Option<u64>,
    os_writeback_interval_ms: Option<u64>,
    offsets_partitions: Option<Spanned<u32>>,
    offsets_replication_factor: Option<Spanned<u32>>,
    offsets_min_insync_replicas: Option<Spanned<u32>>,
    group_initial_rebalance_delay_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    truncation: Option<Truncation>,
    eligible_leader_replicas: Option<bool>,
    registration: Option<trial_model::Registration>,
    /// Commits fenced by generation and member id (on in Kafka).
    commit_fencing: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency_ms: Option<Spanned<(u64, u64)>>,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    partitions: Spanned<u32>,
    replication_factor: Spanned<u32>,
    min_insync_replicas: Option<Spanned<u32>>,
    unclean_leader_election: Option<bool>,
    replica_assignment: Option<Spanned<Vec<Vec<u32>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProducer {
    name: Option<String>,
    topic: Spanned<String>,
    rate: Spanned<f64>,
    keys: Option<u32>,
    acks: Option<Spanned<String>>,
    retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    request_timeout_ms: Option<Spanned<u64>>,
    delivery_timeout_ms: Option<Spanned<u64>>,
    max_in_flight: Option<Spanned<u32>>,
    linger_ms: Option<u64>,
    batch_size: Option<Spanned<u64>>,
    record_bytes: Option<Spanned<u64>>,
    null_key_partitioner: Option<NullKeyPartitioner>,
    enable_idempotence: Option<Spanned<bool>>,
    count: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    topics: Spanned<Vec<String>>,
    consumers: Spanned<u32>,
    commit: Option<Spanned<String>>,
    auto_commit_interval_ms: Option<Spanned<u64>>,
    max_poll_records: Option<Spanned<u32>>,
    processing_ms: Option<u64>,
    auto_offset_reset: Option<trial_model::OffsetReset>,
    assignors: Option<Spanned<Vec<String>>>,
    session_timeout_ms: Option<Spanned<u64>>,
    heartbeat_interval_ms: Option<Spanned<u64>>,
    max_poll_interval_ms: Option<Spanned<u64>>,
    static_membership: Option<bool>,
    isolation_level: Option<trial_model::IsolationLevel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransactions {
    /// 0: none of its own — only a `[pipeline]` or applications (the madsim host) run
    /// transactions.
    producers: Spanned<u32>,
    /// The topic the producers write and the checkers judge (with none, the pipeline's
    /// output).
    topic: Option<Spanned<String>>,
    records_per_txn: Option<Spanned<u32>>,
    abort_ratio: Option<Spanned<f64>>,
    interval_ms: Option<Spanned<u64>>,
    transaction_timeout_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    delivery_timeout_ms: Option<Spanned<u64>>,
    /// KIP-890 part 2 (transaction version 2): EndTxn bumps the epoch. On, as in Kafka 4.0.
    kip890: Option<bool>,
    /// KIP-1228 (WriteTxnMarkers carries the transaction version, so a leader refuses a
    /// late version-2 marker): on, as in Kafka 4.2.
    kip1228: Option<bool>,
    /// KIP-890 part 1 (`transaction.partition.verification.enable`): on, as since Kafka 3.6.
    partition_verification: Option<bool>,
    state_partitions: Option<Spanned<u32>>,
    state_replication_factor: Option<Spanned<u32>>,
    state_min_insync_replicas: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    apps: Option<Spanned<u32>>,
    input: Spanned<String>,
    output: Spanned<String>,
    group: Option<Spanned<String>>,
    poll_interval_ms: Option<Spanned<u64>>,
    max_poll_records: Option<Spanned<u32>>,
    session_timeout_ms: Option<Spanned<u64>>,
    heartbeat_interval_ms: Option<Spanned<u64>>,
    max_poll_interval_ms: Option<Spanned<u64>>,
    transaction_timeout_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_ms: Spanned<u64>,
    kind: Spanned<String>,
    target: Option<Spanned<String>>,
    groups: Option<Spanned<Vec<Vec<String>>>>,
    from: Option<Spanned<Vec<String>>>,
    to: Option<Spanned<Vec<String>>>,
    probability: Option<Spanned<f64>>,
    message: Option<Spanned<String>>,
    latency_ms: Option<Spanned<(u64, u64)>>,
    offset_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNemesis {
    interval_ms: Spanned<(u64, u64)>,
    fault_duration_ms: Option<Spanned<(u64, u64)>>,
    kinds: Spanned<Vec<String>>,
    swarm: Option<bool>,
    max_down: Option<Spanned<u32>>,
    controller: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    hold: Option<Spanned<Vec<String>>>,
    violate: Option<Spanned<Vec<String>>>,
}

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    /// Transactional producers of the scenario, once known (for fault targets).
    pub(super) txn_producers: std::cell::Cell<usize>,
    /// Processes of the scenario's `[pipeline]`, once known (for fault targets).
    pub(super) pipeline_apps: std::cell::Cell<usize>,
}

impl Validator<'_> {
    fn error<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.into(),
            line: Some(line_of(self.text, span.start)),
            key: key.into(),
            message: message.into(),
        })
    }

    pub(super) fn scenario(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        let duration_ms = *raw.duration_ms.get_ref();
        if duration_ms == 0 || duration_ms > SIM_TIME_MAX_MS {
            return self.error(
                raw.duration_ms.span(),
                "duration_ms",
                format!("must be between 1 and {SIM_TIME_MAX_MS}"),
            );
        }
        let liveness_ms = match &raw.liveness_ms {
            Some(value) if *value.get_ref() > SIM_TIME_MAX_MS => {
                return self.error(value.span(), "liveness_ms", format!("must be at most {SIM_TIME_MAX_MS}"))
            }
            Some(value) => *value.get_ref(),
            None => 180_000,
        };
        let (brokers, mut broker, mut controller) = self.cluster(&raw.cluster)?;
        let protocol = Protocol {
            truncation: raw.protocol.truncation.unwrap_or_default(),
            eligible_leader_replicas: raw.protocol.eligible_leader_replicas.unwrap_or(false),
            registration: raw.protocol.registration.unwrap_or_default(),
        };
        broker.protocol = protocol;
        controller.protocol = protocol;
        let network = self.network(&raw.network)?;
        let topics = self.topics(&raw.topics, brokers, raw.cluster.span())?;
        let producers = self.producers(&raw.producers, &topics)?;
        let mut topics = topics;
        let groups = self.groups(&raw.groups, &topics)?;
        if !groups.is_empty() || raw.pipeline.is_some() {
            let fencing = raw.protocol.commit_fencing.unwrap_or(true);
            broker.groups = Some(self.offsets_topic(&raw.cluster, brokers, fencing, &mut topics)?);
        }
        let pipeline = match &raw.pipeline {
            Some(p) => Some(self.pipeline(p, raw.transactions.is_some(), &topics)?),
            None => None,
        };
        let transactions = match &raw.transactions {
            Some(t) => {
                let output = pipeline.as_ref().map(|p| p.output);
                Some(self.transactions(t, output, &raw.cluster, brokers, &mut broker, &mut topics)?)
            }
            None => None,
        };
        self.txn_producers.set(transactions.as_ref().map_or(0, |t| t.producers as usize));
        self.pipeline_apps.set(pipeline.as_ref().map_or(0, |p| p.apps as usize));
        let consumers = groups.iter().map(|g| g.consumers as usize).sum::<usize>();
        let faults = self.faults(&raw.faults, brokers, producers.len(), consumers, &topics, duration_ms)?;
        let nemesis = raw.nemesis.as_ref().map(|n| self.nemesis(n, brokers)).transpose()?;
        let mut expect = self.expect(raw.expect.as_ref())?;
        if raw.expect.is_none() && pipeline.is_none() {
            // "Every property holds" means every property this scenario can judge.
            expect.txn_hold.retain(|p| *p != crate::txns::TxnProperty::PipelineExactlyOnce);
        }
        let pipeline_claimed = [&expect.txn_hold, &expect.txn_violate]
            .iter()
            .any(|list| list.contains(&crate::txns::TxnProperty::PipelineExactlyOnce));
        if raw.expect.is_some() && pipeline_claimed && pipeline.is_none() {
            let span =
                raw.expect.as_ref().and_then(|e| e.hold.as_ref().or(e.violate.as_ref())).map_or(0..0, |l| l.span());
            return self.error(span, "expect", "`pipeline-exactly-once` needs a [pipeline] to judge");
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| {
                self.file.rsplit('/').next().unwrap_or(self.file).trim_end_matches(".toml").to_string()
            }),
            path: None,
            description: raw.description.unwrap_or_default().trim().to_string(),
            brokers,
            broker,
            controller,
            topics,
            producers,
            groups,
            transactions,
            pipeline,
            end_to_end: None,
            network,
            duration_ms,
            liveness_ms,
            faults,
            nemesis,
            expect,
        })
    }

    fn cluster(&self, raw: &Spanned<RawCluster>) -> Result<(u32, BrokerConfig, ControllerConfig), ScenarioError> {
        let cluster = raw.get_ref();
        let brokers = *cluster.brokers.get_ref();
        if brokers == 0 || brokers > BROKERS_MAX {
            return self.error(
                cluster.brokers.span(),
                "cluster.brokers",
                format!("must be between 1 and {BROKERS_MAX}"),
            );
        }
        let mut broker = BrokerConfig::default();
        let mut controller = ControllerConfig::default();
        if let Some(v) = cluster.replica_lag_time_max_ms {
            broker.replica_lag_time_max_ms = v.max(1);
        }
        if let Some(v) = cluster.replica_fetch_wait_max_ms {
            broker.replica_fetch_wait_max_ms = v;
        }
        if let Some(v) = cluster.replica_socket_timeout_ms {
            broker.replica_socket_timeout_ms = v.max(1);
        }
        if let Some(v) = cluster.broker_heartbeat_interval_ms {
            broker.broker_heartbeat_interval_ms = v.max(1);
        }
        if let Some(v) = cluster.controlled_shutdown_timeout_ms {
            broker.controlled_shutdown_timeout_ms = v;
        }
        if let Some(v) = cluster.replica_high_watermark_checkpoint_interval_ms {
            broker.hw_checkpoint_interval_ms = v.max(1);
        }
        if let Some(v) = cluster.os_dirty_expire_ms {
            broker.os_dirty_expire_ms = (v > 0).then_some(v);
        }
        if let Some(v) = cluster.os_writeback_interval_ms {
            broker.os_writeback_interval_ms = v.max(1);
        }
        if let Some(v) = cluster.broker_session_timeout_ms {
            controller.broker_session_timeout_ms = v.max(1);
        }
        if let Some(v) = &cluster.flush_messages {
            if *v.get_ref() == 0 {
                return self.error(
                    v.span(),
                    "cluster.flush_messages",
                    "must be at least 1 (leave it out to let the OS flush)",
                );
            }
            broker.flush_messages = Some(*v.get_ref());
        }
        if let Some(v) = &cluster.flush_ms {
            if *v.get_ref() == 0 {
                return self.error(
                    v.span(),
                    "cluster.flush_ms",
                    "must be at least 1 (leave it out to let the OS flush)",
                );
            }
            broker.flush_ms = Some(*v.get_ref());
        }
        if controller.broker_session_timeout_ms <= broker.broker_heartbeat_interval_ms {
            return self.error(
                raw.span(),
                "cluster.broker_session_timeout_ms",
                "must be larger than broker_heartbeat_interval_ms",
            );
        }
        Ok((brokers, broker, controller))
    }

    fn network(&self, raw: &RawNetwork) -> Result<NetworkSpec, ScenarioError> {
        let mut network = NetworkSpec::default();
        if let Some(latency) = &raw.latency_ms {
            network.latency_ms = self.range(latency, "network.latency_ms")?;
        }
        if let Some(loss) = &raw.loss {
            network.loss = self.probability(loss, "network.loss")?;
        }
        if let Some(duplicate) = &raw.duplicate {
            network.duplicate = self.probability(duplicate, "network.duplicate")?;
        }
        Ok(network)
    }

    fn range(&self, value: &Spanned<(u64, u64)>, key: &str) -> Result<(u64, u64), ScenarioError> {
        let (low, high) = *value.get_ref();
        if low > high {
            return self.error(
                value.span(),
                key,
                format!("[{low}, {high}] is empty: the first bound must not exceed the second"),
            );
        }
        if high > SIM_TIME_MAX_MS {
            return self.error(value.span(), key, format!("bounds must be at most {SIM_TIME_MAX_MS}"));
        }
        Ok((low, high))
    }

    fn probability(&self, value: &Spanned<f64>, key: &str) -> Result<f64, ScenarioError> {
        let p = *value.get_ref();
        if !(0.0..=1.0).contains(&p) {
            return self.error(value.span(), key, format!("{p} is not a probability between 0 and 1"));
        }
        Ok(p)
    }

    fn topics(
        &self,
        raw: &[Spanned<RawTopic>],
        brokers: u32,
        cluster_span: std::ops::Range<usize>,
    ) -> Result<Vec<TopicConfig>, ScenarioError> {
        if raw.is_empty() {
            return self.error(cluster_span, "topics", "a scenario needs at least one [[topics]] table");
        }
        let mut topics: Vec<TopicConfig> = Vec::new();
        for spanned in raw {
            let topic = spanned.get_ref();
            if topics.iter().any(|t| t.name == topic.name) {
                return self.error(spanned.span(), "topics.name", format!("topic `{}` is declared twice", topic.name));
            }
            let partitions = *topic.partitions.get_ref();
            if partitions == 0 || partitions > PARTITIONS_MAX {
                return self.error(
                    topic.partitions.span(),
                    "topics.partitions",
                    format!("must be between 1 and {PARTITIONS_MAX}"),
                );
            }
            let rf = *topic.replication_factor.get_ref();
            if rf == 0 || rf > brokers {
                return self.error(
                    topic.replication_factor.span(),
                    "topics.replication_factor",
                    format!("{rf} is impossible with {brokers} broker(s): it must be between 1 and the broker count"),
                );
            }
            let min_isr = match &topic.min_insync_replicas {
                Some(v) if *v.get_ref() == 0 || *v.get_ref() > rf => {
                    return self.error(
                        v.span(),
                        "topics.min_insync_replicas",
                        format!("must be between 1 and replication_factor ({rf})"),
                    )
                }
                Some(v) => *v.get_ref(),
                None => 1,
            };
            let replica_assignment = match &topic.replica_assignment {
                Some(assignment) => Some(self.assignment(assignment, partitions, rf, brokers)?),
                None => None,
            };
            topics.push(TopicConfig {
                name: topic.name.clone(),
                partitions,
                replication_factor: rf,
                min_insync_replicas: min_isr,
                unclean_leader_election: topic.unclean_leader_election.unwrap_or(false),
                replica_assignment,
            });
        }
        Ok(topics)
    }

    fn assignment(
        &self,
        raw: &Spanned<Vec<Vec<u32>>>,
        partitions: u32,
        rf: u32,
        brokers: u32,
    ) -> Result<Vec<Vec<trial_model::NodeId>>, ScenarioError> {
        let key = "topics.replica_assignment";
        let lists = raw.get_ref();
        if lists.len() != partitions as usize {
            return self.error(
                raw.span(),
                key,
                format!("lists {} partition(s) but the topic has {partitions}", lists.len()),
            );
        }
        let mut out = Vec::new();
        for (partition, replicas) in lists.iter().enumerate() {
            if replicas.len() != rf as usize {
                return self.error(
                    raw.span(),
                    key,
                    format!("partition {partition} has {} replica(s), replication_factor is {rf}", replicas.len()),
                );
            }
            if let Some(bad) = replicas.iter().find(|b| **b >= brokers) {
                return self.error(
                    raw.span(),
                    key,
                    format!("partition {partition} names broker {bad}; the cluster has brokers 0..{}", brokers - 1),
                );
            }
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != replicas.len() {
                return self.error(raw.span(), key, format!("partition {partition} names a broker twice"));
            }
            out.push(replicas.iter().map(|b| trial_model::NodeId(*b)).collect());
        }
        Ok(out)
    }

    fn producers(
        &self,
        raw: &[Spanned<RawProducer>],
        topics: &[TopicConfig],
    ) -> Result<Vec<ProducerSpec>, ScenarioError> {
        let mut producers = Vec::new();
        for spanned in raw {
            let p = spanned.get_ref();
            let Some(topic) = topics.iter().position(|t| t.name == *p.topic.get_ref()) else {
                return self.error(
                    p.topic.span(),
                    "producers.topic",
                    format!("no topic named `{}` is declared", p.topic.get_ref()),
                );
            };
            let rate = *p.rate.get_ref();
            if !(rate > 0.0 && rate <= RATE_MAX) {
                return self.error(
                    p.rate.span(),
                    "producers.rate",
                    format!("records per second must be above 0 and at most {RATE_MAX}"),
                );
            }
            let mut config = ProducerConfig::default();
            if let Some(acks) = &p.acks {
                config.acks = match acks.get_ref().as_str() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    other => {
                        return self.error(
                            acks.span(),
                            "producers.acks",
                            format!("`{other}` is not one of \"0\", \"1\", \"all\""),
                        )
                    }
                };
            }
            if let Some(v) = p.retries {
                config.retries = v;
            }
            if let Some(v) = p.retry_backoff_ms {
                config.retry_backoff_ms = v;
            }
            if let Some(v) = &p.request_timeout_ms {
                config.request_timeout_ms = self.positive(v, "producers.request_timeout_ms")?;
            }
            if let Some(v) = &p.delivery_timeout_ms {
                config.delivery_timeout_ms = self.positive(v, "producers.delivery_timeout_ms")?;
            }
            if let Some(v) = &p.max_in_flight {
                config.max_in_flight_requests_per_connection = self.positive(v, "producers.max_in_flight")?;
            }
            if let Some(v) = p.linger_ms {
                config.linger_ms = v;
            }
            if let Some(v) = &p.batch_size {
                config.batch_size = self.positive(v, "producers.batch_size")?;
            }
            if let Some(v) = &p.record_bytes {
                config.record_bytes = self.positive(v, "producers.record_bytes")?;
            }
            if let Some(v) = p.null_key_partitioner {
                config.null_key_partitioner = v;
            }
            let idempotence = p.enable_idempotence.as_ref().map(|v| *v.get_ref());
            if let Err(why) = super::resolve_idempotence(&mut config, idempotence) {
                let span = p.enable_idempotence.as_ref().map_or(spanned.span(), |v| v.span());
                return self.error(span, "producers.enable_idempotence", why);
            }
            let count = match &p.count {
                Some(v) => self.positive(v, "producers.count")?,
                None => 1,
            };
            for index in 0..count {
                let base = p.name.clone().unwrap_or_else(|| format!("p{}", producers.len()));
                let name = if count > 1 { format!("{base}-{index}") } else { base };
                producers.push(ProducerSpec {
                    name,
                    topic: TopicId(topic as u32),
                    rate,
                    keys: p.keys.unwrap_or(0),
                    config: config.clone(),
                    idempotence,
                });
            }
            if producers.len() > PRODUCERS_MAX {
                return self.error(spanned.span(), "producers", format!("at most {PRODUCERS_MAX} producers"));
            }
        }
        Ok(producers)
    }

    fn groups(&self, raw: &[Spanned<RawGroup>], topics: &[TopicConfig]) -> Result<Vec<GroupSpec>, ScenarioError> {
        let mut groups: Vec<GroupSpec> = Vec::new();
        let mut consumers = 0usize;
        for spanned in raw {
            let g = spanned.get_ref();
            let name = g.name.get_ref().trim().to_string();
            if name.is_empty() {
                return self.error(g.name.span(), "groups.name", "a group needs a name");
            }
            if groups.iter().any(|other| other.name == name) {
                return self.error(g.name.span(), "groups.name", format!("group `{name}` is declared twice"));
            }
            let mut subscribed = Vec::new();
            for topic in g.topics.get_ref() {
                let Some(index) = topics.iter().position(|t| t.name == *topic) else {
                    return self.error(
                        g.topics.span(),
                        "groups.topics",
                        format!("no topic named `{topic}` is declared"),
                    );
                };
                subscribed.push((topic.clone(), TopicId(index as u32)));
            }
            if subscribed.is_empty() {
                return self.error(g.topics.span(), "groups.topics", "a group subscribes to at least one topic");
            }
            // 0: the group's members are applications' consumers (the madsim host's
            // `Simulation::consumer_app`); the engine runs none for it.
            let count = *g.consumers.get_ref();
            consumers += count as usize;
            if consumers > CONSUMERS_MAX {
                return self.error(
                    g.consumers.span(),
                    "groups.consumers",
                    format!("at most {CONSUMERS_MAX} consumers"),
                );
            }
            let mut config = ConsumerConfig { topics: subscribed.clone(), ..ConsumerConfig::default() };
            config.member.group = name.clone();
            let interval = match &g.auto_commit_interval_ms {
                Some(v) => self.positive(v, "groups.auto_commit_interval_ms")?,
                None => 5_000,
            };
            if let Some(mode) = &g.commit {
                config.commit = match mode.get_ref().as_str() {
                    "auto" => CommitMode::Auto { interval_ms: interval },
                    "auto-in-poll" => CommitMode::AutoInPoll { interval_ms: interval },
                    "sync-after" => CommitMode::SyncAfter,
                    "sync-before" => CommitMode::SyncBefore,
                    "async-after" => CommitMode::AsyncAfter,
                    other => {
                        return self.error(
                            mode.span(),
                            "groups.commit",
                            format!(
                                "`{other}` is not one of \"auto\", \"auto-in-poll\", \"sync-after\", \"sync-before\", \"async-after\""
                            ),
                        )
                    }
                };
            } else {
                config.commit = CommitMode::AutoInPoll { interval_ms: interval };
            }
            if let Some(v) = &g.max_poll_records {
                config.max_poll_records = self.positive(v, "groups.max_poll_records")? as usize;
            }
            if let Some(v) = g.processing_ms {
                config.processing_ms = v;
            }
            if let Some(v) = g.auto_offset_reset {
                config.auto_offset_reset = v;
            }
            if let Some(v) = g.isolation_level {
                config.isolation_level = v;
            }
            if let Some(list) = &g.assignors {
                let mut assignors = Vec::new();
                for name in list.get_ref() {
                    match trial_model::group::assignor::Assignor::from_name(name) {
                        Some(a) => assignors.push(a),
                        None => {
                            return self.error(
                                list.span(),
                                "groups.assignors",
                                format!(
                                    "unknown assignor `{name}`; one of: range, roundrobin, sticky, cooperative-sticky"
                                ),
                            )
                        }
                    }
                }
                if assignors.is_empty() {
                    return self.error(list.span(), "groups.assignors", "name at least one assignor");
                }
                config.member.assignors = assignors;
            }
            if let Some(v) = &g.session_timeout_ms {
                let ms = *v.get_ref();
                if !(6_000..=1_800_000).contains(&ms) {
                    return self.error(
                        v.span(),
                        "groups.session_timeout_ms",
                        "must be within group.min.session.timeout.ms (6000) and group.max.session.timeout.ms (1800000)",
                    );
                }
                config.member.session_timeout_ms = ms;
            }
            if let Some(v) = &g.heartbeat_interval_ms {
                config.member.heartbeat_interval_ms = self.positive(v, "groups.heartbeat_interval_ms")?;
            }
            if config.member.heartbeat_interval_ms >= config.member.session_timeout_ms {
                let span = g.heartbeat_interval_ms.as_ref().map_or(spanned.span(), |v| v.span());
                return self.error(span, "groups.heartbeat_interval_ms", "must be below session_timeout_ms");
            }
            if let Some(v) = &g.max_poll_interval_ms {
                config.member.max_poll_interval_ms = self.positive(v, "groups.max_poll_interval_ms")?;
            }
            groups.push(GroupSpec {
                name,
                topics: subscribed,
                consumers: count,
                static_membership: g.static_membership.unwrap_or(false),
                config,
            });
        }
        Ok(groups)
    }

    /// `__consumer_offsets`, appended after the declared topics, and the brokers' group settings.
    fn offsets_topic(
        &self,
        raw: &Spanned<RawCluster>,
        brokers: u32,
        fencing: bool,
        topics: &mut Vec<TopicConfig>,
    ) -> Result<GroupsConfig, ScenarioError> {
        let cluster = raw.get_ref();
        let partitions = match &cluster.offsets_partitions {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > PARTITIONS_MAX => {
                return self.error(v.span(), "cluster.offsets_partitions", format!("must be 1..={PARTITIONS_MAX}"))
            }
            Some(v) => *v.get_ref(),
            None => trial_model::group::coordinator::OFFSETS_PARTITIONS_DEFAULT,
        };
        let replication_factor = match &cluster.offsets_replication_factor {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > brokers => {
                return self.error(
                    v.span(),
                    "cluster.offsets_replication_factor",
                    format!("must be 1..={brokers} (the broker count)"),
                )
            }
            Some(v) => *v.get_ref(),
            None => brokers.min(3),
        };
        let min_insync_replicas = match &cluster.offsets_min_insync_replicas {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > replication_factor => {
                return self.error(
                    v.span(),
                    "cluster.offsets_min_insync_replicas",
                    format!("must be 1..={replication_factor} (the offsets topic's replication factor)"),
                )
            }
            Some(v) => *v.get_ref(),
            None => 1,
        };
        if topics.iter().any(|t| t.name == OFFSETS_TOPIC) {
            return self.error(raw.span(), "topics", format!("`{OFFSETS_TOPIC}` is internal and cannot be declared"));
        }
        let offsets_topic = TopicId(topics.len() as u32);
        topics.push(TopicConfig {
            name: OFFSETS_TOPIC.into(),
            partitions,
            replication_factor,
            min_insync_replicas,
            unclean_leader_election: false,
            replica_assignment: None,
        });
        let mut coordinator = trial_model::group::coordinator::CoordinatorConfig { fencing, ..Default::default() };
        if let Some(v) = cluster.group_initial_rebalance_delay_ms {
            coordinator.initial_rebalance_delay_ms = v;
        }
        Ok(GroupsConfig { offsets_topic, offsets_partitions: partitions, commit_timeout_ms: 5_000, coordinator })
    }

    /// `[transactions]`: the workload, `__transaction_state` (appended after the other
    /// topics) and the brokers' transaction settings.
    /// `[pipeline]`: the consume–transform–produce processes (their transactions need
    /// the coordinator settings of `[transactions]`).
    fn pipeline(
        &self,
        raw: &Spanned<RawPipeline>,
        has_transactions: bool,
        topics: &[TopicConfig],
    ) -> Result<PipelineSpec, ScenarioError> {
        let p = raw.get_ref();
        if !has_transactions {
            return self.error(
                raw.span(),
                "pipeline",
                "the pipeline's transactions need the brokers' transaction settings: add a [transactions] section (producers = 0 for no other transactional producers)",
            );
        }
        let apps = match &p.apps {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() as usize > TXN_PRODUCERS_MAX => {
                return self.error(v.span(), "pipeline.apps", format!("must be 1..={TXN_PRODUCERS_MAX}"))
            }
            Some(v) => *v.get_ref(),
            None => 2,
        };
        let topic = |name: &Spanned<String>, key: &str| -> Result<TopicId, ScenarioError> {
            match topics.iter().position(|x| x.name == *name.get_ref() && !x.name.starts_with("__")) {
                Some(index) => Ok(TopicId(index as u32)),
                None => self.error(name.span(), key, format!("no topic named `{}` is declared", name.get_ref())),
            }
        };
        let input = topic(&p.input, "pipeline.input")?;
        let output = topic(&p.output, "pipeline.output")?;
        if input == output {
            return self.error(p.output.span(), "pipeline.output", "must differ from pipeline.input");
        }
        let group = match &p.group {
            Some(v) if v.get_ref().trim().is_empty() => {
                return self.error(v.span(), "pipeline.group", "must not be empty")
            }
            Some(v) => v.get_ref().clone(),
            None => "pipeline".to_string(),
        };
        let poll_interval_ms = match &p.poll_interval_ms {
            Some(v) => self.positive(v, "pipeline.poll_interval_ms")?,
            None => 10,
        };
        let mut consumer = ConsumerConfig {
            topics: vec![(p.input.get_ref().clone(), input)],
            commit: trial_model::CommitMode::Manual,
            isolation_level: trial_model::IsolationLevel::ReadCommitted,
            auto_offset_reset: trial_model::consumer::OffsetReset::Earliest,
            max_poll_records: 50,
            ..ConsumerConfig::default()
        };
        consumer.member.group = group.clone();
        if let Some(v) = &p.max_poll_records {
            consumer.max_poll_records = self.positive(v, "pipeline.max_poll_records")? as usize;
        }
        if let Some(v) = &p.session_timeout_ms {
            consumer.member.session_timeout_ms = self.positive(v, "pipeline.session_timeout_ms")?;
        }
        if let Some(v) = &p.heartbeat_interval_ms {
            consumer.member.heartbeat_interval_ms = self.positive(v, "pipeline.heartbeat_interval_ms")?;
        }
        if consumer.member.heartbeat_interval_ms >= consumer.member.session_timeout_ms {
            let span = p.heartbeat_interval_ms.as_ref().map_or(raw.span(), |v| v.span());
            return self.error(span, "pipeline.heartbeat_interval_ms", "must be below session_timeout_ms");
        }
        if let Some(v) = &p.max_poll_interval_ms {
            consumer.member.max_poll_interval_ms = self.positive(v, "pipeline.max_poll_interval_ms")?;
        }
        let mut producer = trial_model::txn::TxnProducerConfig::default();
        if let Some(v) = &p.transaction_timeout_ms {
            producer.transaction_timeout_ms = self.positive(v, "pipeline.transaction_timeout_ms")?;
            let max = trial_model::txn::TxnCoordinatorConfig::default().max_timeout_ms;
            if producer.transaction_timeout_ms > max {
                return self.error(
                    v.span(),
                    "pipeline.transaction_timeout_ms",
                    format!("is above transaction.max.timeout.ms ({max}): the coordinator refuses it"),
                );
            }
        }
        if let Some(v) = &p.request_timeout_ms {
            producer.request_timeout_ms = self.positive(v, "pipeline.request_timeout_ms")?;
            consumer.request_timeout_ms = producer.request_timeout_ms;
        }
        producer.delivery_timeout_ms = producer.delivery_timeout_ms.max(producer.request_timeout_ms);
        producer.max_block_ms = producer.max_block_ms.max(producer.transaction_timeout_ms);
        Ok(PipelineSpec {
            apps,
            group,
            input: (p.input.get_ref().clone(), input),
            output,
            poll_interval_ms,
            consumer,
            producer,
        })
    }

    fn transactions(
        &self,
        raw: &Spanned<RawTransactions>,
        pipeline_output: Option<TopicId>,
        cluster: &Spanned<RawCluster>,
        brokers: u32,
        broker: &mut BrokerConfig,
        topics: &mut Vec<TopicConfig>,
    ) -> Result<TxnSpec, ScenarioError> {
        let t = raw.get_ref();
        let producers = *t.producers.get_ref();
        // None of its own: the section then only sets the coordinators for a pipeline or
        // for applications' transactions (the madsim host), judged on `topic`.
        let least = if pipeline_output.is_some() || t.topic.is_some() { 0 } else { 1 };
        if producers < least || producers as usize > TXN_PRODUCERS_MAX {
            return self.error(
                t.producers.span(),
                "transactions.producers",
                format!("must be {least}..={TXN_PRODUCERS_MAX}"),
            );
        }
        let topic = match (&t.topic, pipeline_output) {
            (Some(name), _) => {
                let Some(topic) = topics.iter().position(|x| x.name == *name.get_ref() && !x.name.starts_with("__"))
                else {
                    return self.error(
                        name.span(),
                        "transactions.topic",
                        format!("no topic named `{}` is declared", name.get_ref()),
                    );
                };
                topic
            }
            (None, Some(output)) if producers == 0 => output.0 as usize,
            (None, _) => {
                return self.error(t.producers.span(), "transactions.topic", "the producers need a topic to write to")
            }
        };
        let records_per_txn = match &t.records_per_txn {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > RECORDS_PER_TXN_MAX => {
                return self.error(
                    v.span(),
                    "transactions.records_per_txn",
                    format!("must be 1..={RECORDS_PER_TXN_MAX}"),
                )
            }
            Some(v) => *v.get_ref(),
            None => 4,
        };
        let abort_ratio = match &t.abort_ratio {
            Some(v) if !(0.0..=1.0).contains(v.get_ref()) => {
                return self.error(v.span(), "transactions.abort_ratio", format!("{} is not a fraction", v.get_ref()))
            }
            Some(v) => *v.get_ref(),
            None => 0.0,
        };
        let interval_ms = match &t.interval_ms {
            Some(v) => self.positive(v, "transactions.interval_ms")?,
            None => 10,
        };
        let mut config = trial_model::txn::TxnProducerConfig::default();
        let coordinator_defaults = trial_model::txn::TxnCoordinatorConfig::default();
        if let Some(v) = &t.transaction_timeout_ms {
            let timeout = self.positive(v, "transactions.transaction_timeout_ms")?;
            if timeout > coordinator_defaults.max_timeout_ms {
                return self.error(
                    v.span(),
                    "transactions.transaction_timeout_ms",
                    format!(
                        "{timeout} is above transaction.max.timeout.ms ({}): the coordinator refuses it",
                        coordinator_defaults.max_timeout_ms
                    ),
                );
            }
            config.transaction_timeout_ms = timeout;
        }
        if let Some(v) = &t.request_timeout_ms {
            config.request_timeout_ms = self.positive(v, "transactions.request_timeout_ms")?;
        }
        if let Some(v) = &t.delivery_timeout_ms {
            let delivery = self.positive(v, "transactions.delivery_timeout_ms")?;
            // Kafka's producer refuses delivery.timeout.ms < linger.ms + request.timeout.ms.
            if delivery < config.request_timeout_ms {
                return self.error(
                    v.span(),
                    "transactions.delivery_timeout_ms",
                    format!("must be at least request_timeout_ms ({})", config.request_timeout_ms),
                );
            }
            config.delivery_timeout_ms = delivery;
        }
        config.max_block_ms = config.max_block_ms.max(config.transaction_timeout_ms);
        let partitions = match &t.state_partitions {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > PARTITIONS_MAX => {
                return self.error(v.span(), "transactions.state_partitions", format!("must be 1..={PARTITIONS_MAX}"))
            }
            Some(v) => *v.get_ref(),
            None => trial_model::txn::coordinator::TXN_PARTITIONS_DEFAULT,
        };
        let replication_factor = match &t.state_replication_factor {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > brokers => {
                return self.error(
                    v.span(),
                    "transactions.state_replication_factor",
                    format!("must be 1..={brokers} (the broker count)"),
                )
            }
            Some(v) => *v.get_ref(),
            None => brokers.min(3),
        };
        let min_insync_replicas = match &t.state_min_insync_replicas {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > replication_factor => {
                return self.error(
                    v.span(),
                    "transactions.state_min_insync_replicas",
                    format!("must be 1..={replication_factor} (the state topic's replication factor)"),
                )
            }
            Some(v) => *v.get_ref(),
            // `transaction.state.log.min.isr` is 2 in Kafka, which needs 2 replicas.
            None => replication_factor.min(2),
        };
        if topics.iter().any(|x| x.name == TXN_STATE_TOPIC) {
            return self.error(
                cluster.span(),
                "topics",
                format!("`{TXN_STATE_TOPIC}` is internal and cannot be declared"),
            );
        }
        let state_topic = TopicId(topics.len() as u32);
        topics.push(TopicConfig {
            name: TXN_STATE_TOPIC.into(),
            partitions,
            replication_factor,
            min_insync_replicas,
            unclean_leader_election: false,
            replica_assignment: None,
        });
        let (offsets_topic, offsets_partitions) = broker
            .groups
            .as_ref()
            .map_or((coordinator_defaults.offsets_topic, coordinator_defaults.offsets_partitions), |g| {
                (g.offsets_topic, g.offsets_partitions)
            });
        let coordinator = trial_model::txn::TxnCoordinatorConfig {
            partitions,
            bump_epoch_per_transaction: t.kip890.unwrap_or(true),
            marker_transaction_version: t.kip1228.unwrap_or(true),
            offsets_topic,
            offsets_partitions,
            ..coordinator_defaults
        };
        broker.txn = Some(trial_model::TxnConfig {
            state_topic,
            coordinator,
            append_timeout_ms: 5_000,
            marker_retry_ms: 100,
            partition_verification: t.partition_verification.unwrap_or(true),
        });
        Ok(TxnSpec { producers, topic: TopicId(topic as u32), records_per_txn, abort_ratio, interval_ms, config })
    }

    fn positive<T: Copy + PartialOrd + Default + fmt::Display>(
        &self,
        value: &Spanned<T>,
        key: &str,
    ) -> Result<T, ScenarioError> {
        if *value.get_ref() <= T::default() {
            return self.error(value.span(), key, format!("{} must be above 0", value.get_ref()));
        }
        Ok(*value.get_ref())
    }

    fn target(
        &self,
        value: &Spanned<String>,
        key: &str,
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
    ) -> Result<Target, ScenarioError> {
        match self.parse_target(value.get_ref(), brokers, producers, consumers, topics) {
            Ok(target) => Ok(target),
            Err(message) => self.error(value.span(), key, message),
        }
    }

    /// `Target::parse`, plus the transactional producers and their coordinators.
    fn parse_target(
        &self,
        text: &str,
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
    ) -> Result<Target, String> {
        // The index of a `kind:N` target, below `count` (what `owner` has of that kind).
        let index = |rest: &str, count: usize, owner: &str, what: &str| -> Result<u32, String> {
            let index: u32 = rest.trim().parse().map_err(|_| format!("`{text}`: the index must be a number"))?;
            if index as usize >= count {
                return Err(format!("`{text}`: {owner} has {count} {what}"));
            }
            Ok(index)
        };
        let txn = self.txn_producers.get();
        if let Some(rest) = text.trim().strip_prefix("txn-producer:") {
            return index(rest, txn, "the scenario", "transactional producer(s)").map(Target::TxnProducer);
        }
        if let Some(rest) = text.trim().strip_prefix("txn-coordinator:") {
            return index(rest, txn, "the scenario", "transactional producer(s)").map(Target::TxnCoordinatorOf);
        }
        if let Some(rest) = text.trim().strip_prefix("pipeline:") {
            return index(rest, self.pipeline_apps.get(), "the scenario's [pipeline]", "process(es)")
                .map(Target::Pipeline);
        }
        Target::parse(text, brokers, producers, consumers, topics)
    }

    fn targets(
        &self,
        value: &Spanned<Vec<String>>,
        key: &str,
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
    ) -> Result<Vec<Target>, ScenarioError> {
        let mut targets = Vec::new();
        for name in value.get_ref() {
            match self.parse_target(name, brokers, producers, consumers, topics) {
                Ok(target) => targets.push(target),
                Err(message) => return self.error(value.span(), key, message),
            }
        }
        if targets.is_empty() {
            return self.error(value.span(), key, "needs at least one node");
        }
        Ok(targets)
    }

    fn faults(
        &self,
        raw: &[Spanned<RawFault>],
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
        duration_ms: u64,
    ) -> Result<Vec<ScheduledFault>, ScenarioError> {
        if raw.len() > FAULTS_MAX {
            return self.error(raw[0].span(), "faults", format!("at most {FAULTS_MAX} scheduled faults"));
        }
        let mut faults = Vec::new();
        for spanned in raw {
            let f = spanned.get_ref();
            let at_ms = *f.at_ms.get_ref();
            if at_ms > duration_ms {
                return self.error(
                    f.at_ms.span(),
                    "faults.at_ms",
                    format!(
                        "{at_ms} is after the safety phase ends (duration_ms = {duration_ms}); everything heals then"
                    ),
                );
            }
            let fault = self.fault(spanned, brokers, producers, consumers, topics)?;
            faults.push(ScheduledFault { at_ms, fault });
        }
        faults.sort_by_key(|f| f.at_ms);
        Ok(faults)
    }

    fn fault(
        &self,
        spanned: &Spanned<RawFault>,
        brokers: u32,
        producers: usize,
        consumers: usize,
        topics: &[TopicConfig],
    ) -> Result<Fault, ScenarioError> {
        let f = spanned.get_ref();
        let kind = f.kind.get_ref().as_str();
        let need_target = |this: &Self| -> Result<Target, ScenarioError> {
            match &f.target {
                Some(target) => this.target(target, "faults.target", brokers, producers, consumers, topics),
                None => this.error(
                    spanned.span(),
                    "faults.target",
                    format!("a `{kind}` fault needs a target (\"broker:N\", \"controller\", \"leader:TOPIC/P\")"),
                ),
            }
        };
        let need_probability = |this: &Self| -> Result<f64, ScenarioError> {
            match &f.probability {
                Some(p) => this.probability(p, "faults.probability"),
                None => {
                    this.error(spanned.span(), "faults.probability", format!("a `{kind}` fault needs a probability"))
                }
            }
        };
        let fault = match kind {
            "kill" => Fault::Kill(self.process_target(need_target(self)?, f)?),
            "restart" => Fault::Restart(self.process_target(need_target(self)?, f)?),
            "power-loss" => Fault::PowerLoss(self.process_target(need_target(self)?, f)?),
            "shutdown" => match self.process_target(need_target(self)?, f)? {
                Target::Consumer(_) | Target::App(_) | Target::TxnProducer(_) | Target::Pipeline(_) => {
                    let span = f.target.as_ref().map_or(f.kind.span(), |t| t.span());
                    return self.error(span, "faults.target", "`shutdown` (a broker's controlled shutdown) applies to brokers and the controller; `close` is a consumer's graceful stop");
                }
                target => Fault::Shutdown(target),
            },
            "close" => match need_target(self)? {
                target @ Target::Consumer(_) => Fault::Close(target),
                _ => {
                    let span = f.target.as_ref().map_or(f.kind.span(), |t| t.span());
                    return self.error(span, "faults.target", "`close` (a graceful leave) applies to consumers");
                }
            },
            "pause" => Fault::Pause(need_target(self)?),
            "resume" => Fault::Resume(need_target(self)?),
            "isolate" => Fault::Isolate(need_target(self)?),
            "partition" => {
                let Some(groups) = &f.groups else {
                    return self.error(spanned.span(), "faults.groups", "a `partition` fault needs groups = [[\"broker:0\"], [\"broker:1\", ...]]");
                };
                if groups.get_ref().len() < 2 {
                    return self.error(groups.span(), "faults.groups", "needs at least two groups");
                }
                let mut resolved = Vec::new();
                for group in groups.get_ref() {
                    let group = Spanned::new(groups.span(), group.clone());
                    resolved.push(self.targets(&group, "faults.groups", brokers, producers, consumers, topics)?);
                }
                Fault::Partition { groups: resolved }
            }
            "partition-one-way" => {
                let (Some(from), Some(to)) = (&f.from, &f.to) else {
                    return self.error(spanned.span(), "faults.from", "a `partition-one-way` fault needs `from` and `to` node lists");
                };
                let from = self.targets(from, "faults.from", brokers, producers, consumers, topics)?;
                let to = self.targets(to, "faults.to", brokers, producers, consumers, topics)?;
                Fault::OneWay { from, to }
            }
            "heal" => Fault::Heal,
            "loss" => Fault::Loss(need_probability(self)?),
            "duplicate" => Fault::Duplicate(need_probability(self)?),
            "latency" => {
                let Some(latency) = &f.latency_ms else {
                    return self.error(spanned.span(), "faults.latency_ms", "a `latency` fault needs latency_ms = [MIN, MAX]");
                };
                let (low, high) = self.range(latency, "faults.latency_ms")?;
                Fault::Latency(low, high)
            }
            "drop-kind" | "delay-kind" => {
                let Some(message) = &f.message else {
                    return self.error(spanned.span(), "faults.message", format!("a `{kind}` fault needs message = \"produce-response\" (or another kind)"));
                };
                let Some(kind) = MessageKind::parse(message.get_ref()) else {
                    let names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.name()).collect();
                    return self.error(message.span(), "faults.message", format!("unknown message kind `{}`; one of: {}", message.get_ref(), names.join(", ")));
                };
                let probability = match &f.probability {
                    Some(p) => self.probability(p, "faults.probability")?,
                    None => 1.0,
                };
                if f.kind.get_ref() == "drop-kind" {
                    Fault::DropKind(kind, probability)
                } else {
                    let Some(latency) = &f.latency_ms else {
                        return self.error(spanned.span(), "faults.latency_ms", "a `delay-kind` fault needs latency_ms = [MIN, MAX]");
                    };
                    let (low, high) = self.range(latency, "faults.latency_ms")?;
                    Fault::DelayKind(kind, low, high, probability)
                }
            }
            "clock-offset" => {
                let Some(offset) = f.offset_ms else {
                    return self.error(spanned.span(), "faults.offset_ms", "a `clock-offset` fault needs offset_ms");
                };
                Fault::ClockOffset(need_target(self)?, offset)
            }
            other => {
                return self.error(
                    f.kind.span(),
                    "faults.kind",
                    format!("unknown fault kind `{other}`; one of: kill, restart, power-loss, shutdown, close, pause, resume, isolate, partition, partition-one-way, heal, loss, duplicate, latency, drop-kind, delay-kind, clock-offset"),
                )
            }
        };
        Ok(fault)
    }

    fn process_target(&self, target: Target, f: &RawFault) -> Result<Target, ScenarioError> {
        if let Target::Producer(_) = target {
            let span = f.target.as_ref().map_or(f.kind.span(), |t| t.span());
            return self.error(span, "faults.target", "process faults (kill, restart, power-loss, shutdown) apply to brokers and the controller; use pause or isolate for a producer");
        }
        Ok(target)
    }

    fn nemesis(&self, raw: &Spanned<RawNemesis>, brokers: u32) -> Result<NemesisSpec, ScenarioError> {
        let n = raw.get_ref();
        let interval_ms = self.range(&n.interval_ms, "nemesis.interval_ms")?;
        if interval_ms.0 == 0 {
            return self.error(
                n.interval_ms.span(),
                "nemesis.interval_ms",
                "the shortest interval must be at least 1 ms",
            );
        }
        let fault_duration_ms = match &n.fault_duration_ms {
            Some(v) => self.range(v, "nemesis.fault_duration_ms")?,
            None => (1_000, 20_000),
        };
        let mut kinds = Vec::new();
        for name in n.kinds.get_ref() {
            let Some(kind) = NemesisKind::parse(name) else {
                let names: Vec<&str> = NemesisKind::ALL.iter().map(|k| k.name()).collect();
                return self.error(
                    n.kinds.span(),
                    "nemesis.kinds",
                    format!("unknown kind `{name}`; one of: {}", names.join(", ")),
                );
            };
            kinds.push(kind);
        }
        if kinds.is_empty() {
            return self.error(n.kinds.span(), "nemesis.kinds", "needs at least one kind");
        }
        let max_down = match &n.max_down {
            Some(v) if *v.get_ref() > brokers => {
                return self.error(v.span(), "nemesis.max_down", format!("cannot exceed the broker count ({brokers})"))
            }
            Some(v) => *v.get_ref(),
            None => 1,
        };
        Ok(NemesisSpec {
            interval_ms,
            fault_duration_ms,
            kinds,
            swarm: n.swarm.unwrap_or(false),
            max_down,
            controller: n.controller.unwrap_or(false),
        })
    }

    fn expect(&self, raw: Option<&RawExpect>) -> Result<Expect, ScenarioError> {
        use crate::txns::TxnProperty;
        let Some(raw) = raw else {
            let (hold, txn_hold) = (Property::ALL.to_vec(), TxnProperty::ALL.to_vec());
            return Ok(Expect { hold, txn_hold, ..Expect::default() });
        };
        let names = |list: &Option<Spanned<Vec<String>>>| list.as_ref().map_or(Vec::new(), |l| l.get_ref().clone());
        parse_expect(&names(&raw.hold), &names(&raw.violate)).or_else(|(list, message)| {
            let (list, key) = match list {
                ExpectList::Hold => (&raw.hold, "expect.hold"),
                ExpectList::Violate => (&raw.violate, "expect.violate"),
            };
            self.error(list.as_ref().map_or(0..0, |l| l.span()), key, message)
        })
    }
}
