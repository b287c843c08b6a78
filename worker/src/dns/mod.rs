//! Cluster DNS (in progress).
