use std::time::Duration;

use super::*;
use crate::{EventKind, StoreError, StoreOptions, WatchTarget};

async fn next(w: &mut crate::Watcher) -> crate::Event {
    let shared = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event in time")
        .unwrap()
        .unwrap();
    (*shared).clone()
}

#[tokio::test]
async fn watch_from_an_old_revision_replays_history_with_previous_values_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/registry/pods/a", b"a1").await.unwrap(); // 1
    s.create(b"/registry/nodes/n", b"n1").await.unwrap(); // 2
    s.update(b"/registry/pods/a", b"a2", 1).await.unwrap(); // 3
    s.delete(b"/registry/pods/a", None).await.unwrap(); // 4

    let mut w = s
        .watch(WatchTarget::Prefix(b"/registry/pods/".to_vec()), 1)
        .unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (
            e.kind,
            e.revision(),
            e.kv.value.as_slice(),
            e.prev.is_none()
        ),
        (EventKind::Put, 1, &b"a1"[..], true)
    );
    let e = next(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), e.kv.value.as_slice()),
        (EventKind::Put, 3, &b"a2"[..])
    );
    assert_eq!(e.prev.unwrap().value, b"a1");
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.revision()), (EventKind::Delete, 4));
    assert_eq!(e.prev.unwrap().value, b"a2");

    // Live events arrive in order; other prefixes are filtered out.
    s.create(b"/registry/nodes/m", b"m").await.unwrap(); // 5
    s.create(b"/registry/pods/b", b"b1").await.unwrap(); // 6
    let e = next(&mut w).await;
    assert_eq!(
        (e.revision(), e.kv.key.as_slice()),
        (6, &b"/registry/pods/b"[..])
    );
    assert_eq!(w.progress(), 6);
}

#[tokio::test]
async fn watch_from_zero_sees_only_new_changes_and_key_watches_see_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/k/a", b"old").await.unwrap();
    let mut all = s.watch(WatchTarget::Prefix(b"/k/".to_vec()), 0).unwrap();
    let mut one = s.watch(WatchTarget::Key(b"/k/b".to_vec()), 0).unwrap();
    s.create(b"/k/a2", b"x").await.unwrap();
    s.create(b"/k/b", b"y").await.unwrap();
    assert_eq!(next(&mut all).await.kv.key, b"/k/a2");
    assert_eq!(next(&mut all).await.kv.key, b"/k/b");
    assert_eq!(next(&mut one).await.kv.key, b"/k/b");
}

#[tokio::test]
async fn many_watchers_all_receive_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut watchers: Vec<_> = (0..200)
        .map(|_| s.watch(WatchTarget::Prefix(b"/w/".to_vec()), 0).unwrap())
        .collect();
    for i in 0..100 {
        s.put(format!("/w/{i}").as_bytes(), b"v").await.unwrap();
    }
    for w in &mut watchers {
        for i in 0..100u64 {
            assert_eq!(next(w).await.revision(), i + 1);
        }
    }
}

#[tokio::test]
async fn a_watcher_that_falls_behind_catches_up_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(
        dir.path(),
        StoreOptions::new(dir.path().join("index"), CLUSTER).with_watch_buffer(2),
        &StaticKeys::single(KEY),
    )
    .unwrap();
    let mut w = s.watch(WatchTarget::Prefix(b"/".to_vec()), 0).unwrap();
    for i in 0..300 {
        s.put(format!("/x/{i}").as_bytes(), b"v").await.unwrap();
    }
    for i in 0..300u64 {
        let e = next(&mut w).await;
        assert_eq!(e.revision(), i + 1);
        assert_eq!(e.kv.key, format!("/x/{i}").into_bytes());
    }
}

#[tokio::test]
async fn watching_a_compacted_revision_is_a_distinct_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..10 {
        s.put(format!("/c/{i}").as_bytes(), b"v").await.unwrap();
    }
    s.compact(6).unwrap();
    assert!(matches!(
        s.watch(WatchTarget::Prefix(b"/c/".to_vec()), 5),
        Err(StoreError::Compacted {
            requested: 5,
            compacted: 6
        })
    ));
    let mut w = s.watch(WatchTarget::Prefix(b"/c/".to_vec()), 6).unwrap();
    assert_eq!(next(&mut w).await.revision(), 6);

    // A slow watcher overtaken by compaction ends with the compacted error.
    let s2dir = tempfile::tempdir().unwrap();
    let s2 = open_with(
        s2dir.path(),
        StoreOptions::new(s2dir.path().join("index"), CLUSTER).with_watch_buffer(1),
        &StaticKeys::single(KEY),
    )
    .unwrap();
    let mut slow = s2.watch(WatchTarget::Prefix(b"/".to_vec()), 0).unwrap();
    for i in 0..20 {
        s2.put(format!("/s/{i}").as_bytes(), b"v").await.unwrap();
    }
    s2.compact(15).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), slow.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(StoreError::Compacted { .. })), "{r:?}");
    assert!(slow.next().await.is_none());
}
