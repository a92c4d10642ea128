//! Rendering speed of the exporter: 100,000 consumer-group lag series (1,000 groups × 100
//! partitions; 400,000 series, 43 MiB) into the Prometheus text format. Issue 2's target:
//! under 50 ms and under 64 MB RSS.
//!
//! Two ways are measured: streamed in 64 KiB chunks, as `/metrics` serves it (each chunk is
//! handed on and dropped, as the HTTP body does), and into one `String` (tests, small
//! pages). The peak RSS after each is printed; the peak is reset in between
//! (`/proc/self/clear_refs`), so each figure is that way's own.

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;
use std::time::Duration;
use trial_exporter::render::{render, write_page, CHUNK_BYTES};
use trial_exporter::snapshot::{GroupInfo, GroupOffset, LagStatus, PartitionInfo, Snapshot};

const GROUPS: usize = 1_000;
const PARTITIONS: i32 = 100;

fn snapshot() -> Snapshot {
    let partitions = (0..PARTITIONS)
        .map(|p| PartitionInfo {
            topic: "events".into(),
            partition: p,
            leader: 1,
            replicas: 3,
            in_sync_replicas: 3,
            low_watermark: Some(0),
            high_watermark: Some(1_000_000),
            last_stable_offset: Some(1_000_000),
            max_timestamp_ms: None,
        })
        .collect();
    let groups = (0..GROUPS)
        .map(|g| GroupInfo {
            group: format!("group-{g}"),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            coordinator: 1,
            members: 4,
            member_info: Vec::new(),
            status: LagStatus::Ok,
            offsets: (0..PARTITIONS)
                .map(|p| GroupOffset {
                    topic: "events".into(),
                    partition: p,
                    committed: 999_000,
                    lag_seconds: Some(2.5),
                    status: LagStatus::Ok,
                })
                .collect(),
        })
        .collect();
    Snapshot { cluster: "bench".into(), up: true, partitions, groups, ..Snapshot::default() }
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs`, value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn print_peak(what: &str) {
    println!("peak RSS, {what}: {} MiB", peak_rss_mib().map_or("?".into(), |m| m.to_string()));
}

fn streamed(snapshots: &[Snapshot], labels: &BTreeMap<String, String>) -> usize {
    let mut bytes = 0;
    write_page(snapshots, labels, CHUNK_BYTES, &mut |chunk| bytes += chunk.len());
    bytes
}

fn bench_render(c: &mut Criterion) {
    let snapshots = vec![snapshot()];
    let labels = BTreeMap::new();
    {
        let page = render(&snapshots, &labels);
        let lag_series = page.lines().filter(|l| l.starts_with("kafka_consumergroup_partition_lag{")).count();
        let series = page.lines().filter(|l| !l.starts_with('#')).count();
        println!("render: {lag_series} lag series, {series} series, page {} MiB", page.len() >> 20);
        assert_eq!(streamed(&snapshots, &labels), page.len(), "streamed and whole pages differ");
    }
    let mut group = c.benchmark_group("exporter");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    reset_peak_rss();
    group.bench_function("render 100k lag series, streamed in 64 KiB chunks", |b| {
        b.iter(|| streamed(&snapshots, &labels))
    });
    print_peak("streamed (snapshot + chunks)");
    reset_peak_rss();
    group.bench_function("render 100k lag series into one String", |b| b.iter(|| render(&snapshots, &labels)));
    print_peak("one String");
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
