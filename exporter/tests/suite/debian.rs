//! Debian packages the tests need (kcat, prometheus), installed by the tests themselves
//! when missing. One lock for every install: two tests running apt-get at once would race
//! for dpkg's lock on a fresh machine.

use std::process::{Command, Stdio};
use std::sync::Mutex;

static APT: Mutex<()> = Mutex::new(());

fn runs(tool: &str, probe: &str) -> bool {
    Command::new(tool).arg(probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn apt(args: &[&str]) -> bool {
    Command::new("apt-get")
        // Waits for a dpkg lock held by anything outside this test binary.
        .args(["-o", "DPkg::Lock::Timeout=120"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure every tool in `tools` answers `probe` (e.g. `--version`), installing the
/// Debian package `package` with apt-get when one does not.
pub fn ensure_package(package: &str, tools: &[&str], probe: &str) {
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    if tools.iter().all(|tool| runs(tool, probe)) {
        return;
    }
    assert!(apt(&["update", "-qq"]), "apt-get update failed: the tests need Debian's {package} package (run as root)");
    assert!(apt(&["install", "-y", "-qq", "--no-install-recommends", package]), "apt-get install {package} failed");
}
