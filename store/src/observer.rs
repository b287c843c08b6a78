//! What the store reports about its own work, for whoever keeps metrics.
//!
//! The store names no metrics library: the enclave implements [`StoreObserver`] over its
//! Prometheus registry (`daas_store_*`) and hands it to [`StoreOptions::with_observer`].
//!
//! [`StoreOptions::with_observer`]: crate::StoreOptions::with_observer

use std::time::Duration;

use crate::Revision;

/// Receives one call per store operation. Calls come from request tasks and the store's
/// own threads, so they must be cheap and must not block.
pub trait StoreObserver: Send + Sync + std::fmt::Debug + 'static {
    /// A write of kind `operation` (`"put"`, `"delete"`) ended with `outcome`
    /// (`"committed"`, `"failed"`: a compare did not hold, `"error"`) after `took`; the
    /// store's highest committed revision is then `revision`.
    fn write(
        &self,
        operation: &'static str,
        outcome: &'static str,
        took: Duration,
        revision: Revision,
    );

    /// A read of kind `operation` (`"get"`, `"range"`).
    fn read(&self, operation: &'static str);

    /// The compaction point is now `revision`.
    fn compacted(&self, revision: Revision);
}
