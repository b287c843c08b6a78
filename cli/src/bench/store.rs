//! `daas bench store`.

/// Options for `daas bench store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreBenchArgs {}

pub(crate) fn run(_args: StoreBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("daas bench store is not built yet")
}
