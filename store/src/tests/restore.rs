use std::path::Path;

use super::*;
use crate::{Journal, JournalError, RangeRequest, RecordError, StoreError};

async fn populate(s: &Store) {
    for i in 0..40 {
        s.put(
            format!("/registry/cm/{i:02}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .await
        .unwrap();
    }
    for i in 0..10 {
        s.delete(format!("/registry/cm/{i:02}").as_bytes(), None)
            .await
            .unwrap();
    }
    s.put(b"/registry/cm/05", b"recreated").await.unwrap();
}

fn state(s: &Store) -> Vec<crate::KeyValue> {
    s.range(&RangeRequest::prefix(b"/".to_vec())).unwrap().kvs
}

fn close(s: Store) {
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
}

fn records(dir: &Path) -> Vec<Vec<u8>> {
    FileJournal::open(dir.join("journal"))
        .unwrap()
        .read_records()
        .unwrap()
}

fn write_records(dir: &Path, records: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend_from_slice(&(r.len() as u32).to_be_bytes());
        bytes.extend_from_slice(r);
    }
    std::fs::write(dir.join("journal").join("journal"), bytes).unwrap();
}

fn drop_index(dir: &Path) {
    std::fs::remove_dir_all(dir.join("index")).unwrap();
}

fn refused_at(result: crate::Result<Store>) -> (u64, RecordError) {
    match result {
        Err(StoreError::Journal(JournalError::Record { position, reason })) => (position, reason),
        Err(other) => panic!("expected a refused record, got {other}"),
        Ok(_) => panic!("expected a refused record, the store opened"),
    }
}

fn reopen_fresh(dir: &Path) -> crate::Result<Store> {
    open_with(dir, options(dir), &StaticKeys::single(KEY))
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    populate(&s).await;
    let before = state(&s);
    let rev = s.revision();
    let past = s
        .range(&RangeRequest::prefix(b"/".to_vec()).at_revision(20))
        .unwrap()
        .kvs;
    close(s);
    drop_index(dir.path());
    let s = open(dir.path());
    assert_eq!(s.revision(), rev);
    assert_eq!(state(&s), before);
    // History is rebuilt too.
    assert_eq!(
        s.range(&RangeRequest::prefix(b"/".to_vec()).at_revision(20))
            .unwrap()
            .kvs,
        past
    );
    // New writes continue the chain and the revision sequence.
    assert_eq!(
        s.put(b"/after", b"x").await.unwrap().revision(),
        Some(rev + 1)
    );
    close(s);
    let s = open(dir.path());
    assert_eq!(s.get(b"/after").unwrap().0.unwrap().value, b"x");
}

#[tokio::test]
async fn a_sealed_snapshot_bounds_the_journal_and_restores_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    populate(&s).await;
    let snap_rev = s.write_snapshot().await.unwrap();
    assert_eq!(snap_rev, s.revision());
    assert!(
        records(dir.path()).is_empty(),
        "records covered by the snapshot are pruned"
    );
    s.put(b"/registry/cm/99", b"after snapshot").await.unwrap();
    s.delete(b"/registry/cm/20", None).await.unwrap();
    let before = state(&s);
    let rev = s.revision();
    close(s);
    drop_index(dir.path());
    let s = open(dir.path());
    assert_eq!((s.revision(), state(&s)), (rev, before));
    assert_eq!(s.compacted_revision(), snap_rev);
    assert!(matches!(
        s.get_at(b"/registry/cm/30", Some(snap_rev - 1)),
        Err(StoreError::Compacted { .. })
    ));
    // An index that is still current opens without rebuilding.
    close(s);
    let s = open(dir.path());
    assert_eq!(s.revision(), rev);
}

