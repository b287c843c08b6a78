//! Where a production enclave finds its parent instance's services: vsock ports on the parent's
//! CID, the same numbers `daas launch` (and `daas-host`) bind them on. The enclave listens for
//! the relay on [`API_PORT`]; it dials everything else.
//!
//! On Nitro the parent is CID 3. QEMU's `nitro-enclave` machine with `vhost-device-vsock` in
//! socket mode treats only CID 2 as the host, so the parent CID is configurable
//! (`daas-enclave --parent-cid`) rather than assumed.

/// The parent instance's CID on Nitro.
pub const DEFAULT_PARENT_CID: u32 = 3;
/// The enclave's API listener (the host relay connects to `ENCLAVE_CID:API_PORT`).
pub const API_PORT: u32 = 6443;
/// The host's journal service (`daas-host journal`).
pub const JOURNAL_PORT: u32 = 7001;
/// The host's key broker (`daas-host keybroker`).
pub const KEY_BROKER_PORT: u32 = 7002;
/// The host's registry relay (`daas-host registry`).
pub const REGISTRY_PORT: u32 = 7003;
/// The host's outbound proxy, first route (the KMS endpoint); the Sui fullnode is the next port.
pub const OUTBOUND_PORT: u32 = 8000;
/// The host's outbound route to the audit webhook (`daas launch --audit-webhook`), apart from
/// the numbered routes above so that it does not move when they do.
pub const AUDIT_WEBHOOK_PORT: u32 = 8010;
/// The host's CONNECT proxy for admission webhooks (`daas-host outbound --connect`): the enclave
/// names each webhook's `host:port`, which the host allowlists.
pub const ADMISSION_WEBHOOK_PORT: u32 = 8011;
