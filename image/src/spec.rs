//! From input files to an EIF: the two ramdisks, the metadata and the measurements.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::cpio::CpioArchive;
use crate::eif::EifImage;
use crate::error::{Error, Result};
use crate::kernel::{bzimage_version, check_bzimage};
use crate::layout;
use crate::pcr::Measurements;
use crate::sign::SigningIdentity;

/// Longest kernel command line on x86 (`COMMAND_LINE_SIZE`, including the NUL).
const MAX_CMDLINE: usize = 2047;

/// The inputs of an enclave image. Every byte of the result is a function of these:
/// building twice gives the same file and the same PCRs.
///
/// ```no_run
/// use image::ImageSpec;
/// let built = ImageSpec::new("/boot/vmlinuz", "target/daas-init", "target/daas-enclave")
///     .with_enclave_args(vec!["--listen".into(), "vsock://any:6443".into()])
///     .build(|_| {})?;
/// std::fs::write("daas.eif", &built.bytes).unwrap();
/// println!("{}", serde_json::to_string(&built.measurements).unwrap());
/// # Ok::<(), image::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ImageSpec {
    kernel: PathBuf,
    init: PathBuf,
    enclave: PathBuf,
    cmdline: String,
    enclave_args: Vec<String>,
    env: Vec<String>,
    modules: Vec<PathBuf>,
    files: Vec<ExtraFile>,
    name: String,
    version: String,
    build_epoch: u64,
    signing: Option<(PathBuf, PathBuf)>,
}

/// A file added to the application ramdisk besides the enclave binary.
#[derive(Debug, Clone)]
struct ExtraFile {
    path: String,
    source: PathBuf,
    perm: u32,
}

/// A step of [`ImageSpec::build`], for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// An input file was read.
    Read {
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Its size.
        bytes: usize,
    },
    /// A ramdisk was assembled.
    Ramdisk {
        /// 0 for the bootstrap, 1 for the application.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// The EIF was encoded and measured.
    Eif {
        /// Its size.
        bytes: usize,
    },
}

/// The result of [`ImageSpec::build`].
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The image's sections.
    pub eif: EifImage,
    /// The encoded EIF file.
    pub bytes: Vec<u8>,
    /// PCR0, PCR1, PCR2 (and PCR8 when signed).
    pub measurements: Measurements,
}

/// The metadata section, in the JSON shape `nitro-cli describe-eif` reads. Not measured;
/// fixed apart from the inputs so the file is reproducible.
#[derive(Debug, Serialize)]
struct Identity<'a> {
    #[serde(rename = "ImageName")]
    name: &'a str,
    #[serde(rename = "ImageVersion")]
    version: &'a str,
    #[serde(rename = "BuildMetadata")]
    build: BuildInfo,
    #[serde(rename = "DockerInfo")]
    docker: serde_json::Value,
    #[serde(rename = "CustomMetadata")]
    custom: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct BuildInfo {
    #[serde(rename = "BuildTime")]
    time: String,
    #[serde(rename = "BuildTool")]
    tool: &'static str,
    #[serde(rename = "BuildToolVersion")]
    tool_version: &'static str,
    #[serde(rename = "OperatingSystem")]
    os: &'static str,
    #[serde(rename = "KernelVersion")]
    kernel: String,
}

fn read_input(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadInput {
        what,
        path: path.to_owned(),
        source,
    })
}

fn check_line(value: &str, what: &'static str) -> Result<()> {
    if value.contains(['\n', '\0']) {
        return Err(Error::InvalidEnclaveArg {
            value: value.to_owned(),
            what,
        });
    }
    Ok(())
}

impl ImageSpec {
    /// An image of `kernel` (a bzImage) booting `init` (a static `daas-init`) which runs
    /// `enclave` (any static binary). Defaults: the Nitro x86_64 kernel command line, no
    /// arguments, no environment, no modules, name `daas-enclave`, version `0.0.0`, build
    /// time 0 (the Unix epoch).
    pub fn new(
        kernel: impl Into<PathBuf>,
        init: impl Into<PathBuf>,
        enclave: impl Into<PathBuf>,
    ) -> Self {
        Self {
            kernel: kernel.into(),
            init: init.into(),
            enclave: enclave.into(),
            cmdline: layout::NITRO_CMDLINE.to_owned(),
            enclave_args: Vec::new(),
            env: Vec::new(),
            modules: Vec::new(),
            files: Vec::new(),
            name: "daas-enclave".to_owned(),
            version: "0.0.0".to_owned(),
            build_epoch: 0,
            signing: None,
        }
    }

