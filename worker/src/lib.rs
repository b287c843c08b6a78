//! `daas-worker`, the node agent: it verifies the enclave's attestation before it trusts it,
//! joins with a stake ticket, registers its Node and runs the pods bound to it.
//!
//! Layering: `worker` depends on `protocol`, `attestation` and `chain`, never on `enclave` or
//! `host`: it trusts the enclave only through what it verified.
//!
//! Networking (issue 18), all fed by [`network::model::ClusterModel`]:
//!
//! | module | what |
//! |---|---|
//! | [`network`] | pod network: CNI configuration, routes (host-gw or VXLAN), masquerade, pods' `resolv.conf`, dev topology |
//! | [`proxy`] | Services in nftables (kube-proxy's nftables mode) |
//! | [`dns`] | cluster DNS on every node (hickory-server) |
//! | [`netpol`] | NetworkPolicy in nftables |

pub mod dns;
pub mod netpol;
pub mod network;
pub mod proxy;
