//! Speed of the simulator on `scenarios/bench-steady.toml` (3 brokers, 12 partitions RF=3,
//! two producers at 1,000 records/s each, 600 simulated seconds, no faults). Criterion
//! reports the time of one run; the simulated-seconds-per-wall-second ratio is printed
//! once before (the same figure `kafka-trial run … --bench` prints). `bench-groups.toml`
//! is the same cluster with a group of 3 consumers reading everything.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::time::Duration;
use trial_sim::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // measuring wall time is what a benchmark does
fn ratio(scenario: &Scenario) {
    let start = std::time::Instant::now();
    let output = trial_sim::engine::run(scenario, 1, None);
    let wall = start.elapsed().as_secs_f64();
    let sim = output.stats.sim_time_ms as f64 / 1_000.0;
    println!(
        "{}: {sim:.0} s simulated in {wall:.3} s = {:.0}x real time, {:.2} M events/s",
        scenario.name,
        sim / wall,
        output.stats.events as f64 / wall / 1e6
    );
}

fn bench_steady(c: &mut Criterion) {
    let steady = scenario("bench-steady.toml");
    ratio(&steady);
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("bench-steady 600 s", |b| b.iter(|| trial_sim::engine::run(&steady, 1, None)));
    let groups = scenario("bench-groups.toml");
    ratio(&groups);
    group.bench_function("bench-groups 600 s", |b| b.iter(|| trial_sim::engine::run(&groups, 1, None)));
    let faults = scenario("nemesis-swarm.toml");
    ratio(&faults);
    group.bench_function("nemesis-swarm 300 s", |b| b.iter(|| trial_sim::engine::run(&faults, 1, None)));
    group.finish();
}

criterion_group!(benches, bench_steady);
criterion_main!(benches);
