//! `daas-worker`, the node agent: it verifies the enclave's attestation before it trusts it,
//! joins with a stake ticket, registers its Node and runs the pods bound to it.
//!
//! Layering: `worker` depends on `protocol`, `attestation` and `chain`, never on `enclave` or
//! `host`: it trusts the enclave only through what it verified.
//!
//! - [`runtime`]: containerd and CRI (below the pods).
//! - [`pods`]: the pod lifecycle as the kubelet runs it: one worker per pod, status, volumes,
//!   probes; the API is reached only through the seams in [`pods::api`].
//!
//! | feature | what |
//! |---|---|
//! | `testing` | the in-memory fake of the API seams, `pods::fake` |

pub mod pods;
pub mod runtime;
