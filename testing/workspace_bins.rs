//! Builds the workspace's binaries from inside a test, the one way every test crate does it
//! (included with `#[path]` by `cli/tests/common`, `worker/tests/common`,
//! `worker/tests/streams_support` and `enclave/tests/attestation_http.rs`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// Runs cargo to build `bins` (package, binary) into `target_dir` (`--release` when
/// `release`), from the workspace whose root manifest is `manifest`; returns its status.
///
/// - Without the variables cargo set for the calling test crate: build scripts track some
///   (ring tracks `CARGO_MANIFEST_DIR`), and a value the workspace build did not have makes
///   them, and all that depends on them, build again.
/// - When `scripts/run-tests` built every test target (`DAAS_WORKSPACE_TESTS_BUILT`), the
///   same selection again (a no-op), where a narrower build would unify features
///   differently and compile much of the workspace a second time.
pub fn build(
    manifest: &Path,
    target_dir: &Path,
    release: bool,
    bins: &[(&str, &str)],
) -> ExitStatus {
    let mut cmd = Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let own = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&key.as_str());
        if own {
            cmd.env_remove(key);
        }
    }
    if std::env::var_os("DAAS_WORKSPACE_TESTS_BUILT").is_some() {
        // Not quiet: should this build compile anything, the test's log names it.
        cmd.args(["test", "--no-run", "--workspace", "--all-targets"]);
    } else {
        cmd.args(["build", "--quiet"]);
        for (package, bin) in bins {
            cmd.args(["-p", package, "--bin", bin]);
        }
    }
    cmd.arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    let started = std::time::Instant::now();
    let status = cmd.status().expect("running cargo");
    // Past the test harness's capture of `eprintln!`: the run's log shows it for passing
    // tests too.
    let _ = writeln!(
        std::io::stderr(),
        "workspace_bins: cargo built {bins:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    status
}
