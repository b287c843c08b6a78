//! The trusted K3s-DaaS control plane.
//!
//! Start with [`store`]: the sealed, revisioned key-value store every API
//! request stands on. [`boot`] obtains the root secret its keys derive from.

pub mod admission;
pub mod api;
pub mod auth;
pub mod boot;
pub mod controllers;
pub mod registry;
pub mod store;
