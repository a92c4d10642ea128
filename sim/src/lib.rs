//! `trial-sim`: the deterministic simulator of a Kafka cluster.
//!
//! It hosts the sans-IO model of `trial-model` on its own discrete-event [`engine`],
//! injects [`faults`], records a [`history`], runs the [`checkers`] over it and reports
//! which delivery guarantees held. A run is a pure function of `(scenario, seed)`: the
//! same pair gives a byte-identical report and the same trace hash.
//!
//! It never reads the wall clock or ambient entropy on a simulation path (the CLI's
//! `--bench` timer is the one exception, outside the run), never iterates a hash map,
//! and never makes a Kafka decision itself: those are the model's.

pub mod checkers;
pub mod engine;
pub mod faults;
pub mod groups;
pub mod history;
#[cfg(madsim)]
pub mod madsim;
pub mod matrix;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod strategies;
pub mod sweep;
pub mod trace;
pub mod txns;

pub use checkers::{check, Property, Verdicts};
pub use engine::{run, RunOutput};
pub use report::Outcome;
pub use scenario::{Scenario, ScenarioError};

/// Runs `scenario` with `seed` and judges it against the scenario's expectations.
pub fn simulate(scenario: &Scenario, seed: u64) -> Outcome {
    let output = engine::run(scenario, seed, None);
    Outcome::new(scenario, seed, output)
}

/// Which host runs the model: the engine (default, fast) or madsim (builds with
/// `--cfg madsim` only; `cargo trial-madsim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Host {
    #[default]
    Engine,
    Madsim,
}

impl Host {
    /// Whether this build has the host.
    pub fn available(self) -> bool {
        self == Host::Engine || cfg!(madsim)
    }
}

/// Runs `scenario` with `seed` on `host`; `None` when this build lacks the host.
pub fn run_on<'a>(
    host: Host,
    scenario: &'a Scenario,
    seed: u64,
    trace: Option<&'a mut dyn trace::TraceSink>,
) -> Option<RunOutput> {
    match host {
        Host::Engine => Some(engine::run(scenario, seed, trace)),
        #[cfg(madsim)]
        Host::Madsim => Some(madsim::run(scenario, seed, trace)),
        #[cfg(not(madsim))]
        Host::Madsim => None,
    }
}

/// `simulate` on `host`; `None` when this build lacks the host.
pub fn simulate_on(host: Host, scenario: &Scenario, seed: u64) -> Option<Outcome> {
    let output = run_on(host, scenario, seed, None)?;
    let mut outcome = Outcome::new(scenario, seed, output);
    outcome.replay = replay_on(host, scenario, seed);
    Some(outcome)
}

/// The command that replays `seed` of `scenario` on `host`.
pub fn replay_on(host: Host, scenario: &Scenario, seed: u64) -> String {
    match host {
        Host::Engine => scenario.replay_command(seed),
        Host::Madsim => format!("{} --host madsim", scenario.replay_command(seed)),
    }
}
