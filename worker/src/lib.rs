//! `daas-worker`, the node agent: it verifies the enclave's attestation before it trusts it,
//! joins with a stake ticket, registers its Node and runs the pods bound to it.
//!
//! Layering: `worker` depends on `protocol`, `attestation` and `chain`, never on `enclave` or
//! `host`: it trusts the enclave only through what it verified. `cli` uses its first-contact
//! code ([`attested`]) for `daas verify`, `daas kubeconfig` and `daas dev`.
//!
//! Start with [`join::join_or_resume`] (verify, then join or resume) and [`Agent`] (register
//! the Node, renew its Lease, report its status, renew its certificate, and run added tasks
//! such as the pod manager).
//!
//! | module | what |
//! |---|---|
//! | [`client`] | HTTP/1.1 over rustls, trusting the server only once attested (then only its key); typed Kubernetes requests |
//! | [`attested`] | first contact: `/attestation` with our nonce, checked by [`chain::attest::check_enclave`] |
//! | [`join`] | challenge, signed join statement, node certificate, renewal; the data directory |
//! | [`node`] | machine facts, Node registration and status, the Lease |
//! | [`agent`] | the main loop and its tasks |
//! | [`runtime`] | containerd and CRI (below the pods) |
//! | [`kubelet`] | the pod manager task: list+watch of the node's pods into [`pods::PodRuntime`], status and deletion through the node's API client |
//! | [`tunnel`] | the connection the worker keeps open to the enclave, over which the enclave reaches this node's containers (logs, exec, attach, port-forward, usage) |
//! | [`pods`] | the pod lifecycle as the kubelet runs it: one worker per pod, status, volumes, probes; the API is reached only through the seams in [`pods::api`] |
//! | [`network`] | pod network: CNI configuration, routes (host-gw or VXLAN), masquerade, pods' `resolv.conf`, dev topology; [`network::NodeNetworking`] starts all networking of a worker |
//! | [`proxy`] | Services in nftables (kube-proxy's nftables mode) |
//! | [`dns`] | cluster DNS on every node (hickory-server) |
//! | [`netpol`] | NetworkPolicy in nftables |
//!
//! | feature | what |
//! |---|---|
//! | `testing` | the in-memory fake of the API seams, `pods::fake`; the in-process fake of the container-streams seam, `tunnel::fake` |

pub mod agent;
pub mod attested;
pub mod client;
pub mod dns;
pub mod join;
pub mod kubelet;
pub mod netpol;
pub mod network;
pub mod node;
pub mod pods;
pub mod proxy;
pub mod runtime;
pub mod tunnel;

pub use agent::{Agent, AgentContext, AgentError, AgentTask};
pub use attested::{AttestError, AttestedServer, attest};
pub use join::{JoinConfig, JoinError, JoinMode, NodeFiles, join_or_resume};
