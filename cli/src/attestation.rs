//! `daas attestation ...`: verify Nitro attestation documents.

use clap::Subcommand;

/// Attestation subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AttestationCommand {
    /// Verify an attestation document (being built: see issue 4).
    Verify,
}

pub(crate) fn run(cmd: AttestationCommand) -> anyhow::Result<()> {
    match cmd {
        AttestationCommand::Verify => anyhow::bail!("attestation verify is not built yet"),
    }
}
