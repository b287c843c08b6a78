use super::*;
use crate::{ContinueToken, RangeRequest, StoreError, TxnOutcome};

#[tokio::test]
async fn revisions_versions_and_conditional_writes_follow_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.revision(), 0);

    let TxnOutcome::Committed {
        revision: r1,
        prev: None,
    } = s.create(b"/registry/pods/a", b"v1").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(r1, 1);
    // A second create fails and reports the current value.
    let TxnOutcome::Failed { current: Some(cur) } =
        s.create(b"/registry/pods/a", b"x").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            cur.value.as_slice(),
            cur.mod_revision,
            cur.create_revision,
            cur.version
        ),
        (&b"v1"[..], 1, 1, 1)
    );

    // Update with a stale mod revision fails; with the right one succeeds.
    s.create(b"/registry/pods/b", b"b1").await.unwrap();
    let TxnOutcome::Failed { current: Some(cur) } =
        s.update(b"/registry/pods/a", b"v2", 2).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(cur.mod_revision, 1);
    let TxnOutcome::Committed {
        revision: r3,
        prev: Some(prev),
    } = s.update(b"/registry/pods/a", b"v2", 1).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((r3, prev.value.as_slice()), (3, &b"v1"[..]));
    let (kv, read_rev) = s.get(b"/registry/pods/a").unwrap();
    let kv = kv.unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            read_rev
        ),
        (&b"v2"[..], 1, 3, 2, 3)
    );

    // Updating a missing key fails with no current value.
    assert_eq!(
        s.update(b"/registry/pods/zz", b"v", 1).await.unwrap(),
        TxnOutcome::Failed { current: None }
    );

    // Conditional delete: wrong revision fails, right one succeeds and returns the old value.
    assert!(matches!(
        s.delete(b"/registry/pods/a", Some(1)).await.unwrap(),
        TxnOutcome::Failed { .. }
    ));
    let TxnOutcome::Committed {
        revision: r4,
        prev: Some(prev),
    } = s.delete(b"/registry/pods/a", Some(3)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((r4, prev.value.as_slice()), (4, &b"v2"[..]));
    assert_eq!(s.get(b"/registry/pods/a").unwrap().0, None);
    // Deleting a missing key writes nothing.
    assert_eq!(
        s.delete(b"/registry/pods/a", None).await.unwrap(),
        TxnOutcome::Failed { current: None }
    );
    assert_eq!(s.revision(), 4);

    // Re-creating starts a new life: create revision and version reset.
    let r5 = s
        .create(b"/registry/pods/a", b"again")
        .await
        .unwrap()
        .revision()
        .unwrap();
    let kv = s.get(b"/registry/pods/a").unwrap().0.unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r5, r5, 1)
    );

    // Reads at past revisions see the state of that revision.
    let at = |rev| {
        s.get_at(b"/registry/pods/a", Some(rev))
            .unwrap()
            .0
            .map(|kv| kv.value)
    };
    assert_eq!(at(1), Some(b"v1".to_vec()));
    assert_eq!(at(2), Some(b"v1".to_vec()));
    assert_eq!(at(3), Some(b"v2".to_vec()));
    assert_eq!(at(4), None);
    assert_eq!(at(5), Some(b"again".to_vec()));
    assert!(matches!(
        s.get_at(b"/registry/pods/a", Some(6)),
        Err(StoreError::FutureRevision {
            requested: 6,
            current: 5
        })
    ));
}

#[tokio::test]
async fn prefix_ranges_page_at_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..25 {
        s.create(
            format!("/registry/configmaps/ns/cm-{i:02}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .await
        .unwrap();
    }
    // Keys outside the prefix, including one that shares a byte prefix.
    s.create(b"/registry/configmaps/ns2/x", b"x").await.unwrap();
    s.create(b"/registry/configmapsX", b"x").await.unwrap();
    let prefix = b"/registry/configmaps/ns/".to_vec();

    let first = s
        .range(&RangeRequest::prefix(prefix.clone()).with_limit(10))
        .unwrap();
    assert_eq!(first.kvs.len(), 10);
    assert_eq!(first.revision, 27);
    let token = first.next.clone().unwrap();
    assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);

    // Writes between pages must not show up in later pages.
    s.delete(b"/registry/configmaps/ns/cm-15", None)
        .await
        .unwrap();
    s.update(b"/registry/configmaps/ns/cm-20", b"changed", 21)
        .await
        .unwrap();
    s.create(b"/registry/configmaps/ns/cm-99", b"new")
        .await
        .unwrap();

    let mut all = first.kvs.clone();
    let mut next = first.next;
    while let Some(t) = next {
        let page = s
            .range(
                &RangeRequest::prefix(prefix.clone())
                    .with_limit(10)
                    .continuing(t),
            )
            .unwrap();
        assert_eq!(page.revision, 27);
        all.extend(page.kvs);
        next = page.next;
    }
    let names: Vec<String> = all
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..25)
        .map(|i| format!("/registry/configmaps/ns/cm-{i:02}"))
        .collect();
    assert_eq!(names, expected);
    assert_eq!(all[20].value, b"v20");

    // The current state sees the changes.
    let now = s.range(&RangeRequest::prefix(prefix.clone())).unwrap();
    assert_eq!(now.kvs.len(), 25);
    assert!(now.next.is_none());
    assert!(
        now.kvs
            .iter()
            .all(|kv| kv.key != b"/registry/configmaps/ns/cm-15")
    );
    assert_eq!(
        now.kvs
            .iter()
            .find(|kv| kv.key == b"/registry/configmaps/ns/cm-20")
            .unwrap()
            .value,
        b"changed"
    );

    // A past-revision range equals what the current range said back then.
    let past = s
        .range(&RangeRequest::prefix(prefix.clone()).at_revision(27))
        .unwrap();
    assert_eq!(past.kvs, all);
    // Exact page boundary: limit equal to the count has no continuation.
    let exact = s
        .range(&RangeRequest::prefix(prefix.clone()).with_limit(25))
        .unwrap();
    assert!(exact.next.is_none());
    // Past-revision paging also works.
    let p1 = s
        .range(
            &RangeRequest::prefix(prefix.clone())
                .at_revision(27)
                .with_limit(7),
        )
        .unwrap();
    let p2 = s
        .range(
            &RangeRequest::prefix(prefix.clone())
                .with_limit(7)
                .continuing(p1.next.unwrap()),
        )
        .unwrap();
    assert_eq!(p2.kvs[0].key, all[7].key);
}

#[tokio::test]
async fn concurrent_writers_share_group_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut tasks = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.create(format!("/k/{w}/{i}").as_bytes(), b"v")
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.revision(), 800);
    assert_eq!(
        s.range(&RangeRequest::prefix(b"/k/".to_vec()))
            .unwrap()
            .kvs
            .len(),
        800
    );
    // Group commit: fewer journal records than writes.
    let records = FileJournal::open(dir.path().join("journal")).unwrap();
    let mut records = records;
    let n = crate::Journal::read_records(&mut records).unwrap().len();
    assert!(n < 800, "{n} records for 800 concurrent writes");
}

#[tokio::test]
async fn optimistic_concurrency_lets_exactly_one_racer_win() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let r = s
        .create(b"/counter", b"0")
        .await
        .unwrap()
        .revision()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update(b"/counter", format!("{i}").as_bytes(), r)
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), TxnOutcome::Committed { .. }) {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}
