//! Reproducible enclave images: deterministic ramdisks, the EIF format and its PCRs.
//!
//! Sits beside `host` and `chain` in the layering: `cli` uses it; of the workspace it
//! depends only on `protocol` (for [`layout`], the contract with the init), and the enclave
//! never links it. Host-side only: the enclave's PID 1, `daas-init`, is the `init` crate.
//! Start at [`ImageSpec`], which turns a kernel, the `daas-init` binary and an enclave
//! binary into an [`EifImage`] and its [`Measurements`]; [`EifImage::from_bytes`] reads an
//! existing file back for `daas image measure`.
//!
//! The crate also ships the binary `daas-image` (the same commands as `daas image`).

pub mod cpio;
pub mod eif;
mod error;
pub mod kernel;
pub mod pcr;
pub mod sign;
mod spec;

/// Where things live inside the ramdisks (`protocol::layout`, shared with `daas-init`).
pub use protocol::layout;

pub use cpio::CpioArchive;
pub use eif::EifImage;
pub use error::{Error, Result};
pub use pcr::{Measurements, Pcr};
pub use sign::SigningIdentity;
pub use spec::{BuiltImage, ImageSpec, Progress};
