//! `daas-worker`, the node agent: it verifies the enclave's attestation before it trusts it,
//! joins with a stake ticket, registers its Node and runs the pods bound to it.
//!
//! Layering: `worker` depends on `protocol`, `attestation` and `chain`, never on `enclave` or
//! `host`: it trusts the enclave only through what it verified.
