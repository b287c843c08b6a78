use std::time::Duration;

use super::*;
use crate::{CompactionOptions, RangeRequest, StoreError, StoreOptions};

#[tokio::test]
async fn compaction_drops_old_history_but_keeps_what_reads_at_the_point_need() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/a", b"a1").await.unwrap(); // 1
    s.create(b"/b", b"b1").await.unwrap(); // 2
    s.update(b"/a", b"a2", 1).await.unwrap(); // 3
    s.delete(b"/b", None).await.unwrap(); // 4
    s.create(b"/c", b"c1").await.unwrap(); // 5
    s.update(b"/a", b"a3", 3).await.unwrap(); // 6

    let stats = s.compact(5).unwrap();
    // a@1 (superseded by a@3), b@2 and its tombstone b@4 go.
    assert_eq!(stats.versions_removed, 3);
    assert_eq!(s.compacted_revision(), 5);
    assert!(matches!(
        s.get_at(b"/a", Some(4)),
        Err(StoreError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    assert!(matches!(
        s.range(&RangeRequest::prefix(b"/".to_vec()).at_revision(1)),
        Err(StoreError::Compacted { .. })
    ));
    // At the compaction point, reads are intact.
    assert_eq!(s.get_at(b"/a", Some(5)).unwrap().0.unwrap().value, b"a2");
    assert_eq!(s.get_at(b"/b", Some(5)).unwrap().0, None);
    let at5 = s
        .range(&RangeRequest::prefix(b"/".to_vec()).at_revision(5))
        .unwrap();
    assert_eq!(
        at5.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        vec![b"/a".to_vec(), b"/c".to_vec()]
    );
    assert_eq!(s.get(b"/a").unwrap().0.unwrap().value, b"a3");
    // Compacting again at or below the point is refused; the future too.
    assert!(matches!(s.compact(5), Err(StoreError::Compacted { .. })));
    assert!(matches!(
        s.compact(100),
        Err(StoreError::FutureRevision { .. })
    ));

    // The compaction point survives a restart.
    let s = reopen(s, dir.path());
    assert_eq!(s.compacted_revision(), 5);
    assert!(matches!(
        s.get_at(b"/a", Some(4)),
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test]
async fn background_compaction_runs_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        StoreOptions::new(dir.path().join("index"), CLUSTER).with_compaction(CompactionOptions {
            window: Duration::from_millis(50),
            interval: Duration::from_millis(20),
        });
    let s = open_with(dir.path(), opts, &StaticKeys::single(KEY)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0u64;
    while s.compacted_revision() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "background compaction never ran"
        );
        s.put(b"/hot", format!("{i}").as_bytes()).await.unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Writes keep working and the newest value is intact.
    s.put(b"/hot", b"last").await.unwrap();
    assert_eq!(s.get(b"/hot").unwrap().0.unwrap().value, b"last");
    assert!(s.compacted_revision() <= s.revision());
}