    /// Signs the image with a PKCS#8 PEM ECDSA P-384 key and its PEM certificate; the
    /// certificate is measured into PCR8.
    pub fn with_signing(mut self, key: impl Into<PathBuf>, cert: impl Into<PathBuf>) -> Self {
        self.signing = Some((key.into(), cert.into()));
        self
    }

    /// The kernel command line (measured in PCR0 and PCR1).
    pub fn with_cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }

    /// Arguments passed to the enclave binary (measured in PCR0 and PCR2).
    pub fn with_enclave_args(mut self, args: Vec<String>) -> Self {
        self.enclave_args = args;
        self
    }

    /// `KEY=VALUE` environment of the enclave binary (measured in PCR0 and PCR2).
    pub fn with_env(mut self, env: Vec<String>) -> Self {
        self.env = env;
        self
    }

    /// Kernel modules the init loads, in this order (measured in PCR0 and PCR1).
    pub fn with_modules(mut self, modules: Vec<PathBuf>) -> Self {
        self.modules = modules;
        self
    }

    /// Adds the contents of `source` to the application ramdisk at `path` (relative, e.g.
    /// `opt/tools/helper`) with permission bits `perm` (measured in PCR0 and PCR2): helper
    /// programs or data the enclave binary uses. The paths of the enclave binary, its
    /// command line and environment are refused when the image is built.
    pub fn with_file(
        mut self,
        path: impl Into<String>,
        source: impl Into<PathBuf>,
        perm: u32,
    ) -> Self {
        self.files.push(ExtraFile {
            path: path.into(),
            source: source.into(),
            perm,
        });
        self
    }

    /// Image name and version for the (unmeasured) metadata.
    pub fn with_identity(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = name.into();
        self.version = version.into();
        self
    }

    /// The build time recorded in the metadata, in seconds since the epoch (pass
    /// `SOURCE_DATE_EPOCH`). Not measured.
    pub fn with_build_epoch(mut self, seconds: u64) -> Self {
        self.build_epoch = seconds;
        self
    }

    /// The bootstrap ramdisk: mount points, `dev/console`, the init and the modules.
    ///
    /// # Errors
    /// [`Error::InvalidArchivePath`] for a module file name that cannot be used.
    pub fn bootstrap_ramdisk(init: Vec<u8>, modules: &[(String, Vec<u8>)]) -> Result<CpioArchive> {
        let mut rd = CpioArchive::new();
        for dir in layout::MOUNT_POINTS {
            rd.add_dir(dir, if dir == "tmp" { 0o1777 } else { 0o755 })?;
        }
        rd.add_char_device("dev/console", 0o600, 5, 1)?;
        rd.add_dir(layout::MODULES_DIR, 0o755)?;
        rd.add_file(layout::INIT, 0o755, init)?;
        for (i, (name, bytes)) in modules.iter().enumerate() {
            rd.add_file(
                &format!("{}/{i:02}-{name}", layout::MODULES_DIR),
                0o644,
                bytes.clone(),
            )?;
        }
        Ok(rd)
    }

    /// The application ramdisk: the enclave binary, its command line and environment.
    ///
    /// # Errors
    /// [`Error::InvalidEnclaveArg`] for an argument or variable with a newline or NUL, or
    /// a variable without `=`.
    pub fn app_ramdisk(enclave: Vec<u8>, args: &[String], env: &[String]) -> Result<CpioArchive> {
        let mut cmd = format!("/{}\n", layout::ENCLAVE);
        for arg in args {
            check_line(arg, "enclave argument (no newline or NUL)")?;
            cmd.push_str(arg);
            cmd.push('\n');
        }
        let mut env_file = String::new();
        for var in env {
            check_line(var, "environment variable (no newline or NUL)")?;
            if !var.contains('=') || var.starts_with('=') {
                return Err(Error::InvalidEnclaveArg {
                    value: var.clone(),
                    what: "environment variable (KEY=VALUE)",
                });
            }
            env_file.push_str(var);
            env_file.push('\n');
        }
        let mut rd = CpioArchive::new();
        rd.add_file(layout::ENCLAVE, 0o755, enclave)?;
        rd.add_file(layout::CMD_FILE, 0o644, cmd.into_bytes())?;
        rd.add_file(layout::ENV_FILE, 0o644, env_file.into_bytes())?;
        Ok(rd)
    }

    /// Reads the inputs, builds both ramdisks and the EIF, and measures it. `progress` is
    /// called after each step.
    ///
    /// # Errors
    /// [`Error::ReadInput`] for a missing input, [`Error::SigningKey`] and
    /// [`Error::SigningCert`] for signing inputs that cannot be used, [`Error::NotBzImage`] for a kernel without
    /// the x86 boot headers, [`Error::InvalidCmdline`], [`Error::InvalidEnclaveArg`],
    /// [`Error::InvalidArchivePath`] for an extra file at a reserved path, and the archive
    /// errors of [`CpioArchive`].
    pub fn build(&self, mut progress: impl FnMut(Progress)) -> Result<BuiltImage> {
        if self.cmdline.contains('\0') {
            return Err(Error::InvalidCmdline {
                reason: "it contains a NUL byte",
            });
        }
        if self.cmdline.len() > MAX_CMDLINE {
            return Err(Error::InvalidCmdline {
                reason: "it is longer than 2047 bytes",
            });
        }
        let mut read = |what, path: &Path| -> Result<Vec<u8>> {
            let bytes = read_input(what, path)?;
            progress(Progress::Read {
                what,
                path: path.to_owned(),
                bytes: bytes.len(),
            });
            Ok(bytes)
        };
        let signer = match &self.signing {
            Some((key, cert)) => {
                let key = read("signing key", key)?;
                let cert = read("signing certificate", cert)?;
                Some(SigningIdentity::from_pem(&key, cert)?)
            }
            None => None,
        };
        let kernel = read("kernel", &self.kernel)?;
        check_bzimage(&self.kernel, &kernel)?;
        let init = read("init", &self.init)?;
        let enclave = read("enclave binary", &self.enclave)?;
        let mut modules = Vec::new();
        for path in &self.modules {
            let bytes = read("kernel module", path)?;
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::InvalidArchivePath {
                    path: path.display().to_string(),
                    reason: "a module path needs a UTF-8 file name",
                }
            })?;
            modules.push((name.to_owned(), bytes));
        }

        let mut extra = Vec::with_capacity(self.files.len());
        for file in &self.files {
            if [layout::ENCLAVE, layout::CMD_FILE, layout::ENV_FILE].contains(&file.path.as_str()) {
                return Err(Error::InvalidArchivePath {
                    path: file.path.clone(),
                    reason: "reserved for the enclave binary, its command line or environment",
                });
            }
            extra.push(read("extra file", &file.source)?);
        }

        let rd0 = Self::bootstrap_ramdisk(init, &modules)?.to_bytes()?;
        progress(Progress::Ramdisk {
            index: 0,
            bytes: rd0.len(),
        });
        let mut app = Self::app_ramdisk(enclave, &self.enclave_args, &self.env)?;
        for (file, bytes) in self.files.iter().zip(extra) {
            app.add_file(&file.path, file.perm, bytes)?;
        }
        let rd1 = app.to_bytes()?;
        progress(Progress::Ramdisk {
            index: 1,
            bytes: rd1.len(),
        });

        let time = UNIX_EPOCH + Duration::from_secs(self.build_epoch);
        let identity = Identity {
            name: &self.name,
            version: &self.version,
            build: BuildInfo {
                time: humantime::format_rfc3339_seconds(time).to_string(),
                tool: "daas-image",
                tool_version: env!("CARGO_PKG_VERSION"),
                os: "linux",
                kernel: bzimage_version(&kernel).unwrap_or_default(),
            },
            docker: serde_json::Value::Null,
            custom: serde_json::Value::Null,
        };
        let metadata = serde_json::to_vec(&identity).map_err(Error::Metadata)?;
        let mut eif = EifImage::new(
            kernel,
            self.cmdline.clone().into_bytes(),
            metadata,
            vec![rd0, rd1],
        );
        let measurements = eif.measurements(signer.as_ref().map(SigningIdentity::cert_der));
        if let Some(signer) = &signer {
            eif.signature = Some(signer.signature_section(&measurements.pcr0)?);
        }
        let bytes = eif.to_bytes()?;
        progress(Progress::Eif { bytes: bytes.len() });
        Ok(BuiltImage {
            eif,
            bytes,
            measurements,
        })
    }
}
