//! The generic registry: one object store over [`crate::store`] shared by
//! every kind, parameterised by each kind's [`Strategy`] from the
//! [`registry`] crate (defaults, validation, status split, field
//! selectors, table columns), after upstream's `registry/generic`. This
//! module is the registry's I/O half: reads, writes, watches, admission and
//! the kinds' store hooks; the pure half is re-exported here, so
//! `crate::registry::kinds` and friends name the crate's modules.
//!
//! Layering: `api → registry → store`. Nothing here knows about HTTP.

pub use ::registry::*;

pub mod admission;
pub mod custom;
pub mod eviction;
pub mod generic;
mod service_alloc;
pub mod watch;

pub use generic::{DeleteOptions, DeleteOutcome, ListOptions, ObjectStore, WriteOptions};
pub use watch::{WatchEvent, WatchObject, WatchOptions, WatchStream};
