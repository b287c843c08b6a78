//! `daas image ...`.

use clap::Subcommand;

/// `daas image` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Placeholder until this command family is built.
    Help,
}

pub(crate) fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Help => anyhow::bail!("daas image is not built yet"),
    }
}
