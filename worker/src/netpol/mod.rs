//! NetworkPolicy (in progress).
