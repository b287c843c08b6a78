//! `daas-worker`, the node agent: it verifies the enclave's attestation before it trusts it,
//! joins with a stake ticket, registers its Node and runs the pods bound to it.
//!
//! Layering: `worker` depends on `protocol`, `attestation` and `chain`, never on `enclave` or
//! `host`: it trusts the enclave only through what it verified.
//!
//! - [`tunnel`]: the connection the worker keeps open to the enclave, over which the enclave
//!   reaches this node's containers (logs, exec, attach, port-forward, usage).
//!
//! | feature | what |
//! |---|---|
//! | `testing` | the in-process fake of the container-streams seam, `tunnel::fake` |

pub mod tunnel;
