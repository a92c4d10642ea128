//! The simulator's one integration-test binary (it links once, which matters on 2 cores).

#[path = "suite/checkers.rs"]
mod checkers;
#[path = "suite/cli.rs"]
mod cli;
#[path = "suite/determinism.rs"]
mod determinism;
#[path = "suite/group_checkers.rs"]
mod group_checkers;
#[path = "suite/group_properties.rs"]
mod group_properties;
#[cfg(madsim)]
#[path = "suite/madsim.rs"]
mod madsim;
#[cfg(madsim)]
#[path = "suite/madsim_apps.rs"]
mod madsim_apps;
#[cfg(madsim)]
#[path = "suite/madsim_consumers.rs"]
mod madsim_consumers;
#[cfg(madsim)]
#[path = "suite/madsim_txn_apps.rs"]
mod madsim_txn_apps;
#[path = "suite/matrix.rs"]
mod matrix;
#[path = "suite/properties.rs"]
mod properties;
#[path = "suite/scenarios.rs"]
mod scenarios;
#[path = "suite/txn_checkers.rs"]
mod txn_checkers;
