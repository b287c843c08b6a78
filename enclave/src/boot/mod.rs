//! What the enclave needs before its store can open: the cluster's root secret.
//!
//! | source | where the secret comes from |
//! |---|---|
//! | file (dev) | a 0600 file under the data directory ([`attestation::RootSecret::load_or_create_dev_file`]) |
//! | KMS | [`root_secret_from_kms`]: AWS KMS releases it to this enclave's attested key, through the host's key broker (`daas-host keybroker`) |
//!
//! Whatever the source, everything after the root secret is the same code path.
//!
//! [`anchor`]: once the store is open, its journal is checked against the registry's latest
//! rollback anchor, and new anchors are recorded while it runs.

pub mod anchor;
pub mod parent;
mod root_secret;

pub use root_secret::{KeyBrokerEndpoint, RootSecretError, root_secret_from_kms};
