//! The resident copy of the current state answers exactly as the index does.

use super::*;
use crate::{RangeRequest, StoreError};

fn open_resident(dir: &Path, max_bytes: usize) -> Store {
    open_with(
        dir,
        options(dir).with_resident_max_bytes(max_bytes),
        &StaticKeys::single(KEY),
    )
    .unwrap()
}

/// Every range and get `a` answers (from memory) equals `b`'s (from RocksDB).
fn assert_same_reads(a: &Store, b: &Store, keys: &[Vec<u8>]) {
    for prefix in [&b"/"[..], b"/r/a/", b"/r/b/", b"/r/a/x"] {
        for limit in [0, 1, 3] {
            let mut req = RangeRequest::prefix(prefix.to_vec()).with_limit(limit);
            loop {
                let (ra, rb) = (a.range(&req).unwrap(), b.range(&req).unwrap());
                assert_eq!(
                    (&ra.kvs, ra.revision, &ra.next),
                    (&rb.kvs, rb.revision, &rb.next),
                    "prefix {prefix:?} limit {limit}"
                );
                assert_eq!(ra.derived.len(), ra.kvs.len());
                match ra.next {
                    Some(t) => {
                        req = RangeRequest::prefix(prefix.to_vec())
                            .with_limit(limit)
                            .continuing(t)
                    }
                    None => break,
                }
            }
        }
    }
    for key in keys {
        assert_eq!(a.get(key).unwrap(), b.get(key).unwrap(), "{key:?}");
    }
}

#[tokio::test]
async fn reads_from_memory_equal_reads_from_the_index_after_every_kind_of_write() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_resident(da.path(), 64 << 20);
    let b = open_resident(db.path(), 0);
    assert!(a.shared.resident.held_bytes().is_some());
    assert!(b.shared.resident.held_bytes().is_none());
    let keys: Vec<Vec<u8>> = (0..12)
        .map(|i| format!("/r/{}/x{i:02}", if i % 3 == 0 { "b" } else { "a" }).into_bytes())
        .collect();
    for (step, key) in keys.iter().enumerate() {
        for s in [&a, &b] {
            s.create(key, format!("v{step}").as_bytes()).await.unwrap();
        }
        assert_same_reads(&a, &b, &keys);
    }
    // Updates, deletes (conditional and not), re-creates, a put over a deleted key.
    for (step, key) in keys.iter().enumerate() {
        for s in [&a, &b] {
            let (current, _) = s.get(key).unwrap();
            let rev = current.unwrap().mod_revision;
            match step % 4 {
                0 => drop(s.update(key, b"updated", rev).await.unwrap()),
                1 => drop(s.delete(key, Some(rev)).await.unwrap()),
                2 => {
                    s.delete(key, None).await.unwrap();
                    s.put(key, b"again").await.unwrap();
                }
                _ => drop(s.update(key, b"stale", rev - 1).await.unwrap()),
            }
        }
        assert_same_reads(&a, &b, &keys);
    }
    // Concurrent writers land in shared groups; the copy applies each group whole.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            a.put(
                format!("/r/a/x{:02}", i % 12).as_bytes(),
                format!("c{i}").as_bytes(),
            )
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let now = a.range(&RangeRequest::prefix(b"/r/".to_vec())).unwrap();
    let reopened = {
        assert!(a.close(std::time::Duration::from_secs(10)));
        open_resident(da.path(), 0)
    };
    let index = reopened
        .range(&RangeRequest::prefix(b"/r/".to_vec()))
        .unwrap();
    assert_eq!((now.kvs, now.revision), (index.kvs, index.revision));
}

#[tokio::test]
async fn a_range_continued_after_writes_reads_the_first_pages_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..6 {
        s.create(format!("/p/{i}").as_bytes(), b"old")
            .await
            .unwrap();
    }
    let first = s
        .range(&RangeRequest::prefix(b"/p/".to_vec()).with_limit(2))
        .unwrap();
    assert_eq!(first.revision, 6);
    // Unchanged since: the next page still comes from memory, at the same revision.
    let second = s
        .range(
            &RangeRequest::prefix(b"/p/".to_vec())
                .with_limit(2)
                .continuing(first.next.clone().unwrap()),
        )
        .unwrap();
    assert_eq!(second.revision, 6);
    s.put(b"/p/5", b"new").await.unwrap();
    s.delete(b"/p/4", None).await.unwrap();
    let rest = s
        .range(&RangeRequest::prefix(b"/p/".to_vec()).continuing(second.next.unwrap()))
        .unwrap();
    assert_eq!(rest.revision, 6);
    let values: Vec<(&[u8], &[u8])> = rest
        .kvs
        .iter()
        .map(|kv| (kv.key.as_slice(), kv.value.as_slice()))
        .collect();
    assert_eq!(values, [(&b"/p/4"[..], &b"old"[..]), (b"/p/5", b"old")]);
    let now = s.range(&RangeRequest::prefix(b"/p/".to_vec())).unwrap();
    assert_eq!(now.revision, 8);
    assert_eq!(now.kvs.len(), 5);
}

