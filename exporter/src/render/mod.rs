//! Pure rendering of snapshots to the Prometheus text format (version 0.0.4). Fresh
//! families per render (as KMinion does), so groups and topics that are gone leave no stale
//! series. Family by family, in name order, straight into chunks of bytes ([`write_page`]):
//! the HTTP side streams them, so a page of 400,000 series (43 MiB) is never whole in memory.

#[cfg(test)]
mod tests;
mod text;

use crate::config::Granularity;
use crate::snapshot::Snapshot;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use text::{escaped, Family, FamilyWriter, Out, Value};
use trial_model::lag::{lag_records, messages_lost};
use trial_model::Offset;

/// Chunk size for streaming a page.
pub const CHUNK_BYTES: usize = 64 << 10;

/// Renders the snapshots of every cluster as one Prometheus text page; `labels` are added
/// to every series. For tests and small pages: the server streams [`write_page`] instead.
pub fn render(snapshots: &[Snapshot], labels: &BTreeMap<String, String>) -> String {
    // Measured first, so the page is allocated once at its size (rendering twice costs less
    // than growing a 43 MiB buffer by doubling, and peaks at one page, not two).
    let mut size = 0;
    write_page(snapshots, labels, CHUNK_BYTES, &mut |chunk| size += chunk.len());
    let mut page = Vec::with_capacity(size);
    write_page(snapshots, labels, CHUNK_BYTES, &mut |chunk| page.extend_from_slice(&chunk));
    // Every byte written comes from a `&str` or an ASCII number, so the page is UTF-8.
    String::from_utf8(page).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Renders the page into `sink` in chunks of about `chunk_bytes`, each ending on a line.
pub fn write_page<S: Borrow<Snapshot>>(
    snapshots: &[S],
    labels: &BTreeMap<String, String>,
    chunk_bytes: usize,
    sink: &mut dyn FnMut(Vec<u8>),
) {
    let constants: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.clone(), escaped(v).into_owned())).collect();
    let prepared: Vec<Prepared<'_>> = snapshots.iter().map(|s| Prepared::new(s.borrow())).collect();
    let mut out = Out::new(chunk_bytes, sink);
    let page = Page { prepared: &prepared, constants: &constants };
    page.cluster_families(&mut out);
    page.group_families(&mut out);
    page.exporter_families(&mut out);
    page.partition_families(&mut out);
    out.finish();
}

/// What a render needs of one snapshot, worked out once rather than once per family:
/// escaped names, each group partition's lag, each group's roll-ups.
struct Prepared<'s> {
    s: &'s Snapshot,
    cluster: Cow<'s, str>,
    groups: Vec<GroupRollup<'s>>,
}

struct GroupRollup<'s> {
    name: Cow<'s, str>,
    /// Per offset of the group, in order: (lag records, records lost) when both ends of
    /// the partition are known — never a made-up number.
    lags: Vec<Option<(u64, u64)>>,
    per_topic: Vec<(&'s str, u64)>,
    total: u64,
    max_seconds: Option<f64>,
}

impl<'s> Prepared<'s> {
    fn new(s: &'s Snapshot) -> Prepared<'s> {
        // Looked up for every group partition: topic → partition → where, not a scan.
        let mut index: BTreeMap<&str, Vec<Option<usize>>> = BTreeMap::new();
        for (at, p) in s.partitions.iter().enumerate() {
            let Ok(partition) = usize::try_from(p.partition) else { continue };
            let slots = index.entry(p.topic.as_str()).or_default();
            if slots.len() <= partition {
                slots.resize(partition + 1, None);
            }
            slots[partition] = Some(at);
        }
        let groups = s.groups.iter().map(|g| GroupRollup::new(s, g, &index)).collect();
        Prepared { s, cluster: escaped(&s.cluster), groups }
    }

    fn per_partition(&self) -> bool {
        self.s.granularity == Granularity::Partition
    }
}

impl<'s> GroupRollup<'s> {
    fn new(
        s: &'s Snapshot,
        g: &'s crate::snapshot::GroupInfo,
        index: &BTreeMap<&str, Vec<Option<usize>>>,
    ) -> GroupRollup<'s> {
        let mut lags = Vec::with_capacity(g.offsets.len());
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut total, mut max_seconds) = (0u64, None::<f64>);
        let mut last_topic: Option<(&str, &Vec<Option<usize>>)> = None;
        for o in &g.offsets {
            if let Some(seconds) = o.lag_seconds {
                max_seconds = Some(max_seconds.map_or(seconds, |m| m.max(seconds)));
            }
            // Offsets of one topic come together: remember the last topic's partitions.
            let slots = match last_topic {
                Some((topic, slots)) if topic == o.topic => Some(slots),
                _ => index.get_key_value(o.topic.as_str()).map(|(topic, slots)| {
                    last_topic = Some((topic, slots));
                    slots
                }),
            };
            let info = slots
                .and_then(|slots| usize::try_from(o.partition).ok().and_then(|p| slots.get(p).copied().flatten()))
                .map(|at| &s.partitions[at]);
            let ends = info.and_then(|info| Some((s.readable_end(info)?, info.low_watermark?)));
            let lag = ends.map(|(end, start)| {
                let (end, start, at) = (offset(end), offset(start), offset(o.committed));
                (lag_records(end, start, at), messages_lost(start, at))
            });
            if let Some((records, _)) = lag {
                total += records;
                *per_topic.entry(o.topic.as_str()).or_default() += records;
            }
            lags.push(lag);
        }
        GroupRollup { name: escaped(&g.group), lags, per_topic: per_topic.into_iter().collect(), total, max_seconds }
    }
}

