//! The untrusted host: relays bytes to the enclave, keeps sealed data it cannot read, launches the enclave.
//!
//! Layering: `host` sits beside `worker` and `image` under `cli`; it depends on `protocol` (what it says to the
//! enclave) and on no enclave code, and must never see a key or a plaintext object. Everything it forwards is TLS ciphertext, everything it will store is sealed.
//!
//! Where to start:
//!
//! - [`transport`]: [`Endpoint`] (`vsock:CID:PORT`, `unix:PATH`, `IP:PORT`), [`Listener`] and [`Stream`]; the
//!   seam every host service listens and dials through.
//! - [`relay`]: [`Relay`], public TCP to the enclave with limits, timeouts, drain and PROXY v2.
//! - [`outbound`]: [`OutboundProxy`], the enclave's allowlisted way out (compare AWS `vsock-proxy`).
//! - [`metrics`]: Prometheus counters and the `/metrics` admin endpoint.
//! - [`journal`]: [`JournalService`], sealed journal storage for the enclave's store (opaque records, fsync before
//!   acknowledging, atomic snapshots).
//! - [`keybroker`]: [`KeyBroker`], the host's half of releasing the root secret to an attested enclave: it calls
//!   AWS KMS ([`kms`], [`KmsClient`]: JSON 1.1 + SigV4) with the enclave's attestation document as `Recipient` and
//!   stores the KMS-wrapped copy; it only ever handles ciphertext.
//! - [`launcher`]: `nitro-cli` driving ([`NitroCli`]) and the dev-mode child supervisor ([`DevSupervisor`]).
//! - [`bench`](mod@bench): the load behind `daas bench relay` (relay vs direct vs socat).
//! - The binary `daas-host` wires these to flags.

mod accept;
pub mod bench;
pub mod dir_lock;
pub mod error;
mod frame_io;
pub mod journal;
pub mod keybroker;
pub mod kms;
pub mod launcher;
pub mod metrics;
pub mod outbound;
pub mod relay;
mod splice;
mod tls_watch;
pub mod transport;

pub use error::{Error, Result};
pub use journal::{JournalConfig, JournalService};
pub use keybroker::KeyBroker;
pub use kms::{KmsClient, KmsEndpoint};
pub use launcher::{DevSupervisor, NitroCli};
pub use metrics::{CloseReason, TrafficMetrics};
pub use outbound::{Allowlist, OutboundProxy, OutboundRoute};
pub use relay::{DrainReport, HandshakeRule, ProxyProtocol, Relay, RelayConfig};
pub use transport::{Endpoint, Listener, PeerAddr, Stream};
