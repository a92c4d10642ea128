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
pub mod matrix;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod strategies;
pub mod sweep;
pub mod trace;

pub use checkers::{check, Property, Verdicts};
pub use engine::{run, RunOutput};
pub use report::Outcome;
pub use scenario::{Scenario, ScenarioError};

/// Runs `scenario` with `seed` and judges it against the scenario's expectations.
pub fn simulate(scenario: &Scenario, seed: u64) -> Outcome {
    let output = engine::run(scenario, seed, None);
    Outcome::new(scenario, seed, output)
}