#[tokio::test]
async fn a_keys_slot_is_shared_by_reads_until_its_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/k/a", b"1").await.unwrap();
    let derive = |s: &Store| -> u64 {
        let page = s.range(&RangeRequest::prefix(b"/k/".to_vec())).unwrap();
        let revision = page.kvs[0].mod_revision;
        *page.derived[0].get_or_init(|| revision).unwrap()
    };
    let counted = std::sync::atomic::AtomicUsize::new(0);
    let page = s.range(&RangeRequest::prefix(b"/k/".to_vec())).unwrap();
    page.derived[0]
        .get_or_init(|| counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u64);
    let again = s.range(&RangeRequest::prefix(b"/k/".to_vec())).unwrap();
    again.derived[0]
        .get_or_init(|| counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u64);
    assert_eq!(
        counted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "derived once"
    );
    s.put(b"/k/a", b"2").await.unwrap();
    assert_eq!(derive(&s), 2, "a changed value gets a new slot");
    assert_eq!(derive(&s), 2);
}

#[tokio::test]
async fn a_state_over_the_budget_is_read_from_the_index_and_reads_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_resident(dir.path(), 4096);
    s.create(b"/big/small", b"x").await.unwrap();
    assert!(s.shared.resident.held_bytes().is_some());
    for i in 0..8 {
        s.create(format!("/big/{i}").as_bytes(), &[b'v'; 1000])
            .await
            .unwrap();
    }
    assert!(
        s.shared.resident.held_bytes().is_none(),
        "dropped once over budget"
    );
    let all = s.range(&RangeRequest::prefix(b"/big/".to_vec())).unwrap();
    assert_eq!(all.kvs.len(), 9);
    assert_eq!(all.revision, 9);
    s.put(b"/big/small", b"y").await.unwrap();
    assert_eq!(s.get(b"/big/small").unwrap().0.unwrap().value, b"y");
    // Opened again over budget, it starts without the copy.
    let s = {
        assert!(s.close(std::time::Duration::from_secs(10)));
        open_resident(dir.path(), 4096)
    };
    assert!(s.shared.resident.held_bytes().is_none());
    assert_eq!(
        s.range(&RangeRequest::prefix(b"/big/".to_vec()))
            .unwrap()
            .kvs
            .len(),
        9
    );
}

#[tokio::test]
async fn a_value_that_does_not_open_leaves_the_copy_off_and_fails_only_its_own_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_resident(dir.path(), 0);
    s.create(b"/t/good", b"fine").await.unwrap();
    s.create(b"/t/bad", b"secret").await.unwrap();
    let latest = s.shared.cf(crate::shared::CF_LATEST).unwrap();
    let mut raw = s.shared.db.get_cf(latest, b"/t/bad").unwrap().unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    s.shared.db.put_cf(latest, b"/t/bad", &raw).unwrap();
    // RocksDB's memtable is not written without its WAL: flush so the change survives.
    s.shared.db.flush_cf(latest).unwrap();
    let s = {
        assert!(s.close(std::time::Duration::from_secs(10)));
        open_resident(dir.path(), 64 << 20)
    };
    assert!(s.shared.resident.held_bytes().is_none());
    assert_eq!(s.get(b"/t/good").unwrap().0.unwrap().value, b"fine");
    assert!(matches!(s.get(b"/t/bad"), Err(StoreError::Unseal { .. })));
}

#[tokio::test]
async fn only_keys_under_the_resident_prefix_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path())
        .with_resident_max_bytes(64 << 20)
        .with_resident_prefix(b"/registry/".to_vec());
    let s = open_with(dir.path(), opts, &StaticKeys::single(KEY)).unwrap();
    s.create(b"/registry/a", b"object").await.unwrap();
    let with_object = s.resident_bytes().unwrap();
    s.create(b"/audit/1", &[b'x'; 4096]).await.unwrap();
    assert_eq!(
        s.resident_bytes(),
        Some(with_object),
        "the audit batch is not kept"
    );
    // Both read right: one from memory, one from the index.
    assert_eq!(s.get(b"/audit/1").unwrap().0.unwrap().value.len(), 4096);
    assert_eq!(s.get(b"/registry/a").unwrap().0.unwrap().value, b"object");
    let audit = s.range(&RangeRequest::prefix(b"/audit/".to_vec())).unwrap();
    assert_eq!((audit.kvs.len(), audit.revision), (1, 2));
    let everything = s.range(&RangeRequest::prefix(b"/".to_vec())).unwrap();
    assert_eq!(everything.kvs.len(), 2);
}
