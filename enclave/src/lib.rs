//! The trusted K3s-DaaS control plane.
//!
//! Start with [`store`] (the `store` crate, re-exported here so that
//! `enclave::store::...` paths keep working): the sealed, revisioned
//! key-value store every API request stands on. [`boot`] obtains the root
//! secret its keys derive from; [`api`] serves the Kubernetes API over
//! [`registry`]; [`controllers`] reconcile through the same registry.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `daas-enclave` binary (clap, anyhow, tracing-subscriber); the library never uses them |
//! | `vsock` | no | listening on vsock and reaching the host's journal service and key broker over vsock (enclave mode) |

pub mod api;
pub mod boot;
pub mod controllers;
pub mod metrics;
pub mod registry;
pub mod scheduler;
pub use ::store;
