use super::*;
use crate::store::{
    ContinueToken, Journal, JournalError, RangeRequest, StoreError, StoreOptions, TxnOutcome,
};

#[tokio::test]
async fn empty_and_oversized_keys_and_values_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(
        dir.path(),
        options(dir.path()).with_max_value_bytes(1024),
        &StaticKeys::single(KEY),
    )
    .unwrap();
    assert!(matches!(
        s.create(b"", b"v").await,
        Err(StoreError::EmptyKey)
    ));
    assert!(matches!(s.get(b""), Err(StoreError::EmptyKey)));
    assert!(matches!(
        s.put(&vec![b'k'; 9000], b"v").await,
        Err(StoreError::KeyTooLarge {
            len: 9000,
            limit: 8192
        })
    ));
    match s.put(b"/big", &vec![0; 1025]).await {
        Err(StoreError::ValueTooLarge { key, len, limit }) => {
            assert_eq!((key.as_str(), len, limit), ("/big", 1025, 1024))
        }
        other => panic!("{other:?}"),
    }
    assert!(s.put(b"/fits", &vec![0; 1024]).await.is_ok());
    assert_eq!(s.revision(), 1);
}

#[test]
fn the_default_value_limit_is_three_mebibytes() {
    assert_eq!(
        StoreOptions::new("/x", CLUSTER).max_value_bytes,
        3 * 1024 * 1024
    );
}

#[tokio::test]
async fn invalid_revisions_and_continue_tokens_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.put(b"/a", b"1").await.unwrap();
    assert!(matches!(
        s.update(b"/a", b"2", 0).await,
        Err(StoreError::InvalidRevision(0, _))
    ));
    assert!(matches!(
        s.delete(b"/a", Some(0)).await,
        Err(StoreError::InvalidRevision(0, _))
    ));
    assert!(matches!(
        s.get_at(b"/a", Some(99)),
        Err(StoreError::FutureRevision {
            requested: 99,
            current: 1
        })
    ));
    for bad in ["", "nodot", "x.00", "0.00", "5.zz"] {
        assert!(
            matches!(
                ContinueToken::decode(bad),
                Err(StoreError::InvalidContinue(_))
            ),
            "{bad}"
        );
    }
    let foreign = ContinueToken {
        revision: 1,
        after_key: b"/other/x".to_vec(),
    };
    assert!(matches!(
        s.range(&RangeRequest::prefix(b"/a".to_vec()).continuing(foreign)),
        Err(StoreError::InvalidContinue(_))
    ));
    let future = ContinueToken {
        revision: 50,
        after_key: b"/a".to_vec(),
    };
    assert!(matches!(
        s.range(&RangeRequest::prefix(b"/".to_vec()).continuing(future)),
        Err(StoreError::FutureRevision { .. })
    ));
}

/// A journal whose disk fills up: appends fail once `fail` is set.
struct FullDisk {
    inner: FileJournal,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Journal for FullDisk {
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JournalError::Io {
                op: "append",
                path: "journal".into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.append(record)
    }
    fn read_records(&mut self) -> Result<Vec<Vec<u8>>, JournalError> {
        self.inner.read_records()
    }
    fn write_snapshot(&mut self, s: &[u8], c: u64) -> Result<(), JournalError> {
        self.inner.write_snapshot(s, c)
    }
    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        self.inner.read_snapshot()
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let journal = FullDisk {
        inner: FileJournal::open(dir.path().join("journal")).unwrap(),
        fail: fail.clone(),
    };
    let s = Store::open(
        options(dir.path()),
        &StaticKeys::single(KEY),
        Box::new(journal),
    )
    .unwrap();
    s.create(b"/a", b"1").await.unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = s.create(b"/b", b"2").await.unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    // Nothing of the failed write is visible, and the revision did not move.
    assert_eq!(s.get(b"/b").unwrap().0, None);
    assert_eq!(s.revision(), 1);
    // Once space is back, writes continue on the same chain.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        s.create(b"/b", b"2").await.unwrap(),
        TxnOutcome::Committed { revision: 2, .. }
    ));
    super::restore_check(s, dir.path()).await;
}
