//! What the enclave, the host and the workers say to each other.
//!
//! Layering: `protocol` is the bottom of the workspace. It depends on no other crate of ours
//! (and on as few outside crates as possible), so the trusted enclave, the untrusted host and
//! the workers can share one definition of every message instead of keeping copies in step.
//!
//! | module | what |
//! |---|---|
//! | [`join`] | a worker's attested join: the enclave's challenge, the [`join::JoinStatement`] its Sui account signs, the node credentials it gets back |

pub mod join;
