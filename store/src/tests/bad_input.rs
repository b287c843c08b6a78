use super::*;
use crate::{
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

/// A journal that fails appends on demand: while `fail` is set (a full
/// disk), and on the `failing` append numbers (a flaky disk, slowed by
/// `delay` so groups queue behind a failing one).
struct FaultyDisk {
    inner: FileJournal,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    appends: usize,
    failing: &'static [usize],
    delay: std::time::Duration,
}

impl FaultyDisk {
    fn new(dir: &std::path::Path) -> Self {
        FaultyDisk {
            inner: FileJournal::open(dir.join("journal")).unwrap(),
            fail: Default::default(),
            appends: 0,
            failing: &[],
            delay: std::time::Duration::ZERO,
        }
    }
}

impl Journal for FaultyDisk {
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        self.appends += 1;
        std::thread::sleep(self.delay);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JournalError::Io {
                op: "append",
                path: "journal".into(),
                cause: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        if self.failing.contains(&self.appends) {
            return Err(JournalError::Io {
                op: "append",
                path: "journal".into(),
                cause: std::io::Error::from_raw_os_error(5), // EIO
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
    let journal = FaultyDisk::new(dir.path());
    let fail = journal.fail.clone();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_refuses_the_groups_built_on_it_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FaultyDisk {
        failing: &[3, 4, 9, 20, 21, 22, 40],
        delay: std::time::Duration::from_millis(2),
        ..FaultyDisk::new(dir.path())
    };
    let s = Store::open(
        options(dir.path()),
        &StaticKeys::single(KEY),
        Box::new(journal),
    )
    .unwrap();
    s.create(b"/counter", b"0").await.unwrap();
    // Each writer creates its own keys and bumps the shared counter with
    // compare-and-swap, retrying refused writes.
    let mut writers = Vec::new();
    for w in 0..32u32 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            let mut bumps = 0;
            for i in 0..20u32 {
                let key = format!("/k/{w}/{i}");
                match s.create(key.as_bytes(), key.as_bytes()).await {
                    Ok(TxnOutcome::Committed { revision, .. }) => acked.push((key, revision)),
                    Ok(other) => panic!("create of a fresh key failed its compare: {other:?}"),
                    Err(StoreError::NotCommitted(_)) => refused += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
                loop {
                    let (cur, _) = s.get(b"/counter").unwrap();
                    let cur = cur.unwrap();
                    let n: u64 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match s
                        .update(b"/counter", next.as_bytes(), cur.mod_revision)
                        .await
                    {
                        Ok(TxnOutcome::Committed { .. }) => {
                            bumps += 1;
                            break;
                        }
                        Ok(TxnOutcome::Failed { .. }) | Err(StoreError::NotCommitted(_)) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            (acked, refused, bumps)
        }));
    }
    let (mut acked, mut refused, mut bumps) = (Vec::new(), 0, 0);
    for w in writers {
        let (a, r, b) = w.await.unwrap();
        acked.extend(a);
        refused += r;
        bumps += b;
    }
    assert!(refused > 0, "the schedule should have refused some creates");
    // Every acknowledged create is there at its revision; refused ones are not.
    let all = s.range(&RangeRequest::prefix(b"/k/".to_vec())).unwrap();
    assert_eq!(all.kvs.len(), acked.len());
    for (key, revision) in &acked {
        let kv = s.get(key.as_bytes()).unwrap().0.unwrap();
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
    // No increment was lost or doubled, and revisions stayed dense: one per
    // acknowledged write.
    let counter = s.get(b"/counter").unwrap().0.unwrap();
    assert_eq!(String::from_utf8(counter.value).unwrap(), bumps.to_string());
    assert_eq!(s.revision(), 1 + acked.len() as u64 + bumps);
    super::restore_check(s, dir.path()).await;
}
