//! Sealed revisioned store.
