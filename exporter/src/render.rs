//! Pure rendering of snapshots to the Prometheus text format (version 0.0.4). Fresh
//! families per render (as KMinion does), so groups and topics that are gone leave no stale
//! series. Written straight into text buffers: a page of 100,000 lag series must render in
//! milliseconds, which a metrics registry with per-series hashing cannot do.

use crate::config::Granularity;
use crate::snapshot::Snapshot;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use trial_model::lag::{lag_records, messages_lost};
use trial_model::Offset;

struct FamilyText {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Label slots in name order: `Ok(i)` is the i-th value given, `Err(j)` the j-th
    /// constant label (worked out once per family, not per series).
    order: Vec<(String, Result<usize, usize>)>,
    body: String,
}

/// One metric family; series are written as they are set.
#[derive(Clone)]
struct Family {
    text: Rc<RefCell<FamilyText>>,
    constant: Rc<Vec<(String, String)>>,
}

struct Series<'a> {
    family: &'a Family,
    values: &'a [&'a str],
}

fn escape(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends " {n}\n" without the formatting machinery (most values are offsets).
fn push_integer(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push(' ');
    if n < 0 {
        out.push('-');
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
    out.push('\n');
}

impl Family {
    fn with_label_values<'a>(&'a self, values: &'a [&'a str]) -> Series<'a> {
        Series { family: self, values }
    }
}

impl Series<'_> {
    fn start(&self) -> std::cell::RefMut<'_, FamilyText> {
        let mut text = self.family.text.borrow_mut();
        let FamilyText { name, order, body, .. } = &mut *text;
        body.push_str(name);
        if !order.is_empty() {
            body.push('{');
            for (index, (key, slot)) in order.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                body.push_str(key);
                body.push_str("=\"");
                let value = match slot {
                    Ok(i) => self.values.get(*i).copied().unwrap_or(""),
                    Err(j) => self.family.constant.get(*j).map_or("", |(_, v)| v.as_str()),
                };
                escape(body, value);
                body.push('"');
            }
            body.push('}');
        }
        text
    }

    fn set(self, value: f64) {
        let mut text = self.start();
        // Whole numbers (offsets, counts) print as integers: cheaper and exact.
        if value.fract() == 0.0 && value.abs() < 1e15 {
            push_integer(&mut text.body, value as i64);
        } else {
            let _ = writeln!(text.body, " {value}");
        }
    }

    fn inc_by(self, value: u64) {
        let mut text = self.start();
        push_integer(&mut text.body, value.min(i64::MAX as u64) as i64);
    }
}

struct Families {
    constant: Rc<Vec<(String, String)>>,
    all: RefCell<Vec<Rc<RefCell<FamilyText>>>>,
}

