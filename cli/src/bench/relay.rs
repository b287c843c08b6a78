//! `daas bench relay`.

/// Options for `daas bench relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayBenchArgs {}

pub(crate) fn run(_args: RelayBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("daas bench relay is not built yet")
}
