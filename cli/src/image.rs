//! `daas image ...`: build a reproducible enclave image (EIF) and print its PCRs, or
//! recompute the PCRs of an existing one.
//!
//! This file is also compiled into the `daas-image` binary of the `image` crate (through
//! `#[path]`), so it names only crates both packages depend on.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use image::{EifImage, ImageSpec, Progress};

/// `daas image` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Build an EIF from a kernel, `daas-init` and the enclave binary; print its PCRs as JSON.
    Build(Box<BuildArgs>),
    /// Check an existing EIF (layout, CRC) and print its PCRs as JSON.
    Measure {
        /// The EIF file.
        eif: PathBuf,
    },
}

/// Inputs of `daas image build`. Every byte of the output is a function of these.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The kernel (an x86_64 bzImage).
    #[arg(long)]
    kernel: PathBuf,
    /// Where to write the EIF.
    #[arg(long)]
    out: PathBuf,
    /// Kernel command line (measured in PCR0 and PCR1).
    #[arg(long, default_value = image::layout::NITRO_CMDLINE)]
    cmdline: String,
    /// The static `daas-init` binary [default: `daas-init` next to this program].
    #[arg(long)]
    init: Option<PathBuf>,
    /// The static enclave binary [default: `daas-enclave` next to this program].
    #[arg(long)]
    enclave_bin: Option<PathBuf>,
    /// An argument for the enclave binary (repeat for more; measured in PCR2).
    #[arg(long = "enclave-arg", allow_hyphen_values = true)]
    enclave_args: Vec<String>,
    /// A `KEY=VALUE` environment variable for the enclave (repeat; measured in PCR2).
    #[arg(long = "env")]
    env: Vec<String>,
    /// A kernel module for the init to load, e.g. nsm.ko (repeat, in load order; PCR1).
    #[arg(long = "module")]
    modules: Vec<PathBuf>,
    /// Image name in the (unmeasured) metadata.
    #[arg(long, default_value = "daas-enclave")]
    name: String,
    /// Image version in the (unmeasured) metadata.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    image_version: String,
    /// Sign the image with this PKCS#8 PEM ECDSA P-384 key (needs --signing-cert).
    #[arg(long, requires = "signing_cert")]
    signing_key: Option<PathBuf>,
    /// PEM certificate of the signing key; measured into PCR8 (needs --signing-key).
    #[arg(long, requires = "signing_key")]
    signing_cert: Option<PathBuf>,
    /// Build time in the (unmeasured) metadata, seconds since the epoch.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    build_epoch: u64,
}

/// `program` next to the running executable.
fn sibling(program: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running program")?;
    Ok(exe.with_file_name(program))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    let init = match args.init {
        Some(p) => p,
        None => sibling("daas-init")?,
    };
    let enclave = match args.enclave_bin {
        Some(p) => p,
        None => sibling("daas-enclave")?,
    };
    let mut spec = ImageSpec::new(&args.kernel, init, enclave)
        .with_cmdline(args.cmdline)
        .with_enclave_args(args.enclave_args)
        .with_env(args.env)
        .with_modules(args.modules)
        .with_identity(args.name, args.image_version)
        .with_build_epoch(args.build_epoch);
    if let (Some(key), Some(cert)) = (args.signing_key, args.signing_cert) {
        spec = spec.with_signing(key, cert);
    }
    let built = spec.build(|step| match step {
        Progress::Read { what, path, bytes } => {
            eprintln!("read {what} {} ({bytes} bytes)", path.display());
        }
        Progress::Ramdisk { index, bytes } => eprintln!("ramdisk {index}: {bytes} bytes"),
        Progress::Eif { bytes } => eprintln!("EIF: {bytes} bytes"),
        _ => {}
    })?;
    write_atomically(&args.out, &built.bytes)?;
    eprintln!("wrote {}", args.out.display());
    println!("{}", serde_json::to_string_pretty(&built.measurements)?);
    Ok(())
}

fn measure(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let eif = EifImage::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid EIF", path.display()))?;
    let measurements = eif
        .measure()
        .with_context(|| format!("{} has a bad signature section", path.display()))?;
    eprintln!(
        "{}: kernel {} bytes, cmdline {:?}, {} ramdisk(s), {}",
        path.display(),
        eif.kernel.len(),
        String::from_utf8_lossy(&eif.cmdline),
        eif.ramdisks.len(),
        if eif.signature.is_some() {
            "signed (signature over PCR0 verified)"
        } else {
            "unsigned"
        },
    );
    println!("{}", serde_json::to_string_pretty(&measurements)?);
    Ok(())
}

pub(crate) fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Build(args) => build(*args),
        ImageCommand::Measure { eif } => measure(&eif),
    }
}