impl Families {
    fn family(&self, name: &'static str, help: &'static str, kind: &'static str, labels: &[&'static str]) -> Family {
        let mut order: Vec<(String, Result<usize, usize>)> =
            labels.iter().enumerate().map(|(i, l)| (l.to_string(), Ok(i))).collect();
        order.extend(self.constant.iter().enumerate().map(|(j, (k, _))| (k.clone(), Err(j))));
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let text = Rc::new(RefCell::new(FamilyText { name, help, kind, order, body: String::new() }));
        self.all.borrow_mut().push(text.clone());
        Family { text, constant: self.constant.clone() }
    }

    fn gauge(&self, name: &'static str, help: &'static str, labels: &[&'static str]) -> Family {
        self.family(name, help, "gauge", labels)
    }

    fn counter(&self, name: &'static str, help: &'static str, labels: &[&'static str]) -> Family {
        self.family(name, help, "counter", labels)
    }

    /// The page: families sorted by name, each with HELP and TYPE, empty ones left out.
    fn finish(self) -> String {
        let mut families: Vec<Rc<RefCell<FamilyText>>> = self.all.into_inner();
        families.sort_by_key(|f| f.borrow().name);
        let size = families.iter().map(|f| f.borrow().body.len() + 128).sum();
        let mut page = String::with_capacity(size);
        for family in families {
            let family = family.borrow();
            if family.body.is_empty() {
                continue;
            }
            let _ = writeln!(page, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(page, "# TYPE {} {}", family.name, family.kind);
            page.push_str(&family.body);
        }
        page
    }
}

/// Renders the snapshots of every cluster as one Prometheus text page; `labels` are added
/// to every series.
pub fn render(snapshots: &[Snapshot], labels: &BTreeMap<String, String>) -> String {
    let constant = Rc::new(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
    let f = Families { constant, all: RefCell::new(Vec::new()) };
    let up = f.gauge("kafka_exporter_up", "Whether the last collection of the cluster fully succeeded.", &["cluster"]);
    let duration =
        f.gauge("kafka_exporter_collection_duration_seconds", "Duration of the last collection.", &["cluster"]);
    let last =
        f.gauge("kafka_exporter_last_collection_timestamp_seconds", "Unix time of the last collection.", &["cluster"]);
    let requests =
        f.counter("kafka_exporter_kafka_requests_total", "Kafka requests sent.", &["cluster", "api", "broker"]);
    let errors = f.counter(
        "kafka_exporter_kafka_request_errors_total",
        "Kafka requests that failed.",
        &["cluster", "api", "error"],
    );
    let brokers = f.gauge("kafka_brokers", "Brokers in the cluster.", &["cluster"]);
    let broker_info =
        f.gauge("kafka_broker_info", "A broker of the cluster.", &["cluster", "broker_id", "host", "port", "rack"]);
    let cluster_info = f.gauge("kafka_cluster_info", "The cluster.", &["cluster", "cluster_id", "controller_id"]);
    let topic_partitions = f.gauge("kafka_topic_partitions", "Partitions of a topic.", &["cluster", "topic"]);
    let tp = ["cluster", "topic", "partition"];
    let high = f.gauge("kafka_partition_high_watermark", "High watermark (latest offset) of a partition.", &tp);
    let low = f.gauge("kafka_partition_low_watermark", "Low watermark (earliest offset) of a partition.", &tp);
    let lso = f.gauge("kafka_partition_last_stable_offset", "Last stable offset of a partition.", &tp);
    let replicas = f.gauge("kafka_partition_replicas", "Replicas of a partition.", &tp);
    let isr = f.gauge("kafka_partition_in_sync_replicas", "In-sync replicas of a partition.", &tp);
    let under = f.gauge(
        "kafka_partition_under_replicated",
        "1 when a partition has fewer in-sync replicas than replicas.",
        &tp,
    );
    let group_info = f.gauge(
        "kafka_consumergroup_info",
        "A consumer group.",
        &["cluster", "group", "state", "protocol_type", "protocol", "coordinator_id"],
    );
    let members = f.gauge("kafka_consumergroup_members", "Members of a consumer group.", &["cluster", "group"]);
    let member_info = f.gauge(
        "kafka_consumergroup_member_info",
        "A member of a consumer group (identity lives here, never on lag series).",
        &["cluster", "group", "member_id", "group_instance_id", "client_id", "client_host"],
    );
    let gtp = ["cluster", "group", "topic", "partition"];
    let committed =
        f.gauge("kafka_consumergroup_partition_committed_offset", "Committed offset of a group on a partition.", &gtp);
    let lag = f.gauge(
        "kafka_consumergroup_partition_lag",
        "Records between the committed offset and the high watermark.",
        &gtp,
    );
    let lost =
        f.gauge("kafka_consumergroup_partition_messages_lost", "Records deleted before the group consumed them.", &gtp);
    let topic_lag = f.gauge(
        "kafka_consumergroup_topic_lag",
        "Lag of a group summed over a topic's partitions.",
        &["cluster", "group", "topic"],
    );
    let group_lag =
        f.gauge("kafka_consumergroup_lag", "Lag of a group summed over all its partitions.", &["cluster", "group"]);
    let lag_seconds = f.gauge(
        "kafka_consumergroup_partition_lag_seconds",
        "Age of the first record the group has not consumed (absent without enough history).",
        &gtp,
    );
    let partition_status = f.gauge(
        "kafka_consumergroup_partition_status",
        "The partition's current lag status (Burrow's rules): one series, value 1.",
        &["cluster", "group", "topic", "partition", "status"],
    );
    let max_lag_seconds = f.gauge(
        "kafka_consumergroup_max_lag_seconds",
        "Largest lag in seconds over a group's partitions.",
        &["cluster", "group"],
    );
    let group_status = f.gauge(
        "kafka_consumergroup_status",
        "The group's current lag status (worst of its partitions): one series, value 1.",
        &["cluster", "group", "status"],
    );

    for s in snapshots {
        let c = s.cluster.as_str();
        up.with_label_values(&[c]).set(if s.up { 1.0 } else { 0.0 });
        duration.with_label_values(&[c]).set(s.collection_seconds);
        last.with_label_values(&[c]).set(s.collected_at_unix_seconds);
        for ((api, broker), count) in &s.requests {
            requests.with_label_values(&[c, api, &broker.to_string()]).inc_by(*count);
        }
        for ((api, error), count) in &s.errors {
            errors.with_label_values(&[c, api, error]).inc_by(*count);
        }
        brokers.with_label_values(&[c]).set(s.brokers.len() as f64);
        for b in &s.brokers {
            let labels = [c, &b.id.to_string(), &b.host, &b.port.to_string(), b.rack.as_deref().unwrap_or("")];
            broker_info.with_label_values(&labels).set(1.0);
        }
        if let Some(id) = &s.cluster_id {
            cluster_info.with_label_values(&[c, id, &s.controller_id.to_string()]).set(1.0);
        }
        let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &s.partitions {
            *per_topic.entry(&p.topic).or_default() += 1;
            if s.granularity == Granularity::Topic {
                continue;
            }
            let partition = p.partition.to_string();
            let labels = [c, p.topic.as_str(), partition.as_str()];
            if let Some(v) = p.high_watermark {
                high.with_label_values(&labels).set(v as f64);
            }
            if let Some(v) = p.low_watermark {
                low.with_label_values(&labels).set(v as f64);
            }
            if let Some(v) = p.last_stable_offset {
                lso.with_label_values(&labels).set(v as f64);
            }
            replicas.with_label_values(&labels).set(p.replicas as f64);
            isr.with_label_values(&labels).set(p.in_sync_replicas as f64);
            under.with_label_values(&labels).set(if p.in_sync_replicas < p.replicas { 1.0 } else { 0.0 });
        }
        for (topic, count) in per_topic {
            topic_partitions.with_label_values(&[c, topic]).set(count as f64);
        }
        // Looked up for every group partition: an index, not a scan.
        let index: BTreeMap<(&str, i32), &crate::snapshot::PartitionInfo> =
            s.partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p)).collect();
        for g in &s.groups {
            let coordinator = g.coordinator.to_string();
            group_info
                .with_label_values(&[c, &g.group, &g.state, &g.protocol_type, &g.protocol, &coordinator])
                .set(1.0);
            members.with_label_values(&[c, &g.group]).set(g.members as f64);
            for m in &g.member_info {
                let instance = m.instance_id.as_deref().unwrap_or("");
                member_info
                    .with_label_values(&[c, &g.group, &m.member_id, instance, &m.client_id, &m.client_host])
                    .set(1.0);
            }
            let mut total = 0u64;
            let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
            let mut max_seconds: Option<f64> = None;
            // Only the current status gets a series: five per partition would multiply the
            // page for no information (`== 1` queries work the same).
            group_status.with_label_values(&[c, &g.group, g.status.name()]).set(1.0);
            for o in &g.offsets {
                let partition = o.partition.to_string();
                let labels = [c, g.group.as_str(), o.topic.as_str(), partition.as_str()];
                let per_partition = s.granularity == Granularity::Partition;
                if per_partition {
                    committed.with_label_values(&labels).set(o.committed as f64);
                }
                if let Some(seconds) = o.lag_seconds {
                    if per_partition {
                        lag_seconds.with_label_values(&labels).set(seconds);
                    }
                    max_seconds = Some(max_seconds.map_or(seconds, |m: f64| m.max(seconds)));
                }
                if per_partition {
                    partition_status.with_label_values(&[c, &g.group, &o.topic, &partition, o.status.name()]).set(1.0);
                }
                // No lag series without both ends of the partition (never a made-up number).
                let Some(info) = index.get(&(o.topic.as_str(), o.partition)) else { continue };
                let (Some(end), Some(start)) = (s.readable_end(info), info.low_watermark) else { continue };
                let (end, start, at) = (offset(end), offset(start), offset(o.committed));
                let records = lag_records(end, start, at);
                if per_partition {
                    lag.with_label_values(&labels).set(records as f64);
                    // Only partitions that lost records get a series.
                    let gone = messages_lost(start, at);
                    if gone > 0 {
                        lost.with_label_values(&labels).set(gone as f64);
                    }
                }
                total += records;
                *per_topic.entry(&o.topic).or_default() += records;
            }
            for (topic, records) in per_topic {
                topic_lag.with_label_values(&[c, &g.group, topic]).set(records as f64);
            }
            group_lag.with_label_values(&[c, &g.group]).set(total as f64);
            if let Some(seconds) = max_seconds {
                max_lag_seconds.with_label_values(&[c, &g.group]).set(seconds);
            }
        }
    }
    f.finish()
}

fn offset(value: i64) -> Offset {
    Offset(value.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{GroupInfo, GroupOffset, LagStatus, PartitionInfo};

    fn snapshot() -> Snapshot {
        let partition = |partition, low, high| PartitionInfo {
            topic: "orders".into(),
            partition,
            leader: 1,
            replicas: 3,
            in_sync_replicas: 2,
            low_watermark: Some(low),
            high_watermark: Some(high),
            last_stable_offset: Some(high),
        };
        let offset = |partition, committed| GroupOffset {
            topic: "orders".into(),
            partition,
            committed,
            lag_seconds: Some(3.5),
            status: LagStatus::Warn,
        };
        let offsets = vec![offset(0, 40), offset(1, 5)];
        Snapshot {
            cluster: "prod".into(),
            up: true,
            partitions: vec![partition(0, 0, 100), partition(1, 20, 50)],
            groups: vec![GroupInfo {
                group: "billing".into(),
                state: "Stable".into(),
                members: 2,
                member_info: vec![crate::snapshot::MemberInfo {
                    member_id: "m-1".into(),
                    instance_id: None,
                    client_id: "billing-app".into(),
                    client_host: "/10.0.0.7".into(),
                }],
                offsets,
                ..GroupInfo::default()
            }],
            requests: [(("Metadata".to_string(), -1), 1)].into_iter().collect(),
            ..Snapshot::default()
        }
    }

    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    }

    // Shows the lag formula of issue 2 on rendered series: max(0, HW − max(committed, low
    // watermark)), lost records when the commit is below the low watermark, and roll-ups per
    // topic and group.
    #[test]
    fn renders_lag_per_partition_topic_and_group() {
        let page = render(&[snapshot()], &BTreeMap::new());
        assert_eq!(value(&page, "kafka_consumergroup_partition_lag{cluster=\"prod\",group=\"billing\",partition=\"0\",topic=\"orders\"}"), Some(60.0));
        assert_eq!(value(&page, "kafka_consumergroup_partition_lag{cluster=\"prod\",group=\"billing\",partition=\"1\",topic=\"orders\"}"), Some(30.0));
        assert_eq!(value(&page, "kafka_consumergroup_partition_messages_lost{cluster=\"prod\",group=\"billing\",partition=\"1\",topic=\"orders\"}"), Some(15.0));
        assert_eq!(
            value(&page, "kafka_consumergroup_topic_lag{cluster=\"prod\",group=\"billing\",topic=\"orders\"}"),
            Some(90.0)
        );
        assert_eq!(value(&page, "kafka_consumergroup_lag{cluster=\"prod\",group=\"billing\"}"), Some(90.0));
        assert_eq!(
            value(&page, "kafka_partition_under_replicated{cluster=\"prod\",partition=\"0\",topic=\"orders\"}"),
            Some(1.0)
        );
        assert!(page.contains("# TYPE kafka_exporter_kafka_requests_total counter"));
        let member =
            page.lines().find(|l| l.starts_with("kafka_consumergroup_member_info{")).expect("member info series");
        assert!(member.contains("member_id=\"m-1\"") && member.contains("client_host=\"/10.0.0.7\""), "{member}");
        let lag_line = page.lines().find(|l| l.starts_with("kafka_consumergroup_partition_lag{")).expect("lag series");
        assert!(!lag_line.contains("member_id"), "member identity stays off lag series: {lag_line}");
        assert_eq!(value(&page, "kafka_consumergroup_max_lag_seconds{cluster=\"prod\",group=\"billing\"}"), Some(3.5));
        assert_eq!(value(&page, "kafka_consumergroup_partition_status{cluster=\"prod\",group=\"billing\",partition=\"0\",status=\"WARN\",topic=\"orders\"}"), Some(1.0));
        assert_eq!(value(&page, "kafka_consumergroup_partition_status{cluster=\"prod\",group=\"billing\",partition=\"0\",status=\"OK\",topic=\"orders\"}"), None);
    }

    // Shows a group that is gone leaves no series behind (KMinion renders fresh families).
    #[test]
    fn a_gone_group_leaves_no_series() {
        let mut later = snapshot();
        later.groups.clear();
        let page = render(&[later], &BTreeMap::new());
        assert!(!page.contains("billing"), "{page}");
    }
}

#[cfg(test)]
mod granularity_tests {
    use super::*;
    use crate::snapshot::{GroupInfo, GroupOffset, LagStatus, PartitionInfo};

    // Shows granularity = topic drops per-partition series but keeps the roll-ups, and that
    // static labels reach every series (issue 2, "Operation").
    #[test]
    fn topic_granularity_and_static_labels() {
        let partition = PartitionInfo {
            topic: "t".into(),
            partition: 0,
            replicas: 1,
            in_sync_replicas: 1,
            low_watermark: Some(0),
            high_watermark: Some(9),
            ..PartitionInfo::default()
        };
        let offset =
            GroupOffset { topic: "t".into(), partition: 0, committed: 4, lag_seconds: None, status: LagStatus::Ok };
        let group = GroupInfo { group: "g".into(), offsets: vec![offset], ..GroupInfo::default() };
        let snapshot = Snapshot {
            cluster: "c".into(),
            granularity: Granularity::Topic,
            partitions: vec![partition],
            groups: vec![group],
            ..Snapshot::default()
        };
        let labels: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into_iter().collect();
        let page = render(&[snapshot], &labels);
        assert!(!page.contains("kafka_consumergroup_partition_lag{"), "{page}");
        assert!(!page.contains("kafka_partition_high_watermark{"), "{page}");
        let line = page.lines().find(|l| l.starts_with("kafka_consumergroup_topic_lag{")).expect("topic roll-up kept");
        assert!(line.contains("env=\"prod\"") && line.contains("group=\"g\"") && line.ends_with(" 5"), "{line}");
    }
}

#[cfg(test)]
mod deploy_tests {
    use super::*;
    use crate::snapshot::{BrokerInfo, GroupInfo, GroupOffset, LagStatus, PartitionInfo};

    fn full_page() -> String {
        let partition = PartitionInfo {
            topic: "t".into(),
            partition: 0,
            replicas: 3,
            in_sync_replicas: 2,
            low_watermark: Some(6),
            high_watermark: Some(9),
            last_stable_offset: Some(9),
            ..PartitionInfo::default()
        };
        let offset = GroupOffset {
            topic: "t".into(),
            partition: 0,
            committed: 4,
            lag_seconds: Some(1.0),
            status: LagStatus::Ok,
        };
        let group = GroupInfo { group: "g".into(), offsets: vec![offset], ..GroupInfo::default() };
        let snapshot = Snapshot {
            cluster: "c".into(),
            cluster_id: Some("id".into()),
            brokers: vec![BrokerInfo { id: 1, host: "h".into(), port: 9092, rack: None }],
            partitions: vec![partition],
            groups: vec![group],
            requests: [(("Metadata".to_string(), -1), 1)].into_iter().collect(),
            errors: [(("Metadata".to_string(), "timeout".to_string()), 1)].into_iter().collect(),
            ..Snapshot::default()
        };
        render(&[snapshot], &BTreeMap::new())
    }

    // Shows every metric the shipped Grafana dashboard and alert rules query is one the
    // exporter renders, so the deploy files cannot drift from the code (issue 2, "Ship a
    // Grafana dashboard and Prometheus alerting rules").
    #[test]
    fn deploy_files_query_only_rendered_metrics() {
        let page = full_page();
        let names = regex::Regex::new(r"kafka_[a-z_]+").expect("a valid regex");
        for (file, text) in [
            ("grafana-dashboard.json", include_str!("../../deploy/grafana-dashboard.json")),
            ("alerts.yml", include_str!("../../deploy/alerts.yml")),
        ] {
            let mut seen = 0;
            for name in names.find_iter(text).map(|m| m.as_str()) {
                if name.starts_with("kafka_trial") {
                    continue;
                }
                seen += 1;
                assert!(
                    page.contains(&format!("# TYPE {name} ")),
                    "{file} queries {name}, which the exporter does not render"
                );
            }
            assert!(seen > 3, "{file} queries too few metrics");
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::snapshot::BrokerInfo;

    // Shows label values are escaped as the text format requires (backslash, quote,
    // newline) and whole numbers print as integers (Prometheus exposition format 0.0.4).
    #[test]
    fn escapes_label_values_and_prints_integers() {
        let broker = BrokerInfo { id: 7, host: "a\"b\\c\nd".into(), port: 9092, rack: None };
        let snapshot =
            Snapshot { cluster: "c".into(), brokers: vec![broker], collection_seconds: 0.25, ..Snapshot::default() };
        let page = render(&[snapshot], &BTreeMap::new());
        assert!(page.contains(r#"host="a\"b\\c\nd""#), "{page}");
        assert!(page.contains("kafka_brokers{cluster=\"c\"} 1\n"), "{page}");
        assert!(page.contains("kafka_exporter_collection_duration_seconds{cluster=\"c\"} 0.25\n"), "{page}");
        assert!(page.contains("# TYPE kafka_brokers gauge\n"), "{page}");
    }
}
