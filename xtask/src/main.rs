//! `cargo xtest` (an alias for `cargo run -p xtask -- test`): every test of the
//! workspace, then the madsim host's tests, which need a build with `--cfg madsim`.
//! That build goes to its own target directory (`target/madsim`), so neither build
//! invalidates the other and nobody has to export RUSTFLAGS.

use std::process::{Command, ExitCode};

/// The `--config` that turns the madsim host on for one cargo invocation.
const MADSIM_CONFIG: &str = "build.rustflags=['--cfg','madsim']";

fn cargo(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    match Command::new(&cargo).args(args).status() {
        Ok(status) => status.success(),
        Err(error) => {
            eprintln!("xtask: cannot run {cargo}: {error}");
            false
        }
    }
}

fn test(extra: &[String]) -> bool {
    let mut workspace = vec!["test", "--release", "--workspace", "--all-targets"];
    workspace.extend(extra.iter().map(String::as_str));
    if !cargo(&workspace) {
        return false;
    }
    // Only the madsim host's tests (`madsim::`, `madsim_apps::`): the rest ran above.
    cargo(&[
        "test",
        "--release",
        "-p",
        "trial-sim",
        "--test",
        "tests",
        "--config",
        MADSIM_CONFIG,
        "--target-dir",
        "target/madsim",
        "--",
        "madsim",
    ])
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtest [extra arguments for the workspace's cargo test]");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
