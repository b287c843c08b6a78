//! `daas bench ...`: runs `daas-bench` (the `bench` crate) from next to this `daas`, with the same arguments, so
//! that `daas` itself links neither the control plane nor RocksDB.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

/// The benchmark program, expected next to `daas`.
const PROGRAM: &str = "daas-bench";

/// Everything after `daas bench`, handed to `daas-bench` unchanged (`daas bench --help` lists its benchmarks).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct BenchArgs {
    /// The benchmark and its options: `store`, `relay` or `api` (see `daas bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// Replaces this process with `daas-bench ARGS...`; returns only if that fails.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let program = program()?;
    let error = std::process::Command::new(&program).args(args.args).exec();
    Err(error).with_context(|| format!("running {}", program.display()))
}

/// `daas-bench` next to this `daas`.
fn program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this `daas` executable")?;
    let program = exe.with_file_name(PROGRAM);
    anyhow::ensure!(
        program.is_file(),
        "`daas bench` runs `{PROGRAM}`, which is not next to this `daas` (no {}); build it into the same \
         target directory with `cargo build --release -p bench` (or `cargo build --release -p enclave -p host \
         -p bench -p cli` for everything)",
        program.display()
    );
    Ok(program)
}
