//! `kafka-trial`: run, sweep, matrix and check scenarios of a simulated Kafka cluster.
//! Exit codes: 0 expectations held, 1 an expectation failed, 2 bad input or usage.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trial_sim::scenario::matrix::{Cell, Matrix};
use trial_sim::scenario::Scenario;
use trial_sim::sweep::{shard_range, sweep_on, SeedResult, SWEEP_SEEDS_MAX};
use trial_sim::trace::JsonLines;
use trial_sim::{Host, Outcome};

#[derive(Parser)]
#[command(name = "kafka-trial", version, about = "Deterministic simulation of a Kafka cluster under faults")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed and print its report.
    Run {
        file: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
        /// Write the full history as JSON lines to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Also print speed: simulated seconds per wall second, events/s, peak memory.
        #[arg(long)]
        bench: bool,
        /// Run one cell of the file's [matrix], e.g. commit=auto,acks=all (as `matrix` prints it).
        #[arg(long)]
        cell: Option<String>,
        /// Which host runs the model: the engine, or madsim (a build with `--cfg madsim`:
        /// `cargo trial-madsim run FILE --host madsim`).
        #[arg(long, value_enum, default_value_t = Host::Engine)]
        host: Host,
    },
    /// Run many seeds on all cores and report every failing seed.
    Sweep {
        file: PathBuf,
        /// Seed range, e.g. 0..1000 (end exclusive).
        #[arg(long, default_value = "0..100")]
        seeds: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only slice I of N of the range (0-based), e.g. 3/16.
        #[arg(long)]
        shard: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Which host runs the model (madsim: a build with `--cfg madsim`, `cargo trial-madsim`).
        #[arg(long, value_enum, default_value_t = Host::Engine)]
        host: Host,
    },
    /// Run every cell of the file's [matrix] over the seeds and print a table of the
    /// semantics each showed, with a replay command per kind of violation.
    Matrix {
        file: PathBuf,
        /// Seed range per cell, e.g. 0..20 (end exclusive).
        #[arg(long, default_value = "0..10")]
        seeds: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Which host runs the model (madsim: a build with `--cfg madsim`, `cargo trial-madsim`).
        #[arg(long, value_enum, default_value_t = Host::Engine)]
        host: Host,
    },
    /// Validate scenario files without running them.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kafka-trial: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { file, seed, json, trace, bench, cell, host } => {
            run(&file, seed, json, trace.as_deref(), bench, cell.as_deref(), host)
        }
        Command::Sweep { file, seeds, jobs, shard, json, host } => {
            run_sweep(&file, &seeds, jobs, shard.as_deref(), json, host)
        }
        Command::Matrix { file, seeds, jobs, json, host } => run_matrix(&file, &seeds, jobs, json, host),
        Command::Check { files } => Ok(check(&files)),
    }
}

fn load(file: &Path) -> Result<Scenario, ExitCode> {
    load_with_matrix(file).map(|(scenario, _)| scenario)
}

/// A bad `[matrix]` is bad input for every command, not only for `matrix`.
fn load_with_matrix(file: &Path) -> Result<(Scenario, Option<Matrix>), ExitCode> {
    trial_sim::scenario::matrix::load(file).map_err(|error| {
        eprintln!("kafka-trial: {error}");
        ExitCode::from(2)
    })
}

