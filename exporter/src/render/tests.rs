//! Tests of the rendered page: lag formula, roll-ups, granularity, escaping, deploy-file drift.

#[cfg(test)]
mod lag_tests {
    use crate::render::*;
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
            max_timestamp_ms: Some(1_700_000_000_500),
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
        // Milliseconds in, seconds out (Prometheus convention).
        assert!(page.contains("kafka_partition_max_timestamp_seconds{cluster=\"prod\",partition=\"0\",topic=\"orders\"} 1700000000.5\n"), "{page}");
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
    use crate::render::*;
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
    use crate::render::*;
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
            ("grafana-dashboard.json", include_str!("../../../deploy/grafana-dashboard.json")),
            ("alerts.yml", include_str!("../../../deploy/alerts.yml")),
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
    use crate::render::*;
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

#[cfg(test)]
mod order_tests {
    use crate::render::*;
    use crate::snapshot::{BrokerInfo, GroupInfo, GroupOffset, LagStatus, PartitionInfo};

    // Shows every family appears once, with all its series together, families in name
    // order (text format 0.0.4: "all lines for a given metric must be provided as one
    // single group"), across two clusters — families are written one after the other.
    #[test]
    fn families_once_each_in_name_order() {
        let snapshot = |cluster: &str| Snapshot {
            cluster: cluster.into(),
            cluster_id: Some("id".into()),
            brokers: vec![BrokerInfo { id: 1, host: "h".into(), port: 9092, rack: None }],
            partitions: vec![PartitionInfo {
                topic: "t".into(),
                low_watermark: Some(0),
                high_watermark: Some(5),
                ..PartitionInfo::default()
            }],
            groups: vec![GroupInfo {
                group: "g".into(),
                offsets: vec![GroupOffset {
                    topic: "t".into(),
                    partition: 0,
                    committed: 1,
                    lag_seconds: Some(2.0),
                    status: LagStatus::Ok,
                }],
                ..GroupInfo::default()
            }],
            ..Snapshot::default()
        };
        let page = render(&[snapshot("a"), snapshot("b")], &BTreeMap::new());
        let names: Vec<&str> = page.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "families sorted and unique");
        let mut seen = Vec::new();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if seen.last() != Some(&name) {
                assert!(!seen.contains(&name), "{name} is split in two groups");
                seen.push(name);
            }
        }
        assert_eq!(seen, names, "every family with a TYPE line has series right after it");
    }
}
