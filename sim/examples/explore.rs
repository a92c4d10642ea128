//! Runs a scenario's `hold` expectations under generated fault plans (the proptest
//! strategies of `trial_sim::strategies`) instead of its own faults, and writes every
//! failing case as a scenario file that `kafka-trial run FILE --seed N` replays.
//!
//! `cargo run --release -q -p trial-sim --example explore -- FILE CASES RNG_SEED KINDS [CONSUMER_EPISODES]`
//!
//! KINDS picks the broker faults: `k` kills, `p` power losses, `s` graceful stops
//! (controlled shutdowns), `n` partitions (e.g. `kpn`).
//! CONSUMER_EPISODES adds up to that many consumer crashes, pauses and leave/rejoins to
//! scenarios with groups. The `violate` expectations are dropped: generated faults need
//! not produce the anomaly a file was written to show.
//!
//! The liveness phase is made at least a minute longer than the longest JoinGroup timeout
//! of the file's consumers (see `trial_sim::strategies::exploration_base`).

use std::path::Path;
use std::process::ExitCode;
use trial_sim::strategies::{exploration_base, exploration_cases, PlanKinds};
use trial_sim::{simulate, Scenario};

struct Args {
    file: String,
    cases: u32,
    rng_seed: u8,
    kinds: PlanKinds,
    consumer_episodes: usize,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let [file, cases, rng_seed, kinds, rest @ ..] = args else {
        return Err("expected FILE CASES RNG_SEED KINDS [CONSUMER_EPISODES]".into());
    };
    let cases = cases.parse().map_err(|_| format!("CASES must be a count, not {cases:?}"))?;
    let rng_seed = rng_seed.parse().map_err(|_| format!("RNG_SEED must be 0..=255, not {rng_seed:?}"))?;
    if kinds.is_empty() || !kinds.chars().all(|c| "kpsn".contains(c)) {
        return Err(format!("KINDS is made of k, p, s and n, not {kinds:?}"));
    }
    let kinds = PlanKinds {
        kill: kinds.contains('k'),
        power_loss: kinds.contains('p'),
        network: kinds.contains('n'),
        shutdown: kinds.contains('s'),
    };
    let consumer_episodes = match rest {
        [] => 0,
        [n] => n.parse().map_err(|_| format!("CONSUMER_EPISODES must be a count, not {n:?}"))?,
        _ => return Err("too many arguments".into()),
    };
    Ok(Args { file: file.clone(), cases, rng_seed, kinds, consumer_episodes })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}\nusage: explore FILE CASES RNG_SEED KINDS [CONSUMER_EPISODES]");
            return ExitCode::from(2);
        }
    };
    let base = match Scenario::load(Path::new(&args.file)) {
        Ok(scenario) => exploration_base(scenario),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let name = base.name.clone();
    let cases = exploration_cases(base, args.kinds, args.consumer_episodes, args.rng_seed);
    let out_dir = std::env::temp_dir();
    let mut failed = 0;
    for (case, generated) in (0..args.cases).zip(cases) {
        let scenario = match generated {
            Ok(scenario) => scenario,
            Err(reason) => {
                eprintln!("error: case {case}: {reason}");
                return ExitCode::from(2);
            }
        };
        let seed = u64::from(case);
        let outcome = simulate(&scenario, seed);
        if !outcome.pass {
            failed += 1;
            let file = out_dir.join(format!("explore-{name}-{}-{case}.toml", args.rng_seed));
            if let Err(error) = std::fs::write(&file, scenario.to_toml()) {
                eprintln!("error: {}: {error}", file.display());
                return ExitCode::from(2);
            }
            println!(
                "case {case}: {} · replay: kafka-trial run {} --seed {seed}",
                outcome.failures.join("; "),
                file.display()
            );
        }
    }
    println!("{}: {} cases, {failed} failed", args.file, args.cases);
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