fn exit_for(pass: bool) -> ExitCode {
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(
    file: &Path,
    seed: u64,
    json: bool,
    trace: Option<&Path>,
    bench: bool,
    cell: Option<&str>,
    host: Host,
) -> anyhow::Result<ExitCode> {
    if !host.available() {
        eprintln!(
            "kafka-trial: this build has no madsim host (it needs --cfg madsim); run `cargo trial-madsim run {} --host madsim`",
            file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let (scenario, matrix) = match load_with_matrix(file) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let (scenario, cell) = match select_cell(file, scenario, matrix, cell) {
        Ok(selected) => selected,
        Err(code) => return Ok(code),
    };
    let mut sink = match trace {
        Some(path) => {
            let file =
                std::fs::File::create(path).with_context(|| format!("cannot create trace file {}", path.display()))?;
            Some(JsonLines::new(std::io::BufWriter::new(file)))
        }
        None => None,
    };
    let timer = WallTimer::start();
    let sink_ref = sink.as_mut().map(|s| s as &mut dyn trial_sim::trace::TraceSink);
    let Some(output) = trial_sim::run_on(host, &scenario, seed, sink_ref) else {
        return Ok(ExitCode::from(2));
    };
    let wall_seconds = timer.seconds();
    if let Some(sink) = sink {
        sink.finish().with_context(|| {
            format!("cannot write trace file {}", trace.map(|p| p.display().to_string()).unwrap_or_default())
        })?;
    }
    let mut outcome = Outcome::new(&scenario, seed, output);
    outcome.replay = trial_sim::replay_on(host, &scenario, seed);
    if let Some(cell) = &cell {
        outcome.replay = trial_sim::scenario::matrix::replay_command(&scenario, seed, cell);
        if host == Host::Madsim {
            outcome.replay.push_str(" --host madsim");
        }
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        let mut value = outcome.json(&scenario);
        if bench {
            value["bench"] = bench_json(&outcome, wall_seconds);
        }
        writeln!(stdout, "{value}")?;
    } else {
        let text = outcome.text(&scenario);
        let (body, last) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim_end()));
        writeln!(stdout, "{body}")?;
        if bench {
            let b = bench_json(&outcome, wall_seconds);
            writeln!(
                stdout,
                "bench: {:.1} s simulated in {:.3} s wall = {:.0}x real time · {:.2} M events/s · {:.2} M messages/s · peak RSS {} MiB",
                b["sim_seconds"].as_f64().unwrap_or(0.0),
                wall_seconds,
                b["sim_seconds_per_wall_second"].as_f64().unwrap_or(0.0),
                b["events_per_second"].as_f64().unwrap_or(0.0) / 1e6,
                b["messages_per_second"].as_f64().unwrap_or(0.0) / 1e6,
                b["peak_rss_mib"].as_u64().map_or("?".into(), |m| m.to_string()),
            )?;
        }
        writeln!(stdout, "{last}")?;
    }
    Ok(exit_for(outcome.pass))
}

fn bench_json(outcome: &Outcome, wall_seconds: f64) -> serde_json::Value {
    let stats = &outcome.run.stats;
    let wall = wall_seconds.max(1e-9);
    let sim_seconds = stats.sim_time_ms as f64 / 1_000.0;
    serde_json::json!({
        "wall_seconds": wall_seconds,
        "sim_seconds": sim_seconds,
        "sim_seconds_per_wall_second": sim_seconds / wall,
        "events_per_second": stats.events as f64 / wall,
        "messages_per_second": stats.messages as f64 / wall,
        "peak_rss_mib": peak_rss_mib(),
    })
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Wall-clock timing for `--bench` and sweeps only; never inside a simulation.
struct WallTimer(std::time::Instant);

impl WallTimer {
    #[allow(clippy::disallowed_methods)] // measuring the simulator, not simulating
    fn start() -> WallTimer {
        WallTimer(std::time::Instant::now())
    }

    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

fn parse_seeds(text: &str) -> anyhow::Result<Range<u64>> {
    let (start, end) =
        text.split_once("..").with_context(|| format!("--seeds `{text}`: write START..END, e.g. 0..1000"))?;
    let start: u64 = start.trim().parse().with_context(|| format!("--seeds `{text}`: `{start}` is not a number"))?;
    let end: u64 = end.trim().parse().with_context(|| format!("--seeds `{text}`: `{end}` is not a number"))?;
    anyhow::ensure!(start < end, "--seeds `{text}`: the range is empty (the end is exclusive)");
    anyhow::ensure!(
        end - start <= SWEEP_SEEDS_MAX,
        "--seeds `{text}`: at most {SWEEP_SEEDS_MAX} seeds per invocation; use --shard"
    );
    Ok(start..end)
}

fn parse_shard(text: &str) -> anyhow::Result<(u64, u64)> {
    let (index, count) = text.split_once('/').with_context(|| format!("--shard `{text}`: write I/N, e.g. 0/4"))?;
    let index: u64 = index.trim().parse().with_context(|| format!("--shard `{text}`: `{index}` is not a number"))?;
    let count: u64 = count.trim().parse().with_context(|| format!("--shard `{text}`: `{count}` is not a number"))?;
    anyhow::ensure!(count > 0 && index < count, "--shard `{text}`: I must be below N (shards are numbered from 0)");
    Ok((index, count))
}

fn run_sweep(
    file: &Path,
    seeds: &str,
    jobs: Option<usize>,
    shard: Option<&str>,
    json: bool,
    host: Host,
) -> anyhow::Result<ExitCode> {
    if !host.available() {
        eprintln!(
            "kafka-trial: this build has no madsim host (it needs --cfg madsim); run `cargo trial-madsim sweep {} --host madsim`",
            file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let scenario = match load(file) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut range = parse_seeds(seeds)?;
    if let Some(shard) = shard {
        let (index, count) = parse_shard(shard)?;
        range = shard_range(range, index, count);
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let total = range.end - range.start;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} seeds · {per_sec} · eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Panics are reported per seed; keep their default message off the progress bar.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let timer = WallTimer::start();
    let Some(results) = sweep_on(host, &scenario, range.clone(), jobs, &|done| bar.set_position(done)) else {
        return Ok(ExitCode::from(2));
    };
    let wall = timer.seconds();
    std::panic::set_hook(default_hook);
    bar.finish_and_clear();
    let failed: Vec<_> = results.iter().filter(|r| r.result != SeedResult::Pass).collect();
    let mut totals: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
    for result in &results {
        for (property, count) in &result.violations {
            let entry = totals.entry(property).or_default();
            entry.0 += u64::from(*count > 0);
            entry.1 += count;
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let failures: Vec<_> = failed
            .iter()
            .map(|r| {
                let (kind, reasons) = match &r.result {
                    SeedResult::Fail(reasons) => ("fail", reasons.clone()),
                    SeedResult::Panic(message) => ("panic", vec![message.clone()]),
                    SeedResult::Pass => ("pass", vec![]),
                };
                serde_json::json!({"seed": r.seed, "kind": kind, "reasons": reasons, "replay": trial_sim::replay_on(host, &scenario, r.seed)})
            })
            .collect();
        let properties: serde_json::Map<String, serde_json::Value> = totals
            .iter()
            .map(|(p, (seeds, violations))| {
                (p.to_string(), serde_json::json!({"seeds_violated": seeds, "violations": violations}))
            })
            .collect();
        let value = serde_json::json!({
            "scenario": scenario.name,
            "seeds": {"start": range.start, "end": range.end},
            "runs": results.len(),
            "passed": results.len() - failed.len(),
            "failed": failed.len(),
            "failures": failures,
            "properties": properties,
            "wall_seconds": wall,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "sweep {} · seeds {}..{} · {} job(s) · {:.1} s",
            scenario.name, range.start, range.end, jobs, wall
        )?;
        writeln!(out, "properties (seeds violated / violations):")?;
        for (property, (seeds, violations)) in &totals {
            writeln!(out, "  {property:<32} {seeds:>6} / {violations}")?;
        }
        for r in &failed {
            let why = match &r.result {
                SeedResult::Fail(reasons) => reasons.join("; "),
                SeedResult::Panic(message) => format!("PANIC: {message}"),
                SeedResult::Pass => String::new(),
            };
            writeln!(out, "FAIL seed={} ({why}) · replay: {}", r.seed, trial_sim::replay_on(host, &scenario, r.seed))?;
        }
        writeln!(out, "{} passed, {} failed", results.len() - failed.len(), failed.len())?;
    }
    Ok(exit_for(failed.is_empty()))
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match trial_sim::scenario::matrix::load(file) {
            Ok((scenario, matrix)) => {
                let faults = scenario.faults.len();
                let nemesis = if scenario.nemesis.is_some() { " + nemesis" } else { "" };
                let grid = matrix.map_or(String::new(), |m| format!(" · [matrix] of {} cells", m.size()));
                println!(
                    "ok {}: {} broker(s), {} topic(s), {} producer(s), {faults} scheduled fault(s){nemesis}, {} ms{grid}",
                    file.display(),
                    scenario.brokers,
                    scenario.topics.len(),
                    scenario.producers.len(),
                    scenario.duration_ms
                );
            }
            Err(error) => {
                eprintln!("kafka-trial: {error}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

// ---- kafka-trial matrix and run --cell ----

/// The scenario `run` runs: the file's own, or one cell of its `[matrix]`.
fn select_cell(
    file: &Path,
    scenario: Scenario,
    matrix: Option<Matrix>,
    cell: Option<&str>,
) -> Result<(Scenario, Option<Cell>), ExitCode> {
    let Some(text) = cell else { return Ok((scenario, None)) };
    let Some(matrix) = matrix else {
        eprintln!("kafka-trial: --cell `{text}`: {} has no [matrix] to select a cell of", file.display());
        return Err(ExitCode::from(2));
    };
    match matrix.parse_cell(text) {
        Ok(cell) => Ok((matrix.apply(&scenario, &cell), Some(cell))),
        Err(message) => {
            eprintln!("kafka-trial: --cell `{text}`: {message}");
            Err(ExitCode::from(2))
        }
    }
}

fn run_matrix(file: &Path, seeds: &str, jobs: Option<usize>, json: bool, host: Host) -> anyhow::Result<ExitCode> {
    if !host.available() {
        eprintln!(
            "kafka-trial: this build has no madsim host (it needs --cfg madsim); run `cargo trial-madsim matrix {} --host madsim`",
            file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let (scenario, matrix) = match load_with_matrix(file) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let Some(matrix) = matrix else {
        eprintln!(
            "kafka-trial: {}: no [matrix] table; `matrix` runs a grid of settings declared there",
            file.display()
        );
        return Ok(ExitCode::from(2));
    };
    let range = parse_seeds(seeds)?;
    let runs = (range.end - range.start).saturating_mul(matrix.size() as u64);
    anyhow::ensure!(
        runs <= SWEEP_SEEDS_MAX,
        "--seeds `{seeds}`: {} cells × {} seeds is more than {SWEEP_SEEDS_MAX} runs",
        matrix.size(),
        range.end - range.start
    );
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let bar = ProgressBar::new(runs);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs · {per_sec} · eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Panics are reported per run; keep their default message off the progress bar.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let timer = WallTimer::start();
    let report =
        trial_sim::matrix::run_matrix_on(host, &scenario, &matrix, range.clone(), jobs, &|done| bar.set_position(done));
    let Some(report) = report else { return Ok(ExitCode::from(2)) };
    let wall = timer.seconds();
    std::panic::set_hook(default_hook);
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        let mut value = report.json();
        value["jobs"] = jobs.into();
        value["wall_seconds"] = wall.into();
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "matrix {} · {} cells × seeds {}..{} = {} runs · {jobs} job(s) · {wall:.1} s",
            scenario.name,
            report.cells.len(),
            range.start,
            range.end,
            report.runs()
        )?;
        write!(out, "{}", report.text())?;
    }
    Ok(exit_for(report.pass()))
}
