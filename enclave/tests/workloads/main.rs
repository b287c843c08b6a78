//! The workload controllers (job, cronjob, TTL-after-finished, daemonset,
//! statefulset) in the real `daas-enclave --dev` binary, driven over HTTP
//! with curl and with real kubectl. There are no kubelets: the tests
//! report pods running, ready, succeeded or failed through their status,
//! as upstream's integration tests do, and create hollow Node objects.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[path = "../common/mod.rs"]
mod common;

mod cronjob;
mod daemonset;
mod faults;
mod job;
mod replication;
mod statefulset;
mod support;