#[tokio::test]
async fn tampered_missing_reordered_and_replayed_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..6 {
        s.put(format!("/k/{i}").as_bytes(), b"v").await.unwrap();
    }
    close(s);
    let good = records(dir.path());
    assert_eq!(good.len(), 6);
    drop_index(dir.path());

    // Any flipped byte of any record.
    for rec in [0usize, 3, 5] {
        for byte in [0usize, 5, 20, 40, good[rec].len() / 2, good[rec].len() - 1] {
            let mut bad = good.clone();
            bad[rec][byte] ^= 0x80;
            write_records(dir.path(), &bad);
            let (pos, _) = refused_at(reopen_fresh(dir.path()));
            assert!(
                pos <= rec as u64 + 1,
                "record {rec} byte {byte} refused at {pos}"
            );
            let _ = std::fs::remove_dir_all(dir.path().join("index"));
        }
    }
    // A missing record.
    let mut missing = good.clone();
    missing.remove(2);
    write_records(dir.path(), &missing);
    assert_eq!(
        refused_at(reopen_fresh(dir.path())),
        (
            2,
            RecordError::OutOfOrder {
                expected: 3,
                found: 4
            }
        )
    );
    let _ = std::fs::remove_dir_all(dir.path().join("index"));
    // Two records swapped.
    let mut swapped = good.clone();
    swapped.swap(1, 2);
    write_records(dir.path(), &swapped);
    assert_eq!(
        refused_at(reopen_fresh(dir.path())),
        (
            1,
            RecordError::OutOfOrder {
                expected: 2,
                found: 3
            }
        )
    );
    let _ = std::fs::remove_dir_all(dir.path().join("index"));
    // A replayed record.
    let mut replayed = good.clone();
    replayed.insert(4, good[3].clone());
    write_records(dir.path(), &replayed);
    assert_eq!(
        refused_at(reopen_fresh(dir.path())),
        (
            4,
            RecordError::OutOfOrder {
                expected: 5,
                found: 4
            }
        )
    );
    let _ = std::fs::remove_dir_all(dir.path().join("index"));

    // The intact journal still restores.
    write_records(dir.path(), &good);
    let s = reopen_fresh(dir.path()).unwrap();
    assert_eq!(s.revision(), 6);
}

#[tokio::test]
async fn a_journal_that_ends_before_the_index_is_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..5 {
        s.put(format!("/k/{i}").as_bytes(), b"v").await.unwrap();
    }
    close(s);
    let mut recs = records(dir.path());
    recs.truncate(3);
    write_records(dir.path(), &recs);
    assert!(matches!(
        reopen_fresh(dir.path()),
        Err(StoreError::JournalBehindIndex {
            journal: 3,
            index: 5
        })
    ));
}

#[tokio::test]
async fn records_sealed_under_another_clusters_key_are_refused() {
    let other = tempfile::tempdir().unwrap();
    let keys = StaticKeys::single([42; 32]);
    let s = open_with(
        other.path(),
        StoreOptions::new(other.path().join("index"), *b"another-cluster!"),
        &keys,
    )
    .unwrap();
    s.put(b"/k", b"theirs").await.unwrap();
    close(s);
    let theirs = records(other.path());

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("journal")).unwrap();
    write_records(dir.path(), &theirs);
    assert_eq!(
        refused_at(reopen_fresh(dir.path())),
        (0, RecordError::Unseal { seq: 1 })
    );
    // Same key material but another cluster id fails too (the id is bound in).
    let s = open_with(
        dir.path(),
        StoreOptions::new(dir.path().join("index2"), CLUSTER),
        &keys,
    );
    assert!(matches!(
        s,
        Err(StoreError::Journal(JournalError::Record {
            reason: RecordError::Unseal { .. },
            ..
        }))
    ));
}

#[tokio::test]
async fn a_tampered_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    populate(&s).await;
    s.write_snapshot().await.unwrap();
    close(s);
    drop_index(dir.path());
    let path = dir.path().join("journal").join("snapshot");
    let good = std::fs::read(&path).unwrap();
    for byte in [0, 10, 70, good.len() - 1] {
        let mut bad = good.clone();
        bad[byte] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            matches!(
                reopen_fresh(dir.path()),
                Err(StoreError::Journal(JournalError::Snapshot(_)))
            ),
            "byte {byte}"
        );
        let _ = std::fs::remove_dir_all(dir.path().join("index"));
    }
}

#[tokio::test]
async fn an_index_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.put(b"/k", b"v").await.unwrap();
    close(s);
    let r = open_with(
        dir.path(),
        StoreOptions::new(dir.path().join("index"), *b"some-other-clust"),
        &StaticKeys::single(KEY),
    );
    assert!(matches!(r, Err(StoreError::WrongCluster { .. })));
}

#[tokio::test]
async fn a_torn_final_frame_is_an_unacknowledged_write_and_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.put(b"/k", b"v").await.unwrap();
    close(s);
    let path = dir.path().join("journal").join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0, 0, 1, 0, 0xAB, 0xCD]);
    std::fs::write(&path, &bytes).unwrap();
    let s = open(dir.path());
    assert_eq!(s.revision(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, len);
}