struct Page<'p, 's> {
    prepared: &'p [Prepared<'s>],
    constants: &'p [(String, String)],
}

const TP: &[&str] = &["cluster", "topic", "partition"];
const GTP: &[&str] = &["cluster", "group", "topic", "partition"];
const CG: &[&str] = &["cluster", "group"];

macro_rules! family {
    ($name:literal, $kind:literal, $labels:expr, $help:literal) => {
        Family { name: $name, help: $help, kind: $kind, labels: $labels }
    };
}

impl Page<'_, '_> {
    /// One family: `each` writes its series for one snapshot.
    fn family(&self, out: &mut Out<'_>, family: &Family, mut each: impl FnMut(&Prepared<'_>, &mut FamilyWriter)) {
        let mut writer = FamilyWriter::new(out, family, self.constants);
        for p in self.prepared {
            each(p, &mut writer);
        }
    }

    fn cluster_families(&self, out: &mut Out<'_>) {
        let info = family!(
            "kafka_broker_info",
            "gauge",
            &["cluster", "broker_id", "host", "port", "rack"],
            "A broker of the cluster."
        );
        self.family(out, &info, |p, w| {
            for b in &p.s.brokers {
                let (id, port) = (itoa::Buffer::new().format(b.id).to_string(), b.port.to_string());
                let (host, rack) = (escaped(&b.host), escaped(b.rack.as_deref().unwrap_or("")));
                w.series(&[&p.cluster, &id, &host, &port, &rack], Value::Int(1));
            }
        });
        let brokers = family!("kafka_brokers", "gauge", &["cluster"], "Brokers in the cluster.");
        self.family(out, &brokers, |p, w| w.series(&[&p.cluster], Value::Int(p.s.brokers.len() as i64)));
        let info = family!("kafka_cluster_info", "gauge", &["cluster", "cluster_id", "controller_id"], "The cluster.");
        self.family(out, &info, |p, w| {
            if let Some(id) = &p.s.cluster_id {
                let controller = p.s.controller_id.to_string();
                w.series(&[&p.cluster, &escaped(id), &controller], Value::Int(1));
            }
        });
    }

    fn group_families(&self, out: &mut Out<'_>) {
        self.group_info_families(out);
        self.partition_lag_families(out);
        let status = family!(
            "kafka_consumergroup_status",
            "gauge",
            &["cluster", "group", "status"],
            "The group's current lag status (worst of its partitions): one series, value 1."
        );
        self.family(out, &status, |p, w| {
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                w.series(&[&p.cluster, &r.name, g.status.name()], Value::Int(1));
            }
        });
        let topic_lag = family!(
            "kafka_consumergroup_topic_lag",
            "gauge",
            &["cluster", "group", "topic"],
            "Lag of a group summed over a topic's partitions."
        );
        self.family(out, &topic_lag, |p, w| {
            for r in &p.groups {
                for (topic, records) in &r.per_topic {
                    w.series(&[&p.cluster, &r.name, &escaped(topic)], Value::Int(*records as i64));
                }
            }
        });
    }

    fn group_info_families(&self, out: &mut Out<'_>) {
        let info = family!(
            "kafka_consumergroup_info",
            "gauge",
            &["cluster", "group", "state", "protocol_type", "protocol", "coordinator_id"],
            "A consumer group."
        );
        self.family(out, &info, |p, w| {
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                let coordinator = g.coordinator.to_string();
                let (state, kind, protocol) = (escaped(&g.state), escaped(&g.protocol_type), escaped(&g.protocol));
                w.series(&[&p.cluster, &r.name, &state, &kind, &protocol, &coordinator], Value::Int(1));
            }
        });
        let lag = family!("kafka_consumergroup_lag", "gauge", CG, "Lag of a group summed over all its partitions.");
        self.family(out, &lag, |p, w| {
            for r in &p.groups {
                w.series(&[&p.cluster, &r.name], Value::Int(r.total as i64));
            }
        });
        let max = family!(
            "kafka_consumergroup_max_lag_seconds",
            "gauge",
            CG,
            "Largest lag in seconds over a group's partitions."
        );
        self.family(out, &max, |p, w| {
            for r in &p.groups {
                if let Some(seconds) = r.max_seconds {
                    w.series(&[&p.cluster, &r.name], Value::Float(seconds));
                }
            }
        });
        let member = family!(
            "kafka_consumergroup_member_info",
            "gauge",
            &["cluster", "group", "member_id", "group_instance_id", "client_id", "client_host"],
            "A member of a consumer group (identity lives here, never on lag series)."
        );
        self.family(out, &member, |p, w| {
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                for m in &g.member_info {
                    let instance = escaped(m.instance_id.as_deref().unwrap_or(""));
                    let (id, client, host) = (escaped(&m.member_id), escaped(&m.client_id), escaped(&m.client_host));
                    w.series(&[&p.cluster, &r.name, &id, &instance, &client, &host], Value::Int(1));
                }
            }
        });
        let members = family!("kafka_consumergroup_members", "gauge", CG, "Members of a consumer group.");
        self.family(out, &members, |p, w| {
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                w.series(&[&p.cluster, &r.name], Value::Int(g.members as i64));
            }
        });
    }

    /// The per-partition group families (the bulk of a large page): `value` picks the
    /// sample of one group partition, given its (lag, lost) when known.
    fn group_partition_family(
        &self,
        out: &mut Out<'_>,
        family: &Family,
        value: impl Fn(&crate::snapshot::GroupOffset, Option<(u64, u64)>) -> Option<Value>,
    ) {
        self.family(out, family, |p, w| {
            if !p.per_partition() {
                return;
            }
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                for (o, lag) in g.offsets.iter().zip(&r.lags) {
                    if let Some(v) = value(o, *lag) {
                        let mut partition = itoa::Buffer::new();
                        w.series(&[&p.cluster, &r.name, &escaped(&o.topic), partition.format(o.partition)], v);
                    }
                }
            }
        });
    }

    fn partition_lag_families(&self, out: &mut Out<'_>) {
        let committed = family!(
            "kafka_consumergroup_partition_committed_offset",
            "gauge",
            GTP,
            "Committed offset of a group on a partition."
        );
        self.group_partition_family(out, &committed, |o, _| Some(Value::Int(o.committed)));
        let lag = family!(
            "kafka_consumergroup_partition_lag",
            "gauge",
            GTP,
            "Records between the committed offset and the high watermark."
        );
        self.group_partition_family(out, &lag, |_, lag| lag.map(|(records, _)| Value::Int(records as i64)));
        let seconds = family!(
            "kafka_consumergroup_partition_lag_seconds",
            "gauge",
            GTP,
            "Age of the first record the group has not consumed (absent without enough history)."
        );
        self.group_partition_family(out, &seconds, |o, _| o.lag_seconds.map(Value::Float));
        let lost = family!(
            "kafka_consumergroup_partition_messages_lost",
            "gauge",
            GTP,
            "Records deleted before the group consumed them."
        );
        // Only partitions that lost records get a series.
        self.group_partition_family(out, &lost, |_, lag| {
            lag.and_then(|(_, gone)| (gone > 0).then_some(Value::Int(gone as i64)))
        });
        // Only the current status gets a series: five per partition would multiply the page
        // for no information (`== 1` queries work the same).
        let status = family!(
            "kafka_consumergroup_partition_status",
            "gauge",
            &["cluster", "group", "topic", "partition", "status"],
            "The partition's current lag status (Burrow's rules): one series, value 1."
        );
        self.family(out, &status, |p, w| {
            if !p.per_partition() {
                return;
            }
            for (g, r) in p.s.groups.iter().zip(&p.groups) {
                for o in &g.offsets {
                    let mut partition = itoa::Buffer::new();
                    let labels =
                        [&*p.cluster, &r.name, &escaped(&o.topic), partition.format(o.partition), o.status.name()];
                    w.series(&labels, Value::Int(1));
                }
            }
        });
    }

    fn exporter_families(&self, out: &mut Out<'_>) {
        let duration = family!(
            "kafka_exporter_collection_duration_seconds",
            "gauge",
            &["cluster"],
            "Duration of the last collection."
        );
        self.family(out, &duration, |p, w| w.series(&[&p.cluster], Value::Float(p.s.collection_seconds)));
        let errors = family!(
            "kafka_exporter_kafka_request_errors_total",
            "counter",
            &["cluster", "api", "error"],
            "Kafka requests that failed."
        );
        self.family(out, &errors, |p, w| {
            for ((api, error), count) in &p.s.errors {
                w.series(&[&p.cluster, &escaped(api), &escaped(error)], Value::Int(saturating(*count)));
            }
        });
        let requests = family!(
            "kafka_exporter_kafka_requests_total",
            "counter",
            &["cluster", "api", "broker"],
            "Kafka requests sent."
        );
        self.family(out, &requests, |p, w| {
            for ((api, broker), count) in &p.s.requests {
                let mut id = itoa::Buffer::new();
                w.series(&[&p.cluster, &escaped(api), id.format(*broker)], Value::Int(saturating(*count)));
            }
        });
        let last = family!(
            "kafka_exporter_last_collection_timestamp_seconds",
            "gauge",
            &["cluster"],
            "Unix time of the last collection."
        );
        self.family(out, &last, |p, w| w.series(&[&p.cluster], Value::Float(p.s.collected_at_unix_seconds)));
        let up = family!(
            "kafka_exporter_up",
            "gauge",
            &["cluster"],
            "Whether the last collection of the cluster fully succeeded."
        );
        self.family(out, &up, |p, w| w.series(&[&p.cluster], Value::Int(i64::from(p.s.up))));
    }

    /// The per-partition log families; `value` picks the sample of one partition.
    fn log_family(
        &self,
        out: &mut Out<'_>,
        family: &Family,
        value: impl Fn(&crate::snapshot::PartitionInfo) -> Option<i64>,
    ) {
        self.family(out, family, |p, w| {
            if !p.per_partition() {
                return;
            }
            for info in &p.s.partitions {
                if let Some(v) = value(info) {
                    let mut partition = itoa::Buffer::new();
                    w.series(&[&p.cluster, &escaped(&info.topic), partition.format(info.partition)], Value::Int(v));
                }
            }
        });
    }

    fn partition_families(&self, out: &mut Out<'_>) {
        let high =
            family!("kafka_partition_high_watermark", "gauge", TP, "High watermark (latest offset) of a partition.");
        self.log_family(out, &high, |p| p.high_watermark);
        let isr = family!("kafka_partition_in_sync_replicas", "gauge", TP, "In-sync replicas of a partition.");
        self.log_family(out, &isr, |p| Some(p.in_sync_replicas as i64));
        let lso = family!("kafka_partition_last_stable_offset", "gauge", TP, "Last stable offset of a partition.");
        self.log_family(out, &lso, |p| p.last_stable_offset);
        let low =
            family!("kafka_partition_low_watermark", "gauge", TP, "Low watermark (earliest offset) of a partition.");
        self.log_family(out, &low, |p| p.low_watermark);
        let max_timestamp = family!(
            "kafka_partition_max_timestamp_seconds",
            "gauge",
            TP,
            "Record time of the newest record of a partition (ListOffsets max timestamp, KIP-734)."
        );
        self.family(out, &max_timestamp, |p, w| {
            if !p.per_partition() {
                return;
            }
            for info in &p.s.partitions {
                if let Some(ms) = info.max_timestamp_ms {
                    let mut partition = itoa::Buffer::new();
                    let labels = [&*p.cluster, &escaped(&info.topic), partition.format(info.partition)];
                    w.series(&labels, Value::Float(ms as f64 / 1e3));
                }
            }
        });
        let replicas = family!("kafka_partition_replicas", "gauge", TP, "Replicas of a partition.");
        self.log_family(out, &replicas, |p| Some(p.replicas as i64));
        let under = family!(
            "kafka_partition_under_replicated",
            "gauge",
            TP,
            "1 when a partition has fewer in-sync replicas than replicas."
        );
        self.log_family(out, &under, |p| Some(i64::from(p.in_sync_replicas < p.replicas)));
        let partitions = family!("kafka_topic_partitions", "gauge", &["cluster", "topic"], "Partitions of a topic.");
        self.family(out, &partitions, |p, w| {
            let mut per_topic: BTreeMap<&str, i64> = BTreeMap::new();
            for info in &p.s.partitions {
                *per_topic.entry(&info.topic).or_default() += 1;
            }
            for (topic, count) in per_topic {
                w.series(&[&p.cluster, &escaped(topic)], Value::Int(count));
            }
        });
    }
}

fn saturating(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn offset(value: i64) -> Offset {
    Offset(value.max(0) as u64)
}
