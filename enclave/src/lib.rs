//! The trusted K3s-DaaS control plane.
//!
//! Start with [`store`]: the sealed, revisioned key-value store every API
//! request stands on.

pub mod api;
pub mod registry;
pub mod store;
