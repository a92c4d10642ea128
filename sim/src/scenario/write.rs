//! Writing a scenario back as a scenario file, so that a scenario built in code (a
//! shrunk proptest counterexample, say) can be replayed with `kafka-trial run`.

use super::Scenario;
use crate::faults::{Fault, Target};
use std::fmt::Write as _;
use trial_model::{Acks, CommitMode, IsolationLevel, NullKeyPartitioner, OffsetReset, Registration, Truncation};

fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

impl Scenario {
    fn target_text(&self, target: &Target) -> String {
        match target {
            Target::LeaderOf(tp) => {
                let topic = self.topics.get(tp.topic.0 as usize).map_or("?", |t| t.name.as_str());
                format!("leader:{topic}/{}", tp.partition)
            }
            other => other.to_string(),
        }
    }

    fn targets_text(&self, targets: &[Target]) -> String {
        list(targets.iter().map(|t| quote(&self.target_text(t))))
    }

    /// This scenario as a scenario file that parses back to an equal scenario.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let b = &self.broker;
        let _ = writeln!(out, "name = {}", quote(&self.name));
        let _ = writeln!(out, "description = {}", quote(&self.description));
        let _ = writeln!(out, "duration_ms = {}\nliveness_ms = {}\n", self.duration_ms, self.liveness_ms);
        let _ = writeln!(out, "[cluster]\nbrokers = {}", self.brokers);
        let _ = writeln!(out, "replica_lag_time_max_ms = {}", b.replica_lag_time_max_ms);
        let _ = writeln!(out, "replica_fetch_wait_max_ms = {}", b.replica_fetch_wait_max_ms);
        let _ = writeln!(out, "replica_socket_timeout_ms = {}", b.replica_socket_timeout_ms);
        let _ = writeln!(out, "broker_heartbeat_interval_ms = {}", b.broker_heartbeat_interval_ms);
        let _ = writeln!(out, "broker_session_timeout_ms = {}", self.controller.broker_session_timeout_ms);
        let _ = writeln!(out, "controlled_shutdown_timeout_ms = {}", b.controlled_shutdown_timeout_ms);
        let _ = writeln!(out, "replica_high_watermark_checkpoint_interval_ms = {}", b.hw_checkpoint_interval_ms);
        let _ = writeln!(out, "os_dirty_expire_ms = {}", b.os_dirty_expire_ms.unwrap_or(0));
        let _ = writeln!(out, "os_writeback_interval_ms = {}", b.os_writeback_interval_ms);
        if let Some(v) = b.flush_messages {
            let _ = writeln!(out, "flush_messages = {v}");
        }
        if let Some(v) = b.flush_ms {
            let _ = writeln!(out, "flush_ms = {v}");
        }
        if let Some(g) = &b.groups {
            let offsets = &self.topics[g.offsets_topic.0 as usize];
            let _ = writeln!(out, "offsets_partitions = {}", g.offsets_partitions);
            let _ = writeln!(out, "offsets_replication_factor = {}", offsets.replication_factor);
            let _ = writeln!(out, "offsets_min_insync_replicas = {}", offsets.min_insync_replicas);
            let _ = writeln!(out, "group_initial_rebalance_delay_ms = {}", g.coordinator.initial_rebalance_delay_ms);
        }
        let p = &b.protocol;
        let truncation = match p.truncation {
            Truncation::LeaderEpoch => "leader-epoch",
            Truncation::HighWatermark => "high-watermark",
        };
        let registration = match p.registration {
            Registration::Kraft => "kraft",
            Registration::Zookeeper => "zookeeper",
        };
        let _ = writeln!(
            out,
            "\n[protocol]\ntruncation = \"{truncation}\"\neligible_leader_replicas = {}\nregistration = \"{registration}\"",
            p.eligible_leader_replicas
        );
        if let Some(g) = &b.groups {
            let _ = writeln!(out, "commit_fencing = {}", g.coordinator.fencing);
        }
        let n = &self.network;
        let _ = writeln!(
            out,
            "\n[network]\nlatency_ms = [{}, {}]\nloss = {:?}\nduplicate = {:?}",
            n.latency_ms.0, n.latency_ms.1, n.loss, n.duplicate
        );
        let internal = b.groups.as_ref().map(|g| g.offsets_topic.0 as usize);
        let state = b.txn.as_ref().map(|t| t.state_topic.0 as usize);
        for (index, t) in self.topics.iter().enumerate() {
            if Some(index) == internal || Some(index) == state {
                // Created from the [cluster] settings above.
                continue;
            }
            let _ = writeln!(out, "\n[[topics]]\nname = {}\npartitions = {}", quote(&t.name), t.partitions);
            let _ = writeln!(
                out,
                "replication_factor = {}\nmin_insync_replicas = {}",
                t.replication_factor, t.min_insync_replicas
            );
            let _ = writeln!(out, "unclean_leader_election = {}", t.unclean_leader_election);
            if let Some(assignment) = &t.replica_assignment {
                let lists = assignment.iter().map(|r| list(r.iter().map(|b| b.0.to_string())));
                let _ = writeln!(out, "replica_assignment = {}", list(lists));
            }
        }
        for p in &self.producers {
            let c = &p.config;
            let topic = self.topics.get(p.topic.0 as usize).map_or("?", |t| t.name.as_str());
            let acks = match c.acks {
                Acks::None => "0",
                Acks::Leader => "1",
                Acks::All => "all",
            };
            let partitioner = match c.null_key_partitioner {
                NullKeyPartitioner::Sticky => "sticky",
                NullKeyPartitioner::RoundRobin => "round-robin",
            };
            let _ = writeln!(
                out,
                "\n[[producers]]\nname = {}\ntopic = {}\nrate = {:?}\nkeys = {}",
                quote(&p.name),
                quote(topic),
                p.rate,
                p.keys
            );
            let _ =
                writeln!(out, "acks = \"{acks}\"\nretries = {}\nretry_backoff_ms = {}", c.retries, c.retry_backoff_ms);
            let _ = writeln!(
                out,
                "request_timeout_ms = {}\ndelivery_timeout_ms = {}",
                c.request_timeout_ms, c.delivery_timeout_ms
            );
            let _ = writeln!(
                out,
                "max_in_flight = {}\nlinger_ms = {}",
                c.max_in_flight_requests_per_connection, c.linger_ms
            );
            let _ = writeln!(out, "batch_size = {}\nrecord_bytes = {}", c.batch_size, c.record_bytes);
            let _ = writeln!(out, "null_key_partitioner = \"{partitioner}\"");
            if let Some(idempotence) = p.idempotence {
                let _ = writeln!(out, "enable_idempotence = {idempotence}");
            }
        }
        for g in &self.groups {
            let c = &g.config;
            let topics = list(g.topics.iter().map(|(name, _)| quote(name)));
            let _ = writeln!(
                out,
                "\n[[groups]]\nname = {}\ntopics = {topics}\nconsumers = {}",
                quote(&g.name),
                g.consumers
            );
            let (commit, interval) = match c.commit {
                CommitMode::Auto { interval_ms } => ("auto", interval_ms),
                CommitMode::AutoInPoll { interval_ms } => ("auto-in-poll", interval_ms),
                CommitMode::SyncAfter => ("sync-after", 5_000),
                CommitMode::SyncBefore => ("sync-before", 5_000),
                CommitMode::AsyncAfter => ("async-after", 5_000),
                // Only applications' consumers are manual; a scenario's never are.
                CommitMode::Manual => ("sync-after", 5_000),
            };
            let reset = match c.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
                OffsetReset::None => "none",
            };
            let _ = writeln!(out, "commit = \"{commit}\"\nauto_commit_interval_ms = {interval}");
            let _ = writeln!(out, "max_poll_records = {}\nprocessing_ms = {}", c.max_poll_records, c.processing_ms);
            let _ = writeln!(out, "auto_offset_reset = \"{reset}\"");
            let _ = writeln!(out, "assignors = {}", list(c.member.assignors.iter().map(|a| quote(a.name()))));
            let m = &c.member;
            let _ = writeln!(
                out,
                "session_timeout_ms = {}\nheartbeat_interval_ms = {}\nmax_poll_interval_ms = {}",
                m.session_timeout_ms, m.heartbeat_interval_ms, m.max_poll_interval_ms
            );
            let _ = writeln!(out, "static_membership = {}", g.static_membership);
            if c.isolation_level == IsolationLevel::ReadCommitted {
                let _ = writeln!(out, "isolation_level = \"read_committed\"");
            }
        }
        if let (Some(t), Some(settings)) = (&self.transactions, &b.txn) {
            let topic = self.topics.get(t.topic.0 as usize).map_or("?", |x| x.name.as_str());
            let state = &self.topics[settings.state_topic.0 as usize];
            let _ = writeln!(out, "\n[transactions]\nproducers = {}\ntopic = {}", t.producers, quote(topic));
            let _ = writeln!(
                out,
                "records_per_txn = {}\nabort_ratio = {:?}\ninterval_ms = {}",
                t.records_per_txn, t.abort_ratio, t.interval_ms
            );
            let _ = writeln!(
                out,
                "transaction_timeout_ms = {}\nrequest_timeout_ms = {}\ndelivery_timeout_ms = {}\nkip890 = {}\nkip1228 = {}\npartition_verification = {}",
                t.config.transaction_timeout_ms,
                t.config.request_timeout_ms,
                t.config.delivery_timeout_ms,
                settings.coordinator.bump_epoch_per_transaction,
                settings.coordinator.marker_transaction_version,
                settings.partition_verification
            );
            let _ = writeln!(
                out,
                "state_partitions = {}\nstate_replication_factor = {}\nstate_min_insync_replicas = {}",
                state.partitions, state.replication_factor, state.min_insync_replicas
            );
        }
        if let Some(p) = &self.pipeline {
            let name = |topic: trial_model::TopicId| self.topics.get(topic.0 as usize).map_or("?", |t| t.name.as_str());
            let _ = writeln!(out, "\n[pipeline]\napps = {}\ngroup = {}", p.apps, quote(&p.group));
            let _ = writeln!(out, "input = {}\noutput = {}", quote(name(p.input.1)), quote(name(p.output)));
            let m = &p.consumer.member;
            let _ = writeln!(
                out,
                "poll_interval_ms = {}\nmax_poll_records = {}\nsession_timeout_ms = {}\nheartbeat_interval_ms = {}\nmax_poll_interval_ms = {}",
                p.poll_interval_ms, p.consumer.max_poll_records, m.session_timeout_ms, m.heartbeat_interval_ms, m.max_poll_interval_ms
            );
            let _ = writeln!(
                out,
                "transaction_timeout_ms = {}\nrequest_timeout_ms = {}",
                p.producer.transaction_timeout_ms, p.producer.request_timeout_ms
            );
        }
        for f in &self.faults {
            let _ = writeln!(out, "\n[[faults]]\nat_ms = {}", f.at_ms);
            let _ = writeln!(out, "{}", self.fault_fields(&f.fault));
        }
        if let Some(n) = &self.nemesis {
            let kinds = list(n.kinds.iter().map(|k| quote(k.name())));
            let _ = writeln!(out, "\n[nemesis]\ninterval_ms = [{}, {}]", n.interval_ms.0, n.interval_ms.1);
            let _ = writeln!(
                out,
                "fault_duration_ms = [{}, {}]\nkinds = {kinds}",
                n.fault_duration_ms.0, n.fault_duration_ms.1
            );
            let _ = writeln!(out, "swarm = {}\nmax_down = {}\ncontroller = {}", n.swarm, n.max_down, n.controller);
        }
        let e = &self.expect;
        let hold = list(
            e.hold
                .iter()
                .map(|p| quote(p.name()))
                .chain(e.group_hold.iter().map(|p| quote(p.name())))
                .chain(e.txn_hold.iter().map(|p| quote(p.name()))),
        );
        let violate = list(
            e.violate
                .iter()
                .map(|p| quote(p.name()))
                .chain(e.group_violate.iter().map(|p| quote(p.name())))
                .chain(e.txn_violate.iter().map(|p| quote(p.name()))),
        );
        let _ = writeln!(out, "\n[expect]\nhold = {hold}\nviolate = {violate}");
        out
    }

    fn fault_fields(&self, fault: &Fault) -> String {
        let target = |kind: &str, t: &Target| format!("kind = \"{kind}\"\ntarget = {}", quote(&self.target_text(t)));
        match fault {
            Fault::Kill(t) => target("kill", t),
            Fault::Restart(t) => target("restart", t),
            Fault::PowerLoss(t) => target("power-loss", t),
            Fault::Shutdown(t) => target("shutdown", t),
            Fault::Pause(t) => target("pause", t),
            Fault::Resume(t) => target("resume", t),
            Fault::Close(t) => target("close", t),
            Fault::Isolate(t) => target("isolate", t),
            Fault::Partition { groups } => {
                let groups = list(groups.iter().map(|g| self.targets_text(g)));
                format!("kind = \"partition\"\ngroups = {groups}")
            }
            Fault::OneWay { from, to } => {
                format!(
                    "kind = \"partition-one-way\"\nfrom = {}\nto = {}",
                    self.targets_text(from),
                    self.targets_text(to)
                )
            }
            Fault::Heal => "kind = \"heal\"".to_string(),
            Fault::Loss(p) => format!("kind = \"loss\"\nprobability = {p:?}"),
            Fault::Duplicate(p) => format!("kind = \"duplicate\"\nprobability = {p:?}"),
            Fault::Latency(low, high) => format!("kind = \"latency\"\nlatency_ms = [{low}, {high}]"),
            Fault::DropKind(kind, p) => {
                format!("kind = \"drop-kind\"\nmessage = \"{}\"\nprobability = {p:?}", kind.name())
            }
            Fault::DelayKind(kind, low, high, p) => format!(
                "kind = \"delay-kind\"\nmessage = \"{}\"\nlatency_ms = [{low}, {high}]\nprobability = {p:?}",
                kind.name()
            ),
            Fault::ClockOffset(t, ms) => format!("{}\noffset_ms = {ms}", target("clock-offset", t)),
        }
    }
}
