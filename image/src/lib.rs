//! Reproducible enclave images: deterministic ramdisks, the EIF format and its PCRs.
//!
//! Sits beside `host` and `chain` in the layering: `cli` uses it; it depends on no other
//! crate of the workspace, and the enclave never links it. Start at [`ImageSpec`], which
//! turns a kernel, the `daas-init` binary and an enclave binary into an [`EifImage`] and
//! its [`Measurements`]; [`EifImage::from_bytes`] reads an existing file back for
//! `daas image measure`.
//!
//! The crate also ships two binaries: `daas-image` (the same commands as `daas image`) and
//! `daas-init`, the PID 1 that runs inside the enclave (see [`init`]).

pub mod cpio;
pub mod eif;
mod error;
pub mod init;
pub mod kernel;
pub mod layout;
pub mod pcr;
pub mod sign;
mod spec;

pub use cpio::CpioArchive;
pub use eif::EifImage;
pub use error::{Error, Result};
pub use pcr::{Measurements, Pcr};
pub use sign::SigningIdentity;
pub use spec::{BuiltImage, ImageSpec, Progress};
