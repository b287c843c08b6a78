//! The cluster controllers and admission plugins in the real
//! `daas-enclave --dev` binary: node lifecycle and IPAM, taint-based
//! eviction, endpoints and endpointslices, service accounts and the root
//! CA, the system namespaces and `default/kubernetes`, pod GC, disruption
//! budgets with the eviction API and `kubectl drain`, resource quota and
//! LimitRange, and `/metrics`. There are no kubelets: tests create hollow
//! Node objects and Leases and patch pod status, as upstream's integration
//! tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[path = "../common/mod.rs"]
mod common;

mod disruption;
mod endpoints;
mod metrics;
mod namespaces;
mod nodes;
mod quota;
mod support;
