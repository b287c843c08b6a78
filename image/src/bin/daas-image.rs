//! `daas-image`: the `daas image` commands as a standalone program, for build machines
//! that only need the image tooling.

#[path = "../../../cli/src/image.rs"]
mod image_cmd;

use clap::Parser;

/// Build and measure reproducible enclave images (EIF).
#[derive(Debug, Parser)]
#[command(name = "daas-image", version, about)]
struct Cli {
    #[command(subcommand)]
    command: image_cmd::ImageCommand,
}

fn main() -> anyhow::Result<()> {
    image_cmd::run(Cli::parse().command)
}
