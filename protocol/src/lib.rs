//! What the enclave, the host and the workers say to each other.
//!
//! Layering: `protocol` is the bottom of the workspace. It depends on no other crate of ours
//! and on few outside crates (the framed protocols on `std` only; [`join`] on serde and
//! BCS), so the trusted enclave, the untrusted host and the workers
//! can share one definition of every message instead of keeping copies in step. It does no
//! networking of its own: pure encode/decode functions, plus blocking `std::io` helpers;
//! async callers read bytes with their runtime and hand them to the pure decoders.
//!
//! Where to start:
//!
//! - [`join`]: a worker's attested join: the enclave's challenge, the
//!   [`join::JoinStatement`] its Sui account signs, the node credentials it gets back.
//! - [`frame`]: `u32 BE length | kind u8 | body`, the framing of the journal and key broker
//!   protocols ([`frame::read_frame`], [`frame::write_frame`], [`frame::decode`]).
//! - [`journal`]: the sealed journal protocol between the enclave's store and `daas-host
//!   journal`.
//! - [`keybroker`]: the root-secret request between the enclave and `daas-host keybroker`.
//! - [`layout`]: where the image builder puts the enclave's files and the init finds them, and the
//!   boot heartbeat.
//! - [`parent`]: the vsock ports of the parent instance's services a production enclave dials.
//! - [`supervision`]: the `--exit-with-parent PID` contract: [`supervision::parent_gone`]
//!   resolves when the process that started this one is gone.
//! - [`tunnel`]: the node tunnel: the requests the enclave makes of a worker over the
//!   connection the worker keeps open (logs, exec, attach, port-forward, usage), their framing
//!   and the usage sample.
//! - [`Endpoint`]: `unix:PATH`, `vsock:CID:PORT` and TCP addresses, parsed and displayed the
//!   same way by every binary.

pub mod endpoint;
pub mod frame;
pub mod join;
pub mod journal;
pub mod keybroker;
pub mod layout;
pub mod parent;
pub mod supervision;
pub mod tunnel;

pub use endpoint::{Endpoint, EndpointError};
pub use frame::{Frame, FrameError};
