//! `daas verify --server URL`: attested first contact, reported.

use anyhow::Context as _;
use clap::Args;

use crate::attested::{self, ServerUrl, TrustArgs};

/// Arguments of `daas verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The server, `https://HOST[:PORT]`.
    #[arg(long, value_name = "URL")]
    server: ServerUrl,
    #[command(flatten)]
    trust: TrustArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// After a successful verification, write the attestation document
    /// (COSE_Sign1) here, e.g. for `daas registry register-enclave`.
    #[arg(long, value_name = "PATH")]
    save_document: Option<std::path::PathBuf>,
}

/// Runs `daas verify`: prints the report; fails with the first failed check.
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(attested::attest(&args.server, &args.trust));
    let report = match &outcome {
        Ok(attested) => &attested.report,
        Err(report) => &**report,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{report}");
    }
    match outcome {
        Ok(attested) => {
            if let Some(path) = &args.save_document {
                std::fs::write(path, &attested.document)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Err(report) => Err(anyhow::anyhow!(
            "{} is NOT verified: {}",
            report.server,
            report.error.as_deref().unwrap_or("unknown failure")
        )),
    }
}
