//! Store tests, by topic. Each test opens a store in its own temporary directory.
#![allow(unused_must_use)]

mod bad_input;
mod compaction;
mod position;
mod resident;
mod restore;
mod sealing;
mod semantics;
mod watch;

use std::path::Path;

use super::{FileJournal, StaticKeys, Store, StoreOptions};

pub(super) const CLUSTER: [u8; 16] = *b"test-cluster-001";
pub(super) const KEY: [u8; 32] = [7; 32];

pub(super) fn options(dir: &Path) -> StoreOptions {
    StoreOptions::new(dir.join("index"), CLUSTER)
}

pub(super) fn open_with(dir: &Path, opts: StoreOptions, keys: &StaticKeys) -> super::Result<Store> {
    let journal = FileJournal::open(dir.join("journal"))?;
    Store::open(opts, keys, Box::new(journal))
}

pub(super) fn open(dir: &Path) -> Store {
    open_with(dir, options(dir), &StaticKeys::single(KEY)).unwrap()
}

/// Drops the store and waits until its commit thread has released the
/// RocksDB lock, so the same directory can be reopened.
pub(super) fn reopen(store: Store, dir: &Path) -> Store {
    assert!(
        store.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
    open(dir)
}

/// Reopens from the journal alone and checks the state matches.
pub(super) async fn restore_check(s: Store, dir: &Path) {
    let before = s
        .range(&super::RangeRequest::prefix(b"/".to_vec()))
        .unwrap();
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let s = open(dir);
    let after = s
        .range(&super::RangeRequest::prefix(b"/".to_vec()))
        .unwrap();
    assert_eq!((after.revision, after.kvs), (before.revision, before.kvs));
}
