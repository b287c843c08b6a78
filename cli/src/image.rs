//! `daas image ...`: build a reproducible enclave image (EIF) and print its PCRs, or
//! recompute the PCRs of an existing one.
//!
//! The kernel defaults to the enclave kernel `scripts/build-enclave-kernel` builds (and caches)
//! from Debian's source package with our own configuration: it sees the NSM and vsock that an
//! enclave announces on its command line. The enclave arguments default to production mode:
//! `--admin-token-file` names the admin token (created if missing) whose SHA-256 goes into the
//! measured arguments, `--root-secret-source` and `--parent-cid` choose where the root secret
//! comes from and where the parent's services are.
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
    /// The kernel (an x86_64 bzImage) [default: the enclave kernel of
    /// scripts/build-enclave-kernel, built if missing; or $DAAS_ENCLAVE_KERNEL].
    #[arg(long)]
    kernel: Option<PathBuf>,
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
    /// An argument for the enclave binary (repeat for more; measured in PCR2), after the
    /// production arguments below (or instead of them with --no-production-args).
    #[arg(long = "enclave-arg", allow_hyphen_values = true)]
    enclave_args: Vec<String>,
    /// The admin bearer token's file (created with a random token, mode 0600, if missing):
    /// its SHA-256 becomes the enclave's `--admin-token-sha256`. Required unless
    /// --no-production-args.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "no_production_args"
    )]
    admin_token_file: Option<PathBuf>,
    /// Where the production enclave gets the root secret: `kms` or `operator`.
    #[arg(long, default_value = "kms", value_parser = ["kms", "operator"])]
    root_secret_source: String,
    /// The parent instance's vsock CID (3 on Nitro; 2 under QEMU with vhost-device-vsock).
    #[arg(long, default_value_t = 3)]
    parent_cid: u32,
    /// Pass only the --enclave-arg values (e.g. a dev or test payload).
    #[arg(long)]
    no_production_args: bool,
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

/// `scripts/build-enclave-kernel` of the checkout this program was built from, or one found
/// from the current directory upward.
fn kernel_script() -> Option<PathBuf> {
    let script = Path::new("scripts/build-enclave-kernel");
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(script);
    if built_from.is_file() {
        return Some(built_from);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(script))
        .find(|p| p.is_file())
}

/// The default kernel: `$DAAS_ENCLAVE_KERNEL`, else what `scripts/build-enclave-kernel`
/// prints (it builds the kernel first if its cache has none).
fn default_kernel() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("DAAS_ENCLAVE_KERNEL").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let script = kernel_script().context(
        "no --kernel given, DAAS_ENCLAVE_KERNEL is unset, and no scripts/build-enclave-kernel \
         was found (run from a k3s-daas checkout, or pass --kernel)",
    )?;
    eprintln!("kernel: {} (builds it once if missing)", script.display());
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        anyhow::bail!("{} failed ({})", script.display(), out.status);
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(PathBuf::from(path))
}

/// Reads the admin token (one line), or creates the file with a random one (mode 0600).
fn admin_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let token = text.trim().to_owned();
        if token.is_empty() || token.contains(char::is_whitespace) {
            anyhow::bail!("{} must hold the admin token on one line", path.display());
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("created a new admin token in {}", path.display());
    Ok(token)
}

/// The production enclave's arguments (measured in PCR2).
fn production_args(args: &BuildArgs) -> anyhow::Result<Vec<String>> {
    let Some(token_file) = &args.admin_token_file else {
        anyhow::bail!("--admin-token-file is required for a production image");
    };
    let token = admin_token(token_file)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    Ok(vec![
        "--data-dir".into(),
        "/tmp/daas".into(),
        "--root-secret-source".into(),
        args.root_secret_source.clone(),
        "--parent-cid".into(),
        args.parent_cid.to_string(),
        "--admin-token-sha256".into(),
        hex::encode(digest.as_ref()),
    ])
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    let kernel = match &args.kernel {
        Some(k) => k.clone(),
        None => default_kernel()?,
    };
    let mut enclave_args = if args.no_production_args {
        Vec::new()
    } else {
        production_args(&args)?
    };
    enclave_args.extend(args.enclave_args.iter().cloned());
    let init = match args.init {
        Some(p) => p,
        None => sibling("daas-init")?,
    };
    let enclave = match args.enclave_bin {
        Some(p) => p,
        None => sibling("daas-enclave")?,
    };
    let mut spec = ImageSpec::new(&kernel, init, enclave)
        .with_cmdline(args.cmdline)
        .with_enclave_args(enclave_args)
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
