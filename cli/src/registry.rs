//! `daas registry ...`.

use clap::Subcommand;

/// `daas registry` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Placeholder until this command family is built.
    Help,
}

pub(crate) fn run(cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Help => anyhow::bail!("daas registry is not built yet"),
    }
}
